// Forwarding over real sockets: what the backend receives (credential stripped, identity and
// provenance set by the gateway alone, path byte-exact), what the agent receives back, and
// redirects that would leave the backend's origin.
import t from 'tap';
import { connect } from 'node:net';
import { request } from 'undici';
import { startGateway, startUpstream } from '../helpers/gateway.js';
import { buildRequest, rawRequest } from '../helpers/raw.js';

const ALL = ['crm', 'content', 'tickets', 'kb', 'bi'];

t.test('what the backend receives on an allowed call', async (t) => {
  const upstream = await startUpstream(t);
  const gw = await startGateway(t, { upstreams: Object.fromEntries(ALL.map((b) => [b, upstream.url])) });
  const token = await gw.token('marketing-agent-03');

  // Raw bytes, so the Connection header and the spoofed headers reach the gateway as written.
  const res = await rawRequest(
    gw.port,
    buildRequest('GET', '/crm/contacts/%c3%a9?q=a%20b&tag=x', {
      authorization: `Bearer ${token}`,
      'x-agentgate-agent': 'admin',
      'X-AgentGate-Role': 'root',
      'x-forwarded-for': '10.0.0.1',
      'x-forwarded-host': 'evil.example',
      forwarded: 'for=10.0.0.1',
      'x-request-id': 'spoofed',
      connection: 'x-secret, close',
      'x-secret': 'must not pass',
      'proxy-authorization': 'Basic eA==',
      te: 'trailers',
      traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
      accept: 'application/json',
    }),
  );
  t.equal(res.status, 200);
  t.match(JSON.parse(res.body), { url: '/contacts/%C3%A9?q=a%20b&tag=x' });
  const seen = upstream.seen.at(-1);
  if (seen === undefined) throw new Error('backend saw nothing');
  t.equal(seen.url, '/contacts/%C3%A9?q=a%20b&tag=x', 'path canonical and query byte-exact');
  t.equal(seen.headers.authorization, undefined, 'Authorization stripped');
  t.equal(seen.headers['x-agentgate-agent'], 'marketing-agent-03');
  t.equal(seen.headers['x-agentgate-role'], 'marketing');
  t.equal(countRaw(seen.rawHeaders, 'x-agentgate-agent'), 1, 'one identity header, the gateway\'s');
  t.equal(countRaw(seen.rawHeaders, 'x-agentgate-role'), 1);
  t.equal(seen.headers['x-forwarded-for'], '127.0.0.1', 'client-sent X-Forwarded-For replaced');
  t.equal(seen.headers['x-forwarded-proto'], 'http');
  t.equal(seen.headers['x-forwarded-host'], '127.0.0.1', 'the Host the agent used');
  t.equal(seen.headers.forwarded, undefined);
  t.equal(seen.headers['x-secret'], undefined, 'header named in Connection stripped');
  t.equal(seen.headers['proxy-authorization'], undefined);
  t.equal(seen.headers.te, undefined);
  t.equal(seen.headers.accept, 'application/json', 'end-to-end headers pass');
  t.equal(seen.headers['x-request-id'], res.headers['x-request-id'], 'request id shared with the agent');
  t.not(seen.headers['x-request-id'], 'spoofed');
  t.match(seen.headers.traceparent, /^00-0af7651916cd43dd8448eb211c80319c-[0-9a-f]{16}-01$/, 'trace continued');
  t.not(seen.headers.traceparent, '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', 'new parent id');
});

t.test('answer headers go by allowlist (hop-by-hop and unlisted ones stay behind), request id added', async (t) => {
  const upstream = await startUpstream(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', connection: 'etag', etag: '"leak"', 'keep-alive': 'timeout=99, max=7', 'x-internal': 'leak', 'cache-control': 'max-age=1' });
    res.end('hi');
  });
  const gw = await startGateway(t, { upstreams: { content: upstream.url } });
  const token = await gw.token('marketing-agent-03');
  const res = await request(`${gw.url}/content/assets`, { headers: { authorization: `Bearer ${token}` } });
  t.equal(await res.body.text(), 'hi');
  t.equal(res.headers.etag, undefined, 'named in Connection: hop-by-hop, though allowlisted');
  t.notMatch(res.headers['keep-alive'] ?? '', /99/, 'the backend\'s Keep-Alive stays behind (the gateway states its own)');
  t.equal(res.headers['x-internal'], undefined, 'not on the allowlist');
  t.equal(res.headers['cache-control'], 'max-age=1', 'a default passes as sent');
  t.match(res.headers['x-request-id'], /^[0-9a-f-]{36}$/);
});

t.test('upstream redirects', async (t) => {
  const cases = [
    { name: 'to another origin: refused', location: 'http://evil.example/steal', status: 502, expect: null },
    { name: 'protocol-relative to another host: refused', location: '//evil.example/x', status: 502, expect: null },
    { name: 'same origin, absolute: rewritten to the gateway path', location: 'SELF/assets/2?x=1', status: 302, expect: '/content/assets/2?x=1' },
    { name: 'relative path: rewritten', location: '/assets/3', status: 302, expect: '/content/assets/3' },
  ];
  for (const c of cases) {
    await t.test(c.name, async (t) => {
      let self = '';
      const upstream = await startUpstream(t, (_req, res) => {
        res.writeHead(302, { location: c.location.replace('SELF', self) });
        res.end();
      });
      self = upstream.url;
      const gw = await startGateway(t, { upstreams: { content: upstream.url } });
      const token = await gw.token('marketing-agent-03');
      const res = await request(`${gw.url}/content/assets`, { headers: { authorization: `Bearer ${token}` } });
      const body = await res.body.text();
      t.equal(res.statusCode, c.status);
      if (c.expect === null) {
        t.match(JSON.parse(body), { type: 'urn:agentgate:problem:upstream_redirect' });
        t.notMatch(body, /evil/);
      } else {
        t.equal(res.headers.location, c.expect);
      }
    });
  }
});

t.test('a refused upload closes the connection instead of reading the body', async (t) => {
  const upstream = await startUpstream(t);
  const gw = await startGateway(t, { upstreams: { crm: upstream.url } });
  const socket = connect(gw.port, '127.0.0.1');
  t.teardown(() => socket.destroy());
  await new Promise((r) => socket.once('connect', r));
  socket.write('POST /crm/contacts HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nGET /crm/contacts HTTP/1.1\r\nHost: x\r\n\r\n');
  let text = '';
  socket.setEncoding('utf8').on('data', (d: string) => (text += d));
  await new Promise((r) => socket.once('close', r));
  t.match(text, /^HTTP\/1\.1 401 /);
  t.match(text, /connection: close/i);
  t.equal(text.match(/HTTP\/1\.1/g)?.length, 1, 'the body was never parsed as a second request');
  t.equal(upstream.seen.length, 0);
});

function countRaw(raw: readonly string[], name: string): number {
  let n = 0;
  for (let i = 0; i < raw.length; i += 2) if (raw[i]?.toLowerCase() === name) n++;
  return n;
}
