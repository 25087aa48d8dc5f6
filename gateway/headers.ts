// The one place that decides which headers cross the gateway, in both directions, for plain
// requests (forward) and WebSocket upgrades alike: an allowlist per backend for what reaches it,
// another for what its answers carry back to the agent, both compiled at policy load, plus what
// the gateway states itself. Request names are compared normalised (lower-case, `_` and `.` read as
// `-`, the way CGI, WSGI, PHP and several proxies map them). Pure; no dependency can fail here.
import { randomFillSync } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import type { InboundRequest } from './context.js';
import type { Principal } from './tokens/claims.js';
import { GatewayError } from './errors.js';
import type { Backend } from './policy/types.js';

/**
 * End-to-end headers every backend receives when the agent sends them: content negotiation,
 * caching validators, content type and encoding, the user agent. Tracing and the request id are
 * stated by the gateway itself (a continued `traceparent`, its own `x-request-id`).
 */
export const DEFAULT_FORWARD_HEADERS: readonly string[] = Object.freeze([
  'accept', 'accept-charset', 'accept-encoding', 'accept-language',
  'cache-control', 'if-match', 'if-none-match', 'if-modified-since', 'if-unmodified-since', 'if-range', 'range',
  'content-type', 'content-encoding', 'content-language',
  'user-agent',
]);

/**
 * Answer headers every agent receives when the backend sends them: what describes the
 * representation, its caching and ranges, and when to come back. `location` and
 * `content-location` are rewritten to the gateway path, or dropped when they point elsewhere.
 * Anything else a backend answers with (its cookies, its server banner, its auth challenge, its
 * internal headers) stays behind unless the backend lists it in `responseHeaders`.
 */
export const DEFAULT_RESPONSE_HEADERS: readonly string[] = Object.freeze([
  'content-type', 'content-length', 'content-encoding', 'content-language', 'content-range', 'content-disposition',
  'cache-control', 'expires', 'etag', 'last-modified', 'vary', 'age',
  'accept-ranges', 'allow', 'retry-after', 'location', 'content-location',
]);

/** Handshake headers a WebSocket backend answers with beside the allowlist (RFC 6455 §4.2.2). */
const WEBSOCKET_ANSWER_HEADERS: readonly string[] = ['sec-websocket-accept', 'sec-websocket-protocol', 'sec-websocket-extensions'];

const GATEWAY_SETS = 'the gateway sets or refuses it itself';
/**
 * Answer names a backend may not add to its `responseHeaders`, with why. Normalised names are
 * compared exactly, except the gateway's own families (`x-agentgate-*`, `sec-websocket-*`).
 */
const RESERVED_RESPONSE: ReadonlyMap<string, string> = new Map([
  ...['set-cookie', 'set-cookie2'].map((name) => [name, 'cookies are listed by name in forwardCookies'] as const),
  ...['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade'].map(
    (name) => [name, 'it describes the backend\'s connection, not the answer'] as const,
  ),
  ...['www-authenticate', 'proxy-authenticate', 'proxy-authorization', 'authentication-info', 'proxy-authentication-info'].map(
    (name) => [name, 'agents authenticate to the gateway, never to the backend'] as const,
  ),
  ...['alt-svc', 'strict-transport-security'].map((name) => [name, 'it would speak for the gateway\'s own origin'] as const),
  ...['x-request-id', 'ratelimit', 'ratelimit-policy', 'mcp-session-id'].map((name) => [name, GATEWAY_SETS] as const),
]);
const RESERVED_RESPONSE_FAMILIES: readonly string[] = ['x-agentgate', 'sec-websocket'];

/** The reserved answer name a (normalised) header name falls under (`x-agentgate-*`), with why, or null. */
export function reservedResponseHeader(normalised: string): readonly [string, string] | null {
  const why = RESERVED_RESPONSE.get(normalised);
  if (why !== undefined) return [normalised, why];
  for (const family of RESERVED_RESPONSE_FAMILIES) {
    if (normalised === family || normalised.startsWith(`${family}-`)) return [`${family}-*`, GATEWAY_SETS];
  }
  return null;
}

/** Handshake headers a WebSocket backend needs beside the backend's allowlist (RFC 6455 §4.1). */
const WEBSOCKET_HEADERS: readonly string[] = ['sec-websocket-key', 'sec-websocket-version', 'sec-websocket-protocol', 'sec-websocket-extensions'];

/**
 * Names no agent may set and no backend may widen its allowlist with. A normalised name equal to
 * one of these, or starting with one followed by `-`, is reserved.
 */
