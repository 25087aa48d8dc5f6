// Token issuance: what an agent may get (scopes within its role, aud = the backends they touch,
// TTL capped by the role) and the minting itself. Used by the CLI `token` verb, the demo and,
// next, the OAuth token endpoint.
import { randomUUID } from 'node:crypto';
import type { Actor, Clock } from '../context.js';
import type { PolicySnapshot } from '../policy/types.js';
import type { KeyStore } from '../tokens/keys.js';
import { mintAccessToken, type MintedToken } from '../tokens/mint.js';

export type OAuthErrorCode =
  | 'invalid_request'
  | 'invalid_client'
  | 'invalid_grant'
  | 'unauthorized_client'
  | 'unsupported_grant_type'
  | 'invalid_scope';

/** A refusal in OAuth terms (RFC 6749 §5.2). */
export class BrokerError extends Error {
  constructor(
    readonly error: OAuthErrorCode,
    readonly description: string,
  ) {
    super(`${error}: ${description}`);
    this.name = 'BrokerError';
  }
}

export interface TokenPlan {
  readonly agent: string;
  readonly role: string;
  /** Granted scope ids, sorted. */
  readonly scopes: readonly string[];
  /** Backends the scopes touch, sorted. */
  readonly audience: readonly string[];
  readonly ttlSeconds: number;
  readonly subject: string;
  readonly act?: Actor;
}

export interface TokenRequest {
  /** Narrow to these scopes (a subset of the role's grants); default: all of them. */
  readonly scopes?: readonly string[];
  readonly ttlSeconds?: number;
}

export function planAgentToken(policy: PolicySnapshot, agentId: string, request: TokenRequest = {}): TokenPlan {
  const agent = policy.agents.get(agentId);
  if (agent === undefined) throw new BrokerError('invalid_client', `unknown agent "${agentId}"`);
  const role = policy.roles.get(agent.role);
  if (role === undefined) throw new BrokerError('invalid_client', `agent "${agentId}" has no valid role`);
  const wanted = request.scopes === undefined || request.scopes.length === 0 ? [...role.grants] : [...new Set(request.scopes)];
  const beyond = wanted.filter((s) => !role.grants.has(s));
  if (beyond.length > 0) {
    throw new BrokerError('invalid_scope', `role "${role.name}" does not grant ${beyond.join(', ')} (it grants: ${[...role.grants].join(', ')})`);
  }
  if (wanted.length === 0) throw new BrokerError('invalid_scope', `role "${role.name}" grants no scopes`);
  const scopes = wanted.sort();
  const audience = [...new Set(scopes.map((s) => s.slice(0, s.indexOf(':'))))].sort();
  const requested = request.ttlSeconds;
  if (requested !== undefined && (!Number.isFinite(requested) || requested < 1)) {
    throw new BrokerError('invalid_request', 'the requested lifetime must be at least 1 second');
  }
  const ttlSeconds = Math.max(1, Math.floor(Math.min(requested ?? role.token.ttlSeconds, role.token.ttlSeconds)));
  return { agent: agent.id, role: role.name, scopes, audience, ttlSeconds, subject: agent.id };
}

export function issueAgentToken(keys: KeyStore, issuer: string, plan: TokenPlan, clock: Clock): Promise<MintedToken> {
  return mintAccessToken(
    keys,
    {
      issuer,
      clientId: plan.agent,
      subject: plan.subject,
      audience: plan.audience,
      scopes: plan.scopes,
      ttlSeconds: plan.ttlSeconds,
      sid: randomUUID(),
      ...(plan.act === undefined ? {} : { act: plan.act }),
    },
    clock,
  );
}
