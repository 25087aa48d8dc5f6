// Raw policy trees -> a typed, compiled, frozen PolicySnapshot. Collects every problem before
// failing; each names file, line, path, what is wrong and what is allowed. Unknown keys are
// errors: a typo must never silently switch a constraint off.
import type { Clock } from '../clock.js';
import { ConfigError } from '../errors.js';
import { RouteTableBuilder, buildNetworkSet, compileForwardHeaders, parseCidr, parseMaskPath, parseRoute, parseUriTemplate, type ParsedCidr, type ParsedRoute } from './compile.js';
import { DEFAULT_FORWARD_HEADERS, normaliseHeaderName, reservedHeader } from '../headers.js';
import { isSqlMarker, validateJsonRules, validateQueryRules } from './request-rules.js';
import { problemAt, type Position, type RawEntry, type RawNode, type RawPolicy } from './load.js';
import type {
  Agent,
  AgentCredential,
  ApprovalPolicy,
  Backend,
  BodyConstraint,
  BreakerPolicy,
  FieldRules,
  MaskPlan,
  MaskRule,
  NetworkPolicy,
  NetworkSet,
  PolicySnapshot,
  QueryConstraint,
  RateLimitPolicy,
  RateLimitRule,
  QueryRoute,
  Role,
  Route,
  Scope,
  SqlDialect,
  TokenPolicy,
  UriTemplate,
  UserRights,
} from './types.js';
import { DEFAULT_APPROVAL_TTL_MS } from './types.js';
import { describe, parseDuration, parseSize, unknownKeyMessage, type Parsed } from './units.js';

/** Collects problems and checks the shape of raw nodes. Shared by policy and config validation. */
export class Checker {
  readonly problems: string[] = [];

  add(at: Position, path: string, message: string): void {
    this.problems.push(problemAt(at, path, message));
  }

  /**
   * A map whose keys must come from `allowed`. `reserved` keys are recognised but refused with
   * their own message (features not built yet, renamed keys). `path` '' is the top level.
   */
  map(node: RawNode | undefined, path: string, allowed: readonly string[], reserved: Readonly<Record<string, string>> = {}): ReadonlyMap<string, RawEntry> | null {
    if (node === undefined) return null;
    if (node.kind !== 'map') {
      this.add(node.at, path === '' ? '(top level)' : path, `expected a map with keys ${allowed.join(', ')}, got ${kindOf(node)}`);
      return null;
    }
    for (const [key, entry] of node.entries) {
      if (allowed.includes(key)) continue;
      const keyPath = path === '' ? key : `${path}.${key}`;
      const why = Object.hasOwn(reserved, key) ? reserved[key] : undefined;
      this.add(entry.at, keyPath, why ?? unknownKeyMessage(key, allowed));
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

  /** A value from a closed set; the message lists the allowed values. */
  oneOf<T extends string>(entry: RawEntry | undefined, path: string, allowed: readonly T[], what: string): T | null {
    if (entry === undefined) return null;
    const node = entry.value;
    const value = node.kind === 'scalar' ? node.value : null;
    const found = allowed.find((a) => a === value);
    if (found === undefined) {
      this.add(node.at, path, `${node.kind === 'scalar' ? describe(value) : kindOf(node)} is not ${what} (allowed: ${allowed.join(', ')})`);
      return null;
    }
    return found;
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
    const result = parse(node.kind === 'scalar' ? node.value : node.kind === 'map' ? {} : []);
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

  size(entry: RawEntry | undefined, path: string, limits: { minBytes?: number } = {}): number | null {
    const value = this.parsed(entry, path, parseSize);
    if (value === null || entry === undefined) return value;
    if (limits.minBytes !== undefined && value < limits.minBytes) {
      this.add(entry.value.at, path, `must be at least ${limits.minBytes} bytes`);
      return null;
    }
    return value;
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

  /** Throw every problem collected, ordered by file and line (problems without a line first). */
  fail(): void {
    if (this.problems.length === 0) return;
    const key = (p: string): [string, number] => {
      const m = /^(.*?):(\d+) {2}/.exec(p);
      return m === null ? ['', 0] : [m[1] ?? '', Number(m[2])];
    };
    const sorted = this.problems
      .map((p, i) => ({ p, i, k: key(p) }))
      .sort((a, b) => (a.k[0] < b.k[0] ? -1 : a.k[0] > b.k[0] ? 1 : 0) || a.k[1] - b.k[1] || a.i - b.i)
      .map((x) => x.p);
    throw new ConfigError(sorted);
  }
}

/** Route methods whose requests carry no body unless the route says `body: true`. */
const NO_BODY_ROUTE_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'DELETE', 'OPTIONS']);
const BACKEND_NAME = /^[a-z][a-z0-9-]{0,31}$/;
const SCOPE_NAME = /^[a-z][a-zA-Z0-9._-]{0,63}$/;
const ROLE_NAME = /^[a-z][a-z0-9_-]{0,63}$/;
const AGENT_ID = /^[a-z0-9][a-z0-9._-]{0,62}$/;
/** The token broker answers /oauth/* on the agent port (/.well-known/* cannot be a backend name). */
const RESERVED_BACKENDS = new Set(['oauth']);
const ROLE_KEYS = ['description', 'grants', 'readOnly', 'token', 'breaker', 'rateLimit', 'mask', 'query', 'network', 'enforce', 'approval'];
const SQL_DIALECTS: readonly SqlDialect[] = ['sqlite', 'postgresql', 'mysql', 'mariadb', 'bigquery', 'transactsql'];
const MAX_APPROVAL_TTL_MS = 7 * 86_400_000;
/** Names in `query.tables`: plain SQL identifiers. */
const TABLE_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;
/** Cap of the doubling cooldown when a breaker sets no maxCooldown (or the cooldown, if longer). */
const DEFAULT_MAX_COOLDOWN_MS = 24 * 3_600_000;
/** JWK members that carry private or symmetric key material (RFC 7517/7518). */
const PRIVATE_JWK_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];
const DEFAULT_TTL_MS = 15 * 60_000;
/** Deepest `act` chain a token may carry (the verifier refuses deeper ones). */
const MAX_DELEGATION_DEPTH = 7;
const CLAIM_NAME = /^[A-Za-z_][A-Za-z0-9_.:-]{0,63}$/;
const MAX_TTL_MS = 24 * 3_600_000;
const DEFAULTS_KEYS = ['breaker', 'rateLimit', 'token'];
const BREAKER_KEYS = ['violations', 'window', 'cooldown', 'maxCooldown', 'revokeTokens'];
const TOKEN_KEYS = ['ttl', 'session', 'idleTimeout', 'maxUses', 'rotate', 'maxDelegationDepth'];
const RATE_LIMIT_KEYS = ['rps', 'burst', 'scopes', 'violation'];
const MAX_RPS = 1_000_000;
/** `expires: 2027-03-31` (the agent works through that day, UTC) or an RFC 3339 instant. */
const DATE_ONLY = /^(\d{4})-(\d{2})-(\d{2})$/;
const INSTANT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})$/;

/**
 * The `defaults:` section: a breaker, rate limit and token policy every role inherits. A role
 * that sets the key overrides it key by key (`breaker: { violations: 3 }` keeps the default
 * window and cooldown), or switches it off explicitly (`breaker: off`, `rateLimit: off`).
 */
interface PolicyDefaults {
  readonly breaker: { readonly raw: RawEntry; readonly policy: BreakerPolicy } | null;
  readonly rateLimit: { readonly raw: RawEntry; readonly policy: RateLimitPolicy } | null;
  readonly token: { readonly raw: RawEntry; readonly policy: TokenPolicy } | null;
}

export interface ValidateOptions {
  readonly version: number;
  readonly clock: Clock;
  readonly defaultTimeoutMs: number;
}

