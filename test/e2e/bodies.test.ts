// Issue 10, bodies and framing: a body only where a route takes one, framing decided once, and no
// upstream byte before the request is whole and checked. The backend records every byte on its TCP
// socket, so "nothing delivered" means nothing at all. Also the server limits: body idle timeout,
// header timeout (408) and oversized headers (431), each with its problem document.
import t from 'tap';
import type { Test } from 'tap';
import { connect } from 'node:net';
import { startGateway, type StartedGateway } from '../helpers/gateway.js';
import { sendRaw } from '../helpers/raw.js';
import { startRawBackend, type RawBackend } from '../helpers/raw-backend.js';

async function setup(t: Test): Promise<{ gw: StartedGateway; backend: RawBackend; token: string }> {
  const backend = await startRawBackend(t);
  const dir = t.testdir({
    'app.yaml': [
      'backends:',
      '  app:',
      `    upstream: ${backend.url}`,
      '    scopes:',
      '      items: ["GET /items", "POST /items", "DELETE /items/:id", "OPTIONS /items", "ANY /any"]',
      '      search:',
      '        - route: GET /search',
      '          body: true',
      'roles:',
      '  app:',
      '    grants: [app:items, app:search]',
      'agents:',
      '  app-agent-01: { role: app, owner: test }',
      '',
    ].join('\n'),
  });
  const gw = await startGateway(t, { policies: dir, limits: { maxBodyBytes: 4096, bodyIdleTimeout: '1s', headersTimeout: '1s', requestTimeout: '30s' } });
  return { gw, backend, token: await gw.token('app-agent-01') };
}

const head = (method: string, target: string, token: string, headers: readonly string[] = []): string =>
  `${method} ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${token}\r\n${headers.map((h) => `${h}\r\n`).join('')}\r\n`;

