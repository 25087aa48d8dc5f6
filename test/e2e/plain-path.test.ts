// The plain path (issue 13): a route no response filter applies to (`content` for the marketing
// agent: no masking, not MCP) has its upstream body handed from undici straight to the client
// socket. What must hold there as on the Readable path: bodiless answers and informational heads,
// an upstream cut mid-body ending the client's response (never a short body taken as whole) with
// its `phase: end` audit line, a client that leaves, and an abort (kill) before and after the head.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, constants, openSync } from 'node:fs';
import { mkdir, open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { connect, type Socket } from 'node:net';
import type { ServerResponse } from 'node:http';
import { request } from 'undici';
import { startGateway, startUpstream } from '../helpers/gateway.js';

const AGENT = 'marketing-agent-03';
const PLAIN = '/content/assets';

/** Resolves once `fn` returns true, polling; fails after `ms`. */
async function until(fn: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error('condition not reached in time');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Send raw HTTP/1.1 bytes and collect everything until the gateway closes or `idleMs` passes without bytes. */
function exchange(port: number, bytes: string, idleMs = 1500): Promise<{ text: string; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let text = '';
    let timer: NodeJS.Timeout | null = null;
    const idle = (): void => {
      if (timer !== null) clearTimeout(timer);
      timer = setTimeout(() => {
        socket.destroy();
        resolve({ text, closed: false });
      }, idleMs);
    };
    socket.on('data', (d: Buffer) => {
      text += d.toString('latin1');
      idle();
    });
    socket.on('close', () => {
      if (timer !== null) clearTimeout(timer);
      resolve({ text, closed: true });
    });
    socket.on('error', reject);
    socket.write(bytes);
    idle();
  });
}

t.test('bodiless answers and informational heads pass as the backend sent them', async (t) => {
  const upstream = await startUpstream(t, (req, res) => {
    const kind = new URL(req.url ?? '/', 'http://x').searchParams.get('kind');
    if (kind === '204') return void res.writeHead(204, { 'cache-control': 'no-store' }).end();
    if (kind === '304') return void res.writeHead(304, { etag: '"v1"' }).end();
    if (kind === '103') {
      res.writeEarlyHints({ link: '</style.css>; rel=preload; as=style' });
      return void res.writeHead(200, { 'content-type': 'text/plain' }).end('after hints');
    }
    if (kind === 'chunks') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      let i = 0;
      const next = (): void => {
        if (i === 5) return void res.end('end');
        res.write(`part${i++};`);
        setImmediate(next);
      };
      return next();
    }
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '11' });
    res.end(req.method === 'HEAD' ? undefined : 'hello world');
  });
  const gw = await startGateway(t, { upstreams: { content: upstream.url } });
  const token = await gw.token(AGENT);
  const cases = [
    { name: 'HEAD keeps the length, sends no body', method: 'HEAD', query: '', status: 200, body: '', headers: { 'content-length': '11' } },
    { name: '204 No Content', method: 'GET', query: '?kind=204', status: 204, body: '', headers: { 'cache-control': 'no-store' } },
    { name: '304 Not Modified', method: 'GET', query: '?kind=304', status: 304, body: '', headers: { etag: '"v1"' } },
    { name: '103 Early Hints, then the answer', method: 'GET', query: '?kind=103', status: 200, body: 'after hints', headers: {} },
    { name: 'a chunked body in several writes', method: 'GET', query: '?kind=chunks', status: 200, body: 'part0;part1;part2;part3;part4;end', headers: {} },
    { name: 'a plain 200', method: 'GET', query: '', status: 200, body: 'hello world', headers: { 'content-length': '11' } },
  ] as const;
  for (const c of cases) {
    await t.test(c.name, async (t) => {
      const res = await request(`${gw.url}${PLAIN}${c.query}`, { method: c.method, headers: { authorization: `Bearer ${token}` } });
      t.equal(res.statusCode, c.status);
      t.equal(await res.body.text(), c.body);
      t.match(res.headers, c.headers);
      t.match(res.headers['x-request-id'], /^[0-9a-f-]{36}$/);
    });
  }
  // Every one was allowed and audited with the status sent; none with a second line.
  const lines = (await gw.auditLines()).filter((l) => l.path === '/assets');
  t.equal(lines.length, cases.length);
  t.same(lines.map((l) => l.status), cases.map((c) => c.status));
  t.notOk(lines.some((l) => l.phase !== undefined), 'no request ended differently than its line said');
});

