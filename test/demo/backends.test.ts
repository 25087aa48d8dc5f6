// The demo backends over real loopback sockets: every route of DESIGN §2 answers realistic JSON,
// wrong methods and unknown paths answer 405/404, bad input answers 400, and BI runs real SQL.
import t from 'tap';
import { request } from 'undici';
import { startDemoBackends, type DemoBackends } from '../../demo/backends.js';

interface Answer {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly text: string;
  readonly json: unknown;
}

let backends: DemoBackends;

t.before(async () => {
  backends = await startDemoBackends();
});
t.teardown(() => backends.close());

async function call(url: string, init: { method?: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE' | 'HEAD'; body?: string; headers?: Record<string, string> } = {}): Promise<Answer> {
  const res = await request(url, { method: init.method ?? 'GET', body: init.body, headers: init.headers });
  const text = await res.body.text();
  let json: unknown = undefined;
  if (text !== '' && String(res.headers['content-type'] ?? '').startsWith('application/json')) json = JSON.parse(text);
  return { status: res.statusCode, headers: res.headers, text, json };
}

const jsonBody = (value: unknown): { body: string; headers: Record<string, string> } => ({
  body: JSON.stringify(value),
  headers: { 'content-type': 'application/json' },
});

t.test('every backend listens on its own loopback port', async (t) => {
  const urls = Object.values(backends.urls);
  t.same(Object.keys(backends.urls).sort(), ['bi', 'content', 'crm', 'kb', 'tickets', 'tickets-mcp']);
  t.equal(new Set(urls).size, 6);
  for (const url of urls) t.match(url, /^http:\/\/127\.0\.0\.1:\d+$/);
});

t.test('crm', async (t) => {
  const crm = backends.urls.crm;
  const list = await call(`${crm}/contacts`);
  t.equal(list.status, 200);
  t.equal(list.headers['content-type'], 'application/json');
  t.match(list.json, { total: 8 });
  t.match(list.json, { contacts: [{ id: '1', name: 'Ada Lovelace', email: String, phone: String, tags: Array, address: { city: 'London', country: 'GB' } }] });

  t.match((await call(`${crm}/contacts?limit=2`)).json, { contacts: { length: 2 }, total: 8 });
  const vip = await call(`${crm}/contacts?tag=vip`);
  t.same((vip.json as { contacts: Array<{ id: string }> }).contacts.map((c) => c.id), ['1', '3', '8']);
  t.equal((await call(`${crm}/contacts?limit=-1`)).status, 400, 'a bad limit is refused');

  t.match((await call(`${crm}/contacts/3`)).json, { id: '3', company: 'Orbital Data' });
  t.match(await call(`${crm}/contacts/99`), { status: 404, json: { error: 'not_found' } });
  t.same((await call(`${crm}/tags`)).json, { tags: ['churn-risk', 'enterprise', 'newsletter', 'trial', 'vip'] });

  const patched = await call(`${crm}/contacts/2`, { method: 'PATCH', ...jsonBody({ phone: '+1 202 555 0199', tags: ['newsletter', 'vip'] }) });
  t.equal(patched.status, 200);
  t.match(patched.json, { id: '2', name: 'Grace Hopper', phone: '+1 202 555 0199', tags: ['newsletter', 'vip'] });
  t.match((await call(`${crm}/contacts/2`)).json, { phone: '+1 202 555 0199' }, 'the change is kept');
  t.match(await call(`${crm}/contacts/2`, { method: 'PATCH', body: '{"phone":', headers: { 'content-type': 'application/json' } }), { status: 400, json: { error: 'bad_request' } });
  t.equal((await call(`${crm}/contacts/2`, { method: 'PATCH', ...jsonBody({ company: 'x' }) })).status, 400, 'a field that may not change');
  t.equal((await call(`${crm}/contacts/2`, { method: 'PATCH', ...jsonBody({ tags: 'vip' }) })).status, 400, 'tags of the wrong type');
  t.equal((await call(`${crm}/contacts/99`, { method: 'PATCH', ...jsonBody({ name: 'x' }) })).status, 404);

  const csv = await call(`${crm}/export`);
  t.equal(csv.status, 200);
  t.match(csv.headers['content-type'], /^text\/csv/);
  const lines = csv.text.trimEnd().split('\r\n');
  t.equal(lines[0], 'id,name,company,email,phone,tags,city,country');
  t.equal(lines.length, 9, 'a header and eight contacts');
  t.match(csv.text, /"Spanning Tree, Inc\."/, 'fields with commas are quoted');
});

t.test('content', async (t) => {
  const content = backends.urls.content;
  const list = await call(`${content}/assets`);
  t.match(list.json, { total: 5, assets: [{ id: 'a1', title: String, kind: 'image', url: /^https:/, tags: ['launch'] }] });
  t.match((await call(`${content}/assets?kind=pdf`)).json, { total: 2 });
  t.match((await call(`${content}/assets/a3`)).json, { id: 'a3', kind: 'article' });
  t.equal((await call(`${content}/assets/zz`)).status, 404);
});

t.test('tickets', async (t) => {
  const tickets = backends.urls.tickets;
  t.match((await call(`${tickets}/tickets`)).json, { total: 5, tickets: [{ id: '1', queue: 'billing', replies: 0 }] });
  t.match((await call(`${tickets}/tickets?status=open`)).json, { total: 3 });
  t.match((await call(`${tickets}/tickets/2`)).json, { id: '2', customer: 'Alan Turing', replies: [] });

  const sent = await call(`${tickets}/tickets/1/replies`, { method: 'POST', ...jsonBody({ script: 'refund-status', note: 'duplicate charge confirmed' }) });
  t.equal(sent.status, 201);
  t.match(sent.json, { ticket: '1', reply: { script: 'refund-status', text: /^Hello Grace Hopper, your refund is being processed/, note: 'duplicate charge confirmed' } });
  t.match((await call(`${tickets}/tickets/1`)).json, { replies: [{ script: 'refund-status' }] }, 'the reply is appended');
  t.match((await call(`${tickets}/tickets`)).json, { tickets: [{ id: '1', replies: 1 }] });

  const refusals = [
    { name: 'unknown script', body: JSON.stringify({ script: 'refund-now' }) },
    { name: 'free text instead of a script', body: JSON.stringify({ text: 'Sure, refund granted' }) },
    { name: 'extra field', body: JSON.stringify({ script: 'greeting', text: 'x' }) },
    { name: 'note of the wrong type', body: JSON.stringify({ script: 'greeting', note: 5 }) },
    { name: 'not JSON', body: 'script=greeting' },
  ];
  for (const r of refusals) {
    t.match(await call(`${tickets}/tickets/1/replies`, { method: 'POST', body: r.body, headers: { 'content-type': 'application/json' } }), { status: 400, json: { error: 'bad_request' } }, r.name);
  }
  t.equal((await call(`${tickets}/tickets/9/replies`, { method: 'POST', ...jsonBody({ script: 'greeting' }) })).status, 404);

  const config = await call(`${tickets}/config`, { method: 'PUT', ...jsonBody({ queues: ['billing', 'vip'], autoCloseDays: 3 }) });
  t.same(config, { ...config, status: 200, json: { queues: ['billing', 'vip'], autoCloseDays: 3, defaultPriority: 'normal' } });
  t.equal((await call(`${tickets}/config`, { method: 'PUT', ...jsonBody({ autoCloseDays: 0 }) })).status, 400);
  t.equal((await call(`${tickets}/config`, { method: 'PUT', ...jsonBody({ owner: 'me' }) })).status, 400);
});

t.test('kb', async (t) => {
  const kb = backends.urls.kb;
  const list = await call(`${kb}/articles`);
  t.match(list.json, { total: 4, articles: [{ id: 'kb-1', title: 'Resetting a password' }] });
  t.notOk(JSON.stringify(list.json).includes('"body"'), 'the list carries summaries only');
  t.match((await call(`${kb}/articles/kb-2`)).json, { id: 'kb-2', body: /refunded/ });
  t.equal((await call(`${kb}/articles/kb-9`)).status, 404);
});

t.test('bi', async (t) => {
  const bi = backends.urls.bi;
  const reports = await call(`${bi}/reports`);
  t.match(reports.json, { reports: [{ id: 'r1', title: 'Revenue by region' }, { id: 'r2' }, { id: 'r3' }] });
  t.notOk(JSON.stringify(reports.json).includes('SELECT'), 'the list does not expose SQL');
  const r1 = await call(`${bi}/reports/r1`);
  t.match(r1.json, { id: 'r1', result: { columns: ['region', 'revenue'], rows: { length: 4 } } });
  t.equal((await call(`${bi}/reports/r9`)).status, 404);

  const counts = await call(`${bi}/query`, { method: 'POST', ...jsonBody({ sql: 'SELECT (SELECT COUNT(*) FROM sales) AS sales, (SELECT COUNT(*) FROM tickets_daily) AS daily' }) });
  t.same(counts.json, { columns: ['sales', 'daily'], rows: [[200, 60]] });

  const byRegion = await call(`${bi}/query`, { method: 'POST', ...jsonBody({ sql: 'SELECT region, COUNT(*) AS n, ROUND(SUM(amount), 2) AS total FROM sales GROUP BY region ORDER BY region' }) });
  t.equal(byRegion.status, 200);
  const result = byRegion.json as { columns: string[]; rows: Array<[string, number, number]> };
  t.same(result.columns, ['region', 'n', 'total']);
  t.same(result.rows.map((r) => r[0]), ['east', 'north', 'south', 'west']);
  t.same(result.rows.map((r) => r[1]), [50, 50, 50, 50], 'deterministic seed: 200 rows over 4 regions');
  t.ok(result.rows.every((r) => r[2] > 50 * 50 && r[2] < 50 * 1000), 'totals in the seeded range');
  const again = await call(`${bi}/query`, { method: 'POST', ...jsonBody({ sql: 'SELECT region, COUNT(*) AS n, ROUND(SUM(amount), 2) AS total FROM sales GROUP BY region ORDER BY region' }) });
  t.same(again.json, byRegion.json, 'the same query answers the same numbers');

  const backlog = await call(`${bi}/query`, { method: 'POST', ...jsonBody({ sql: 'SELECT queue, SUM(opened) - SUM(closed) AS backlog FROM tickets_daily GROUP BY queue ORDER BY queue' }) });
  t.match(backlog.json, { columns: ['queue', 'backlog'], rows: [['billing', Number], ['general', Number], ['technical', Number]] });

  const bad = [
    { name: 'syntax error', body: jsonBody({ sql: 'SELEC region FROM sales' }), error: 'sql_error' },
    { name: 'unknown table', body: jsonBody({ sql: 'SELECT * FROM customers' }), error: 'sql_error' },
    { name: 'write to the read-only pool', body: jsonBody({ sql: 'DELETE FROM sales' }), error: 'sql_error' },
    { name: 'two statements', body: jsonBody({ sql: 'SELECT 1; DROP TABLE sales' }), error: 'sql_error' },
    { name: 'empty', body: jsonBody({ sql: '  ' }), error: 'sql_error' },
    { name: 'no sql field', body: jsonBody({ query: 'SELECT 1' }), error: 'bad_request' },
    { name: 'not JSON', body: { body: 'SELECT 1', headers: { 'content-type': 'text/plain' } }, error: 'bad_request' },
  ];
  for (const b of bad) {
    const answer = await call(`${bi}/query`, { method: 'POST', ...b.body });
    t.match(answer, { status: 400, json: { error: b.error, message: String } }, b.name);
  }
  t.same((await call(`${bi}/query`, { method: 'POST', ...jsonBody({ sql: 'SELECT COUNT(*) FROM sales' }) })).json, { columns: ['COUNT(*)'], rows: [[200]] }, 'nothing was deleted');
});

t.test('unknown paths, wrong methods and oversized bodies', async (t) => {
  const { crm, tickets, bi } = backends.urls;
  t.match(await call(`${crm}/nope`), { status: 404, json: { error: 'not_found' } });
  t.match(await call(`${crm}/contacts/1/extra`), { status: 404 });
  const wrong = await call(`${crm}/contacts`, { method: 'DELETE' });
  t.match(wrong, { status: 405, json: { error: 'method_not_allowed' } });
  t.equal(wrong.headers.allow, 'GET, HEAD');
  t.equal((await call(`${crm}/contacts/1`, { method: 'DELETE' })).headers.allow, 'GET, PATCH, HEAD');
  t.equal((await call(`${tickets}/config`)).status, 405);
  t.equal((await call(`${crm}/contacts`, { method: 'HEAD' })).status, 200, 'HEAD follows GET');
  const big = await call(`${bi}/query`, { method: 'POST', body: JSON.stringify({ sql: `SELECT '${'x'.repeat(1024 * 1024)}'` }), headers: { 'content-type': 'application/json' } });
  t.match(big, { status: 413, json: { error: 'body_too_large' } });
});

t.test('/_whoami echoes what the backend received', async (t) => {
  for (const [name, url] of Object.entries(backends.urls)) {
    // The MCP server speaks JSON-RPC at /mcp only (test/e2e/mcp.test.ts).
    if (name === 'tickets-mcp') continue;
    const who = await call(`${url}/_whoami?x=%2F`, { headers: { 'x-agentgate-agent': 'support-agent-01' } });
    t.equal(who.status, 200, name);
    t.match(who.json, { method: 'GET', url: '/_whoami?x=%2F', headers: { 'x-agentgate-agent': 'support-agent-01', host: String } }, name);
  }
  t.equal((await call(`${backends.urls.kb}/_whoami`, { method: 'POST', body: '{}' })).status, 405);
});

t.test('instances share no state', async (t) => {
  const other = await startDemoBackends();
  t.teardown(() => other.close());
  await call(`${other.urls.crm}/contacts/1`, { method: 'PATCH', ...jsonBody({ name: 'Changed' }) });
  t.match((await call(`${other.urls.crm}/contacts/1`)).json, { name: 'Changed' });
  t.match((await call(`${backends.urls.crm}/contacts/1`)).json, { name: 'Ada Lovelace' });
});
