// The `backends:` section: one backend's name, kind, upstream, timeout and scopes of routes
// (MCP backends are checked in mcp.ts).
import { compileForwardHeaders, compileResponseHeaders, RouteTableBuilder } from '../compile.js';
import type { RawEntry } from '../load.js';
import type { ApprovalPolicy, Backend, Route, Scope } from '../types.js';
import type { Checker } from './checker.js';
import { checkUpstream, validateForwardCookies, validateForwardHeaders, validateResponseHeaders } from './forwarding.js';
import { validateMcpBackend } from './mcp.js';
import { SCOPE_NAME, validateApproval, validateRouteItem } from './routes.js';

const BACKEND_NAME = /^[a-z][a-z0-9-]{0,31}$/;

/** The token broker answers /oauth/* on the agent port (/.well-known/* cannot be a backend name). */
const RESERVED_BACKENDS = new Set(['oauth']);

export function validateBackend(c: Checker, name: string, entry: RawEntry, defaultTimeoutMs: number): Backend | null {
  const path = `backends.${name}`;
  let ok = true;
  if (!BACKEND_NAME.test(name)) {
    c.add(entry.at, path, 'backend names use a-z, 0-9 and -, start with a letter, at most 32 characters');
    ok = false;
  } else if (RESERVED_BACKENDS.has(name)) {
    c.add(entry.at, path, `"${name}" is reserved for the gateway's own endpoints`);
    ok = false;
  }
  const keys = c.map(entry.value, path, ['kind', 'upstream', 'path', 'timeout', 'scopes', 'description', 'forwardHeaders', 'forwardCookies', 'responseHeaders']);
  if (keys === null) return null;
  const kind = keys.has('kind') ? c.oneOf(keys.get('kind'), `${path}.kind`, ['rest', 'mcp'] as const, 'a backend kind') : 'rest';
  if (kind === null) return null;
  if (kind === 'mcp') return validateMcpBackend(c, name, entry, keys, defaultTimeoutMs, ok);
  if (keys.has('path')) c.add(keys.get('path')?.at ?? entry.at, `${path}.path`, 'only a backend with kind: mcp has an endpoint path (REST backends publish routes in scopes)');
  const forwardHeaders = validateForwardHeaders(c, keys.get('forwardHeaders'), `${path}.forwardHeaders`);
  const forwardCookies = validateForwardCookies(c, keys.get('forwardCookies'), `${path}.forwardCookies`);
  const responseHeaders = validateResponseHeaders(c, keys.get('responseHeaders'), `${path}.responseHeaders`);
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
  if (!ok || upstream === null || timeoutMs === null || forwardHeaders === null || forwardCookies === null || responseHeaders === null) return null;
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
    responseHeaders: compileResponseHeaders(responseHeaders),
  });
}

const MCP_ONLY_SCOPE_KEYS: Readonly<Record<string, string>> = {
  tools: 'tools are granted on a backend with kind: mcp',
  resources: 'resources are granted on a backend with kind: mcp',
  prompts: 'prompts are granted on a backend with kind: mcp',
};
