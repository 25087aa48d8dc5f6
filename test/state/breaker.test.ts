// The breaker rules, as a table of violation sequences over an injected clock.
import t from 'tap';
import { addViolation, viewBreaker, type BreakerRecord } from '../../gateway/state/breaker.js';
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
