// Two real `agentgate serve` processes on one real redis-server, under load, while Redis fails:
// hung (SIGSTOP), emptied (FLUSHALL), restarted without its data. Both instances must fail closed
// on a hang and let nothing through to the backend; a kill made on A during the hang is in force
// on A at once and reaches B after SIGCONT (how soon is printed, not asserted); a killed agent and a
// revoked token are refused at every moment of a data loss, and the instances agree after it.
import t from 'tap';
import { readFile, readdir, symlink, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { decodeJwt } from 'jose';
import { startUpstream } from '../helpers/gateway.js';
import { runCli, serveCli, writeConfig, type ServedGateway } from '../helpers/process.js';
import { redisServerPath, startRedis } from '../helpers/redis.js';

const POLICY = [
  'backends:',
  '  svc:',
  '    upstream: UPSTREAM',
  '    scopes:',
  '      read: ["GET /items"]',
  'roles:',
  '  worker:',
  '    grants: [svc:read]',
  'agents:',
  '  worker-01: { role: worker, owner: test }',
  '  worker-02: { role: worker, owner: test }',
  '  worker-03: { role: worker, owner: test }',
  '',
].join('\n');

interface Answer {
  readonly startedAt: number;
  readonly status: number;
  readonly type: string | null;
}

const missing = redisServerPath() === null;
t.test('Redis faults under load, two instances', { skip: missing ? 'redis-server is not installed (apt-get install redis-server)' : false }, async (t) => {
  const redis = await startRedis(t);
  const upstream = await startUpstream(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"ok":true}');
  });
  const dir = t.testdir({ policies: { 'svc.yaml': POLICY.replace('UPSTREAM', upstream.url) }, a: {}, b: {} });
  const state = `{ driver: redis, url: "${redis.url}", timeout: 250ms }`;
  const configA = await writeConfig(join(dir, 'a'), join(dir, 'policies'), { state });
  const configB = await writeConfig(join(dir, 'b'), join(dir, 'policies'), { state });
  const socketA = /admin:\s+\{ socket: "([^"]+)"/.exec(await readFile(configA, 'utf8'))?.[1] ?? '';
  const a = await serveCli(t, ['serve', '--config', configA]);
  await mkdir(join(dir, 'b', 'run'), { recursive: true });
  await symlink(join(dir, 'a', 'run', 'keys'), join(dir, 'b', 'run', 'keys'));
  const b = await serveCli(t, ['serve', '--config', configB]);
  const dispatcher = new Agent({ connections: 16 });
  t.teardown(() => dispatcher.close());

  const token = async (agent: string): Promise<string> => {
    const res = await runCli(['token', '--agent', agent, '--config', configA]);
    t.equal(res.code, 0, res.stderr);
    return res.stdout.trim();
  };
  const call = async (gw: ServedGateway, tok: string): Promise<Answer> => {
    const startedAt = performance.now();
    try {
      const res = await request(`${gw.url}/svc/items`, { headers: { authorization: `Bearer ${tok}` }, dispatcher, headersTimeout: 10_000, bodyTimeout: 10_000 });
      const text = await res.body.text();
      let type: string | null = null;
      try {
        type = String((JSON.parse(text) as { type?: unknown }).type ?? '') || null;
      } catch {
        // a backend answer
      }
      return { startedAt, status: res.statusCode, type };
    } catch {
      return { startedAt, status: 0, type: null };
    }
  };
  const until = async (check: () => boolean | Promise<boolean>, ms: number): Promise<boolean> => {
    const deadline = performance.now() + ms;
    while (performance.now() < deadline) {
      if (await check()) return true;
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    return check();
  };
  /** `workers` loops calling `gw` with `tok` until stopped; every answer is recorded. */
  function load(gw: ServedGateway, tok: string, workers: number) {
    const answers: Answer[][] = Array.from({ length: workers }, () => []);
    let running = true;
    const done = Promise.all(
      answers.map(async (mine) => {
        while (running) mine.push(await call(gw, tok));
      }),
    );
    return {
      answers,
      all: () => answers.flat(),
      async stop() {
        running = false;
        await done;
      },
    };
  }

  const w1 = await token('worker-01');
  const w2 = await token('worker-02');
  const w3 = await token('worker-03');

  await t.test('SIGSTOP during load: 503 on both, nothing reaches the backend; a kill on A holds; SIGCONT: B refuses too', async (t) => {
    const loadA = load(a, w3, 4);
    const loadB = load(b, w3, 4);
    t.teardown(async () => {
      redis.resume();
      await loadA.stop();
      await loadB.stop();
    });
    t.ok(await until(() => loadA.all().some((x) => x.status === 200) && loadB.all().some((x) => x.status === 200), 15_000), 'serving on both before the fault');
    const stoppedAt = performance.now();
    redis.pause();
    const refusing = (l: ReturnType<typeof load>): boolean => l.all().some((x) => x.startedAt > stoppedAt && x.status === 503 && x.type === 'urn:agentgate:problem:state_unavailable');
    // How soon is printed below, not asserted (timings belong in bench/): a busy machine may be slow.
    t.ok(await until(() => refusing(loadA) && refusing(loadB), 15_000), 'both instances answer 503 state_unavailable after the hang');
    const firstRefusal = (l: ReturnType<typeof load>): number => Math.min(...l.all().filter((x) => x.startedAt > stoppedAt && x.status === 503).map((x) => x.startedAt));
    t.comment(`first 503 after SIGSTOP: A ${(firstRefusal(loadA) - stoppedAt).toFixed(0)} ms, B ${(firstRefusal(loadB) - stoppedAt).toFixed(0)} ms`);
    // From the moment both refuse: every call started later is refused and none reaches the backend.
    const refusingSince = performance.now();
    const everyWorkerAnsweredAfter = (since: number, count: number): boolean => [...loadA.answers, ...loadB.answers].every((mine) => mine.filter((x) => x.startedAt > since).length >= count);
    t.ok(await until(() => everyWorkerAnsweredAfter(refusingSince, 1), 15_000), 'every worker answered once more');
    const backendBefore = upstream.seen.length;
    const settledAt = performance.now();
    t.ok(await until(() => everyWorkerAnsweredAfter(settledAt, 5), 20_000), 'every worker made 5 more calls during the hang');
    t.equal(upstream.seen.length, backendBefore, '0 requests reached the backend while both refused');
    const later = [...loadA.all(), ...loadB.all()].filter((x) => x.startedAt > refusingSince);
    t.same(later.filter((x) => x.status !== 503).length, 0, 'and every one of them was a 503');

    // A kill on A while Redis is hung: answered at once (not after the 10 s CLI timeout), in force on A.
    const killed = await runCli(['kill', 'worker-01', '--reason', 'kill during a hung Redis', '--socket', socketA, '--config', configA]);
    t.equal(killed.code, 0, killed.stderr);
    t.match(killed.stdout, /killed worker-01/);
    t.match(killed.stdout, /APPLIED HERE, NOT YET SHARED/, 'the CLI says the kill is not shared yet');
    const json = await runCli(['revoke', '--jti', String(decodeJwt(w2).jti), '--json', '--socket', socketA, '--config', configA]);
    t.equal(json.code, 0, json.stderr);
    t.match(JSON.parse(json.stdout), { revoked: 'jti', shared: false, sharing: 'applied here, not yet shared' }, 'the admin JSON says so too');
    const revive = await runCli(['revive', 'worker-01', '--socket', socketA, '--config', configA]);
    t.equal(revive.code, 1, 'a revive during the hang is refused');
    t.match(revive.stderr, /state unavailable: .*a revive is applied only through Redis/);
    const onA = await call(a, w1);
    t.not(onA.status, 200, 'worker-01 is refused on A at once');
    const status = await request(`${a.metricsUrl}/readyz`, { dispatcher });
    const ready = (await status.body.json()) as { state: string; unsharedChanges: number; stateDetail: string };
    t.equal(status.statusCode, 503, '/readyz: not ready during the hang');
    t.match(ready, { state: 'unavailable', unsharedChanges: 2, stateDetail: /did not/ });

    // SIGCONT: A pushes the kill; B refuses worker-01 within a second, A never lets it through.
    const backendAtResume = upstream.seen.length;
    const watchA: Answer[] = [];
    let watching = true;
    const watcher = (async () => {
      while (watching) watchA.push(await call(a, w1));
    })();
    redis.resume();
    let onB: Answer = { startedAt: 0, status: 0, type: null };
    t.ok(
      await until(async () => {
        onB = await call(b, w1);
        return onB.status === 403;
      }, 1000),
      'B refuses the agent killed on A within a second of SIGCONT',
    );
    t.equal(onB.type, 'urn:agentgate:problem:agent_killed');
    t.ok(await until(() => watchA.some((x) => x.status === 403), 15_000), 'A refuses it as killed once Redis answers');
    watching = false;
    await watcher;
    t.same(watchA.filter((x) => x.status === 200).length, 0, 'A never let worker-01 through');
    t.ok(await until(async () => (await call(b, w2)).status === 401, 15_000), 'the token revoked on A is refused on B');
    t.ok(await until(async () => (await call(a, w3)).status === 200 && (await call(b, w3)).status === 200, 15_000), 'both serve again');
    t.ok(upstream.seen.length > backendAtResume, 'the backend is reached again');
    t.match(a.output(), /now shared with every instance/, 'A logged the late push');
  });

  const watchAll = () => {
    const seen: { who: string; status: number }[] = [];
    let running = true;
    const done = (async () => {
      while (running) {
        for (const [who, gw, tok] of [['A w1', a, w1], ['B w1', b, w1], ['A w2', a, w2], ['B w2', b, w2]] as const) seen.push({ who, status: (await call(gw, tok)).status });
      }
    })();
    return {
      seen,
      async stop() {
        running = false;
        await done;
      },
    };
  };
  const agree = async (): Promise<boolean> => {
    const answers = await Promise.all([call(a, w1), call(b, w1), call(a, w2), call(b, w2), call(a, w3), call(b, w3)]);
    return answers.map((x) => x.status).join(',') === '403,403,401,401,200,200';
  };

  for (const fault of ['FLUSHALL', 'an empty restart'] as const) {
    await t.test(`${fault}: the killed agent and the revoked token stay refused throughout; reseeded; the instances agree`, async (t) => {
      t.ok(await until(agree, 15_000), 'before: both refuse worker-01 (killed) and the revoked token, and serve worker-03');
      const watch = watchAll();
      t.teardown(() => watch.stop());
      t.ok(await until(() => watch.seen.length >= 8, 15_000));
      if (fault === 'FLUSHALL') await redis.flush();
      else {
        await redis.kill();
        await redis.restart();
      }
      t.ok(await until(async () => (await redis.command('HEXISTS agentgate:kills worker-01')) === ':1', 15_000), 'Redis holds the kill again (reseeded)');
      t.ok(await until(async () => (await redis.command(`EXISTS agentgate:rev:${String(decodeJwt(w2).jti)}`)) === ':1', 15_000), 'and the revocation');
      t.ok(await until(agree, 15_000), 'the instances agree again and serve');
      await watch.stop();
      t.same(watch.seen.filter((x) => x.status === 200), [], 'not one call of the killed agent or with the revoked token got through at any moment');
      t.ok(watch.seen.length > 8, `${watch.seen.length} calls watched`);
    });
  }

  await t.test('the loss was logged and counted', async (t) => {
    t.match(a.output() + b.output(), /Redis lost its data/);
    const metrics = await Promise.all([a, b].map(async (gw) => (await request(`${gw.metricsUrl}/metrics`, { dispatcher })).body.text()));
    t.ok(metrics.some((m) => /agentgate_state_outages_total\{cause="data_lost"\} [1-9]/.test(m)), 'agentgate_state_outages_total{cause="data_lost"}');
    t.ok(metrics.every((m) => /agentgate_state_outages_total\{cause="timeout"\} [1-9]/.test(m)), 'both counted the hang as a timeout');
    t.ok(metrics.some((m) => /agentgate_state_reseeds_total\{kind="reseed"\} [1-9]/.test(m)), 'agentgate_state_reseeds_total');
    t.ok(metrics.every((m) => /agentgate_state_available 1/.test(m)), 'available again');
  });

  await t.test('an unreadable journal stops the start; --reset-state moves only that one aside', async (t) => {
    const configC = await writeConfig(join(dir, 'c'), join(dir, 'policies'), { state });
    await mkdir(join(dir, 'c', 'run'), { recursive: true });
    await writeFile(join(dir, 'c', 'run', 'state-journal.json'), '{"version": 1, "kills": [');
    const refused = await runCli(['serve', '--config', configC], { timeoutMs: 30_000 });
    t.equal(refused.code, 1, 'the gateway does not start on it');
    t.match(refused.stderr, /state journal .*state-journal\.json is unreadable .*--reset-state/);
    const c = await serveCli(t, ['serve', '--reset-state', '--config', configC]);
    t.match(c.output(), /state journal moved aside/);
    t.ok((await readdir(join(dir, 'c', 'run'))).some((f) => f.startsWith('state-journal.json.corrupt-')), 'kept beside, not deleted');
    t.equal(await c.stop(), 0);
    // A readable journal is never moved aside, even with --reset-state.
    const again = await serveCli(t, ['serve', '--reset-state', '--config', configC]);
    t.notMatch(again.output(), /moved aside/);
    t.equal(await again.stop(), 0);
  });

  await t.test('both stop cleanly', async (t) => {
    t.equal(await a.stop(), 0, a.output());
    t.equal(await b.stop(), 0, b.output());
  });
});
