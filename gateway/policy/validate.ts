// Raw policy trees -> a typed, compiled, frozen PolicySnapshot. Collects every problem before
// failing; each names file, line, path, what is wrong and what is allowed. Unknown keys are
// errors: a typo must never silently switch a constraint off.
import type { Clock } from '../context.js';
import { ConfigError } from '../errors.js';
import { RouteTableBuilder, parseRoute, type ParsedRoute } from './compile.js';
import { problemAt, type LoadedFile, type Position, type RawEntry, type RawNode } from './load.js';
import type { Agent, AgentCredential, Backend, BodyConstraint, PolicySnapshot, Role, Route, Scope, TokenPolicy } from './types.js';
import { describe, parseDuration, parseSize, type Parsed } from './units.js';

/** Collects problems and checks the shape of raw nodes. Shared by policy and config validation. */
export class Checker {
  readonly problems: string[] = [];

  add(at: Position, path: string, message: string): void {
    this.problems.push(problemAt(at, path, message));
  }

  /**
   * A map whose keys must come from `allowed`. `reserved` keys are recognised but refused with
   * their own message (features not built yet).
   */
  map(node: RawNode | undefined, path: string, allowed: readonly string[], reserved: Readonly<Record<string, string>> = {}): ReadonlyMap<string, RawEntry> | null {
    if (node === undefined) return null;
    if (node.kind !== 'map') {
      this.add(node.at, path, `expected a map with keys ${allowed.join(', ')}, got ${kindOf(node)}`);
      return null;
    }
    for (const [key, entry] of node.entries) {
      if (allowed.includes(key)) continue;
      const why = reserved[key];
      if (why !== undefined) {
        this.add(entry.at, `${path}.${key}`, why);
        continue;
      }
      const near = nearest(key, allowed);
      this.add(entry.at, `${path}.${key}`, `unknown key (allowed: ${allowed.join(', ')})${near === null ? '' : `; did you mean "${near}"?`}`);
    }
    return node.entries;
  }

  /** A map of user-chosen names (backends, roles, agents, scopes). */
  names(node: RawNode | undefined, path: string, what: string): ReadonlyMap<string, RawEntry> | null {
    if (node === undefined) return null;
    if (node.kind !== 'map') {
      this.add(node.at, path, `expected a map of ${what}, got ${kindOf(node)}`);
      return null;
    }
    return node.entries;
  }

  required(entries: ReadonlyMap<string, RawEntry> | null, key: string, path: string, at: Position): RawEntry | undefined {
    const entry = entries?.get(key);
    if (entry === undefined && entries !== null) this.add(at, `${path}.${key}`, 'is required');
    return entry;
  }

  string(entry: RawEntry | undefined, path: string, options: { pattern?: RegExp; patternHelp?: string } = {}): string | null {
    if (entry === undefined) return null;
    const node = entry.value;
    if (node.kind !== 'scalar' || typeof node.value !== 'string' || node.value === '') {
      this.add(node.at, path, `expected a non-empty string, got ${node.kind === 'scalar' ? describe(node.value) : kindOf(node)}`);
      return null;
    }
    if (options.pattern !== undefined && !options.pattern.test(node.value)) {
      this.add(node.at, path, `"${node.value}" ${options.patternHelp ?? `must match ${String(options.pattern)}`}`);
      return null;
    }
    return node.value;
  }

  boolean(entry: RawEntry | undefined, path: string): boolean | null {
    if (entry === undefined) return null;
    const node = entry.value;
    if (node.kind !== 'scalar' || typeof node.value !== 'boolean') {
      this.add(node.at, path, `expected true or false, got ${node.kind === 'scalar' ? describe(node.value) : kindOf(node)}`);
      return null;
    }
    return node.value;
  }

  integer(entry: RawEntry | undefined, path: string, min: number, max: number): number | null {
    if (entry === undefined) return null;
    const node = entry.value;
    if (node.kind !== 'scalar' || typeof node.value !== 'number' || !Number.isInteger(node.value) || node.value < min || node.value > max) {
      this.add(node.at, path, `expected a whole number from ${min} to ${max}, got ${node.kind === 'scalar' ? describe(node.value) : kindOf(node)}`);
      return null;
    }
    return node.value;
  }

