// Access-token verification against our own keys only, and the bounded LRU of verified tokens
// (lru-cache is used here, not in state/: it caches verification results, not shared state). jose's
// errors become TokenError codes here, once; the cache never serves a token past its exp.
import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';
// jose by subpath: its index loads every algorithm and format (~180 modules) into each process.
import { decodeProtectedHeader } from 'jose/decode/protected_header';
import * as joseErrors from 'jose/errors';
import { jwtVerify } from 'jose/jwt/verify';
import type { JWTPayload, ProtectedHeaderParameters } from 'jose';
import type { Clock } from '../clock.js';
import type { Actor, VerifiedClaims } from './claims.js';
import type { KeyStore, VerificationKey } from './keys.js';

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
  | 'claims'
  | 'lifetime';

/** Why a token was refused. `code` is precise and for the audit only; agents see token_invalid. */
export class TokenError extends Error {
  readonly code: TokenErrorCode;

  constructor(code: TokenErrorCode, options?: { cause?: unknown }) {
    // A refusal, not a bug: no stack is captured (it was the costliest part of refusing a replay).
    const stackTraceLimit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super(`token refused: ${code}`, options);
    Error.stackTraceLimit = stackTraceLimit;
    this.name = 'TokenError';
    this.code = code;
  }
}

export type { VerifiedClaims };

export interface TokenVerifier {
  /**
   * A verified token still before its `exp`, or undefined; `key` is what `verify` cached it under
   * (the token, or the whole `Authorization` value it came in); `nowMs`: the time to check its
   * `exp` against (the request's arrival; default the clock's now). Synchronous: the hot path.
   */
  cached(key: string, nowMs?: number): VerifiedClaims | undefined;
  /**
   * Full verification; fills the cache under `cacheKey` (default: the token itself). Throws
   * TokenError for any token we would not accept.
   */
  verify(token: string, cacheKey?: string): Promise<VerifiedClaims>;
}

export interface TokenVerifierOptions {
  readonly keys: KeyStore;
  /** The exact `iss` our tokens carry (`issuer.url`); a function when known only once bound. */
  readonly issuer: string | (() => string);
  readonly clock: Clock;
  /** Tolerance for exp/nbf/iat; default 30, at most 30 (DESIGN §3). */
  readonly maxSkewSeconds?: number;
  /** Verified tokens kept; default 10 000. */
  readonly cacheSize?: number;
}

/**
 * Passed to every LRU `get`: without it lru-cache makes a `{}` per call (its parameter default),
 * the only allocation of a verified-token cache hit. It writes `status` into it, so not frozen.
 */
const GET_OPTIONS: LRUCache.GetOptions<string, VerifiedClaims, unknown> = {};

/** Longest token accepted; checked before anything is decoded. */
export const MAX_TOKEN_BYTES = 8192;
const MAX_SKEW_SECONDS = 30;
/**
 * Headers that tell a verifier where to find a key or how to extend processing. Our keys come from
 * our own key store only, and we never issue these, so a token carrying one is refused outright.
 */
const FORBIDDEN_HEADERS = ['jku', 'jwk', 'x5u', 'x5c', 'x5t', 'x5t#S256', 'crit'] as const;
/** The only algorithms our keys use; never `none`, never HMAC (a public key is not a secret). */
const ALGORITHMS: ReadonlySet<string> = new Set(['EdDSA', 'ES256']);
const REQUIRED_CLAIMS = ['iss', 'sub', 'client_id', 'aud', 'scope', 'jti', 'sid', 'iat', 'exp'];
const MAX_ACT_DEPTH = 8;
/**
 * Refusals that stay true for the same token whatever happens later: a kid's key never changes,
 * time only moves on past `exp`, and iss/typ/alg are fixed by the token's bytes. Not here:
 * not_yet_valid (time cures it) and kid_unknown (checked before any crypto anyway).
 */
const FINAL: ReadonlySet<TokenErrorCode> = new Set<TokenErrorCode>(['signature', 'expired', 'iss', 'typ', 'alg', 'malformed', 'claims', 'lifetime']);