/** Validate and compile merged policy files. Throws ConfigError with every problem. */
export function validatePolicy(raw: RawPolicy, options: ValidateOptions, earlier: readonly string[] = []): PolicySnapshot {
  const c = new Checker();
  c.problems.push(...earlier);
  const sections = raw.sections;
  const warnings: string[] = [];
  const defaults = validateDefaults(c, sections.defaults);
  const backends = new Map<string, Backend>();
  for (const [name, entry] of sections.backends) {
    const backend = validateBackend(c, name, entry, options.defaultTimeoutMs);
    if (backend !== null) backends.set(name, backend);
  }
  const roles = new Map<string, Role>();
  for (const [name, entry] of sections.roles) {
    const role = validateRole(c, name, entry, backends, sections.backends, raw.complete, defaults, warnings);
    if (role !== null) roles.set(name, role);
  }
  const agents = new Map<string, Agent>();
  for (const [name, entry] of sections.agents) {
    const agent = validateAgent(c, name, entry, sections.roles, raw.complete, warnings, options.clock.now());
    if (agent !== null) agents.set(name, agent);
  }
  const users = validateUsers(c, sections.users, backends, sections.backends, raw.complete);
  c.fail();
  return Object.freeze({
    version: options.version,
    loadedAt: options.clock.now(),
    files: Object.freeze([...raw.files]),
    backends,
    roles,
    agents,
    users,
    warnings: Object.freeze(warnings),
  });
}

function validateDefaults(c: Checker, entries: ReadonlyMap<string, RawEntry>): PolicyDefaults {
  let breaker: PolicyDefaults['breaker'] = null;
  let rateLimit: PolicyDefaults['rateLimit'] = null;
  let token: PolicyDefaults['token'] = null;
  for (const [key, entry] of entries) {
    const path = `defaults.${key}`;
    if (!DEFAULTS_KEYS.includes(key)) {
      c.add(entry.at, path, unknownKeyMessage(key, DEFAULTS_KEYS));
      continue;
    }
    if (isOff(entry)) {
      c.add(entry.value.at, path, `"off" belongs on a role; leave ${key} out of defaults for none`);
      continue;
    }
    if (entry.value.kind !== 'map') {
      c.add(entry.value.at, path, `expected a map, got ${kindOf(entry.value)}`);
      continue;
    }
    if (key === 'breaker') {
      const policy = validateBreaker(c, entry, path);
      if (policy !== null) breaker = { raw: entry, policy };
    } else if (key === 'rateLimit') {
      if (entry.value.entries.has('scopes')) {
        c.add(entry.value.entries.get('scopes')?.at ?? entry.at, `${path}.scopes`, 'per-scope limits go on a role (roles.NAME.rateLimit.scopes)');
        continue;
      }
      const policy = validateRateLimit(c, entry, path, new Set());
      if (policy !== null) rateLimit = { raw: entry, policy };
    } else {
      const policy = validateTokenPolicy(c, entry, path);
      if (policy !== null) token = { raw: entry, policy };
    }
  }
  return { breaker, rateLimit, token };
}

/** `key: off` (YAML 1.2 reads it as the string "off"). */
function isOff(entry: RawEntry): boolean {
  return entry.value.kind === 'scalar' && entry.value.value === 'off';
}

/**
 * A role's map laid over the default's, key by key: the role's keys win, the others come from
 * `defaults`. Positions stay where each key was written, so a problem points at the right file.
 */
function overlay(base: RawEntry | undefined, entry: RawEntry): RawEntry {
  if (base === undefined || base.value.kind !== 'map' || entry.value.kind !== 'map') return entry;
  return { at: entry.at, value: { kind: 'map', at: entry.value.at, entries: new Map([...base.value.entries, ...entry.value.entries]) } };
}

/** `rateLimit: { rps, burst?, scopes?: { "backend:scope": { rps, burst? } }, violation? }`. */
function validateRateLimit(c: Checker, entry: RawEntry, path: string, grants: ReadonlySet<string>): RateLimitPolicy | null {
  const keys = c.map(entry.value, path, RATE_LIMIT_KEYS);
  if (keys === null) return null;
  const rule = validateRateRule(c, entry, keys, path);
  const violation = c.boolean(keys.get('violation'), `${path}.violation`) ?? false;
  const scopes = new Map<string, RateLimitRule>();
  let ok = rule !== null;
  const scopesEntry = keys.get('scopes');
  const scopeNodes = c.names(scopesEntry?.value, `${path}.scopes`, 'grants to their rate limits');
  for (const [scope, scopeEntry] of scopeNodes ?? []) {
    const sPath = `${path}.scopes.${scope}`;
    if (!grants.has(scope)) {
      c.add(scopeEntry.at, sPath, `"${scope}" is not granted to this role (grants: ${[...grants].join(', ') || 'none'})`);
      ok = false;
      continue;
    }
    const sk = c.map(scopeEntry.value, sPath, ['rps', 'burst']);
    const scopeRule = sk === null ? null : validateRateRule(c, scopeEntry, sk, sPath);
    if (scopeRule === null) ok = false;
    else scopes.set(scope, scopeRule);
  }
  if (scopesEntry !== undefined && scopeNodes === null) ok = false;
  if (!ok || rule === null) return null;
  return Object.freeze({ rps: rule.rps, burst: rule.burst, scopes, violation });
}

function validateRateRule(c: Checker, entry: RawEntry, keys: ReadonlyMap<string, RawEntry>, path: string): RateLimitRule | null {
  const rpsEntry = c.required(keys, 'rps', path, entry.at);
  let rps: number | null = null;
  if (rpsEntry !== undefined) {
    const node = rpsEntry.value;
    if (node.kind === 'scalar' && typeof node.value === 'number' && Number.isFinite(node.value) && node.value > 0 && node.value <= MAX_RPS) rps = node.value;
    else c.add(node.at, `${path}.rps`, `expected calls per second, a number above 0 and at most ${MAX_RPS} (e.g. 20 or 0.5), got ${node.kind === 'scalar' ? describe(node.value) : kindOf(node)}`);
  }
  const burst = keys.has('burst') ? c.integer(keys.get('burst'), `${path}.burst`, 1, MAX_RPS) : rps === null ? null : Math.max(1, Math.ceil(rps));
  if (rps === null || burst === null) return null;
  return Object.freeze({ rps, burst });
}

