// The outcome writer: turns a finished request (what it was refused for or what came back, the
// status, the timings) into its audit line, its metrics and, for a violation made with a valid
// token, the breaker's violation intent. Every listener's requests go through it: proxied calls,
// WebSocket upgrades and requests node's HTTP parser refused. The audit is write-ahead: the
// runner sends an answer only once its line is written (`writeAhead`); when the request then
// ends differently (a stream cut, a kill mid-stream) `finish` adds a second line (`phase: end`).
// When the audit file cannot be written, nothing is answered (AuditUnavailableError).
import type { RequestContext } from './context.js';
import { GatewayError, REASONS, type ReasonCode, type ReasonSpec } from './errors.js';
import { toolLabels } from './mcp/outcome.js';
import { countingPolicy } from './state/breaker.js';
import type { Intent } from './state/view.js';
import { AuditUnavailableError, type AuditLog, type ProxyRecord } from './telemetry/audit-log.js';
import { NO_REASON, UNKNOWN_LABEL } from './telemetry/labels.js';
import type { Metrics } from './telemetry/metrics.js';

/** What a request's audit line said: its reason (null: allowed) and status. */
export interface Written {
  readonly reason: ReasonCode | null;
  readonly status: number;
  readonly reasonDetail: string;
}

export interface OutcomeWriter {
  /** The violation intent `error` makes for this request, or null (not a violation, or no valid token). */
  violation(ctx: RequestContext, error: unknown): Intent | null;
  /** False while the audit file cannot be written: new work is refused. */
  readonly available: boolean;
  /** The refusal for a request that arrives while the audit is unavailable. */
  unavailable(): GatewayError;
  /** The refusal reason and internal detail of a request that ended with `error` (null: allowed). */
  outcomeOf(ctx: RequestContext, error: unknown): { reason: ReasonCode | null; reasonDetail: string };
  /**
   * Write the request's line before its answer; resolves what it said once written. Rejects with
   * AuditUnavailableError. `phase: 'end'` for a second line (the request already has one).
   */
  writeAhead(ctx: RequestContext, error: unknown, status: number, phase?: 'end'): Promise<Written>;
  /**
   * Metrics and `ctx.outcome`, once per request served by the runner; `line` is what its line
   * said (null: it has none yet, e.g. the client left first, and gets it now).
   */
  finish(ctx: RequestContext, error: unknown, status: number, headersAt: number, line: Written | null): void;
  /**
   * Account for a request the runner did not serve (upgrades, parser refusals): metrics and its
   * line. Resolves once the line is written; the caller answers only then. Rejects with
   * AuditUnavailableError when it cannot be (the caller closes without answering).
   */
  settle(ctx: RequestContext, error: unknown, status: number): Promise<void>;
}

export interface OutcomeDeps {
  readonly metrics: Metrics;
  /** Only what a finished request needs of the audit log. */
  readonly audit: Pick<AuditLog, 'append' | 'write' | 'available' | 'unavailableReason'>;
}

