// Issue 10: only what was checked reaches a backend. Hostile request heads are sent as raw bytes
// to a real gateway in front of a backend that records every byte on its TCP socket; for each we
// assert the answer and that none of the hostile names or values arrived (nothing at all for a
// refusal). Then the positive side: what is allowlisted arrives byte-exact.
import t from 'tap';
import type { Test } from 'tap';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';
import { normaliseHeaderName } from '../../gateway/headers.js';
import { startGateway, type StartedGateway } from '../helpers/gateway.js';
import { sendRaw } from '../helpers/raw.js';
import { startRawBackend, type RawBackend, type RawSeenRequest } from '../helpers/raw-backend.js';

const JWT = 'eyJhbGciOiJFZERTQSIsInR5cCI6ImF0K2p3dCJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl';

/** Every header name the gateway may send upstream to this test's backend. */
const UPSTREAM_NAMES = new Set([
  'accept', 'accept-charset', 'accept-encoding', 'accept-language', 'cache-control', 'if-match', 'if-none-match',
  'if-modified-since', 'if-unmodified-since', 'if-range', 'range', 'content-type', 'content-encoding',
  'content-language', 'user-agent', 'x-tenant-id', 'x-app-version', 'cookie',
  'x-agentgate-agent', 'x-agentgate-role', 'x-request-id', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host',
  'traceparent', 'tracestate', 'host', 'connection', 'content-length', 'transfer-encoding',
]);

type Header = readonly [string, string];

interface HostileCase {
  readonly name: string;
  readonly method?: string;
  readonly target?: string;
  readonly headers: readonly Header[];
  readonly body?: string;
  /** Expected status; 200 means forwarded without the hostile parts. */
  readonly status: number;
  readonly reason?: string;
  /** The gateway must close the connection although the client asked for keep-alive. */
  readonly close?: boolean;
  /** Leave out the test's own Host header (the case brings its own). */
  readonly noHost?: boolean;
}

const h = (name: string, value: string): Header => [name, value];
const dropped = (name: string, headers: readonly Header[], target?: string): HostileCase => ({ name, headers, status: 200, ...(target === undefined ? {} : { target }) });
const refused = (name: string, reason: string, headers: readonly Header[], extra: Partial<HostileCase> = {}): HostileCase => ({ name, headers, status: 400, reason, ...extra });

