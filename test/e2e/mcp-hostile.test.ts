// Hostile JSON-RPC against an MCP backend, over real sockets: what the agent sends (mixed batches,
// duplicate keys, look-alike names, oversized and malformed messages, the deprecated transport) is
// refused before anything reaches the server (a recording upstream proves it), and what a server
// sends back (ungranted tools, answers to requests never sent, a second message smuggled into an
// SSE event) never reaches the agent.
import t from 'tap';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { request } from 'undici';
import { startGateway, startUpstream } from '../helpers/gateway.js';
import { writeMcpPolicy } from '../helpers/mcp.js';
import { parseExposition, sumOf } from '../helpers/prom.js';

const rpc = (id: number | string, method: string, params?: Record<string, unknown>) => ({ jsonrpc: '2.0', id, method, ...(params === undefined ? {} : { params }) });
const call = (id: number, name: string, args: Record<string, unknown> = {}) => rpc(id, 'tools/call', { name, arguments: args });

t.test('refused before the server sees a byte', async (t) => {
  const upstream = await startUpstream(t, (_req, res, body) => {
    const id = (JSON.parse(body.toString('utf8')) as { id: unknown }).id;
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id, result: { content: [] } }));
  });
  const gw = await startGateway(t, { policies: await writeMcpPolicy(t), upstreams: { tools: upstream.url }, limits: { maxBodyBytes: 4096 } });
  const token = await gw.token('support-agent-01');
  const post = (body: string, headers: Record<string, string> = {}, path = '/tools/mcp', method = 'POST') =>
    request(`${gw.url}${path}`, { method: method as 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers }, body: method === 'GET' || method === 'DELETE' ? null : body });

  const cases: Array<{ name: string; body: string; headers?: Record<string, string>; path?: string; method?: string; status: number; reason: string; rpcIds?: Array<number | string> }> = [
    { name: 'batch mixing an allowed and a denied call', body: JSON.stringify([call(1, 'search_tickets'), call(2, 'change_config', { autoCloseDays: 1 })]), status: 200, reason: 'out_of_scope', rpcIds: [1, 2] },
    { name: 'batch: allowed call, then a denied method', body: JSON.stringify([call(1, 'search_tickets'), rpc(2, 'logging/setLevel', { level: 'debug' })]), status: 200, reason: 'method_denied', rpcIds: [1, 2] },
    { name: 'batch: allowed call, then a script outside the list', body: JSON.stringify([call(1, 'get_contact', { id: '1' }), call(2, 'reply_with_script', { ticketId: '1', script: 'anything' })]), status: 200, reason: 'out_of_scope', rpcIds: [1, 2] },
    { name: 'batch repeating an id', body: JSON.stringify([call(1, 'search_tickets'), call(1, 'get_contact', { id: '1' })]), status: 400, reason: 'body_invalid' },
    { name: 'batch of 33 messages', body: JSON.stringify(Array.from({ length: 33 }, (_, i) => rpc(i, 'ping'))), status: 400, reason: 'body_invalid' },
    { name: 'empty batch', body: '[]', status: 400, reason: 'body_invalid' },
    { name: 'initialize inside a batch', body: JSON.stringify([rpc(1, 'initialize', {}), rpc(2, 'ping')]), status: 200, reason: 'body_invalid', rpcIds: [1, 2] },
    { name: 'duplicate "method" keys', body: '{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"change_config","arguments":{}}}', status: 400, reason: 'body_invalid' },
    { name: 'duplicate "name" keys in params', body: '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_tickets","name":"change_config","arguments":{}}}', status: 400, reason: 'body_invalid' },
    { name: 'duplicate argument keys', body: '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"reply_with_script","arguments":{"ticketId":"1","script":"greeting","script":"free text"}}}', status: 400, reason: 'body_invalid' },
    { name: 'look-alike: Cyrillic о in get_contact', body: JSON.stringify(call(1, 'get_c\u043entact', { id: '1' })), status: 200, reason: 'out_of_scope', rpcIds: [1] },
    { name: 'look-alike: fullwidth ｇ', body: JSON.stringify(call(1, '\uff47et_contact', { id: '1' })), status: 200, reason: 'out_of_scope', rpcIds: [1] },
    { name: 'look-alike: zero-width space', body: JSON.stringify(call(1, 'get_contact\u200b', { id: '1' })), status: 200, reason: 'out_of_scope', rpcIds: [1] },
    { name: 'look-alike: other case', body: JSON.stringify(call(1, 'Get_Contact', { id: '1' })), status: 200, reason: 'out_of_scope', rpcIds: [1] },
    { name: 'look-alike: trailing space', body: JSON.stringify(call(1, 'get_contact ', { id: '1' })), status: 200, reason: 'out_of_scope', rpcIds: [1] },
    { name: 'look-alike on a granted argument value', body: JSON.stringify(call(1, 'reply_with_script', { ticketId: '1', script: 'gr\u0435eting' })), status: 200, reason: 'out_of_scope', rpcIds: [1] },
    { name: 'oversized message', body: JSON.stringify(call(1, 'search_tickets', { query: 'x'.repeat(5000) })), status: 413, reason: 'body_too_large' },
    { name: 'not JSON', body: '{"jsonrpc":"2.0",', status: 400, reason: 'body_invalid' },
    { name: 'byte-order mark', body: `\ufeff${JSON.stringify(rpc(1, 'ping'))}`, status: 400, reason: 'body_invalid' },
    { name: 'wrong content-type', body: JSON.stringify(rpc(1, 'ping')), headers: { 'content-type': 'text/plain' }, status: 400, reason: 'body_invalid' },
    { name: 'jsonrpc 1.0', body: '{"jsonrpc":"1.0","id":1,"method":"ping"}', status: 400, reason: 'body_invalid' },
    { name: 'an unknown member', body: '{"jsonrpc":"2.0","id":1,"method":"ping","method2":"tools/call"}', status: 400, reason: 'body_invalid' },
    { name: 'id null', body: '{"jsonrpc":"2.0","id":null,"method":"ping"}', status: 400, reason: 'body_invalid' },
    { name: 'params as an array', body: '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":["change_config"]}', status: 400, reason: 'body_invalid' },
    { name: 'tools/call without a name', body: JSON.stringify(rpc(1, 'tools/call', { arguments: {} })), status: 200, reason: 'body_invalid', rpcIds: [1] },
    { name: 'arguments as a string', body: JSON.stringify(rpc(1, 'tools/call', { name: 'search_tickets', arguments: 'x' })), status: 200, reason: 'body_invalid', rpcIds: [1] },
    { name: 'a method outside the allowlist', body: JSON.stringify(rpc(1, 'logging/setLevel', { level: 'debug' })), status: 200, reason: 'method_denied', rpcIds: [1] },
    { name: 'a server-to-client method sent to the server', body: JSON.stringify(rpc('s1', 'sampling/createMessage', {})), status: 200, reason: 'method_denied', rpcIds: ['s1'] },
    { name: 'tools/call as a notification', body: JSON.stringify({ jsonrpc: '2.0', method: 'tools/call', params: { name: 'search_tickets' } }), status: 403, reason: 'method_denied' },
    { name: 'a notifications/ method sent with an id', body: JSON.stringify(rpc(1, 'notifications/initialized')), status: 200, reason: 'method_denied', rpcIds: [1] },
    { name: 'a resource outside the grant', body: JSON.stringify(rpc(1, 'resources/read', { uri: 'config://queues' })), status: 200, reason: 'out_of_scope', rpcIds: [1] },
    { name: 'a resource escaping its template', body: JSON.stringify(rpc(1, 'resources/read', { uri: 'tickets://1/../config' })), status: 200, reason: 'out_of_scope', rpcIds: [1] },
    { name: 'a prompt outside the grant', body: JSON.stringify(rpc(1, 'prompts/get', { name: 'leak_everything' })), status: 200, reason: 'out_of_scope', rpcIds: [1] },
    { name: 'a completion for an ungranted prompt', body: JSON.stringify(rpc(1, 'completion/complete', { ref: { type: 'ref/prompt', name: 'leak_everything' }, argument: { name: 'a', value: '' } })), status: 200, reason: 'out_of_scope', rpcIds: [1] },
    { name: 'deprecated HTTP+SSE: GET /sse', body: '', path: '/tools/sse', method: 'GET', status: 400, reason: 'transport_unsupported' },
    { name: 'deprecated HTTP+SSE: POST /messages?sessionId=', body: JSON.stringify(rpc(1, 'ping')), path: '/tools/messages?sessionId=abc', status: 400, reason: 'transport_unsupported' },
    { name: 'a query on the endpoint', body: JSON.stringify(rpc(1, 'ping')), path: '/tools/mcp?x=1', status: 400, reason: 'transport_unsupported' },
    { name: 'stream resumption', body: '', method: 'GET', headers: { 'last-event-id': '5' }, status: 400, reason: 'transport_unsupported' },
    { name: 'PUT on the endpoint', body: JSON.stringify(rpc(1, 'ping')), method: 'PUT', status: 400, reason: 'transport_unsupported' },
  ];
  for (const c of cases) {
    await t.test(c.name, async (t) => {
      const before = upstream.seen.length;
      const res = await post(c.body, c.headers, c.path, c.method);
      const text = await res.body.text();
      t.equal(res.statusCode, c.status, 'status');
      if (c.rpcIds !== undefined) {
        const parsed = JSON.parse(text) as unknown;
        const answers = (Array.isArray(parsed) ? parsed : [parsed]) as Array<{ id: unknown; error: { code: number; data: { reason: string } } }>;
        t.same(answers.map((a) => a.id), c.rpcIds, 'one JSON-RPC error per request');
        for (const a of answers) t.equal(a.error.data.reason, c.reason);
      } else {
        t.match(JSON.parse(text), { type: `urn:agentgate:problem:${c.reason}` });
      }
      t.equal(upstream.seen.length, before, 'nothing was forwarded');
    });
  }

  await t.test('an escaped name is the same name: checked and forwarded byte for byte', async (t) => {
    const body = '{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"search\\u005ftickets","arguments":{}}}';
    const res = await post(body);
    t.equal(res.statusCode, 200);
    await res.body.text();
    t.equal(upstream.seen.at(-1)?.bodyBytes, Buffer.byteLength(body));
  });

  await t.test('audit and metrics: every refusal is a line, look-alikes count as unknown', async (t) => {
    const lines = await gw.auditLines();
    const mixed = lines.find((l) => JSON.stringify(l.rpc) === JSON.stringify([{ id: 1, method: 'tools/call', tool: 'search_tickets' }, { id: 2, method: 'tools/call', tool: 'change_config' }]));
    t.match(mixed, { decision: 'deny', reason: 'out_of_scope', status: 200 });
    const m = parseExposition(await (await request(`${gw.metricsUrl}/metrics`)).body.text());
    t.ok(sumOf(m, 'agentgate_tool_calls_total', { tool: 'unknown', decision: 'deny' }) >= 5, 'look-alike names are unknown');
    t.notOk([...m.samples.keys()].some((k) => k.includes('\u043e') || k.includes('\uff47')), 'no label value from the request');
  });
});

