// WebSocket upgrades: the same checks as any request (normalize..authorize), then the socket is
// handed to http-proxy with the same header allowlists as forward (headers.ts), both ways. A refused
// upgrade gets a problem document on the raw socket; an unreachable backend gets 502.
import { STATUS_CODES, type ClientRequest, type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type HttpProxy from 'http-proxy';
import { RequestAbort, type RequestContext } from './context.js';
import { GatewayError } from './errors.js';
import type { Backend } from './policy/types.js';
import { answerHeaders, placeLocations, upstreamHeaders } from './headers.js';
import type { Pipeline } from './pipeline.js';
import { inboundFrom } from './pipeline.js';
import { renderProblem, renderReason, type RenderedProblem } from './problem.js';
import type { Logger } from './telemetry/log.js';
import type { Metrics } from './telemetry/metrics.js';


export interface UpgradeHandler {
  handle(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  close(): void;
}

export interface UpgradeOptions {
  readonly pipeline: Pipeline;
  readonly metrics: Metrics;
  readonly log: Logger;
}

export function createUpgradeHandler(options: UpgradeOptions): UpgradeHandler {
  const { pipeline, metrics, log } = options;
  // http-proxy is loaded by the first upgrade (started as its checks start, so they overlap): a
  // gateway that never sees a WebSocket never loads it.
  let proxy: Promise<HttpProxy> | null = null;
  let closed = false;
  // The backend and checked path of each upgrade handed to http-proxy, for its answer's headers.
  const upgrades = new WeakMap<IncomingMessage, { backend: Backend; path: string }>();
  const proxyServer = (): Promise<HttpProxy> =>
    // (The package is CommonJS: its module.exports is the import's default, whatever the types say.)
    (proxy ??= (import('http-proxy') as unknown as Promise<{ default: typeof HttpProxy }>).then(({ default: httpProxy }) => {
      const server = httpProxy.createProxyServer({ ws: true, xfwd: false, changeOrigin: true, proxyTimeout: 0 });
      // Emitted before http-proxy listens on the upstream request, so these run before it writes
      // the backend's answer head to the agent's socket: the head it writes is the filtered one.
      server.on('proxyReqWs', (proxyReq: ClientRequest, req: IncomingMessage) => {
        const upgrade = upgrades.get(req);
        if (upgrade !== undefined) filterAnswers(proxyReq, upgrade.backend, upgrade.path);
      });
      if (closed) server.close();
      return server;
    }));

  async function handle(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const loading = proxyServer();
    loading.catch(() => undefined); // awaited below only if the checks pass
    const signal = new RequestAbort();
    socket.once('close', () => signal.abort(new Error('client closed the connection')));
    // An upgrade request carries no body; checks must not try to read one.
    const ctx = pipeline.context({ ...inboundFrom(req), body: null }, signal);
    try {
      if ((req.headers.upgrade ?? '').toLowerCase() !== 'websocket') {
        throw new GatewayError('target_invalid', 'only WebSocket upgrades are supported');
      }
      // The checks, the rate limit (an upgrade is one call), then the commit (a use spent): a
      // refused upgrade spends nothing.
      await pipeline.admit(ctx, refuseMasked);
    } catch (error) {
      if (!(error instanceof GatewayError)) log.error('upgrade check failed', { requestId: ctx.requestId, error });
      const rendered = error instanceof GatewayError ? renderProblem(error, ctx.requestId) : renderReason('internal', 'upgrade failed', ctx.requestId);
      // Write-ahead audit: the refusal goes out once its line is written, else the socket closes.
      await pipeline.finish(ctx, error, error instanceof GatewayError ? error.status : 500).then(
        () => writeRaw(socket, rendered),
        () => socket.destroy(),
      );
      return;
    }
    const grant = ctx.grant;
    const principal = ctx.principal;
    const target = ctx.target;
    const backend = grant === null ? undefined : ctx.policy.backends.get(grant.backend);
    if (grant === null || principal === null || target === null || backend === undefined) {
      throw new Error('upgrade checks passed without a grant');
    }
    // The same allowlist as any forwarded request (headers.ts), plus the WebSocket handshake; the
    // backend sees this set and nothing else the client sent (http-proxy copies req.headers).
    req.headers = upstreamHeaders({ request: ctx.request, principal, requestId: ctx.requestId, backend, websocket: true });
    // Forward exactly the path that was checked.
    req.url = backend.basePath + target.path + target.query;
    upgrades.set(req, { backend, path: target.path });

    // The upgrade is recorded (and the line written) before the backend can answer 101.
    try {
      await pipeline.finish(ctx, null, 101);
    } catch {
      socket.destroy();
      return;
    }
    const abort = { abort: (): void => void socket.destroy() };
    pipeline.track(ctx, abort);
    socket.once('close', () => pipeline.untrack(ctx, abort));
    const server = await loading;
    if (socket.destroyed) return;
    let failed = false;
    server.ws(req, socket, head, { target: backend.origin }, (error: Error) => {
      if (failed) return;
      failed = true;
      metrics.upstreamError(backend.name, 'connect');
      const refusal = new GatewayError('upstream_unavailable', 'the backend could not be reached', { cause: error });
      if (socket.writable) writeRaw(socket, renderProblem(refusal, ctx.requestId));
      else socket.destroy();
      // A second line (`phase: end`) for the failed upgrade; the socket is answered or closed anyway.
      pipeline.finish(ctx, refusal, refusal.status).catch(() => undefined);
    });
  }

  return {
    handle(req, socket, head) {
      socket.on('error', () => socket.destroy());
      handle(req, socket, head).catch((error: unknown) => {
        log.error('upgrade failed', { error });
        socket.destroy();
      });
    },
    close() {
      closed = true;
      void proxy?.then((server) => server.close());
    },
  };
}

/**
 * The backend's answer to an upgrade reaches the agent with the answer allowlist (headers.ts): a
 * 101 keeps its handshake headers; any other answer (http-proxy relays it and closes) loses its
 * chunked framing, because http-proxy writes the decoded body, and is ended by the close.
 */
function filterAnswers(proxyReq: ClientRequest, backend: Backend, path: string): void {
  proxyReq.once('upgrade', (res: IncomingMessage) => {
    res.headers = answerHeaders(res.headers, backend, true);
  });
  proxyReq.once('response', (res: IncomingMessage) => {
    const headers = answerHeaders(res.headers, backend);
    // A redirect elsewhere cannot be refused here (http-proxy answers): its location is dropped.
    if (placeLocations(headers, res.statusCode ?? 0, backend, path)) delete headers.location;
    headers.connection = 'close';
    res.headers = headers;
  });
}

/**
 * WebSocket frames are not JSON documents the mask filter can read: a masked role is refused
 * rather than given an unmasked stream (before the commit, so the refusal spends no use).
 */
function refuseMasked(ctx: RequestContext): void {
  if (ctx.grant !== null && ctx.grant.mask !== null) {
    throw new GatewayError('response_unmaskable', 'this role has fields masked on this backend; WebSocket streams cannot be masked', { reasonDetail: 'upgrade on a masked backend' });
  }
}

function writeRaw(socket: Duplex, problem: RenderedProblem): void {
  let head = `HTTP/1.1 ${problem.status} ${STATUS_CODES[problem.status] ?? 'Error'}\r\n`;
  for (const [name, value] of Object.entries(problem.headers)) head += `${name}: ${value}\r\n`;
  head += 'connection: close\r\n\r\n';
  socket.end(head + problem.body);
}