t.test('an upstream cut mid-body ends the agent\'s response and is audited', async (t) => {
  const upstream = await startUpstream(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '100000' });
    res.write('x'.repeat(1000));
    setTimeout(() => res.socket?.destroy(), 50);
  });
  const gw = await startGateway(t, { upstreams: { content: upstream.url } });
  const token = await gw.token(AGENT);
  const got = await exchange(gw.port, `GET ${PLAIN} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${token}\r\n\r\n`, 5000);
  t.ok(got.closed, 'the gateway closed the connection');
  t.match(got.text, /^HTTP\/1\.1 200 /, 'the head had gone out');
  const body = got.text.slice(got.text.indexOf('\r\n\r\n') + 4);
  t.ok(body.length < 100_000, `the body is short (${body.length} of 100000 bytes): the agent cannot take it as whole`);
  let lines: Array<Record<string, unknown>> = [];
  await until(async () => (lines = (await gw.auditLines()).filter((l) => l.path === '/assets')).length === 2);
  t.match(lines[0], { decision: 'allow', status: 200, upstreamStatus: 200 });
  t.notOk('phase' in (lines[0] ?? {}));
  t.match(lines[1], { phase: 'end', decision: 'allow', status: 200, reasonDetail: /^stream failed/ });
  t.equal(lines[1]?.requestId, lines[0]?.requestId);
});

t.test('an agent that leaves mid-stream frees the upstream exchange', async (t) => {
  let upstreamRes: ServerResponse | null = null;
  const upstream = await startUpstream(t, (_req, res) => {
    upstreamRes = res;
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.write('first chunk');
  });
  const gw = await startGateway(t, { upstreams: { content: upstream.url } });
  const token = await gw.token(AGENT);
  const socket: Socket = connect(gw.port, '127.0.0.1');
  socket.write(`GET ${PLAIN} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${token}\r\n\r\n`);
  let seen = '';
  await until(async () => {
    const chunk = socket.read() as Buffer | null;
    if (chunk !== null) seen += chunk.toString('latin1');
    if (!seen.includes('first chunk')) await once(socket, 'readable');
    return seen.includes('first chunk');
  });
  const res = upstreamRes as ServerResponse | null;
  if (res === null) throw new Error('the backend saw no request');
  const closed = once(res, 'close');
  socket.destroy();
  await closed;
  t.notOk(res.writableFinished, 'the backend\'s response was cut, not read to its end');
  let lines: Array<Record<string, unknown>> = [];
  await until(async () => (lines = (await gw.auditLines()).filter((l) => l.path === '/assets')).length === 2);
  t.match(lines[1], { phase: 'end', decision: 'deny', reason: 'client_closed' });
  await until(() => gw.gateway.abortAgent(AGENT, 'none left') === 0);
  t.pass('nothing of the agent is left in flight');
});

t.test('an abort (kill) before and after the head', async (t) => {
  const held: ServerResponse[] = [];
  const upstream = await startUpstream(t, (req, res) => {
    held.push(res);
    if (req.url?.includes('stream') === true) {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('started');
    }
  });
  const gw = await startGateway(t, { upstreams: { content: upstream.url } });
  const token = await gw.token(AGENT);

  await t.test('waiting for the upstream head: 403 agent_killed, the upstream call closed', async (t) => {
    const pending = request(`${gw.url}${PLAIN}`, { headers: { authorization: `Bearer ${token}` } });
    await until(() => held.length === 1);
    const closed = once(held[0] as ServerResponse, 'close');
    let aborted = 0;
    await until(() => (aborted = gw.gateway.abortAgent(AGENT, 'test kill')) > 0);
    t.equal(aborted, 1);
    const res = await pending;
    t.equal(res.statusCode, 403);
    t.match(await res.body.json(), { type: 'urn:agentgate:problem:agent_killed' });
    await closed;
    t.pass('the upstream exchange was closed');
  });

  await t.test('mid-stream: the connection is cut and a second line says why', async (t) => {
    const socket = connect(gw.port, '127.0.0.1');
    socket.write(`GET ${PLAIN}/stream HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${token}\r\n\r\n`);
    let seen = '';
    socket.on('data', (d: Buffer) => (seen += d.toString('latin1')));
    await until(() => seen.includes('started'));
    const closed = once(socket, 'close');
    t.equal(gw.gateway.abortAgent(AGENT, 'test kill'), 1);
    await closed;
    t.match(seen, /^HTTP\/1\.1 200 /);
    t.notMatch(seen, /\r\n0\r\n\r\n$/, 'no final chunk: the agent sees a cut, not an end');
    let lines: Array<Record<string, unknown>> = [];
    await until(async () => (lines = (await gw.auditLines()).filter((l) => l.path === '/assets/stream')).length === 2);
    t.match(lines[0], { decision: 'allow', status: 200 });
    t.match(lines[1], { phase: 'end', decision: 'deny', reason: 'agent_killed', reasonDetail: 'test kill' });
  });
});

