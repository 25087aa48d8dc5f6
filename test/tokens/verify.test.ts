// Verification: mint/verify round trip, the precise TokenError code for each kind of bad token,
// the skew limit, and the verified-token cache (bounded, never past exp).
import t from 'tap';
import { randomUUID } from 'node:crypto';
import { base64url, errors as joseErrors, generateKeyPair, SignJWT, UnsecuredJWT, type JWTPayload } from 'jose';
import type { KeyStore } from '../../gateway/tokens/keys.js';
import { mintAccessToken } from '../../gateway/tokens/mint.js';
import { createTokenVerifier, MAX_TOKEN_BYTES, TokenError, type TokenErrorCode } from '../../gateway/tokens/verify.js';
import { ISSUER, makeTestKeys, manualClock } from '../helpers/tokens.js';

const AGENT = 'data-agent-01';

function signer(keys: KeyStore, nowSeconds: number) {
  const key = keys.current();
  const header = { alg: key.alg, typ: 'at+jwt', kid: key.kid };
  const claims = (over: Record<string, unknown> = {}): JWTPayload => {
    const base: Record<string, unknown> = {
      iss: ISSUER, sub: AGENT, client_id: AGENT, aud: ['bi'], scope: 'bi:reports.read',
      iat: nowSeconds, exp: nowSeconds + 600, jti: randomUUID(), sid: randomUUID(),
    };
    for (const [k, v] of Object.entries(over)) {
      if (v === undefined) delete base[k];
      else base[k] = v;
    }
    return base;
  };
  const sign = (over: Record<string, unknown> = {}, headerOver: Record<string, unknown> = {}): Promise<string> =>
    new SignJWT(claims(over)).setProtectedHeader({ ...header, ...headerOver } as { alg: string }).sign(key.privateKey);
  /** Signs arbitrary bytes as the payload with WebCrypto, for payloads jose will not produce. */
  const rawSign = async (payload: string): Promise<string> => {
    const input = `${base64url.encode(JSON.stringify(header))}.${base64url.encode(payload)}`;
    const algorithm = key.alg === 'EdDSA' ? { name: 'Ed25519' } : { name: 'ECDSA', hash: 'SHA-256' };
    const signature = new Uint8Array(await crypto.subtle.sign(algorithm, key.privateKey, new TextEncoder().encode(input)));
    return `${input}.${base64url.encode(signature)}`;
  };
  return { header, claims, sign, rawSign };
}

t.test('round trip', async (t) => {
  const clock = manualClock();
  const keys = await makeTestKeys(t.testdir({}), 'EdDSA', clock);
  const verifier = createTokenVerifier({ keys, issuer: ISSUER, clock });
  const minted = await mintAccessToken(keys, {
    issuer: ISSUER, agent: AGENT, subject: AGENT, audience: ['bi'], scopes: ['bi:query.aggregate', 'bi:reports.read'], ttlSeconds: 600, sid: 's-1',
  }, clock);
  const claims = await verifier.verify(minted.token);
  t.same(claims, {
    agent: AGENT, subject: AGENT, audience: new Set(['bi']), scopes: new Set(['bi:query.aggregate', 'bi:reports.read']),
    jti: minted.jti, sid: 's-1', issuedAt: minted.issuedAt, expiresAt: minted.expiresAt, act: null, kid: keys.current().kid,
  });
  t.ok(Object.isFrozen(claims));

  const delegated = await mintAccessToken(keys, {
    issuer: ISSUER, agent: AGENT, subject: 'alice', audience: ['bi'], scopes: ['bi:reports.read'], ttlSeconds: 60, sid: 's-2', act: { sub: AGENT },
  }, clock);
  t.same((await verifier.verify(delegated.token)).act, { sub: AGENT });
});

t.test('ES256 keys verify their own tokens', async (t) => {
  const clock = manualClock();
  const keys = await makeTestKeys(t.testdir({}), 'ES256', clock);
  const verifier = createTokenVerifier({ keys, issuer: ISSUER, clock });
  const token = await signer(keys, Math.floor(clock.now() / 1000)).sign();
  t.equal((await verifier.verify(token)).agent, AGENT);
});

