// Rate limits per agent (and per scope where the role says so): charged once a call has passed
// every check, so refusals never spend the agent's budget and a call is charged at most once.
// The rule is GCRA (state/rules/rate-limit.ts); the store applies it atomically (Redis: one Lua
// round trip shared by every instance). Fails closed: when the store cannot decide, the call is
// refused with state_unavailable.
import type { RequestContext } from '../context.js';
import { GatewayError } from '../errors.js';
import type { RateLimitRule } from '../policy/types.js';
import { rateLimitHeaders, type RateDecision } from '../state/rules/rate-limit.js';
import type { Store } from '../state/store.js';
import type { Metrics } from '../telemetry/metrics.js';

export interface RateLimiterDeps {
  readonly store: Store;
  readonly metrics: Metrics;
}

export interface RateLimiter {
  /**
   * Charge an admitted call (after the checks: `ctx.principal` and `ctx.grant` set). Resolves the
   * `RateLimit-Policy` / `RateLimit` fields for the response, or null when the role has no limit;
   * throws 429 `rate_limited` (with `Retry-After` and the same fields) when over the limit.
   */
  charge(ctx: RequestContext): RateHeaders | Promise<RateHeaders>;
}

/** The RateLimit fields of an answer, or null when the role has no limit. */
export type RateHeaders = Readonly<Record<string, string>> | null;

const AGENT_LIMIT = 'agent';

export function createRateLimiter(deps: RateLimiterDeps): RateLimiter {
  const { store, metrics } = deps;
  function unavailable(error: unknown): GatewayError {
    return new GatewayError('state_unavailable', 'the gateway cannot check this agent\'s rate limit right now; retry shortly', {
      reasonDetail: `rate limit store failed: ${error instanceof Error ? error.message : String(error)}`,
      cause: error,
    });
  }

  return {
    // Synchronous when the store decides at once (the memory driver): no promise per request.
    charge(ctx) {
      const principal = ctx.principal;
      const grant = ctx.grant;
      if (principal === null || grant === null) throw new Error('rate limit charged before the checks');
      const policy = ctx.policy.roles.get(principal.role)?.rateLimit ?? null;
      if (policy === null) return null;
      const names = [AGENT_LIMIT];
      const keys = [principal.agent];
      const rules: RateLimitRule[] = [policy];
      const scoped = policy.scopes.get(grant.scope);
      if (scoped !== undefined) {
        names.push(grant.scope);
        keys.push(`${principal.agent}|${grant.scope}`);
        rules.push(scoped);
      }
      let pending: RateDecision | Promise<RateDecision>;
      try {
        pending = store.rateLimit(keys, rules);
      } catch (error) {
        throw unavailable(error);
      }
      const settle = (decision: RateDecision): RateHeaders => {
        const name = names[decision.rule] ?? AGENT_LIMIT;
        const rule = rules[decision.rule] ?? policy;
        const headers = rateLimitHeaders(name, rule, decision);
        if (decision.allowed) return headers;
        metrics.rateLimited(principal.agent, principal.role, name);
        throw new GatewayError('rate_limited', name === AGENT_LIMIT ? `this agent is over its rate limit of ${rule.rps}/s; retry later` : `this agent is over its rate limit of ${rule.rps}/s for ${name}; retry later`, {
          reasonDetail: `${name} limit ${rule.rps}/s burst ${rule.burst}`,
          retryAfterSeconds: Math.max(1, Math.ceil(decision.retryAfterMs / 1000)),
          headers,
          violation: policy.violation,
        });
      };
      if (!(pending instanceof Promise)) return settle(pending);
      return pending.then(settle, (error: unknown) => {
        throw unavailable(error);
      });
    },
  };
}
