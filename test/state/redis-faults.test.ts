// The Redis driver under real faults on a real redis-server: a hung server (SIGSTOP), an emptied
// one (FLUSHALL), one that went back in time (an older marker), and a restart of the gateway with
// changes it could not share yet. Each instance keeps a journal in its own folder.
import t from 'tap';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { openRedisStore, type OutageCause, type RedisStoreOptions } from '../../gateway/state/redis.js';
import { JournalError, moveJournalAside } from '../../gateway/state/journal.js';
import type { Store } from '../../gateway/state/store.js';
import type { BreakerPolicy } from '../../gateway/policy/types.js';
import { systemClock } from '../../gateway/clock.js';
import { redisServerPath, startRedis, type RedisServer } from '../helpers/redis.js';

const clock = systemClock;
const inAnHour = (): number => Math.floor(clock.now() / 1000) + 3600;
const trips: BreakerPolicy = { violations: 1, windowMs: 60_000, cooldownMs: 3_600_000, maxCooldownMs: 3_600_000, revokeTokens: false };

async function eventually(check: () => boolean | Promise<boolean>, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return check();
}

interface Instance {
  readonly store: Store;
  readonly outages: OutageCause[];
  readonly reseeds: string[];
  readonly notices: string[];
}

const missing = redisServerPath() === null;
t.test('Redis faults', { skip: missing ? 'redis-server is not installed (apt-get install redis-server)' : false }, async (t) => {
  const redis: RedisServer = await startRedis(t);
  const dir = t.testdir({});
  let n = 0;
  async function open(tt: { teardown(fn: () => unknown): void }, name: string, extra: Partial<RedisStoreOptions> = {}): Promise<Instance> {
    const outages: OutageCause[] = [];
    const reseeds: string[] = [];
    const notices: string[] = [];
    const store = await openRedisStore({
      clock,
      url: redis.url,
      journal: join(dir, `${name}.json`),
      commandTimeoutMs: 250,
      onOutage: (cause) => outages.push(cause),
      onReseed: (kind) => reseeds.push(kind),
      onNotice: (_level, message) => notices.push(message),
      ...extra,
    });
    // Closed with its subtest: an instance left open would take part in the next one's reseeds.
    tt.teardown(() => store.close());
    return { store, outages, reseeds, notices };
  }
  /** What Redis itself holds for a kill (read by a store that just opened: no journal, no cache). */
  async function redisHasKill(agent: string): Promise<boolean> {
    return (await redis.command(`HEXISTS agentgate:kills ${agent}`)) === ':1';
  }

  await t.test('a hung Redis (SIGSTOP) is an outage within the deadline; a kill meanwhile is applied here, then shared', async (t) => {
    await redis.flush();
    const a = await open(t, `stop-a-${++n}`);
    const b = await open(t, `stop-b-${n}`);
    redis.pause();
    t.teardown(() => redis.resume());
    t.ok(await eventually(() => !a.store.isHealthy() && !b.store.isHealthy(), 15_000), 'both instances stop trusting their view');
    t.match(a.store.status().detail, /did not (answer|deliver)/, 'the status says why');
    t.ok(a.outages.includes('timeout') && b.outages.includes('timeout'), 'counted as timeouts');
    // Resolves while Redis is still stopped: nothing waits on it.
    t.equal(await a.store.kill({ agent: 'bot', reason: 'stop test', at: clock.now(), by: 'op' }), 'local');
    t.equal(await a.store.revoke('jti-stop', inAnHour()), 'local');
    t.equal(await a.store.revokeAgent('bot', 123), 'local');
    t.ok(a.store.killRecord('bot') !== undefined && a.store.isRevoked('jti-stop') && a.store.isRevoked('x', 'bot', 100), 'in force on A at once');
    t.equal(a.store.status().unshared, 3);
    const journal = JSON.parse(await readFile(join(dir, `stop-a-${n}.json`), 'utf8')) as { unshared: unknown[] };
    t.equal(journal.unshared.length, 3, 'and in A\'s journal on disk before the calls resolved');
    t.equal(b.store.killRecord('bot'), undefined, 'B cannot know yet');
    redis.resume();
    t.ok(await eventually(() => b.store.killRecord('bot') !== undefined && b.store.isRevoked('jti-stop') && b.store.isRevoked('x', 'bot', 100), 15_000), 'B has all three once Redis answers');
    t.ok(await eventually(() => a.store.isHealthy() && b.store.isHealthy(), 15_000), 'both healthy again');
    t.equal(a.store.status().unshared, 0);
    t.ok(a.notices.some((m) => /now shared/.test(m)), 'the late push is logged');
    t.ok(await redisHasKill('bot'));
  });

  await t.test('FLUSHALL: the instances keep refusing, notice, reseed from their snapshot and agree again', async (t) => {
    await redis.flush();
    const a = await open(t, `flush-a-${++n}`);
    const b = await open(t, `flush-b-${n}`);
    await a.store.kill({ agent: 'bot', reason: 'leak', at: clock.now(), by: 'op' });
    await a.store.revoke('jti-1', inAnHour());
    await b.store.revokeAgent('bot', 500);
    t.equal((await b.store.recordViolation('bad', trips)).tripped, true);
    t.equal(await a.store.consumeUse('jti-uses', 2, inAnHour()), true);
    t.equal(await b.store.consumeUse('jti-uses', 2, inAnHour()), true);
    t.equal(a.store.replayHorizon, 0, 'no replay horizon while Redis keeps used assertions');
    t.ok(await eventually(() => b.store.killRecord('bot') !== undefined && b.store.isRevoked('jti-1') && a.store.isRevoked('x', 'bot', 400) && a.store.breaker('bad')?.tripped === true, 15_000));
    await redis.flush();
    // Through the loss and the reseed, neither instance ever forgets a kill or a revocation.
    let forgot = false;
    const watch = setInterval(() => {
      for (const s of [a.store, b.store]) if (s.killRecord('bot') === undefined || !s.isRevoked('jti-1') || !s.isRevoked('x', 'bot', 400)) forgot = true;
    }, 1);
    t.teardown(() => clearInterval(watch));
    t.ok(await eventually(() => a.outages.includes('data_lost') || b.outages.includes('data_lost'), 15_000), 'the loss is noticed (data_lost)');
    t.ok(await eventually(async () => (await redisHasKill('bot')) && a.store.isHealthy() && b.store.isHealthy(), 15_000), 'reseeded; both healthy again');
    clearInterval(watch);
    t.notOk(forgot, 'no instance forgot a kill or a revocation at any moment');
    t.ok([...a.reseeds, ...b.reseeds].includes('reseed'), 'one of them reseeded');
    t.equal(await redis.command('EXISTS agentgate:rev:jti-1'), ':1', 'the token revocation is back in Redis');
    t.equal(await redis.command('HGET agentgate:agent-rev bot'), '500', 'the agent revocation too');
    t.equal(await redis.command('HEXISTS agentgate:breakers bad'), ':1', 'and the open breaker');
    t.equal(await a.store.consumeUse('jti-uses', 2, inAnHour()), false, 'a spent maxUses token stays spent after the reseed');
    t.ok(a.store.replayHorizon > 0 && b.store.replayHorizon > 0, 'client assertions made before the loss are refused (their used jtis were lost)');
    const c = await open(t, `flush-c-${n}`);
    t.ok(c.store.killRecord('bot') !== undefined && c.store.isRevoked('jti-1') && c.store.breaker('bad')?.tripped === true, 'a new instance loads the reseeded state');
  });

  await t.test('diverging snapshots merge by union', async (t) => {
    await redis.flush();
    const a = await open(t, `union-a-${++n}`);
    await a.store.kill({ agent: 'x-agent', reason: 'seen by A only', at: clock.now(), by: 'op' });
    await a.store.close();
    await redis.flush();
    // B meets an empty Redis first (it has no snapshot, so it cannot tell) and kills another agent.
    const b = await open(t, `union-b-${n}`);
    await b.store.kill({ agent: 'y-agent', reason: 'seen by B only', at: clock.now(), by: 'op' });
    // A comes back with its journal: the marker is not the one it knew, so Redis lost data.
    const a2 = await open(t, `union-a-${n}`);
    t.ok(a2.reseeds.includes('reseed'), 'A reseeded');
    t.ok(a2.store.killRecord('x-agent') !== undefined && a2.store.killRecord('y-agent') !== undefined, 'A has both');
    t.ok(await eventually(() => b.store.killRecord('x-agent') !== undefined && b.store.killRecord('y-agent') !== undefined, 15_000), 'B has both');
    t.ok((await redisHasKill('x-agent')) && (await redisHasKill('y-agent')), 'Redis holds the union');
  });

  await t.test('reseed: manual waits for the operator, failing closed meanwhile', async (t) => {
    await redis.flush();
    const a = await open(t, `manual-a-${++n}`, { reseed: 'manual' });
    await a.store.kill({ agent: 'bot', reason: 'manual', at: clock.now(), by: 'op' });
    await redis.flush();
    t.ok(await eventually(() => a.notices.some((m) => /lost its data/.test(m)), 15_000), 'the loss is logged');
    t.notOk(a.store.isHealthy(), 'unhealthy');
    t.match(a.store.status().detail, /marker is missing/);
    t.notOk(await redisHasKill('bot'), 'nothing written back by itself');
    t.ok(a.store.killRecord('bot') !== undefined, 'the kill is still in force here');
    const outcome = await a.store.reseed();
    t.match(outcome, { reseeded: true, kills: 1 });
    t.ok(await redisHasKill('bot'), 'written back');
    t.ok(await eventually(() => a.store.isHealthy(), 15_000), 'healthy after the reseed');
    t.match(await a.store.reseed(), { reseeded: false }, 'a second reseed has nothing to do');
  });

  await t.test('a CLI tool reads the journal but never writes it, and never reseeds', async (t) => {
    await redis.flush();
    const a = await open(t, `tool-a-${++n}`);
    await a.store.kill({ agent: 'bot', reason: 'tool', at: clock.now(), by: 'op' });
    await a.store.close();
    const before = await readFile(join(dir, `tool-a-${n}.json`), 'utf8');
    await redis.flush();
    const tool = await open(t, `tool-a-${n}`, { tool: true });
    t.ok(tool.store.killRecord('bot') !== undefined, 'the kill from the journal is in its view');
    t.notOk(tool.store.isHealthy(), 'Redis lost its data: the tool sees an unavailable store');
    t.same(tool.reseeds, [], 'and does not reseed it');
    await tool.store.close();
    t.equal(await readFile(join(dir, `tool-a-${n}.json`), 'utf8'), before, 'the journal is untouched');
    t.notOk(await redisHasKill('bot'));
  });

  await t.test('an unreadable journal stops the start; --reset-state moves it aside', async (t) => {
    const cases = [
      { name: 'not JSON', text: '{"version": 1, "kills": [' },
      { name: 'another version', text: '{"version": 2}' },
      { name: 'a kill without an agent', text: JSON.stringify({ version: 1, marker: null, kills: [{ reason: 'r', at: 1, by: 'x' }], agentRevocations: {}, revocations: {}, endedSessions: {}, breakers: {}, unshared: [] }) },
      { name: 'an unknown unshared change', text: JSON.stringify({ version: 1, marker: null, kills: [], agentRevocations: {}, revocations: {}, endedSessions: {}, breakers: {}, unshared: [{ op: 'revive', agent: 'bot' }] }) },
      { name: 'a revocation that is not a number', text: JSON.stringify({ version: 1, marker: null, kills: [], agentRevocations: {}, revocations: { j: 'soon' }, endedSessions: {}, breakers: {}, unshared: [] }) },
    ];
    for (const c of cases) {
      const file = join(dir, `corrupt-${++n}.json`);
      await writeFile(file, c.text);
      const error = await openRedisStore({ clock, url: redis.url, journal: file }).then(
        async (store) => {
          await store.close();
          return null;
        },
        (e: unknown) => e,
      );
      t.ok(error instanceof JournalError, `${c.name}: refused (${String(error)})`);
      t.match(String(error), /--reset-state/);
      const aside = await moveJournalAside(file, clock.now());
      t.match(aside ?? '', /corrupt-\d{4}-/);
      const store = await openRedisStore({ clock, url: redis.url, journal: file });
      t.ok(store.isHealthy(), 'starts once it is moved aside');
      await store.close();
    }
  });

  await t.test('a marker that went back (Redis restored older data) is a loss too', async (t) => {
    await redis.flush();
    const a = await open(t, `older-a-${++n}`);
    await a.store.kill({ agent: 'bot', reason: 'older', at: clock.now(), by: 'op' });
    await a.store.revoke('jti-o', inAnHour());
    // What a restore from an older dump looks like: the marker's count below what A saw, the kill gone.
    await redis.command('HSET agentgate:marker gen 0');
    await redis.command('HDEL agentgate:kills bot');
    t.ok(await eventually(() => a.outages.includes('data_lost'), 15_000), 'noticed');
    t.ok(await eventually(async () => (await redisHasKill('bot')) && a.store.isHealthy(), 15_000), 'reseeded');
  });

  await t.test('changes kept locally survive a restart of the gateway and are pushed with a log line', async (t) => {
    await redis.flush();
    const a = await open(t, `restart-a-${++n}`);
    redis.pause();
    t.ok(await eventually(() => !a.store.isHealthy(), 15_000));
    t.equal(await a.store.kill({ agent: 'bot', reason: 'during outage', at: clock.now(), by: 'op' }), 'local');
    redis.resume();
    await redis.kill();
    await a.store.close();
    await redis.restart();
    // The restarted Redis is empty and A's journal holds an unshared kill: it is pushed at start.
    const again = await open(t, `restart-a-${n}`);
    t.ok(again.store.killRecord('bot') !== undefined);
    t.ok(await eventually(() => redisHasKill('bot'), 15_000), 'pushed to Redis');
    t.ok(again.notices.some((m) => /now shared/.test(m)) || again.reseeds.includes('reseed'), 'with a log line');
  });
});
