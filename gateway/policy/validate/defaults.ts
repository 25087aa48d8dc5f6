// The `defaults:` section, and how a role's own breaker, rateLimit and token maps lie over it.
import type { RawEntry } from '../load.js';
import type { BreakerPolicy, RateLimitPolicy, TokenPolicy } from '../types.js';
import { unknownKeyMessage } from '../units.js';
import { kindOf, type Checker } from './checker.js';
import { validateBreaker, validateRateLimit, validateTokenPolicy } from './role-policies.js';

const DEFAULTS_KEYS = ['breaker', 'rateLimit', 'token'];

/**
 * The `defaults:` section: a breaker, rate limit and token policy every role inherits. A role
 * that sets the key overrides it key by key (`breaker: { violations: 3 }` keeps the default
 * window and cooldown), or switches it off explicitly (`breaker: off`, `rateLimit: off`).
 */
export interface PolicyDefaults {
  readonly breaker: { readonly raw: RawEntry; readonly policy: BreakerPolicy } | null;
  readonly rateLimit: { readonly raw: RawEntry; readonly policy: RateLimitPolicy } | null;
  readonly token: { readonly raw: RawEntry; readonly policy: TokenPolicy } | null;
}

export function validateDefaults(c: Checker, entries: ReadonlyMap<string, RawEntry>): PolicyDefaults {
  let breaker: PolicyDefaults['breaker'] = null;
  let rateLimit: PolicyDefaults['rateLimit'] = null;
  let token: PolicyDefaults['token'] = null;
  for (const [key, entry] of entries) {
    const path = `defaults.${key}`;
    if (!DEFAULTS_KEYS.includes(key)) {
      c.add(entry.at, path, unknownKeyMessage(key, DEFAULTS_KEYS));
      continue;
    }
    if (isOff(entry)) {
      c.add(entry.value.at, path, `"off" belongs on a role; leave ${key} out of defaults for none`);
      continue;
    }
    if (entry.value.kind !== 'map') {
      c.add(entry.value.at, path, `expected a map, got ${kindOf(entry.value)}`);
      continue;
    }
    if (key === 'breaker') {
      const policy = validateBreaker(c, entry, path);
      if (policy !== null) breaker = { raw: entry, policy };
    } else if (key === 'rateLimit') {
      if (entry.value.entries.has('scopes')) {
        c.add(entry.value.entries.get('scopes')?.at ?? entry.at, `${path}.scopes`, 'per-scope limits go on a role (roles.NAME.rateLimit.scopes)');
        continue;
      }
      const policy = validateRateLimit(c, entry, path, new Set());
      if (policy !== null) rateLimit = { raw: entry, policy };
    } else {
      const policy = validateTokenPolicy(c, entry, path);
      if (policy !== null) token = { raw: entry, policy };
    }
  }
  return { breaker, rateLimit, token };
}

/** `key: off` (YAML 1.2 reads it as the string "off"). */
export function isOff(entry: RawEntry): boolean {
  return entry.value.kind === 'scalar' && entry.value.value === 'off';
}

/**
 * A role's map laid over the default's, key by key: the role's keys win, the others come from
 * `defaults`. Positions stay where each key was written, so a problem points at the right file.
 */
export function overlay(base: RawEntry | undefined, entry: RawEntry): RawEntry {
  if (base === undefined || base.value.kind !== 'map' || entry.value.kind !== 'map') return entry;
  return { at: entry.at, value: { kind: 'map', at: entry.value.at, entries: new Map([...base.value.entries, ...entry.value.entries]) } };
}
