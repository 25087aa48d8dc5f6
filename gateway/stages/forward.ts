// Forwarding: one undici keep-alive pool per upstream origin, bodies streamed both ways, header
// hygiene on the way out and in, and every upstream failure mapped to 502/504. When the upstream
// is down or slow the request fails with upstream_unavailable / upstream_timeout; nothing retries.
import { randomFillSync } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { Pool, errors as undiciErrors } from 'undici';
import type { RequestContext, Stage, UpstreamResult } from '../context.js';
import { GatewayError } from '../errors.js';
import type { Backend } from '../policy/types.js';
import type { Metrics, UpstreamErrorKind } from '../telemetry/metrics.js';

export interface ForwardOptions {
  readonly metrics: Metrics;
  /** Connections per upstream origin. */
  readonly connections?: number;
}

export interface ForwardStage extends Stage {
  /** Close every upstream pool (shutdown). */
  close(): Promise<void>;
}

/** Hop-by-hop headers (RFC 9110 §7.6.1) and headers only the gateway may set. */
const STRIP_REQUEST = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade',
  'proxy-authorization', 'proxy-authenticate', 'host', 'expect', 'http2-settings',
  // The agent's credential never reaches a backend.
  'authorization',
  // Identity and provenance are the gateway's to state, never the client's.
  'forwarded', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-forwarded-port', 'x-real-ip',
  'x-request-id', 'traceparent', 'tracestate',
]);

const STRIP_RESPONSE = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade',
  'proxy-authenticate', 'proxy-authorization',
]);

const IDENTITY_PREFIX = 'x-agentgate-';
const TRACEPARENT = /^00-([0-9a-f]{32})-[0-9a-f]{16}-([0-9a-f]{2})$/;

export function createForward(options: ForwardOptions): ForwardStage {
  const { metrics } = options;
  const pools = new Map<string, Pool>();

  function poolFor(backend: Backend): Pool {
    let pool = pools.get(backend.origin);
    if (pool === undefined) {
      pool = new Pool(backend.origin, {
        connections: options.connections ?? 256,
        pipelining: 1,
        keepAliveTimeout: 10_000,
        keepAliveMaxTimeout: 60_000,
        connect: { timeout: Math.min(backend.timeoutMs, 10_000) },
      });
      pools.set(backend.origin, pool);
    }
    return pool;
  }

  async function run(ctx: RequestContext): Promise<void> {
    const target = ctx.target;
    const principal = ctx.principal;
    const grant = ctx.grant;
    if (target === null || principal === null || grant === null) throw new Error('forward ran before authorize');
    const backend = ctx.policy.backends.get(grant.backend);
    if (backend === undefined) throw new Error(`granted backend ${grant.backend} missing from pinned policy`);

    const request = ctx.request;
    const headers = outgoingHeaders(request.headers);
    headers['x-agentgate-agent'] = principal.agent;
    headers['x-agentgate-role'] = principal.role;
    if (principal.onBehalfOf !== null) headers['x-agentgate-on-behalf-of'] = principal.onBehalfOf;
    headers['x-request-id'] = ctx.requestId;
    headers['x-forwarded-for'] = request.remoteAddress;
    headers['x-forwarded-proto'] = request.encrypted ? 'https' : 'http';
    const host = request.headers.host;
    if (host !== undefined) headers['x-forwarded-host'] = host;
    setTrace(headers, request.headers.traceparent, request.headers.tracestate, ctx.requestId);
    // A masked response must be read by the gateway: ask for it uncompressed (gzip, deflate and br
    // are still decoded when the backend ignores this).
    if (grant.mask !== null || ctx.mcp !== null) headers['accept-encoding'] = 'identity';

    let body: Buffer | IncomingBody | null = null;
    if (grant.body !== null) {
      body = grant.body;
      headers['content-length'] = String(grant.body.length);
    } else if (request.body !== null && hasBody(request.headers)) {
      body = request.body;
    }

    const started = performance.now();
    let response;
    try {
      response = await poolFor(backend).request({
        method: target.method,
        path: backend.basePath + target.path + target.query,
        headers,
        body,
        signal: ctx.signal,
        headersTimeout: backend.timeoutMs,
        // An MCP server's GET stream may idle for as long as the session lives.
        bodyTimeout: ctx.mcp?.kind === 'stream' ? 0 : backend.timeoutMs,
      });
    } catch (error) {
      throw translate(error, backend.name, metrics, ctx.signal);
    }

    const responseHeaders = incomingHeaders(response.headers);
    const location = response.headers.location;
    if (response.statusCode >= 300 && response.statusCode < 400 && location !== undefined) {
      const rewritten = rewriteLocation(String(location), backend, target.path);
      if (rewritten === null) {
        // Drain (bounded) rather than destroy: a destroyed undici body without a listener errors.
        response.body.dump().catch(() => undefined);
        metrics.upstreamError(backend.name, 'redirect');
        throw new GatewayError('upstream_redirect', 'the backend redirected outside its origin; the redirect was not passed on', {
          reasonDetail: `location to another origin (status ${response.statusCode})`,
        });
      }
      responseHeaders.location = rewritten;
    }

    const result: UpstreamResult = {
      status: response.statusCode,
      headers: responseHeaders,
      body: response.body,
      latencyMs: performance.now() - started,
    };
    ctx.upstream = result;
  }

  return {
    name: 'forward',
    run,
    async close() {
      const all = [...pools.values()];
      pools.clear();
      await Promise.all(all.map((p) => p.close().catch(() => p.destroy())));
    },
  };
}