t.test('bodies and framing', async (t) => {
  const { gw, backend, token } = await setup(t);
  const smuggled = 'GET /admin HTTP/1.1\r\nHost: x\r\n\r\n';
  const refusals: ReadonlyArray<{ name: string; bytes: () => string; status: number; reason: string | null }> = [
    { name: 'GET with a Content-Length body', bytes: () => head('GET', '/app/items', token, ['Content-Length: 4']) + 'EVIL', status: 400, reason: 'body_unexpected' },
    { name: 'GET whose body is a smuggled request', bytes: () => head('GET', '/app/items', token, [`Content-Length: ${smuggled.length}`]) + smuggled, status: 400, reason: 'body_unexpected' },
    { name: 'GET with a chunked body', bytes: () => head('GET', '/app/items', token, ['Transfer-Encoding: chunked']) + '4\r\nEVIL\r\n0\r\n\r\n', status: 400, reason: 'body_unexpected' },
    // A HEAD answer carries no body, so only the status shows.
    { name: 'HEAD with a body', bytes: () => head('HEAD', '/app/items', token, ['Content-Length: 4']) + 'EVIL', status: 400, reason: null },
    { name: 'DELETE with a body', bytes: () => head('DELETE', '/app/items/7', token, ['Content-Length: 4']) + 'EVIL', status: 400, reason: 'body_unexpected' },
    { name: 'OPTIONS with a body', bytes: () => head('OPTIONS', '/app/items', token, ['Content-Length: 4']) + 'EVIL', status: 400, reason: 'body_unexpected' },
    { name: 'GET on an ANY route with a body', bytes: () => head('GET', '/app/any', token, ['Content-Length: 4']) + 'EVIL', status: 400, reason: 'body_unexpected' },
    { name: 'TRACE on an ANY route with a body', bytes: () => head('TRACE', '/app/any', token, ['Content-Length: 4']) + 'EVIL', status: 400, reason: 'body_unexpected' },
    { name: 'Content-Length beside Transfer-Encoding', bytes: () => head('POST', '/app/items', token, ['Content-Length: 4', 'Transfer-Encoding: chunked']) + '4\r\nEVIL\r\n0\r\n\r\n', status: 400, reason: null },
    { name: 'Transfer-Encoding other than chunked beside Content-Length', bytes: () => head('POST', '/app/items', token, ['Content-Length: 4', 'Transfer-Encoding: gzip']) + 'EVIL', status: 400, reason: null },
    { name: 'two differing Content-Length fields', bytes: () => head('POST', '/app/items', token, ['Content-Length: 4', 'Content-Length: 5']) + 'EVIL!', status: 400, reason: null },
    { name: 'a malformed chunk size', bytes: () => head('POST', '/app/items', token, ['Transfer-Encoding: chunked']) + '4\r\nEVIL\r\nZZ\r\nEVIL\r\n0\r\n\r\n', status: 400, reason: 'target_invalid' },
    { name: 'a chunk longer than declared', bytes: () => head('POST', '/app/items', token, ['Transfer-Encoding: chunked']) + '2\r\nEVIL\r\n0\r\n\r\n', status: 400, reason: 'target_invalid' },
    { name: 'a chunked body over maxBodyBytes', bytes: () => head('POST', '/app/items', token, ['Transfer-Encoding: chunked']) + `1000\r\n${'E'.repeat(4096)}\r\n1\r\nV\r\n0\r\n\r\n`, status: 413, reason: 'body_too_large' },
    { name: 'a declared body over maxBodyBytes', bytes: () => head('POST', '/app/items', token, ['Content-Length: 5000']) + 'EVIL', status: 413, reason: 'body_too_large' },
  ];
  for (const c of refusals) {
    await t.test(c.name, async (t) => {
      const before = backend.bytes().length;
      // Keep-alive on purpose: the gateway must close the connection itself.
      const answer = await sendRaw(gw.port, c.bytes());
      t.equal(answer.status, c.status, 'status');
      if (c.reason !== null) t.match(JSON.parse(answer.body), { type: `urn:agentgate:problem:${c.reason}`, status: c.status });
      t.ok(answer.closed, 'the gateway closed the connection');
      t.equal(backend.bytes().length, before, 'the backend received nothing at all');
    });
  }

  await t.test('a chunked body whose end never comes: 408, nothing delivered', async (t) => {
    const before = backend.bytes().length;
    const answer = await sendRaw(gw.port, head('POST', '/app/items', token, ['Transfer-Encoding: chunked', 'Content-Type: application/json']) + '4\r\nEVIL\r\n');
    t.equal(answer.status, 408);
    t.match(JSON.parse(answer.body), { type: 'urn:agentgate:problem:request_timeout', status: 408 });
    t.ok(answer.closed);
    t.equal(backend.bytes().length, before, 'the backend received nothing at all');
  });

  const accepted: ReadonlyArray<{ name: string; bytes: () => string; line: string; body: string }> = [
    { name: 'GET with Content-Length: 0', bytes: () => head('GET', '/app/items', token, ['Content-Length: 0', 'Connection: close']), line: 'GET /items HTTP/1.1', body: '' },
    { name: 'GET with a body where the route says body: true', bytes: () => head('GET', '/app/search', token, ['Content-Length: 13', 'Content-Type: application/json', 'Connection: close']) + '{"q":"EVIL?"}', line: 'GET /search HTTP/1.1', body: '{"q":"EVIL?"}' },
    { name: 'POST chunked: framed once, forwarded with a Content-Length', bytes: () => head('POST', '/app/items', token, ['Transfer-Encoding: chunked', 'Connection: close']) + '3\r\nab\n\r\n5;ext=1\r\n\r\n\u00ff\u0000x\r\n0\r\n\r\n', line: 'POST /items HTTP/1.1', body: 'ab\n\r\n\u00ff\u0000x' },
  ];
  for (const c of accepted) {
    await t.test(c.name, async (t) => {
      const answer = await sendRaw(gw.port, c.bytes());
      t.equal(answer.status, 200);
      const seen = backend.requests.at(-1);
      if (seen === undefined) throw new Error('nothing forwarded');
      t.equal(seen.requestLine, c.line);
      t.equal(seen.body.toString('latin1'), c.body, 'body byte-exact');
      const names = seen.headers.map(([n]) => n.toLowerCase());
      t.notOk(names.includes('transfer-encoding'), 'no chunked framing upstream');
      if (c.body !== '') t.same(seen.headers.filter(([n]) => n.toLowerCase() === 'content-length').map(([, v]) => v), [String(Buffer.byteLength(c.body, 'latin1'))]);
    });
  }
});

t.test('server limits', async (t) => {
  const { gw, backend, token } = await setup(t);

  await t.test('a head that never ends: 408 request_timeout, not 400', async (t) => {
    const answer = await sendRaw(gw.port, `GET /app/items HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${token}\r\n`, { waitMs: 15_000 });
    t.equal(answer.status, 408);
    t.match(JSON.parse(answer.body), { type: 'urn:agentgate:problem:request_timeout', status: 408 });
    t.ok(answer.closed);
  });

  await t.test('oversized headers: 431 with a 431 problem document', async (t) => {
    const answer = await sendRaw(gw.port, `GET /app/items HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`);
    t.equal(answer.status, 431);
    t.match(JSON.parse(answer.body), { type: 'urn:agentgate:problem:headers_too_large', status: 431 });
  });

  await t.test('a body the gateway must read stalls: 408 (bodyIdleTimeout)', async (t) => {
    const before = backend.bytes().length;
    const socket = connect(gw.port, '127.0.0.1');
    const chunks: Buffer[] = [];
    socket.on('data', (d: Buffer) => chunks.push(d));
    socket.write(head('POST', '/app/items', token, ['Transfer-Encoding: chunked']) + '1\r\nE\r\n');
    await new Promise((resolve) => socket.once('close', resolve));
    t.match(Buffer.concat(chunks).toString('latin1'), /^HTTP\/1\.1 408 /);
    t.equal(backend.bytes().length, before);
    const lines = await gw.auditLines();
    t.ok(lines.some((l) => l.reason === 'request_timeout' && l.status === 408), 'audited as request_timeout');
  });
});
