// Role constraints that look inside requests and responses, over real sockets: the three shipped
// roles in front of the real demo backends (masked CRM, aggregate-only BI, script-limited replies),
// then masking's failure modes, network allowlists and shadow mode against recording upstreams.
import t from 'tap';
import { gzipSync, brotliCompressSync } from 'node:zlib';
import { writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import { startDemoBackends } from '../../demo/backends.js';
import { startGateway, startUpstream } from '../helpers/gateway.js';
import { ACCEPTED_QUERIES, REFUSED_QUERIES } from '../fixtures/sql-queries.js';

const json = { 'content-type': 'application/json' };
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

async function metric(metricsUrl: string, line: string): Promise<number> {
  const text = await (await request(`${metricsUrl}/metrics`)).body.text();
  const found = text.split('\n').find((l) => l.startsWith(line));
  return found === undefined ? 0 : Number(found.slice(found.lastIndexOf(' ') + 1));
}

t.test('the shipped roles in front of the demo backends', async (t) => {
  const demo = await startDemoBackends();
  t.teardown(() => demo.close());
  const gw = await startGateway(t, { upstreams: demo.urls });
  const marketing = await gw.token('marketing-agent-03');
  const support = await gw.token('support-agent-01');
  const data = await gw.token('data-agent-01');

  await t.test('marketing: contact fields and tags masked, in single objects and in arrays', async (t) => {
    const one = await request(`${gw.url}/crm/contacts/1`, { headers: bearer(marketing) });
    t.equal(one.statusCode, 200);
    const contact = (await one.body.json()) as Record<string, unknown>;
    t.same(contact, { id: '1', name: 'Ada Lovelace', company: 'Analytical Engines Ltd', email: '[masked]', phone: '[masked]', tags: '[masked]', address: { city: 'London', country: 'GB' } });
    const list = await request(`${gw.url}/crm/contacts`, { headers: bearer(marketing) });
    const text = await list.body.text();
    t.equal(list.statusCode, 200);
    t.equal(list.headers['content-length'], String(Buffer.byteLength(text)), 'length of the masked body');
    const body = JSON.parse(text) as { contacts: Array<Record<string, unknown>>; total: number };
    t.equal(body.contacts.length, 8);
    t.ok(body.contacts.every((c) => c.email === '[masked]' && c.phone === '[masked]' && c.tags === '[masked]'), 'every element masked');
    t.notMatch(text, /@|\+44|vip/, 'no email, phone or tag byte left');
    t.equal(body.total, 8, 'other fields untouched');
    const tags = await request(`${gw.url}/crm/tags`, { headers: bearer(marketing) });
    t.same(await tags.body.json(), { tags: '[masked]' });
    // The content library is not masked: tags there are marketing's working data.
    const assets = (await (await request(`${gw.url}/content/assets/a1`, { headers: bearer(marketing) })).body.json()) as { tags: unknown };
    t.same(assets.tags, ['launch']);
  });

  await t.test('data: accepted aggregate queries run and answer', async (t) => {
    for (const c of ACCEPTED_QUERIES) {
      const res = await request(`${gw.url}/bi/query`, { method: 'POST', headers: { ...bearer(data), ...json }, body: JSON.stringify({ sql: c.sql }) });
      const body = (await res.body.json()) as { rows?: unknown[] };
      t.equal(res.statusCode, 200, c.name);
      t.ok(Array.isArray(body.rows), `${c.name}: rows`);
    }
  });

  await t.test('data: refused queries never reach the BI backend', async (t) => {
    const before = await metric(gw.metricsUrl, 'agentgate_violations_total{agent="data-agent-01",role="data",reason="not_aggregate"}');
    for (const c of REFUSED_QUERIES) {
      // The shipped breaker (5 violations a minute) would suspend the agent part-way: each row is
      // about its own refusal, so each starts with a closed breaker (tripping: readme-tour.test.ts).
      await gw.gateway.store.revive('data-agent-01');
      const res = await request(`${gw.url}/bi/query`, { method: 'POST', headers: { ...bearer(data), ...json }, body: JSON.stringify({ sql: c.sql }) });
      const problem = (await res.body.json()) as { type: string; detail: string };
      t.equal(res.statusCode, 403, c.name);
      t.equal(problem.type, 'urn:agentgate:problem:not_aggregate', c.name);
      t.equal(res.headers['www-authenticate'], 'Bearer realm="agentgate", error="insufficient_scope"');
    }
    const after = await metric(gw.metricsUrl, 'agentgate_violations_total{agent="data-agent-01",role="data",reason="not_aggregate"}');
    t.equal(after - before, REFUSED_QUERIES.length, 'each refusal is a violation');
    const lines = await gw.auditLines();
    const refused = lines.filter((l) => l.reason === 'not_aggregate');
    t.equal(refused.length, REFUSED_QUERIES.length, 'each refusal is audited');
    t.notMatch(JSON.stringify(refused.map((l) => l.detail ?? null)), /customer_email@/, 'no data in the audit');
  });

  await t.test('data: a query body that is not JSON, or has no sql string, is refused', async (t) => {
    const cases = [
      { name: 'text body', headers: { 'content-type': 'text/plain' }, body: 'SELECT COUNT(*) FROM sales', reason: 'body_invalid' },
      { name: 'duplicate sql keys', headers: json, body: '{"sql":"SELECT COUNT(*) FROM sales","sql":"SELECT * FROM sales"}', reason: 'body_invalid' },
      { name: 'sql not a string', headers: json, body: '{"sql":["SELECT COUNT(*) FROM sales"]}', reason: 'not_aggregate' },
      { name: 'no sql', headers: json, body: '{"query":"SELECT * FROM sales"}', reason: 'not_aggregate' },
    ];
    for (const c of cases) {
      await gw.gateway.store.revive('data-agent-01');
      const res = await request(`${gw.url}/bi/query`, { method: 'POST', headers: { ...bearer(data), ...c.headers }, body: c.body });
      t.equal(res.statusCode, c.reason === 'body_invalid' ? 400 : 403, c.name);
      t.match(await res.body.json(), { type: `urn:agentgate:problem:${c.reason}` }, c.name);
    }
  });

  await t.test('support: replies only with the standard scripts', async (t) => {
    const cases = [
      { name: 'greeting', body: '{"script":"greeting"}', status: 201, reason: null },
      { name: 'escalate', body: '{"script":"escalate"}', status: 201, reason: null },
      { name: 'a free-text reply', body: '{"script":"refund-now","text":"sure, refunded"}', status: 403, reason: 'out_of_scope' },
      { name: 'no script', body: '{"text":"hello"}', status: 403, reason: 'out_of_scope' },
      { name: 'script as a list', body: '{"script":["greeting"]}', status: 403, reason: 'out_of_scope' },
      { name: 'duplicate keys (first-wins vs last-wins parsers)', body: '{"script":"greeting","script":"refund-now"}', status: 400, reason: 'body_invalid' },
      { name: 'not JSON', body: 'script=greeting', status: 400, reason: 'body_invalid', type: 'application/x-www-form-urlencoded' },
      { name: 'a JSON array', body: '[{"script":"greeting"}]', status: 400, reason: 'body_invalid' },
    ];
    for (const c of cases) {
      await gw.gateway.store.revive('support-agent-01');
      const res = await request(`${gw.url}/tickets/tickets/1/replies`, { method: 'POST', headers: { ...bearer(support), 'content-type': c.type ?? 'application/json' }, body: c.body });
      t.equal(res.statusCode, c.status, c.name);
      if (c.reason === null) await res.body.dump();
      else t.match(await res.body.json(), { type: `urn:agentgate:problem:${c.reason}` }, c.name);
    }
  });
});

t.test('masking refuses what it cannot mask, and never passes it on', async (t) => {
  const big = JSON.stringify({ items: Array.from({ length: 400 }, (_, i) => ({ i, email: `u${i}@example.org` })) });
  const doc = JSON.stringify({ id: 1, email: 'a@b.example', nested: { profile: { email: 'deep@b.example', 'e.mail': 'dotted@b.example' } }, list: [{ email: 'x@b.example' }, { email: 'y@b.example' }], 'em\\u0061il': 'escaped' }).replace('"em\\\\u0061il"', '"em\\u0061il"');
  const upstream = await startUpstream(t, (req, res) => {
    const reply = (status: number, headers: Record<string, string>, body: Buffer | string): void => {
      res.writeHead(status, headers);
      res.end(body);
    };
    switch (req.url) {
      case '/doc':
        return reply(200, { 'content-type': 'application/json; charset=utf-8', etag: '"v1"' }, doc);
      case '/gzip':
        return reply(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' }, gzipSync(doc));
      case '/br':
        return reply(200, { 'content-type': 'application/json', 'content-encoding': 'br' }, brotliCompressSync(doc));
      case '/zstd':
        return reply(200, { 'content-type': 'application/json', 'content-encoding': 'zstd' }, doc);
      case '/html':
        return reply(200, { 'content-type': 'text/html' }, '<p>a@b.example</p>');
      case '/no-type':
        return reply(200, {}, doc);
      case '/big':
        return reply(200, { 'content-type': 'application/json' }, big);
      case '/big-chunked':
        res.writeHead(200, { 'content-type': 'application/json' });
        res.write(big.slice(0, 3000));
        res.end(big.slice(3000));
        return;
      case '/gzip-bomb':
        return reply(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' }, gzipSync(`{"pad":"${'x'.repeat(200_000)}"}`));
      case '/broken':
        return reply(200, { 'content-type': 'application/json' }, '{"email":"a@b.example", "x": ');
      case '/trailing':
        return reply(200, { 'content-type': 'application/json' }, '{"email":"a@b.example"} {"email":"b@b.example"}');
      case '/bad-gzip':
        return reply(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' }, 'not gzip at all');
      default:
        return reply(404, { 'content-type': 'application/json' }, '{"error":"not found","email":"a@b.example"}');
    }
  });
  const dir = t.testdir({});
  await mkdir(join(dir, 'policies'), { recursive: true });
  await writeFile(
    join(dir, 'policies', 'p.yaml'),
    [
      'backends:',
      '  api:',
      `    upstream: ${upstream.url}`,
      '    scopes:',
      '      read: ["GET /*"]',
      'roles:',
      '  masked:',
      '    grants: [api:read]',
      '    mask: { api: [email, "nested.profile[\\"e.mail\\"]", "$.id"] }',
      'agents:',
      '  masked-01: { role: masked, owner: test }',
      '',
    ].join('\n'),
  );
  const gw = await startGateway(t, { policies: join(dir, 'policies'), limits: { maxMaskedBodyBytes: 4096 } });
  const token = await gw.token('masked-01');
  const get = (path: string) => request(`${gw.url}/api${path}`, { headers: bearer(token) });
  const expected = { id: '[masked]', email: '[masked]', nested: { profile: { email: '[masked]', 'e.mail': '[masked]' } }, list: [{ email: '[masked]' }, { email: '[masked]' }] };

  await t.test('nested objects, arrays, dotted keys, escaped keys, anchored paths', async (t) => {
    const res = await get('/doc');
    t.equal(res.statusCode, 200);
    t.equal(res.headers.etag, undefined, 'validators of the unmasked body are dropped');
    const body = (await res.body.json()) as Record<string, unknown>;
    t.match(body, expected);
    t.equal(body.email, '[masked]', '"em\\u0061il" is the key email to every parser, and masked');
    t.equal(upstream.seen.at(-1)?.headers['accept-encoding'], 'identity', 'the upstream was asked for identity encoding');
  });

  await t.test('gzip and br are decoded, masked and sent uncompressed', async (t) => {
    for (const path of ['/gzip', '/br']) {
      const res = await get(path);
      t.equal(res.statusCode, 200, path);
      t.equal(res.headers['content-encoding'], undefined, path);
      t.match(await res.body.json(), expected, path);
    }
  });

  await t.test('error answers are masked too', async (t) => {
    const res = await get('/missing');
    t.equal(res.statusCode, 404);
    t.same(await res.body.json(), { error: 'not found', email: '[masked]' });
  });

  const refusals = [
    { name: 'not JSON', path: '/html' },
    { name: 'no content type', path: '/no-type' },
    { name: 'an encoding the gateway cannot decode', path: '/zstd' },
    { name: 'declared length above the limit', path: '/big' },
    { name: 'chunked body above the limit', path: '/big-chunked' },
    { name: 'decompressed size above the limit (gzip bomb)', path: '/gzip-bomb' },
    { name: 'truncated JSON', path: '/broken' },
    { name: 'a second document after the first', path: '/trailing' },
    { name: 'corrupt gzip', path: '/bad-gzip' },
  ];
  for (const c of refusals) {
    await t.test(`refused: ${c.name}`, async (t) => {
      const res = await get(c.path);
      const text = await res.body.text();
      t.equal(res.statusCode, 502);
      t.match(JSON.parse(text), { type: 'urn:agentgate:problem:response_unmaskable', status: 502 });
      t.notMatch(text, /@b\.example|@example\.org/, 'nothing of the upstream body');
    });
  }
  await t.test('each refusal is audited with its cause; the gateway keeps serving', async (t) => {
    const lines = (await gw.auditLines()).filter((l) => l.reason === 'response_unmaskable');
    t.equal(lines.length, refusals.length);
    t.match(lines.find((l) => l.path === '/zstd'), { reasonDetail: /content-encoding "zstd"/, upstreamStatus: 200, status: 502 });
    t.equal((await get('/doc')).statusCode, 200);
  });
});