/** A server that answers every POST with `reply(body)`: text/event-stream or JSON. */
async function startScriptedServer(t: Parameters<typeof startUpstream>[0], reply: (body: { id?: unknown; method?: string }, res: ServerResponse, req: IncomingMessage) => void) {
  return startUpstream(t, (req, res, body) => {
    const text = body.toString('utf8');
    reply(text === '' ? {} : (JSON.parse(text) as { id?: unknown; method?: string }), res, req);
  });
}

const sse = (res: ServerResponse, events: string) => {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  res.end(events);
};

t.test('what a server sends back', async (t) => {
  const scripts: Record<string, (id: unknown, res: ServerResponse) => void> = {
    'ungranted and look-alike tools in a JSON list': (id, res) =>
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id, result: { tools: [{ name: 'search_tickets' }, { name: 'change_config' }, { name: 'get_c\u043entact' }, { name: 'secret_tool' }, 'junk', { name: 7 }], nextCursor: 'c2' } })),
    'ungranted tools in an SSE list': (id, res) => sse(res, `event: message\nid: 1\ndata: ${JSON.stringify({ jsonrpc: '2.0', id, result: { tools: [{ name: 'get_contact' }, { name: 'change_config' }] } })}\n\n`),
    'a second message smuggled as a second data line': (id, res) =>
      sse(res, `data: ${JSON.stringify({ jsonrpc: '2.0', id, result: { tools: [] } })}\ndata: ${JSON.stringify({ jsonrpc: '2.0', id: 99, result: { tools: [{ name: 'change_config' }] } })}\n\n`),
    'a batch inside one event': (id, res) => sse(res, `data: ${JSON.stringify([{ jsonrpc: '2.0', id, result: { tools: [] } }, { jsonrpc: '2.0', id: 99, result: {} }])}\n\n`),
    'a second answer to the same id': (id, res) => sse(res, `data: ${JSON.stringify({ jsonrpc: '2.0', id, result: { tools: [] } })}\n\ndata: ${JSON.stringify({ jsonrpc: '2.0', id, result: { tools: [{ name: 'change_config' }] } })}\n\n`),
    'an answer to an id never sent': (_id, res) => sse(res, `data: ${JSON.stringify({ jsonrpc: '2.0', id: 'other', result: { tools: [{ name: 'change_config' }] } })}\n\n`),
    'the deprecated endpoint event': (_id, res) => sse(res, 'event: endpoint\ndata: /messages?sessionId=1\n\n'),
    'a JSON batch answering one request': (id, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify([{ jsonrpc: '2.0', id, result: { tools: [] } }, { jsonrpc: '2.0', id: 99, result: {} }])),
    'JSON with duplicate keys': (id, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(`{"jsonrpc":"2.0","id":${JSON.stringify(id)},"result":{"tools":[]},"result":{"tools":[{"name":"change_config"}]}}`),
    'text/html instead of JSON-RPC': (_id, res) => res.writeHead(200, { 'content-type': 'text/html' }).end('<html></html>'),
  };
  let current = '';
  const upstream = await startScriptedServer(t, (body, res) => {
    const script = scripts[current];
    if (script === undefined) throw new Error(`no script ${current}`);
    script(body.id, res);
  });
  const gw = await startGateway(t, { policies: await writeMcpPolicy(t), upstreams: { tools: upstream.url } });
  const token = await gw.token('support-agent-01');
  const list = async (name: string) => {
    current = name;
    return request(`${gw.url}/tools/mcp`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, body: JSON.stringify(rpc(1, 'tools/list')) });
  };

  await t.test('ungranted and look-alike tools are filtered out of a JSON list', async (t) => {
    const res = await list('ungranted and look-alike tools in a JSON list');
    t.equal(res.statusCode, 200);
    t.same(await res.body.json(), { jsonrpc: '2.0', id: 1, result: { tools: [{ name: 'search_tickets' }], nextCursor: 'c2' } });
  });
  await t.test('ungranted tools are filtered out of an SSE list; event ids are not passed on', async (t) => {
    const res = await list('ungranted tools in an SSE list');
    t.equal(res.statusCode, 200);
    t.equal(await res.body.text(), `event: message\ndata: ${JSON.stringify({ jsonrpc: '2.0', id: 1, result: { tools: [{ name: 'get_contact' }] } })}\n\n`);
  });
  for (const name of ['a second message smuggled as a second data line', 'a batch inside one event', 'a second answer to the same id', 'an answer to an id never sent', 'the deprecated endpoint event']) {
    await t.test(`SSE: ${name} cuts the stream`, async (t) => {
      // The head may not have left the gateway yet: then the request itself fails.
      const text = await list(name).then(
        (res) => res.body.text().then((body) => `${res.statusCode} ${body}`, (error: unknown) => `${res.statusCode} ${String(error)} CUT`),
        (error: unknown) => `${String(error)} CUT`,
      );
      t.notMatch(text, /change_config/, 'the smuggled message never reached the agent');
      t.match(text, /CUT$/, 'the stream was cut, not ended');
      const line = (await gw.auditLines()).at(-1);
      t.match(line, { decision: 'deny', reason: 'upstream_invalid' });
    });
  }
  await t.test('the GET stream carries server notifications and requests, never an answer', async (t) => {
    const notification = JSON.stringify({ jsonrpc: '2.0', method: 'notifications/tools/list_changed' });
    scripts['get stream'] = (_id, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(`: keep-alive\n\nid: 7\ndata: ${notification}\n\n`);
      // Later on the stream, an answer to a request nobody sent on it.
      setTimeout(() => res.end(`data: ${JSON.stringify({ jsonrpc: '2.0', id: 1, result: { tools: [{ name: 'change_config' }] } })}\n\n`), 300);
    };
    current = 'get stream';
    const res = await request(`${gw.url}/tools/mcp`, { method: 'GET', headers: { authorization: `Bearer ${token}`, accept: 'text/event-stream' } });
    t.equal(res.statusCode, 200);
    let text = '';
    try {
      for await (const chunk of res.body) text += String(chunk);
    } catch (error) {
      text += `${String(error)} CUT`;
    }
    t.match(text, `event: message\ndata: ${notification}\n\n`, 'the notification passes');
    t.notMatch(text, /change_config/, 'an answer on the GET stream does not');
    t.match(text, /CUT$/);
    const line = (await gw.auditLines()).at(-1);
    t.match(line, { method: 'GET', decision: 'deny', reason: 'upstream_invalid' });
  });
  await t.test('a GET or DELETE with a body is refused', async (t) => {
    const before = upstream.seen.length;
    const res = await request(`${gw.url}/tools/mcp`, { method: 'DELETE', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(rpc(1, 'tools/call', { name: 'change_config' })) });
    t.equal(res.statusCode, 400);
    t.match(await res.body.json(), { type: 'urn:agentgate:problem:body_unexpected' });
    t.equal(upstream.seen.length, before);
  });
  for (const name of ['a JSON batch answering one request', 'JSON with duplicate keys', 'text/html instead of JSON-RPC']) {
    await t.test(`JSON: ${name} is refused`, async (t) => {
      const res = await list(name);
      t.equal(res.statusCode, 502);
      const text = await res.body.text();
      t.match(JSON.parse(text), { type: 'urn:agentgate:problem:upstream_invalid' });
      t.notMatch(text, /change_config/);
    });
  }
});
