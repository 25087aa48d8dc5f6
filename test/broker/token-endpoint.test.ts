// The token endpoint under hostile and mistaken requests: every one answers an RFC 6749 §5.2
// error (never a 500), is audited, and leaves the gateway serving.
import t from 'tap';
import { randomUUID } from 'node:crypto';
import { SignJWT } from 'jose';
import { request } from 'undici';
import { OAUTH_ERRORS } from '../../gateway/errors.js';
import { startGateway } from '../helpers/gateway.js';
import { brokerPolicies, clientKey, startUserIssuer } from '../helpers/broker.js';

const key = await clientKey();
const stranger = await clientKey();
const users = await startUserIssuer(t);
const policies = await brokerPolicies(t.testdirName, key.publicJwk);
let offsetMs = 0;
const clock = { now: () => Date.now() + offsetMs };
const gw = await startGateway(t, { policies, clock, trust: [{ issuer: users.issuer, jwksUri: users.jwksUri }] });
const ISSUER = 'http://agentgate.test';
const support = await gw.gateway.credentials.issue('support-agent-01');
const delegate = await gw.gateway.credentials.issue('delegate-agent-01');
const basic = (id: string, secret: string): string => `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`;
const SUPPORT = basic('support-agent-01', support.clientSecret);
const DELEGATE = basic('delegate-agent-01', delegate.clientSecret);
const FORM = 'application/x-www-form-urlencoded';
const EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const JWT_TYPE = 'urn:ietf:params:oauth:token-type:jwt';
const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

async function assertion(claims: { iss?: string; sub?: string; aud?: string; exp?: number; iat?: number; jti?: string } = {}, signWith = key.privateKey): Promise<string> {
  const now = Math.floor(clock.now() / 1000);
  return new SignJWT({})
    .setProtectedHeader({ alg: 'EdDSA' })
    .setIssuer(claims.iss ?? 'keyed-agent-01')
    .setSubject(claims.sub ?? 'keyed-agent-01')
    .setAudience(claims.aud ?? ISSUER)
    .setIssuedAt(claims.iat ?? now)
    .setExpirationTime(claims.exp ?? now + 60)
    .setJti(claims.jti ?? randomUUID())
    .sign(signWith);
}

interface Call {
  readonly path?: string;
  readonly method?: string;
  readonly headers?: Record<string, string>;
  readonly body?: string | Buffer;
}

async function call(c: Call): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; json: Record<string, unknown> }> {
  const res = await request(`${gw.url}${c.path ?? '/oauth/token'}`, {
    method: (c.method ?? 'POST') as 'POST',
    headers: { 'content-type': FORM, ...c.headers },
    ...(c.body === undefined ? {} : { body: c.body }),
  });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, json: JSON.parse(text) as Record<string, unknown> };
}

