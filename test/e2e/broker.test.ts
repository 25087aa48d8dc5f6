// End to end through the broker and the proxy: a token from /oauth/token calls a backend, is
// revoked and is refused on the very next call; maxUses is exact under concurrency; session
// single ends on a newer session, on revocation and when idle; delegation chains keep `act`;
// jose's remote JWKS verifies our tokens across a key rotation; a trusted issuer's rotation is
// followed with one refetch.
import t from 'tap';
import { createRemoteJWKSet, decodeJwt, jwtVerify } from 'jose';
import { request } from 'undici';
import { startGateway, startUpstream } from '../helpers/gateway.js';
import { brokerPolicies, clientKey, startUserIssuer } from '../helpers/broker.js';

const key = await clientKey();
const users = await startUserIssuer(t);
const crm = await startUpstream(t);
const policies = await brokerPolicies(t.testdirName, key.publicJwk, { maxUses: 5, idleTimeout: '1m' });
let offsetMs = 0;
const clock = { now: () => Date.now() + offsetMs };
const gw = await startGateway(t, { policies, clock, upstreams: { crm: crm.url, content: crm.url }, trust: [{ issuer: users.issuer, jwksUri: users.jwksUri }] });
const FORM = { 'content-type': 'application/x-www-form-urlencoded' };

async function secretFor(agent: string): Promise<string> {
  const issued = await gw.gateway.credentials.issue(agent);
  return `Basic ${Buffer.from(`${agent}:${issued.clientSecret}`).toString('base64')}`;
}

async function post(path: string, authorization: string, body: string): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await request(`${gw.url}${path}`, { method: 'POST', headers: { ...FORM, authorization }, body });
  const text = await res.body.text();
  return { status: res.statusCode, json: text === '' ? {} : (JSON.parse(text) as Record<string, unknown>) };
}

async function tokenOf(authorization: string, body = 'grant_type=client_credentials'): Promise<string> {
  const res = await post('/oauth/token', authorization, body);
  if (res.status !== 200) throw new Error(`token refused: ${JSON.stringify(res.json)}`);
  return String(res.json.access_token);
}

async function get(path: string, token: string): Promise<{ status: number; challenge: string | undefined }> {
  const res = await request(`${gw.url}${path}`, { headers: { authorization: `Bearer ${token}` } });
  await res.body.dump();
  return { status: res.statusCode, challenge: res.headers['www-authenticate'] as string | undefined };
}

t.test('token from the broker -> call -> revoke -> the next call is 401', async (t) => {
  const client = await secretFor('marketing-agent-03');
  const token = await tokenOf(client);
  t.equal((await get('/crm/contacts', token)).status, 200);
  t.equal(crm.seen.at(-1)?.headers['x-agentgate-agent'], 'marketing-agent-03');
  t.equal((await post('/oauth/revoke', client, `token=${token}`)).status, 200);
  const after = await get('/crm/contacts', token);
  t.equal(after.status, 401);
  t.match(after.challenge, /error="invalid_token"/);
  const metrics = await (await fetch(`${gw.metricsUrl}/metrics`)).text();
  t.match(metrics, /agentgate_tokens_issued_total\{role="marketing",grant_type="client_credentials"\} [1-9]/);
  t.match(metrics, /agentgate_tokens_revoked_total [1-9]/);
  // Each POST answer is timed from arrival to the answer (its audit line written first).
  t.match(metrics, /agentgate_broker_duration_seconds_count\{endpoint="token",decision="allow"\} [1-9]/);
  t.match(metrics, /agentgate_broker_duration_seconds_count\{endpoint="revoke",decision="allow"\} [1-9]/);
  t.match(metrics, /agentgate_broker_duration_seconds_bucket\{le="0\.002",endpoint="token",decision="allow"\} \d+/, 'a bucket at the 2 ms issuance bar');
  const wrong = await post('/oauth/token', `Basic ${Buffer.from('marketing-agent-03:not-the-secret').toString('base64')}`, 'grant_type=client_credentials');
  t.equal(wrong.status, 401);
  const after2 = await (await fetch(`${gw.metricsUrl}/metrics`)).text();
  t.match(after2, /agentgate_broker_duration_seconds_count\{endpoint="token",decision="deny"\} [1-9]/, 'refusals are timed too');
  const lines = await gw.auditLines();
  const refused = lines.filter((l) => l.kind !== 'broker' && l.reason === 'token_invalid');
  t.ok(refused.length >= 1);
});

