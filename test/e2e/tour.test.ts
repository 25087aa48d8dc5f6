// The README's five-minute tour, end to end, against the real `agentgate demo` process and the
// real CLI: every call of the tour in its order, with the answer the README prints, ending with
// the marketing agent tripping the shipped breaker and an operator reviving it.
import t from 'tap';
import { request } from 'undici';
import { join } from 'node:path';
import { SHIPPED_POLICIES } from '../helpers/gateway.js';
import { runCli, serveCli, writeConfig } from '../helpers/process.js';
import { buildRequest, rawRequest } from '../helpers/raw.js';

interface Answer {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly text: string;
}

t.test('the README tour, from `agentgate demo` to a tripped and revived breaker', async (t) => {
  const dir = t.testdir({});
  const config = await writeConfig(join(dir, 'gw'), SHIPPED_POLICIES);
  const demo = await serveCli(t, ['demo', '--config', config]);
  t.teardown(() => demo.stop());
  // The banner comes once every agent has its token from the broker.
  const deadline = Date.now() + 20_000;
  while (!demo.output().includes('Stop with Ctrl-C.') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  const banner = demo.output();
  const exported = (name: string): string => {
    const m = new RegExp(`export ${name}=(\\S+)`).exec(banner);
    if (m?.[1] === undefined) throw new Error(`the banner has no ${name}:\n${banner}`);
    return m[1];
  };
  const MARKETING_TOKEN = exported('MARKETING_TOKEN');
  const SUPPORT_TOKEN = exported('SUPPORT_TOKEN');
  const DATA_TOKEN = exported('DATA_TOKEN');
  const DATA_SECRET = exported('DATA_SECRET');
  const base = demo.url;
  const port = Number(new URL(base).port);

  const call = async (path: string, options: { token?: string; method?: string; json?: string } = {}): Promise<Answer> => {
    const headers: Record<string, string> = {};
    if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`;
    if (options.json !== undefined) headers['content-type'] = 'application/json';
    const res = await request(`${base}${path}`, { method: (options.method ?? 'GET') as 'GET', headers, ...(options.json === undefined ? {} : { body: options.json }) });
    return { status: res.statusCode, headers: res.headers, text: await res.body.text() };
  };
  const problem = (answer: Answer): string => (JSON.parse(answer.text) as { type?: string }).type?.replace('urn:agentgate:problem:', '') ?? '';
  const cli = async (...args: string[]) => runCli([...args, '--config', config], { timeoutMs: 60_000 });
  const marketingRow = async (): Promise<Record<string, unknown>> => {
    const res = await cli('agents', '--json');
    t.equal(res.code, 0, `agents: ${res.stderr}`);
    const rows = (JSON.parse(res.stdout) as { agents: Array<Record<string, unknown>> }).agents;
    return rows.find((r) => r.id === 'marketing-agent-03') ?? {};
  };

  // An allowed call: contacts with their contact fields masked.
  let a = await call('/crm/contacts/1', { token: MARKETING_TOKEN });
  t.equal(a.status, 200, 'allowed call');
  t.match(JSON.parse(a.text), { id: '1', name: 'Ada Lovelace', email: '[masked]', phone: '[masked]', tags: '[masked]' });

  // An out-of-scope call, a cross-domain call.
  a = await call('/crm/export', { token: MARKETING_TOKEN });
  t.same([a.status, problem(a), a.headers['www-authenticate']], [403, 'out_of_scope', 'Bearer realm="agentgate", error="insufficient_scope"']);
  a = await call('/tickets/tickets', { token: MARKETING_TOKEN });
  t.same([a.status, problem(a), a.headers['www-authenticate']], [403, 'cross_domain', 'Bearer realm="agentgate", error="insufficient_scope"']);

  // "More to try", row by row.
  a = await call('/crm/contacts');
  t.same([a.status, problem(a)], [401, 'token_missing'], 'no token');
  a = await call('/crm/contacts/1', { token: MARKETING_TOKEN, method: 'PATCH', json: '{"phone":"+1"}' });
  t.same([a.status, problem(a)], [403, 'read_only']);
  a = await call('/tickets/tickets/1/replies', { token: SUPPORT_TOKEN, method: 'POST', json: '{"script":"greeting"}' });
  t.equal(a.status, 201, 'reply posted');
  a = await call('/tickets/tickets/1/replies', { token: SUPPORT_TOKEN, method: 'POST', json: '{"script":"refund-now"}' });
  t.same([a.status, problem(a)], [403, 'out_of_scope'], 'only the standard scripts');
  a = await call('/tickets/config', { token: SUPPORT_TOKEN, method: 'PUT', json: '{"queue":"x"}' });
  t.same([a.status, problem(a)], [403, 'out_of_scope'], 'no configuration changes');
  a = await call('/bi/reports', { token: DATA_TOKEN });
  t.equal(a.status, 200);
  a = await call('/bi/query', { token: DATA_TOKEN, method: 'POST', json: '{"sql":"SELECT region, SUM(amount) FROM sales GROUP BY region"}' });
  t.equal(a.status, 200, 'an aggregate');
  a = await call('/bi/query', { token: DATA_TOKEN, method: 'POST', json: '{"sql":"SELECT customer_email FROM sales"}' });
  t.same([a.status, problem(a)], [403, 'not_aggregate']);
  a = await call('/crm/contacts', { token: DATA_TOKEN });
  t.same([a.status, problem(a)], [403, 'cross_domain']);
  const raw = await rawRequest(port, buildRequest('GET', '/crm/contacts/%2e%2e/export', { authorization: `Bearer ${MARKETING_TOKEN}` }));
  t.same([raw.status, /problem:([a-z_]+)/.exec(raw.body)?.[1]], [400, 'target_invalid'], '--path-as-is %2e%2e');

  // explain (nothing is sent, nothing counted), a token from the broker and two minted offline,
  // metrics and the audit trail. The CLI runs are independent: run them at once, so the tour's
  // violations stay inside the breaker's one-minute window even on a busy machine.
  const [explained, minted, narrowed, issued, metrics] = await Promise.all([
    cli('explain', '--token', MARKETING_TOKEN, 'GET', '/crm/export'),
    cli('token', '--agent', 'data-agent-01'),
    cli('token', '--agent', 'marketing-agent-03', '--scope', 'content:assets.read', '--ttl', '5m'),
    request(`${base}/oauth/token`, {
      method: 'POST',
      headers: { authorization: `Basic ${Buffer.from(`data-agent-01:${DATA_SECRET}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: 'grant_type=client_credentials',
    }),
    request(`${demo.metricsUrl}/metrics`).then((r) => r.body.text()),
  ]);
  t.match(explained.stdout, /^DENY +GET \/crm\/export +-> 403 out_of_scope/m);
  t.match(explained.stdout, /why: +route "GET \/export" needs crm:export/);
  t.match(explained.stdout, /agent: +marketing-agent-03 \(role marketing\)/);
  t.equal(issued.statusCode, 200);
  t.match(await issued.body.json(), { access_token: String, token_type: 'Bearer' });
  t.equal(minted.code, 0);
  t.match(minted.stdout.trim(), /^ey[\w-]+\.[\w-]+\.[\w-]+$/);
  t.equal(narrowed.code, 0);
  t.match(metrics, /agentgate_violations_total\{agent="marketing-agent-03",role="marketing",reason="out_of_scope"\} 1/);

  // The breaker trips: four violations so far (export, tickets, PATCH, %2e%2e), all inside the window.
  const [first, table] = await Promise.all([marketingRow(), cli('agents')]);
  let row = first;
  t.match(row, { breaker: 'closed', violationsInWindow: 4 }, 'the inventory shows the true count');
  t.match(table.stdout, /^marketing-agent-03 +marketing +growth-team +closed +4 /m);
  const loop: string[] = [];
  for (let i = 0; i < 6; i++) loop.push(problem(await call('/crm/export', { token: MARKETING_TOKEN })));
  // The fifth violation inside the minute opens it: one more out_of_scope, then suspended.
  t.same(loop, ['out_of_scope', 'agent_suspended', 'agent_suspended', 'agent_suspended', 'agent_suspended', 'agent_suspended']);
  a = await call('/crm/contacts/1', { token: MARKETING_TOKEN });
  t.same([a.status, problem(a)], [403, 'agent_suspended'], 'even an allowed call');
  const retryAfter = Number(a.headers['retry-after']);
  t.ok(retryAfter > 0 && retryAfter <= 300, `Retry-After within the 5 minute cooldown (${String(a.headers['retry-after'])})`);
  row = await marketingRow();
  t.match(row, { breaker: 'open', violationsInWindow: 5, trips: 1 });
  t.match((await cli('agents')).stdout, /^marketing-agent-03 +marketing +growth-team +open \(\d+s\) +5 /m);
  const after = await (await request(`${demo.metricsUrl}/metrics`)).body.text();
  t.match(after, /agentgate_breaker_state\{agent="marketing-agent-03"\} 2/);
  t.match(after, /agentgate_breaker_trips_total\{agent="marketing-agent-03"\} 1/);

  const verified = await cli('audit', 'verify', join(dir, 'gw', 'run', 'audit.jsonl'));
  t.equal(verified.code, 0, verified.stderr);

  // The operator revives it.
  const revived = await cli('revive', 'marketing-agent-03');
  t.same([revived.code, revived.stdout.trim()], [0, 'revived marketing-agent-03']);
  a = await call('/crm/contacts/1', { token: MARKETING_TOKEN });
  t.equal(a.status, 200, 'back in');
  t.match(await marketingRow(), { breaker: 'closed', violationsInWindow: 0 });
});