const RESERVED: readonly string[] = [
  // The gateway's identity, provenance and tracing statements.
  'x-agentgate', 'forwarded', 'x-forwarded', 'x-real-ip', 'x-client-ip', 'x-cluster-client-ip', 'true-client-ip',
  'client-ip', 'x-originating-ip', 'x-remote-ip', 'x-remote-addr', 'x-host', 'x-original-host', 'via',
  'x-request-id', 'traceparent', 'tracestate',
  // Credentials: the agent's token never reaches a backend; cookies have their own list.
  'authorization', 'proxy-authorization', 'proxy-authenticate', 'cookie', 'cookie2',
  // Hop-by-hop and framing (RFC 9110 §7.6.1, RFC 9112 §6).
  'connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'content-length', 'host',
  'upgrade', 'expect', 'http2-settings',
  // Instructions to a framework or proxy behind the gateway.
  'x-http-method-override', 'x-http-method', 'x-method-override', 'x-original-url', 'x-original-uri',
  'x-rewrite-url', 'x-envoy', 'x-middleware-subrequest', 'sec-websocket',
];

/** Refused whatever their spelling: they turn an allowed call into another method. */
const METHOD_OVERRIDE = new Set(['x-http-method-override', 'x-http-method', 'x-method-override']);
/** Refused whatever their spelling: they turn an allowed path into another one. */
const URL_REWRITE = new Set(['x-original-url', 'x-original-uri', 'x-rewrite-url']);
/** Framing and routing fields: a lookalike spelling (`Transfer_Encoding`) is a smuggling attempt. */
const FRAMING = new Set(['transfer-encoding', 'content-length', 'host']);
/** Query parameter names (normalised: lower-case, `-` and `.` read as `_`) that override the method. */
const METHOD_PARAMS = new Set(['_method', 'x_http_method_override', 'x_http_method', 'x_method_override']);

/** `Name_With.Seps` -> `name-with-seps`. Allocates only when the name is not already normal. */
export function normaliseHeaderName(name: string): string {
  let out = name;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if ((c >= 0x41 && c <= 0x5a) || c === 0x5f || c === 0x2e) {
      out = name.toLowerCase().replace(/[_.]/g, '-');
      break;
    }
  }
  return out;
}

/** The reserved name a (normalised) header name falls under, or null. */
export function reservedHeader(normalised: string): string | null {
  for (const reserved of RESERVED) {
    if (normalised === reserved) return reserved;
    if (normalised.length > reserved.length && normalised.charCodeAt(reserved.length) === 0x2d && normalised.startsWith(reserved)) return reserved;
  }
  return null;
}

/**
 * Refuse a request head that would make a backend do something other than what was checked:
 * framing-field lookalikes and a repeated Host (smuggling; the connection is closed),
 * method-override and URL-rewrite headers, and a method-override query parameter. One pass over
 * the raw header names; everything else not allowlisted is simply not forwarded.
 */
export function checkRequestHead(request: InboundRequest, query: string): void {
  const raw = request.rawHeaders;
  let hosts = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] ?? '';
    const normalised = normaliseHeaderName(name);
    if (FRAMING.has(normalised)) {
      if (normalised === 'host') hosts++;
      // The parser read only the exact spelling; a backend that maps `_` and `.` reads this one too.
      if (name.toLowerCase() !== normalised) {
        throw new GatewayError('header_forbidden', `header "${name}" looks like ${normalised}; send framing headers only under their own names`, {
          reasonDetail: `framing lookalike ${JSON.stringify(name.slice(0, 64))}`,
          closeConnection: true,
        });
      }
      if (hosts > 1) {
        throw new GatewayError('header_forbidden', 'send exactly one Host header', { reasonDetail: 'repeated Host', closeConnection: true });
      }
    } else if (METHOD_OVERRIDE.has(normalised)) {
      throw new GatewayError('method_override', 'method-override headers are not accepted; send the method you mean', {
        reasonDetail: `header ${JSON.stringify(name.slice(0, 64))}`,
      });
    } else if (URL_REWRITE.has(normalised)) {
      throw new GatewayError('header_forbidden', `header "${name}" would rewrite the checked path; it is not accepted`, {
        reasonDetail: `URL-rewrite header ${JSON.stringify(name.slice(0, 64))}`,
      });
    }
  }
  if (query.length > 1 && mayNameMethod(query)) {
    const param = methodParam(query);
    if (param !== null) {
      throw new GatewayError('method_override', 'a method-override query parameter is not accepted; send the method you mean', {
        reasonDetail: `query parameter ${JSON.stringify(param.slice(0, 64))}`,
      });
    }
  }
}

/** Cheap pre-check: the query could name a method-override parameter (as text, or escaped). */
function mayNameMethod(query: string): boolean {
  return query.includes('%') || /method/i.test(query);
}