  parsed<T>(entry: RawEntry | undefined, path: string, parse: (input: unknown) => Parsed<T>): T | null {
    if (entry === undefined) return null;
    const node = entry.value;
    const result = parse(node.kind === 'scalar' ? node.value : kindOf(node));
    if (!result.ok) {
      this.add(node.at, path, result.error);
      return null;
    }
    return result.value;
  }

  duration(entry: RawEntry | undefined, path: string, limits: { minMs?: number; maxMs?: number } = {}): number | null {
    const value = this.parsed(entry, path, parseDuration);
    if (value === null || entry === undefined) return value;
    if (limits.minMs !== undefined && value < limits.minMs) {
      this.add(entry.value.at, path, `must be at least ${formatMs(limits.minMs)}`);
      return null;
    }
    if (limits.maxMs !== undefined && value > limits.maxMs) {
      this.add(entry.value.at, path, `must be at most ${formatMs(limits.maxMs)}`);
      return null;
    }
    return value;
  }

  size(entry: RawEntry | undefined, path: string): number | null {
    return this.parsed(entry, path, parseSize);
  }

  list(entry: RawEntry | undefined, path: string): readonly RawNode[] | null {
    if (entry === undefined) return null;
    const node = entry.value;
    if (node.kind !== 'seq') {
      this.add(node.at, path, `expected a list, got ${kindOf(node)}`);
      return null;
    }
    return node.items;
  }

  /** Throw every problem collected, ordered by file and line. */
  fail(): void {
    if (this.problems.length === 0) return;
    const key = (p: string): [string, number] => {
      const m = /^(.*?):(\d+) {2}/.exec(p);
      return m === null ? ['', 0] : [m[1] ?? '', Number(m[2])];
    };
    const sorted = this.problems
      .map((p, i) => ({ p, i, k: key(p) }))
      .sort((a, b) => a.k[0].localeCompare(b.k[0]) || a.k[1] - b.k[1] || a.i - b.i)
      .map((x) => x.p);
    throw new ConfigError(sorted);
  }
}

const BACKEND_NAME = /^[a-z][a-z0-9-]{0,31}$/;
const SCOPE_NAME = /^[a-z][a-zA-Z0-9._-]{0,63}$/;
const ROLE_NAME = /^[a-z][a-z0-9_-]{0,63}$/;
const AGENT_ID = /^[a-z0-9][a-z0-9._-]{0,62}$/;
/** Paths the gateway itself serves on the agent port; a backend may not take these names. */
const RESERVED_BACKENDS = new Set(['oauth', 'well-known', 'metrics', 'healthz', 'readyz', 'admin']);
const NOT_YET = 'not supported by this version of AgentGate';
const ROLE_RESERVED = { mask: NOT_YET, breaker: NOT_YET, query: NOT_YET, network: NOT_YET, enforce: NOT_YET, approval: NOT_YET };
const DEFAULT_TTL_MS = 15 * 60_000;
const MAX_TTL_MS = 24 * 3_600_000;

interface Named {
  readonly name: string;
  readonly entry: RawEntry;
}

export interface ValidateOptions {
  readonly version: number;
  readonly clock: Clock;
  readonly defaultTimeoutMs: number;
}

