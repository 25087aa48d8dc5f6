// The policies a role sets or inherits from `defaults:`: the circuit breaker, the rate limit and
// the token policy (ttl, sessions, uses, rotation, delegation depth).
import type { RawEntry } from '../load.js';
import type { BreakerPolicy, RateLimitPolicy, RateLimitRule, TokenPolicy } from '../types.js';
import { describe, parseDuration, type Parsed } from '../units.js';
import { kindOf, type Checker } from './checker.js';

/** Cap of the doubling cooldown when a breaker sets no maxCooldown (or the cooldown, if longer). */
const DEFAULT_MAX_COOLDOWN_MS = 24 * 3_600_000;
const DEFAULT_TTL_MS = 15 * 60_000;

/** Deepest `act` chain a token may carry (the verifier refuses deeper ones). */
const MAX_DELEGATION_DEPTH = 7;
const MAX_TTL_MS = 24 * 3_600_000;
const BREAKER_KEYS = ['violations', 'window', 'cooldown', 'maxCooldown', 'revokeTokens'];
const TOKEN_KEYS = ['ttl', 'session', 'idleTimeout', 'maxUses', 'rotate', 'maxDelegationDepth'];
const RATE_LIMIT_KEYS = ['rps', 'burst', 'scopes', 'violation'];
const MAX_RPS = 1_000_000;

/** `rateLimit: { rps, burst?, scopes?: { "backend:scope": { rps, burst? } }, violation? }`. */
export function validateRateLimit(c: Checker, entry: RawEntry, path: string, grants: ReadonlySet<string>): RateLimitPolicy | null {
  const keys = c.map(entry.value, path, RATE_LIMIT_KEYS);
  if (keys === null) return null;
  const rule = validateRateRule(c, entry, keys, path);
  const violation = c.boolean(keys.get('violation'), `${path}.violation`) ?? false;
  const scopes = new Map<string, RateLimitRule>();
  let ok = rule !== null;
  const scopesEntry = keys.get('scopes');
  const scopeNodes = c.names(scopesEntry?.value, `${path}.scopes`, 'grants to their rate limits');
  for (const [scope, scopeEntry] of scopeNodes ?? []) {
    const sPath = `${path}.scopes.${scope}`;
    if (!grants.has(scope)) {
      c.add(scopeEntry.at, sPath, `"${scope}" is not granted to this role (grants: ${[...grants].join(', ') || 'none'})`);
      ok = false;
      continue;
    }
    const sk = c.map(scopeEntry.value, sPath, ['rps', 'burst']);
    const scopeRule = sk === null ? null : validateRateRule(c, scopeEntry, sk, sPath);
    if (scopeRule === null) ok = false;
    else scopes.set(scope, scopeRule);
  }
  if (scopesEntry !== undefined && scopeNodes === null) ok = false;
  if (!ok || rule === null) return null;
  return Object.freeze({ rps: rule.rps, burst: rule.burst, scopes, violation });
}

function validateRateRule(c: Checker, entry: RawEntry, keys: ReadonlyMap<string, RawEntry>, path: string): RateLimitRule | null {
  const rpsEntry = c.required(keys, 'rps', path, entry.at);
  let rps: number | null = null;
  if (rpsEntry !== undefined) {
    const node = rpsEntry.value;
    if (node.kind === 'scalar' && typeof node.value === 'number' && Number.isFinite(node.value) && node.value > 0 && node.value <= MAX_RPS) rps = node.value;
    else c.add(node.at, `${path}.rps`, `expected calls per second, a number above 0 and at most ${MAX_RPS} (e.g. 20 or 0.5), got ${node.kind === 'scalar' ? describe(node.value) : kindOf(node)}`);
  }
  const burst = keys.has('burst') ? c.integer(keys.get('burst'), `${path}.burst`, 1, MAX_RPS) : rps === null ? null : Math.max(1, Math.ceil(rps));
  if (rps === null || burst === null) return null;
  return Object.freeze({ rps, burst });
}

