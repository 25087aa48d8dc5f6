// Token exchange (RFC 8693) for on-behalf-of: a user's token (from an issuer under `trust`, or one
// of our own delegated tokens) plus the agent (the authenticated client, or its `actor_token`)
// gives a token with sub = user, act.sub = agent, client_id = agent, and scopes = the role's
// grants ∩ the user's rights: never wider than either. An existing `act` chain is kept, up to the
// role's maxDelegationDepth.
import type { Actor } from '../tokens/claims.js';
import type { PolicySnapshot, UserRights } from '../policy/types.js';
import { TrustError, type TrustedIssuers } from '../tokens/trusted.js';
import type { AuthenticatedClient } from './client-auth.js';
import type { FormParams } from './form.js';
import { inspectOwnToken, type OwnTokenDeps } from './introspect.js';
import { BrokerError } from './errors.js';
import { planAgentToken } from './issue.js';
import { TOKEN_EXCHANGE } from './metadata.js';
import { issue, parseScope, scopesForResource, type BrokerNote, type IssueDeps } from './token.js';

export interface ExchangeDeps extends IssueDeps, OwnTokenDeps {
  readonly trusted: TrustedIssuers;
}

const TOKEN_TYPE = {
  jwt: 'urn:ietf:params:oauth:token-type:jwt',
  accessToken: 'urn:ietf:params:oauth:token-type:access_token',
} as const;
const SUBJECT_TYPES: ReadonlySet<string> = new Set([TOKEN_TYPE.jwt, TOKEN_TYPE.accessToken]);

interface Subject {
  readonly user: string;
  /** Scopes the user may use. */
  readonly rights: ReadonlySet<string>;
  /** The chain the subject token already carries. */
  readonly chain: Actor | null;
  /** Seconds since the epoch; the new token never outlives the user's. */
  readonly exp: number;
}

export async function tokenExchange(params: FormParams, client: AuthenticatedClient | null, deps: ExchangeDeps, note: BrokerNote, policy: PolicySnapshot): Promise<Record<string, unknown>> {
  const subjectToken = params.get('subject_token');
  const subjectType = params.get('subject_token_type');
  if (subjectToken === undefined || subjectType === undefined) {
    throw new BrokerError('invalid_request', 'token exchange needs subject_token and subject_token_type', { reasonDetail: 'subject_missing' });
  }
  if (!SUBJECT_TYPES.has(subjectType)) {
    throw new BrokerError('invalid_request', `subject_token_type must be ${TOKEN_TYPE.jwt} or ${TOKEN_TYPE.accessToken}`, { reasonDetail: 'subject_type' });
  }
  const requestedType = params.get('requested_token_type');
  if (requestedType !== undefined && requestedType !== TOKEN_TYPE.accessToken && requestedType !== TOKEN_TYPE.jwt) {
    throw new BrokerError('invalid_request', `requested_token_type must be ${TOKEN_TYPE.accessToken}`, { reasonDetail: 'requested_type' });
  }

  const agentId = await actingAgent(params, client, deps, policy);
  const agent = policy.agents.get(agentId);
  const role = agent === undefined ? undefined : policy.roles.get(agent.role);
  if (agent === undefined || role === undefined) throw new BrokerError('invalid_client', 'client authentication failed', { reasonDetail: 'agent_unknown' });
  note.agent = agent.id;
  note.role = role.name;

  const subject = await subjectOf(subjectToken, deps, policy);
  note.onBehalfOf = subject.user;
  const chain: Actor = subject.chain === null ? { sub: agent.id } : { sub: agent.id, act: subject.chain };
  const depth = depthOf(chain);
  if (depth > role.token.maxDelegationDepth) {
    throw new BrokerError('invalid_grant', role.token.maxDelegationDepth === 0
      ? `role ${role.name} may not act on behalf of users`
      : `the delegation chain would be ${depth} actors deep; role ${role.name} allows ${role.token.maxDelegationDepth}`, { reasonDetail: 'delegation_depth' });
  }

  // Never wider than either party: what was asked must be within both the role and the user.
  const allowed = [...role.grants].filter((s) => subject.rights.has(s)).sort();
  const asked = parseScope(params.get('scope'));
  if (asked !== undefined) {
    const beyondRole = asked.filter((s) => !role.grants.has(s));
    if (beyondRole.length > 0) throw new BrokerError('invalid_scope', `role ${role.name} does not grant ${beyondRole.join(', ')}`, { reasonDetail: 'beyond_role' });
    const beyondUser = asked.filter((s) => !subject.rights.has(s));
    if (beyondUser.length > 0) throw new BrokerError('invalid_scope', `the user may not use ${beyondUser.join(', ')}`, { reasonDetail: 'beyond_user' });
  }
  // RFC 8707: a resource narrows the delegated token to that backend too.
  const scopes = scopesForResource(policy, deps.issuer, params.get('resource'), asked, allowed) ?? allowed;
  if (scopes.length === 0) throw new BrokerError('invalid_scope', `the user has none of the rights role ${role.name} grants`, { reasonDetail: 'no_common_scope' });

  const remaining = subject.exp - Math.floor(deps.clock.now() / 1000);
  if (remaining < 1) throw new BrokerError('invalid_grant', 'the subject token has expired', { reasonDetail: 'subject_expired' });
  const plan = planAgentToken(policy, agent.id, { scopes, ttlSeconds: Math.min(remaining, role.token.ttlSeconds) }, deps.clock.now());
  const answer = await issue({ ...plan, subject: subject.user, act: chain }, 'token_exchange', deps, note, policy);
  return { ...answer, issued_token_type: TOKEN_TYPE.accessToken };
}

