// MCP backends end to end: the official SDK Client (StreamableHTTPClientTransport) through the
// gateway to the SDK's McpServer. Initialize, filtered lists, allowed and denied tool calls (JSON-RPC
// error, violation, breaker), masked results, aggregate-only SQL, SSE-streamed progress, session end,
// for servers answering in SSE and in JSON.
import t from 'tap';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { request } from 'undici';
import { startGateway } from '../helpers/gateway.js';
import { connectClient, startToolUpstream, writeMcpPolicy } from '../helpers/mcp.js';
import { parseExposition, sumOf } from '../helpers/prom.js';

async function metrics(url: string) {
  return parseExposition(await (await request(`${url}/metrics`)).body.text());
}

for (const mode of ['sse', 'json'] as const) {
  t.test(`SDK client through the gateway, server answering in ${mode}`, async (t) => {
    const upstream = await startToolUpstream(t, { json: mode === 'json' });
    const gw = await startGateway(t, { policies: await writeMcpPolicy(t), upstreams: { tools: upstream.url } });
    const endpoint = `${gw.url}/tools/mcp`;
    const { client, transport } = await connectClient(t, endpoint, await gw.token('support-agent-01'));

    await t.test('initialize: a session through the gateway', async (t) => {
      t.match(client.getServerVersion(), { name: 'test-tools' });
      t.type(transport.sessionId, 'string');
      t.match(transport.sessionId, /^ag1\./, 'the session id the client holds is the gateway\'s sealed one');
      t.equal(upstream.sessions(), 1);
    });

    await t.test('lists hold only what the token grants', async (t) => {
      t.same((await client.listTools()).tools.map((x) => x.name).sort(), ['get_contact', 'reply_with_script', 'run_query', 'search_tickets']);
      t.same((await client.listPrompts()).prompts.map((p) => p.name), ['summarize']);
      t.same((await client.listResources()).resources.map((r) => r.uri), ['tickets://1']);
    });

    await t.test('an allowed call with an allowed argument value', async (t) => {
      const result = await client.callTool({ name: 'reply_with_script', arguments: { ticketId: '7', script: 'greeting' } });
      t.same(result.content, [{ type: 'text', text: JSON.stringify({ ticketId: '7', script: 'greeting', sent: true }) }]);
    });

    await t.test('tool results are masked: text JSON and structuredContent', async (t) => {
      const result = await client.callTool({ name: 'get_contact', arguments: { id: '3' } });
      const content = result.content as Array<{ type: string; text: string }>;
      t.same(JSON.parse(content[0]?.text ?? ''), { id: '3', name: 'Grace Hopper', email: '[masked]', phone: '[masked]', address: { city: 'Arlington' } });
      t.same(result.structuredContent, { id: '3', name: 'Grace Hopper', email: '[masked]', phone: '[masked]', address: { city: 'Arlington' } });
      const read = await client.readResource({ uri: 'tickets://1' });
      t.same(JSON.parse(String((read.contents[0] as { text?: string }).text)), { id: '1', email: '[masked]' });
    });

    await t.test('refusals are JSON-RPC errors; nothing reaches the server', async (t) => {
      const before = upstream.posts.length;
      const cases = [
        { name: 'a tool of another scope', call: { name: 'change_config', arguments: { autoCloseDays: 1 } }, reason: 'out_of_scope' },
        { name: 'a tool the policy does not know', call: { name: 'secret_tool', arguments: {} }, reason: 'out_of_scope' },
        { name: 'a script outside the list', call: { name: 'reply_with_script', arguments: { ticketId: '7', script: 'refund now' } }, reason: 'out_of_scope' },
        { name: 'a row query on the aggregate-only SQL tool', call: { name: 'run_query', arguments: { sql: 'SELECT * FROM sales' } }, reason: 'not_aggregate' },
        { name: 'SQL on a table outside the role', call: { name: 'run_query', arguments: { sql: 'SELECT COUNT(*) FROM customers' } }, reason: 'not_aggregate' },
      ];
      for (const c of cases) {
        const error = await client.callTool(c.call).then(() => null, (e: unknown) => e);
        t.ok(error instanceof McpError, `${c.name}: McpError`);
        t.equal((error as McpError).code, -32003, c.name);
        t.match((error as McpError).data, { type: `urn:agentgate:problem:${c.reason}`, reason: c.reason, status: 403 }, c.name);
      }
      t.equal(upstream.posts.length, before, 'no refused message was forwarded');
      const aggregate = await client.callTool({ name: 'run_query', arguments: { sql: 'SELECT region, SUM(amount) FROM sales GROUP BY region' } });
      t.match(aggregate.content, [{ type: 'text' }], 'an aggregate runs');
      const m = await metrics(gw.metricsUrl);
      t.equal(sumOf(m, 'agentgate_tool_calls_total', { backend: 'tools', tool: 'change_config', decision: 'deny' }), 1);
      t.equal(sumOf(m, 'agentgate_tool_calls_total', { backend: 'tools', tool: 'unknown', decision: 'deny' }), 1, 'a name outside the policy is counted as unknown');
      t.equal(sumOf(m, 'agentgate_tool_calls_total', { backend: 'tools', tool: 'run_query', decision: 'deny' }), 2);
      t.equal(sumOf(m, 'agentgate_tool_calls_total', { backend: 'tools', tool: 'run_query', decision: 'allow' }), 1);
      t.equal(sumOf(m, 'agentgate_violations_total', { agent: 'support-agent-01', reason: 'not_aggregate' }), 2);
      const lines = await gw.auditLines();
      const denied = lines.find((l) => l.reason === 'out_of_scope' && JSON.stringify(l.rpc).includes('change_config'));
      t.match(denied, { decision: 'deny', status: 200, backend: 'tools', path: '/mcp', rpc: [{ id: Number, method: 'tools/call', tool: 'change_config' }] });
    });

    await t.test('results stream: progress notifications arrive before the result', async (t) => {
      const progress: number[] = [];
      const result = await client.callTool({ name: 'search_tickets', arguments: { query: 'refund' } }, undefined, { onprogress: (p) => progress.push(p.progress) });
      t.same(result.content, [{ type: 'text', text: JSON.stringify({ tickets: [{ id: '1', subject: 'about refund' }] }) }]);
      // A server answering in JSON sends no notifications on the request.
      t.same(progress, mode === 'sse' ? [1, 2, 3] : []);
    });

    await t.test('session end: DELETE reaches the server', async (t) => {
      await transport.terminateSession();
      t.equal(upstream.sessions(), 0);
      const lines = await gw.auditLines();
      t.ok(lines.some((l) => l.method === 'DELETE' && l.decision === 'allow' && l.backend === 'tools'), 'audited');
    });
  });
}

