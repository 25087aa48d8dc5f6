// Per-agent rate limits as one pure rule, GCRA (the generic cell rate algorithm: a token bucket
// kept as one number per key, its "theoretical arrival time"), so every store applies exactly the
// same arithmetic: the memory store calls `decide`, the Redis store runs the same steps in one Lua
// script (state/redis.ts, RATE_LIMIT) against Redis's own clock. Several rules (the agent's, and
// one per scope) are decided together: a call passes only if every rule admits it, and only then
// is any of them charged.
import type { RateLimitRule } from '../../policy/types.js';

export type { RateLimitRule };

/** What one rule says about a call at `now`. */
export interface RateDecision {
  readonly allowed: boolean;
  /** Index (into the rules) of the rule that refused, or of the tightest one when allowed. */
  readonly rule: number;
  /** Calls still allowed right now under that rule after this one (0 when refused). */
  readonly remaining: number;
  /** ms until the next call can pass (0 when allowed). */
  readonly retryAfterMs: number;
  /** ms until that rule's bucket is full again (its quota fully available). */
  readonly resetMs: number;
}

export interface RateOutcome extends RateDecision {
  /** The new theoretical arrival times (ms) to store, one per rule; null when refused (nothing changes). */
  readonly tats: readonly number[] | null;
}

/** ms between two calls at the sustained rate. */
export function intervalMs(rule: RateLimitRule): number {
  return 1000 / rule.rps;
}

/**
 * Decide one call at `now` (ms) against `rules`, given each rule's stored theoretical arrival
 * time (undefined: never used, or expired). Pure: the caller stores `tats` when allowed.
 *
 *   tat' = max(tat, now) + T          T = 1000 / rps
 *   allowed  iff  now >= tat' - burst * T
 *
 * so after a quiet spell `burst` calls pass at once, then one every T; over a span S at most
 * burst + S / T calls pass.
 */
export function decide(rules: readonly RateLimitRule[], tats: readonly (number | undefined)[], now: number): RateOutcome {
  const next: number[] = [];
  let tightest = 0;
  let tightestRemaining = Infinity;
  let tightestReset = 0;
  for (let i = 0; i < rules.length; i++) {
    const rule = rules[i] as RateLimitRule;
    const t = intervalMs(rule);
    const tat = Math.max(tats[i] ?? now, now);
    const newTat = tat + t;
    const allowAt = newTat - rule.burst * t;
    if (now < allowAt) {
      return { allowed: false, rule: i, remaining: 0, retryAfterMs: allowAt - now, resetMs: tat - now, tats: null };
    }
    const remaining = Math.floor((now - allowAt) / t);
    if (remaining < tightestRemaining) {
      tightest = i;
      tightestRemaining = remaining;
      tightestReset = newTat - now;
    }
    next.push(newTat);
  }
  return { allowed: true, rule: tightest, remaining: tightestRemaining === Infinity ? 0 : tightestRemaining, retryAfterMs: 0, resetMs: tightestReset, tats: next };
}

/**
 * The IETF RateLimit header fields (draft-ietf-httpapi-ratelimit-headers): the policy as a quota
 * `q` of `burst` calls over the `w` seconds the bucket takes to refill, and the current state as
 * `r` calls remaining and `t` seconds until the quota is whole again.
 */
export function rateLimitHeaders(name: string, rule: RateLimitRule, decision: RateDecision): { readonly 'ratelimit-policy': string; readonly ratelimit: string } {
  const windowSeconds = Math.max(1, Math.ceil(rule.burst / rule.rps));
  return {
    'ratelimit-policy': `"${name}";q=${rule.burst};w=${windowSeconds}`,
    ratelimit: `"${name}";r=${decision.remaining};t=${Math.max(0, Math.ceil(decision.resetMs / 1000))}`,
  };
}