/** The agent: the authenticated client, or the subject of an actor_token that is one of our access tokens. */
async function actingAgent(params: FormParams, client: AuthenticatedClient | null, deps: ExchangeDeps, policy: PolicySnapshot): Promise<string> {
  const actorToken = params.get('actor_token');
  const actorType = params.get('actor_token_type');
  if (actorToken === undefined) {
    if (actorType !== undefined) throw new BrokerError('invalid_request', 'actor_token_type without actor_token', { reasonDetail: 'actor_type_alone' });
    if (client === null) throw new BrokerError('invalid_client', 'authenticate the client, or send its access token as actor_token', { reasonDetail: 'no_client' });
    return client.agent.id;
  }
  // RFC 8693 §2.1: actor_token_type is REQUIRED when actor_token is present.
  if (actorType !== TOKEN_TYPE.accessToken && actorType !== TOKEN_TYPE.jwt) {
    throw new BrokerError('invalid_request', `actor_token_type must be ${TOKEN_TYPE.accessToken}`, { reasonDetail: 'actor_type' });
  }
  const found = await inspectOwnToken(actorToken, deps, policy);
  if (found === null || found.state !== 'active') throw new BrokerError('invalid_grant', 'the actor_token is not a valid access token of this issuer', { reasonDetail: `actor_${found?.state ?? 'invalid'}` });
  const { claims } = found;
  // The actor acts as itself: a delegated token cannot stand in for its agent.
  if (claims.act !== null || claims.subject !== claims.agent) throw new BrokerError('invalid_grant', 'the actor_token must be the agent\'s own token, not a delegated one', { reasonDetail: 'actor_delegated' });
  if (client !== null && client.agent.id !== claims.agent) {
    throw new BrokerError('invalid_request', 'the actor_token belongs to another client', { reasonDetail: 'actor_mismatch' });
  }
  return claims.agent;
}

async function subjectOf(token: string, deps: ExchangeDeps, policy: PolicySnapshot): Promise<Subject> {
  const own = await inspectOwnToken(token, deps, policy);
  if (own !== null) {
    // One of our tokens: only a delegated one speaks for a user, and its scopes already are
    // within that user's rights.
    if (own.state !== 'active') throw new BrokerError('invalid_grant', 'the subject_token is no longer active', { reasonDetail: `subject_${own.state}` });
    if (own.claims.act === null) throw new BrokerError('invalid_grant', 'the subject_token must be a user\'s token', { reasonDetail: 'subject_not_user' });
    return { user: own.claims.subject, rights: own.claims.scopes, chain: own.claims.act, exp: own.claims.expiresAt };
  }
  try {
    const user = await deps.trusted.verify(token);
    return { user: user.sub, rights: rightsOf(user.claims, policy.users ?? new Map()), chain: user.act, exp: user.exp };
  } catch (error) {
    if (!(error instanceof TrustError)) throw error;
    const why = error.code === 'issuer_untrusted' ? 'the subject_token is not from a trusted issuer'
      : error.code === 'jwks_unavailable' ? 'the subject_token cannot be checked now (its issuer\'s keys are unavailable); retry later'
      : 'the subject_token is invalid or expired';
    throw new BrokerError('invalid_grant', why, { reasonDetail: `subject_${error.code}`, cause: error });
  }
}

/** The scopes the `users:` policy maps the user's claims to. A claim may be a string (space-separated values) or a list. */
export function rightsOf(claims: Readonly<Record<string, unknown>>, users: UserRights): Set<string> {
  const rights = new Set<string>();
  for (const [claim, byValue] of users) {
    const value = claims[claim];
    const values = typeof value === 'string' ? value.split(' ') : Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : [];
    for (const v of values) for (const scope of byValue.get(v) ?? []) rights.add(scope);
  }
  return rights;
}

function depthOf(actor: Actor): number {
  let depth = 0;
  for (let a: Actor | undefined = actor; a !== undefined; a = a.act) depth++;
  return depth;
}

export { TOKEN_EXCHANGE };
