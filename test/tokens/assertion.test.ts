// Client assertions (private_key_jwt) are verified with node:crypto, not jose. jose's jwtVerify is
// the oracle: every row is sent to both, and the gateway must refuse whatever jose refuses. Where
// it refuses more (a rule of ours, or a stricter reading of the encoding) the row says why.
import t from 'tap';
import { createHmac, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { importJWK } from 'jose/key/import';
import { jwtVerify } from 'jose/jwt/verify';
import { AssertionError, readAssertion, verifyClientAssertion, type AssertionOptions } from '../../gateway/tokens/assertion.js';
import { MAX_TOKEN_BYTES } from '../../gateway/tokens/verify.js';
import { manualClock } from '../helpers/tokens.js';

const CLIENT = 'crm-agent-01';
const ISSUER = 'https://gateway.example';
const ENDPOINT = `${ISSUER}/oauth/token`;
const SKEW = 30;

const ed = generateKeyPairSync('ed25519');
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const stranger = generateKeyPairSync('ed25519');
const edJwk = { ...ed.publicKey.export({ format: 'jwk' }), kid: 'ed-1' };
const ecJwk = { ...ec.publicKey.export({ format: 'jwk' }), kid: 'ec-1' };

const clock = manualClock();
const now = (): number => Math.floor(clock.now() / 1000);
const options = (over: Partial<AssertionOptions> = {}): AssertionOptions => ({ clientId: CLIENT, jwks: [edJwk, ecJwk], audiences: [ISSUER, ENDPOINT], clock, ...over });

const b64 = (bytes: string | Buffer): string => Buffer.from(bytes).toString('base64url');

function claims(over: Record<string, unknown> = {}): Record<string, unknown> {
  const base: Record<string, unknown> = { iss: CLIENT, sub: CLIENT, aud: ENDPOINT, iat: now(), exp: now() + 60, jti: `j-${Math.random()}` };
  for (const [k, v] of Object.entries(over)) {
    if (v === undefined) delete base[k];
    else base[k] = v;
  }
  return base;
}

type Signer = 'ed' | 'ec' | 'stranger' | 'ec-der' | 'hmac';

/** Sign `header.payload` as given (objects are JSON-encoded; strings and buffers are the raw segment bytes). */
function compact(header: object | string, payload: object | string | Buffer, by: Signer = 'ed'): string {
  const input = `${b64(typeof header === 'string' ? header : JSON.stringify(header))}.${b64(Buffer.isBuffer(payload) || typeof payload === 'string' ? payload : JSON.stringify(payload))}`;
  return `${input}.${b64(signature(input, by))}`;
}

function signature(input: string, by: Signer): Buffer {
  const data = Buffer.from(input);
  const keys: Record<Exclude<Signer, 'ec-der' | 'hmac'>, KeyObject> = { ed: ed.privateKey, ec: ec.privateKey, stranger: stranger.privateKey };
  if (by === 'hmac') return createHmac('sha256', String(edJwk.x)).update(data).digest();
  if (by === 'ec-der') return sign('sha256', data, ec.privateKey);
  if (by === 'ec') return sign('sha256', data, { key: keys.ec, dsaEncoding: 'ieee-p1363' });
  return sign(null, data, keys[by]);
}

const ED = { alg: 'EdDSA' };
const ES = { alg: 'ES256' };

/** Change the last character of the signature to one that decodes to the same bytes (non-canonical). */
function nonCanonical(token: string): string {
  const last = token.at(-1) ?? 'A';
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  // 86 characters hold 64 bytes: the last one carries 2 bits of padding, so +1 keeps the bytes.
  return `${token.slice(0, -1)}${alphabet[alphabet.indexOf(last) + 1]}`;
}

interface Row {
  readonly name: string;
  readonly token: () => string;
  /** What the gateway answers: ok, or the AssertionError code. */
  readonly expect: 'ok' | AssertionError['code'];
  /** Set where the gateway refuses what jose accepts: why that is right. */
  readonly stricter?: string;
  /** The keys pinned for the client (default: one Ed25519, one P-256). */
  readonly jwks?: AssertionOptions['jwks'];
}

const rows: Row[] = [
  { name: 'EdDSA, well formed', token: () => compact(ED, claims()), expect: 'ok' },
  { name: 'ES256, well formed', token: () => compact(ES, claims(), 'ec'), expect: 'ok' },
  { name: 'alg Ed25519 (the fully specified name)', token: () => compact({ alg: 'Ed25519' }, claims()), expect: 'ok' },
  { name: 'kid naming the pinned key', token: () => compact({ ...ED, kid: 'ed-1' }, claims()), expect: 'ok' },
  { name: 'aud as a list holding the endpoint', token: () => compact(ED, claims({ aud: ['https://other.example', ENDPOINT] })), expect: 'ok' },
  { name: 'aud the issuer', token: () => compact(ED, claims({ aud: ISSUER })), expect: 'ok' },
  { name: 'exp passed, but within the skew', token: () => compact(ED, claims({ iat: now() - 100, exp: now() - 10 })), expect: 'ok' },
  { name: 'duplicate iss: JSON.parse keeps the last, as jose does', token: () => compact(ED, `{"iss":"evil","sub":"${CLIENT}","aud":"${ENDPOINT}","exp":${now() + 60},"jti":"d","iss":"${CLIENT}"}`), expect: 'ok' },
  { name: 'alg written with a JSON escape', token: () => compact('{"alg":"\\u0045dDSA"}', claims()), expect: 'ok' },
  { name: 'b64 false without crit is ignored', token: () => compact({ ...ED, b64: false }, claims()), expect: 'ok' },

  { name: 'signed by another key', token: () => compact(ED, claims(), 'stranger'), expect: 'signature' },
  { name: 'payload changed after signing', token: () => { const [h, , s] = compact(ED, claims()).split('.'); return `${h}.${b64(JSON.stringify(claims({ sub: 'admin' })))}.${s}`; }, expect: 'signature' },
  { name: 'ES256 with a DER signature', token: () => compact(ES, claims(), 'ec-der'), expect: 'signature' },
  { name: 'alg none, empty signature', token: () => `${b64('{"alg":"none"}')}.${b64(JSON.stringify(claims()))}.`, expect: 'malformed' },
  { name: 'alg none, any signature', token: () => compact({ alg: 'none' }, claims()), expect: 'alg' },
  { name: 'HS256 keyed with the public key', token: () => compact({ alg: 'HS256' }, claims(), 'hmac'), expect: 'alg' },
  { name: 'ES256 header over an Ed25519 signature, only the Ed25519 key pinned', token: () => compact(ES, claims()), expect: 'no_key', jwks: [edJwk] },
  { name: 'ES256 header over an Ed25519 signature, both keys pinned', token: () => compact(ES, claims()), expect: 'signature' },
  { name: 'kid naming no pinned key', token: () => compact({ ...ED, kid: 'other' }, claims()), expect: 'no_key', stricter: 'a kid that names no pinned key matches none (jose, given the key, ignores kid)' },
  { name: 'crit', token: () => compact({ ...ED, crit: ['exp'] }, claims()), expect: 'header_forbidden' },
  { name: 'an embedded jwk', token: () => compact({ ...ED, jwk: { kty: 'OKP', crv: 'Ed25519', x: edJwk.x } }, claims()), expect: 'header_forbidden', stricter: 'keys come from the policy only; a header naming one is refused, not ignored' },
  { name: 'jku', token: () => compact({ ...ED, jku: 'https://evil.example/jwks' }, claims()), expect: 'header_forbidden', stricter: 'as for jwk' },

  { name: 'two segments', token: () => compact(ED, claims()).split('.').slice(0, 2).join('.'), expect: 'malformed' },
  { name: 'four segments', token: () => `${compact(ED, claims())}.e30`, expect: 'malformed' },
  { name: 'header not JSON', token: () => compact('{alg:EdDSA}', claims()), expect: 'malformed' },
  { name: 'header a JSON array', token: () => compact('["EdDSA"]', claims()), expect: 'malformed' },
  { name: 'payload a JSON array', token: () => compact(ED, '[1,2]'), expect: 'malformed' },
  { name: 'payload not UTF-8', token: () => compact(ED, Buffer.from([0x7b, 0xff, 0x7d])), expect: 'malformed' },
  { name: 'padded signature', token: () => `${compact(ED, claims())}==`, expect: 'malformed', stricter: 'base64url in JWS has no padding (RFC 7515 §2)' },
  { name: 'non-canonical signature encoding', token: () => nonCanonical(compact(ED, claims())), expect: 'malformed', stricter: 'one encoding per signature: no second spelling of the same bytes' },
  { name: 'whitespace inside a segment', token: () => { const [h, p, s] = compact(ED, claims()).split('.'); return `${h}.${p}.${s?.slice(0, 10)} ${s?.slice(10)}`; }, expect: 'malformed', stricter: 'a compact JWS has no whitespace' },
  { name: `longer than ${MAX_TOKEN_BYTES} bytes`, token: () => compact(ED, claims({ pad: 'x'.repeat(MAX_TOKEN_BYTES) })), expect: 'malformed', stricter: 'the size bound access tokens have' },

  { name: 'no exp', token: () => compact(ED, claims({ exp: undefined })), expect: 'claims' },
  { name: 'no jti', token: () => compact(ED, claims({ jti: undefined })), expect: 'claims' },
  { name: 'no aud', token: () => compact(ED, claims({ aud: undefined })), expect: 'claims' },
  { name: 'exp a string', token: () => compact(ED, claims({ exp: String(now() + 60) })), expect: 'claims' },
  { name: 'iat a string', token: () => compact(ED, claims({ iat: String(now()) })), expect: 'claims' },
  { name: 'nbf a string', token: () => compact(ED, claims({ nbf: String(now()) })), expect: 'claims' },
  { name: 'jti a number', token: () => compact(ED, claims({ jti: 7 })), expect: 'claims', stricter: 'the replay check keys on a string jti' },
  { name: 'expired beyond the skew', token: () => compact(ED, claims({ iat: now() - 200, exp: now() - SKEW - 1 })), expect: 'expired' },
  { name: 'exp exactly at the skew', token: () => compact(ED, claims({ iat: now() - 200, exp: now() - SKEW })), expect: 'expired' },
  { name: 'nbf beyond the skew', token: () => compact(ED, claims({ nbf: now() + SKEW + 1 })), expect: 'not_yet_valid' },
  { name: 'iat in the future beyond the skew', token: () => compact(ED, claims({ iat: now() + SKEW + 5, exp: now() + 90 })), expect: 'not_yet_valid', stricter: 'an assertion cannot be made in the future' },
  { name: 'iss another agent', token: () => compact(ED, claims({ iss: 'other-agent' })), expect: 'iss_sub' },
  { name: 'sub another agent', token: () => compact(ED, claims({ sub: 'other-agent' })), expect: 'iss_sub' },
  { name: 'aud another server', token: () => compact(ED, claims({ aud: 'https://evil.example' })), expect: 'aud' },
  { name: 'aud a number', token: () => compact(ED, claims({ aud: 7 })), expect: 'aud' },
  { name: 'living an hour', token: () => compact(ED, claims({ exp: now() + 3600 })), expect: 'lifetime', stricter: 'RFC 7523 §3 leaves the lifetime to us: 5 minutes' },
];

async function joseAccepts(token: string): Promise<boolean> {
  const header = (() => {
    try {
      return JSON.parse(Buffer.from(token.split('.')[0] ?? '', 'base64url').toString()) as { alg?: unknown };
    } catch {
      return {};
    }
  })();
  const jwk = header.alg === 'ES256' ? ecJwk : edJwk;
  try {
    const key = await importJWK(jwk, header.alg === 'ES256' ? 'ES256' : 'EdDSA');
    await jwtVerify(token, key, {
      algorithms: ['EdDSA', 'Ed25519', 'ES256'],
      issuer: CLIENT,
      subject: CLIENT,
      audience: [ISSUER, ENDPOINT],
      requiredClaims: ['iss', 'sub', 'aud', 'exp', 'jti'],
      clockTolerance: SKEW,
      currentDate: new Date(clock.now()),
    });
    return true;
  } catch {
    return false;
  }
}

function gateway(token: string, jwks?: AssertionOptions['jwks']): string {
  try {
    verifyClientAssertion(token, options(jwks === undefined ? {} : { jwks }));
    return 'ok';
  } catch (error) {
    if (error instanceof AssertionError) return error.code;
    throw error;
  }
}

for (const row of rows) {
  t.test(row.name, async (t) => {
    const token = row.token();
    t.equal(gateway(token, row.jwks), row.expect, 'the gateway');
    const jose = await joseAccepts(token);
    if (row.expect === 'ok') t.ok(jose, 'jose accepts it too');
    else if (row.stricter === undefined) t.notOk(jose, 'jose refuses it too');
    else t.ok(jose, `jose accepts it; refused here: ${row.stricter}`);
  });
}

t.test('the verified assertion: jti, exp, and the earliest it can have been made', async (t) => {
  const withIat = claims({ iat: now() - 5, exp: now() + 60, jti: 'a-1' });
  t.same(verifyClientAssertion(compact(ED, withIat), options()), { jti: 'a-1', exp: withIat.exp, madeNoEarlierThan: withIat.iat });
  const noIat = claims({ iat: undefined, exp: now() + 60, jti: 'a-2' });
  t.same(verifyClientAssertion(compact(ED, noIat), options({ maxLifetimeSeconds: 120 })), { jti: 'a-2', exp: noIat.exp, madeNoEarlierThan: (noIat.exp as number) - 120 });
});

t.test('each pinned key is tried when the assertion names none; an unusable one is skipped', async (t) => {
  const second = generateKeyPairSync('ed25519');
  const token = `${b64(JSON.stringify(ED))}.${b64(JSON.stringify(claims()))}`;
  const signed = `${token}.${b64(sign(null, Buffer.from(token), second.privateKey))}`;
  t.equal(verifyClientAssertion(signed, options({ jwks: [edJwk, second.publicKey.export({ format: 'jwk' })] })).exp, claims().exp);
  const unusable = { kty: 'OKP', crv: 'Ed25519', x: 'AAAA' };
  t.throws(() => verifyClientAssertion(signed, options({ jwks: [unusable] })), { code: 'no_key' });
  t.equal(verifyClientAssertion(signed, options({ jwks: [unusable, second.publicKey.export({ format: 'jwk' })] })).exp, claims().exp, 'an unusable key does not stop the next');
});

t.test('an assertion read once verifies as the same text does', async (t) => {
  const token = compact(ED, claims({ jti: 'r-1' }));
  const read = readAssertion(token);
  t.equal(read.subject, CLIENT);
  t.same(verifyClientAssertion(read, options()), verifyClientAssertion(token, options()));
  t.throws(() => verifyClientAssertion(readAssertion(`${token}==`), options()), { code: 'malformed' });
});

t.test('readAssertion reads the claimed client the way verification parses it', async (t) => {
  t.equal(readAssertion(compact(ED, claims())).subject, CLIENT);
  t.equal(readAssertion(compact(ED, claims({ sub: undefined }))).subject, CLIENT, 'iss when there is no sub');
  t.equal(readAssertion('abc.def').subject, null);
  t.equal(readAssertion(`${compact(ED, claims())}==`).subject, null, 'a token verification would call malformed names nobody');
  t.equal(readAssertion(compact(ED, claims({ sub: '', iss: '' }))).subject, null);
});