// Every hostile value carries "EVIL" so the recorded bytes can be searched for any of it.
const hostile: readonly HostileCase[] = [
  // The gateway's identity headers, in every spelling a backend might map back to X-AgentGate-*.
  dropped('identity: exact', [h('X-AgentGate-Agent', 'EVIL-admin')]),
  dropped('identity: underscores', [h('X_AgentGate_Agent', 'EVIL-admin')]),
  dropped('identity: dots', [h('X.AgentGate.Agent', 'EVIL-admin')]),
  dropped('identity: mixed separators', [h('x-agentgate_agent', 'EVIL-admin')]),
  dropped('identity: upper case role', [h('X-AGENTGATE-ROLE', 'EVIL-root')]),
  dropped('identity: role with underscores', [h('X_AGENTGATE_ROLE', 'EVIL-root')]),
  dropped('identity: on-behalf-of', [h('X-AgentGate-On-Behalf-Of', 'EVIL-ceo')]),
  dropped('identity: on-behalf-of with dots', [h('x.agentgate.on.behalf.of', 'EVIL-ceo')]),
  dropped('identity: an invented x-agentgate name', [h('X-AgentGate-Admin', 'EVIL-yes')]),
  // Forwarding and client-address headers other than the ones the gateway sets.
  dropped('forwarding: X-Forwarded-For', [h('X-Forwarded-For', '10.0.0.1, EVIL')]),
  dropped('forwarding: X_Forwarded_For', [h('X_Forwarded_For', 'EVIL')]),
  dropped('forwarding: X-Forwarded-Prefix', [h('X-Forwarded-Prefix', '/EVIL')]),
  dropped('forwarding: X-Forwarded-Host', [h('X-Forwarded-Host', 'EVIL.example')]),
  dropped('forwarding: x.forwarded.proto', [h('x.forwarded.proto', 'EVIL')]),
  dropped('forwarding: X-Forwarded-Server', [h('X-Forwarded-Server', 'EVIL')]),
  dropped('forwarding: X-Forwarded-Port', [h('X-Forwarded-Port', '1EVIL')]),
  dropped('forwarding: Forwarded', [h('Forwarded', 'for=EVIL')]),
  dropped('forwarding: X-Real-IP', [h('X-Real-IP', 'EVIL')]),
  dropped('forwarding: X_Real_IP', [h('X_Real_IP', 'EVIL')]),
  dropped('forwarding: X-Client-IP', [h('X-Client-IP', 'EVIL')]),
  dropped('forwarding: True-Client-IP', [h('True-Client-IP', 'EVIL')]),
  dropped('forwarding: X-Original-Host', [h('X-Original-Host', 'EVIL')]),
  dropped('forwarding: Via', [h('Via', '1.1 EVIL')]),
  // Proxy-internal headers.
  dropped('proxy-internal: X-Envoy-Original-Path', [h('X-Envoy-Original-Path', '/EVIL')]),
  dropped('proxy-internal: X_Envoy_Internal', [h('X_Envoy_Internal', 'EVIL')]),
  dropped('proxy-internal: X-Envoy-Decorator-Operation', [h('X-Envoy-Decorator-Operation', 'EVIL')]),
  dropped('proxy-internal: X-Middleware-Subrequest', [h('X-Middleware-Subrequest', 'middleware:EVIL')]),
  dropped('proxy-internal: x.middleware.subrequest', [h('x.middleware.subrequest', 'EVIL')]),
  // Credentials and cookies.
  dropped('credential: Proxy-Authorization', [h('Proxy-Authorization', 'Basic EVIL')]),
  dropped('cookie: not listed by the backend', [h('Cookie', 'session=EVIL')]),
  dropped('cookie: listed name with a JWT value', [h('Cookie', `lang=${JWT}EVIL`)]),
  dropped('cookie: listed name with a Bearer value', [h('Cookie', 'cart=Bearer EVIL')]),
  dropped('cookie: listed name with an escaped JWT', [h('Cookie', 'lang=eyJhbGciOiJFZERTQSJ9%2EeyJzdWIiOiJ4In0%2EEVIL')]),
  dropped('cookie: Cookie2', [h('Cookie2', '$Version=EVIL')]),
  dropped('cookie: lookalike name Cookie_', [h('Cook_ie', 'lang=EVIL')]),
  // Hop-by-hop headers and headers named in Connection.
  dropped('hop-by-hop: an allowlisted header named in Connection', [h('Connection', 'x-tenant-id, close'), h('X-Tenant-Id', 'EVIL')]),
  dropped('hop-by-hop: Keep-Alive', [h('Keep-Alive', 'timeout=EVIL')]),
  dropped('hop-by-hop: Proxy-Connection', [h('Proxy-Connection', 'EVIL')]),
  dropped('hop-by-hop: TE', [h('TE', 'trailers, EVIL')]),
  dropped('hop-by-hop: Trailer', [h('Trailer', 'EVIL')]),
  dropped('hop-by-hop: Upgrade without a WebSocket handshake', [h('Upgrade', 'EVIL/1')]),
  dropped('hop-by-hop: HTTP2-Settings', [h('HTTP2-Settings', 'EVIL')]),
  // Headers the backend never listed, and lookalikes of listed ones.
  dropped('unlisted: X-Api-Key', [h('X-Api-Key', 'EVIL')]),
  dropped('unlisted: X-Admin', [h('X-Admin', 'EVIL')]),
  dropped('unlisted: X-Debug', [h('X-Debug', 'EVIL')]),
  dropped('lookalike of a listed header: X_Tenant_Id', [h('X_Tenant_Id', 'EVIL')]),
  dropped('lookalike of a default header: Content_Type', [h('Content_Type', 'EVIL/x')]),
  dropped('request id spoof', [h('X-Request-Id', 'EVIL')]),
  dropped('request id spoof with underscores', [h('X_Request_Id', 'EVIL')]),
  dropped('malformed traceparent', [h('traceparent', '00-EVIL-EVIL-01')]),
  // Method overrides: refused, never forwarded.
  refused('override: X-HTTP-Method-Override', 'method_override', [h('X-HTTP-Method-Override', 'DELETE')]),
  refused('override: X_HTTP_Method_Override', 'method_override', [h('X_HTTP_Method_Override', 'DELETE')]),
  refused('override: x.http.method.override', 'method_override', [h('x.http.method.override', 'DELETE')]),
  refused('override: X-HTTP-Method', 'method_override', [h('X-HTTP-Method', 'DELETE')]),
  refused('override: X-Method-Override', 'method_override', [h('X-Method-Override', 'DELETE')]),
  refused('override: _method in the query', 'method_override', [], { target: '/app/items?_method=DELETE' }),
  refused('override: _METHOD in the query', 'method_override', [], { target: '/app/items?a=1&_METHOD=DELETE' }),
  refused('override: escaped %5Fmethod in the query', 'method_override', [], { target: '/app/items?%5Fmethod=DELETE' }),
  refused('override: escaped name letters', 'method_override', [], { target: '/app/items?_%6Dethod=DELETE' }),
  refused('override: _method after a ;', 'method_override', [], { target: '/app/items?a=1;_method=DELETE' }),
  refused('override: X-HTTP-Method-Override in the query', 'method_override', [], { target: '/app/items?X-HTTP-Method-Override=DELETE' }),
  // URL-rewrite headers.
  refused('rewrite: X-Original-URL', 'header_forbidden', [h('X-Original-URL', '/admin')]),
  refused('rewrite: X_Original_URL', 'header_forbidden', [h('X_Original_URL', '/admin')]),
  refused('rewrite: X-Rewrite-URL', 'header_forbidden', [h('X-Rewrite-URL', '/admin')]),
  refused('rewrite: X-Original-URI', 'header_forbidden', [h('X-Original-URI', '/admin')]),
  // Framing: lookalikes of framing fields and a repeated Host close the connection.
  refused('framing: Transfer_Encoding beside Content-Length', 'header_forbidden', [h('Transfer_Encoding', 'chunked'), h('Content-Length', '4')], { body: 'EVIL', close: true, method: 'POST' }),
  refused('framing: Transfer.Encoding', 'header_forbidden', [h('Transfer.Encoding', 'chunked')], { close: true }),
  refused('framing: Content_Length', 'header_forbidden', [h('Content_Length', '4')], { close: true }),
  refused('framing: content.length', 'header_forbidden', [h('content.length', '0')], { close: true }),
  refused('framing: Content.Length beside Content-Length', 'header_forbidden', [h('Content-Length', '4'), h('Content.Length', '0')], { body: 'EVIL', close: true, method: 'POST' }),
  refused('framing: two Host fields', 'header_forbidden', [h('Host', '127.0.0.1'), h('Host', 'EVIL.example')], { close: true, noHost: true }),
  refused('framing: two Host fields, different case', 'header_forbidden', [h('host', '127.0.0.1'), h('HOST', 'EVIL.example')], { close: true, noHost: true }),
];