export function createOutcomeWriter(deps: OutcomeDeps): OutcomeWriter {
  const { metrics, audit } = deps;

  function unavailable(): GatewayError {
    return new GatewayError('audit_unavailable', 'the gateway cannot record requests right now; retry later');
  }

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

  function recordOf(ctx: RequestContext, reason: ReasonCode | null, reasonDetail: string, status: number, phase?: 'end'): ProxyRecord {
    const principal = ctx.principal;
    const target = ctx.target;
    const totalMs = Number(process.hrtime.bigint() - ctx.startedAt) / 1e6;
    return {
      time: new Date(ctx.receivedAt).toISOString(),
      kind: 'proxy',
      requestId: ctx.requestId,
      // A second line for the same request: what happened after its answer's head went out.
      // (Absent fields are left undefined, which JSON leaves out: no spread copies per line.)
      phase,
      agent: principal?.agent ?? null,
      role: principal?.role ?? null,
      onBehalfOf: principal?.onBehalfOf ?? null,
      jti: principal?.jti ?? null,
      backend: target !== null && target.backend !== '' ? target.backend : null,
      method: ctx.request.method,
      // The canonical path only: query strings can carry secrets and are never logged; nor is the
      // path of a refusal whose target may carry one (the reason catalog says which).
      path: target !== null && target.invalid === null && (reason === null || (REASONS[reason] as ReasonSpec).secretInTarget !== true) ? target.path : null,
      decision: reason === null ? 'allow' : 'deny',
      reason: reason ?? NO_REASON,
      reasonDetail: reasonDetail === '' ? null : reasonDetail,
      route: ctx.grant?.route ?? null,
      // Role constraints: what shadow mode let through, and the human approval a call used.
      shadow: ctx.grant !== null && ctx.grant.shadow.length > 0 ? ctx.grant.shadow : undefined,
      approvalId: ctx.grant?.approvalId ? ctx.grant.approvalId : undefined,
      // MCP: the JSON-RPC id, method and tool of every message of the body.
      rpc: ctx.mcp !== null && ctx.mcp.messages.length > 0 ? ctx.mcp.messages : undefined,
      status,
      upstreamStatus: ctx.upstream?.status ?? null,
      durationMs: Math.round(totalMs * 1000) / 1000,
      remote: ctx.request.remoteAddress,
    };
  }

  function finish(ctx: RequestContext, error: unknown, status: number, headersAt: number, line: Written | null): void {
    const end = performance.now();
    const totalMs = Number(process.hrtime.bigint() - ctx.startedAt) / 1e6;
    const { reason, reasonDetail } = outcomeOf(ctx, error);
    const refusal = error === null ? null : (abortReason(ctx) ?? error);
    const principal = ctx.principal;
    if (refusal instanceof GatewayError && refusal.violation && principal !== null) metrics.violation(principal.agent, principal.role, refusal.reason);
    ctx.outcome = reason === null ? { decision: 'allow', status } : { decision: 'deny', reason, status, reasonDetail };

    const backendName = ctx.target?.backend ?? '';
    const backendLabel = ctx.policy.backends.has(backendName) ? backendName : UNKNOWN_LABEL;
    const upstreamMs = ctx.upstream?.latencyMs ?? 0;
    const headersMs = totalMs - (end - headersAt);
    metrics.observeRequest(backendLabel, reason === null ? 'allow' : 'deny', reason ?? NO_REASON, totalMs / 1000, Math.max(0, headersMs - upstreamMs) / 1000);
    if (ctx.mcp !== null) for (const tool of toolLabels(ctx)) metrics.toolCall(backendLabel, tool, reason === null ? 'allow' : 'deny');

    if (reason === 'audit_unavailable' && line === null) return; // refused at the door: no line can be written
    if (line === null) audit.write(recordOf(ctx, reason, reasonDetail, status));
    else if (line.reason !== reason || line.status !== status || line.reasonDetail !== reasonDetail) audit.write(recordOf(ctx, reason, reasonDetail, status, 'end'));
  }

  return {
    get available() {
      return audit.available;
    },
    unavailable,
    outcomeOf,
    violation(ctx, error) {
      const principal = ctx.principal;
      if (!(error instanceof GatewayError) || !error.violation || principal === null) return null;
      // A role without a breaker is still counted (never tripped), so `agents` shows its violations.
      const policy = countingPolicy(ctx.policy.roles.get(principal.role)?.breaker ?? null);
      return { kind: 'violation', when: 'always', agent: principal.agent, role: principal.role, policy };
    },
    async writeAhead(ctx, error, status, phase) {
      const { reason, reasonDetail } = outcomeOf(ctx, error);
      await audit.append(recordOf(ctx, reason, reasonDetail, status, phase));
      return { reason, status, reasonDetail };
    },
    finish,
    async settle(ctx, error, status) {
      if (ctx.outcome !== null) {
        // Already accounted for (an upgrade that failed after its 101 was recorded): a second line.
        const { reason, reasonDetail } = outcomeOf(ctx, error);
        audit.write(recordOf(ctx, reason, reasonDetail, status, 'end'));
        return;
      }
      if (!audit.available) {
        finish(ctx, unavailable(), REASONS.audit_unavailable.status, performance.now(), null);
        throw new AuditUnavailableError(audit.unavailableReason ?? 'unwritable');
      }
      const { reason, reasonDetail } = outcomeOf(ctx, error);
      const written = audit.append(recordOf(ctx, reason, reasonDetail, status));
      finish(ctx, error, status, performance.now(), { reason, status, reasonDetail });
      await written;
    },
  };
}

/** The refusal a request was aborted with (a kill), or null for a client that went away. */
export function abortReason(ctx: RequestContext): GatewayError | null {
  return ctx.signal.aborted && ctx.signal.reason instanceof GatewayError ? ctx.signal.reason : null;
}

function describe(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return code === undefined ? error.message : `${String(code)}: ${error.message}`;
  }
  return String(error);
}