/** `expires: 2027-03-31` (refused from the next day, 00:00 UTC) or `2027-03-31T18:00:00Z`. */
function parseExpiry(input: unknown): Parsed<number> {
  const text = input instanceof Date ? input.toISOString() : input;
  if (typeof text !== 'string') return { ok: false, error: `expected a date such as 2027-03-31, got ${describe(input)}` };
  const day = DATE_ONLY.exec(text);
  if (day !== null) {
    const [y, m, d] = [Number(day[1]), Number(day[2]), Number(day[3])];
    const at = Date.UTC(y, m - 1, d);
    const back = new Date(at);
    if (back.getUTCFullYear() !== y || back.getUTCMonth() !== m - 1 || back.getUTCDate() !== d) return { ok: false, error: `"${text}" is not a calendar date` };
    return { ok: true, value: at + 86_400_000 };
  }
  if (INSTANT.test(text)) {
    const at = Date.parse(text);
    if (Number.isFinite(at)) return { ok: true, value: at };
  }
  return { ok: false, error: `"${text}" is not a date (use 2027-03-31, or an RFC 3339 time such as 2027-03-31T18:00:00Z)` };
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
  const keys = c.map(entry.value, path, ['kind', 'upstream', 'path', 'timeout', 'scopes', 'description', 'forwardHeaders', 'forwardCookies']);
  if (keys === null) return null;
  const kind = keys.has('kind') ? c.oneOf(keys.get('kind'), `${path}.kind`, ['rest', 'mcp'] as const, 'a backend kind') : 'rest';
  if (kind === null) return null;
  if (kind === 'mcp') return validateMcpBackend(c, name, entry, keys, defaultTimeoutMs, ok);
  if (keys.has('path')) c.add(keys.get('path')?.at ?? entry.at, `${path}.path`, 'only a backend with kind: mcp has an endpoint path (REST backends publish routes in scopes)');
  const forwardHeaders = validateForwardHeaders(c, keys.get('forwardHeaders'), `${path}.forwardHeaders`);
  const forwardCookies = validateForwardCookies(c, keys.get('forwardCookies'), `${path}.forwardCookies`);
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
    // A scope is a list of routes, or { routes, approval, description } to mark them all.
    let routesEntry: RawEntry | undefined = scopeEntry;
    let routesPath = scopePath;
    let scopeApproval: ApprovalPolicy | null = null;
    if (scopeEntry.value.kind === 'map') {
      const sk = c.map(scopeEntry.value, scopePath, ['routes', 'approval', 'description'], MCP_ONLY_SCOPE_KEYS);
      routesEntry = c.required(sk, 'routes', scopePath, scopeEntry.at);
      routesPath = `${scopePath}.routes`;
      c.string(sk?.get('description'), `${scopePath}.description`);
      const approvalEntry = sk?.get('approval');
      if (approvalEntry !== undefined) scopeApproval = validateApproval(c, approvalEntry, `${scopePath}.approval`);
      if (routesEntry === undefined) continue;
    }
    const items = c.list(routesEntry, routesPath);
    if (items === null) continue;
    if (items.length === 0) c.add(routesEntry.at, routesPath, 'needs at least one route');
    const routes: Route[] = [];
    items.forEach((item, i) => {
      const route = validateRouteItem(c, item, `${routesPath}[${i}]`, id, scopeApproval);
      if (route === null) return;
      const problem = table.add(route.route, route.parsed);
      if (problem !== null) c.add(item.at, `${routesPath}[${i}]`, problem);
      else routes.push(route.route);
    });
    scopes.set(scopeName, Object.freeze({ id, backend: name, name: scopeName, routes: Object.freeze(routes) }));
  }
  if (!ok || upstream === null || timeoutMs === null || forwardHeaders === null || forwardCookies === null) return null;
  return Object.freeze({
    name,
    kind: 'rest',
    mcp: null,
    upstream,
    origin: upstream.origin,
    basePath: upstream.pathname.replace(/\/+$/, ''),
    timeoutMs,
    scopes,
    routes: table.build(),
    forwardHeaders: compileForwardHeaders(forwardHeaders),
    forwardCookies: Object.freeze(new Set(forwardCookies)),
  });
}

const MCP_ONLY_SCOPE_KEYS: Readonly<Record<string, string>> = {
  tools: 'tools are granted on a backend with kind: mcp',
  resources: 'resources are granted on a backend with kind: mcp',
  prompts: 'prompts are granted on a backend with kind: mcp',
};
/** MCP tool and prompt names (the MCP spec's tool naming: 1 to 128 of A-Z a-z 0-9 _ - .). */
const MCP_NAME = /^[A-Za-z0-9_.-]{1,128}$/;
const MCP_NAME_HELP = 'names use 1 to 128 of A-Z a-z 0-9 _ - . (compared exactly: no look-alike letters, no case folding)';
/** Request headers of the Streamable HTTP transport (Last-Event-ID is refused: no resumption). */
const MCP_FORWARD_HEADERS = ['mcp-session-id', 'mcp-protocol-version'];
const MCP_PATH = /^(?:\/[A-Za-z0-9._~-]+)+$/;

/**
 * `kind: mcp`: an MCP server over Streamable HTTP at `path` (default /mcp). Its scopes grant
 * tools, resources (URI templates) and prompts instead of routes.
 */
function validateMcpBackend(c: Checker, name: string, entry: RawEntry, keys: ReadonlyMap<string, RawEntry>, defaultTimeoutMs: number, nameOk: boolean): Backend | null {
  const path = `backends.${name}`;
  let ok = nameOk;
  const upstreamText = c.string(c.required(keys, 'upstream', path, entry.at), `${path}.upstream`);
  const upstream = upstreamText === null ? null : checkUpstream(c, upstreamText, keys.get('upstream')?.value.at ?? entry.at, `${path}.upstream`);
  const endpoint = keys.has('path') ? c.string(keys.get('path'), `${path}.path`, { pattern: MCP_PATH, patternHelp: 'is not an endpoint path (e.g. /mcp: "/" then A-Z a-z 0-9 . _ ~ - segments, no trailing "/")' }) : '/mcp';
  if (endpoint !== null && endpoint.split('/').some((s) => s === '.' || s === '..')) {
    c.add(keys.get('path')?.value.at ?? entry.at, `${path}.path`, 'dot segments are not allowed');
    ok = false;
  }
  const timeoutMs = keys.has('timeout') ? c.duration(keys.get('timeout'), `${path}.timeout`, { minMs: 1, maxMs: 3_600_000 }) : defaultTimeoutMs;
  c.string(keys.get('description'), `${path}.description`);
  const forwardHeaders = validateForwardHeaders(c, keys.get('forwardHeaders'), `${path}.forwardHeaders`);
  const forwardCookies = validateForwardCookies(c, keys.get('forwardCookies'), `${path}.forwardCookies`);
  const scopesEntry = c.required(keys, 'scopes', path, entry.at);
  const scopeNodes = c.names(scopesEntry?.value, `${path}.scopes`, 'scopes');
  if (scopeNodes !== null && scopeNodes.size === 0 && scopesEntry !== undefined) c.add(scopesEntry.at, `${path}.scopes`, 'needs at least one scope');
  const scopes = new Map<string, Scope>();
  const tools = new Map<string, Route[]>();
  const prompts = new Map<string, string[]>();
  const resources: Array<{ template: UriTemplate; scope: string }> = [];
  for (const [scopeName, scopeEntry] of scopeNodes ?? []) {
    const scopePath = `${path}.scopes.${scopeName}`;
    if (!SCOPE_NAME.test(scopeName)) {
      c.add(scopeEntry.at, scopePath, 'scope names use letters, digits, . _ -, start with a lower-case letter');
      ok = false;
      continue;
    }
    const id = `${name}:${scopeName}`;
    if (scopeEntry.value.kind !== 'map') {
      c.add(scopeEntry.value.at, scopePath, `an MCP scope is a map such as { tools: [search_tickets] } (keys: tools, resources, prompts, approval, description), got ${kindOf(scopeEntry.value)}`);
      ok = false;
      continue;
    }
    const sk = c.map(scopeEntry.value, scopePath, ['tools', 'resources', 'prompts', 'approval', 'description'], { routes: 'an MCP backend grants tools, resources and prompts, not HTTP routes' });
    if (sk === null) continue;
    c.string(sk.get('description'), `${scopePath}.description`);
    const approvalEntry = sk.get('approval');
    const scopeApproval = approvalEntry === undefined ? null : validateApproval(c, approvalEntry, `${scopePath}.approval`);
    if (!sk.has('tools') && !sk.has('resources') && !sk.has('prompts')) {
      c.add(scopeEntry.at, scopePath, 'grants nothing: list tools, resources or prompts');
      ok = false;
    }
    const routes: Route[] = [];
    (c.list(sk.get('tools'), `${scopePath}.tools`) ?? []).forEach((item, i) => {
      const tool = validateTool(c, item, `${scopePath}.tools[${i}]`, id, scopeApproval);
      if (tool === null) {
        ok = false;
        return;
      }
      const same = tools.get(tool.name) ?? [];
      if (same.some((r) => r.scope === id)) {
        c.add(item.at, `${scopePath}.tools[${i}]`, `tool "${tool.name}" is listed twice in ${id}`);
        ok = false;
        return;
      }
      same.push(tool.route);
      tools.set(tool.name, same);
      routes.push(tool.route);
    });
    (c.list(sk.get('prompts'), `${scopePath}.prompts`) ?? []).forEach((item, i) => {
      const iPath = `${scopePath}.prompts[${i}]`;
      if (item.kind !== 'scalar' || typeof item.value !== 'string' || !MCP_NAME.test(item.value)) {
        c.add(item.at, iPath, `expected a prompt name: ${MCP_NAME_HELP}, got ${item.kind === 'scalar' ? describe(item.value) : kindOf(item)}`);
        ok = false;
        return;
      }
      const same = prompts.get(item.value) ?? [];
      if (!same.includes(id)) same.push(id);
      prompts.set(item.value, same);
    });
    (c.list(sk.get('resources'), `${scopePath}.resources`) ?? []).forEach((item, i) => {
      const iPath = `${scopePath}.resources[${i}]`;
      if (item.kind !== 'scalar' || typeof item.value !== 'string') {
        c.add(item.at, iPath, `expected a URI template such as "tickets://{id}", got ${item.kind === 'scalar' ? describe(item.value) : kindOf(item)}`);
        ok = false;
        return;
      }
      const template = parseUriTemplate(item.value);
      if (typeof template === 'string') {
        c.add(item.at, iPath, template);
        ok = false;
        return;
      }
      resources.push(Object.freeze({ template, scope: id }));
    });
    scopes.set(scopeName, Object.freeze({ id, backend: name, name: scopeName, routes: Object.freeze(routes) }));
  }
  if (!ok || upstream === null || timeoutMs === null || endpoint === null || forwardHeaders === null || forwardCookies === null) return null;
  for (const [tool, list] of tools) tools.set(tool, Object.freeze(list) as Route[]);
  for (const [prompt, list] of prompts) prompts.set(prompt, Object.freeze(list) as string[]);
  return Object.freeze({
    name,
    kind: 'mcp',
    mcp: Object.freeze({ path: endpoint, tools, prompts, resources: Object.freeze(resources) }),
    upstream,
    origin: upstream.origin,
    basePath: upstream.pathname.replace(/\/+$/, ''),
    timeoutMs,
    // The Streamable HTTP headers (RFC-less, MCP 2025-11-25 §Transports) ride beside the defaults.
    forwardHeaders: compileForwardHeaders([...MCP_FORWARD_HEADERS, ...forwardHeaders]),
    forwardCookies: Object.freeze(new Set(forwardCookies)),
    scopes,
    // Never matched: an MCP backend is authorized per JSON-RPC message, not per route.
    routes: new RouteTableBuilder().build(),
  });
}

