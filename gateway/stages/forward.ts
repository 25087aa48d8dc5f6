// Forwarding: one undici keep-alive pool per upstream origin, bodies streamed both ways, header
// hygiene both ways (the allowlists of headers.ts), and every upstream failure mapped to 502/504. When the upstream
// is down or slow the request fails with upstream_unavailable / upstream_timeout; nothing retries.
// Routes no response filter applies to take the plain path: undici `dispatch` with a handler that
// writes each chunk straight into the client response (no Readable, no per-request undici signal).
import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import type { Dispatcher, Pool as UndiciPool } from 'undici';
// undici's Pool and errors alone, not its index (gateway/undici-parts.d.ts says why).
import Pool from 'undici/lib/dispatcher/pool.js';
import undiciErrors from 'undici/lib/core/errors.js';
import undiciRequest from 'undici/lib/api/api-request.js';
import { abortSignalOf, type DirectBody, type RequestContext, type RequestSignal, type Stage, type UpstreamResult } from '../context.js';
import { GatewayError } from '../errors.js';
import { answerHeaders, placeLocations, upstreamHeaders } from '../headers.js';
import { readBounded } from './read-body.js';
import { isServerSessionId, type McpSessions } from '../mcp/session.js';
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
  /** Seals the `Mcp-Session-Id` an MCP server answers with before the agent sees it (mcp/session.ts). */
  readonly mcpSessions: McpSessions;
}

export interface ForwardStage extends Stage {
  /** Close every upstream pool (shutdown). */
  close(): Promise<void>;
}

