// POST /oauth/introspect (RFC 7662): `{ "active": false }` for anything unusable (forged, expired,
// revoked, spent, session ended, agent unknown or killed, or issued to another client), the
// token's claims otherwise. Introspection never counts as a use.
import type { Clock } from '../clock.js';
import type { PolicySnapshot } from '../policy/types.js';
import type { Store } from '../state/store.js';
import { TokenError, type TokenVerifier, type VerifiedClaims } from '../tokens/verify.js';
import type { AuthenticatedClient } from './client-auth.js';
import type { FormParams } from './form.js';
import { BrokerError } from './errors.js';
import type { BrokerNote } from './token.js';

export interface OwnTokenDeps {
  readonly issuer: string;
  readonly verifier: TokenVerifier;
  readonly store: Store;
  readonly clock: Clock;
}

export type OwnTokenState = 'active' | 'revoked' | 'session_ended' | 'spent' | 'agent_unknown' | 'agent_killed';

/** Verify one of our own tokens and say whether the proxy would still accept it; null if it is not ours or not valid. */
export async function inspectOwnToken(token: string, deps: OwnTokenDeps, policy: PolicySnapshot): Promise<{ claims: VerifiedClaims; state: OwnTokenState; why: string } | null> {
  let claims: VerifiedClaims;
  try {
    claims = await deps.verifier.verify(token);
  } catch (error) {
    if (error instanceof TokenError) return null;
    throw error;
  }
  const { store } = deps;
  const agent = policy.agents.get(claims.agent);
  const role = agent === undefined ? undefined : policy.roles.get(agent.role);
  const state = ((): OwnTokenState => {
    if (store.isRevoked(claims.jti, claims.agent, claims.issuedAt)) return 'revoked';
    if (agent === undefined || role === undefined) return 'agent_unknown';
    if (store.killRecord(agent.id) !== undefined) return 'agent_killed';
    const idle = role.token.idleTimeoutSeconds ?? (role.token.session === 'single' ? DEFAULT_SINGLE_IDLE_SECONDS : null);
    if (store.checkSession(claims.sid, agent.id, claims.expiresAt, idle === null ? null : idle * 1000, false) !== 'live') return 'session_ended';
    if (role.token.maxUses !== null && store.usesOf(claims.jti) >= role.token.maxUses) return 'spent';
    return 'active';
  })();
  return { claims, state, why: state };
}

/** Idle timeout of a `session: single` role that sets none (also used by authenticate). */
export const DEFAULT_SINGLE_IDLE_SECONDS = 900;

export async function introspect(params: FormParams, client: AuthenticatedClient, deps: OwnTokenDeps, note: BrokerNote, policy: PolicySnapshot): Promise<Record<string, unknown>> {
  const token = params.get('token');
  if (token === undefined) throw new BrokerError('invalid_request', 'the token parameter is required', { reasonDetail: 'token_missing' });
  const found = await inspectOwnToken(token, deps, policy);
  if (found === null) {
    note.active = false;
    note.inactive = 'invalid';
    return { active: false };
  }
  const { claims, state } = found;
  note.jti = claims.jti;
  // RFC 7662 §2.1: the server may limit what a client learns; an agent learns about its own tokens only.
  if (claims.agent !== client.agent.id) {
    note.active = false;
    note.inactive = 'other_client';
    return { active: false };
  }
  if (state !== 'active') {
    note.active = false;
    note.inactive = state;
    return { active: false };
  }
  note.active = true;
  return {
    active: true,
    iss: deps.issuer,
    sub: claims.subject,
    client_id: claims.agent,
    aud: [...claims.audience],
    scope: [...claims.scopes].join(' '),
    iat: claims.issuedAt,
    exp: claims.expiresAt,
    jti: claims.jti,
    sid: claims.sid,
    token_type: 'Bearer',
    ...(claims.act === null ? {} : { act: claims.act }),
  };
}