/** A tool grant: `name`, or `{ name, arguments: { field: [values] }, query: { argument, dialect }, approval }`. */
function validateTool(c: Checker, item: RawNode, path: string, scope: string, scopeApproval: ApprovalPolicy | null): { name: string; route: Route } | null {
  let name: string | null = null;
  let namePath = path;
  let nameAt = item.at;
  let body: BodyConstraint | null = null;
  let query: QueryRoute | null = null;
  let approval = scopeApproval;
  let ok = true;
  if (item.kind === 'scalar') {
    name = typeof item.value === 'string' ? item.value : null;
  } else if (item.kind === 'map') {
    const keys = c.map(item, path, ['name', 'arguments', 'query', 'approval']);
    const nameEntry = c.required(keys, 'name', path, item.at);
    namePath = `${path}.name`;
    nameAt = nameEntry?.value.at ?? item.at;
    if (nameEntry === undefined) return null;
    name = nameEntry.value.kind === 'scalar' && typeof nameEntry.value.value === 'string' ? nameEntry.value.value : null;
    const argsEntry = keys?.get('arguments');
    if (argsEntry !== undefined) {
      body = validateBody(c, argsEntry, `${path}.arguments`);
      ok &&= body !== null;
    }
    const queryEntry = keys?.get('query');
    if (queryEntry !== undefined) {
      const qk = c.map(queryEntry.value, `${path}.query`, ['argument', 'dialect']);
      const field = c.string(c.required(qk, 'argument', `${path}.query`, queryEntry.at), `${path}.query.argument`);
      const dialect = qk?.has('dialect') === true ? c.oneOf(qk.get('dialect'), `${path}.query.dialect`, SQL_DIALECTS, 'a SQL dialect') : 'sqlite';
      query = field === null || dialect === null ? null : Object.freeze({ field, dialect });
      ok &&= query !== null;
    }
    const approvalEntry = keys?.get('approval');
    if (approvalEntry !== undefined) {
      approval = validateApproval(c, approvalEntry, `${path}.approval`);
      ok &&= approval !== null;
    }
  } else {
    c.add(item.at, path, 'expected a tool name, or { name, arguments, query, approval }, got a list');
    return null;
  }
  if (name === null || !MCP_NAME.test(name)) {
    c.add(nameAt, namePath, `expected a tool name: ${MCP_NAME_HELP}, got ${name === null ? 'something else' : JSON.stringify(name)}`);
    return null;
  }
  if (!ok) return null;
  return { name, route: Object.freeze({ method: 'POST', template: `tools/call ${name}`, scope, body, acceptsBody: true, query, queryRules: null, json: null, approval }) };
}

/** A header field name (RFC 9110 §5.1 token), written the way the gateway forwards it. */
const HEADER_NAME = /^[a-z0-9][a-z0-9-]*$/;
/** A cookie name (RFC 6265 §4.1.1 token). */
const COOKIE_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** `forwardHeaders: [x-tenant, ...]`: extra request headers the backend receives (never reserved ones). */
function validateForwardHeaders(c: Checker, entry: RawEntry | undefined, path: string): string[] | null {
  if (entry === undefined) return [];
  const items = c.list(entry, path);
  if (items === null) return null;
  const names: string[] = [];
  let ok = true;
  items.forEach((item, i) => {
    const iPath = `${path}[${i}]`;
    if (item.kind !== 'scalar' || typeof item.value !== 'string' || item.value === '') {
      c.add(item.at, iPath, `expected a header name such as x-tenant-id, got ${item.kind === 'scalar' ? describe(item.value) : kindOf(item)}`);
      ok = false;
      return;
    }
    const name = item.value;
    const normalised = normaliseHeaderName(name);
    const reserved = reservedHeader(normalised);
    if (reserved !== null) {
      const why = reserved === 'cookie' ? 'cookies are listed by name in forwardCookies' : 'the gateway sets or refuses it itself';
      c.add(item.at, iPath, `"${name}" is reserved (${reserved === normalised ? reserved : `${reserved}-*`}): ${why}`);
      ok = false;
    } else if (!HEADER_NAME.test(name)) {
      c.add(item.at, iPath, `"${name}": write header names in lower case with - (e.g. ${HEADER_NAME.test(normalised) ? normalised : 'x-tenant-id'}); the gateway forwards only that exact spelling`);
      ok = false;
    } else if (names.includes(name) || DEFAULT_FORWARD_HEADERS.includes(name)) {
      c.add(item.at, iPath, names.includes(name) ? `"${name}" is listed twice` : `"${name}" is forwarded by default; leave it out`);
      ok = false;
    } else {
      names.push(name);
    }
  });
  return ok ? names : null;
}

