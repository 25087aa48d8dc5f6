// Access-token verification and the bounded cache of verified tokens. jose's errors are translated
// here, once, into TokenError codes (audit only). The cache lives here rather than in state/
// because it holds verification results, not shared state; it never serves a token past its exp.
import { LRUCache } from 'lru-cache';
import { errors as joseErrors, jwtVerify, type JWTHeaderParameters, type JWTPayload } from 'jose';
import type { Actor, Clock } from '../context.js';
import type { KeyStore } from './keys.js';

export type TokenErrorCode =
  | 'too_large'
  | 'malformed'
  | 'header_forbidden'
  | 'kid_missing'
  | 'kid_unknown'
  | 'alg'
  | 'typ'
  | 'signature'
  | 'expired'
  | 'not_yet_valid'
  | 'iss'
  | 'claims';

/** Why a token was refused. The code is precise and for the audit only; agents see token_invalid. */
export class TokenError extends Error {
  constructor(
    readonly code: TokenErrorCode,
    options?: { cause?: unknown },
  ) {
    super(`token refused: ${code}`, options);
    this.name = 'TokenError';
  }
}

export interface VerifiedClaims {
  readonly sub: string;
  readonly clientId: string;
  readonly aud: ReadonlySet<string>;
  readonly scopes: ReadonlySet<string>;
  readonly jti: string;
  readonly sid: string;
  /** Seconds since the epoch. */
  readonly iat: number;
  readonly exp: number;
  readonly act: Actor | null;
  readonly kid: string;
}

export interface TokenVerifier {
  /** A verified token still within its `exp`, or undefined. Synchronous: the hot path. */
  cached(token: string): VerifiedClaims | undefined;
  verify(token: string): Promise<VerifiedClaims>;
}

export interface TokenVerifierOptions {
  readonly keys: KeyStore;
  readonly issuer: string;
  readonly clock: Clock;
  readonly maxSkewSeconds?: number;
  readonly cacheSize?: number;
}

const MAX_TOKEN_BYTES = 8192;
const FORBIDDEN_HEADERS = ['jku', 'jwk', 'x5u', 'x5c', 'x5t', 'x5t#S256'] as const;

export function createTokenVerifier(options: TokenVerifierOptions): TokenVerifier {
  const { keys, issuer, clock } = options;
  const skew = Math.min(options.maxSkewSeconds ?? 30, 30);
  const cache = new LRUCache<string, VerifiedClaims>({ max: options.cacheSize ?? 10_000 });

  const getKey = (header: JWTHeaderParameters) => {
    // Keys come from our own key store only: a token naming where to fetch its key is an attack.
    for (const name of FORBIDDEN_HEADERS) {
      if (name in header) throw new TokenError('header_forbidden');
    }
    if (typeof header.kid !== 'string') throw new TokenError('kid_missing');
    const key = keys.resolve(header.kid);
    if (key === undefined) throw new TokenError('kid_unknown');
    if (header.alg !== key.alg) throw new TokenError('alg');
    return key.publicKey;
  };

  return {
    cached(token) {
      const hit = cache.get(token);
      if (hit === undefined) return undefined;
      if (clock.now() >= hit.exp * 1000) {
        cache.delete(token);
        return undefined;
      }
      return hit;
    },
    async verify(token) {
      if (token.length > MAX_TOKEN_BYTES) throw new TokenError('too_large');
      let payload: JWTPayload;
      let kid: string;
      try {
        const result = await jwtVerify(token, getKey, {
          issuer,
          typ: 'at+jwt',
          algorithms: ['EdDSA', 'ES256'],
          clockTolerance: skew,
          currentDate: new Date(clock.now()),
          requiredClaims: ['iss', 'sub', 'aud', 'exp', 'iat', 'jti'],
        });
        payload = result.payload;
        kid = String(result.protectedHeader.kid);
      } catch (error) {
        throw translate(error);
      }
      const claims = toClaims(payload, kid);
      if (clock.now() < claims.exp * 1000) cache.set(token, claims);
      return claims;
    },
  };
}

function toClaims(payload: JWTPayload, kid: string): VerifiedClaims {
  const { sub, aud, jti, iat, exp } = payload;
  const clientId = payload.client_id;
  const scope = payload.scope;
  const sid = payload.sid;
  if (typeof sub !== 'string' || typeof jti !== 'string' || typeof clientId !== 'string' || typeof scope !== 'string' || typeof sid !== 'string') {
    throw new TokenError('claims');
  }
  if (typeof iat !== 'number' || typeof exp !== 'number') throw new TokenError('claims');
  // A string aud is one value; it is never split or substring-matched.
  const audience = typeof aud === 'string' ? [aud] : aud;
  if (!Array.isArray(audience) || audience.some((a) => typeof a !== 'string')) throw new TokenError('claims');
  const act = payload.act === undefined ? null : toActor(payload.act, 0);
  return Object.freeze({
    sub,
    clientId,
    aud: new Set(audience),
    scopes: new Set(scope.split(' ').filter((s) => s !== '')),
    jti,
    sid,
    iat,
    exp,
    act,
    kid,
  });
}

function toActor(value: unknown, depth: number): Actor {
  if (depth > 8 || typeof value !== 'object' || value === null) throw new TokenError('claims');
  const { sub, act } = value as { sub?: unknown; act?: unknown };
  if (typeof sub !== 'string') throw new TokenError('claims');
  return act === undefined ? { sub } : { sub, act: toActor(act, depth + 1) };
}

function translate(error: unknown): TokenError {
  if (error instanceof TokenError) return error;
  if (error instanceof joseErrors.JWTExpired) return new TokenError('expired', { cause: error });
  if (error instanceof joseErrors.JWTClaimValidationFailed) {
    const claim = error.claim;
    if (claim === 'nbf' || claim === 'iat') return new TokenError('not_yet_valid', { cause: error });
    if (claim === 'iss') return new TokenError('iss', { cause: error });
    if (claim === 'typ') return new TokenError('typ', { cause: error });
    return new TokenError('claims', { cause: error });
  }
  if (error instanceof joseErrors.JOSEAlgNotAllowed || error instanceof joseErrors.JOSENotSupported) return new TokenError('alg', { cause: error });
  if (error instanceof joseErrors.JWSSignatureVerificationFailed) return new TokenError('signature', { cause: error });
  return new TokenError('malformed', { cause: error });
}
