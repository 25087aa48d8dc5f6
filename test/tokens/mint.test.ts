// Minting: the header and claims DESIGN §4 fixes, a fresh jti per token, and refusal of input that
// would produce an ambiguous token.
import t from 'tap';
import { decodeJwt, decodeProtectedHeader, importJWK, jwtVerify } from 'jose';
import { mintAccessToken, type MintRequest } from '../../gateway/tokens/mint.js';
import { ISSUER, makeTestKeys, manualClock } from '../helpers/tokens.js';

const input: MintRequest = {
  issuer: ISSUER,
  agent: 'marketing-agent-03',
  subject: 'marketing-agent-03',
  audience: ['content', 'crm'],
  scopes: ['content:assets.read', 'crm:contacts.read'],
  ttlSeconds: 1800,
  sid: 'session-1',
};

t.test('header and claims', async (t) => {
  const clock = manualClock();
  const keys = await makeTestKeys(t.testdir({}), 'EdDSA', clock);
  const minted = await mintAccessToken(keys, input, clock);
  const iat = Math.floor(clock.now() / 1000);

  t.same(decodeProtectedHeader(minted.token), { alg: 'EdDSA', typ: 'at+jwt', kid: keys.current().kid });
  t.same(decodeJwt(minted.token), {
    iss: ISSUER,
    sub: 'marketing-agent-03',
    client_id: 'marketing-agent-03',
    aud: ['content', 'crm'],
    scope: 'content:assets.read crm:contacts.read',
    iat,
    exp: iat + 1800,
    jti: minted.jti,
    sid: 'session-1',
  });
  t.match(minted, { jti: /^[0-9a-f-]{36}$/, sid: 'session-1', issuedAt: iat, expiresAt: iat + 1800, kid: keys.current().kid });
  const again = await mintAccessToken(keys, input, clock);
  t.not(again.jti, minted.jti, 'a fresh jti per token');
});

t.test('one audience is still an array; act is carried for delegation', async (t) => {
  const clock = manualClock();
  const keys = await makeTestKeys(t.testdir({}), 'ES256', clock);
  const minted = await mintAccessToken(keys, { ...input, audience: ['crm'], subject: 'alice@example.com', act: { sub: 'marketing-agent-03' } }, clock);
  t.equal(decodeProtectedHeader(minted.token).alg, 'ES256');
  t.match(decodeJwt(minted.token), { aud: ['crm'], sub: 'alice@example.com', act: { sub: 'marketing-agent-03' } });
});

t.test('the signature is a JWS jose verifies with the published key, for each algorithm', async (t) => {
  // The token is put together here (signed with node:crypto on the calling thread), so an
  // independent implementation must accept it: jose, against the key as a JWKS would publish it.
  for (const alg of ['EdDSA', 'ES256'] as const) {
    const clock = manualClock();
    const keys = await makeTestKeys(t.testdir({}), alg, clock);
    const minted = await mintAccessToken(keys, input, clock);
    const current = keys.current();
    const { payload, protectedHeader } = await jwtVerify(minted.token, await importJWK(current.publicJwk, alg), {
      algorithms: [alg], issuer: ISSUER, typ: 'at+jwt', currentDate: new Date(clock.now()),
    });
    t.same(protectedHeader, { alg, typ: 'at+jwt', kid: current.kid }, `${alg}: the header`);
    t.equal(payload.jti, minted.jti, `${alg}: the claims`);
    const [header, body, signature] = minted.token.split('.');
    t.equal(Buffer.from(signature ?? '', 'base64url').length, 64, `${alg}: a 64-byte signature (ES256 as r||s, not DER)`);
    const flipped = `${header}.${body}.${(signature ?? '').startsWith('A') ? 'B' : 'A'}${(signature ?? '').slice(1)}`;
    await t.rejects(jwtVerify(flipped, await importJWK(current.publicJwk, alg), { algorithms: [alg] }), `${alg}: a changed signature is refused`);
  }
});

t.test('input that would make an ambiguous token is a bug', async (t) => {
  const clock = manualClock();
  const keys = await makeTestKeys(t.testdir({}), 'EdDSA', clock);
  const cases: Array<{ name: string; input: MintRequest; message: RegExp }> = [
    { name: 'zero ttl', input: { ...input, ttlSeconds: 0 }, message: /ttlSeconds/ },
    { name: 'fractional ttl', input: { ...input, ttlSeconds: 1.5 }, message: /ttlSeconds/ },
    { name: 'no audience', input: { ...input, audience: [] }, message: /audience/ },
    { name: 'no scope', input: { ...input, scopes: [] }, message: /scopes/ },
    { name: 'a scope with a space', input: { ...input, scopes: ['crm:contacts.read crm:export'] }, message: /without spaces/ },
    { name: 'an audience with a space', input: { ...input, audience: ['crm content'] }, message: /without spaces/ },
    { name: 'empty sid', input: { ...input, sid: '' }, message: /sid/ },
  ];
  for (const c of cases) await t.rejects(mintAccessToken(keys, c.input, clock), { name: 'TypeError', message: c.message }, c.name);
});