const usedAssertion = await assertion();
const cases: Array<{ name: string; input: () => Promise<Call> | Call; status: number; error: string; match?: RegExp }> = [
  { name: 'GET on the token endpoint', input: () => ({ method: 'GET', headers: { authorization: SUPPORT } }), status: 405, error: 'invalid_request' },
  { name: 'JSON instead of a form', input: () => ({ headers: { authorization: SUPPORT, 'content-type': 'application/json' }, body: '{"grant_type":"client_credentials"}' }), status: 400, error: 'invalid_request' },
  { name: 'no content type', input: () => ({ headers: { authorization: SUPPORT, 'content-type': '' }, body: 'grant_type=client_credentials' }), status: 400, error: 'invalid_request' },
  { name: 'a charset other than UTF-8', input: () => ({ headers: { authorization: SUPPORT, 'content-type': `${FORM}; charset=utf-16` }, body: 'grant_type=client_credentials' }), status: 400, error: 'invalid_request' },
  { name: 'duplicate grant_type', input: () => ({ headers: { authorization: SUPPORT }, body: 'grant_type=client_credentials&grant_type=client_credentials' }), status: 400, error: 'invalid_request', match: /repeated/ },
  { name: 'duplicate scope', input: () => ({ headers: { authorization: SUPPORT }, body: 'grant_type=client_credentials&scope=kb:articles.read&scope=tickets:tickets.read' }), status: 400, error: 'invalid_request' },
  { name: 'oversized body', input: () => ({ headers: { authorization: SUPPORT }, body: `grant_type=client_credentials&pad=${'a'.repeat(40_000)}` }), status: 413, error: 'invalid_request' },
  { name: 'malformed percent-encoding', input: () => ({ headers: { authorization: SUPPORT }, body: 'grant_type=client_credentials&scope=%zz' }), status: 400, error: 'invalid_request' },
  { name: 'raw non-ASCII bytes', input: () => ({ headers: { authorization: SUPPORT }, body: Buffer.from('grant_type=client_credentials&scope=\u00e9', 'utf8') }), status: 400, error: 'invalid_request' },
  { name: 'a NUL in a value', input: () => ({ headers: { authorization: SUPPORT }, body: 'grant_type=client_credentials%00' }), status: 400, error: 'invalid_request' },
  { name: 'parameters in the query string', input: () => ({ path: '/oauth/token?grant_type=client_credentials', headers: { authorization: SUPPORT }, body: 'grant_type=client_credentials' }), status: 400, error: 'invalid_request' },
  { name: 'no grant_type', input: () => ({ headers: { authorization: SUPPORT }, body: 'scope=kb:articles.read' }), status: 400, error: 'invalid_request' },
  { name: 'password grant', input: () => ({ headers: { authorization: SUPPORT }, body: 'grant_type=password&username=a&password=b' }), status: 400, error: 'unsupported_grant_type' },
  { name: 'no client authentication', input: () => ({ body: 'grant_type=client_credentials' }), status: 401, error: 'invalid_client' },
  { name: 'wrong secret', input: () => ({ headers: { authorization: basic('data-agent-01', 'ags_wrong') }, body: 'grant_type=client_credentials' }), status: 401, error: 'invalid_client' },
  { name: 'unknown client', input: () => ({ headers: { authorization: basic('nobody', support.clientSecret) }, body: 'grant_type=client_credentials' }), status: 401, error: 'invalid_client' },
  { name: "another agent's secret", input: () => ({ headers: { authorization: basic('data-agent-01', support.clientSecret) }, body: 'grant_type=client_credentials' }), status: 401, error: 'invalid_client' },
  { name: 'Basic without a colon', input: () => ({ headers: { authorization: `Basic ${Buffer.from('support-agent-01').toString('base64')}` }, body: 'grant_type=client_credentials' }), status: 401, error: 'invalid_client' },
  { name: 'Basic that is not base64', input: () => ({ headers: { authorization: 'Basic !!!' }, body: 'grant_type=client_credentials' }), status: 401, error: 'invalid_client' },
  { name: 'a Bearer token as client authentication', input: () => ({ headers: { authorization: 'Bearer abc' }, body: 'grant_type=client_credentials' }), status: 401, error: 'invalid_client' },
  { name: 'client_secret_post', input: () => ({ body: `grant_type=client_credentials&client_id=support-agent-01&client_secret=${support.clientSecret}` }), status: 401, error: 'invalid_client' },
  { name: 'two authentication methods', input: async () => ({ headers: { authorization: SUPPORT }, body: `grant_type=client_credentials&client_assertion_type=${ASSERTION_TYPE}&client_assertion=${await assertion()}` }), status: 400, error: 'invalid_request' },
  { name: 'client_id that differs from Basic', input: () => ({ headers: { authorization: SUPPORT }, body: 'grant_type=client_credentials&client_id=data-agent-01' }), status: 400, error: 'invalid_request' },
  { name: 'assertion without its type', input: async () => ({ body: `grant_type=client_credentials&client_assertion=${await assertion()}` }), status: 400, error: 'invalid_request' },
  { name: 'assertion that is not a JWT', input: () => ({ body: `grant_type=client_credentials&client_assertion_type=${ASSERTION_TYPE}&client_assertion=abc.def` }), status: 401, error: 'invalid_client' },
  { name: 'assertion replayed', input: () => ({ body: `grant_type=client_credentials&client_assertion_type=${ASSERTION_TYPE}&client_assertion=${usedAssertion}` }), status: 401, error: 'invalid_client' },
  { name: 'assertion with a wrong aud', input: async () => ({ body: `grant_type=client_credentials&client_assertion_type=${ASSERTION_TYPE}&client_assertion=${await assertion({ aud: 'http://evil.example' })}` }), status: 401, error: 'invalid_client' },
  { name: 'assertion living longer than 5 minutes', input: async () => ({ body: `grant_type=client_credentials&client_assertion_type=${ASSERTION_TYPE}&client_assertion=${await assertion({ exp: Math.floor(clock.now() / 1000) + 3600 })}` }), status: 401, error: 'invalid_client' },
  { name: 'expired assertion', input: async () => ({ body: `grant_type=client_credentials&client_assertion_type=${ASSERTION_TYPE}&client_assertion=${await assertion({ iat: Math.floor(clock.now() / 1000) - 200, exp: Math.floor(clock.now() / 1000) - 100 })}` }), status: 401, error: 'invalid_client' },
  { name: 'assertion with iss not the client', input: async () => ({ body: `grant_type=client_credentials&client_assertion_type=${ASSERTION_TYPE}&client_assertion=${await assertion({ iss: 'support-agent-01' })}` }), status: 401, error: 'invalid_client' },
  { name: 'assertion signed by another key', input: async () => ({ body: `grant_type=client_credentials&client_assertion_type=${ASSERTION_TYPE}&client_assertion=${await assertion({}, stranger.privateKey)}` }), status: 401, error: 'invalid_client' },
  { name: 'assertion for an agent with no pinned key', input: async () => ({ body: `grant_type=client_credentials&client_assertion_type=${ASSERTION_TYPE}&client_assertion=${await assertion({ iss: 'data-agent-01', sub: 'data-agent-01' })}` }), status: 401, error: 'invalid_client' },
  { name: 'scope beyond the role', input: () => ({ headers: { authorization: SUPPORT }, body: 'grant_type=client_credentials&scope=tickets:config.write' }), status: 400, error: 'invalid_scope', match: /does not grant/ },
  { name: 'scope of another backend', input: () => ({ headers: { authorization: SUPPORT }, body: 'grant_type=client_credentials&scope=crm:export' }), status: 400, error: 'invalid_scope' },
  { name: 'scope with bad characters', input: () => ({ headers: { authorization: SUPPORT }, body: 'grant_type=client_credentials&scope=%22kb%22' }), status: 400, error: 'invalid_scope' },
  { name: 'exchange without a subject token', input: () => ({ headers: { authorization: DELEGATE }, body: `grant_type=${EXCHANGE}` }), status: 400, error: 'invalid_request' },
  { name: 'exchange with an unknown subject token type', input: async () => ({ headers: { authorization: DELEGATE }, body: `grant_type=${EXCHANGE}&subject_token=${await users.userToken('alice', { groups: ['sales'] })}&subject_token_type=urn:x` }), status: 400, error: 'invalid_request' },
  { name: 'exchange with an untrusted issuer', input: async () => ({ headers: { authorization: DELEGATE }, body: `grant_type=${EXCHANGE}&subject_token_type=${JWT_TYPE}&subject_token=${await new SignJWT({ groups: ['sales'] }).setProtectedHeader({ alg: 'EdDSA' }).setIssuer('http://evil.example/').setSubject('alice').setExpirationTime('5m').sign(stranger.privateKey)}` }), status: 400, error: 'invalid_grant' },
  { name: 'exchange with an expired user token', input: async () => ({ headers: { authorization: DELEGATE }, body: `grant_type=${EXCHANGE}&subject_token_type=${JWT_TYPE}&subject_token=${await users.userToken('alice', { groups: ['sales'] }, { expiresIn: '-2m' })}` }), status: 400, error: 'invalid_grant' },
  { name: 'exchange with a garbage subject token', input: () => ({ headers: { authorization: DELEGATE }, body: `grant_type=${EXCHANGE}&subject_token_type=${JWT_TYPE}&subject_token=x.y.z` }), status: 400, error: 'invalid_grant' },
  { name: "exchange with an agent's own (non-delegated) token as subject", input: async () => ({ headers: { authorization: DELEGATE }, body: `grant_type=${EXCHANGE}&subject_token_type=${JWT_TYPE}&subject_token=${await gw.token('delegate-agent-02')}` }), status: 400, error: 'invalid_grant' },
  { name: 'delegated token wider than its user', input: async () => ({ headers: { authorization: DELEGATE }, body: `grant_type=${EXCHANGE}&subject_token_type=${JWT_TYPE}&scope=crm:export&subject_token=${await users.userToken('alice', { groups: ['sales'] })}` }), status: 400, error: 'invalid_scope', match: /user may not/ },
  { name: 'delegation for a user with no common right', input: async () => ({ headers: { authorization: DELEGATE }, body: `grant_type=${EXCHANGE}&subject_token_type=${JWT_TYPE}&subject_token=${await users.userToken('bob', { groups: ['support'] })}` }), status: 400, error: 'invalid_scope' },
  { name: 'delegation by a role that forbids it twice over', input: async () => ({ headers: { authorization: SUPPORT }, body: `grant_type=${EXCHANGE}&subject_token_type=${JWT_TYPE}&subject_token=${await users.userToken('bob', { groups: ['support'], act: { sub: 'other-agent' } })}` }), status: 400, error: 'invalid_grant', match: /deep/ },
  { name: 'exchange with an actor token of another client', input: async () => ({ headers: { authorization: DELEGATE }, body: `grant_type=${EXCHANGE}&subject_token_type=${JWT_TYPE}&subject_token=${await users.userToken('alice', { groups: ['sales'] })}&actor_token_type=urn:ietf:params:oauth:token-type:access_token&actor_token=${await gw.token('delegate-agent-02')}` }), status: 400, error: 'invalid_request' },
  { name: 'introspection without client authentication', input: () => ({ path: '/oauth/introspect', body: 'token=abc' }), status: 401, error: 'invalid_client' },
  { name: 'introspection without a token', input: () => ({ path: '/oauth/introspect', headers: { authorization: SUPPORT }, body: 'token_type_hint=access_token' }), status: 400, error: 'invalid_request' },
  { name: 'revocation without client authentication', input: () => ({ path: '/oauth/revoke', body: 'token=abc' }), status: 401, error: 'invalid_client' },
  { name: "revoking another agent's token", input: async () => ({ path: '/oauth/revoke', headers: { authorization: SUPPORT }, body: `token=${await gw.token('data-agent-01')}` }), status: 400, error: 'unauthorized_client' },
];

