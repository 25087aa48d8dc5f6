// The request runner: the only place that knows the stage order and the only writer to the
// client. Checks read state; the commit (admission/) applies what the decision changes; the
// outcome writer accounts for every request exactly once, whatever happened (refusal, upstream
// failure, bug, client gone).
import { randomUUID } from 'node:crypto';
import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Readable } from 'node:stream';
import { createContext, RequestAbort, type DirectBody, type InboundRequest, type RequestContext, type RequestSignal, type Stage } from './context.js';
import type { Clock } from './clock.js';
import type { Abort, Admission } from './admission/admission.js';
import { GatewayError, REASONS } from './errors.js';
import { abortReason, type OutcomeWriter, type Written } from './outcome.js';
import { AuditUnavailableError } from './telemetry/audit-log.js';
import type { RateHeaders, RateLimiter } from './admission/rate-limiter.js';
import { renderMcpRefusal } from './mcp/refusal.js';
import { renderProblem, renderReason } from './problem.js';
import type { PolicySnapshot } from './policy/types.js';
import type { Logger } from './telemetry/log.js';

/** The stage order of DESIGN §3. Checks run before `forward`; `explain` and upgrades stop there. */
export const STAGE_ORDER = ['normalize', 'authenticate', 'admit', 'authorize', 'forward'] as const;

/** A response filter: takes the context (with `upstream` set) and replaces `ctx.upstream`. */
export interface ResponseFilter {
  readonly name: string;
  apply(ctx: RequestContext): void | Promise<void>;
}

/** Check that `checks` are the stages before `forward`, in order (explain builds its own). */
export function assertChecks(checks: readonly Stage[]): void {
  const names = checks.map((s) => s.name).join();
  if (names !== STAGE_ORDER.slice(0, -1).join()) throw new Error(`checks must follow ${STAGE_ORDER.slice(0, -1).join(', ')}; got ${names}`);
}

/** Run the checks (every stage before `forward`) in order. Reads state only: nothing is committed. */
export async function runChecks(checks: readonly Stage[], ctx: RequestContext): Promise<void> {
  await runChecksFrom(checks, ctx, 0);
}

/** The checks from `from` on: synchronous while every stage is (a cache hit), a promise from the first that waits. */
function runChecksFrom(checks: readonly Stage[], ctx: RequestContext, from: number): void | Promise<void> {
  for (let i = from; i < checks.length; i++) {
    const pending = (checks[i] as Stage).run(ctx);
    if (pending !== undefined) return pending.then(() => runChecksFrom(checks, ctx, i + 1));
  }
}

export interface PipelineDeps {
  /** Stages in STAGE_ORDER; checked at construction. */
  readonly stages: readonly Stage[];
  readonly filters: readonly ResponseFilter[];
  readonly admission: Admission;
  readonly outcome: OutcomeWriter;
  readonly log: Logger;
  readonly clock: Clock;
  currentPolicy(): PolicySnapshot;
  /** The gateway's public URL (the issuer's), for MCP resource metadata in challenges; a function when known only once the agent port is bound. */
  readonly publicUrl?: string | (() => string);
  /** Per-agent rate limits, charged after the checks and before the commit; absent: none. */
  readonly rateLimiter?: RateLimiter;
}

export interface Pipeline {
  /** Serve one request on the agent port. */
  handle(req: IncomingMessage, res: ServerResponse): void;
  /**
   * Run the checks and commit the decision. Resolves when the call is admitted (a use spent, an
   * approval consumed); throws the refusal to answer with otherwise, after its accounting
   * (violation, approval request) was committed. `gate` is one more check a caller adds after
   * the stages and before the commit (upgrades refuse masked roles there). The call is charged
   * against its rate limits after the checks and before the commit (never for `explain`);
   * resolves the RateLimit header fields to send, or null.
   */
  admit(ctx: RequestContext, gate?: (ctx: RequestContext) => void): Promise<Readonly<Record<string, string>> | null>;
  /** Register an admitted request so a kill can abort it. */
  track(ctx: RequestContext, abort: Abort): void;
  /** Forget a request `track` registered. */
  untrack(ctx: RequestContext, abort: Abort): void;
  /** Build a context for a live or synthetic request. */
  context(request: InboundRequest, signal: RequestSignal): RequestContext;
  /**
   * Account for a request that did not go through `handle` (upgrades, parser errors): metrics and
   * its audit line. Resolves once the line is written; the caller answers only then. Rejects with
   * AuditUnavailableError when it cannot be (the caller then closes without answering).
   */
  finish(ctx: RequestContext, error: unknown, status: number): Promise<void>;
  /**
   * Answer a request node's HTTP parser refused (bad bytes, oversized headers, a slow client) with
   * a problem document on the raw socket, and account for it like any refusal.
   */
  clientError(error: NodeJS.ErrnoException, socket: Socket): void;
  /** Resolves once no request is being served, or after `graceMs`. */
  drained(graceMs: number): Promise<void>;
  /** Requests currently being served. */
  readonly inFlight: number;
}