/** `forwardCookies: [session_lang, ...]`: the only cookies the backend receives. */
function validateForwardCookies(c: Checker, entry: RawEntry | undefined, path: string): string[] | null {
  if (entry === undefined) return [];
  const items = c.list(entry, path);
  if (items === null) return null;
  const names: string[] = [];
  let ok = true;
  items.forEach((item, i) => {
    const iPath = `${path}[${i}]`;
    if (item.kind !== 'scalar' || typeof item.value !== 'string' || !COOKIE_NAME.test(item.value)) {
      c.add(item.at, iPath, `expected a cookie name (letters, digits and !#$%&'*+-.^_\`|~), got ${item.kind === 'scalar' ? describe(item.value) : kindOf(item)}`);
      ok = false;
    } else if (names.includes(item.value)) {
      c.add(item.at, iPath, `"${item.value}" is listed twice`);
      ok = false;
    } else {
      names.push(item.value);
    }
  });
  return ok ? names : null;
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
  if (url.username !== '' || url.password !== '' || text.includes('?') || text.includes('#')) {
    c.add(at, path, `"${text}" must not carry credentials, a query or a fragment`);
    return null;
  }
  return url;
}

function validateRouteItem(c: Checker, item: RawNode, path: string, scope: string, scopeApproval: ApprovalPolicy | null): { route: Route; parsed: ParsedRoute } | null {
  let text: string | null = null;
  let textPath = path;
  let textAt = item.at;
  let body: BodyConstraint | null = null;
  let bodyOk = true;
  let query: QueryRoute | null = null;
  let acceptsBody = false;
  let queryRules: FieldRules | null = null;
  let json: FieldRules | null = null;
  let jsonAt: Position | null = null;
  let approval = scopeApproval;
  if (item.kind === 'scalar') {
    if (typeof item.value !== 'string') {
      c.add(item.at, path, `expected a route such as "GET /contacts/:id", got ${describe(item.value)}`);
      return null;
    }
    text = item.value;
  } else if (item.kind === 'map') {
    const keys = c.map(item, path, ['route', 'body', 'query', 'additionalQuery', 'sql', 'json', 'approval']);
    const routeEntry = c.required(keys, 'route', path, item.at);
    textPath = `${path}.route`;
    textAt = routeEntry?.value.at ?? item.at;
    text = c.string(routeEntry, textPath);
    const bodyEntry = keys?.get('body');
    if (bodyEntry !== undefined && bodyEntry.value.kind === 'scalar' && typeof bodyEntry.value.value === 'boolean') {
      // `body: true`: this route takes a body even on a method that normally carries none.
      acceptsBody = bodyEntry.value.value;
    } else if (bodyEntry !== undefined) {
      body = validateBody(c, bodyEntry, `${path}.body`);
      bodyOk = body !== null;
      acceptsBody = true;
    }
    const queryEntry = keys?.get('query');
    const sqlEntry = keys?.get('sql');
    const additionalEntry = keys?.get('additionalQuery');
    const additionalQuery = c.boolean(additionalEntry, `${path}.additionalQuery`) ?? false;
    if (queryEntry !== undefined && isSqlMarker(queryEntry)) {
      // The older spelling of `sql:`; query-string rules never hold a plain `field` value.
      if (sqlEntry !== undefined) c.add(queryEntry.at, `${path}.query`, 'the SQL field is given twice (query and sql); keep sql');
      query = validateQueryRoute(c, queryEntry, `${path}.query`);
      bodyOk &&= query !== null;
    } else if (queryEntry !== undefined) {
      queryRules = validateQueryRules(c, queryEntry, additionalQuery, `${path}.query`);
      bodyOk &&= queryRules !== null;
    }
    if (additionalEntry !== undefined && queryRules === null && bodyOk) {
      c.add(additionalEntry.at, `${path}.additionalQuery`, 'applies only beside query parameter rules (query: { name: rule })');
      bodyOk = false;
    }
    if (sqlEntry !== undefined) {
      query = validateQueryRoute(c, sqlEntry, `${path}.sql`);
      bodyOk &&= query !== null;
    }
    const jsonEntry = keys?.get('json');
    if (jsonEntry !== undefined) {
      json = validateJsonRules(c, jsonEntry, `${path}.json`);
      bodyOk &&= json !== null;
      jsonAt = jsonEntry.at;
    }
    const approvalEntry = keys?.get('approval');
    if (approvalEntry !== undefined) {
      approval = validateApproval(c, approvalEntry, `${path}.approval`);
      bodyOk &&= approval !== null;
    }
  } else {
    c.add(item.at, path, 'expected a route such as "GET /contacts/:id", or { route, body }, got a list');
    return null;
  }
  if (text === null) return null;
  const parsed = parseRoute(text);
  if (typeof parsed === 'string') {
    c.add(textAt, textPath, parsed);
    return null;
  }
  if (body !== null && (parsed.method === 'GET' || parsed.method === 'HEAD')) {
    c.add(textAt, `${path}.body`, `${parsed.method} requests carry no body to check`);
    return null;
  }
  if (query !== null && (parsed.method === 'GET' || parsed.method === 'HEAD')) {
    c.add(textAt, `${path}.query`, `${parsed.method} requests carry no body with SQL to check`);
    return null;
  }
  if (json !== null && jsonAt !== null && !acceptsBody && NO_BODY_ROUTE_METHODS.has(parsed.method)) {
    c.add(jsonAt, `${path}.json`, `${parsed.method} requests carry no body; add body: true if this route takes one`);
    return null;
  }
  if (!bodyOk) return null;
  if (query !== null || json !== null) acceptsBody = true;
  return { route: Object.freeze({ method: parsed.method, template: `${parsed.method} ${parsed.path}`, scope, body, acceptsBody, query, queryRules, json, approval }), parsed };
}

/** `query: { field: sql, dialect: sqlite }` on a route: its JSON body field `field` holds SQL. */
function validateQueryRoute(c: Checker, entry: RawEntry, path: string): QueryRoute | null {
  const keys = c.map(entry.value, path, ['field', 'dialect']);
  if (keys === null) return null;
  const field = c.string(c.required(keys, 'field', path, entry.at), `${path}.field`);
  const dialect = keys.has('dialect') ? c.oneOf(keys.get('dialect'), `${path}.dialect`, SQL_DIALECTS, 'a SQL dialect') : 'sqlite';
  if (field === null || dialect === null) return null;
  return Object.freeze({ field, dialect });
}

/** `approval: required`, or `approval: { ttl: 30m }` (required, with its own expiry). */
function validateApproval(c: Checker, entry: RawEntry, path: string): ApprovalPolicy | null {
  const node = entry.value;
  if (node.kind === 'scalar' && node.value === 'required') return Object.freeze({ ttlMs: DEFAULT_APPROVAL_TTL_MS });
  if (node.kind === 'map') {
    const keys = c.map(node, path, ['ttl']);
    const ttlMs = c.duration(c.required(keys, 'ttl', path, entry.at), `${path}.ttl`, { minMs: 10_000, maxMs: MAX_APPROVAL_TTL_MS });
    return ttlMs === null ? null : Object.freeze({ ttlMs });
  }
  c.add(node.at, path, `${node.kind === 'scalar' ? describe(node.value) : kindOf(node)} is not an approval setting (use "required", or { ttl: 30m })`);
  return null;
}

function validateBody(c: Checker, entry: RawEntry, path: string): BodyConstraint | null {
  const fields = c.names(entry.value, path, 'JSON fields to their allowed values');
  if (fields === null) return null;
  if (fields.size === 0) {
    c.add(entry.value.at, path, 'needs at least one field');
    return null;
  }
  let ok = true;
  const out = new Map<string, ReadonlySet<string>>();
  for (const [field, valuesEntry] of fields) {
    const values = c.list(valuesEntry, `${path}.${field}`);
    if (values === null) {
      ok = false;
      continue;
    }
    const set = new Set<string>();
    for (const [i, v] of values.entries()) {
      if (v.kind === 'scalar' && typeof v.value === 'string') set.add(v.value);
      else {
        c.add(v.at, `${path}.${field}[${i}]`, `expected a string, got ${v.kind === 'scalar' ? describe(v.value) : kindOf(v)}`);
        ok = false;
      }
    }
    if (values.length === 0) {
      c.add(valuesEntry.value.at, `${path}.${field}`, 'needs at least one allowed value');
      ok = false;
    }
    out.set(field, set);
  }
  return ok ? Object.freeze({ fields: out }) : null;
}