t.test('a kill while the allowed line is written: 403 agent_killed and a second line, not a cut', async (t) => {
  // A disk that does not answer: every thread of libuv's pool is held in open() of a FIFO with
  // no writer, so the audit write queued behind them waits until the test lets them go.
  const upstream = await startUpstream(t, (_req, res) => res.end('whole answer'));
  const gw = await startGateway(t, { upstreams: { content: upstream.url } });
  const token = await gw.token(AGENT);
  const warm = await request(`${gw.url}${PLAIN}`, { headers: { authorization: `Bearer ${token}` } });
  t.equal(await warm.body.text(), 'whole answer');
  await gw.gateway.audit.flush();
  const threads = Number(process.env.UV_THREADPOOL_SIZE ?? 4);
  const dir = join(t.testdirName, 'fifos');
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const fifos = Array.from({ length: threads }, (_, i) => join(dir, `hold-${i}.fifo`));
  for (const fifo of fifos) execFileSync('mkfifo', [fifo]);
  const holders = fifos.map((fifo) => open(fifo, 'r'));
  let released = false;
  const release = (): void => {
    if (released) return;
    released = true;
    // A writer appearing lets each held open() return.
    for (const fifo of fifos) closeSync(openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK));
  };
  t.teardown(release);

  const pending = request(`${gw.url}${PLAIN}`, { headers: { authorization: `Bearer ${token}` } });
  await until(() => gw.gateway.audit.queued === 1);
  t.equal(gw.gateway.abortAgent(AGENT, 'killed while its line was written'), 1, 'the call is in flight');
  release();
  for (const holder of await Promise.all(holders)) await holder.close();
  const res = await pending;
  t.equal(res.statusCode, 403, 'told, not cut');
  t.match(await res.body.json(), { type: 'urn:agentgate:problem:agent_killed' });
  let lines: Array<Record<string, unknown>> = [];
  await until(async () => (lines = (await gw.auditLines()).filter((l) => l.path === '/assets')).length === 3);
  t.match(lines[1], { decision: 'allow', status: 200 });
  t.notOk('phase' in (lines[1] ?? {}));
  t.match(lines[2], { phase: 'end', decision: 'deny', reason: 'agent_killed', status: 403, reasonDetail: 'killed while its line was written' });
  t.equal(lines[2]?.requestId, lines[1]?.requestId, 'both lines are the same request\'s');

});

t.test('upstream failures before the head are 502 and 504 on the plain path', async (t) => {
  const silent = await startUpstream(t, () => undefined);
  const gw = await startGateway(t, { upstreams: { content: silent.url, kb: 'http://127.0.0.1:9' }, limits: { upstreamTimeout: '300ms' } });
  const token = await gw.token(AGENT);
  const timedOut = await request(`${gw.url}${PLAIN}`, { headers: { authorization: `Bearer ${token}` } });
  t.equal(timedOut.statusCode, 504);
  t.match(await timedOut.body.json(), { type: 'urn:agentgate:problem:upstream_timeout' });
  const support = await gw.token('support-agent-01');
  const down = await request(`${gw.url}/kb/articles`, { headers: { authorization: `Bearer ${support}` } });
  t.equal(down.statusCode, 502);
  t.match(await down.body.json(), { type: 'urn:agentgate:problem:upstream_unavailable' });
});
