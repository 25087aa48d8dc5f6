// What Prometheus sees: exact counters after a scripted sequence, a valid exposition, health and
// readiness, and a series count that hostile traffic (random agents, paths, backends) cannot grow.
import t from 'tap';
import { randomBytes, randomUUID } from 'node:crypto';
import { Pool, request } from 'undici';
import { issueAgentToken } from '../../gateway/broker/issue.js';
import { startGateway, startUpstream, type StartedGateway } from '../helpers/gateway.js';
import { parseExposition, seriesKey, sumOf, type Exposition } from '../helpers/prom.js';
import { closedPort } from '../helpers/root.js';

async function scrape(gw: StartedGateway): Promise<Exposition> {
  const res = await request(`${gw.metricsUrl}/metrics`);
  if (res.statusCode !== 200) throw new Error(`metrics answered ${res.statusCode}`);
  return parseExposition(await res.body.text());
}

function b64(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

t.test('metrics', async (t) => {
  const crm = await startUpstream(t);
  const tickets = await startUpstream(t);
  const down = await closedPort();
  const dir = t.testdir({
    policies: {
      'p.yaml': [
        'backends:',
        '  crm:',
        `    upstream: ${crm.url}`,
        '    scopes:',
        '      read: ["GET /contacts", "GET /contacts/:id"]',
        '      export: ["GET /export"]',
        '  tickets:',
        `    upstream: ${tickets.url}`,
        '    scopes:',
        '      read: ["GET /tickets"]',
        '  down:',
        `    upstream: http://127.0.0.1:${down}`,
        '    scopes:',
        '      read: ["GET /x"]',
        'roles:',
        '  reader:',
        '    grants: [crm:read, down:read]',
        '    breaker: { violations: 3, window: 5m, cooldown: 10m }',
        '  other:',
        '    grants: [tickets:read]',
        'agents:',
        '  reader-01: { role: reader, owner: test }',
        '  other-01: { role: other, owner: test }',
        '',
      ].join('\n'),
    },
  });
  const gw = await startGateway(t, { policies: `${dir}/policies` });
  const reader = await gw.token('reader-01');
  const other = await gw.token('other-01');
  const call = async (path: string, token: string | null): Promise<number> => {
    const res = await request(`${gw.url}${path}`, { headers: token === null ? {} : { authorization: `Bearer ${token}` } });
    await res.body.dump();
    return res.statusCode;
  };

  await t.test('a scripted sequence gives exact counter values', async (t) => {
    const script: Array<[string, string | null, number]> = [
      ['/crm/contacts', reader, 200],
      ['/crm/contacts/7', reader, 200],
      ['/crm/export', reader, 403], // out_of_scope, violation 1
      ['/tickets/tickets', reader, 403], // cross_domain, violation 2
      ['/crm/contacts', null, 401], // token_missing
      ['/crm/contacts', 'not.a.token', 401], // token_invalid
      ['/down/x', reader, 502], // upstream_unavailable
      ['/crm/nothing', reader, 403], // unknown_route, violation 3: the breaker opens
      ['/crm/contacts', reader, 403], // agent_suspended
      ['/tickets/tickets', other, 200],
    ];
    for (const [path, token, status] of script) t.equal(await call(path, token), status, `${path} -> ${status}`);

    // A trip is counted once it is durable (state file fsync), a moment after the refusal that caused it.
    let m = await scrape(gw);
    for (let i = 0; i < 50 && !m.samples.has(seriesKey('agentgate_breaker_trips_total', { agent: 'reader-01' })); i++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      m = await scrape(gw);
    }
    const requests = (backend: string, decision: string, reason: string) =>
      m.samples.get(seriesKey('agentgate_requests_total', { backend, decision, reason }));
    t.equal(requests('crm', 'allow', 'none'), 2);
    t.equal(requests('crm', 'deny', 'out_of_scope'), 1);
    t.equal(requests('tickets', 'deny', 'cross_domain'), 1);
    t.equal(requests('crm', 'deny', 'token_missing'), 1);
    t.equal(requests('crm', 'deny', 'token_invalid'), 1);
    t.equal(requests('down', 'deny', 'upstream_unavailable'), 1);
    t.equal(requests('crm', 'deny', 'unknown_route'), 1);
    t.equal(requests('crm', 'deny', 'agent_suspended'), 1);
    t.equal(requests('tickets', 'allow', 'none'), 1);
    t.equal(sumOf(m, 'agentgate_requests_total'), script.length, 'one count per request, nothing else');

    const violations = (reason: string) => m.samples.get(seriesKey('agentgate_violations_total', { agent: 'reader-01', role: 'reader', reason }));
    t.equal(violations('out_of_scope'), 1);
    t.equal(violations('cross_domain'), 1);
    t.equal(violations('unknown_route'), 1);
    t.equal(sumOf(m, 'agentgate_violations_total'), 3, 'refusals without a valid token are not violations');
    t.equal(m.samples.get(seriesKey('agentgate_breaker_trips_total', { agent: 'reader-01' })), 1);
    t.equal(m.samples.get(seriesKey('agentgate_breaker_state', { agent: 'reader-01' })), 2, 'open');
    t.equal(m.samples.get(seriesKey('agentgate_breaker_state', { agent: 'other-01' })), 0, 'closed');
    t.equal(sumOf(m, 'agentgate_agent_killed'), 0);
    t.equal(m.samples.get(seriesKey('agentgate_upstream_errors_total', { backend: 'down', kind: 'connect' })), 1);
    t.equal(m.samples.get(seriesKey('agentgate_request_duration_seconds_count', { backend: 'crm' })), 7);
    t.equal(m.samples.get('agentgate_overhead_seconds_count'), script.length);
    t.equal(m.types.get('agentgate_overhead_seconds'), 'histogram');
    t.ok(m.samples.has(seriesKey('agentgate_overhead_seconds_bucket', { le: '0.0001' })), 'sub-millisecond buckets');
    t.equal(crm.seen.length, 2, 'refused calls never reached the backend');
    t.equal(tickets.seen.length, 1);
  });

  await t.test('health, readiness and methods of the metrics port', async (t) => {
    const health = await request(`${gw.metricsUrl}/healthz`);
    t.equal(health.statusCode, 200);
    t.same(await health.body.json(), { status: 'ok' });
    const ready = await request(`${gw.metricsUrl}/readyz`);
    t.equal(ready.statusCode, 200);
    t.match(await ready.body.json(), { status: 'ready', state: 'ok', keys: Number });
    const post = await request(`${gw.metricsUrl}/metrics`, { method: 'POST', body: 'x' });
    t.equal(post.statusCode, 405);
    await post.body.dump();
    const missing = await request(`${gw.metricsUrl}/nope`);
    t.equal(missing.statusCode, 404);
    await missing.body.dump();
  });

  await t.test('10,000 hostile requests add no series', async (t) => {
    const pool = new Pool(gw.url, { connections: 16, pipelining: 1 });
    t.teardown(() => pool.close());
    const backends = ['crm', 'tickets', 'down', 'nope', randomUUID()];
    const hostile = async (i: number): Promise<number> => {
      const agent = `agent-${randomBytes(6).toString('hex')}`;
      let token: string;
      switch (i % 4) {
        case 0: // validly signed by the gateway's own key, for an agent no policy names
          token = (await issueAgentToken(gw.gateway.keys, 'http://agentgate.test', { agent, role: 'reader', scopes: ['crm:read'], audience: ['crm'], ttlSeconds: 60, subject: agent, act: null, sid: randomUUID() }, { now: () => Date.now() })).token;
          break;
        case 1: // forged: unknown key, random agent
          token = `${b64({ alg: 'EdDSA', typ: 'at+jwt', kid: randomUUID() })}.${b64({ sub: agent, client_id: agent, iss: 'http://agentgate.test' })}.${randomBytes(64).toString('base64url')}`;
          break;
        case 2:
          token = randomBytes(24).toString('hex');
          break;
        default:
          token = '';
      }
      const backend = backends[i % backends.length] ?? 'crm';
      const path = `/${backend}/${randomBytes(4).toString('hex')}/${i}?q=${randomUUID()}`;
      const res = await pool.request({ method: i % 7 === 0 ? 'POST' : 'GET', path, headers: token === '' ? {} : { authorization: `Bearer ${token}` }, body: i % 7 === 0 ? '{}' : null });
      await res.body.dump();
      return res.statusCode;
    };
    const run = async (from: number, to: number): Promise<number[]> => {
      const statuses: number[] = [];
      const workers = Array.from({ length: 32 }, async (_, w) => {
        for (let i = from + w; i < to; i += 32) statuses.push(await hostile(i));
      });
      await Promise.all(workers);
      return statuses;
    };
    // Warm-up: every (backend, reason) pair the hostile mix can reach appears once.
    await run(0, 200);
    const before = await scrape(gw);
    const statuses = await run(200, 10_200);
    const after = await scrape(gw);
    t.equal(statuses.length, 10_000);
    t.ok(statuses.every((s) => s === 401 || s === 404), 'every hostile request refused before any backend');
    t.same([...after.samples.keys()].sort(), [...before.samples.keys()].sort(), 'the same series, no new ones');
    t.ok(before.samples.size < 400, `series stay few (${before.samples.size})`);
    t.equal(sumOf(after, 'agentgate_requests_total') - sumOf(before, 'agentgate_requests_total'), 10_000, 'every request counted');
    t.equal(sumOf(after, 'agentgate_violations_total'), sumOf(before, 'agentgate_violations_total'), 'no violations charged to anyone');
    t.notMatch([...after.samples.keys()].join('\n'), /agent-[0-9a-f]{12}/, 'no hostile agent name in any label');
  });
});