t.test('each refusal carries a precise code', async (t) => {
  const clock = manualClock();
  const now = Math.floor(clock.now() / 1000);
  const keys = await makeTestKeys(t.testdir({}), 'EdDSA', clock);
  const other = await makeTestKeys(t.testdir({}), 'EdDSA', clock);
  const verifier = createTokenVerifier({ keys, issuer: ISSUER, clock });
  const { header, claims, sign, rawSign } = signer(keys, now);
  const rsa = await generateKeyPair('RS256', { extractable: true });
  const es = await generateKeyPair('ES256');
  const valid = await sign();
  const [h, p] = valid.split('.');
  const publicX = base64url.decode(String(keys.current().publicJwk.x));

  const cases: Array<{ name: string; token: string | Promise<string>; code: TokenErrorCode; jose?: boolean }> = [
    { name: 'over 8 KiB', token: sign({ pad: 'x'.repeat(MAX_TOKEN_BYTES) }), code: 'too_large' },
    { name: 'garbage', token: 'not a jwt', code: 'malformed' },
    { name: 'header not JSON', token: `${base64url.encode('{')}.${p}.AAAA`, code: 'malformed' },
    { name: 'five parts', token: `${valid}.${p}.${p}`, code: 'malformed', jose: true },
    { name: 'payload not JSON', token: rawSign('not json'), code: 'malformed', jose: true },
    { name: 'payload a JSON array', token: rawSign('[1]'), code: 'malformed', jose: true },
    { name: 'jku', token: sign({}, { jku: 'http://127.0.0.1:1/jwks' }), code: 'header_forbidden' },
    { name: 'jwk', token: sign({}, { jwk: keys.current().publicJwk }), code: 'header_forbidden' },
    { name: 'x5u', token: sign({}, { x5u: 'http://127.0.0.1:1/c.pem' }), code: 'header_forbidden' },
    { name: 'x5c', token: sign({}, { x5c: ['MIIB'] }), code: 'header_forbidden' },
    { name: 'crit', token: `${base64url.encode(JSON.stringify({ ...header, crit: ['exp'] }))}.${p}.AAAA`, code: 'header_forbidden' },
    { name: 'alg none', token: new UnsecuredJWT(claims()).encode(), code: 'alg' },
    { name: 'alg none with our kid', token: `${base64url.encode(JSON.stringify({ ...header, alg: 'none' }))}.${p}.`, code: 'alg' },
    { name: 'HS256 keyed with our public key', token: new SignJWT(claims()).setProtectedHeader({ ...header, alg: 'HS256' }).sign(publicX), code: 'alg' },
    { name: 'RS256', token: new SignJWT(claims()).setProtectedHeader({ ...header, alg: 'RS256' }).sign(rsa.privateKey), code: 'alg' },
    { name: 'ES256 under an Ed25519 kid', token: new SignJWT(claims()).setProtectedHeader({ ...header, alg: 'ES256' }).sign(es.privateKey), code: 'alg' },
    { name: 'no kid', token: new SignJWT(claims()).setProtectedHeader({ alg: 'EdDSA', typ: 'at+jwt' }).sign(keys.current().privateKey), code: 'kid_missing' },
    { name: 'unknown kid', token: sign({}, { kid: 'someone-else' }), code: 'kid_unknown' },
    { name: 'another key under our kid', token: new SignJWT(claims()).setProtectedHeader(header).sign(other.current().privateKey), code: 'signature', jose: true },
    { name: 'payload tampered', token: `${h}.${base64url.encode(JSON.stringify(claims({ scope: 'bi:reports.read bi:admin' })))}.${valid.split('.')[2]}`, code: 'signature', jose: true },
    { name: 'signature stripped', token: `${h}.${p}.`, code: 'signature', jose: true },
    { name: 'typ JWT', token: sign({}, { typ: 'JWT' }), code: 'typ', jose: true },
    { name: 'no typ', token: new SignJWT(claims()).setProtectedHeader({ alg: 'EdDSA', kid: keys.current().kid }).sign(keys.current().privateKey), code: 'typ', jose: true },
    { name: 'wrong iss', token: sign({ iss: 'http://agentgate.test/' }), code: 'iss', jose: true },
    { name: 'expired 31 s ago', token: sign({ iat: now - 631, exp: now - 31 }), code: 'expired', jose: true },
    { name: 'nbf 60 s ahead', token: sign({ nbf: now + 60 }), code: 'not_yet_valid', jose: true },
    { name: 'iat 60 s ahead', token: sign({ iat: now + 60, exp: now + 600 }), code: 'not_yet_valid' },
    { name: 'no exp', token: sign({ exp: undefined }), code: 'claims', jose: true },
    { name: 'no iss', token: sign({ iss: undefined }), code: 'claims', jose: true },
    { name: 'no jti', token: sign({ jti: undefined }), code: 'claims', jose: true },
    { name: 'no sid', token: sign({ sid: undefined }), code: 'claims', jose: true },
    { name: 'no client_id', token: sign({ client_id: undefined }), code: 'claims', jose: true },
    { name: 'no scope', token: sign({ scope: undefined }), code: 'claims', jose: true },
    { name: 'scope a list', token: sign({ scope: ['bi:reports.read'] }), code: 'claims' },
    { name: 'scope empty', token: sign({ scope: ' ' }), code: 'claims' },
    { name: 'aud a number', token: sign({ aud: 7 }), code: 'claims' },
    { name: 'aud empty', token: sign({ aud: [] }), code: 'claims' },
    { name: 'aud with a non-string', token: sign({ aud: ['bi', 1] }), code: 'claims' },
    { name: 'sub empty', token: sign({ sub: '' }), code: 'claims' },
    { name: 'exp before iat', token: sign({ iat: now, exp: now - 1 }), code: 'claims' },
    { name: 'act without sub', token: sign({ act: { client: 'x' } }), code: 'claims' },
    { name: 'act nested too deep', token: sign({ act: nest(9) }), code: 'claims' },
  ];
  for (const c of cases) {
    await t.test(c.name, async (t) => {
      const error = await verifier.verify(await c.token).then(() => null, (e: unknown) => e);
      t.ok(error instanceof TokenError, 'a TokenError');
      if (!(error instanceof TokenError)) return;
      t.equal(error.code, c.code);
      if (c.jose === true) t.ok(error.cause instanceof joseErrors.JOSEError, 'keeps jose error as cause');
    });
  }
  t.equal(verifier.cached(valid), undefined, 'refusals fill no cache');
});

