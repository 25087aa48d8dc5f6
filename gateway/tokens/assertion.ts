// Client assertions (RFC 7523 §3, private_key_jwt): a JWT the agent signs with its own key to
// authenticate at the token endpoint. Verified against the public JWKs its policy pins, with
// node:crypto on the calling thread: WebCrypto (jose) queues every verification on libuv's thread
// pool, and that round trip was the token endpoint's slowest step (bench/RESULTS.md, issue 13).
// The JWS and JWT rules are jose's jwtVerify's, read strictly: test/tokens/assertion.test.ts
// holds both to the same table. Single use of `jti` is the caller's (it owns the store).
import { createPublicKey, verify, type JsonWebKey, type KeyObject } from 'node:crypto';
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
/** Claims jwtVerify was asked to require; iss, sub and aud are then checked against the client. */
const REQUIRED_CLAIMS = ['iss', 'sub', 'aud', 'exp', 'jti'] as const;
/** Compact JWS: three non-empty base64url segments, nothing else (no padding, no whitespace). */
const COMPACT = /^([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)$/;
const utf8 = new TextDecoder('utf-8', { fatal: true });
const publicKeys = new WeakMap<object, KeyObject>();

/** An assertion as read, before any check: what it claims, and what its checks need. */
export interface ReadAssertion {
  /** The client it claims to be from (`sub`, else `iss`), or null when it names none or is malformed. */
  readonly subject: string | null;
  readonly parsed: Parsed | null;
}

interface Parsed {
  readonly header: Record<string, unknown>;
  /** The claims as sent, not yet trusted: null when they are not a JSON object. */
  readonly payload: Record<string, unknown> | null;
  /** The bytes the signature covers: `header.payload` as sent. */
  readonly signingInput: Buffer;
  readonly signature: Buffer;
}

/** Decode one segment; null unless it is the canonical base64url of its bytes. */
function segment(text: string): Buffer | null {
  const bytes = Buffer.from(text, 'base64url');
  return bytes.toString('base64url') === text ? bytes : null;
}

/** A JSON object from a segment's bytes (UTF-8, a top-level object), or null. */
function objectOf(bytes: Buffer | null): Record<string, unknown> | null {
  if (bytes === null) return null;
  try {
    const value: unknown = JSON.parse(utf8.decode(bytes));
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

function parse(assertion: string): Parsed | null {
  if (assertion.length > MAX_TOKEN_BYTES) return null;
  const parts = COMPACT.exec(assertion);
  if (parts === null) return null;
  const [, headerSegment = '', payloadSegment = '', signatureSegment = ''] = parts;
  const header = objectOf(segment(headerSegment));
  const signature = segment(signatureSegment);
  if (header === null || signature === null) return null;
  return { header, payload: objectOf(segment(payloadSegment)), signingInput: Buffer.from(`${headerSegment}.${payloadSegment}`, 'latin1'), signature };
}

/** Read an assertion once: the token endpoint finds the client by its subject, then verifies it. */
export function readAssertion(assertion: string): ReadAssertion {
  const parsed = parse(assertion);
  const who = parsed?.payload?.sub ?? parsed?.payload?.iss;
  return { subject: typeof who === 'string' && who !== '' ? who : null, parsed };
}

/**
 * Verify `assertion` as the client `clientId`'s (RFC 7523 §3): signature by a pinned key, `iss` =
 * `sub` = the client, `aud` one of `audiences`, `exp` (and `nbf`, `iat` when present) within the
 * clock skew, and a lifetime of at most `maxLifetimeSeconds`. Throws AssertionError.
 */
export function verifyClientAssertion(assertion: string | ReadAssertion, options: AssertionOptions): VerifiedAssertion {
  const { clientId, clock } = options;
  const maxLifetime = options.maxLifetimeSeconds ?? 300;
  const skew = options.maxSkewSeconds ?? 30;
  const { parsed } = typeof assertion === 'string' ? readAssertion(assertion) : assertion;
  if (parsed === null) throw new AssertionError('malformed');
  const { header } = parsed;
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
  const keys = candidates.map(publicKeyOf).filter((key) => key !== null);
  if (keys.length === 0) throw new AssertionError('no_key');
  if (!keys.some((key) => signedBy(alg, parsed, key))) throw new AssertionError('signature');

  const { payload } = parsed;
  if (payload === null) throw new AssertionError('malformed');
  for (const claim of REQUIRED_CLAIMS) if (!(claim in payload)) throw new AssertionError('claims');
  const { exp, iat, nbf, jti } = payload;
  if (typeof exp !== 'number' || (iat !== undefined && typeof iat !== 'number') || (nbf !== undefined && typeof nbf !== 'number')) throw new AssertionError('claims');
  // One reading of the clock. jose's for nbf and exp: whole seconds, the skew on either side.
  const nowSeconds = clock.now() / 1000;
  const now = Math.floor(nowSeconds);
  if (nbf !== undefined && nbf > now + skew) throw new AssertionError('not_yet_valid');
  if (exp <= now - skew) throw new AssertionError('expired');
  // RFC 7523 §3: iss and sub are both the client.
  if (payload.iss !== clientId || payload.sub !== clientId) throw new AssertionError('iss_sub');
  const aud = typeof payload.aud === 'string' ? [payload.aud] : Array.isArray(payload.aud) ? payload.aud : [];
  if (!aud.some((a) => typeof a === 'string' && options.audiences.includes(a))) throw new AssertionError('aud');
  if (typeof jti !== 'string' || jti === '' || jti.length > 256) throw new AssertionError('claims');
  // Short-lived: at most maxLifetime from its iat (or from now when it has none) to its exp.
  const from = typeof iat === 'number' ? iat : nowSeconds;
  if (typeof iat === 'number' && iat > nowSeconds + skew) throw new AssertionError('not_yet_valid');
  if (exp - from > maxLifetime || exp - nowSeconds > maxLifetime + skew) throw new AssertionError('lifetime');
  return { jti, exp, madeNoEarlierThan: typeof iat === 'number' ? iat : exp - maxLifetime };
}

/**
 * The pinned JWK as a node:crypto key, made once per JWK object (a policy reload brings new ones);
 * null for one that makes no key (policy validation refuses those; skipped, never fatal to the others).
 */
function publicKeyOf(jwk: Readonly<Record<string, unknown>>): KeyObject | null {
  let key = publicKeys.get(jwk);
  if (key === undefined) {
    const { kty, crv, x, y } = jwk;
    try {
      key = createPublicKey({ key: (y === undefined ? { kty, crv, x } : { kty, crv, x, y }) as JsonWebKey, format: 'jwk' });
    } catch {
      return null;
    }
    publicKeys.set(jwk, key);
  }
  return key;
}

/** EdDSA over Ed25519, or ES256 with its 64-byte r||s signature (RFC 7518 §3.4). */
function signedBy(alg: 'EdDSA' | 'Ed25519' | 'ES256', parsed: Parsed, key: KeyObject): boolean {
  if (parsed.signature.length !== 64) return false;
  if (alg === 'ES256') {
    if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') return false;
    return verify('sha256', parsed.signingInput, { key, dsaEncoding: 'ieee-p1363' }, parsed.signature);
  }
  return key.asymmetricKeyType === 'ed25519' && verify(null, parsed.signingInput, key, parsed.signature);
}