/** Merge the files' top-level maps and validate everything. Throws ConfigError with every problem. */
export function validatePolicy(files: readonly LoadedFile[], options: ValidateOptions, earlier: readonly string[] = []): PolicySnapshot {
  const c = new Checker();
  c.problems.push(...earlier);
  const sections: Record<'backends' | 'roles' | 'agents', Map<string, Named>> = { backends: new Map(), roles: new Map(), agents: new Map() };
  for (const f of files) {
    if (f.root === null) continue;
    const top = c.map(f.root, '(top level)', ['backends', 'roles', 'agents']);
    if (top === null) continue;
    for (const section of ['backends', 'roles', 'agents'] as const) {
      const names = c.names(top.get(section)?.value, section, section);
      for (const [name, entry] of names ?? []) {
        const previous = sections[section].get(name);
        if (previous !== undefined) {
          c.add(entry.at, `${section}.${name}`, `defined twice (also at ${previous.entry.at.file}:${previous.entry.at.line})`);
          continue;
        }
        sections[section].set(name, { name, entry });
      }
    }
  }

  const backends = new Map<string, Backend>();
  for (const { name, entry } of sections.backends.values()) {
    const backend = validateBackend(c, name, entry, options.defaultTimeoutMs);
    if (backend !== null) backends.set(name, backend);
  }
  const roles = new Map<string, Role>();
  for (const { name, entry } of sections.roles.values()) {
    const role = validateRole(c, name, entry, backends, sections.backends);
    if (role !== null) roles.set(name, role);
  }
  const agents = new Map<string, Agent>();
  for (const { name, entry } of sections.agents.values()) {
    const agent = validateAgent(c, name, entry, sections.roles);
    if (agent !== null) agents.set(name, agent);
  }
  c.fail();
  return Object.freeze({
    version: options.version,
    loadedAt: options.clock.now(),
    files: Object.freeze(files.map((f) => f.file)),
    backends,
    roles,
    agents,
  });
}

function validateBackend(c: Checker, name: string, entry: RawEntry, defaultTimeoutMs: number): Backend | null {
  const path = `backends.${name}`;
  let ok = true;
  if (!BACKEND_NAME.test(name)) {
    c.add(entry.at, path, 'backend names use a-z, 0-9 and -, start with a letter, at most 32 characters');
    ok = false;
  } else if (RESERVED_BACKENDS.has(name)) {
    c.add(entry.at, path, `"${name}" is reserved for the gateway's own endpoints`);
    ok = false;
  }
  const keys = c.map(entry.value, path, ['upstream', 'timeout', 'scopes', 'description']);
  if (keys === null) return null;
  const upstreamText = c.string(c.required(keys, 'upstream', path, entry.at), `${path}.upstream`);
  let upstream: URL | null = null;
  if (upstreamText !== null) {
    upstream = checkUpstream(c, upstreamText, keys.get('upstream')?.value.at ?? entry.at, `${path}.upstream`);
  }
  const timeoutMs = keys.has('timeout') ? c.duration(keys.get('timeout'), `${path}.timeout`, { minMs: 1, maxMs: 3_600_000 }) : defaultTimeoutMs;
  c.string(keys.get('description'), `${path}.description`);
  const scopesEntry = c.required(keys, 'scopes', path, entry.at);
  const scopeNodes = c.names(scopesEntry?.value, `${path}.scopes`, 'scopes');
  const scopes = new Map<string, Scope>();
  const table = new RouteTableBuilder();
  if (scopeNodes !== null && scopeNodes.size === 0 && scopesEntry !== undefined) c.add(scopesEntry.at, `${path}.scopes`, 'needs at least one scope');
  for (const [scopeName, scopeEntry] of scopeNodes ?? []) {
    const scopePath = `${path}.scopes.${scopeName}`;
    if (!SCOPE_NAME.test(scopeName)) {
      c.add(scopeEntry.at, scopePath, 'scope names use letters, digits, . _ -, start with a lower-case letter');
      ok = false;
      continue;
    }
    const id = `${name}:${scopeName}`;
    const items = c.list(scopeEntry, scopePath);
    if (items === null) continue;
    if (items.length === 0) c.add(scopeEntry.at, scopePath, 'needs at least one route');
    const routes: Route[] = [];
    items.forEach((item, i) => {
      const route = validateRouteItem(c, item, `${scopePath}[${i}]`, id);
      if (route === null) return;
      const problem = table.add(route.route, route.parsed);
      if (problem !== null) c.add(item.at, `${scopePath}[${i}]`, problem);
      else routes.push(route.route);
    });
    scopes.set(scopeName, Object.freeze({ id, backend: name, name: scopeName, routes: Object.freeze(routes) }));
  }
  if (!ok || upstream === null || timeoutMs === null) return null;
  return Object.freeze({
    name,
    upstream,
    origin: upstream.origin,
    basePath: upstream.pathname.replace(/\/+$/, ''),
    timeoutMs,
    scopes,
    routes: table.build(),
  });
}

