// The outcome writer: turns a finished request (what it was refused for or what came back, the
// status, the timings) into its one audit line, its metrics and, for a violation made with a
// valid token, the breaker's violation intent. Every listener's requests end here once: proxied
// calls, WebSocket upgrades and requests node's HTTP parser refused. It never drops a record:
// when the audit log is behind, `backpressure()` tells the runner to hold new work.
import type { RequestContext } from './context.js';
import { GatewayError, type ReasonCode } from './errors.js';
import { toolLabels } from './mcp/outcome.js';
import { countingPolicy } from './state/breaker.js';
import type { Intent } from './state/view.js';
import type { AuditLog } from './telemetry/audit-log.js';
import { NO_REASON, UNKNOWN_LABEL, type Metrics } from './telemetry/metrics.js';

/** When the response head went out, in `performance.now()` ms (the end, when no body followed). */
export interface Timing {
  readonly headersAt: number;
}

export interface OutcomeWriter {
  /** The violation intent `error` makes for this request, or null (not a violation, or no valid token). */
  violation(ctx: RequestContext, error: unknown): Intent | null;
  /** Account for one finished request: sets `ctx.outcome`, observes the metrics, writes the audit line. */
  finish(ctx: RequestContext, error: unknown, status: number, timing?: Timing): void;
  /** Resolves when the audit log has room again, or null when it has room now. */
  backpressure(): Promise<void> | null;
}

export interface OutcomeDeps {
  readonly metrics: Metrics;
  /** Only what a finished request needs of the audit log: append a line, wait for room. */
  readonly audit: Pick<AuditLog, 'write' | 'drained'>;
}

export function createOutcomeWriter(deps: OutcomeDeps): OutcomeWriter {
  const { metrics, audit } = deps;
  let pressure = false;

  /** The refusal that counts against the agent, or null: only violations made with a valid token. */
  function violationOf(ctx: RequestContext, error: unknown): GatewayError | null {
    return error instanceof GatewayError && error.spec.violation && ctx.principal !== null ? error : null;
  }

  return {
    violation(ctx, error) {
      const principal = ctx.principal;
      if (violationOf(ctx, error) === null || principal === null) return null;
      // A role without a breaker is still counted (never tripped), so `agents` shows its violations.
      const policy = countingPolicy(ctx.policy.roles.get(principal.role)?.breaker ?? null);
      return { kind: 'violation', when: 'always', agent: principal.agent, role: principal.role, policy };
    },

    finish(ctx, error, status, timing) {
      const end = performance.now();
      const headersAt = timing?.headersAt ?? end;
      const totalMs = Number(process.hrtime.bigint() - ctx.startedAt) / 1e6;
      let reason: ReasonCode | null = null;
      let reasonDetail = '';
      const killed = abortReason(ctx);
      if (killed !== null && error !== null) error = killed;
      if (error instanceof GatewayError) {
        reason = error.reason;
        reasonDetail = error.reasonDetail;
        const principal = ctx.principal;
        if (violationOf(ctx, error) !== null && principal !== null) metrics.violation(principal.agent, principal.role, error.reason);
      } else if (error !== null) {
        if (ctx.signal.aborted) {
          reason = 'client_closed';
        } else if (ctx.upstream !== null) {
          // The head went out, then the stream failed: the call was allowed, the delivery was not.
          reasonDetail = `stream failed: ${describe(error)}`;
        } else {
          reason = 'internal';
          reasonDetail = describe(error);
        }
      }
      ctx.outcome = reason === null ? { decision: 'allow', status } : { decision: 'deny', reason, status, reasonDetail };

      const policy = ctx.policy;
      const backendName = ctx.target?.backend ?? '';
      const backendLabel = policy.backends.has(backendName) ? backendName : UNKNOWN_LABEL;
      const upstreamMs = ctx.upstream?.latencyMs ?? 0;
      const headersMs = totalMs - (end - headersAt);
      metrics.observeRequest(backendLabel, reason === null ? 'allow' : 'deny', reason ?? NO_REASON, totalMs / 1000, Math.max(0, headersMs - upstreamMs) / 1000);
      if (ctx.mcp !== null) for (const tool of toolLabels(ctx)) metrics.toolCall(backendLabel, tool, reason === null ? 'allow' : 'deny');

      const principal = ctx.principal;
      const target = ctx.target;
      const accepted = audit.write({
        time: new Date(ctx.receivedAt).toISOString(),
        kind: 'proxy',
        requestId: ctx.requestId,
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
      });
      if (!accepted) pressure = true;
    },

    backpressure() {
      if (!pressure) return null;
      return audit.drained().then(() => {
        pressure = false;
      });
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