/** `complete` is false when a file could not be parsed: a name missing here may be defined there. */
function validateRole(
  c: Checker,
  name: string,
  entry: RawEntry,
  backends: ReadonlyMap<string, Backend>,
  rawBackends: ReadonlyMap<string, RawEntry>,
  complete: boolean,
  defaults: PolicyDefaults,
  warnings: string[],
): Role | null {
  const path = `roles.${name}`;
  if (!ROLE_NAME.test(name)) c.add(entry.at, path, 'role names use a-z, 0-9, _ and -, start with a letter');
  const keys = c.map(entry.value, path, ROLE_KEYS);
  if (keys === null) return null;
  const description = c.string(keys.get('description'), `${path}.description`) ?? '';
  const readOnly = c.boolean(keys.get('readOnly'), `${path}.readOnly`) ?? false;
  const grantNodes = c.list(c.required(keys, 'grants', path, entry.at), `${path}.grants`) ?? [];
  const grants = new Set<string>();
  const reached = new Set<string>();
  grantNodes.forEach((node, i) => {
    const gPath = `${path}.grants[${i}]`;
    if (node.kind !== 'scalar' || typeof node.value !== 'string') {
      c.add(node.at, gPath, `expected "backend:scope", got ${node.kind === 'scalar' ? describe(node.value) : kindOf(node)}`);
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
      if (!rawBackends.has(backendName) && complete) c.add(node.at, gPath, `unknown backend "${backendName}" in "${grant}" (backends: ${[...rawBackends.keys()].join(', ') || 'none'})`);
      return;
    }
    if (!backend.scopes.has(scopeName)) {
      c.add(node.at, gPath, `unknown scope "${grant}" (${backendName} has: ${[...backend.scopes.keys()].join(', ') || 'no scopes'})`);
      return;
    }
    if (grants.has(grant)) {
      c.add(node.at, gPath, `"${grant}" is granted twice`);
      return;
    }
    grants.add(grant);
    reached.add(backendName);
  });
  const tokenEntry = keys.get('token');
  const token = tokenEntry === undefined && defaults.token !== null ? defaults.token.policy : validateTokenPolicy(c, tokenEntry === undefined ? undefined : overlay(defaults.token?.raw, tokenEntry), `${path}.token`);
  // The breaker and the rate limit: inherited from defaults, overridden key by key, or `off`.
  const breakerEntry = keys.get('breaker');
  let breaker: BreakerPolicy | null = null;
  let breakerOk = true;
  if (breakerEntry === undefined) {
    breaker = defaults.breaker?.policy ?? null;
    if (breaker === null) warnings.push(problemAt(entry.at, path, 'has no breaker (no roles.' + name + '.breaker and no defaults.breaker): this agent is never suspended for calls outside its grant'));
  } else if (isOff(breakerEntry)) {
    warnings.push(problemAt(breakerEntry.value.at, `${path}.breaker`, 'the breaker is off: agents of this role are never suspended for calls outside their grant'));
  } else {
    breaker = validateBreaker(c, overlay(defaults.breaker?.raw, breakerEntry), `${path}.breaker`);
    breakerOk = breaker !== null;
  }
  const rateEntry = keys.get('rateLimit');
  let rateLimit: RateLimitPolicy | null = null;
  let rateOk = true;
  if (rateEntry === undefined) rateLimit = defaults.rateLimit?.policy ?? null;
  else if (!isOff(rateEntry)) {
    rateLimit = validateRateLimit(c, overlay(defaults.rateLimit?.raw, rateEntry), `${path}.rateLimit`, grants);
    rateOk = rateLimit !== null;
  }
  const maskEntry = keys.get('mask');
  const mask = maskEntry === undefined ? new Map<string, MaskPlan>() : validateMask(c, maskEntry, `${path}.mask`, reached, rawBackends);
  const queryEntry = keys.get('query');
  const query = queryEntry === undefined ? null : validateQueryConstraint(c, queryEntry, `${path}.query`, grants, backends);
  const networkEntry = keys.get('network');
  const network = networkEntry === undefined ? null : validateNetwork(c, networkEntry, `${path}.network`);
  const enforce = c.boolean(keys.get('enforce'), `${path}.enforce`) ?? true;
  const approval = new Set<string>();
  const approvalEntry = keys.get('approval');
  const approvalNodes = approvalEntry === undefined ? [] : (c.list(approvalEntry, `${path}.approval`) ?? []);
  approvalNodes.forEach((node, i) => {
    const aPath = `${path}.approval[${i}]`;
    if (node.kind !== 'scalar' || typeof node.value !== 'string') {
      c.add(node.at, aPath, `expected a grant of this role ("backend:scope"), got ${node.kind === 'scalar' ? describe(node.value) : kindOf(node)}`);
    } else if (!grants.has(node.value)) {
      c.add(node.at, aPath, `"${node.value}" is not granted to this role (grants: ${[...grants].join(', ') || 'none'})`);
    } else {
      approval.add(node.value);
    }
  });
  if (approvalEntry !== undefined && approvalNodes.length === 0 && approvalEntry.value.kind === 'seq') {
    c.add(approvalEntry.value.at, `${path}.approval`, 'lists the grants that need approval; leave the key out for none');
  }
  if (readOnly) {
    const mcp = [...reached].filter((b) => backends.get(b)?.kind === 'mcp');
    if (mcp.length > 0) {
      // readOnly is about HTTP methods, and every MCP message is a POST: grant read tools instead.
      c.add(keys.get('readOnly')?.at ?? entry.at, `${path}.readOnly`, `cannot apply to MCP backend ${mcp.map((b) => `"${b}"`).join(', ')} (every MCP call is a POST); grant only its reading tools instead`);
      return null;
    }
  }
  if (token === null || !breakerOk || !rateOk) return null;
  if (mask === null || (queryEntry !== undefined && query === null) || (networkEntry !== undefined && network === null)) return null;
  return Object.freeze({ name, description, grants, backends: reached, readOnly, token, breaker, rateLimit, mask, query, network, approval, enforce });
}

/** `mask: { backend: [field paths] }`: the backends must be ones the role reaches. */
function validateMask(
  c: Checker,
  entry: RawEntry,
  path: string,
  reached: ReadonlySet<string>,
  rawBackends: ReadonlyMap<string, RawEntry>,
): ReadonlyMap<string, MaskPlan> | null {
  const backends = c.names(entry.value, path, 'backends to the fields masked in their responses');
  if (backends === null) return null;
  const plans = new Map<string, MaskPlan>();
  let ok = true;
  for (const [backend, pathsEntry] of backends) {
    const bPath = `${path}.${backend}`;
    if (!reached.has(backend)) {
      const known = rawBackends.has(backend);
      c.add(pathsEntry.at, bPath, known ? `this role reaches no route of backend "${backend}" (it reaches: ${[...reached].join(', ') || 'none'})` : `unknown backend "${backend}" (backends: ${[...rawBackends.keys()].join(', ') || 'none'})`);
      ok = false;
      continue;
    }
    const items = c.list(pathsEntry, bPath);
    if (items === null) {
      ok = false;
      continue;
    }
    if (items.length === 0) {
      c.add(pathsEntry.value.at, bPath, 'needs at least one field path');
      ok = false;
      continue;
    }
    const paths: string[] = [];
    const rules: MaskRule[] = [];
    items.forEach((item, i) => {
      const iPath = `${bPath}[${i}]`;
      if (item.kind !== 'scalar' || (typeof item.value !== 'string' && typeof item.value !== 'number')) {
        c.add(item.at, iPath, `expected a field path such as email or contacts.phone, got ${item.kind === 'scalar' ? describe(item.value) : kindOf(item)}`);
        ok = false;
        return;
      }
      const text = String(item.value);
      const rule = parseMaskPath(text);
      if (typeof rule === 'string') {
        c.add(item.at, iPath, rule);
        ok = false;
        return;
      }
      if (paths.includes(text)) {
        c.add(item.at, iPath, `"${text}" is listed twice`);
        ok = false;
        return;
      }
      paths.push(text);
      rules.push(rule);
    });
    plans.set(backend, Object.freeze({ paths: Object.freeze(paths), rules: Object.freeze(rules) }));
  }
  return ok ? plans : null;
}

