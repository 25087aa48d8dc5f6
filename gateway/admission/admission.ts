// Admission and accounting: the one room for the rules that cut across requests. It owns the
// commit step (the only place a decision changes shared state), the kill registry and in-flight
// aborts, breaker trips and revoke-on-trip. Rate limits belong here too. Created from
// {store, metrics, log, clock}; the checks only ever see `view`, a read-only StateView.
// When the store cannot be written, the commit refuses the call (state_unavailable): fail closed.
import type { Clock } from '../clock.js';
import type { RequestContext } from '../context.js';
import { GatewayError, approvalRequiredError } from '../errors.js';
import type { PolicySnapshot } from '../policy/types.js';
import { viewBreaker } from '../state/breaker.js';
import type { KillRecord, Sharing, Store } from '../state/store.js';
import { viewOf, type Intent, type StateView } from '../state/view.js';
import type { Logger } from '../telemetry/log.js';
import type { AgentGauge, Metrics } from '../telemetry/metrics.js';

export interface AdmissionDeps {
  readonly store: Store;
  readonly metrics: Metrics;
  readonly log: Logger;
  readonly clock: Clock;
}

/** Stops one admitted request or WebSocket (the runner's RequestAbort aborts it with `reason`). */
export interface Abort {
  abort(reason: GatewayError): void;
}

export interface Admission {
  /** What the checks read. */
  readonly view: StateView;
  /**
   * Apply the intents the checks (and the outcome) collected, once. With `refusal` null the
   * call was admitted: admitted-only intents apply too, and a conflict found only now (a use or an
   * approval taken meanwhile) or a store that cannot be written refuses it; the refusal is thrown.
   * With a refusal, only `always` intents apply, and the refusal to answer with is returned
   * (an approval request names the record actually stored). Synchronous (a value, or the throw)
   * when every intent applies in memory (last-seen, sessions, violations): the common request
   * waits for nothing; a promise when one needs the store (a use, an approval).
   */
  commit(ctx: RequestContext, refusal: GatewayError | null): GatewayError | null | Promise<GatewayError | null>;
  /** Register an admitted request so a kill can abort it (aborted at once when a kill landed meanwhile). */
  track(ctx: RequestContext, abort: Abort): void;
  /** Forget a request `track` registered (it ended). */
  untrack(ctx: RequestContext, abort: Abort): void;
  /** Abort every in-flight request and WebSocket of `agent`; returns how many. */
  abortAgent(agent: string, reason: string): number;
  /** The operator's kill switch: in force and the agent's calls in flight stopped at once; resolves once durable. */
  kill(record: KillRecord): Promise<{ readonly sharing: Sharing; readonly aborted: number }>;
  /** Lift a kill switch and reset the breaker; false when there was neither. */
  revive(agent: string): Promise<boolean>;
  /** Revoke every token of `agent` issued until now and cut its calls in flight. */
  revokeAgent(agent: string, reason: string): Promise<{ readonly sharing: Sharing; readonly aborted: number }>;
  /** Breaker and kill gauges for the metrics scrape. */
  gauges(policy: PolicySnapshot): Iterable<AgentGauge>;
}

const KILLED = 'this agent has been disabled by an operator';

/** The intents a commit applies in memory without waiting for the store (the rest need it). */
const AT_ONCE_KINDS = ['touch', 'touch_session', 'end_session', 'violation'] as const satisfies ReadonlyArray<Intent['kind']>;
const AT_ONCE: ReadonlySet<Intent['kind']> = new Set(AT_ONCE_KINDS);
type AtOnceIntent = Extract<Intent, { kind: (typeof AT_ONCE_KINDS)[number] }>;

