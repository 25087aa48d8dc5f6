// Answers carry back only what was checked: a backend that answers with cookies it was not allowed
// to set, its server banner, its auth challenge, hop-by-hop fields, the gateway's own names, or a
// location on another origin has all of it left behind, on the plain path, the filtered (masked)
// path and WebSocket upgrades alike. The backend writes raw response heads (no HTTP library
// tidies them); the agent's side reads raw bytes, so a header that got through shows.
import t from 'tap';
import type { Test } from 'tap';
import { createHash } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { startGateway, type StartedGateway } from '../helpers/gateway.js';
import { buildRequest, rawRequest } from '../helpers/raw.js';
import { listenRaw } from '../helpers/raw-backend.js';

type Header = readonly [string, string];

interface AnswerCase {
  readonly name: string;
  /** The backend's status; default 200. */
  readonly status?: number;
  /** Header lines the backend answers with (its content-type and length come on top). */
  readonly headers: readonly Header[];
  /** Headers the agent must receive, exactly (name lower-case; repeated ones joined with ", "). */
  readonly keep?: readonly Header[];
  /** The agent's status when it differs from the backend's. */
  readonly answer?: number;
}

const h = (name: string, value: string): Header => [name, value];
const JWT = 'eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJFVklMIn0.c2ln';

/** Filled in once the backend listens: its own origin, for locations that stay on it. */
let ORIGIN = '';

// Every value that must not reach the agent carries "EVIL".
const cases: readonly AnswerCase[] = [
  { name: 'a cookie the backend may not set', headers: [h('Set-Cookie', 'session=EVIL-admin; Path=/; HttpOnly')] },
  { name: 'a listed cookie carrying a token', headers: [h('Set-Cookie', `lang=${JWT}; Path=/`)] },
  { name: 'a listed cookie saying Bearer', headers: [h('Set-Cookie', 'lang=Bearer EVIL')] },
  { name: 'a cookie under a lookalike name', headers: [h('Set_Cookie', 'lang=EVIL')] },
  { name: 'Set-Cookie2', headers: [h('Set-Cookie2', 'lang=EVIL; Version=1')] },
  {
    name: 'a listed cookie passes, its unlisted neighbour does not',
    headers: [h('Set-Cookie', 'lang=en-GB; Path=/; Max-Age=60'), h('Set-Cookie', 'sid=EVIL; Path=/')],
    keep: [h('set-cookie', 'lang=en-GB; Path=/; Max-Age=60')],
  },
  { name: 'the server banner', headers: [h('Server', 'EVIL/1.0'), h('X-Powered-By', 'EVIL')] },
  { name: 'the backend\'s auth challenge', status: 401, headers: [h('WWW-Authenticate', 'Basic realm="EVIL admin"')] },
  { name: 'a proxy challenge', headers: [h('Proxy-Authenticate', 'Basic realm="EVIL"')] },
  { name: 'an alternative service for the gateway\'s origin', headers: [h('Alt-Svc', 'h3=":4433"; ma=EVIL')] },
  { name: 'HSTS for the gateway\'s origin', headers: [h('Strict-Transport-Security', 'max-age=1; EVIL')] },
  { name: 'the gateway\'s identity header', headers: [h('X-AgentGate-Agent', 'EVIL-admin')] },
  { name: 'the gateway\'s request id', headers: [h('X-Request-Id', 'EVIL-id')] },
  { name: 'RateLimit fields the gateway did not set', headers: [h('RateLimit', '"EVIL";r=999'), h('RateLimit-Policy', '"EVIL";q=999')] },
  { name: 'an MCP session id from a REST backend', headers: [h('Mcp-Session-Id', 'EVIL-session')] },
  { name: 'forwarding headers', headers: [h('X-Forwarded-For', 'EVIL'), h('Via', '1.1 EVIL'), h('Forwarded', 'for=EVIL')] },
  { name: 'internal headers', headers: [h('X-Backend-Host', 'EVIL-db-01'), h('X-Debug-Token', 'EVIL')] },
  { name: 'an unlisted Link', headers: [h('Link', '<http://10.0.0.7/EVIL>; rel="next"')] },
  { name: 'hop-by-hop fields', headers: [h('Keep-Alive', 'timeout=5, EVIL=1'), h('Trailer', 'X-EVIL'), h('Upgrade', 'EVIL/1')] },
  { name: 'a default header named in Connection', headers: [h('Connection', 'etag, x-total-count'), h('ETag', '"EVIL"'), h('X-Total-Count', '666-EVIL')] },
  {
    name: 'the defaults and the listed names pass as sent',
    headers: [h('ETag', 'W/"v1"'), h('Cache-Control', 'private, max-age=5'), h('Vary', 'Accept'), h('X-Total-Count', '42'), h('Content-Language', 'en')],
    keep: [h('etag', 'W/"v1"'), h('cache-control', 'private, max-age=5'), h('vary', 'Accept'), h('x-total-count', '42'), h('content-language', 'en')],
  },
  { name: 'a Location on another origin, outside a redirect', status: 201, headers: [h('Location', 'http://evil.example/EVIL')] },
  { name: 'a Content-Location on another origin', headers: [h('Content-Location', 'https://evil.example/EVIL')] },
  { name: 'a protocol-relative Location', status: 201, headers: [h('Location', '//evil.example/EVIL')] },
  { name: 'a repeated Location', status: 201, headers: [h('Location', '/items/1'), h('Location', 'http://evil.example/EVIL')] },
  {
    name: 'locations on the backend are rewritten to the gateway path',
    status: 201,
    headers: [h('Location', '/items/7?v=2'), h('Content-Location', '{origin}/items/7')],
    keep: [h('location', '/app/items/7?v=2'), h('content-location', '/app/items/7')],
  },
  { name: 'a redirect to another origin is refused', status: 302, headers: [h('Location', 'http://evil.example/EVIL')], answer: 502 },
];

