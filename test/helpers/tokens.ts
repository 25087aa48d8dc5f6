// Token helpers shared by unit and end-to-end tests: real keys in a test folder, the shipped policy,
// tokens minted through the broker's own planning, a hand-driven clock, and synthetic contexts.
import { join } from 'node:path';
import { createContext, type RequestContext } from '../../gateway/context.js';
import { systemClock, type Clock } from '../../gateway/clock.js';
import { issueAgentToken, planAgentToken } from '../../gateway/broker/issue.js';
import { loadPolicySnapshot } from '../../gateway/policy/index.js';
import type { PolicySnapshot } from '../../gateway/policy/types.js';
import { createLogger } from '../../gateway/telemetry/log.js';
import { openKeyStore, type KeyStore, type SigningAlg } from '../../gateway/tokens/keys.js';
import { ROOT } from './root.js';

export const ISSUER = 'http://agentgate.test';
export const SHIPPED_POLICIES = join(ROOT, 'policies');

/** A clock the test moves by hand. */
export interface ManualClock extends Clock {
  set(ms: number): void;
  advance(ms: number): void;
}

export function manualClock(startMs = Date.UTC(2026, 0, 15, 9, 0, 0)): ManualClock {
  let now = startMs;
  return {
    now: () => now,
    set: (ms) => {
      now = ms;
    },
    advance: (ms) => {
      now += ms;
    },
  };
}

/** A key store in `dir` (created if needed), as the gateway would open it. */
export function makeTestKeys(dir: string, alg: SigningAlg = 'EdDSA', clock: Clock = systemClock): Promise<KeyStore> {
  return openKeyStore({ dir, alg, clock });
}

/** The shipped `policies/` folder, loaded the way the gateway loads it. */
export function loadTestPolicy(clock: Clock = systemClock): Promise<PolicySnapshot> {
  return loadPolicySnapshot(SHIPPED_POLICIES, { version: 1, clock, defaultTimeoutMs: 5000 });
}

export interface MintOverrides {
  /** A subset of the role's grants; default all of them. */
  readonly scopes?: readonly string[];
  readonly ttlSeconds?: number;
  /** The clock the token is minted at (iat); default the system clock. */
  readonly clock?: Clock;
}

/** A token for a policy agent, planned and minted exactly as the broker does. */
export async function mintFor(keys: KeyStore, issuer: string, policy: PolicySnapshot, agentId: string, overrides: MintOverrides = {}): Promise<string> {
  const plan = planAgentToken(policy, agentId, {
    ...(overrides.scopes === undefined ? {} : { scopes: overrides.scopes }),
    ...(overrides.ttlSeconds === undefined ? {} : { ttlSeconds: overrides.ttlSeconds }),
  });
  const minted = await issueAgentToken(keys, issuer, plan, overrides.clock ?? systemClock);
  return minted.token;
}

export interface SyntheticRequest {
  readonly policy: PolicySnapshot;
  readonly clock?: Clock;
  readonly method?: string;
  readonly url?: string;
  /** Authorization header values, one per header sent; null or absent sends none. */
  readonly authorization?: readonly string[] | null;
}

/** A fresh RequestContext for a synthetic request (no socket), as `agentgate explain` builds one. */
export function syntheticContext(request: SyntheticRequest): RequestContext {
  const rawHeaders: string[] = ['Host', '127.0.0.1'];
  for (const value of request.authorization ?? []) rawHeaders.push('Authorization', value);
  const first = request.authorization?.[0];
  return createContext({
    requestId: 'req-test',
    clock: request.clock ?? systemClock,
    policy: request.policy,
    request: {
      method: request.method ?? 'GET',
      url: request.url ?? '/crm/contacts',
      headers: first === undefined ? { host: '127.0.0.1' } : { host: '127.0.0.1', authorization: first },
      rawHeaders,
      remoteAddress: '127.0.0.1',
      remotePort: 40000,
      encrypted: false,
      body: null,
    },
    signal: new AbortController().signal,
    log: createLogger({ level: 'silent' }),
  });
}