t.before(async () => {
  // Spend the assertion the replay case sends again.
  const first = await call({ body: `grant_type=client_credentials&client_assertion_type=${ASSERTION_TYPE}&client_assertion=${usedAssertion}` });
  t.equal(first.status, 200, 'the assertion is accepted once');
});

for (const c of cases) {
  t.test(c.name, async (t) => {
    const res = await call(await c.input());
    t.equal(res.status, c.status);
    t.equal(res.json.error, c.error);
    const spec: { statuses: readonly number[] } | undefined = (OAUTH_ERRORS as Record<string, { statuses: readonly number[] }>)[c.error];
    t.ok(spec?.statuses.includes(c.status), `${c.status} is a status the catalog lists for ${c.error}`);
    t.type(res.json.error_description, 'string');
    t.match(String(res.json.error_description), /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/, 'RFC 6749 §5.2 characters only');
    if (c.match !== undefined) t.match(String(res.json.error_description), c.match);
    t.equal(res.headers['cache-control'], 'no-store');
    if (c.status === 401) t.match(res.headers['www-authenticate'], /^Basic realm="agentgate"/);
  });
}

t.test('broker paths outside the endpoints answer catalog errors too', async (t) => {
  const answers = [
    { name: 'an unknown /oauth/ path', res: await call({ path: '/oauth/authorize', method: 'GET' }), status: 404 },
    { name: 'an unknown /.well-known/ path', res: await call({ path: '/.well-known/openid-configuration', method: 'GET' }), status: 404 },
    { name: 'POST on the JWKS', res: await call({ path: '/.well-known/jwks.json', body: 'x=1' }), status: 405, allow: 'GET, HEAD' },
  ];
  for (const a of answers) {
    t.equal(a.res.status, a.status, a.name);
    t.equal(a.res.json.error, 'invalid_request', a.name);
    t.ok((OAUTH_ERRORS.invalid_request.statuses as readonly number[]).includes(a.status), `${a.name}: a catalog status`);
    t.equal(a.res.headers['cache-control'], 'no-store', a.name);
    if (a.allow !== undefined) t.equal(a.res.headers.allow, a.allow, `${a.name}: Allow`);
  }
});

