// `kind: mcp` backends: the Streamable HTTP endpoint, and tool, resource and prompt grants per
// scope (a tool may carry argument values, a SQL argument and an approval).
import { compileForwardHeaders, compileResponseHeaders, parseUriTemplate, RouteTableBuilder } from '../compile.js';
import type { RawEntry, RawNode } from '../load.js';
import type { ApprovalPolicy, Backend, BodyConstraint, QueryRoute, Route, Scope, UriTemplate } from '../types.js';
import { describe } from '../units.js';
import { kindOf, type Checker } from './checker.js';
import { checkUpstream, validateForwardCookies, validateForwardHeaders, validateResponseHeaders } from './forwarding.js';
import { SCOPE_NAME, SQL_DIALECTS, validateApproval, validateBody } from './routes.js';

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
export function validateMcpBackend(c: Checker, name: string, entry: RawEntry, keys: ReadonlyMap<string, RawEntry>, defaultTimeoutMs: number, nameOk: boolean): Backend | null {
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
  const responseHeaders = validateResponseHeaders(c, keys.get('responseHeaders'), `${path}.responseHeaders`);
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
  if (!ok || upstream === null || timeoutMs === null || endpoint === null || forwardHeaders === null || forwardCookies === null || responseHeaders === null) return null;
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
    responseHeaders: compileResponseHeaders(responseHeaders),
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
