// Rate limits through the real gateway on loopback, on an injected clock: 429 rate_limited with
// Retry-After and the IETF RateLimit-Policy / RateLimit fields, per agent and per scope, the
// backend never sees a refused call, the metric and the audit line move, and a refusal is not a
// violation unless the role says so.
import t from 'tap';
import { request } from 'undici';
import { startGateway, startUpstream } from '../helpers/gateway.js';
import { parseExposition, sumOf } from '../helpers/prom.js';

const POLICY = (upstream: string) =>
  [
    'defaults:',
    '  breaker: { violations: 3, window: 1m, cooldown: 5m }',
    '  rateLimit: { rps: 1, burst: 3 }',
    'backends:',
    '  svc:',
    `    upstream: ${upstream}`,
    '    scopes:',
    '      read: ["GET /items"]',
    '      write: ["POST /items"]',
    'roles:',
    '  reader:',
    '    grants: [svc:read, svc:write]',
    '    rateLimit: { scopes: { "svc:write": { rps: 0.5, burst: 1 } } }',
    '  strict:',
    '    grants: [svc:read]',
    '    rateLimit: { rps: 1, burst: 1, violation: true }',
    '  free:',
    '    grants: [svc:read]',
    '    rateLimit: off',
    'agents:',
    '  reader-01: { role: reader, owner: test }',
    '  reader-02: { role: reader, owner: test }',
    '  strict-01: { role: strict, owner: test }',
    '  free-01: { role: free, owner: test }',
    '',
  ].join('\n');

t.test('rate limits per agent and per scope', async (t) => {
  const upstream = await startUpstream(t);
  const dir = t.testdir({ policies: { 'p.yaml': POLICY(upstream.url) } });
  let now = Date.now();
  const clock = { now: () => now };
  const gw = await startGateway(t, { policies: `${dir}/policies`, clock });
  const tokens = Object.fromEntries(await Promise.all(['reader-01', 'reader-02', 'strict-01', 'free-01'].map(async (a) => [a, await gw.token(a)] as const)));
  const call = async (agent: string, method: 'GET' | 'POST' = 'GET') => {
    const res = await request(`${gw.url}/svc/items`, { method, headers: { authorization: `Bearer ${tokens[agent] ?? ''}` } });
    const text = await res.body.text();
    return { status: res.statusCode, headers: res.headers, type: res.statusCode >= 400 ? (JSON.parse(text) as { type: string }).type.replace('urn:agentgate:problem:', '') : null };
  };
  const metrics = async () => parseExposition(await (await request(`${gw.metricsUrl}/metrics`)).body.text());

  await t.test('a burst passes with the fields, then 429 with Retry-After', async (t) => {
    const seen = upstream.seen.length;
    const answers = [];
    for (let i = 0; i < 5; i++) answers.push(await call('reader-01'));
    t.same(answers.map((a) => a.status), [200, 200, 200, 429, 429]);
    t.same(answers.map((a) => a.headers.ratelimit), ['"agent";r=2;t=1', '"agent";r=1;t=2', '"agent";r=0;t=3', '"agent";r=0;t=3', '"agent";r=0;t=3']);
    t.ok(answers.every((a) => a.headers['ratelimit-policy'] === '"agent";q=3;w=3'), 'RateLimit-Policy on every answer');
    const refused = answers[3];
    t.equal(refused?.type, 'rate_limited');
    t.equal(refused?.headers['retry-after'], '1');
    t.equal(refused?.headers['content-type'], 'application/problem+json');
    t.equal(upstream.seen.length, seen + 3, 'the backend saw only the admitted calls');
    t.same((await call('reader-02')).status, 200, 'another agent of the same role has its own bucket');
    now += 1000;
    t.same((await call('reader-01')).status, 200, 'one interval later, one more');
    t.same((await call('reader-01')).status, 429);
  });

  await t.test('a scope limit on top of the agent limit', async (t) => {
    now += 60_000;
    const answers = [await call('reader-02', 'POST'), await call('reader-02', 'POST'), await call('reader-02', 'GET')];
    t.same(answers.map((a) => a.status), [200, 429, 200], 'the second write is over svc:write; reads still pass');
    t.equal(answers[1]?.headers['ratelimit-policy'], '"svc:write";q=1;w=2');
    t.equal(answers[1]?.headers['retry-after'], '2');
    t.equal(answers[2]?.headers.ratelimit, '"agent";r=1;t=2', 'the refused write charged nothing to the agent');
  });

  await t.test('not a violation unless the role says so', async (t) => {
    const m = await metrics();
    t.equal(sumOf(m, 'agentgate_violations_total', { agent: 'reader-01' }), 0, 'reader: rate_limited never counts');
    t.equal(sumOf(m, 'agentgate_rate_limited_total', { agent: 'reader-01', role: 'reader', limit: 'agent' }), 3);
    t.equal(sumOf(m, 'agentgate_rate_limited_total', { agent: 'reader-02', limit: 'svc:write' }), 1);
    const strict = [];
    for (let i = 0; i < 5; i++) strict.push((await call('strict-01')).type);
    // Each 429 counts for the role with `violation: true`; three trip the breaker.
    t.same(strict, [null, 'rate_limited', 'rate_limited', 'rate_limited', 'agent_suspended']);
    t.equal(sumOf(await metrics(), 'agentgate_violations_total', { agent: 'strict-01', reason: 'rate_limited' }), 3);
  });

  await t.test('rateLimit: off', async (t) => {
    const answers = [];
    for (let i = 0; i < 20; i++) answers.push(await call('free-01'));
    t.ok(answers.every((a) => a.status === 200 && a.headers.ratelimit === undefined), 'no limit, no fields');
  });

  await t.test('each refusal is audited', async (t) => {
    const lines = await gw.auditLines();
    const limited = lines.filter((l) => l.reason === 'rate_limited');
    t.equal(limited.length, 3 + 1 + 3, "reader-01, reader-02 (a write), strict-01");
    t.match(limited[0], { kind: 'proxy', agent: 'reader-01', role: 'reader', decision: 'deny', status: 429, reasonDetail: 'agent limit 1/s burst 3' });
  });
});