export function createAdmission(deps: AdmissionDeps): Admission {
  const { store, metrics, log, clock } = deps;
  const view = viewOf(store);
  // Admitted requests and WebSockets by agent, so a kill can abort them.
  const inFlight = new Map<string, Set<Abort>>();

  function abortAgent(agent: string, reason: string): number {
    const set = inFlight.get(agent);
    if (set === undefined) return 0;
    const refusal = new GatewayError('agent_killed', KILLED, { reasonDetail: reason });
    const aborts = [...set];
    for (const abort of aborts) abort.abort(refusal);
    return aborts.length;
  }

  /** Count a violation; on a trip, the metric, the log line and (if the role says so) revocation. */
  function countViolation(intent: Extract<Intent, { kind: 'violation' }>): void {
    store.recordViolation(intent.agent, intent.policy).then(
      async (outcome) => {
        if (!outcome.tripped) return;
        metrics.breakerTripped(intent.agent);
        log.warn('circuit breaker opened', { agent: intent.agent, role: intent.role, trips: outcome.record.trips, reopenAt: outcome.record.reopenAt });
        if (intent.policy.revokeTokens) await store.revokeAgent(intent.agent, Math.floor(clock.now() / 1000));
      },
      (error: unknown) => log.error('breaker update failed', { agent: intent.agent, error }),
    );
  }

  async function apply(intent: Intent, refusal: GatewayError | null): Promise<GatewayError | null> {
    if (appliesAtOnce(intent)) return applyAtOnce(intent, refusal);
    switch (intent.kind) {
      case 'request_approval': {
        const stored = await store.requestApproval(intent.record);
        // A concurrent identical request may have stored its own first: name that one.
        if (stored.id === intent.record.id || refusal?.reason !== 'approval_required') return refusal;
        return approvalRequiredError(stored);
      }
      case 'spend_use':
        if (!(await store.consumeUse(intent.jti, intent.maxUses, intent.expiresAt))) {
          return new GatewayError('token_invalid', 'the access token is invalid, expired or revoked; request a new one', { reasonDetail: 'spent' });
        }
        return refusal;
      case 'consume_approval': {
        const use = await store.consumeApproval(intent.id, intent.requestKey);
        if (use === 'ok') return refusal;
        return new GatewayError('approval_invalid', use === 'used' ? 'this approval was already used; each approval passes one call' : 'this approval can no longer be used; send the request without the header to ask again', {
          reasonDetail: `approval ${intent.id}: ${use} at commit`,
        });
      }
    }
  }

  async function applySafely(intent: Intent, answer: GatewayError | null): Promise<GatewayError | null> {
    try {
      return await apply(intent, answer);
    } catch (error) {
      return commitFailed(intent, error);
    }
  }

  function commitFailed(intent: Intent, error: unknown): GatewayError {
    return new GatewayError('state_unavailable', 'the gateway cannot record this decision right now; retry shortly', {
      reasonDetail: `commit ${intent.kind} failed: ${error instanceof Error ? error.message : String(error)}`,
      cause: error,
    });
  }

  /** An intent that applies in memory at once (its durable part, if any, follows on its own). */
  function appliesAtOnce(intent: Intent): intent is AtOnceIntent {
    return AT_ONCE.has(intent.kind);
  }

  function commit(ctx: RequestContext, refusal: GatewayError | null): GatewayError | null | Promise<GatewayError | null> {
    const intents = ctx.intents;
    if (intents.length === 0) return refusal;
    if (!intents.every(appliesAtOnce)) return commitWaiting(ctx, refusal);
    // These are all `always` intents, applied in order; none adds another. Emptied after, so a
    // commit applies each once, whatever it finds.
    let answer = refusal;
    for (const intent of intents) {
      try {
        answer = applyAtOnce(intent, answer);
      } catch (error) {
        answer = commitFailed(intent, error);
      }
    }
    intents.length = 0;
    if (refusal !== null) return answer;
    if (answer !== null) throw answer;
    return null;
  }

  /** `apply` for the intents `appliesAtOnce` admits: the same effect, without a promise. */
  function applyAtOnce(intent: AtOnceIntent, refusal: GatewayError | null): GatewayError | null {
    switch (intent.kind) {
      case 'touch':
        store.touch(intent.agent, intent.jti, intent.expiresAt);
        return refusal;
      case 'touch_session':
        store.checkSession(intent.sid, intent.agent, intent.expiresAt, null, true);
        return refusal;
      case 'end_session':
        // In force at once where it was found idle; the durable write is retried by the next one.
        store.endSession(intent.sid, intent.expiresAt).catch((error: unknown) => log.error('ending an idle session failed', { sid: intent.sid, error }));
        return refusal;
      case 'violation':
        // Counted without holding the answer back: a refusal flood must not queue on the store.
        countViolation(intent);
        return refusal;
    }
  }

  async function commitWaiting(ctx: RequestContext, refusal: GatewayError | null): Promise<GatewayError | null> {
    // Taken out first: a commit runs once per request, whatever it finds.
    const intents = ctx.intents.splice(0);
    let answer = refusal;
    for (const intent of intents) if (intent.when === 'always') answer = await applySafely(intent, answer);
    if (refusal !== null) return answer;
    // Admitted: spend and consume in check order; the first conflict refuses and stops the rest.
    for (const intent of intents) {
      if (answer !== null) break;
      if (intent.when === 'admitted') answer = await applySafely(intent, null);
    }
    if (answer !== null) throw answer;
    return null;
  }

  return {
    view,
    commit,
    abortAgent,
    track(ctx, abort) {
      const agent = ctx.principal?.agent;
      if (agent === undefined) return;
      let set = inFlight.get(agent);
      if (set === undefined) {
        set = new Set();
        inFlight.set(agent, set);
      }
      set.add(abort);
      // A kill that landed between admit and here must still stop this request.
      const kill = store.killRecord(agent);
      if (kill !== undefined) abort.abort(new GatewayError('agent_killed', KILLED, { reasonDetail: kill.reason }));
    },
    untrack(ctx, abort) {
      const agent = ctx.principal?.agent;
      if (agent === undefined) return;
      const set = inFlight.get(agent);
      if (set === undefined) return;
      set.delete(abort);
      if (set.size === 0) inFlight.delete(agent);
    },
    async kill(record) {
      // The store puts the kill in force in memory before its first wait (the next request is
      // refused), so the calls in flight are stopped now, not after the disk or Redis answered;
      // the answer still waits for the durable write, and a restart keeps the kill.
      const durable = store.kill(record);
      const aborted = abortAgent(record.agent, record.reason);
      return { sharing: await durable, aborted };
    },
    revive: (agent) => store.revive(agent),
    async revokeAgent(agent, reason) {
      // As a kill: in force in memory at once, the calls in flight stopped before the durable write.
      const durable = store.revokeAgent(agent, Math.floor(clock.now() / 1000));
      const aborted = abortAgent(agent, reason);
      return { sharing: await durable, aborted };
    },
    *gauges(policy) {
      const now = clock.now();
      for (const [id, agent] of policy.agents) {
        const breaker = viewBreaker(store.breaker(id), policy.roles.get(agent.role)?.breaker ?? null, now);
        yield { agent: id, breaker: breaker.state === 'open' ? 2 : breaker.state === 'half_open' ? 1 : 0, killed: store.killRecord(id) !== undefined };
      }
    },
  };
}