t.test('the breaker trips on tool-call violations', async (t) => {
  const upstream = await startToolUpstream(t);
  const gw = await startGateway(t, { policies: await writeMcpPolicy(t), upstreams: { tools: upstream.url } });
  const { client } = await connectClient(t, `${gw.url}/tools/mcp`, await gw.token('support-agent-02'));
  for (let i = 0; i < 3; i++) {
    const error = await client.callTool({ name: 'change_config', arguments: { autoCloseDays: i } }).then(() => null, (e: unknown) => e);
    t.equal((error as McpError).code, -32003, `violation ${i + 1}`);
  }
  // The breaker is written after the answer: poll until the next call is refused by it.
  const deadline = Date.now() + 10_000;
  let refusal: unknown = null;
  while (Date.now() < deadline) {
    refusal = await client.callTool({ name: 'search_tickets', arguments: {} }).then(() => null, (e: unknown) => e);
    if (refusal !== null) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  t.match(String(refusal), /403/, 'an allowed tool is refused once the breaker is open');
  const res = await request(`${gw.url}/tools/mcp`, { method: 'POST', headers: { authorization: `Bearer ${await gw.token('support-agent-02')}`, 'content-type': 'application/json' }, body: '{"jsonrpc":"2.0","id":1,"method":"ping"}' });
  t.equal(res.statusCode, 403);
  t.match(await res.body.json(), { type: 'urn:agentgate:problem:agent_suspended' });
  let m = await metrics(gw.metricsUrl);
  for (let i = 0; i < 100 && sumOf(m, 'agentgate_breaker_trips_total', { agent: 'support-agent-02' }) === 0; i++) {
    await new Promise((r) => setTimeout(r, 50));
    m = await metrics(gw.metricsUrl);
  }
  t.equal(sumOf(m, 'agentgate_breaker_trips_total', { agent: 'support-agent-02' }), 1);
  t.equal(sumOf(m, 'agentgate_violations_total', { agent: 'support-agent-02', reason: 'out_of_scope' }), 3);
});
