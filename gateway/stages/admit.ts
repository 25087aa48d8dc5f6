// Admission: the operator's kill switch (and, with the breaker, suspension) before any grant is
// looked at. Fails closed: when the state store cannot be trusted, nobody is admitted.
import type { RequestContext, Stage } from '../context.js';
import { GatewayError } from '../errors.js';
import type { Store } from '../state/store.js';

export interface AdmitOptions {
  readonly store: Store;
}

export function createAdmit(options: AdmitOptions): Stage {
  const { store } = options;
  return {
    name: 'admit',
    run(ctx: RequestContext): void {
      const principal = ctx.principal;
      if (principal === null) throw new Error('admit ran before authenticate');
      if (!store.isHealthy()) {
        throw new GatewayError('state_unavailable', 'the gateway cannot check agent state right now; retry shortly', {
          reasonDetail: `store ${store.driver} unhealthy`,
        });
      }
      const kill = store.killRecord(principal.agent);
      if (kill !== undefined) {
        throw new GatewayError('agent_killed', 'this agent has been disabled by an operator', {
          reasonDetail: `killed at ${new Date(kill.at).toISOString()}: ${kill.reason}`,
        });
      }
    },
  };
}
