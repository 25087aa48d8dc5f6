// Client assertions (RFC 7523 §3, private_key_jwt): a JWT the agent signs with its own key to
// authenticate at the token endpoint. Verified against the public JWKs its policy pins; jose's
// errors become AssertionError codes here. Single use of `jti` is the caller's (it owns the store).
// jose by subpath: its index loads every algorithm and format (~180 modules) into each process.
import { decodeJwt } from 'jose/jwt/decode';
import { decodeProtectedHeader } from 'jose/decode/protected_header';
import * as joseErrors from 'jose/errors';
import { importJWK } from 'jose/key/import';
import { jwtVerify } from 'jose/jwt/verify';
import type { CryptoKey, JWK, JWTPayload } from 'jose';
import type { Clock } from '../clock.js';
import { MAX_TOKEN_BYTES } from './verify.js';

export type AssertionErrorCode = 'malformed' | 'header_forbidden' | 'alg' | 'no_key' | 'signature' | 'iss_sub' | 'aud' | 'expired' | 'lifetime' | 'not_yet_valid' | 'claims';

/** Why an assertion was refused; the token endpoint answers invalid_client and audits `code`. */
export class AssertionError extends Error {
  readonly code: AssertionErrorCode;

  constructor(code: AssertionErrorCode, options?: { cause?: unknown }) {
    super(`client assertion refused: ${code}`, options);
    this.name = 'AssertionError';
    this.code = code;
  }
}

export interface VerifiedAssertion {
  readonly jti: string;
  /** Seconds since the epoch. */
  readonly exp: number;
  /**
   * The earliest the assertion can have been made (seconds): its `iat`, or `exp` minus the longest
   * lifetime we accept when it has none.
   */
  readonly madeNoEarlierThan: number;
}

export interface AssertionOptions {
  /** The agent the assertion must be from (`iss` and `sub`). */
  readonly clientId: string;
  /** Public JWKs pinned for the agent (OKP Ed25519 or EC P-256). */
  readonly jwks: ReadonlyArray<Readonly<Record<string, unknown>>>;
  /** Accepted `aud` values: the issuer, and the URL of the endpoint called. */
  readonly audiences: readonly string[];
  readonly clock: Clock;
  /** RFC 7523 §3 item 4 leaves it to us: an assertion lives at most this long (default 300 s). */
  readonly maxLifetimeSeconds?: number;
  readonly maxSkewSeconds?: number;
}

const FORBIDDEN_HEADERS = ['jku', 'jwk', 'x5u', 'x5c', 'crit'] as const;
const ALG_OF_CURVE: Readonly<Record<string, string>> = { Ed25519: 'EdDSA', 'P-256': 'ES256' };
const imported = new WeakMap<object, Promise<CryptoKey>>();

/** The `sub` (else `iss`) of an unverified assertion, to find out which client it claims to be. */
export function assertionSubject(assertion: string): string | null {
  if (assertion.length > MAX_TOKEN_BYTES) return null;
  try {
    const payload = decodeJwt(assertion);
    const who = payload.sub ?? payload.iss;
    return typeof who === 'string' && who !== '' ? who : null;
  } catch {
    return null;
  }
}

export async function verifyClientAssertion(assertion: string, options: AssertionOptions): Promise<VerifiedAssertion> {
  const { clientId, clock } = options;
  const maxLifetime = options.maxLifetimeSeconds ?? 300;
  const skew = options.maxSkewSeconds ?? 30;
  if (assertion.length > MAX_TOKEN_BYTES) throw new AssertionError('malformed');
  let header: ReturnType<typeof decodeProtectedHeader>;
  try {
    header = decodeProtectedHeader(assertion);
  } catch (error) {
    throw new AssertionError('malformed', { cause: error });
  }
  for (const name of FORBIDDEN_HEADERS) if (Object.hasOwn(header, name)) throw new AssertionError('header_forbidden');
  const alg = header.alg;
  if (alg !== 'EdDSA' && alg !== 'ES256' && alg !== 'Ed25519') throw new AssertionError('alg');
  // The key is chosen by kid when the assertion names one, else every pinned key of that alg is tried.
  const candidates = options.jwks.filter((jwk) => {
    const keyAlg = ALG_OF_CURVE[String(jwk.crv)];
    const algOk = keyAlg === alg || (alg === 'Ed25519' && keyAlg === 'EdDSA');
    return algOk && (header.kid === undefined || jwk.kid === undefined || jwk.kid === header.kid);
  });
  if (candidates.length === 0) throw new AssertionError('no_key');
  let payload: JWTPayload | null = null;
  let lastError: unknown = null;
  for (const jwk of candidates) {
    try {
      const key = await importOnce(jwk, alg);
      ({ payload } = await jwtVerify(assertion, key, {
        algorithms: [alg],
        clockTolerance: skew,
        currentDate: new Date(clock.now()),
        requiredClaims: ['iss', 'sub', 'aud', 'exp', 'jti'],
      }));
      break;
    } catch (error) {
      lastError = error;
      // Only a bad signature means "try the next key"; any other failure is final.
      if (!(error instanceof joseErrors.JWSSignatureVerificationFailed)) break;
    }
  }
  if (payload === null) throw translate(lastError);
  // RFC 7523 §3: iss and sub are both the client.
  if (payload.iss !== clientId || payload.sub !== clientId) throw new AssertionError('iss_sub');
  const aud = typeof payload.aud === 'string' ? [payload.aud] : (payload.aud ?? []);
  if (!aud.some((a) => options.audiences.includes(a))) throw new AssertionError('aud');
  const { exp, iat, jti } = payload;
  if (typeof exp !== 'number' || typeof jti !== 'string' || jti === '' || jti.length > 256) throw new AssertionError('claims');
  const nowSeconds = clock.now() / 1000;
  // Short-lived: at most maxLifetime from its iat (or from now when it has none) to its exp.
  const from = typeof iat === 'number' ? iat : nowSeconds;
  if (typeof iat === 'number' && iat > nowSeconds + skew) throw new AssertionError('not_yet_valid');
  if (exp - from > maxLifetime || exp - nowSeconds > maxLifetime + skew) throw new AssertionError('lifetime');
  return { jti, exp, madeNoEarlierThan: typeof iat === 'number' ? iat : exp - maxLifetime };
}

function importOnce(jwk: Readonly<Record<string, unknown>>, alg: string): Promise<CryptoKey> {
  let key = imported.get(jwk);
  if (key === undefined) {
    const { kty, crv, x, y } = jwk as JWK;
    key = importJWK(y === undefined ? { kty, crv, x } : { kty, crv, x, y }, alg === 'Ed25519' ? 'EdDSA' : alg) as Promise<CryptoKey>;
    imported.set(jwk, key);
    key.catch(() => imported.delete(jwk));
  }
  return key;
}

function translate(error: unknown): AssertionError {
  if (error instanceof AssertionError) return error;
  if (error instanceof joseErrors.JWTExpired) return new AssertionError('expired', { cause: error });
  if (error instanceof joseErrors.JWTClaimValidationFailed) {
    if (error.claim === 'nbf' || error.claim === 'iat') return new AssertionError('not_yet_valid', { cause: error });
    return new AssertionError('claims', { cause: error });
  }
  if (error instanceof joseErrors.JWSSignatureVerificationFailed) return new AssertionError('signature', { cause: error });
  if (error instanceof joseErrors.JOSEError) return new AssertionError('malformed', { cause: error });
  if (error instanceof TypeError) return new AssertionError('malformed', { cause: error });
  throw error;
}
