// Two real `agentgate serve` processes sharing one real redis-server (state.driver redis): a kill
// or a revoke made through instance A's admin socket is refused on instance B (the delay is
// printed, not asserted: timings belong in bench/), a maxUses count is shared, and when Redis goes
// away both fail closed (503 state_unavailable) until it is back. Waits poll with generous
// deadlines so a busy machine slows the test down instead of failing it.
import t from 'tap';
import { readFile, symlink, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import { decodeJwt } from 'jose';
import { startUpstream } from '../helpers/gateway.js';
import { runCli, serveCli, writeConfig } from '../helpers/process.js';
import { redisServerPath, startRedis } from '../helpers/redis.js';

const POLICY = [
  'backends:',
  '  svc:',
  '    upstream: UPSTREAM',
  '    scopes:',
  '      read: ["GET /items", "GET /stream"]',
  'roles:',
  '  worker:',
  '    grants: [svc:read]',
  'agents:',
  '  worker-01: { role: worker, owner: test }',
  '  worker-02: { role: worker, owner: test }',
  '  worker-03: { role: worker, owner: test }',
  '',
].join('\n');

const missing = redisServerPath() === null;
t.test('two gateway instances share state through Redis', { skip: missing ? 'redis-server is not installed (apt-get install redis-server)' : false }, async (t) => {
  const redis = await startRedis(t);
  const upstream = await startUpstream(t, (req, res) => {
    if (req.url === '/stream') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('first chunk\n');
      // Never ends on its own: only a kill (or the teardown) stops it.
      const timer = setInterval(() => res.write('tick\n'), 50);
      res.on('close', () => clearInterval(timer));
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"ok":true}');
  });
  const dir = t.testdir({ policies: { 'svc.yaml': POLICY.replace('UPSTREAM', upstream.url) }, a: {}, b: {} });
  const state = `{ driver: redis, url: "${redis.url}" }`;
  const configA = await writeConfig(join(dir, 'a'), join(dir, 'policies'), { state });
  const configB = await writeConfig(join(dir, 'b'), join(dir, 'policies'), { state });
  const socketA = /admin:\s+\{ socket: "([^"]+)"/.exec(await readFile(configA, 'utf8'))?.[1] ?? '';
  const token = async (agent: string): Promise<string> => {
    const res = await runCli(['token', '--agent', agent, '--config', configA]);
    t.equal(res.code, 0, res.stderr);
    return res.stdout.trim();
  };
  // The first token makes A's signing keys; one key set for both instances, as a deployment
  // shares its key folder. Then both instances start, and the other tokens are minted, at once.
  const w1 = await token('worker-01');
  await mkdir(join(dir, 'b', 'run'), { recursive: true });
  await symlink(join(dir, 'a', 'run', 'keys'), join(dir, 'b', 'run', 'keys'));
  const [a, b, w2, w3] = await Promise.all([serveCli(t, ['serve', '--config', configA]), serveCli(t, ['serve', '--config', configB]), token('worker-02'), token('worker-03')]);
  const call = async (url: string, tok: string): Promise<{ status: number; type: unknown }> => {
    const res = await request(`${url}/svc/items`, { headers: { authorization: `Bearer ${tok}` } });
    const text = await res.body.text();
    let type: unknown = null;
    try {
      type = (JSON.parse(text) as { type?: unknown }).type ?? null;
    } catch {
      // a backend answer
    }
    return { status: res.statusCode, type };
  };

  await t.test('a token minted for A works on both', async (t) => {
    t.equal((await call(a.url, w1)).status, 200);
    t.equal((await call(b.url, w1)).status, 200);
  });

  await t.test('a kill through A\'s admin socket refuses the next call on B', async (t) => {
    // A call streaming through B while the kill is made on A.
    const stream = await request(`${b.url}/svc/stream`, { headers: { authorization: `Bearer ${w1}` } });
    t.equal(stream.statusCode, 200);
    const reader = stream.body[Symbol.asyncIterator]();
    t.match(String((await reader.next()).value), /first chunk/);
    const cliStart = performance.now();
    const killed = await runCli(['kill', 'worker-01', '--reason', 'two-instance test', '--socket', socketA, '--config', configA]);
    t.equal(killed.code, 0, killed.stderr);
    t.comment(`the kill CLI (a node process, the admin socket, A's write to Redis) took ${(performance.now() - cliStart).toFixed(0)} ms`);
    // The CLI returns once A has written the kill to Redis and published it; from then on, B.
    const start = performance.now();
    let seen: { status: number; type: unknown } = { status: 0, type: null };
    while (performance.now() - start < 15_000) {
      seen = await call(b.url, w1);
      if (seen.status === 403) break;
    }
    const delayMs = performance.now() - start;
    t.match(seen, { status: 403, type: 'urn:agentgate:problem:agent_killed' }, 'refused on B');
    t.comment(`kill propagation A -> B: ${delayMs.toFixed(1)} ms (first refused call on B, including its round trip)`);
    t.equal((await call(a.url, w1)).status, 403, 'and on A');
    const drained = (async (): Promise<string> => {
      try {
        for (;;) if ((await reader.next()).done) return 'ended cleanly';
      } catch {
        return 'cut';
      }
    })();
    // No clock here: a stream B never cuts keeps ticking and the test runs into tap's timeout.
    t.equal(await drained, 'cut', 'the stream in flight on B is cut too');
    const revived = await runCli(['revive', 'worker-01', '--socket', socketA, '--config', configA]);
    t.equal(revived.code, 0, revived.stderr);
    const until = performance.now() + 15_000;
    while (performance.now() < until && (await call(b.url, w1)).status !== 200);
    t.equal((await call(b.url, w1)).status, 200, 'revived on B too');
  });

  await t.test('a token revoked through A is refused on B', async (t) => {
    t.equal((await call(b.url, w2)).status, 200);
    const revoked = await runCli(['revoke', '--jti', String(decodeJwt(w2).jti), '--socket', socketA, '--config', configA]);
    t.equal(revoked.code, 0, revoked.stderr);
    const start = performance.now();
    let seen = await call(b.url, w2);
    while (seen.status !== 401 && performance.now() - start < 15_000) seen = await call(b.url, w2);
    t.equal(seen.status, 401, 'refused on B');
    t.comment(`revoke propagation A -> B: ${(performance.now() - start).toFixed(1)} ms`);
    t.equal((await call(b.url, w1)).status, 200, 'other tokens still work');
  });

  await t.test('Redis gone: both fail closed with 503 state_unavailable; back: both recover', async (t) => {
    await redis.kill();
    for (const [name, gw] of [['A', a], ['B', b]] as const) {
      const start = performance.now();
      let seen = await call(gw.url, w3);
      while (seen.status !== 503 && performance.now() - start < 15_000) seen = await call(gw.url, w3);
      t.match(seen, { status: 503, type: 'urn:agentgate:problem:state_unavailable' }, `${name} refuses without its shared state`);
    }
    const before = upstream.seen.length;
    t.equal((await call(b.url, w3)).status, 503);
    t.equal(upstream.seen.length, before, 'nothing reached the backend while Redis was away');
    await redis.restart();
    for (const [name, gw] of [['A', a], ['B', b]] as const) {
      const start = performance.now();
      let seen = await call(gw.url, w3);
      while (seen.status !== 200 && performance.now() - start < 15_000) {
        await new Promise((resolve) => setTimeout(resolve, 20));
        seen = await call(gw.url, w3);
      }
      t.equal(seen.status, 200, `${name} recovers`);
    }
  });

  await t.test('both stop cleanly', async (t) => {
    t.equal(await a.stop(), 0, a.output());
    t.equal(await b.stop(), 0, b.output());
  });
});