t.test('skew: 30 s at most, and configurable below', async (t) => {
  const clock = manualClock();
  const now = Math.floor(clock.now() / 1000);
  const keys = await makeTestKeys(t.testdir({}), 'EdDSA', clock);
  const { sign } = signer(keys, now);
  const verifier = createTokenVerifier({ keys, issuer: ISSUER, clock });
  t.ok(await verifier.verify(await sign({ iat: now - 629, exp: now - 29 })), 'expired 29 s ago: within skew');
  t.ok(await verifier.verify(await sign({ nbf: now + 29 })), 'nbf 29 s ahead: within skew');
  const strict = createTokenVerifier({ keys, issuer: ISSUER, clock, maxSkewSeconds: 0 });
  await t.rejects(strict.verify(await sign({ iat: now - 601, exp: now - 1 })), { code: 'expired' });
  t.throws(() => createTokenVerifier({ keys, issuer: ISSUER, clock, maxSkewSeconds: 31 }), RangeError);
  t.throws(() => createTokenVerifier({ keys, issuer: ISSUER, clock, maxSkewSeconds: -1 }), RangeError);
  t.throws(() => createTokenVerifier({ keys, issuer: ISSUER, clock, cacheSize: 0 }), RangeError);
  t.throws(() => createTokenVerifier({ keys, issuer: '', clock }), TypeError);
});