/** The first query parameter whose decoded, normalised name overrides the method, or null. */
function methodParam(query: string): string | null {
  for (const part of query.slice(1).split(/[&;]/)) {
    const eq = part.indexOf('=');
    const raw = eq === -1 ? part : part.slice(0, eq);
    let name: string;
    try {
      name = decodeURIComponent(raw.replaceAll('+', ' '));
    } catch {
      name = raw;
    }
    if (METHOD_PARAMS.has(name.toLowerCase().replace(/[-.]/g, '_'))) return raw;
  }
  return null;
}

export interface UpstreamHeaderInput {
  readonly request: InboundRequest;
  readonly principal: Principal;
  readonly requestId: string;
  readonly backend: Backend;
  /** A WebSocket upgrade: the handshake headers pass too. */
  readonly websocket?: boolean;
}

/**
 * The complete header set sent upstream: the agent's allowlisted headers byte-exact (minus any
 * the Connection header names), the cookies the backend lists, then the gateway's own statements.
 */
export function upstreamHeaders(input: UpstreamHeaderInput): Record<string, string | string[]> {
  const { request, principal, backend } = input;
  const incoming = request.headers;
  const out = allowedOf(incoming, backend.forwardHeaders);
  if (backend.forwardCookies.size > 0 && incoming.cookie !== undefined) {
    const cookie = filterCookies(incoming.cookie, backend.forwardCookies);
    if (cookie !== '') out.cookie = cookie;
  }
  if (input.websocket === true) {
    for (const name of WEBSOCKET_HEADERS) {
      const value = incoming[name];
      if (value !== undefined) out[name] = value;
    }
    out.connection = 'Upgrade';
    out.upgrade = 'websocket';
  }
  out['x-agentgate-agent'] = principal.agent;
  out['x-agentgate-role'] = principal.role;
  if (principal.onBehalfOf !== null) out['x-agentgate-on-behalf-of'] = principal.onBehalfOf;
  out['x-request-id'] = input.requestId;
  out['x-forwarded-for'] = request.remoteAddress;
  out['x-forwarded-proto'] = request.encrypted ? 'https' : 'http';
  const host = incoming.host;
  if (host !== undefined) out['x-forwarded-host'] = host;
  setTrace(out, incoming.traceparent, incoming.tracestate, input.requestId);
  return out;
}

/**
 * The header set an agent receives from a backend's answer: the allowlisted headers as the backend
 * sent them (minus any its Connection header names), and `Set-Cookie` only for the cookies the
 * backend lists in `forwardCookies` (never one carrying a token). `location` and
 * `content-location` are left for the caller to rewrite (`rewriteLocation`). A WebSocket 101
 * keeps its handshake headers too.
 */
export function answerHeaders(incoming: IncomingHttpHeaders, backend: Backend, websocket = false): Record<string, string | string[]> {
  const out = allowedOf(incoming, backend.responseHeaders);
  const setCookie = incoming['set-cookie'];
  if (setCookie !== undefined && backend.forwardCookies.size > 0) {
    const kept = filterSetCookies(setCookie, backend.forwardCookies);
    if (kept.length > 0) out['set-cookie'] = kept;
  }
  if (websocket) {
    for (const name of WEBSOCKET_ANSWER_HEADERS) {
      const value = incoming[name];
      if (value !== undefined) out[name] = value;
    }
    out.connection = 'Upgrade';
    out.upgrade = 'websocket';
  }
  return out;
}

/** The allowlisted headers of `incoming`, values as they came, minus any its Connection header names. */
function allowedOf(incoming: IncomingHttpHeaders, allowed: ReadonlySet<string>): Record<string, string | string[]> {
  const named = connectionTokens(incoming.connection);
  const out: Record<string, string | string[]> = {};
  for (const name in incoming) {
    if (!allowed.has(name) || (named !== null && named.has(name))) continue;
    const value = incoming[name];
    if (value !== undefined) out[name] = value;
  }
  return out;
}

/** `Set-Cookie` lines (RFC 6265 §4.1) for the listed cookie names whose value is not a credential. */
function filterSetCookies(lines: readonly string[] | string, names: ReadonlySet<string>): string[] {
  const kept: string[] = [];
  for (const line of typeof lines === 'string' ? [lines] : lines) {
    const eq = line.indexOf('=');
    if (eq <= 0) continue;
    const name = line.slice(0, eq).trim();
    const end = line.indexOf(';', eq);
    const value = (end === -1 ? line.slice(eq + 1) : line.slice(eq + 1, end)).trim();
    if (names.has(name) && !credentialShaped(value)) kept.push(line);
  }
  return kept;
}

/**
 * Place an answer's `location` and `content-location` on the gateway path (`rewriteLocation`);
 * one pointing elsewhere is dropped. Returns true, leaving it in place, for a redirect's (3xx)
 * `location` that points elsewhere: the caller refuses the answer (the agent must not be sent off
 * to another origin, nor be left with a redirect that goes nowhere) or drops it.
 */
