// The request runner: the only place that knows the stage order and the only writer to the
// client. Every request ends in exactly one outcome, one metrics observation and one audit line,
// whatever happened (refusal, upstream failure, bug, client gone).
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { Readable } from 'node:stream';
import { createContext, type InboundRequest, type RequestContext, type Stage } from './context.js';
import type { Clock } from './clock.js';
import { GatewayError, REASONS, type ReasonCode } from './errors.js';
import type { RateLimiter } from './admission/rate-limiter.js';
import { toolLabels } from './mcp/outcome.js';
import { renderMcpRefusal } from './mcp/refusal.js';
import { renderProblem, renderReason } from './problem.js';
import type { PolicySnapshot } from './policy/types.js';
import { AuditUnavailableError, type AuditLog, type AuditRecord } from './telemetry/audit-log.js';
import type { Logger } from './telemetry/log.js';
import { NO_REASON, UNKNOWN_LABEL, type Metrics } from './telemetry/metrics.js';

/** The stage order of DESIGN §3. Checks run before `forward`; `explain` and upgrades stop there. */
export const STAGE_ORDER = ['normalize', 'authenticate', 'admit', 'authorize', 'forward'] as const;

/** A response filter: takes the context (with `upstream` set) and replaces `ctx.upstream`. */
export interface ResponseFilter {
  readonly name: string;
  apply(ctx: RequestContext): void | Promise<void>;
}

/** Run the checks (every stage before `forward`) in order; used by the pipeline, upgrades and `explain`. */
export async function runChecks(checks: readonly Stage[], ctx: RequestContext): Promise<void> {
  for (let i = 0; i < checks.length; i++) {
    const stage = checks[i];
    if (stage === undefined || stage.name !== STAGE_ORDER[i] || stage.name === 'forward') {
      throw new Error(`checks must follow ${STAGE_ORDER.slice(0, -1).join(', ')}`);
    }
    const pending = stage.run(ctx);
    if (pending !== undefined) await pending;
  }
}

export interface PipelineDeps {
  /** Stages in STAGE_ORDER; checked at construction. */
  readonly stages: readonly Stage[];
  readonly filters: readonly ResponseFilter[];
  readonly metrics: Metrics;
  readonly audit: AuditLog;
  readonly log: Logger;
  readonly clock: Clock;
  currentPolicy(): PolicySnapshot;
  /** The gateway's public URL (the issuer's), for MCP resource metadata in challenges; a function when known only once the agent port is bound. */
  readonly publicUrl?: string | (() => string);
  /** Called once per violation made with a valid token (breaker accounting). */
  onViolation?(ctx: RequestContext, error: GatewayError): void;
  /**
   * Register an admitted request so a kill can abort it; returns the unregister function.
   * Called after the checks, so it must itself refuse (call `abort`) an agent killed meanwhile.
   */
  track?(ctx: RequestContext, abort: (reason: GatewayError) => void): () => void;
  /** Per-agent rate limits, charged after the checks; absent: none. */
  readonly rateLimiter?: RateLimiter;
}

export interface Pipeline {
  /** Serve one request on the agent port. */
  handle(req: IncomingMessage, res: ServerResponse): void;
  /** Run the checks (every stage before `forward`) on a context; throws the refusal. */
  check(ctx: RequestContext): Promise<void>;
  /**
   * Charge a call that passed the checks against its rate limits (never for `explain`); throws
   * 429 rate_limited. Resolves the RateLimit header fields to send, or null.
   */
  charge(ctx: RequestContext): Promise<Readonly<Record<string, string>> | null>;
  /** Build a context for a live or synthetic request. */
  context(request: InboundRequest, signal: AbortSignal): RequestContext;
  /**
   * Account for a request that did not go through `handle` (upgrades, parser errors): metrics and
   * its audit line. Resolves once the line is written; the caller answers only then. Rejects with
   * AuditUnavailableError when it cannot be (the caller then closes without answering).
   */
  finish(ctx: RequestContext, error: unknown, status: number): Promise<void>;
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
  const { metrics, audit, log, clock, filters } = deps;
  let inFlight = 0;

  function context(request: InboundRequest, signal: AbortSignal): RequestContext {
    return createContext({ requestId: randomUUID(), clock, policy: deps.currentPolicy(), request, signal, log });
  }

  async function check(ctx: RequestContext): Promise<void> {
    for (const stage of checks) {
      const pending = stage.run(ctx);
      if (pending !== undefined) await pending;
    }
  }