/**
 * The longest lifetime (`exp - iat`) any token of ours may have: no role's TTL exceeds it, so a
 * longer one was not minted by the broker's rules, whatever its signature (a leaked signing key,
 * a buggy minting path), and is refused before anything else is decided.
 */
export const MAX_TOKEN_LIFETIME_SECONDS = 24 * 3600;

/**
 * Whether a verified token lives longer than its role allows (the role's `token.ttl`, read from
 * the policy in force). Called by authenticate once the role is known.
 */
export function exceedsLifetime(claims: Pick<VerifiedClaims, 'issuedAt' | 'expiresAt'>, ttlSeconds: number): boolean {
  return claims.expiresAt - claims.issuedAt > Math.min(ttlSeconds, MAX_TOKEN_LIFETIME_SECONDS);
}

export function createTokenVerifier(options: TokenVerifierOptions): TokenVerifier {
  const { keys, issuer, clock } = options;
  const skew = options.maxSkewSeconds ?? MAX_SKEW_SECONDS;
  const cacheSize = options.cacheSize ?? 10_000;
  if (typeof issuer !== 'function' && (typeof issuer !== 'string' || issuer === '')) throw new TypeError('createTokenVerifier: issuer must be a non-empty string');
  const issuerNow = typeof issuer === 'function' ? issuer : (): string => issuer;
  if (!Number.isFinite(skew) || skew < 0 || skew > MAX_SKEW_SECONDS) {
    throw new RangeError(`createTokenVerifier: maxSkewSeconds must be between 0 and ${MAX_SKEW_SECONDS}, got ${String(skew)}`);
  }
  if (!Number.isSafeInteger(cacheSize) || cacheSize < 1) {
    throw new RangeError(`createTokenVerifier: cacheSize must be a positive integer, got ${String(cacheSize)}`);
  }
  const cache = new LRUCache<string, VerifiedClaims>({ max: cacheSize });
  // Tokens refused for a reason time and key rotation cannot undo (a forged signature, an
  // expired token, a wrong issuer): a client replaying one is refused again without another
  // signature check. Keyed by digest, so an 8 KiB token costs 43 bytes here. It only ever refuses.
  const refused = new LRUCache<string, TokenErrorCode>({ max: cacheSize });

  return {
    cached(key, nowMs = clock.now()) {
      const hit = cache.get(key, GET_OPTIONS);
      if (hit === undefined) return undefined;
      // Past exp the token goes back through full verification (which applies the skew once more).
      if (nowMs >= hit.expiresAt * 1000 || keys.resolve(hit.kid) === undefined) {
        cache.delete(key);
        return undefined;
      }
      return hit;
    },

    async verify(token, cacheKey = token) {
      // Size first: nothing of an oversized token is decoded.
      if (token.length > MAX_TOKEN_BYTES || Buffer.byteLength(token) > MAX_TOKEN_BYTES) throw new TokenError('too_large');
      const digest = createHash('sha256').update(token).digest('base64url');
      const known = refused.get(digest);
      if (known !== undefined) throw new TokenError(known);
      const key = keyFor(keys, token);
      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(token, key.publicKey, {
          algorithms: [key.alg],
          issuer: issuerNow(),
          typ: 'at+jwt',
          clockTolerance: skew,
          currentDate: new Date(clock.now()),
          requiredClaims: REQUIRED_CLAIMS,
        }));
      } catch (error) {
        const refusal = translate(error);
        if (FINAL.has(refusal.code)) refused.set(digest, refusal.code);
        throw refusal;
      }
      const claims = toClaims(payload, key.kid);
      // jose leaves iat unchecked; a token issued in the future was not issued by our clock.
      if (claims.issuedAt * 1000 > clock.now() + skew * 1000) throw new TokenError('not_yet_valid');
      if (clock.now() < claims.expiresAt * 1000) cache.set(cacheKey, claims);
      return claims;
    },
  };
}