function requestBytes(c: HostileCase, token: string, keepAlive: boolean): string {
  let head = `${c.method ?? 'GET'} ${c.target ?? '/app/items'} HTTP/1.1\r\n`;
  if (c.noHost !== true) head += 'Host: 127.0.0.1\r\n';
  head += `Authorization: Bearer ${token}\r\n`;
  for (const [name, value] of c.headers) head += `${name}: ${value}\r\n`;
  if (!keepAlive && !c.headers.some(([n]) => n.toLowerCase() === 'connection')) head += 'Connection: close\r\n';
  return `${head}\r\n${c.body ?? ''}`;
}

/** What every forwarded request must look like, whatever the agent sent. */
function checkForwarded(t: Test, seen: RawSeenRequest): void {
  for (const [name] of seen.headers) {
    const lower = name.toLowerCase();
    t.ok(UPSTREAM_NAMES.has(lower), `header "${name}" is one the gateway may send`);
    t.equal(normaliseHeaderName(name), lower, `header "${name}" is spelled canonically`);
  }
  const values = (name: string): string[] => seen.headers.filter(([n]) => n.toLowerCase() === name).map(([, v]) => v);
  t.same(values('x-agentgate-agent'), ['app-agent-01'], 'one identity header, the gateway\'s');
  t.same(values('x-agentgate-role'), ['app']);
  t.same(values('x-forwarded-for'), ['127.0.0.1']);
  t.same(values('x-forwarded-proto'), ['http']);
  t.same(values('authorization'), [], 'the agent\'s credential never arrives');
}