/** `query: { aggregateOnly, tables }`: the role must reach at least one route marked `query`. */
function validateQueryConstraint(c: Checker, entry: RawEntry, path: string, grants: ReadonlySet<string>, backends: ReadonlyMap<string, Backend>): QueryConstraint | null {
  const keys = c.map(entry.value, path, ['aggregateOnly', 'tables']);
  if (keys === null) return null;
  const aggregateOnly = c.boolean(keys.get('aggregateOnly'), `${path}.aggregateOnly`) ?? true;
  const tablesEntry = c.required(keys, 'tables', path, entry.at);
  const items = c.list(tablesEntry, `${path}.tables`);
  if (items === null) return null;
  const tables = new Set<string>();
  let ok = true;
  items.forEach((item, i) => {
    const tPath = `${path}.tables[${i}]`;
    if (item.kind !== 'scalar' || typeof item.value !== 'string' || !TABLE_NAME.test(item.value)) {
      c.add(item.at, tPath, `expected a table name (letters, digits and _, not starting with a digit), got ${item.kind === 'scalar' ? describe(item.value) : kindOf(item)}`);
      ok = false;
      return;
    }
    tables.add(item.value.toLowerCase());
  });
  if (items.length === 0 && tablesEntry !== undefined) {
    c.add(tablesEntry.value.at, `${path}.tables`, 'needs at least one table');
    ok = false;
  }
  let queryRoutes = 0;
  for (const grant of grants) {
    const colon = grant.indexOf(':');
    const scope = backends.get(grant.slice(0, colon))?.scopes.get(grant.slice(colon + 1));
    for (const route of scope?.routes ?? []) if (route.query !== null) queryRoutes++;
  }
  if (queryRoutes === 0 && grants.size > 0) {
    // The constraint would never run: say so rather than let the operator believe it is on.
    c.add(entry.at, path, 'none of this role\'s grants has a route marked query: { field, dialect }; the constraint would never apply');
    ok = false;
  }
  if (!ok) return null;
  return Object.freeze({ aggregateOnly, tables });
}

/** `network: { allow: [cidr...] }`. */
function validateNetwork(c: Checker, entry: RawEntry, path: string): NetworkPolicy | null {
  const keys = c.map(entry.value, path, ['allow']);
  if (keys === null) return null;
  const allowEntry = c.required(keys, 'allow', path, entry.at);
  const allow = allowEntry === undefined ? null : validateCidrs(c, allowEntry, `${path}.allow`);
  return allow === null ? null : Object.freeze({ allow });
}

/** A non-empty list of IPv4/IPv6 networks. Shared with the config's `trustedProxies`. */
export function validateCidrs(c: Checker, entry: RawEntry, path: string): NetworkSet | null {
  const items = c.list(entry, path);
  if (items === null) return null;
  if (items.length === 0) {
    c.add(entry.value.at, path, 'needs at least one network (e.g. 10.0.0.0/8)');
    return null;
  }
  const parsed: Array<{ text: string; parsed: ParsedCidr }> = [];
  let ok = true;
  items.forEach((item, i) => {
    const iPath = `${path}[${i}]`;
    if (item.kind !== 'scalar' || typeof item.value !== 'string') {
      c.add(item.at, iPath, `expected a network such as 10.0.0.0/8 or fd00::/8, got ${item.kind === 'scalar' ? describe(item.value) : kindOf(item)}`);
      ok = false;
      return;
    }
    const cidr = parseCidr(item.value);
    if (typeof cidr === 'string') {
      c.add(item.at, iPath, cidr);
      ok = false;
      return;
    }
    parsed.push({ text: item.value, parsed: cidr });
  });
  return ok ? buildNetworkSet(parsed) : null;
}

/** `breaker: { violations, window, cooldown (duration or manual), maxCooldown?, revokeTokens? }`. */
function validateBreaker(c: Checker, entry: RawEntry, path: string): BreakerPolicy | null {
  const keys = c.map(entry.value, path, BREAKER_KEYS);
  if (keys === null) return null;
  const at = entry.at;
  const violations = c.integer(c.required(keys, 'violations', path, at), `${path}.violations`, 1, 1_000_000);
  const windowMs = c.duration(c.required(keys, 'window', path, at), `${path}.window`, { minMs: 1000 });
  const cooldownEntry = c.required(keys, 'cooldown', path, at);
  const cooldown = c.parsed(cooldownEntry, `${path}.cooldown`, parseCooldown);
  const cooldownMs = cooldown === 'manual' ? null : cooldown;
  if (cooldownEntry !== undefined && cooldownMs !== null && cooldownMs < 1000) c.add(cooldownEntry.value.at, `${path}.cooldown`, 'must be at least 1s');
  const maxEntry = keys.get('maxCooldown');
  const maxCooldownMs = maxEntry === undefined ? Math.max(DEFAULT_MAX_COOLDOWN_MS, cooldownMs ?? 0) : c.duration(maxEntry, `${path}.maxCooldown`, { minMs: Math.max(cooldownMs ?? 0, 1000) });
  const revokeTokens = c.boolean(keys.get('revokeTokens'), `${path}.revokeTokens`) ?? false;
  if (violations === null || windowMs === null || cooldown === null || (cooldownMs !== null && cooldownMs < 1000) || maxCooldownMs === null) return null;
  return Object.freeze({ violations, windowMs, cooldownMs, maxCooldownMs, revokeTokens });
}

function validateTokenPolicy(c: Checker, entry: RawEntry | undefined, path: string): TokenPolicy | null {
  const defaults: TokenPolicy = { ttlSeconds: DEFAULT_TTL_MS / 1000, session: 'multi', idleTimeoutSeconds: null, maxUses: null, rotateSeconds: null, maxDelegationDepth: 1 };
  if (entry === undefined) return Object.freeze(defaults);
  const keys = c.map(entry.value, path, TOKEN_KEYS);
  if (keys === null) return null;
  const ttl = keys.has('ttl') ? c.duration(keys.get('ttl'), `${path}.ttl`, { minMs: 1000, maxMs: MAX_TTL_MS }) : DEFAULT_TTL_MS;
  const session = c.oneOf(keys.get('session'), `${path}.session`, ['single', 'multi'], 'a session mode') ?? 'multi';
  const idle = keys.has('idleTimeout') ? c.duration(keys.get('idleTimeout'), `${path}.idleTimeout`, { minMs: 1000 }) : null;
  const maxUses = keys.has('maxUses') ? c.integer(keys.get('maxUses'), `${path}.maxUses`, 1, 1_000_000_000) : null;
  const rotate = keys.has('rotate') ? c.duration(keys.get('rotate'), `${path}.rotate`, { minMs: 60_000 }) : null;
  const depth = keys.has('maxDelegationDepth') ? c.integer(keys.get('maxDelegationDepth'), `${path}.maxDelegationDepth`, 0, MAX_DELEGATION_DEPTH) : 1;
  if (ttl === null || depth === null) return null;
  return Object.freeze({
    ttlSeconds: Math.floor(ttl / 1000),
    session,
    idleTimeoutSeconds: idle === null ? null : Math.floor(idle / 1000),
    maxUses,
    rotateSeconds: rotate === null ? null : Math.floor(rotate / 1000),
    maxDelegationDepth: depth,
  });
}

