// Token issuance: what an agent may get (scopes within its role's grants, aud = the backends they
// touch, TTL never above the role's) and the minting itself. Refusals are BrokerErrors in OAuth
// terms (RFC 6749 §5.2). Used by the CLI `token` verb, the demo and the OAuth token endpoint.
import { randomUUID } from 'node:crypto';
import type { Clock } from '../clock.js';
import { BrokerError } from './errors.js';
import type { TokenPlan } from '../tokens/claims.js';
import type { PolicySnapshot } from '../policy/types.js';
import type { KeyStore } from '../tokens/keys.js';
import { mintAccessToken, type MintedToken } from '../tokens/mint.js';

export type { TokenPlan };

export interface TokenRequest {
  /** Narrow to these scopes (a subset of the role's grants); absent or empty: all of them. */
  readonly scopes?: readonly string[];
  /** Shorter than the role's TTL if asked; never longer. */
  readonly ttlSeconds?: number;
}

/** `nowMs`: the issuing moment; an expired agent gets nothing and no token outlives the agent. */
export function planAgentToken(policy: PolicySnapshot, agentId: string, request: TokenRequest = {}, nowMs: number = Date.now()): TokenPlan {
  const agent = policy.agents.get(agentId);
  if (agent === undefined) throw new BrokerError('invalid_client', `unknown agent "${agentId}"`);
  const untilExpiry = agent.expiresAt === null ? Infinity : Math.floor((agent.expiresAt - nowMs) / 1000);
  if (untilExpiry < 1) {
    throw new BrokerError('unauthorized_client', `agent "${agentId}" expired at ${new Date(agent.expiresAt ?? 0).toISOString()}; its owner must renew it in the policy`, { reasonDetail: 'agent_expired' });
  }
  const role = policy.roles.get(agent.role);
  if (role === undefined) throw new BrokerError('invalid_client', `agent "${agentId}" is bound to role "${agent.role}", which is not defined`);

  const wanted = request.scopes === undefined || request.scopes.length === 0 ? [...role.grants] : [...new Set(request.scopes)];
  const beyond = wanted.filter((s) => !role.grants.has(s));
  if (beyond.length > 0) {
    throw new BrokerError('invalid_scope', `role "${role.name}" does not grant ${beyond.map((s) => `"${s}"`).join(', ')} (it grants: ${[...role.grants].sort().join(', ')})`);
  }
  if (wanted.length === 0) throw new BrokerError('invalid_scope', `role "${role.name}" grants no scopes`);
  const scopes = wanted.sort();

  const backendOf = scopeBackends(policy);
  const audience = [...new Set(scopes.map((s) => backendOf.get(s) ?? fail(`scope "${s}" of role "${role.name}" is on no backend`)))].sort();

  const requested = request.ttlSeconds;
  if (requested !== undefined && (typeof requested !== 'number' || !Number.isFinite(requested) || requested < 1)) {
    throw new BrokerError('invalid_request', `the requested lifetime must be at least 1 second, got ${String(requested)}`);
  }
  const ttlSeconds = Math.max(1, Math.floor(Math.min(requested ?? role.token.ttlSeconds, role.token.ttlSeconds, untilExpiry)));
  return { agent: agent.id, role: role.name, scopes, audience, ttlSeconds, subject: agent.id, act: null, sid: randomUUID() };
}

export function issueAgentToken(keys: KeyStore, issuer: string, plan: TokenPlan, clock: Clock): Promise<MintedToken> {
  return mintAccessToken(keys, { issuer, agent: plan.agent, subject: plan.subject, audience: plan.audience, scopes: plan.scopes, ttlSeconds: plan.ttlSeconds, sid: plan.sid, act: plan.act }, clock);
}

function scopeBackends(policy: PolicySnapshot): Map<string, string> {
  const map = new Map<string, string>();
  for (const backend of policy.backends.values()) {
    for (const scope of backend.scopes.values()) map.set(scope.id, backend.name);
  }
  return map;
}

/** A policy that passed validation cannot get here; a bug, not a refusal. */
function fail(message: string): never {
  throw new Error(message);
}