async function setup(t: Test): Promise<{ gw: StartedGateway; backend: RawBackend; token: string }> {
  const backend = await startRawBackend(t);
  const dir = t.testdir({
    'app.yaml': [
      'backends:',
      '  app:',
      `    upstream: ${backend.url}`,
      '    forwardHeaders: [x-tenant-id, x-app-version]',
      '    forwardCookies: [lang, cart]',
      '    scopes:',
      '      items.read: ["GET /items", "GET /items/:id"]',
      '      items.write: ["POST /items", "DELETE /items/:id"]',
      'roles:',
      '  app:',
      '    grants: [app:items.read, app:items.write]',
      'agents:',
      '  app-agent-01: { role: app, owner: test }',
      '',
    ].join('\n'),
  });
  const gw = await startGateway(t, { policies: dir });
  return { gw, backend, token: await gw.token('app-agent-01') };
}

t.test('hostile request heads', async (t) => {
  t.ok(hostile.length >= 60, `${hostile.length} hostile requests`);
  const { gw, backend, token } = await setup(t);
  for (const c of hostile) {
    await t.test(c.name, async (t) => {
      const bytesBefore = backend.bytes().length;
      const requestsBefore = backend.requests.length;
      // Refusals are sent keep-alive, so a connection the gateway keeps open shows.
      const answer = await sendRaw(gw.port, requestBytes(c, token, c.status !== 200), { untilAnswered: c.close !== true });
      t.equal(answer.status, c.status, 'status');
      if (c.status === 200) {
        t.equal(backend.requests.length, requestsBefore + 1, 'forwarded once');
        const seen = backend.requests.at(-1);
        if (seen === undefined) throw new Error('nothing forwarded');
        checkForwarded(t, seen);
        const received = backend.bytes().subarray(bytesBefore).toString('latin1');
        t.notMatch(received, /EVIL/, 'no hostile name or value reached the backend');
        return;
      }
      t.match(JSON.parse(answer.body), { type: `urn:agentgate:problem:${c.reason}`, status: c.status });
      t.equal(backend.bytes().length, bytesBefore, 'the backend received nothing at all');
      if (c.close === true) {
        t.equal(answer.headers.connection, 'close', 'answered with Connection: close');
        t.ok(answer.closed, 'and the connection closed');
      }
    });
  }
  // Violations with a valid token are counted and audited like any other.
  const lines = await gw.auditLines();
  t.ok(lines.some((l) => l.reason === 'method_override'), 'method_override audited');
  t.ok(lines.some((l) => l.reason === 'header_forbidden'), 'header_forbidden audited');
});

t.test('what the backend lists arrives byte-exact', async (t) => {
  const { gw, backend, token } = await setup(t);
  const positive: ReadonlyArray<{ name: string; headers: readonly Header[]; expect: readonly Header[] }> = [
    {
      name: 'the safe defaults',
      headers: [
        h('Accept', 'application/json;q=0.9, text/plain ;q=0.1'),
        h('Accept-Language', 'en-GB,en;q=0.8'),
        h('Accept-Encoding', 'gzip, br'),
        h('Cache-Control', 'no-cache'),
        h('If-None-Match', 'W/"abc", "d e"'),
        h('If-Modified-Since', 'Wed, 21 Oct 2015 07:28:00 GMT'),
        h('Range', 'bytes=0-99'),
        h('User-Agent', 'agent/1.0 (+https://example.test)  x'),
      ],
      expect: [
        ['accept', 'application/json;q=0.9, text/plain ;q=0.1'],
        ['accept-language', 'en-GB,en;q=0.8'],
        ['accept-encoding', 'gzip, br'],
        ['cache-control', 'no-cache'],
        ['if-none-match', 'W/"abc", "d e"'],
        ['if-modified-since', 'Wed, 21 Oct 2015 07:28:00 GMT'],
        ['range', 'bytes=0-99'],
        ['user-agent', 'agent/1.0 (+https://example.test)  x'],
      ],
    },
    { name: 'forwardHeaders', headers: [h('X-Tenant-Id', 't-42/α?'.replace('α', 'a')), h('x-app-version', '3.1.4-rc.1')], expect: [['x-tenant-id', 't-42/a?'], ['x-app-version', '3.1.4-rc.1']] },
    {
      name: 'forwardCookies: listed cookies in order, the rest dropped',
      headers: [h('Cookie', `session=s3cr3t; lang=en-GB; token=${JWT}; cart=a%3Db|c; other=1`)],
      expect: [['cookie', 'lang=en-GB; cart=a%3Db|c']],
    },
    { name: 'a trace continued', headers: [h('traceparent', '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'), h('tracestate', 'vendor=1')], expect: [['tracestate', 'vendor=1']] },
  ];
  for (const c of positive) {
    await t.test(c.name, async (t) => {
      const answer = await sendRaw(gw.port, requestBytes({ name: c.name, headers: c.headers, status: 200 }, token, false));
      t.equal(answer.status, 200);
      const seen = backend.requests.at(-1);
      if (seen === undefined) throw new Error('nothing forwarded');
      checkForwarded(t, seen);
      for (const [name, value] of c.expect) {
        t.same(seen.headers.filter(([n]) => n === name).map(([, v]) => v), [value], `${name} byte-exact`);
      }
    });
  }

  await t.test('a POST body arrives byte-exact', async (t) => {
    const body = Buffer.concat([Buffer.from('{"name":"caf\u00e9","n":1}', 'utf8'), Buffer.from([0, 1, 2, 0xff, 0x0d, 0x0a])]);
    const head = `POST /app/items HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/octet-stream\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`;
    const answer = await sendRaw(gw.port, Buffer.concat([Buffer.from(head, 'latin1'), body]));
    t.equal(answer.status, 200);
    const seen = backend.requests.at(-1);
    if (seen === undefined) throw new Error('nothing forwarded');
    t.equal(seen.requestLine, 'POST /items HTTP/1.1');
    t.same(seen.headers.filter(([n]) => n === 'content-length').map(([, v]) => v), [String(body.length)]);
    t.ok(seen.body.equals(body), 'body byte-exact');
  });
});

