// The per-agent over-privilege circuit breaker, as pure functions over a record, so every store
// (memory, Redis) applies exactly the same rules:
//   closed -> open       when `violations` violations fall within `window`;
//   open -> half_open    after the cooldown (never, for a manual cooldown);
//   half_open -> open    on one violation, with the cooldown doubled (capped);
//   half_open -> closed  after a whole window without a violation.

import type { BreakerPolicy } from '../policy/types.js';

export type { BreakerPolicy };

export type BreakerState = 'closed' | 'half_open' | 'open';

export interface BreakerRecord {
  /** Violation times (ms) inside the window; those that tripped it are kept while it is open. */
  readonly violations: readonly number[];
  /** When the breaker last opened (ms), or null while it has never tripped. */
  readonly openedAt: number | null;
  /** When it turns half-open (ms); null while closed, or while open with a manual cooldown. */
  readonly reopenAt: number | null;
  /** The cooldown in force (doubles on each half-open violation). */
  readonly cooldownMs: number | null;
  /** True while open (until reopenAt passes) or half-open (until a clean window passes). */
  readonly tripped: boolean;
  readonly trips: number;
}

/**
 * What a role without a breaker (`breaker: off`) is still counted with, so the inventory shows its
 * violations in a window like any other agent's: the shipped default window, never trips.
 */
export const COUNT_ONLY: BreakerPolicy = Object.freeze({ violations: Number.MAX_SAFE_INTEGER, windowMs: 60_000, cooldownMs: null, maxCooldownMs: 0, revokeTokens: false });

/** The policy violations of a role are counted under: its breaker, or COUNT_ONLY. */
export function countingPolicy(policy: BreakerPolicy | null): BreakerPolicy {
  return policy ?? COUNT_ONLY;
}

export const CLOSED: BreakerRecord = Object.freeze({ violations: [], openedAt: null, reopenAt: null, cooldownMs: null, tripped: false, trips: 0 });

export interface BreakerView {
  readonly state: BreakerState;
  /** Seconds until half-open; null when closed, half-open or manual. */
  readonly retryAfterSeconds: number | null;
  readonly violationsInWindow: number;
}

/** The state at `now`: open turns half-open after the cooldown; half-open closes after a clean window. */
export function viewBreaker(record: BreakerRecord | undefined, policy: BreakerPolicy | null, now: number): BreakerView {
  const windowMs = countingPolicy(policy).windowMs;
  const inWindow = record === undefined ? 0 : countInWindow(record.violations, now, windowMs);
  if (record === undefined || !record.tripped) {
    return { state: 'closed', retryAfterSeconds: null, violationsInWindow: inWindow };
  }
  if (record.reopenAt === null) return { state: 'open', retryAfterSeconds: null, violationsInWindow: inWindow };
  if (now < record.reopenAt) return { state: 'open', retryAfterSeconds: Math.ceil((record.reopenAt - now) / 1000), violationsInWindow: inWindow };
  if (now - record.reopenAt >= windowMs) return { state: 'closed', retryAfterSeconds: null, violationsInWindow: inWindow };
  return { state: 'half_open', retryAfterSeconds: null, violationsInWindow: inWindow };
}

/**
 * Add `time` to the ascending list `times`. Appending is the common case; a time earlier than the
 * last one comes from another instance whose clock is behind (the Redis driver applies every
 * instance's violations to one shared record) and goes where it belongs, so the list stays
 * ascending for the window count and for dropping expired times from the front.
 */
function insertInOrder(times: number[], time: number): void {
  const last = times.length - 1;
  if (last < 0 || time >= (times[last] as number)) {
    times.push(time);
    return;
  }
  let lo = 0;
  let hi = last;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((times[mid] as number) <= time) lo = mid + 1;
    else hi = mid;
  }
  times.splice(lo, 0, time);
}

/**
 * How many of `times` (ascending, as insertInOrder keeps them) fall inside the
 * window ending at `now`, by binary search. This runs on every request of an agent with breaker
 * state: counted one by one, a flood below a high threshold (or under `breaker: off`, counted over
 * a minute) cost every request a walk over all the flood's timestamps.
 */
export function countInWindow(times: readonly number[], now: number, windowMs: number): number {
  let lo = 0;
  let hi = times.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (now - (times[mid] as number) >= windowMs) lo = mid + 1;
    else hi = mid;
  }
  return times.length - lo;
}

export interface ViolationResult {
  readonly record: BreakerRecord;
  /** The breaker opened (or reopened) with this violation. */
  readonly tripped: boolean;
}

/**
 * Apply one violation made with a valid token at `now`. The returned record replaces `record`,
 * whose violation list it may reuse.
 */
export function addViolation(record: BreakerRecord | undefined, policy: BreakerPolicy, now: number): ViolationResult {
  const current = record ?? CLOSED;
  const view = viewBreaker(current, policy, now);
  if (view.state === 'open') return { record: current, tripped: false };
  if (view.state === 'half_open') {
    const doubled = current.cooldownMs === null ? null : Math.min(current.cooldownMs * 2, policy.maxCooldownMs);
    const kept = current.violations.filter((t) => now - t < policy.windowMs);
    insertInOrder(kept, now);
    return {
      record: { violations: kept, openedAt: now, reopenAt: doubled === null ? null : now + doubled, cooldownMs: doubled, tripped: true, trips: current.trips + 1 },
      tripped: true,
    };
  }
  // Closed (possibly after a clean half-open window): count violations inside the window.
  // The closed record's own timestamp list is reused (expired ones dropped from the front, the
  // new one appended) instead of copied: a flood below a high threshold keeps thousands of
  // timestamps in the window and this runs once per violation. Callers replace the record they
  // passed with the one returned (both stores do), so nobody sees the old one change.
  const recent: number[] = current.tripped || current === CLOSED ? [] : (current.violations as number[]);
  let expired = 0;
  while (expired < recent.length && now - (recent[expired] as number) >= policy.windowMs) expired++;
  if (expired > 0) recent.splice(0, expired);
  insertInOrder(recent, now);
  if (recent.length >= policy.violations) {
    return {
      // The violations that tripped it stay on the record: the inventory shows them while it is open.
      record: { violations: recent, openedAt: now, reopenAt: policy.cooldownMs === null ? null : now + policy.cooldownMs, cooldownMs: policy.cooldownMs, tripped: true, trips: current.trips + 1 },
      tripped: true,
    };
  }
  return { record: { ...current, violations: recent, tripped: false, reopenAt: null, cooldownMs: null }, tripped: false };
}