t.test('maxUses is exact under concurrent calls: N succeed, never N+1', async (t) => {
  const client = await secretFor('metered-agent-01');
  for (const round of [1, 2, 3]) {
    const token = await tokenOf(client);
    const results = await Promise.all(Array.from({ length: 20 }, () => get('/crm/contacts', token)));
    const ok = results.filter((r) => r.status === 200).length;
    const spent = results.filter((r) => r.status === 401).length;
    t.equal(ok, 5, `round ${round}: exactly maxUses calls pass`);
    t.equal(spent, 15, `round ${round}: the rest are 401`);
    t.same(await post('/oauth/introspect', client, `token=${token}`).then((r) => r.json), { active: false }, 'a spent token introspects inactive');
  }
});

t.test('session single: a newer session ends the older; revocation and idleness end it too', async (t) => {
  const client = await secretFor('single-agent-01');
  const first = await tokenOf(client);
  t.equal((await get('/crm/contacts', first)).status, 200);
  const second = await tokenOf(client);
  t.not(decodeJwt(first).sid, decodeJwt(second).sid);
  t.equal((await get('/crm/contacts', first)).status, 401, 'the older session ended');
  t.equal((await get('/crm/contacts', second)).status, 200, 'the new one works');

  // Idle for longer than idleTimeout (1m): ended, and a new token must be requested.
  offsetMs += 61_000;
  t.equal((await get('/crm/contacts', second)).status, 401, 'idle session ended');
  t.equal((await get('/crm/contacts', second)).status, 401, 'and stays ended');
  const third = await tokenOf(client);
  t.equal((await get('/crm/contacts', third)).status, 200);
  offsetMs += 30_000;
  t.equal((await get('/crm/contacts', third)).status, 200, 'activity inside the idle window keeps it alive');
  offsetMs += 30_000;
  t.equal((await get('/crm/contacts', third)).status, 200);
  t.equal((await post('/oauth/revoke', client, `token=${third}`)).status, 200);
  t.equal((await get('/crm/contacts', third)).status, 401, 'revoked session ended');
  const lines = (await gw.auditLines()).filter((l) => l.reason === 'token_invalid');
  t.ok(lines.some((l) => l.reasonDetail === 'session_idle'));
  t.ok(lines.some((l) => l.reasonDetail === 'session_ended'));
});

t.test('delegation: the chain is kept, narrowed, and limited by maxDelegationDepth', async (t) => {
  const first = await secretFor('delegate-agent-01');
  const second = await secretFor('delegate-agent-02');
  const user = await users.userToken('carol', { groups: 'sales' });
  const exchange = (subject: string, scope?: string) => `grant_type=urn:ietf:params:oauth:grant-type:token-exchange&subject_token_type=urn:ietf:params:oauth:token-type:jwt&subject_token=${subject}${scope === undefined ? '' : `&scope=${scope}`}`;
  const hop1 = await post('/oauth/token', first, exchange(user, 'crm:contacts.read'));
  t.equal(hop1.status, 200);
  const hop1Token = String(hop1.json.access_token);
  t.match(decodeJwt(hop1Token), { sub: 'carol', act: { sub: 'delegate-agent-01' }, scope: 'crm:contacts.read' });
  t.equal((await get('/crm/contacts', hop1Token)).status, 200);
  t.equal(crm.seen.at(-1)?.headers['x-agentgate-agent'], 'delegate-agent-01');
  t.equal((await get('/content/assets', hop1Token)).status, 403, 'narrowed to what was asked');

  // The second agent takes the delegated token further: never wider than hop 1.
  const wider = await post('/oauth/token', second, exchange(hop1Token, 'content:assets.read'));
  t.equal(wider.status, 400);
  t.equal(wider.json.error, 'invalid_scope');
  const hop2 = await post('/oauth/token', second, exchange(hop1Token));
  t.equal(hop2.status, 200);
  t.match(decodeJwt(String(hop2.json.access_token)), { sub: 'carol', client_id: 'delegate-agent-02', act: { sub: 'delegate-agent-02', act: { sub: 'delegate-agent-01' } }, scope: 'crm:contacts.read' });
  // A third hop would be 3 deep; the role allows 2.
  const hop3 = await post('/oauth/token', first, exchange(String(hop2.json.access_token)));
  t.equal(hop3.status, 400);
  t.equal(hop3.json.error, 'invalid_grant');

  // The agent may name itself with its own access token (actor_token) instead of client authentication.
  const own = await tokenOf(first);
  const res = await request(`${gw.url}/oauth/token`, {
    method: 'POST',
    headers: FORM,
    body: `${exchange(user)}&actor_token_type=urn:ietf:params:oauth:token-type:access_token&actor_token=${own}`,
  });
  const body = (await res.body.json()) as Record<string, unknown>;
  t.equal(res.statusCode, 200);
  t.match(decodeJwt(String(body.access_token)), { sub: 'carol', act: { sub: 'delegate-agent-01' } });
});