/**
 * Pick the verification key from our store by `kid`, after refusing headers that point elsewhere.
 * The token's `alg` must be exactly the key's own, so a key can never be used with another
 * algorithm (HS256 keyed with our public key, RS256, `none`, ES256 against an Ed25519 kid).
 */
function keyFor(keys: KeyStore, token: string): VerificationKey {
  let header: ProtectedHeaderParameters;
  try {
    header = decodeProtectedHeader(token);
  } catch (error) {
    throw new TokenError('malformed', { cause: error });
  }
  for (const name of FORBIDDEN_HEADERS) {
    if (Object.hasOwn(header, name)) throw new TokenError('header_forbidden');
  }
  if (typeof header.alg !== 'string' || !ALGORITHMS.has(header.alg)) throw new TokenError('alg');
  if (typeof header.kid !== 'string' || header.kid === '') throw new TokenError('kid_missing');
  const key = keys.resolve(header.kid);
  if (key === undefined) throw new TokenError('kid_unknown');
  if (header.alg !== key.alg) throw new TokenError('alg');
  return key;
}

function toClaims(payload: JWTPayload, kid: string): VerifiedClaims {
  const { sub, aud, jti, iat, exp, client_id: clientId, scope, sid } = payload;
  for (const value of [sub, jti, clientId, scope, sid]) {
    if (typeof value !== 'string' || value === '') throw new TokenError('claims');
  }
  if (typeof iat !== 'number' || typeof exp !== 'number' || exp <= iat) throw new TokenError('claims');
  if (exp - iat > MAX_TOKEN_LIFETIME_SECONDS) throw new TokenError('lifetime');
  // A string aud is one value: never split, never substring-matched (RFC 7519 §4.1.3).
  const audience: unknown = typeof aud === 'string' ? [aud] : aud;
  if (!Array.isArray(audience) || audience.length === 0 || !audience.every((a): a is string => typeof a === 'string' && a !== '')) {
    throw new TokenError('claims');
  }
  const scopes = (scope as string).split(' ').filter((s) => s !== '');
  if (scopes.length === 0) throw new TokenError('claims');
  // Sets built once here, shared by every cache hit on the hot path.
  return Object.freeze({
    agent: clientId as string,
    subject: sub as string,
    audience: new Set(audience),
    scopes: new Set(scopes),
    jti: jti as string,
    sid: sid as string,
    issuedAt: iat,
    expiresAt: exp,
    act: payload.act === undefined ? null : toActor(payload.act, 0),
    kid,
  });
}

function toActor(value: unknown, depth: number): Actor {
  if (depth >= MAX_ACT_DEPTH || typeof value !== 'object' || value === null || Array.isArray(value)) throw new TokenError('claims');
  const { sub, act } = value as { sub?: unknown; act?: unknown };
  if (typeof sub !== 'string' || sub === '') throw new TokenError('claims');
  return Object.freeze(act === undefined ? { sub } : { sub, act: toActor(act, depth + 1) });
}

/** jose's errors -> our codes, keeping jose's error as `cause`. */
function translate(error: unknown): TokenError {
  if (error instanceof TokenError) return error;
  if (error instanceof joseErrors.JWTExpired) return new TokenError('expired', { cause: error });
  if (error instanceof joseErrors.JWTClaimValidationFailed) {
    const failedCheck = error.reason === 'check_failed';
    if (failedCheck && (error.claim === 'nbf' || error.claim === 'iat')) return new TokenError('not_yet_valid', { cause: error });
    if (error.claim === 'iss' && error.reason !== 'missing') return new TokenError('iss', { cause: error });
    if (error.claim === 'typ') return new TokenError('typ', { cause: error });
    return new TokenError('claims', { cause: error });
  }
  if (error instanceof joseErrors.JOSEAlgNotAllowed) return new TokenError('alg', { cause: error });
  if (error instanceof joseErrors.JWSSignatureVerificationFailed) return new TokenError('signature', { cause: error });
  if (error instanceof joseErrors.JOSEError) return new TokenError('malformed', { cause: error });
  // Anything else is a bug in this module or jose, not a bad token: let it surface as a 500.
  throw error;
}
