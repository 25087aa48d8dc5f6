// Where a constraint refusal goes: thrown at once, or, for a role in shadow mode
// (`enforce: false`), recorded on the grant and counted instead. Shared by every constraint.
import type { ShadowRefusal } from '../../context.js';
import type { GatewayError } from '../../errors.js';
import type { Metrics } from '../../telemetry/metrics.js';

/** Where a constraint refusal goes: thrown, or (shadow mode) recorded and counted. */
export interface Refusals {
  readonly shadow: ShadowRefusal[] | null;
  readonly agent: string;
  readonly metrics: Metrics | undefined;
}

export const NO_SHADOW: readonly ShadowRefusal[] = Object.freeze([]);

export function refuse(refusals: Refusals, error: GatewayError): void {
  if (refusals.shadow === null) throw error;
  refusals.shadow.push({ reason: error.reason, detail: error.reasonDetail });
  refusals.metrics?.shadowRefusal(refusals.agent, error.reason);
}
