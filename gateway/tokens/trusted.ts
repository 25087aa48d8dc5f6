// Users' tokens from the issuers listed under `trust` (RFC 8693 subject tokens): their JWKS is
// fetched with undici under a deadline, cached, and fetched again once when a token names a kid
// we have not seen (the issuer rotated). Fails closed: no keys, no delegation.
// jose by subpath: its index loads every algorithm and format (~180 modules) into each process.
import { createLocalJWKSet } from 'jose/jwks/local';
import { decodeJwt } from 'jose/jwt/decode';
import { decodeProtectedHeader } from 'jose/decode/protected_header';
import * as joseErrors from 'jose/errors';
import { jwtVerify } from 'jose/jwt/verify';
import type { JSONWebKeySet, JWTPayload } from 'jose';
import type { Clock } from '../clock.js';
import type { Actor } from './claims.js';
import { MAX_TOKEN_BYTES } from './verify.js';

export interface TrustedIssuerConfig {
  readonly issuer: string;
  readonly jwksUri: string;
  /** When set, the user's token must name this audience. */
  readonly audience: string | null;
}

export type TrustErrorCode = 'malformed' | 'issuer_untrusted' | 'header_forbidden' | 'alg' | 'kid_unknown' | 'jwks_unavailable' | 'signature' | 'expired' | 'not_yet_valid' | 'aud' | 'claims';

export class TrustError extends Error {
  readonly code: TrustErrorCode;

  constructor(code: TrustErrorCode, options?: { cause?: unknown }) {
    super(`subject token refused: ${code}`, options);
    this.name = 'TrustError';
    this.code = code;
  }
}

/** A verified user token. */
export interface UserToken {
  readonly issuer: string;
  readonly sub: string;
  /** Seconds since the epoch. */
  readonly exp: number;
  readonly act: Actor | null;
  readonly claims: Readonly<JWTPayload>;
}

export interface TrustedIssuers {
  /** Whether `iss` is one of the trusted issuers. */
  has(iss: string): boolean;
  verify(token: string): Promise<UserToken>;
}

export interface TrustedIssuersOptions {
  readonly trust: readonly TrustedIssuerConfig[];
  readonly clock: Clock;
  /** Deadline of one JWKS fetch (default 3 s). */
  readonly timeoutMs?: number;
  /** Cached keys are fetched again after this long (default 10 min). */
  readonly cacheMs?: number;
  /** At most one refetch for an unknown kid per issuer in this interval (default 10 s). */
  readonly unknownKidCooldownMs?: number;
}

/** Asymmetric algorithms only: never `none`, never HMAC (the JWKS is public). */
const ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'];
const FORBIDDEN_HEADERS = ['jku', 'jwk', 'x5u', 'x5c', 'crit'] as const;
const MAX_JWKS_BYTES = 64 * 1024;
const MAX_ACT_DEPTH = 8;
const SKEW_SECONDS = 30;

interface IssuerState {
  readonly config: TrustedIssuerConfig;
  keys: ReturnType<typeof createLocalJWKSet> | null;
  kids: ReadonlySet<string>;
  fetchedAt: number;
  lastUnknownKidFetch: number;
  inflight: Promise<void> | null;
}

