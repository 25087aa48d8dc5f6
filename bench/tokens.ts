// Group 3: token issuance. Each method mints tokens one after another (warm-up first) and reports
// tokens per second and the latency of each issuance. Today the only method is the broker's own
// code path (`agentgate token`: plan + sign, in-process). The HTTP token endpoint
// (`POST /oauth/token`, client_credentials with a private_key_jwt client assertion) is one more
// IssuanceMethod in `issuanceMethods()` once it exists.
import { issueAgentToken, planAgentToken } from '../gateway/broker/issue.js';
import { systemClock } from '../gateway/context.js';
import type { PolicySnapshot } from '../gateway/policy/types.js';
import type { KeyStore } from '../gateway/tokens/keys.js';
import { SampleBuffer, latencyPercentiles, type LatencyPercentiles } from './stats.js';

export interface IssuanceMethod {
  readonly name: string;
  /** Issue one token; resolves once it is in hand. */
  issue(): Promise<unknown>;
}

export interface IssuanceResult {
  readonly method: string;
  readonly tokens: number;
  readonly tokensPerSecond: number;
  /** ms */
  readonly latency: LatencyPercentiles;
}

export interface IssuanceDeps {
  readonly keys: KeyStore;
  readonly issuer: string;
  readonly policy: PolicySnapshot;
  readonly agent: string;
}

export function issuanceMethods(deps: IssuanceDeps): IssuanceMethod[] {
  return [
    {
      name: 'in-process, `agentgate token` path (EdDSA)',
      issue: () => issueAgentToken(deps.keys, deps.issuer, planAgentToken(deps.policy, deps.agent), systemClock),
    },
  ];
}

export async function measureIssuance(method: IssuanceMethod, count: number): Promise<IssuanceResult> {
  const warm = Math.min(500, Math.max(50, count >> 3));
  for (let i = 0; i < warm; i++) await method.issue();
  const samples = new SampleBuffer(count);
  const started = performance.now();
  for (let i = 0; i < count; i++) {
    const t0 = performance.now();
    await method.issue();
    samples.push(performance.now() - t0);
  }
  const seconds = (performance.now() - started) / 1000;
  return { method: method.name, tokens: count, tokensPerSecond: count / seconds, latency: latencyPercentiles(samples) };
}