export function createPipeline(deps: PipelineDeps): Pipeline {
  const names = deps.stages.map((s) => s.name);
  if (names.join() !== STAGE_ORDER.join()) {
    throw new Error(`pipeline stages must be ${STAGE_ORDER.join(', ')}; got ${names.join(', ')}`);
  }
  const checks = deps.stages.slice(0, -1);
  const last = deps.stages[deps.stages.length - 1];
  if (last === undefined) throw new Error('pipeline has no forward stage');
  const forward: Stage = last;
  const { admission, outcome, log, clock, filters } = deps;
  let inFlight = 0;
  let idle: Array<() => void> = [];
  const refusedSockets = new WeakSet<Socket>();
  function done(): void {
    inFlight--;
    if (inFlight > 0 || idle.length === 0) return;
    const waiting = idle;
    idle = [];
    for (const resolve of waiting) resolve();
  }

  function context(request: InboundRequest, signal: RequestSignal): RequestContext {
    return createContext({ requestId: randomUUID(), clock, policy: deps.currentPolicy(), request, signal, log });
  }

  // Admission, as `admit` below, but synchronous while nothing on the way waits: a verified-token
  // cache hit, the memory store's rate limit and a commit of in-memory intents make no promise and
  // no microtask. Throws (or rejects with) the refusal, after its accounting was committed.
  function admitNow(ctx: RequestContext, gate?: (ctx: RequestContext) => void): RateHeaders | Promise<RateHeaders> {
    let checked: void | Promise<void>;
    try {
      checked = runChecksFrom(checks, ctx, 0);
    } catch (error) {
      return refused(ctx, error);
    }
    if (checked === undefined) return charge(ctx, gate);
    return checked.then(
      () => charge(ctx, gate),
      (error: unknown) => refused(ctx, error),
    );
  }

  /** After the checks: the gate, then the charge; a call the checks passed is charged, a rate-limited one spends no use. */
  function charge(ctx: RequestContext, gate?: (ctx: RequestContext) => void): RateHeaders | Promise<RateHeaders> {
    let charged: RateHeaders | Promise<RateHeaders> = null;
    try {
      gate?.(ctx);
      if (deps.rateLimiter !== undefined) charged = deps.rateLimiter.charge(ctx);
    } catch (error) {
      return refused(ctx, error);
    }
    if (!(charged instanceof Promise)) return committed(ctx, charged);
    return charged.then(
      (headers) => committed(ctx, headers),
      (error: unknown) => refused(ctx, error),
    );
  }

  /** Commit an admitted call; a conflict found only now (or a store that fails) is thrown as is. */
  function committed(ctx: RequestContext, headers: RateHeaders): RateHeaders | Promise<RateHeaders> {
    const done = admission.commit(ctx, null);
    return done instanceof Promise ? done.then(() => headers) : headers;
  }

  /** A refusal on the way in: its accounting (a violation, an approval request) committed, then thrown. */
  function refused(ctx: RequestContext, error: unknown): never | Promise<never> {
    if (!(error instanceof GatewayError)) throw error;
    const violation = outcome.violation(ctx, error);
    if (violation !== null) ctx.intents.push(violation);
    const answer = admission.commit(ctx, error);
    if (!(answer instanceof Promise)) throw answer ?? error;
    return answer.then((stored) => {
      throw stored ?? error;
    });
  }

  async function admit(ctx: RequestContext, gate?: (ctx: RequestContext) => void): Promise<RateHeaders> {
    return admitNow(ctx, gate);
  }

  async function serve(ctx: RequestContext, res: ServerResponse, signal: RequestAbort): Promise<void> {
    let status = 0;
    let headersAt = 0;
    let error: unknown = null;
    let tracked = false;
    // What the request's audit line (written before any answer) said, or null while it has none.
    let line: Written | null = null;
    try {
      // Write-ahead audit: no answer without its line, so with an unwritable file nothing is served.
      if (!outcome.available) throw outcome.unavailable();
      const admitted = admitNow(ctx);
      const rateHeaders = admitted instanceof Promise ? await admitted : admitted;
      admission.track(ctx, signal);
      tracked = true;
      if (ctx.signal.aborted) throw ctx.signal.reason;
      const pending = forward.run(ctx);
      if (pending !== undefined) await pending;
      for (const filter of filters) {
        const filtered = filter.apply(ctx);
        if (filtered !== undefined) await filtered;
      }
      const upstream = ctx.upstream;
      if (upstream === null) throw new Error('forward produced no upstream result');
      const headers = upstream.headers;
      headers['x-request-id'] = ctx.requestId;
      if (rateHeaders !== null) Object.assign(headers, rateHeaders);
      status = upstream.status;
      line = { reason: null, status, reasonDetail: '' };
      await outcome.writeAhead(ctx, null, status);
      // Killed while its line was being written: no head has gone out, so the agent is told
      // (403 agent_killed, with a second line) rather than cut and left to find out on a retry.
      const killed = abortReason(ctx);
      if (killed !== null) throw killed;
      res.writeHead(status, headers);
      headersAt = performance.now();
      if (upstream.direct !== null) await sendDirect(upstream.direct, res);
      else if (upstream.body !== null) await relay(upstream.body, res);
      else res.end();
    } catch (caught) {
      error = caught;
      // A plain-path body not sent yet (the answer became a refusal): the upstream exchange ends here.
      ctx.upstream?.direct?.discard();
      headersAt = performance.now();
      const refused = await refuse(ctx, res, caught, line);
      status = refused.status;
      line = refused.line;
    } finally {
      if (tracked) admission.untrack(ctx, signal);
      done();
      outcome.finish(ctx, error, status, headersAt, line);
    }
  }

  async function refuse(ctx: RequestContext, res: ServerResponse, caught: unknown, line: Written | null): Promise<{ status: number; line: Written | null }> {
    if (caught instanceof AuditUnavailableError) {
      // The line is queued (it reaches the file when the disk recovers) but is not written: the
      // answer must not go out without it, so the connection is cut instead.
      res.destroy();
      return { status: REASONS.audit_unavailable.status, line };
    }
    const killed = abortReason(ctx);
    if (killed !== null && res.headersSent) {
      // Killed mid-stream: cut the connection; the agent must not take a truncated body as whole.
      res.destroy();
      return { status: res.statusCode, line };
    }
    if (killed !== null) caught = killed;
    if (ctx.signal.aborted && !(caught instanceof GatewayError)) {
      res.destroy();
      return { status: REASONS.client_closed.status, line };
    }
    if (res.headersSent) {
      // Mid-stream failure (upstream reset or timed out after the head went out): the only honest
      // signal left is to cut the connection so the agent cannot mistake a truncated body for a whole one.
      res.destroy();
      return { status: res.statusCode, line };
    }
    const rendered =
      caught instanceof GatewayError
        ? renderMcpRefusal(ctx, caught, renderProblem(caught, ctx.requestId), (typeof deps.publicUrl === 'function' ? deps.publicUrl() : (deps.publicUrl ?? null)))
        : renderReason('internal', 'the gateway failed to handle this request', ctx.requestId);
    if (!(caught instanceof GatewayError)) {
      log.error('request failed', { requestId: ctx.requestId, error: caught });
    }
    const headers = rendered.headers;
    // A refused request whose body was never read: close rather than read megabytes to keep the
    // connection, and never let those bytes be parsed as a next request.
    if (ctx.request.body !== null && !ctx.request.body.readableEnded && hasDeclaredBody(ctx.request)) {
      headers.connection = 'close';
    }
    // Refused at the door because the audit is down: the one answer sent without a line (it
    // could not be written), counted in the metrics.
    if (!(caught instanceof GatewayError && caught.reason === 'audit_unavailable' && line === null)) {
      // After an allowed line (a kill while it was written), this one says how the request ended.
      const phase = line === null ? undefined : 'end';
      line = { ...outcome.outcomeOf(ctx, caught), status: rendered.status };
      try {
        await outcome.writeAhead(ctx, caught, rendered.status, phase);
      } catch (error) {
        if (!(error instanceof AuditUnavailableError)) throw error;
        res.destroy();
        return { status: REASONS.audit_unavailable.status, line };
      }
      if (ctx.signal.aborted && abortReason(ctx) === null) {
        res.destroy();
        return { status: REASONS.client_closed.status, line };
      }
    }
    // A head whose framing cannot be trusted: nothing after it on this connection is read.
    if (caught instanceof GatewayError && caught.closeConnection) headers.connection = 'close';
    res.writeHead(rendered.status, headers);
    res.end(rendered.body);
    return { status: rendered.status, line };
  }

  return {
    get inFlight() {
      return inFlight;
    },
    context,
    admit,
    track: (ctx, abort) => admission.track(ctx, abort),
    untrack: (ctx, abort) => admission.untrack(ctx, abort),
    handle(req, res) {
      inFlight++;
      const signal = new RequestAbort();
      // 'close' comes once per response: `on`, not `once` (which wraps the listener per request).
      res.on('close', () => {
        if (!res.writableFinished) signal.abort(new Error('client closed the connection'));
      });
      const ctx = context(inboundFrom(req), signal);
      serve(ctx, res, signal).catch((error: unknown) => {
        log.error('request accounting failed', { requestId: ctx.requestId, error });
      });
    },
    finish: (ctx, error, status) => outcome.settle(ctx, error, status),
    clientError(error, socket) {
      if (!socket.writable || error.code === 'ECONNRESET') {
        socket.destroy();
        return;
      }
      // One refusal per connection: the answer waits for its audit line, and the bytes still
      // arriving meanwhile must not raise (and audit) a second one.
      if (refusedSockets.has(socket)) return;
      refusedSockets.add(socket);
      const ctx = context(
        { method: '-', url: '', headers: {}, rawHeaders: [], remoteAddress: socket.remoteAddress ?? '', remotePort: socket.remotePort ?? 0, encrypted: false, body: null },
        AbortSignal.abort(),
      );
      const refusal = parserRefusal(error);
      const problem = renderProblem(refusal, ctx.requestId);
      let head = `HTTP/1.1 ${problem.status} ${STATUS_CODES[problem.status] ?? 'Error'}\r\n`;
      for (const [name, value] of Object.entries(problem.headers)) head += `${name}: ${value}\r\n`;
      // Write-ahead audit: the refusal goes out once its line is written, else the socket closes.
      outcome.settle(ctx, refusal, problem.status).then(
        () => socket.end(`${head}connection: close\r\n\r\n${problem.body}`),
        () => socket.destroy(),
      );
    },
    drained(graceMs) {
      if (inFlight === 0) return Promise.resolve();
      return new Promise((resolve) => {
        const timer = setTimeout(resolve, graceMs);
        idle.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    },
  };
}

export function inboundFrom(req: IncomingMessage): InboundRequest {
  const socket = req.socket;
  return {
    method: req.method ?? 'GET',
    url: req.url ?? '',
    headers: req.headers,
    rawHeaders: req.rawHeaders,
    remoteAddress: socket.remoteAddress ?? '',
    remotePort: socket.remotePort ?? 0,
    encrypted: (socket as Partial<TLSSocket>).encrypted === true,
    body: req,
  };
}

/**
 * Stream the upstream body to the client; resolves once the response is finished, rejects when
 * either side fails first (the caller then cuts the connection). Not stream.pipeline: that one
 * builds an AbortController and aborts it (a DOMException with a stack) on every request, which
 * the benchmark's profile showed at about a tenth of the gateway's CPU.
 */
function relay(body: Readable, res: ServerResponse): Promise<void> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const fail = (error: Error): void => {
      if (settled) return;
      settled = true;
      body.unpipe(res);
      body.destroy();
      reject(error);
    };
    // Stays attached after settling: a body destroyed late must not raise an unhandled 'error'.
    body.on('error', fail);
    res.once('finish', () => {
      settled = true;
      resolve();
    });
    res.once('close', () => {
      if (!settled) fail(new Error('the client closed the connection before the response was sent'));
    });
    body.pipe(res);
  });
}

/** Send a plain-path body; resolves once the response is finished, rejects when the stream was cut. */
function sendDirect(direct: DirectBody, res: ServerResponse): Promise<void> {
  return new Promise((resolve, reject) => {
    direct.sendTo(res, (error) => (error === null ? resolve() : reject(error)));
  });
}

/** The catalog reason for a request node's parser refused (its code names which check failed). */
export function parserRefusal(error: NodeJS.ErrnoException): GatewayError {
  const code = String(error.code ?? error.message);
  if (code === 'HPE_HEADER_OVERFLOW') return new GatewayError('headers_too_large', 'the request headers are too large', { reasonDetail: code });
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT') return new GatewayError('request_timeout', 'the request headers did not arrive in time', { reasonDetail: code });
  // Bad bytes in the target, smuggling attempts, not HTTP/1.1 at all: the target is unusable.
  return new GatewayError('target_invalid', 'the request could not be parsed as HTTP/1.1', { reasonDetail: code });
}

function hasDeclaredBody(request: InboundRequest): boolean {
  const length = request.headers['content-length'];
  return (length !== undefined && length !== '0') || request.headers['transfer-encoding'] !== undefined;
}