type IncomingBody = NonNullable<RequestContext['request']['body']>;

function hasBody(headers: IncomingHttpHeaders): boolean {
  const length = headers['content-length'];
  if (length !== undefined) return length !== '0';
  return headers['transfer-encoding'] !== undefined;
}

/** Copies the client's headers minus hop-by-hop, Connection-named and gateway-owned ones. */
function outgoingHeaders(incoming: IncomingHttpHeaders): Record<string, string | string[]> {
  const named = connectionTokens(incoming.connection);
  const out: Record<string, string | string[]> = {};
  for (const name in incoming) {
    if (STRIP_REQUEST.has(name) || name.startsWith(IDENTITY_PREFIX)) continue;
    if (named !== null && named.has(name)) continue;
    const value = incoming[name];
    if (value !== undefined) out[name] = value;
  }
  return out;
}

function incomingHeaders(incoming: Record<string, string | string[] | undefined>): Record<string, string | string[]> {
  const named = connectionTokens(incoming.connection);
  const out: Record<string, string | string[]> = {};
  for (const name in incoming) {
    if (STRIP_RESPONSE.has(name)) continue;
    if (named !== null && named.has(name)) continue;
    const value = incoming[name];
    if (value !== undefined) out[name] = value;
  }
  return out;
}

function connectionTokens(value: string | string[] | undefined): Set<string> | null {
  if (value === undefined) return null;
  const joined = Array.isArray(value) ? value.join(',') : value;
  const tokens = new Set<string>();
  for (const token of joined.split(',')) {
    const t = token.trim().toLowerCase();
    if (t !== '' && t !== 'close' && t !== 'keep-alive') tokens.add(t);
  }
  return tokens.size === 0 ? null : tokens;
}

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

/**
 * A redirect may only stay on the backend's own origin and below its base path; it is rewritten
 * to the gateway path the agent would use. Anything else returns null (refused).
 */
function rewriteLocation(location: string, backend: Backend, requestPath: string): string | null {
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

function translate(error: unknown, backend: string, metrics: Metrics, signal: AbortSignal): unknown {
  if (signal.aborted) return error;
  const code = (error as { code?: unknown }).code;
  let kind: UpstreamErrorKind;
  let timeout = false;
  if (
    error instanceof undiciErrors.HeadersTimeoutError ||
    error instanceof undiciErrors.BodyTimeoutError ||
    error instanceof undiciErrors.ConnectTimeoutError ||
    code === 'ETIMEDOUT'
  ) {
    kind = 'timeout';
    timeout = true;
  } else if (error instanceof undiciErrors.RequestContentLengthMismatchError) {
    // The client sent fewer bytes than it declared: its fault, not the backend's.
    return new GatewayError('target_invalid', 'the request body did not match its Content-Length', { cause: error });
  } else if (code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === 'EHOSTUNREACH') {
    kind = 'connect';
  } else if (code === 'ECONNRESET' || error instanceof undiciErrors.SocketError) {
    kind = 'reset';
  } else {
    kind = 'protocol';
  }
  metrics.upstreamError(backend, kind);
  return timeout
    ? new GatewayError('upstream_timeout', 'the backend did not answer in time', { reasonDetail: `${kind} ${String(code ?? '')}`, cause: error })
    : new GatewayError('upstream_unavailable', 'the backend could not be reached', { reasonDetail: `${kind} ${String(code ?? '')}`, cause: error });
}
