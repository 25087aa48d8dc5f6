// POST /oauth/revoke (RFC 7009): revoking a token ends it and its session; the proxy refuses it
// on the very next call (the revocation is durable before we answer). An unknown, forged or
// expired token is answered 200 like a revoked one (§2.2): there is nothing left to end.
import type { PolicySnapshot } from '../policy/types.js';
import type { AuthenticatedClient } from './client-auth.js';
import type { FormParams } from './form.js';
import { inspectOwnToken, type OwnTokenDeps } from './introspect.js';
import { BrokerError } from './errors.js';
import type { BrokerNote } from './token.js';

export interface RevokeDeps extends OwnTokenDeps {
  onRevoked(): void;
}

export async function revoke(params: FormParams, client: AuthenticatedClient, deps: RevokeDeps, note: BrokerNote, policy: PolicySnapshot): Promise<Record<string, unknown> | null> {
  const token = params.get('token');
  if (token === undefined) throw new BrokerError('invalid_request', 'the token parameter is required', { reasonDetail: 'token_missing' });
  const found = await inspectOwnToken(token, deps, policy);
  if (found === null) {
    note.revoked = false;
    return null;
  }
  const { claims } = found;
  note.jti = claims.jti;
  note.sid = claims.sid;
  // RFC 7009 §2.1: a client revokes only tokens issued to it.
  if (claims.agent !== client.agent.id) {
    throw new BrokerError('unauthorized_client', 'this token was not issued to you', { reasonDetail: 'other_client' });
  }
  await deps.store.revoke(claims.jti, claims.expiresAt);
  await deps.store.endSession(claims.sid, claims.expiresAt);
  deps.onRevoked();
  note.revoked = true;
  return null;
}
