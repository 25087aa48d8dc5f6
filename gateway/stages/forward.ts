// Forwarding: one undici keep-alive pool per upstream origin, bodies streamed both ways, header
// hygiene on the way out (the allowlist of headers.ts) and in, and every upstream failure mapped to 502/504. When the upstream
// is down or slow the request fails with upstream_unavailable / upstream_timeout; nothing retries.
import type { IncomingHttpHeaders } from 'node:http';
import { Pool, errors as undiciErrors } from 'undici';
import type { RequestContext, Stage, UpstreamResult } from '../context.js';
import { GatewayError } from '../errors.js';
import { upstreamHeaders } from '../headers.js';
import { readBounded } from './read-body.js';
import type { Backend } from '../policy/types.js';
import type { Metrics, UpstreamErrorKind } from '../telemetry/metrics.js';

export interface ForwardOptions {
  readonly metrics: Metrics;
  /** Largest chunked request body framed before forwarding (limits.maxBodyBytes); default 1 MiB. */
  readonly maxBodyBytes?: number;
  /** Longest pause inside a chunked request body (limits.bodyIdleTimeout); default 10 s. */
  readonly bodyIdleMs?: number;
  /** Connections per upstream origin. */
  readonly connections?: number;
}

export interface ForwardStage extends Stage {
  /** Close every upstream pool (shutdown). */
  close(): Promise<void>;
}

/** Hop-by-hop response headers (RFC 9110 §7.6.1); request headers are chosen by headers.ts. */
const STRIP_RESPONSE = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade',
  'proxy-authenticate', 'proxy-authorization',
]);


export function createForward(options: ForwardOptions): ForwardStage {
  const { metrics } = options;
  const bodyLimits = { maxBytes: options.maxBodyBytes ?? 1_048_576, idleMs: options.bodyIdleMs ?? 10_000 };
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
    const headers = upstreamHeaders({ request, principal, requestId: ctx.requestId, backend });
    // A masked response must be read by the gateway: ask for it uncompressed (gzip, deflate and br
    // are still decoded when the backend ignores this).
    if (grant.mask !== null || ctx.mcp !== null) headers['accept-encoding'] = 'identity';

    let body: Buffer | IncomingBody | null = null;
    if (grant.body !== null) {
      body = grant.body;
      headers['content-length'] = String(grant.body.length);
    } else if (request.body !== null && hasBody(request.headers)) {
      if (target.contentLength !== null) {
        // Streamed, under the length normalize validated.
        body = request.body;
        headers['content-length'] = String(target.contentLength);
      } else {
        // Chunked: framed here, once, before any upstream byte. A malformed or stalled body fails
        // the request with nothing of it delivered; the backend gets one Content-Length body.
        body = await readBounded(request.body, bodyLimits, ctx.signal);
        headers['content-length'] = String(body.length);
      }
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