export function placeLocations(headers: Record<string, string | string[]>, status: number, backend: Backend, requestPath: string): boolean {
  let redirectsElsewhere = false;
  for (const name of LOCATION_HEADERS) {
    const value = headers[name];
    if (value === undefined) continue;
    const rewritten = rewriteLocation(value, backend, requestPath);
    if (rewritten !== null) headers[name] = rewritten;
    else if (name === 'location' && status >= 300 && status < 400) redirectsElsewhere = true;
    else delete headers[name];
  }
  return redirectsElsewhere;
}

const LOCATION_HEADERS = ['location', 'content-location'] as const;

/**
 * A redirect or content location may only stay on the backend's own origin and below its base
 * path; it is rewritten to the gateway path the agent would use. Anything else (another origin,
 * above the base path, more than one value, not a URL) returns null.
 */
function rewriteLocation(location: string | string[] | undefined, backend: Backend, requestPath: string): string | null {
  if (typeof location !== 'string') return null;
  let url: URL;
  try {
    url = new URL(location, new URL(backend.basePath + requestPath, backend.origin));
  } catch {
    return null;
  }
  if (url.origin !== backend.origin) return null;
  const base = backend.basePath;
  if (base !== '' && url.pathname !== base && !url.pathname.startsWith(`${base}/`)) return null;
  const rest = url.pathname.slice(base.length) || '/';
  return `/${backend.name}${rest}${url.search}`;
}

/** Names listed in a Connection header (RFC 9110 §7.6.1), or null when it lists none. */
function connectionTokens(value: string | string[] | undefined): Set<string> | null {
  if (value === undefined) return null;
  const joined = Array.isArray(value) ? value.join(',') : value;
  let tokens: Set<string> | null = null;
  for (const token of joined.split(',')) {
    const t = token.trim().toLowerCase();
    if (t !== '' && t !== 'close' && t !== 'keep-alive') (tokens ??= new Set()).add(t);
  }
  return tokens;
}

/** A base64url JWS/JWE (`eyJ...` header, dot, more): a bearer credential, never forwarded. */
const JWT_SHAPED = /eyJ[A-Za-z0-9_-]*(?:\.|%2[eE])[A-Za-z0-9_-]/;

/** A cookie value that carries a bearer credential: a token, or the word Bearer. */
function credentialShaped(value: string): boolean {
  return JWT_SHAPED.test(value) || /^"?bearer[\s+%]/i.test(value);
}

/**
 * Keep the listed cookies (RFC 6265 §5.4 `name=value; ...`), byte-exact and in order; drop any
 * whose value looks like a token or says Bearer, whatever its name.
 */
export function filterCookies(header: IncomingHttpHeaders['cookie'], names: ReadonlySet<string>): string {
  if (header === undefined) return '';
  let out = '';
  for (const pair of header.split(';')) {
    const trimmed = pair.trim();
    const eq = trimmed.indexOf('=');
    if (eq <= 0) continue;
    if (!names.has(trimmed.slice(0, eq))) continue;
    if (credentialShaped(trimmed.slice(eq + 1))) continue;
    out = out === '' ? trimmed : `${out}; ${trimmed}`;
  }
  return out;
}

const TRACEPARENT = /^00-([0-9a-f]{32})-[0-9a-f]{16}-([0-9a-f]{2})$/;

/** Random bytes drawn 8 at a time: one randomFillSync per 512 span ids, not one per request. */
const spanPool = Buffer.alloc(4096);
let spanOffset = spanPool.length;
function nextSpanId(): string {
  if (spanOffset === spanPool.length) {
    randomFillSync(spanPool);
    spanOffset = 0;
  }
  const id = spanPool.toString('hex', spanOffset, spanOffset + 8);
  spanOffset += 8;
  return id;
}

/** W3C Trace Context: continue the caller's trace with a new parent id, or start one. */
function setTrace(
  headers: Record<string, string | string[]>,
  traceparent: string | string[] | undefined,
  tracestate: string | string[] | undefined,
  requestId: string,
): void {
  const spanId = nextSpanId();
  const match = typeof traceparent === 'string' ? TRACEPARENT.exec(traceparent) : null;
  const traceId = match?.[1];
  if (match !== null && traceId !== undefined && traceId !== '00000000000000000000000000000000') {
    headers.traceparent = `00-${traceId}-${spanId}-${match[2] ?? '01'}`;
    if (typeof tracestate === 'string') headers.tracestate = tracestate;
  } else {
    headers.traceparent = `00-${requestId.replaceAll('-', '')}-${spanId}-01`;
  }
}