function validateAgent(c: Checker, id: string, entry: RawEntry, roles: ReadonlyMap<string, RawEntry>, complete: boolean, warnings: string[], now: number): Agent | null {
  const path = `agents.${id}`;
  let ok = true;
  if (!AGENT_ID.test(id)) {
    c.add(entry.at, path, 'agent ids use a-z, 0-9, . _ -, start with a letter or digit, at most 63 characters');
    ok = false;
  }
  const keys = c.map(entry.value, path, ['role', 'owner', 'description', 'credentials', 'network', 'expires']);
  if (keys === null) return null;
  const roleEntry = c.required(keys, 'role', path, entry.at);
  const role = c.string(roleEntry, `${path}.role`);
  if (role !== null && !roles.has(role)) {
    if (complete) c.add(roleEntry?.value.at ?? entry.at, `${path}.role`, `role "${role}" is not defined`);
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
  const networkEntry = keys.get('network');
  const network = networkEntry === undefined ? null : validateNetwork(c, networkEntry, `${path}.network`);
  const expiresEntry = keys.get('expires');
  const expiresAt = c.parsed(expiresEntry, `${path}.expires`, parseExpiry);
  if (expiresEntry !== undefined && expiresAt !== null && expiresAt <= now) {
    warnings.push(problemAt(expiresEntry.value.at, `${path}.expires`, `expired on ${new Date(expiresAt).toISOString()}: the agent is refused (agent_expired); remove it or extend the date`));
  }
  if (!ok || role === null || owner === null || (networkEntry !== undefined && network === null) || (expiresEntry !== undefined && expiresAt === null)) return null;
  return Object.freeze({ id, role, owner, description, credentials: Object.freeze(credentials), network, expiresAt });
}

function validateJwk(c: Checker, entry: RawEntry, path: string): Readonly<Record<string, unknown>> | null {
  const node = entry.value;
  if (node.kind !== 'map') {
    c.add(node.at, path, `expected a public JWK map, got ${kindOf(node)}`);
    return null;
  }
  const jwk: Record<string, unknown> = {};
  for (const [key, member] of node.entries) {
    const value = member.value;
    if (value.kind === 'scalar') jwk[key] = value.value;
    else if (value.kind === 'seq' && value.items.every((i) => i.kind === 'scalar')) jwk[key] = Object.freeze(value.items.map((i) => (i.kind === 'scalar' ? i.value : null)));
    else {
      c.add(value.at, `${path}.${key}`, 'JWK members are plain values or lists of them');
      return null;
    }
  }
  const secret = PRIVATE_JWK_MEMBERS.filter((m) => Object.hasOwn(jwk, m));
  if (secret.length > 0) {
    // A private key in a policy file is a leaked key: refuse it rather than strip it.
    c.add(node.at, path, `contains private key material (${secret.map((m) => `"${m}"`).join(', ')}); a policy holds only the public key`);
    return null;
  }
  const memberAt = (member: string): Position => node.entries.get(member)?.value.at ?? node.at;
  const curve = jwk.kty === 'OKP' ? 'Ed25519' : jwk.kty === 'EC' ? 'P-256' : null;
  if (curve === null) {
    c.add(memberAt('kty'), `${path}.kty`, `${describe(jwk.kty)} is not a supported key type (allowed: OKP with crv Ed25519, EC with crv P-256)`);
    return null;
  }
  if (jwk.crv !== curve) {
    c.add(memberAt('crv'), `${path}.crv`, `${describe(jwk.crv)} is not supported with kty ${String(jwk.kty)} (allowed: ${curve})`);
    return null;
  }
  const coordinates = curve === 'Ed25519' ? ['x'] : ['x', 'y'];
  let ok = true;
  for (const member of coordinates) {
    const value = jwk[member];
    const at = memberAt(member);
    // 32 bytes, base64url without padding (RFC 8037 §2, RFC 7518 §6.2.1.2).
    if (value === undefined) c.add(at, `${path}.${member}`, 'is required (32 bytes in base64url)');
    else if (typeof value !== 'string' || !/^[A-Za-z0-9_-]{43}$/.test(value)) c.add(at, `${path}.${member}`, `${describe(value)} is not 32 bytes in base64url`);
    else continue;
    ok = false;
  }
  return ok ? Object.freeze(jwk) : null;
}

/**
 * `users:` claim name -> claim value -> scopes, e.g. `users: { groups: { sales: [crm:contacts.read] } }`:
 * a user whose token's `groups` claim holds (or is) `sales` may use crm:contacts.read.
 */
function validateUsers(
  c: Checker,
  claims: ReadonlyMap<string, RawEntry>,
  backends: ReadonlyMap<string, Backend>,
  rawBackends: ReadonlyMap<string, RawEntry>,
  complete: boolean,
): UserRights {
  const out = new Map<string, ReadonlyMap<string, ReadonlySet<string>>>();
  for (const [claim, entry] of claims) {
    const path = `users.${claim}`;
    if (!CLAIM_NAME.test(claim)) {
      c.add(entry.at, path, 'a claim name uses letters, digits, _ . : -, and starts with a letter or _');
      continue;
    }
    if (claim === 'sub' || claim === 'act') {
      c.add(entry.at, path, `"${claim}" cannot grant rights (use a claim such as groups, roles or scope)`);
      continue;
    }
    const values = c.names(entry.value, path, 'claim values to scopes');
    if (values === null) continue;
    const byValue = new Map<string, ReadonlySet<string>>();
    for (const [value, scopesEntry] of values) {
      const vPath = `${path}.${value}`;
      const items = c.list(scopesEntry, vPath);
      if (items === null) continue;
      const scopes = new Set<string>();
      items.forEach((node, i) => {
        const sPath = `${vPath}[${i}]`;
        if (node.kind !== 'scalar' || typeof node.value !== 'string') {
          c.add(node.at, sPath, `expected "backend:scope", got ${node.kind === 'scalar' ? describe(node.value) : kindOf(node)}`);
          return;
        }
        const id = node.value;
        const colon = id.indexOf(':');
        const backendName = colon === -1 ? '' : id.slice(0, colon);
        const backend = backends.get(backendName);
        if (colon === -1) c.add(node.at, sPath, `"${id}" must be backend:scope (e.g. crm:contacts.read)`);
        else if (backend === undefined) {
          if (!rawBackends.has(backendName) && complete) c.add(node.at, sPath, `unknown backend "${backendName}" in "${id}" (backends: ${[...rawBackends.keys()].join(', ') || 'none'})`);
        } else if (!backend.scopes.has(id.slice(colon + 1))) {
          c.add(node.at, sPath, `unknown scope "${id}" (${backendName} has: ${[...backend.scopes.keys()].join(', ') || 'no scopes'})`);
        } else scopes.add(id);
      });
      byValue.set(value, scopes);
    }
    out.set(claim, byValue);
  }
  return out;
}

/** A breaker cooldown: a duration, or `manual` (open until an operator revives the agent). */
function parseCooldown(input: unknown): Parsed<number | 'manual'> {
  if (input === 'manual') return { ok: true, value: 'manual' };
  const parsed = parseDuration(input);
  return parsed.ok ? parsed : { ok: false, error: `${parsed.error}, or "manual"` };
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
