// The breaker rules, as a table of violation sequences over an injected clock.
import t from 'tap';
import { addViolation, countInWindow, viewBreaker, type BreakerRecord } from '../../gateway/state/breaker.js';
import type { BreakerPolicy } from '../../gateway/policy/types.js';

const S = 1000;
const policy: BreakerPolicy = { violations: 3, windowMs: 60 * S, cooldownMs: 10 * S, maxCooldownMs: 30 * S, revokeTokens: false };
const manual: BreakerPolicy = { ...policy, cooldownMs: null };

/** Feed violations at the given seconds; return the view at `at`. */
function run(p: BreakerPolicy, violationsAt: number[], at: number) {
  let record: BreakerRecord | undefined;
  const trips: number[] = [];
  for (const second of violationsAt) {
    const result = addViolation(record, p, second * S);
    record = result.record;
    if (result.tripped) trips.push(second);
  }
  return { view: viewBreaker(record, p, at * S), trips, record };
}

const cases = [
  { name: 'N-1 violations in the window: closed', p: policy, v: [0, 10], at: 11, state: 'closed', trips: [] },
  { name: 'N violations in the window: open', p: policy, v: [0, 10, 20], at: 21, state: 'open', trips: [20], retry: 9 },
  { name: 'violations older than the window expire', p: policy, v: [0, 30, 61], at: 62, state: 'closed', trips: [] },
  { name: 'exactly one window apart do not add up', p: policy, v: [0, 1, 61], at: 62, state: 'closed', trips: [] },
  { name: 'open until the cooldown ends', p: policy, v: [0, 1, 2], at: 11, state: 'open', trips: [2], retry: 1 },
  { name: 'half-open after the cooldown', p: policy, v: [0, 1, 2], at: 12, state: 'half_open', trips: [2] },
  { name: 'violations while open are not counted again', p: policy, v: [0, 1, 2, 3, 4], at: 12, state: 'half_open', trips: [2] },
  { name: 'a half-open violation reopens with the cooldown doubled', p: policy, v: [0, 1, 2, 13], at: 14, state: 'open', trips: [2, 13], retry: 19 },
  { name: 'doubling is capped', p: policy, v: [0, 1, 2, 13, 34, 65], at: 66, state: 'open', trips: [2, 13, 34, 65], retry: 29 },
  { name: 'a clean window after half-open closes it', p: policy, v: [0, 1, 2], at: 12 + 60, state: 'closed', trips: [2] },
  { name: 'after closing, it takes N violations again', p: policy, v: [0, 1, 2, 80, 81], at: 82, state: 'closed', trips: [2] },
  { name: 'manual cooldown stays open', p: manual, v: [0, 1, 2], at: 100_000, state: 'open', trips: [2], retry: null },
] as const;

for (const c of cases) {
  t.test(c.name, async (t) => {
    const { view, trips } = run(c.p, [...c.v], c.at);
    t.equal(view.state, c.state);
    t.same(trips, c.trips);
    if ('retry' in c) t.equal(view.retryAfterSeconds, c.retry);
  });
}

// The violations counted in the window, found by binary search over the ascending timestamps: the
// boundary (exactly one window old is out), empty and all-expired lists, and a flood far below a
// high threshold, checked against counting one by one.
t.test('violations in the window: boundaries and a flood', async (t) => {
  const table = [
    { name: 'none', times: [], now: 10, window: 5, count: 0 },
    { name: 'all inside', times: [6, 7, 8], now: 10, window: 5, count: 3 },
    { name: 'exactly one window old is out', times: [5, 6], now: 10, window: 5, count: 1 },
    { name: 'all expired', times: [1, 2, 3], now: 10, window: 5, count: 0 },
    { name: 'one just inside', times: [1, 2, 6], now: 10, window: 5, count: 1 },
    { name: 'at now', times: [10], now: 10, window: 5, count: 1 },
  ];
  for (const c of table) t.equal(countInWindow(c.times, c.now, c.window), c.count, c.name);
  const flood: number[] = [];
  for (let i = 0; i < 100_000; i++) flood.push(i * 3);
  for (const now of [0, 1, 150_000, 299_997, 299_998, 400_000]) {
    const slow = flood.filter((time) => now - time < 60_000).length;
    t.equal(countInWindow(flood, now, 60_000), slow, `flood, now ${now}`);
  }
  const flooder: BreakerPolicy = { violations: 1_000_000, windowMs: 60 * S, cooldownMs: 10 * S, maxCooldownMs: 30 * S, revokeTokens: false };
  let record: BreakerRecord | undefined;
  for (let ms = 0; ms < 90_000; ms += 2) record = addViolation(record, flooder, ms).record;
  t.equal(viewBreaker(record, flooder, 89_998).violationsInWindow, 30_000, 'a 90 s flood, one every 2 ms: the last minute counted');
  t.equal(viewBreaker(record, flooder, 90_000).violationsInWindow, 29_999, 'a moment later the oldest is out');
  t.equal(record?.violations.length, 30_000, 'and only the last minute kept');
});

// The Redis driver applies every instance's violations to one shared record, each at its own
// clock: a violation from an instance whose clock is behind arrives earlier than the last one.
// The window count (a binary search) and the expiry from the front both need the list in order.
t.test('violations from instances with skewed clocks: counted and expired as if in order', async (t) => {
  const skewed = [
    { name: 'one late arrival', at: [10_000, 12_000, 11_000], now: 12_500, window: 60_000 },
    { name: 'a clock 2 s behind, interleaved', at: [5_000, 3_100, 5_200, 3_300, 5_400, 3_500], now: 6_000, window: 2_600 },
    { name: 'late arrivals that are already expired', at: [70_000, 9_000, 71_000, 10_000], now: 71_000, window: 60_000 },
  ];
  for (const c of skewed) {
    const p: BreakerPolicy = { violations: 1_000, windowMs: c.window, cooldownMs: 10 * S, maxCooldownMs: 30 * S, revokeTokens: false };
    let record: BreakerRecord | undefined;
    for (const at of c.at) record = addViolation(record, p, at).record;
    const times = record?.violations ?? [];
    t.same(times, [...times].sort((a, b) => a - b), `${c.name}: kept in order`);
    // Counted one by one over every violation recorded, against the window at `now`.
    const expected = c.at.filter((at) => c.now - at < c.window).length;
    t.equal(viewBreaker(record, p, c.now).violationsInWindow, expected, `${c.name}: ${expected} in the window`);
  }
  // Trips at exactly N even when the N-th violation carries the earliest time.
  const three: BreakerPolicy = { violations: 3, windowMs: 60 * S, cooldownMs: 10 * S, maxCooldownMs: 30 * S, revokeTokens: false };
  let record: BreakerRecord | undefined;
  const trips: boolean[] = [];
  for (const at of [20 * S, 21 * S, 19 * S]) {
    const result = addViolation(record, three, at);
    record = result.record;
    trips.push(result.tripped);
  }
  t.same(trips, [false, false, true], 'the third violation trips it');
});
