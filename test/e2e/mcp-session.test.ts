// MCP sessions belong to the agent (and the user it acts for) that opened them, over real sockets:
// the agent sees a sealed id, the server gets its own id back, and another agent or user
// presenting the sealed id (POST, the GET stream, DELETE), the server's bare id or an altered one
// gets 404 mcp_session_unknown with nothing forwarded. A server id that cannot be a session id is refused.
import t from 'tap';
import type { ServerResponse } from 'node:http';
import { request } from 'undici';
import { startGateway, startUpstream } from '../helpers/gateway.js';
import { writeMcpPolicy } from '../helpers/mcp.js';

const SERVER_ID = 'srv-7b3e9c1d';

t.test('a session id opens only for the agent it was handed to', async (t) => {
  // What the server answers with next: its session id header on initialize, or a bad one.
  let sessionHeader: string | string[] = SERVER_ID;
  const upstream = await startUpstream(t, (req, res, body) => {
    if (req.method === 'GET') {
      res.writeHead(200, { 'content-type': 'text/event-stream' }).end(': open\n\n');
      return;
    }
    if (req.method === 'DELETE') {
      res.writeHead(200).end();
      return;
    }
    const message = JSON.parse(body.toString('utf8')) as { id: number; method: string };
    const result = message.method === 'initialize' ? { protocolVersion: '2025-11-25', capabilities: {}, serverInfo: { name: 's', version: '1' } } : {};
    const headers: Record<string, string | string[]> = { 'content-type': 'application/json' };
    if (message.method === 'initialize') headers['mcp-session-id'] = sessionHeader;
    (res as ServerResponse).writeHead(200, headers).end(JSON.stringify({ jsonrpc: '2.0', id: message.id, result }));
  });
  const gw = await startGateway(t, { policies: await writeMcpPolicy(t), upstreams: { tools: upstream.url } });
  const owner = await gw.token('support-agent-01');
  const other = await gw.token('support-agent-02');
  const send = (token: string, method: 'POST' | 'GET' | 'DELETE', session?: string | string[], rpcMethod = 'ping') =>
    request(`${gw.url}/tools/mcp`, {
      method,
      headers: {
        authorization: `Bearer ${token}`,
        accept: 'application/json, text/event-stream',
        ...(method === 'POST' ? { 'content-type': 'application/json' } : {}),
        ...(session === undefined ? {} : { 'mcp-session-id': session }),
      },
      body: method === 'POST' ? JSON.stringify({ jsonrpc: '2.0', id: 1, method: rpcMethod, ...(rpcMethod === 'initialize' ? { params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'c', version: '1' } } } : {}) }) : null,
    });

  const init = await send(owner, 'POST', undefined, 'initialize');
  t.equal(init.statusCode, 200);
  await init.body.text();
  const sealed = init.headers['mcp-session-id'];
  if (typeof sealed !== 'string') throw new Error('no session id on initialize');
  t.not(sealed, SERVER_ID, 'the agent never sees the server id');
  t.match(sealed, /^ag1\./);
  t.equal(upstream.seen.at(-1)?.headers['mcp-session-id'], undefined, 'initialize carried no session id upstream');

  await t.test('the owner: the server gets its own id back, on POST, GET and DELETE', async (t) => {
    for (const method of ['POST', 'GET', 'DELETE'] as const) {
      const res = await send(owner, method, sealed);
      await res.body.text();
      t.equal(res.statusCode, 200, method);
      t.equal(upstream.seen.at(-1)?.method, method);
      t.equal(upstream.seen.at(-1)?.headers['mcp-session-id'], SERVER_ID, `${method} forwarded the server's id`);
    }
  });

  await t.test('refused with nothing forwarded', async (t) => {
    const mac = sealed.slice(4, 47);
    const cases: Array<{ name: string; token: string; method: 'POST' | 'GET' | 'DELETE'; session: string | string[] }> = [
      { name: 'another agent posting on the session', token: other, method: 'POST', session: sealed },
      { name: 'another agent opening its GET stream', token: other, method: 'GET', session: sealed },
      { name: 'another agent ending it', token: other, method: 'DELETE', session: sealed },
      { name: "the server's bare id", token: owner, method: 'POST', session: SERVER_ID },
      { name: 'the bare id on the GET stream', token: other, method: 'GET', session: SERVER_ID },
      { name: 'an altered MAC', token: owner, method: 'POST', session: `ag1.${mac.startsWith('A') ? 'B' : 'A'}${mac.slice(1)}.${SERVER_ID}` },
      { name: 'another server id under the same MAC', token: owner, method: 'DELETE', session: `ag1.${mac}.srv-other` },
      { name: 'the header twice', token: owner, method: 'POST', session: [sealed, sealed] },
      { name: 'an empty header', token: owner, method: 'POST', session: '' },
    ];
    for (const c of cases) {
      const before = upstream.seen.length;
      const res = await send(c.token, c.method, c.session);
      t.equal(res.statusCode, 404, `${c.name}: status`);
      t.match(await res.body.json(), { type: 'urn:agentgate:problem:mcp_session_unknown', status: 404 }, `${c.name}: problem`);
      t.equal(upstream.seen.length, before, `${c.name}: nothing forwarded`);
    }
    const line = (await gw.auditLines()).at(-1);
    t.match(line, { agent: 'support-agent-01', backend: 'tools', decision: 'deny', reason: 'mcp_session_unknown', status: 404 });
  });

  await t.test('look-alike names carrying the bare id never reach the server (a lenient backend may read _ as -)', async (t) => {
    for (const name of ['mcp_session_id', 'mcp.session.id', 'x-mcp-session-id', 'mcp-sessionid']) {
      const res = await request(`${gw.url}/tools/mcp`, {
        method: 'POST',
        headers: { authorization: `Bearer ${other}`, accept: 'application/json, text/event-stream', 'content-type': 'application/json', [name]: SERVER_ID },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' }),
      });
      await res.body.text();
      const seen = upstream.seen.at(-1)?.rawHeaders ?? [];
      t.notOk(seen.some((h) => h === SERVER_ID), `${name}: the server id was not forwarded under any name (status ${res.statusCode})`);
    }
  });

  await t.test('delegated: a session opened for a user is that user\'s', async (t) => {
    const forAlice = await gw.token('support-agent-01', { onBehalfOf: 'alice' });
    const forBob = await gw.token('support-agent-01', { onBehalfOf: 'bob' });
    const opened = await send(forAlice, 'POST', undefined, 'initialize');
    await opened.body.text();
    const aliceSession = opened.headers['mcp-session-id'];
    if (typeof aliceSession !== 'string') throw new Error('no session id on initialize');
    t.not(aliceSession, sealed, 'sealed to the user as well as the agent');
    const own = await send(forAlice, 'POST', aliceSession);
    await own.body.text();
    t.equal(own.statusCode, 200, 'the agent acting for alice uses it');
    t.equal(upstream.seen.at(-1)?.headers['mcp-session-id'], SERVER_ID);
    const before = upstream.seen.length;
    for (const [name, token, session] of [['for bob', forBob, aliceSession], ['for itself', owner, aliceSession], ["alice's agent on the agent's own session", forAlice, sealed]] as const) {
      const res = await send(token, 'POST', session);
      t.equal(res.statusCode, 404, name);
      await res.body.text();
    }
    t.equal(upstream.seen.length, before, 'nothing forwarded');
  });

  await t.test('not a violation: the other agent (breaker: 3 violations) is still served', async (t) => {
    for (let i = 0; i < 4; i++) await (await send(other, 'POST', sealed)).body.text();
    const res = await send(other, 'POST', undefined, 'ping');
    t.equal(res.statusCode, 200);
    await res.body.text();
  });

  await t.test('a server id that cannot be a session id is refused, not passed on', async (t) => {
    for (const bad of ['has space', 'x'.repeat(513), [SERVER_ID, 'srv-2']]) {
      sessionHeader = bad;
      const res = await send(owner, 'POST', undefined, 'initialize');
      t.equal(res.statusCode, 502, JSON.stringify(bad).slice(0, 40));
      t.equal(res.headers['mcp-session-id'], undefined);
      t.match(await res.body.json(), { type: 'urn:agentgate:problem:upstream_invalid' });
    }
  });
});
