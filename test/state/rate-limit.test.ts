// Rate limits: the GCRA rule itself (state/rules/rate-limit.ts) on an injected clock, and the
// store contract (memory, and a real redis-server running the same rule in Lua on its own clock):
// a burst passes at once, then one call per interval; several rules are charged together or not
// at all; the IETF header fields say what the rule says.
import t, { type Test } from 'tap';
import { decide, rateLimitHeaders, type RateLimitRule } from '../../gateway/state/rules/rate-limit.js';
import { openMemoryStore } from '../../gateway/state/memory.js';
import { openRedisStore } from '../../gateway/state/redis.js';
import type { Store } from '../../gateway/state/store.js';
import { systemClock } from '../../gateway/clock.js';
import { redisServerPath, startRedis } from '../helpers/redis.js';

t.test('GCRA: a burst at once, then one call per interval', async (t) => {
  const rule: RateLimitRule = { rps: 10, burst: 3 };
  let tat: number | undefined;
  const at = (now: number) => {
    const out = decide([rule], [tat], now);
    if (out.tats !== null) tat = out.tats[0];
    return out;
  };
  t.match(at(1000), { allowed: true, remaining: 2 });
  t.match(at(1000), { allowed: true, remaining: 1 });
  t.match(at(1000), { allowed: true, remaining: 0 });
  const refused = at(1000);
  t.match(refused, { allowed: false, remaining: 0, tats: null });
  t.equal(refused.retryAfterMs, 100, 'one interval (1000 / rps) until the next call');
  t.equal(refused.resetMs, 300, 'three intervals until the bucket is full');
  t.match(at(1099), { allowed: false }, 'not a millisecond early');
  t.match(at(1100), { allowed: true, remaining: 0 });
  t.match(at(1100), { allowed: false });
  t.match(at(5000), { allowed: true, remaining: 2 }, 'a quiet spell refills the bucket, never beyond burst');
});

t.test('GCRA: over any span, at most burst + span * rps calls pass', async (t) => {
  const cases = [
    { rule: { rps: 20, burst: 40 }, spanMs: 10_000, stepMs: 1 },
    { rule: { rps: 0.5, burst: 5 }, spanMs: 60_000, stepMs: 7 },
    { rule: { rps: 3, burst: 1 }, spanMs: 10_000, stepMs: 3 },
    { rule: { rps: 1000, burst: 10 }, spanMs: 2_000, stepMs: 0.25 },
  ];
  for (const c of cases) {
    let tat: number | undefined;
    let admitted = 0;
    for (let now = 0; now <= c.spanMs; now += c.stepMs) {
      const out = decide([c.rule], [tat], now);
      if (out.allowed) {
        admitted++;
        tat = out.tats?.[0];
      }
    }
    const bound = c.rule.burst + Math.floor((c.spanMs * c.rule.rps) / 1000);
    t.ok(admitted <= bound && admitted >= bound - 1, `${JSON.stringify(c.rule)}: ${admitted} admitted, bound ${bound}`);
  }
});

t.test('GCRA: several rules pass together or charge nothing', async (t) => {
  const agent: RateLimitRule = { rps: 100, burst: 100 };
  const scope: RateLimitRule = { rps: 1, burst: 2 };
  let tats: (number | undefined)[] = [undefined, undefined];
  const call = () => {
    const out = decide([agent, scope], tats, 0);
    if (out.tats !== null) tats = [...out.tats];
    return out;
  };
  t.match(call(), { allowed: true, rule: 1, remaining: 1 }, 'the tightest rule is reported');
  t.match(call(), { allowed: true, rule: 1, remaining: 0 });
  const before = [...tats];
  t.match(call(), { allowed: false, rule: 1 }, 'the scope refuses');
  t.same(tats, before, 'and the agent rule was not charged for it');
  t.match(decide([agent], [tats[0]], 0), { allowed: true, remaining: 97 }, 'two calls charged to the agent, not three');
});

t.test('RateLimit header fields', async (t) => {
  const rule = { rps: 20, burst: 40 };
  t.same(rateLimitHeaders('agent', rule, { allowed: true, rule: 0, remaining: 39, retryAfterMs: 0, resetMs: 50 }), {
    'ratelimit-policy': '"agent";q=40;w=2',
    ratelimit: '"agent";r=39;t=1',
  });
  t.same(rateLimitHeaders('tickets:tickets.reply', { rps: 0.5, burst: 5 }, { allowed: false, rule: 1, remaining: 0, retryAfterMs: 1500, resetMs: 9500 }), {
    'ratelimit-policy': '"tickets:tickets.reply";q=5;w=10',
    ratelimit: '"tickets:tickets.reply";r=0;t=10',
  });
});

async function contract(t: Test, open: () => Promise<Store>): Promise<void> {
  const store = await open();
  t.teardown(() => store.close());
  // Intervals of 100 s: a busy machine cannot refill a bucket between two calls of this test.
  const rule = { rps: 0.01, burst: 3 };
  const results = [];
  for (let i = 0; i < 4; i++) results.push(await store.rateLimit(['agent-a'], [rule]));
  t.same(results.map((r) => r.allowed), [true, true, true, false], 'burst of 3, then refused');
  t.same(results.slice(0, 3).map((r) => r.remaining), [2, 1, 0]);
  const refused = results[3];
  t.ok(refused !== undefined && refused.retryAfterMs > 0 && refused.retryAfterMs <= 100_000, `retry within one interval (${String(refused?.retryAfterMs)} ms)`);
  t.match(await store.rateLimit(['agent-b'], [rule]), { allowed: true, remaining: 2 }, 'each key has its own bucket');

  const agent = { rps: 0.01, burst: 100 };
  const scope = { rps: 0.01, burst: 1 };
  t.match(await store.rateLimit(['agent-c', 'agent-c|s'], [agent, scope]), { allowed: true, rule: 1, remaining: 0 });
  t.match(await store.rateLimit(['agent-c', 'agent-c|s'], [agent, scope]), { allowed: false, rule: 1 });
  t.match(await store.rateLimit(['agent-c'], [agent]), { allowed: true, remaining: 98 }, 'the refused call charged nothing');
}

t.test('memory store', async (t) => {
  await contract(t, () => openMemoryStore({ clock: systemClock, file: null }));
});

t.test('redis store (one Lua round trip, Redis clock)', { skip: redisServerPath() === null ? 'redis-server is not installed (apt-get install redis-server)' : false }, async (t) => {
  const redis = await startRedis(t);
  await contract(t, () => openRedisStore({ clock: systemClock, url: redis.url }));
  t.match(await redis.command('PTTL agentgate:rate:agent-a'), /^:\d+/, 'buckets expire once full again');
});