/** `breaker: { violations, window, cooldown (duration or manual), maxCooldown?, revokeTokens? }`. */
export function validateBreaker(c: Checker, entry: RawEntry, path: string): BreakerPolicy | null {
  const keys = c.map(entry.value, path, BREAKER_KEYS);
  if (keys === null) return null;
  const at = entry.at;
  const violations = c.integer(c.required(keys, 'violations', path, at), `${path}.violations`, 1, 1_000_000);
  const windowMs = c.duration(c.required(keys, 'window', path, at), `${path}.window`, { minMs: 1000 });
  const cooldownEntry = c.required(keys, 'cooldown', path, at);
  const cooldown = c.parsed(cooldownEntry, `${path}.cooldown`, parseCooldown);
  const cooldownMs = cooldown === 'manual' ? null : cooldown;
  if (cooldownEntry !== undefined && cooldownMs !== null && cooldownMs < 1000) c.add(cooldownEntry.value.at, `${path}.cooldown`, 'must be at least 1s');
  const maxEntry = keys.get('maxCooldown');
  const maxCooldownMs = maxEntry === undefined ? Math.max(DEFAULT_MAX_COOLDOWN_MS, cooldownMs ?? 0) : c.duration(maxEntry, `${path}.maxCooldown`, { minMs: Math.max(cooldownMs ?? 0, 1000) });
  const revokeTokens = c.boolean(keys.get('revokeTokens'), `${path}.revokeTokens`) ?? false;
  if (violations === null || windowMs === null || cooldown === null || (cooldownMs !== null && cooldownMs < 1000) || maxCooldownMs === null) return null;
  return Object.freeze({ violations, windowMs, cooldownMs, maxCooldownMs, revokeTokens });
}

export function validateTokenPolicy(c: Checker, entry: RawEntry | undefined, path: string): TokenPolicy | null {
  const defaults: TokenPolicy = { ttlSeconds: DEFAULT_TTL_MS / 1000, session: 'multi', idleTimeoutSeconds: null, maxUses: null, rotateSeconds: null, maxDelegationDepth: 1 };
  if (entry === undefined) return Object.freeze(defaults);
  const keys = c.map(entry.value, path, TOKEN_KEYS);
  if (keys === null) return null;
  const ttl = keys.has('ttl') ? c.duration(keys.get('ttl'), `${path}.ttl`, { minMs: 1000, maxMs: MAX_TTL_MS }) : DEFAULT_TTL_MS;
  const session = c.oneOf(keys.get('session'), `${path}.session`, ['single', 'multi'], 'a session mode') ?? 'multi';
  const idle = keys.has('idleTimeout') ? c.duration(keys.get('idleTimeout'), `${path}.idleTimeout`, { minMs: 1000 }) : null;
  const maxUses = keys.has('maxUses') ? c.integer(keys.get('maxUses'), `${path}.maxUses`, 1, 1_000_000_000) : null;
  const rotate = keys.has('rotate') ? c.duration(keys.get('rotate'), `${path}.rotate`, { minMs: 60_000 }) : null;
  const depth = keys.has('maxDelegationDepth') ? c.integer(keys.get('maxDelegationDepth'), `${path}.maxDelegationDepth`, 0, MAX_DELEGATION_DEPTH) : 1;
  if (ttl === null || depth === null) return null;
  return Object.freeze({
    ttlSeconds: Math.floor(ttl / 1000),
    session,
    idleTimeoutSeconds: idle === null ? null : Math.floor(idle / 1000),
    maxUses,
    rotateSeconds: rotate === null ? null : Math.floor(rotate / 1000),
    maxDelegationDepth: depth,
  });
}

/** A breaker cooldown: a duration, or `manual` (open until an operator revives the agent). */
function parseCooldown(input: unknown): Parsed<number | 'manual'> {
  if (input === 'manual') return { ok: true, value: 'manual' };
  const parsed = parseDuration(input);
  return parsed.ok ? parsed : { ok: false, error: `${parsed.error}, or "manual"` };
}
