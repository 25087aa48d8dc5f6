// One agent's rate limit shared by two real `agentgate serve` processes on one real redis-server:
// for about 10 s both instances are sent more calls than the limit allows (a bounded number), and
// the calls admitted in total are compared with what the rule admits for the calls as they
// actually arrived: the arrival times from both instances' audit lines, replayed through the pure
// GCRA rule (state/rules/rate-limit.ts, the same rule the Redis Lua script implements). Exact to
// 1 % (audit times are when the gateway received a call, a few ms before Redis charged it), on a
// quiet machine or a busy one: a caller that stalls simply arrives later in the replay too. Also
// never more than burst + rps x span. No timing is asserted; the arrivals are measured.
import t from 'tap';
import { readFile, symlink, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import { decide } from '../../gateway/state/rules/rate-limit.js';
import { startUpstream } from '../helpers/gateway.js';
import { runCli, serveCli, writeConfig } from '../helpers/process.js';
import { redisServerPath, startRedis } from '../helpers/redis.js';

const RPS = 20;
const BURST = 40;
const POLICY = [
  'backends:',
  '  svc:',
  '    upstream: UPSTREAM',
  '    scopes:',
  '      read: ["GET /items"]',
  'roles:',
  '  worker:',
  '    grants: [svc:read]',
  `    rateLimit: { rps: ${RPS}, burst: ${BURST} }`,
  'agents:',
  '  worker-01: { role: worker, owner: test }',
  '',
].join('\n');

const missing = redisServerPath() === null;
t.test('two instances share one agent\'s rate limit exactly', { skip: missing ? 'redis-server is not installed (apt-get install redis-server)' : false }, async (t) => {
  const redis = await startRedis(t);
  const upstream = await startUpstream(t);
  const dir = t.testdir({ policies: { 'svc.yaml': POLICY.replace('UPSTREAM', upstream.url) }, a: {}, b: {} });
  const state = `{ driver: redis, url: "${redis.url}" }`;
  const configA = await writeConfig(join(dir, 'a'), join(dir, 'policies'), { state });
  const configB = await writeConfig(join(dir, 'b'), join(dir, 'policies'), { state });
  const a = await serveCli(t, ['serve', '--config', configA]);
  await mkdir(join(dir, 'b', 'run'), { recursive: true });
  await symlink(join(dir, 'a', 'run', 'keys'), join(dir, 'b', 'run', 'keys'));
  const b = await serveCli(t, ['serve', '--config', configB]);
  const minted = await runCli(['token', '--agent', 'worker-01', '--config', configA]);
  t.equal(minted.code, 0, minted.stderr);
  const token = minted.stdout.trim();

  // Four callers per instance, each sending one call at a time with a short pause: well above
  // 20/s in total even when a busy machine answers a call in 100 ms, and at most 8 x 500 calls.
  const statuses = new Map<number, number>();
  const end = Date.now() + 10_000;
  const worker = async (url: string): Promise<void> => {
    for (let sent = 0; sent < 500 && Date.now() < end; sent++) {
      const res = await request(`${url}/svc/items`, { headers: { authorization: `Bearer ${token}` } });
      await res.body.dump();
      statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  };
  await Promise.all([a.url, a.url, a.url, a.url, b.url, b.url, b.url, b.url].map(worker));
  await Promise.all([a.stop(), b.stop()]);

  const audit = async (side: string) =>
    (await readFile(join(dir, side, 'run', 'audit.jsonl'), 'utf8'))
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as { kind: string; time: string; decision: string; reason: string })
      .filter((l) => l.kind === 'proxy');
  const lines = [...(await audit('a')), ...(await audit('b'))];
  const times = lines.map((l) => Date.parse(l.time)).sort((x, y) => x - y);
  const spanSeconds = ((times[times.length - 1] ?? 0) - (times[0] ?? 0)) / 1000;
  const admitted = lines.filter((l) => l.decision === 'allow').length;
  const limited = lines.filter((l) => l.reason === 'rate_limited').length;
  const expected = BURST + Math.floor(RPS * spanSeconds);
  t.equal(lines.length, [...statuses.values()].reduce((x, y) => x + y, 0), 'every call audited');
  t.equal(admitted + limited, lines.length, 'every call either admitted or rate_limited');
  t.ok(limited > admitted, `the callers asked for more than the limit (${limited} refused)`);
  t.equal(upstream.seen.length, admitted, 'the backend saw exactly the admitted calls');
  t.equal(statuses.get(200), admitted);
  t.ok(admitted <= expected + Math.max(1, expected * 0.01), `admitted ${admitted} over ${spanSeconds.toFixed(3)} s; the rule allows at most ${expected} (burst ${BURST} + ${RPS}/s)`);
  // The rule replayed over the arrivals: what one exact shared limiter admits for this traffic.
  let tat: number | undefined;
  let replayed = 0;
  for (const at of times) {
    const outcome = decide([{ rps: RPS, burst: BURST }], [tat], at);
    if (!outcome.allowed) continue;
    replayed++;
    tat = outcome.tats?.[0];
  }
  const tolerance = Math.max(2, Math.ceil(replayed * 0.01));
  t.ok(Math.abs(admitted - replayed) <= tolerance, `admitted ${admitted}; the rule replayed over the ${times.length} arrivals admits ${replayed} (±${tolerance}, 1 %)`);
  t.ok(lines.some((l) => l.decision === 'allow') && (await audit('a')).some((l) => l.decision === 'allow') && (await audit('b')).some((l) => l.decision === 'allow'), 'both instances admitted calls');
});