t.test("a trusted issuer's key rotation is followed with one refetch", async (t) => {
  const client = await secretFor('delegate-agent-01');
  const exchange = (subject: string) => `grant_type=urn:ietf:params:oauth:grant-type:token-exchange&subject_token_type=urn:ietf:params:oauth:token-type:jwt&subject_token=${subject}`;
  t.equal((await post('/oauth/token', client, exchange(await users.userToken('dave', { groups: ['sales'] })))).status, 200);
  const before = users.fetches();
  await users.rotate();
  t.equal((await post('/oauth/token', client, exchange(await users.userToken('dave', { groups: ['sales'] })))).status, 200, 'new kid: fetched again');
  t.equal(users.fetches(), before + 1);
  // Made-up kids do not make us fetch again and again.
  for (let i = 0; i < 5; i++) {
    const res = await post('/oauth/token', client, exchange(await users.userToken('dave', { groups: ['sales'] }, { kid: `bogus-${i}` })));
    t.equal(res.json.error, 'invalid_grant');
  }
  t.equal(users.fetches(), before + 1, 'no refetch storm');
});

t.test("jose's createRemoteJWKSet verifies issued tokens before and after a key rotation", async (t) => {
  const client = await secretFor('support-agent-01');
  const before = await tokenOf(client);
  const oldKid = gw.gateway.keys.current().kid;
  // A scheduled rotation publishes the next key 10 minutes before it signs.
  const newKid = await gw.gateway.keys.rotate({ activateInMs: 10 * 60_000 });
  t.equal(gw.gateway.keys.current().kid, oldKid, 'published, not yet signing');
  const jwks = createRemoteJWKSet(new URL(`${gw.url}/.well-known/jwks.json`));
  const options = () => ({ issuer: 'http://agentgate.test', typ: 'at+jwt', currentDate: new Date(clock.now()) });
  t.equal((await jwtVerify(before, jwks, options())).payload.client_id, 'support-agent-01');
  t.ok(jwks.jwks()?.keys.some((k) => k.kid === newKid), 'the client already holds the next key');

  offsetMs += 10 * 60_000 + 1000;
  t.equal(gw.gateway.keys.current().kid, newKid, 'the new key signs now');
  const after = await tokenOf(client);
  t.equal(decodeJwt(after).client_id, 'support-agent-01');
  t.equal((await jwtVerify(after, jwks, options())).payload.client_id, 'support-agent-01', 'verified with the cached JWKS');
  t.equal((await jwtVerify(before, jwks, options())).payload.client_id, 'support-agent-01', 'the old key is still published');
  const published = (await (await fetch(`${gw.url}/.well-known/jwks.json`)).json()) as { keys: Array<{ kid: string; d?: string }> };
  t.same(published.keys.map((k) => k.kid).sort(), [oldKid, newKid].sort());
  t.notOk(published.keys.some((k) => k.d !== undefined), 'public keys only');
  t.not((await get('/kb/articles', before)).status, 401, 'tokens of the old key still pass the proxy');

  // A forced rotation (agentgate keys rotate) signs at once; a fresh client verifies it.
  const forced = await gw.gateway.rotateKeys();
  const forcedToken = await tokenOf(client);
  t.equal(decodeJwt(forcedToken).client_id, 'support-agent-01');
  const fresh = createRemoteJWKSet(new URL(`${gw.url}/.well-known/jwks.json`));
  t.equal((await jwtVerify(forcedToken, fresh, options())).protectedHeader.kid, forced);

  // Once every token of a superseded key has expired (24h + skew), it leaves the JWKS.
  offsetMs += 25 * 3_600_000;
  const removed = await gw.gateway.keys.retire(24 * 3_600_000 + 60_000);
  t.same(removed.sort(), [oldKid, newKid].sort());
  t.same(gw.gateway.keys.publicJwks().keys.map((k) => k.kid), [forced]);
});