  function charge(ctx: RequestContext): Promise<Readonly<Record<string, string>> | null> {
    return deps.rateLimiter === undefined ? Promise.resolve(null) : deps.rateLimiter.charge(ctx);
  }

  async function serve(ctx: RequestContext, res: ServerResponse, controller: AbortController): Promise<void> {
    let status = 0;
    let headersAt = 0;
    let error: unknown = null;
    let untrack: (() => void) | undefined;
    // What the request's audit line (written before any answer) said, or null while it has none.
    let line: Written | null = null;
    try {
      // Write-ahead audit: no answer without its line, so with an unwritable file nothing is served.
      if (!audit.available) throw auditUnavailable();
      await check(ctx);
      const rateHeaders = await charge(ctx);
      untrack = deps.track?.(ctx, (reason) => controller.abort(reason));
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
      await audit.append(recordOf(ctx, null, '', status));
      res.writeHead(status, headers);
      headersAt = performance.now();
      if (upstream.body !== null) await relay(upstream.body, res);
      else res.end();
    } catch (caught) {
      error = caught;
      headersAt = performance.now();
      const refused = await refuse(ctx, res, caught, line);
      status = refused.status;
      line = refused.line;
    } finally {
      untrack?.();
      inFlight--;
      finishWith(ctx, error, status, headersAt, line);
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
      const { reason, reasonDetail } = outcomeOf(ctx, caught);
      line = { reason, status: rendered.status, reasonDetail };
      try {
        await audit.append(recordOf(ctx, reason, reasonDetail, rendered.status));
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

  /** The refusal reason and its internal detail for a request that ended with `error` (null: allowed). */
  function outcomeOf(ctx: RequestContext, error: unknown): { reason: ReasonCode | null; reasonDetail: string } {
    const killed = abortReason(ctx);
    if (killed !== null && error !== null) error = killed;
    if (error instanceof AuditUnavailableError) return { reason: 'audit_unavailable', reasonDetail: `answer not sent: ${error.message}` };
    if (error instanceof GatewayError) return { reason: error.reason, reasonDetail: error.reasonDetail };
    if (error === null) return { reason: null, reasonDetail: '' };
    if (ctx.signal.aborted) return { reason: 'client_closed', reasonDetail: '' };
    // The head went out, then the stream failed: the call was allowed, the delivery was not.
    if (ctx.upstream !== null) return { reason: null, reasonDetail: `stream failed: ${describe(error)}` };
    return { reason: 'internal', reasonDetail: describe(error) };
  }

  function recordOf(ctx: RequestContext, reason: ReasonCode | null, reasonDetail: string, status: number, phase?: 'end'): AuditRecord {
    const principal = ctx.principal;
    const target = ctx.target;
    const totalMs = Number(process.hrtime.bigint() - ctx.startedAt) / 1e6;
    return {
      time: new Date(ctx.receivedAt).toISOString(),
      kind: 'proxy',
      requestId: ctx.requestId,
      // A second line for the same request: what happened after its answer's head went out.
      ...(phase === undefined ? {} : { phase }),
      agent: principal?.agent ?? null,
      role: principal?.role ?? null,
      onBehalfOf: principal?.onBehalfOf ?? null,
      jti: principal?.jti ?? null,
      backend: target !== null && target.backend !== '' ? target.backend : null,
      method: ctx.request.method,
      // The canonical path only: query strings can carry secrets and are never logged.
      path: target !== null && target.invalid === null ? target.path : null,
      decision: reason === null ? 'allow' : 'deny',
      reason: reason ?? NO_REASON,
      reasonDetail: reasonDetail === '' ? null : reasonDetail,
      route: ctx.grant?.route ?? null,
      // Role constraints: what shadow mode let through, and the human approval a call used.
      ...(ctx.grant !== null && ctx.grant.shadow.length > 0 ? { shadow: ctx.grant.shadow } : {}),
      ...(ctx.grant?.approvalId ? { approvalId: ctx.grant.approvalId } : {}),
      // MCP: the JSON-RPC id, method and tool of every message of the body.
      ...(ctx.mcp !== null && ctx.mcp.messages.length > 0 ? { rpc: ctx.mcp.messages } : {}),
      status,
      upstreamStatus: ctx.upstream?.status ?? null,
      durationMs: Math.round(totalMs * 1000) / 1000,
      remote: ctx.request.remoteAddress,
    };
  }

  /**
   * Metrics, violation accounting and the outcome, once per request. The audit line was written
   * before the answer (`line`); when the request ended differently than that line says (a
   * stream cut, a kill mid-stream), a second line with `phase: end` records how. A request with
   * no line yet (the client left first) gets it now.
   */
  function finishWith(ctx: RequestContext, error: unknown, status: number, headersAt: number, line: Written | null): void {
    const end = performance.now();
    const totalMs = Number(process.hrtime.bigint() - ctx.startedAt) / 1e6;
    const { reason, reasonDetail } = outcomeOf(ctx, error);
    const refusal = error === null ? null : (abortReason(ctx) ?? error);
    const principal = ctx.principal;
    if (refusal instanceof GatewayError && refusal.violation && principal !== null) {
      metrics.violation(principal.agent, principal.role, refusal.reason);
      deps.onViolation?.(ctx, refusal);
    }
    ctx.outcome =
      reason === null
        ? { decision: 'allow', status }
        : { decision: 'deny', reason, status, reasonDetail };

    const policy = ctx.policy;
    const backendName = ctx.target?.backend ?? '';
    const backendLabel = policy.backends.has(backendName) ? backendName : UNKNOWN_LABEL;
    const upstreamMs = ctx.upstream?.latencyMs ?? 0;
    const headersMs = totalMs - (end - headersAt);
    metrics.observeRequest(
      backendLabel,
      reason === null ? 'allow' : 'deny',
      reason ?? NO_REASON,
      totalMs / 1000,
      Math.max(0, headersMs - upstreamMs) / 1000,
    );
    if (ctx.mcp !== null) for (const tool of toolLabels(ctx)) metrics.toolCall(backendLabel, tool, reason === null ? 'allow' : 'deny');

    if (reason === 'audit_unavailable' && line === null) return; // refused at the door, see refuse()
    if (line === null) audit.write(recordOf(ctx, reason, reasonDetail, status));
    else if (line.reason !== reason || line.status !== status || line.reasonDetail !== reasonDetail) audit.write(recordOf(ctx, reason, reasonDetail, status, 'end'));
  }

  return {
    get inFlight() {
      return inFlight;
    },
    context,
    check,
    charge,
    handle(req, res) {
      inFlight++;
      const controller = new AbortController();
      res.once('close', () => {
        if (!res.writableFinished) controller.abort(new Error('client closed the connection'));
      });
      const ctx = context(inboundFrom(req), controller.signal);
      serve(ctx, res, controller).catch((error: unknown) => {
        log.error('request accounting failed', { requestId: ctx.requestId, error });
      });
    },
    async finish(ctx, error, status) {
      if (ctx.outcome !== null) {
        // Already accounted for (an upgrade that failed after its 101 was recorded): a second line.
        const { reason, reasonDetail } = outcomeOf(ctx, error);
        audit.write(recordOf(ctx, reason, reasonDetail, status, 'end'));
        return;
      }
      if (!audit.available) {
        finishWith(ctx, auditUnavailable(), REASONS.audit_unavailable.status, performance.now(), null);
        throw new AuditUnavailableError(audit.unavailableReason ?? 'unwritable');
      }
      const { reason, reasonDetail } = outcomeOf(ctx, error);
      const written = audit.append(recordOf(ctx, reason, reasonDetail, status));
      finishWith(ctx, error, status, performance.now(), { reason, status, reasonDetail });
      await written;
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

/** What a request's audit line said: its reason (null: allowed) and status. */
interface Written {
  readonly reason: ReasonCode | null;
  readonly status: number;
  readonly reasonDetail: string;
}

function auditUnavailable(): GatewayError {
  return new GatewayError('audit_unavailable', 'the gateway cannot record requests right now; retry later');
}

/** The refusal a request was aborted with (a kill), or null for a client that went away. */
function abortReason(ctx: RequestContext): GatewayError | null {
  return ctx.signal.aborted && ctx.signal.reason instanceof GatewayError ? ctx.signal.reason : null;
}

function hasDeclaredBody(request: InboundRequest): boolean {
  const length = request.headers['content-length'];
  return (length !== undefined && length !== '0') || request.headers['transfer-encoding'] !== undefined;
}

function describe(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return code === undefined ? error.message : `${String(code)}: ${error.message}`;
  }
  return String(error);
}