export function createForward(options: ForwardOptions): ForwardStage {
  const { metrics } = options;
  const bodyLimits = { maxBytes: options.maxBodyBytes ?? 1_048_576, idleMs: options.bodyIdleMs ?? 10_000 };
  const pools = new Map<string, UndiciPool>();

  function poolFor(backend: Backend): UndiciPool {
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
    if (ctx.mcp !== null) {
      // The server's own id, opened by authorize; never the value the agent sent.
      if (ctx.mcp.session === null) delete headers['mcp-session-id'];
      else headers['mcp-session-id'] = ctx.mcp.session;
    }

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
    const pool = poolFor(backend);
    if (grant.mask === null && ctx.mcp === null) {
      // The plain path: no response filter reads this body, so it goes from undici to the client.
      const options: Dispatcher.DispatchOptions = {
        method: target.method as Dispatcher.HttpMethod,
        path: backend.basePath + target.path + target.query,
        headers,
        body,
        headersTimeout: backend.timeoutMs,
        bodyTimeout: backend.timeoutMs,
      };
      return new Promise<void>((resolve, reject) => {
        pool.dispatch(options, new PlainExchange(ctx, backend, metrics, started, resolve, reject));
      });
    }
    let response;
    try {
      response = await undiciRequest.call(pool, {
        method: target.method,
        path: backend.basePath + target.path + target.query,
        headers,
        body,
        signal: abortSignalOf(ctx.signal),
        headersTimeout: backend.timeoutMs,
        // An MCP server's GET stream may idle for as long as the session lives.
        bodyTimeout: ctx.mcp?.kind === 'stream' ? 0 : backend.timeoutMs,
      });
    } catch (error) {
      throw translate(error, backend.name, metrics, ctx.signal);
    }

    const responseHeaders = answerHeaders(response.headers, backend);
    const serverSession = response.headers['mcp-session-id'];
    if (ctx.mcp !== null && serverSession !== undefined) {
      if (!isServerSessionId(serverSession)) {
        response.body.dump().catch(() => undefined);
        throw new GatewayError('upstream_invalid', 'the MCP server answered with an unusable Mcp-Session-Id', {
          reasonDetail: Array.isArray(serverSession) ? 'more than one Mcp-Session-Id' : 'Mcp-Session-Id not 1 to 512 visible ASCII characters',
        });
      }
      responseHeaders['mcp-session-id'] = options.mcpSessions.seal(principal, backend.name, serverSession);
    }
    const offOrigin = placed(responseHeaders, response.statusCode, backend, target.path);
    if (offOrigin !== null) {
      // Drain (bounded) rather than destroy: a destroyed undici body without a listener errors.
      response.body.dump().catch(() => undefined);
      metrics.upstreamError(backend.name, 'redirect');
      throw offOrigin;
    }

    const result: UpstreamResult = {
      status: response.statusCode,
      headers: responseHeaders,
      body: response.body,
      direct: null,
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

/**
 * One upstream exchange on the plain path: the undici dispatch handler and the body the runner
 * sends. The head resolves the stage (`ctx.upstream`, status and headers); the upstream then stays
 * paused until the runner has written the answer's audit line and its head and calls `sendTo`.
 * Each chunk is written to the client as it arrives, pausing undici while the client socket is
 * full. An abort of the request (client gone, agent killed: `ctx.signal`) aborts the upstream
 * exchange, and a stream cut after the head reaches the runner through `done`, which cuts the
 * client connection.
 */
class PlainExchange implements Dispatcher.DispatchHandler, DirectBody {
  readonly #ctx: RequestContext;
  readonly #backend: Backend;
  readonly #metrics: Metrics;
  readonly #started: number;
  #resolve: (() => void) | null;
  #reject: ((error: unknown) => void) | null;
  #controller: Dispatcher.DispatchController | null = null;
  #sink: ServerResponse | null = null;
  #done: ((error: Error | null) => void) | null = null;
  /** The upstream body ended (onResponseEnd). */
  #ended = false;
  /** Why the exchange failed after its head, until the runner takes it. */
  #error: Error | null = null;
  #settled = false;
  /** Chunks that arrived before the sink (undici may deliver some after a pause). */
  #held: Buffer[] | null = null;

  constructor(ctx: RequestContext, backend: Backend, metrics: Metrics, started: number, resolve: () => void, reject: (error: unknown) => void) {
    this.#ctx = ctx;
    this.#backend = backend;
    this.#metrics = metrics;
    this.#started = started;
    this.#resolve = resolve;
    this.#reject = reject;
    // The object itself is the listener (handleEvent): no closure per request.
    ctx.signal.addEventListener('abort', this);
  }

  /** `ctx.signal` aborted: stop the upstream exchange, unless the whole answer is already out. */
  handleEvent(): void {
    const reason = this.#ctx.signal.reason instanceof Error ? this.#ctx.signal.reason : new Error('request aborted');
    const sink = this.#sink;
    if (this.#ended && sink !== null && !this.#settled) {
      // The whole body is handed to the client (its end written, 'finish' to come): nothing is
      // left to stop, and cutting the connection would only make the agent reconnect. A
      // connection that closes before the answer is out still ends it as cut.
      if (sink.destroyed) this.#settle(reason);
      else sink.once('close', () => this.#settle(sink.writableFinished ? null : reason));
      return;
    }
    if (this.#ended || this.#error !== null) {
      if (this.#sink !== null) this.#settle(reason);
      return;
    }
    // Not yet connected: onRequestStart sees the aborted signal.
    this.#controller?.abort(reason);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    if (this.#ctx.signal.aborted) controller.abort(this.#ctx.signal.reason instanceof Error ? this.#ctx.signal.reason : new Error('request aborted'));
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, incoming: IncomingHttpHeaders): void {
    if (statusCode < 200) return; // 1xx: informational, not passed on
    const ctx = this.#ctx;
    const backend = this.#backend;
    const headers = answerHeaders(incoming, backend);
    const offOrigin = ctx.target === null ? null : placed(headers, statusCode, backend, ctx.target.path);
    if (offOrigin !== null) {
      this.#metrics.upstreamError(backend.name, 'redirect');
      this.#fail(offOrigin);
      controller.abort(new Error('redirect refused'));
      return;
    }
    // Held until the runner has the line written and the head sent.
    controller.pause();
    ctx.upstream = { status: statusCode, headers, body: null, direct: this, latencyMs: performance.now() - this.#started };
    const resolve = this.#resolve;
    this.#resolve = null;
    this.#reject = null;
    resolve?.();
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    const sink = this.#sink;
    if (sink === null) {
      (this.#held ??= []).push(chunk);
      controller.pause();
    } else if (!sink.write(chunk)) {
      controller.pause();
    }
  }

  onResponseEnd(): void {
    this.#ended = true;
    const sink = this.#sink;
    if (sink !== null && !this.#settled) sink.end(this.#finished);
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    if (this.#reject !== null) {
      this.#fail(translate(error, this.#backend.name, this.#metrics, this.#ctx.signal));
      return;
    }
    if (this.#settled || this.#ended) return;
    this.#error = error;
    if (this.#sink !== null) this.#settle(error);
  }

  sendTo(sink: ServerResponse, done: (error: Error | null) => void): void {
    this.#sink = sink;
    this.#done = done;
    if (this.#error !== null) return this.#settle(this.#error);
    const held = this.#held;
    this.#held = null;
    if (held !== null) for (const chunk of held) sink.write(chunk);
    if (this.#ended) {
      sink.end(this.#finished);
      return;
    }
    const controller = this.#controller;
    if (controller === null) return;
    sink.on('drain', () => controller.resume());
    if (!sink.writableNeedDrain) controller.resume();
  }

  discard(): void {
    if (this.#sink !== null || this.#settled) return;
    this.#settled = true;
    this.#ctx.signal.removeEventListener('abort', this);
    if (!this.#ended && this.#error === null) this.#controller?.abort(new Error('response discarded: the answer became a refusal'));
  }

  readonly #finished = (): void => this.#settle(null);

  #fail(error: unknown): void {
    const reject = this.#reject;
    this.#resolve = null;
    this.#reject = null;
    this.#settled = true;
    this.#ctx.signal.removeEventListener('abort', this);
    reject?.(error);
  }

  #settle(error: Error | null): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#ctx.signal.removeEventListener('abort', this);
    this.#done?.(error);
  }
}

function hasBody(headers: IncomingHttpHeaders): boolean {
  const length = headers['content-length'];
  if (length !== undefined) return length !== '0';
  return headers['transfer-encoding'] !== undefined;
}

/** The refusal of an answer that redirects to another origin (`placeLocations`), or null. */
function placed(headers: Record<string, string | string[]>, status: number, backend: Backend, requestPath: string): GatewayError | null {
  if (!placeLocations(headers, status, backend, requestPath)) return null;
  return new GatewayError('upstream_redirect', 'the backend redirected outside its origin; the redirect was not passed on', {
    reasonDetail: `location to another origin (status ${status})`,
  });
}

function translate(error: unknown, backend: string, metrics: Metrics, signal: RequestSignal): unknown {
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