/** A backend on a bare TCP server: `GET /items/N` answers with case N's head, raw. */
async function startBackend(t: Test): Promise<{ url: string }> {
  return listenRaw(t, (socket) => {
    let pending = '';
    socket.on('data', (data: Buffer) => {
      pending += data.toString('latin1');
      for (let end = pending.indexOf('\r\n\r\n'); end !== -1; end = pending.indexOf('\r\n\r\n')) {
        const head = pending.slice(0, end);
        pending = pending.slice(end + 4);
        answer(socket, head);
      }
    });
  });
}

function answer(socket: Socket, head: string): void {
  const target = /^GET (\S+) /.exec(head)?.[1] ?? '';
  const lines = (headers: readonly Header[]): string => headers.map(([n, v]) => `${n}: ${v.replace('{origin}', ORIGIN)}\r\n`).join('');
  if (target === '/ws') {
    const key = /^sec-websocket-key: *(\S+)/im.exec(head)?.[1] ?? '';
    const accept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
    socket.write(
      'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        `Sec-WebSocket-Accept: ${accept}\r\n` +
        lines([h('Set-Cookie', 'sid=EVIL'), h('Set-Cookie', 'lang=fr'), h('Server', 'EVIL'), h('X-AgentGate-Role', 'EVIL'), h('X-Total-Count', '3'), h('Alt-Svc', 'EVIL')]) +
        '\r\n',
    );
    return;
  }
  if (target === '/ws-refused') {
    socket.end(
      'HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\nTransfer-Encoding: chunked\r\n' +
        lines([h('Set-Cookie', 'sid=EVIL'), h('WWW-Authenticate', 'Basic realm="EVIL"'), h('Location', 'http://evil.example/EVIL'), h('Server', 'EVIL')]) +
        '\r\n5\r\nnope!\r\n0\r\n\r\n',
    );
    return;
  }
  if (target === '/ws-redirect') {
    socket.end('HTTP/1.1 302 Found\r\nLocation: http://evil.example/EVIL\r\nContent-Location: /items/7\r\ncontent-length: 0\r\n\r\n');
    return;
  }
  const c = cases[Number(/^\/items\/(\d+)$/.exec(target)?.[1] ?? -1)];
  const status = c?.status ?? 200;
  const body = JSON.stringify({ id: '1', secret: 'hidden', name: 'n' });
  socket.write(`HTTP/1.1 ${status} X\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n${lines(c?.headers ?? [])}\r\n${body}`);
}

async function setup(t: Test): Promise<{ gw: StartedGateway; plain: string; masked: string }> {
  const backend = await startBackend(t);
  ORIGIN = backend.url;
  const dir = t.testdir({
    'app.yaml': [
      'backends:',
      '  app:',
      `    upstream: ${backend.url}`,
      '    forwardCookies: [lang]',
      '    responseHeaders: [x-total-count]',
      '    scopes:',
      '      read: ["GET /items/:id", "GET /ws", "GET /ws-refused", "GET /ws-redirect"]',
      'roles:',
      '  plain:',
      '    grants: [app:read]',
      '  masked:',
      '    grants: [app:read]',
      '    mask: { app: [secret] }',
      'agents:',
      '  plain-agent: { role: plain, owner: test }',
      '  masked-agent: { role: masked, owner: test }',
      '',
    ].join('\n'),
  });
  const gw = await startGateway(t, { policies: dir });
  return { gw, plain: await gw.token('plain-agent'), masked: await gw.token('masked-agent') };
}