function checkUpstream(c: Checker, text: string, at: Position, path: string): URL | null {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    c.add(at, path, `"${text}" is not a URL (e.g. http://127.0.0.1:9101)`);
    return null;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    c.add(at, path, `"${text}": scheme must be http or https`);
    return null;
  }
  if (url.username !== '' || url.password !== '' || url.search !== '' || url.hash !== '') {
    c.add(at, path, `"${text}" must not carry credentials, a query or a fragment`);
    return null;
  }
  return url;
}

function validateRouteItem(c: Checker, item: RawNode, path: string, scope: string): { route: Route; parsed: ParsedRoute } | null {
  let text: string | null = null;
  let body: BodyConstraint | null = null;
  if (item.kind === 'scalar') {
    if (typeof item.value !== 'string') {
      c.add(item.at, path, `expected a route such as "GET /contacts/:id", got ${describe(item.value)}`);
      return null;
    }
    text = item.value;
  } else if (item.kind === 'map') {
    const keys = c.map(item, path, ['route', 'body']);
    text = c.string(c.required(keys, 'route', path, item.at), `${path}.route`);
    const bodyEntry = keys?.get('body');
    if (bodyEntry !== undefined) body = validateBody(c, bodyEntry, `${path}.body`);
    if (bodyEntry !== undefined && body === null) return null;
  } else {
    c.add(item.at, path, 'expected a route string or { route, body }');
    return null;
  }
  if (text === null) return null;
  const parsed = parseRoute(text);
  if (typeof parsed === 'string') {
    c.add(item.at, path, parsed);
    return null;
  }
  if (body !== null && (parsed.method === 'GET' || parsed.method === 'HEAD')) {
    c.add(item.at, `${path}.body`, `${parsed.method} requests carry no body to check`);
    return null;
  }
  return { route: Object.freeze({ method: parsed.method, template: `${parsed.method} ${text.trim().split(/ +/)[1] ?? ''}`, scope, body }), parsed };
}

function validateBody(c: Checker, entry: RawEntry, path: string): BodyConstraint | null {
  const fields = c.names(entry.value, path, 'JSON fields to their allowed values');
  if (fields === null) return null;
  if (fields.size === 0) {
    c.add(entry.at, path, 'needs at least one field');
    return null;
  }
  const out = new Map<string, ReadonlySet<string>>();
  for (const [field, valuesEntry] of fields) {
    const values = c.list(valuesEntry, `${path}.${field}`);
    if (values === null) return null;
    const set = new Set<string>();
    for (const [i, v] of values.entries()) {
      if (v.kind !== 'scalar' || typeof v.value !== 'string') {
        c.add(v.at, `${path}.${field}[${i}]`, 'listed values must be strings');
        return null;
      }
      set.add(v.value);
    }
    if (set.size === 0) {
      c.add(valuesEntry.at, `${path}.${field}`, 'needs at least one allowed value');
      return null;
    }
    out.set(field, set);
  }
  return Object.freeze({ fields: out });
}

