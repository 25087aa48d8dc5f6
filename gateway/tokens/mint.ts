// Minting session access tokens (RFC 9068 shape): header {alg, typ: at+jwt, kid}, claims
// iss, sub, client_id, aud[], scope, iat, exp, jti, sid, and act when delegated (RFC 8693).
import { randomUUID } from 'node:crypto';
import { SignJWT } from 'jose';
import type { Actor, Clock } from '../context.js';
import type { KeyStore } from './keys.js';

export interface AccessTokenClaimsInput {
  readonly issuer: string;
  /** The agent (client_id). */
  readonly clientId: string;
  /** Token subject: the agent itself, or the user it acts for. */
  readonly subject: string;
  readonly audience: readonly string[];
  readonly scopes: readonly string[];
  readonly ttlSeconds: number;
  readonly sid: string;
  readonly act?: Actor;
}

export interface MintedToken {
  readonly token: string;
  readonly jti: string;
  readonly sid: string;
  /** Seconds since the epoch. */
  readonly issuedAt: number;
  readonly expiresAt: number;
  readonly kid: string;
}

export async function mintAccessToken(keys: KeyStore, claims: AccessTokenClaimsInput, clock: Clock): Promise<MintedToken> {
  const key = keys.current();
  const issuedAt = Math.floor(clock.now() / 1000);
  const expiresAt = issuedAt + claims.ttlSeconds;
  const jti = randomUUID();
  const payload: Record<string, unknown> = {
    client_id: claims.clientId,
    scope: claims.scopes.join(' '),
    sid: claims.sid,
  };
  if (claims.act !== undefined) payload.act = claims.act;
  const token = await new SignJWT(payload)
    .setProtectedHeader({ alg: key.alg, typ: 'at+jwt', kid: key.kid })
    .setIssuer(claims.issuer)
    .setSubject(claims.subject)
    .setAudience([...claims.audience])
    .setIssuedAt(issuedAt)
    .setExpirationTime(expiresAt)
    .setJti(jti)
    .sign(key.privateKey);
  return { token, jti, sid: claims.sid, issuedAt, expiresAt, kid: key.kid };
}