t.test('a WebSocket upgrade passes through the same allowlist', async (t) => {
  const seen: IncomingMessage[] = [];
  const server = createServer();
  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req, socket, head) => {
    seen.push(req);
    wss.handleUpgrade(req, socket, head, (ws) => ws.on('message', (data) => ws.send(`echo:${String(data)}`)));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    for (const c of wss.clients) c.terminate();
    wss.close();
    server.closeAllConnections();
    server.close();
  });
  const port = (server.address() as AddressInfo).port;
  const dir = t.testdir({
    'live.yaml': [
      'backends:',
      '  live:',
      `    upstream: http://127.0.0.1:${port}`,
      '    forwardHeaders: [x-tenant-id]',
      '    scopes:',
      '      events: ["GET /events"]',
      'roles:',
      '  watcher:',
      '    grants: [live:events]',
      'agents:',
      '  watcher-01: { role: watcher, owner: test }',
      '',
    ].join('\n'),
  });
  const gw = await startGateway(t, { policies: dir });
  const token = await gw.token('watcher-01');
  const ws = new WebSocket(`${gw.url.replace('http:', 'ws:')}/live/events`, {
    headers: {
      authorization: `Bearer ${token}`,
      X_AgentGate_Agent: 'EVIL-admin',
      'X.AgentGate.Role': 'EVIL-root',
      'X-AgentGate-Agent': 'EVIL-admin',
      X_Forwarded_For: 'EVIL',
      'X-Api-Key': 'EVIL',
      Cookie: 'session=EVIL',
      'X-Tenant-Id': 'tenant-7',
    },
  });
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  ws.send('hello');
  t.equal(await new Promise<string>((resolve) => ws.once('message', (d) => resolve(String(d)))), 'echo:hello');
  const closed = new Promise((resolve) => ws.once('close', resolve));
  ws.close();
  await closed;
  // The gateway accounts for the upgrade when its side closes: wait for that audit line.
  for (let i = 0; i < 100 && !(await gw.auditLines()).some((l) => l.status === 101); i++) await new Promise((r) => setTimeout(r, 20));
  const req = seen.at(-1);
  if (req === undefined) throw new Error('no upgrade reached the backend');
  const raw = req.rawHeaders;
  const names = raw.filter((_, i) => i % 2 === 0);
  t.same(names.filter((n) => normaliseHeaderName(n).startsWith('x-agentgate-')).map((n) => n.toLowerCase()).sort(), ['x-agentgate-agent', 'x-agentgate-role'], 'only the gateway\'s identity headers');
  for (const n of names) t.equal(normaliseHeaderName(n), n.toLowerCase(), `"${n}" is spelled canonically`);
  t.notOk(raw.some((v) => v.includes('EVIL')), 'no spoofed name or value reached the WebSocket backend');
  t.equal(req.headers['x-agentgate-agent'], 'watcher-01');
  t.equal(req.headers['x-agentgate-role'], 'watcher');
  t.equal(req.headers['x-tenant-id'], 'tenant-7', 'the backend\'s forwardHeaders pass');
  t.equal(req.headers.authorization, undefined);
  t.equal(req.headers.cookie, undefined);
});