t.test('a backend\'s answer headers: only the allowlisted ones reach the agent', async (t) => {
  const { gw, plain, masked } = await setup(t);
  for (const [path, token] of [['plain path', plain], ['masked path', masked]] as const) {
    await t.test(path, async (t) => {
      for (const [i, c] of cases.entries()) {
        await t.test(c.name, async (t) => {
          const res = await rawRequest(gw.port, buildRequest('GET', `/app/items/${i}`, { authorization: `Bearer ${token}` }));
          const status = c.answer ?? c.status ?? 200;
          t.equal(res.status, status, 'status');
          const head = res.text.slice(0, res.text.indexOf('\r\n\r\n'));
          t.notMatch(head, /EVIL/, 'nothing the backend may not say reached the agent');
          for (const [name, value] of c.keep ?? []) {
            // A masked body is another body: its validator no longer holds.
            if (token === masked && name === 'etag') t.equal(res.headers.etag, undefined, 'etag dropped with the body changed');
            else t.equal(res.headers[name], value, `${name} passed as sent`);
          }
          t.match(res.headers['x-request-id'] ?? '', /^[0-9a-f-]{36}$/, 'the gateway\'s own request id');
          if (status === 200) {
            t.equal(res.headers['content-type'], 'application/json');
            const body = JSON.parse(res.body) as Record<string, unknown>;
            t.equal(body.secret, token === masked ? '[masked]' : 'hidden', 'the body took its path');
          }
        });
      }
    });
  }
});

/** Send a WebSocket handshake; resolve with the answer head and the rest read until close or a pause. */
function handshake(port: number, path: string, token: string): Promise<{ head: string; rest: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let seen = '';
    const finish = (): void => {
      socket.destroy();
      const end = seen.indexOf('\r\n\r\n');
      resolve({ head: end === -1 ? seen : seen.slice(0, end), rest: end === -1 ? '' : seen.slice(end + 4) });
    };
    socket.on('data', (d: Buffer) => {
      seen += d.toString('latin1');
      // A 101 leaves the socket open: its head is all there is to read.
      if (seen.startsWith('HTTP/1.1 101') && seen.includes('\r\n\r\n')) finish();
    });
    socket.on('close', finish);
    socket.on('error', reject);
    socket.write(
      `GET /app/${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer ${token}\r\n\r\n`,
    );
  });
}

t.test('WebSocket: the 101 and a refused upgrade carry only allowlisted headers', async (t) => {
  const { gw, plain } = await setup(t);
  const upgraded = await handshake(gw.port, 'ws', plain);
  t.match(upgraded.head, /^HTTP\/1\.1 101 /, 'switched');
  t.notMatch(upgraded.head, /EVIL/, 'nothing the backend may not say reached the agent');
  t.match(upgraded.head, /\r\nsec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=/i, 'the handshake answer passed');
  t.match(upgraded.head, /\r\nupgrade: websocket/i);
  t.match(upgraded.head, /\r\nconnection: upgrade/i);
  t.match(upgraded.head, /\r\nset-cookie: lang=fr/i, 'the listed cookie passed');
  t.match(upgraded.head, /\r\nx-total-count: 3/i, 'the listed header passed');

  const refused = await handshake(gw.port, 'ws-refused', plain);
  t.match(refused.head, /^HTTP\/1\.1 403 /, 'the backend\'s refusal passed');
  t.notMatch(refused.head, /EVIL/, 'with nothing the backend may not say');
  t.notMatch(refused.head, /transfer-encoding/i, 'no chunked framing over a body written decoded');
  t.match(refused.head, /\r\nconnection: close/i, 'the body ends with the connection');
  t.equal(refused.rest, 'nope!', 'the body as the backend meant it');

  // An upgrade answered with a redirect elsewhere: http-proxy passes the answer on, so the
  // gateway cannot refuse it; the location is dropped, the one on the backend rewritten.
  const redirected = await handshake(gw.port, 'ws-redirect', plain);
  t.match(redirected.head, /^HTTP\/1\.1 302 /);
  t.notMatch(redirected.head, /EVIL|\r\nlocation:/i, 'no location elsewhere');
  t.match(redirected.head, /\r\ncontent-location: \/app\/items\/7/i, 'a location on the backend, rewritten');
});