t.test('the cache never serves a token past its exp', async (t) => {
  const clock = manualClock();
  const now = Math.floor(clock.now() / 1000);
  const keys = await makeTestKeys(t.testdir({}), 'EdDSA', clock);
  const verifier = createTokenVerifier({ keys, issuer: ISSUER, clock });
  const token = await signer(keys, now).sign({ exp: now + 60 });

  t.equal(verifier.cached(token), undefined, 'nothing before verify');
  const verified = await verifier.verify(token);
  t.equal(verifier.cached(token), verified, 'the same claims object (sets built once)');
  clock.advance(59_999);
  t.equal(verifier.cached(token), verified, 'served until the last ms before exp');
  clock.advance(1);
  t.equal(verifier.cached(token), undefined, 'not at exp');
  clock.set((now + 10) * 1000);
  t.equal(verifier.cached(token), undefined, 'the entry was dropped, not just hidden');
  clock.set((now + 70) * 1000);
  const again = await verifier.verify(token);
  t.equal(again.jti, verified.jti, 'within the skew after exp it still verifies in full');
  t.equal(verifier.cached(token), undefined, 'but is not cached past exp');
  clock.set((now + 91) * 1000);
  await t.rejects(verifier.verify(token), { code: 'expired' });
});

t.test('the cache is bounded by cacheSize (least recently used goes first)', async (t) => {
  const clock = manualClock();
  const keys = await makeTestKeys(t.testdir({}), 'EdDSA', clock);
  const verifier = createTokenVerifier({ keys, issuer: ISSUER, clock, cacheSize: 2 });
  const { sign } = signer(keys, Math.floor(clock.now() / 1000));
  const [a, b, c] = await Promise.all([sign(), sign(), sign()]);
  if (a === undefined || b === undefined || c === undefined) throw new Error('unreachable');
  await verifier.verify(a);
  await verifier.verify(b);
  t.ok(verifier.cached(a), 'a used again: b is now the oldest');
  await verifier.verify(c);
  t.ok(verifier.cached(a));
  t.equal(verifier.cached(b), undefined, 'b evicted');
  t.ok(verifier.cached(c));
});

function nest(depth: number): Record<string, unknown> {
  let act: Record<string, unknown> = { sub: 'a0' };
  for (let i = 1; i < depth; i++) act = { sub: `a${i}`, act };
  return act;
}

t.test('refused tokens: a final refusal is repeated, a curable one is not remembered', async (t) => {
  const clock = manualClock();
  const keys = await makeTestKeys(t.testdir({}), 'EdDSA', clock);
  const verifier = createTokenVerifier({ keys, issuer: ISSUER, clock });
  const now = Math.floor(clock.now() / 1000);
  const { sign } = signer(keys, now);
  const good = await sign();
  const [h, p, s] = good.split('.');
  const at = (s ?? '').length >> 1;
  const forged = `${h}.${p}.${(s ?? '').slice(0, at)}${(s ?? '')[at] === 'A' ? 'B' : 'A'}${(s ?? '').slice(at + 1)}`;
  const cases: Array<{ name: string; token: string; code: TokenErrorCode }> = [
    { name: 'a forged signature, twice', token: forged, code: 'signature' },
    { name: 'an expired token, twice', token: await sign({ iat: now - 700, exp: now - 100 }), code: 'expired' },
  ];
  for (const c of cases) {
    for (const attempt of [1, 2]) {
      await t.rejects(verifier.verify(c.token), { code: c.code }, `${c.name}: attempt ${attempt}`);
    }
  }
  // not_yet_valid is cured by time: once the clock reaches nbf the same token verifies.
  const early = await sign({ nbf: now + 60 });
  await t.rejects(verifier.verify(early), { code: 'not_yet_valid' });
  clock.advance(61_000);
  t.equal((await verifier.verify(early)).subject, AGENT, 'verified once nbf has passed');
  t.equal((await verifier.verify(good)).subject, AGENT, 'the genuine token still verifies beside its forgery');
});
