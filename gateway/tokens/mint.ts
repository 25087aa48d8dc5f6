// Minting session access tokens (RFC 9068 shape) with the key store's current key: header
// {alg, typ: at+jwt, kid}; claims iss, sub, client_id, aud[], scope, iat, exp, jti, sid, and `act`
// when delegated (RFC 8693 §4.1). Bad input is a bug in the caller and throws a TypeError.
import { randomUUID } from 'node:crypto';
import type { JWTPayload } from 'jose';
import type { Clock } from '../clock.js';
import type { TokenPlan } from './claims.js';
import { compactJws, type KeyStore } from './keys.js';

/** A token plan (tokens/claims.ts) with the issuer that signs it; `role` is not a claim. */
export type MintRequest = Omit<TokenPlan, 'role' | 'act'> & { readonly issuer: string; readonly act?: TokenPlan['act'] | undefined };

export interface MintedToken {
  readonly token: string;
  readonly jti: string;
  readonly sid: string;
  /** Seconds since the epoch. */
  readonly issuedAt: number;
  readonly expiresAt: number;
  readonly kid: string;
}

const NO_SPACE = /^[\x21-\x7e]+$/;

export async function mintAccessToken(keys: KeyStore, claims: MintRequest, clock: Clock): Promise<MintedToken> {
  checkInput(claims);
  const key = keys.current();
  const issuedAt = Math.floor(clock.now() / 1000);
  const expiresAt = issuedAt + claims.ttlSeconds;
  const jti = randomUUID();
  const payload: JWTPayload = {
    iss: claims.issuer,
    sub: claims.subject,
    client_id: claims.agent,
    aud: [...claims.audience],
    scope: claims.scopes.join(' '),
    iat: issuedAt,
    exp: expiresAt,
    jti,
    sid: claims.sid,
  };
  if (claims.act !== undefined && claims.act !== null) payload.act = claims.act;
  // Signed on this thread (keys.ts `compactJws`); verified with jose (tokens/verify.ts).
  const token = compactJws(key.alg, key.signingKey, { alg: key.alg, typ: 'at+jwt', kid: key.kid }, JSON.stringify(payload));
  return { token, jti, sid: claims.sid, issuedAt, expiresAt, kid: key.kid };
}

function checkInput(claims: MintRequest): void {
  const fail = (what: string): never => {
    throw new TypeError(`mintAccessToken: ${what}`);
  };
  for (const [name, value] of [['issuer', claims.issuer], ['agent', claims.agent], ['subject', claims.subject], ['sid', claims.sid]] as const) {
    if (typeof value !== 'string' || value === '') fail(`${name} must be a non-empty string`);
  }
  if (!Number.isSafeInteger(claims.ttlSeconds) || claims.ttlSeconds < 1) fail(`ttlSeconds must be a positive integer, got ${String(claims.ttlSeconds)}`);
  if (claims.audience.length === 0) fail('audience must name at least one backend');
  if (claims.scopes.length === 0) fail('scopes must name at least one scope');
  // A space inside one value would turn into two values once the claim is split (scope) or read.
  for (const value of [...claims.audience, ...claims.scopes]) {
    if (!NO_SPACE.test(value)) fail(`audience and scope values must be printable ASCII without spaces, got ${JSON.stringify(value)}`);
  }
}