function validateRole(c: Checker, name: string, entry: RawEntry, backends: ReadonlyMap<string, Backend>, rawBackends: ReadonlyMap<string, Named>): Role | null {
  const path = `roles.${name}`;
  if (!ROLE_NAME.test(name)) c.add(entry.at, path, 'role names use a-z, 0-9, _ and -, start with a letter');
  const keys = c.map(entry.value, path, ['description', 'grants', 'readOnly', 'token'], ROLE_RESERVED);
  if (keys === null) return null;
  const description = c.string(keys.get('description'), `${path}.description`) ?? '';
  const readOnly = c.boolean(keys.get('readOnly'), `${path}.readOnly`) ?? false;
  const grantNodes = c.list(c.required(keys, 'grants', path, entry.at), `${path}.grants`) ?? [];
  const grants = new Set<string>();
  const reached = new Set<string>();
  grantNodes.forEach((node, i) => {
    const gPath = `${path}.grants[${i}]`;
    if (node.kind !== 'scalar' || typeof node.value !== 'string') {
      c.add(node.at, gPath, 'expected "backend:scope"');
      return;
    }
    const grant = node.value;
    const colon = grant.indexOf(':');
    const backendName = colon === -1 ? '' : grant.slice(0, colon);
    const scopeName = colon === -1 ? '' : grant.slice(colon + 1);
    if (colon === -1) {
      c.add(node.at, gPath, `"${grant}" must be backend:scope (e.g. crm:contacts.read)`);
      return;
    }
    const backend = backends.get(backendName);
    if (backend === undefined) {
      if (!rawBackends.has(backendName)) c.add(node.at, gPath, `unknown backend "${backendName}" in "${grant}" (backends: ${[...rawBackends.keys()].join(', ') || 'none'})`);
      return;
    }
    if (!backend.scopes.has(scopeName)) {
      c.add(node.at, gPath, `unknown scope "${grant}" (${backendName} has: ${[...backend.scopes.keys()].join(', ')})`);
      return;
    }
    if (grants.has(grant)) {
      c.add(node.at, gPath, `"${grant}" is granted twice`);
      return;
    }
    grants.add(grant);
    reached.add(backendName);
  });
  const token = validateTokenPolicy(c, keys.get('token'), `${path}.token`);
  if (token === null) return null;
  return Object.freeze({ name, description, grants, backends: reached, readOnly, token });
}

function validateTokenPolicy(c: Checker, entry: RawEntry | undefined, path: string): TokenPolicy | null {
  const defaults: TokenPolicy = { ttlSeconds: DEFAULT_TTL_MS / 1000, session: 'multi', idleTimeoutSeconds: null, maxUses: null, rotateSeconds: null };
  if (entry === undefined) return Object.freeze(defaults);
  const keys = c.map(entry.value, path, ['ttl', 'session', 'idleTimeout', 'maxUses', 'rotate']);
  if (keys === null) return null;
  const ttl = keys.has('ttl') ? c.duration(keys.get('ttl'), `${path}.ttl`, { minMs: 1000, maxMs: MAX_TTL_MS }) : DEFAULT_TTL_MS;
  const sessionEntry = keys.get('session');
  let session: 'single' | 'multi' = 'multi';
  if (sessionEntry !== undefined) {
    const value = sessionEntry.value.kind === 'scalar' ? sessionEntry.value.value : null;
    if (value === 'single' || value === 'multi') session = value;
    else c.add(sessionEntry.value.at, `${path}.session`, `${describe(value)} is not a session mode (allowed: single, multi)`);
  }
  const idle = keys.has('idleTimeout') ? c.duration(keys.get('idleTimeout'), `${path}.idleTimeout`, { minMs: 1000 }) : null;
  const maxUses = keys.has('maxUses') ? c.integer(keys.get('maxUses'), `${path}.maxUses`, 1, 1_000_000_000) : null;
  const rotate = keys.has('rotate') ? c.duration(keys.get('rotate'), `${path}.rotate`, { minMs: 60_000 }) : null;
  if (ttl === null) return null;
  return Object.freeze({
    ttlSeconds: Math.floor(ttl / 1000),
    session,
    idleTimeoutSeconds: idle === null ? null : Math.floor(idle / 1000),
    maxUses,
    rotateSeconds: rotate === null ? null : Math.floor(rotate / 1000),
  });
}