export function createTrustedIssuers(options: TrustedIssuersOptions): TrustedIssuers {
  const { clock } = options;
  const timeoutMs = options.timeoutMs ?? 3000;
  const cacheMs = options.cacheMs ?? 600_000;
  const cooldownMs = options.unknownKidCooldownMs ?? 10_000;
  const issuers = new Map<string, IssuerState>();
  for (const config of options.trust) {
    issuers.set(config.issuer, { config, keys: null, kids: new Set(), fetchedAt: 0, lastUnknownKidFetch: -Infinity, inflight: null });
  }

  function fetchKeys(state: IssuerState): Promise<void> {
    // Concurrent verifications share one fetch.
    state.inflight ??= (async () => {
      try {
        const jwks = await fetchJwks(state.config.jwksUri, timeoutMs);
        state.keys = createLocalJWKSet(jwks);
        state.kids = new Set(jwks.keys.map((k) => k.kid).filter((k): k is string => typeof k === 'string'));
        state.fetchedAt = clock.now();
      } finally {
        state.inflight = null;
      }
    })();
    return state.inflight;
  }

  return {
    has: (iss) => issuers.has(iss),
    async verify(token) {
      if (token.length > MAX_TOKEN_BYTES) throw new TrustError('malformed');
      let header: ReturnType<typeof decodeProtectedHeader>;
      let unverified: JWTPayload;
      try {
        header = decodeProtectedHeader(token);
        unverified = decodeJwt(token);
      } catch (error) {
        throw new TrustError('malformed', { cause: error });
      }
      for (const name of FORBIDDEN_HEADERS) if (Object.hasOwn(header, name)) throw new TrustError('header_forbidden');
      if (typeof header.alg !== 'string' || !ALGORITHMS.includes(header.alg)) throw new TrustError('alg');
      const state = typeof unverified.iss === 'string' ? issuers.get(unverified.iss) : undefined;
      if (state === undefined) throw new TrustError('issuer_untrusted');

      try {
        if (state.keys === null || clock.now() - state.fetchedAt > cacheMs) await fetchKeys(state);
        const kid = header.kid;
        if (typeof kid === 'string' && !state.kids.has(kid) && clock.now() - state.lastUnknownKidFetch >= cooldownMs) {
          // The issuer may have rotated: look once more, but not again for a while (a stream of
          // made-up kids must not turn us into a load generator against the issuer).
          state.lastUnknownKidFetch = clock.now();
          await fetchKeys(state);
        }
      } catch (error) {
        if (state.keys === null) throw new TrustError('jwks_unavailable', { cause: error });
        // A failed refresh keeps the keys we had.
      }
      if (state.keys === null) throw new TrustError('jwks_unavailable');
      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(token, state.keys, {
          algorithms: ALGORITHMS,
          issuer: state.config.issuer,
          ...(state.config.audience === null ? {} : { audience: state.config.audience }),
          clockTolerance: SKEW_SECONDS,
          currentDate: new Date(clock.now()),
          requiredClaims: ['sub', 'exp'],
        }));
      } catch (error) {
        throw translate(error);
      }
      const { sub, exp } = payload;
      if (typeof sub !== 'string' || sub === '' || sub.length > 255 || !/^[\x21-\x7e]+$/.test(sub) || typeof exp !== 'number') throw new TrustError('claims');
      return Object.freeze({ issuer: state.config.issuer, sub, exp, act: payload.act === undefined ? null : toActor(payload.act, 0), claims: payload });
    },
  };
}

async function fetchJwks(url: string, timeoutMs: number): Promise<JSONWebKeySet> {
  // Loaded by the first fetch: a gateway that trusts no issuer never loads undici's index.
  const { request } = await import('undici');
  const response = await request(url, {
    method: 'GET',
    headers: { accept: 'application/json' },
    signal: AbortSignal.timeout(timeoutMs),
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
  });
  if (response.statusCode !== 200) {
    await response.body.dump();
    throw new Error(`JWKS ${url} answered ${response.statusCode}`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of response.body) {
    size += (chunk as Buffer).length;
    if (size > MAX_JWKS_BYTES) {
      response.body.destroy();
      throw new Error(`JWKS ${url} is larger than ${MAX_JWKS_BYTES} bytes`);
    }
    chunks.push(chunk as Buffer);
  }
  const parsed = JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
  if (typeof parsed !== 'object' || parsed === null || !Array.isArray((parsed as { keys?: unknown }).keys)) throw new Error(`JWKS ${url} has no "keys" list`);
  // Public keys only: a JWKS that serves private or symmetric material is misconfigured.
  const keys = ((parsed as { keys: unknown[] }).keys).filter((k): k is Record<string, unknown> => typeof k === 'object' && k !== null && !('d' in k) && !('k' in k) && (k as { kty?: unknown }).kty !== 'oct');
  return { keys } as JSONWebKeySet;
}

function toActor(value: unknown, depth: number): Actor {
  if (depth >= MAX_ACT_DEPTH || typeof value !== 'object' || value === null || Array.isArray(value)) throw new TrustError('claims');
  const { sub, act } = value as { sub?: unknown; act?: unknown };
  if (typeof sub !== 'string' || sub === '') throw new TrustError('claims');
  return Object.freeze(act === undefined ? { sub } : { sub, act: toActor(act, depth + 1) });
}

function translate(error: unknown): TrustError {
  if (error instanceof TrustError) return error;
  if (error instanceof joseErrors.JWTExpired) return new TrustError('expired', { cause: error });
  if (error instanceof joseErrors.JWTClaimValidationFailed) {
    if (error.claim === 'aud') return new TrustError('aud', { cause: error });
    if (error.claim === 'nbf' || error.claim === 'iat') return new TrustError('not_yet_valid', { cause: error });
    return new TrustError('claims', { cause: error });
  }
  if (error instanceof joseErrors.JWKSNoMatchingKey) return new TrustError('kid_unknown', { cause: error });
  if (error instanceof joseErrors.JOSEAlgNotAllowed) return new TrustError('alg', { cause: error });
  if (error instanceof joseErrors.JWSSignatureVerificationFailed) return new TrustError('signature', { cause: error });
  if (error instanceof joseErrors.JOSEError) return new TrustError('malformed', { cause: error });
  throw error;
}