t.test('the gateway keeps serving, and every refusal was audited', async (t) => {
  const ok = await call({ headers: { authorization: SUPPORT }, body: 'grant_type=client_credentials' });
  t.equal(ok.status, 200);
  const lines = (await gw.auditLines()).filter((l) => l.kind === 'broker');
  const denied = lines.filter((l) => l.decision === 'deny');
  t.ok(denied.length >= cases.length - 1, `${denied.length} refusals audited`);
  t.ok(denied.some((l) => l.reasonDetail === 'assertion_replayed'));
  t.ok(denied.some((l) => l.reasonDetail === 'assertion_aud'));
  t.ok(denied.some((l) => l.reasonDetail === 'beyond_user' && l.onBehalfOf === 'alice'));
  t.notOk(JSON.stringify(lines).includes(support.clientSecret));
});

t.test('failed client authentications are rate-limited per client', async (t) => {
  const issued = await gw.gateway.credentials.issue('data-agent-01');
  for (let i = 0; i < 10; i++) await call({ headers: { authorization: basic('data-agent-01', `ags_guess${i}`) }, body: 'grant_type=client_credentials' });
  const limited = await call({ headers: { authorization: basic('data-agent-01', issued.clientSecret) }, body: 'grant_type=client_credentials' });
  t.equal(limited.status, 429);
  t.equal(limited.json.error, 'invalid_client');
  t.ok(Number(limited.headers['retry-after']) >= 1);
  // Other clients are unaffected.
  t.equal((await call({ headers: { authorization: SUPPORT }, body: 'grant_type=client_credentials' })).status, 200);
});

