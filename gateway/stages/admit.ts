// Admission: the agent's expiry, the operator's kill switch, then the agent's circuit breaker,
// before any grant is looked at. Reads state only (the last-seen note is an intent for the
// commit). Fails closed: when the state store cannot be trusted, nobody is admitted.
import type { RequestContext, Stage } from '../context.js';
import type { Clock } from '../clock.js';
import { GatewayError } from '../errors.js';
import { viewBreaker } from '../state/breaker.js';
import type { StateView } from '../state/view.js';

export interface AdmitOptions {
  readonly state: StateView;
  readonly clock: Clock;
}

export function createAdmit(options: AdmitOptions): Stage {
  const { state, clock } = options;
  return {
    name: 'admit',
    run(ctx: RequestContext): void {
      const principal = ctx.principal;
      if (principal === null) throw new Error('admit ran before authenticate');
      if (!state.isHealthy()) {
        throw new GatewayError('state_unavailable', 'the gateway cannot check agent state right now; retry shortly', {
          reasonDetail: `store ${state.driver} unhealthy`,
        });
      }
      // An agent past its policy's `expires` is refused whatever tokens it still holds.
      const expiresAt = ctx.policy.agents.get(principal.agent)?.expiresAt ?? null;
      if (expiresAt !== null && clock.now() >= expiresAt) {
        throw new GatewayError('agent_expired', 'this agent has expired; its owner must renew it in the policy', {
          reasonDetail: `agent expired at ${new Date(expiresAt).toISOString()}`,
        });
      }
      const kill = state.killRecord(principal.agent);
      if (kill !== undefined) {
        throw new GatewayError('agent_killed', 'this agent has been disabled by an operator', {
          reasonDetail: `killed at ${new Date(kill.at).toISOString()} by ${kill.by}: ${kill.reason}`,
        });
      }
      const record = state.breaker(principal.agent);
      if (record !== undefined && record.tripped) {
        const policy = ctx.policy.roles.get(principal.role)?.breaker ?? null;
        const view = viewBreaker(record, policy, clock.now());
        if (view.state === 'open') {
          throw new GatewayError(
            'agent_suspended',
            view.retryAfterSeconds === null
              ? 'this agent is suspended after repeated calls outside its grant; an operator must revive it'
              : 'this agent is suspended after repeated calls outside its grant; retry after the cooldown',
            { reasonDetail: `breaker open since ${new Date(record.openedAt ?? 0).toISOString()}`, ...(view.retryAfterSeconds === null ? {} : { retryAfterSeconds: view.retryAfterSeconds }) },
          );
        }
      }
      ctx.intents.push({ kind: 'touch', when: 'always', agent: principal.agent, jti: principal.jti, expiresAt: principal.expiresAt });
    },
  };
}