function validateAgent(c: Checker, id: string, entry: RawEntry, roles: ReadonlyMap<string, Named>): Agent | null {
  const path = `agents.${id}`;
  let ok = true;
  if (!AGENT_ID.test(id)) {
    c.add(entry.at, path, 'agent ids use a-z, 0-9, . _ -, start with a letter or digit, at most 63 characters');
    ok = false;
  }
  const keys = c.map(entry.value, path, ['role', 'owner', 'description', 'credentials']);
  if (keys === null) return null;
  const roleEntry = c.required(keys, 'role', path, entry.at);
  const role = c.string(roleEntry, `${path}.role`);
  if (role !== null && !roles.has(role)) {
    c.add(roleEntry?.value.at ?? entry.at, `${path}.role`, `role "${role}" is not defined`);
    ok = false;
  }
  const owner = c.string(c.required(keys, 'owner', path, entry.at), `${path}.owner`);
  const description = c.string(keys.get('description'), `${path}.description`) ?? '';
  const credentials: AgentCredential[] = [];
  const credNodes = c.list(keys.get('credentials'), `${path}.credentials`) ?? [];
  credNodes.forEach((node, i) => {
    const cPath = `${path}.credentials[${i}]`;
    const ck = c.map(node, cPath, ['type', 'jwk']);
    if (ck === null) return;
    const type = c.string(c.required(ck, 'type', cPath, node.at), `${cPath}.type`);
    if (type !== null && type !== 'private_key_jwt') {
      c.add(ck.get('type')?.value.at ?? node.at, `${cPath}.type`, `"${type}" is not a credential type for policies (allowed: private_key_jwt; client secrets live in the state store: agentgate credentials issue)`);
      return;
    }
    const jwkEntry = c.required(ck, 'jwk', cPath, node.at);
    const jwk = jwkEntry === undefined ? null : validateJwk(c, jwkEntry, `${cPath}.jwk`);
    if (jwk !== null) credentials.push(Object.freeze({ type: 'private_key_jwt', jwk }));
  });
  if (!ok || role === null || owner === null) return null;
  return Object.freeze({ id, role, owner, description, credentials: Object.freeze(credentials) });
}

function validateJwk(c: Checker, entry: RawEntry, path: string): Readonly<Record<string, unknown>> | null {
  const node = entry.value;
  if (node.kind !== 'map') {
    c.add(node.at, path, `expected a public JWK map, got ${kindOf(node)}`);
    return null;
  }
  const jwk: Record<string, unknown> = {};
  for (const [key, value] of node.entries) {
    if (value.value.kind !== 'scalar') {
      c.add(value.at, `${path}.${key}`, 'JWK members are plain values');
      return null;
    }
    jwk[key] = value.value.value;
  }
  if ('d' in jwk || 'p' in jwk || 'q' in jwk || 'k' in jwk) {
    c.add(node.at, path, 'contains private key material; put only the public key in a policy');
    return null;
  }
  const okp = jwk.kty === 'OKP' && jwk.crv === 'Ed25519' && typeof jwk.x === 'string';
  const ec = jwk.kty === 'EC' && jwk.crv === 'P-256' && typeof jwk.x === 'string' && typeof jwk.y === 'string';
  if (!okp && !ec) {
    c.add(node.at, path, 'must be an Ed25519 (kty OKP, crv Ed25519, x) or P-256 (kty EC, crv P-256, x, y) public key');
    return null;
  }
  return Object.freeze(jwk);
}

function kindOf(node: RawNode): string {
  if (node.kind === 'map') return 'a map';
  if (node.kind === 'seq') return 'a list';
  return describe(node.value);
}

function formatMs(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

/** Levenshtein distance <= 2, or same lower-case: a likely typo of an allowed key. */
function nearest(key: string, allowed: readonly string[]): string | null {
  let best: string | null = null;
  let bestDistance = 3;
  for (const candidate of allowed) {
    const d = candidate.toLowerCase() === key.toLowerCase() ? 0 : distance(key, candidate);
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best;
}

function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0] ?? 0;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j] ?? 0;
      row[j] = Math.min((row[j] ?? 0) + 1, (row[j - 1] ?? 0) + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return row[b.length] ?? 0;
}