t.test('rotation: the old secret works for the overlap, then not; a credential past the role rotation period is refused', async (t) => {
  const first = await gw.gateway.credentials.issue('support-agent-01');
  const second = await gw.gateway.credentials.rotate('support-agent-01', 10 * 60_000);
  const tokenWith = (secret: string) => call({ headers: { authorization: basic('support-agent-01', secret) }, body: 'grant_type=client_credentials' });
  t.equal((await tokenWith(first.clientSecret)).status, 200, 'old secret inside the overlap');
  t.equal((await tokenWith(second.clientSecret)).status, 200, 'new secret');
  t.match(gw.gateway.credentials.list('support-agent-01'), [{ status: 'retiring' }]);
  offsetMs += 11 * 60_000;
  const old = await tokenWith(first.clientSecret);
  t.equal(old.status, 401, 'old secret after the overlap');
  t.equal(old.json.error, 'invalid_client');
  t.equal((await tokenWith(second.clientSecret)).status, 200);
  // support rotates every 24h: a day later the (never rotated) secret is refused with a hint.
  offsetMs += 24 * 3_600_000;
  const stale = await tokenWith(second.clientSecret);
  t.equal(stale.status, 401);
  t.equal(stale.json.error, 'invalid_client');
  t.match(String(stale.json.error_description), /agentgate credentials rotate support-agent-01/);
  const fresh = await gw.gateway.credentials.rotate('support-agent-01', 0);
  t.equal((await tokenWith(fresh.clientSecret)).status, 200, 'a rotated secret works again');
});
