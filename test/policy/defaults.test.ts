// The `defaults:` section (breaker, rate limit, token policy every role inherits), a role's
// key-by-key override and its explicit `off`, per-scope rate limits, and agents' `expires`:
// what each role ends up with, the warnings `agentgate check` prints, and every problem as an
// operator reads it (`file:line  path: message`).
import t from 'tap';
import { relative } from 'node:path';
import { ConfigError } from '../../gateway/errors.js';
import { loadPolicySnapshot } from '../../gateway/policy/index.js';
import type { PolicySnapshot } from '../../gateway/policy/types.js';

const NOW = Date.UTC(2026, 11, 3, 12, 0, 0);
const clock = { now: () => NOW };
const y = (...lines: string[]): string => `${lines.join('\n')}\n`;

const BACKENDS = y(
  'backends:',
  '  crm:',
  '    upstream: http://127.0.0.1:9101',
  '    scopes:',
  '      contacts.read: ["GET /contacts", "GET /contacts/:id"]',
  '      export: ["GET /export"]',
);

async function load(dir: string): Promise<PolicySnapshot> {
  return loadPolicySnapshot(dir, { version: 1, clock, defaultTimeoutMs: 30_000 });
}

async function problemsOf(dir: string): Promise<readonly string[]> {
  try {
    await load(dir);
    return [];
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
}

const expand = (dir: string, lines: readonly string[]): string[] => lines.map((l) => l.replaceAll('{dir}', relative(process.cwd(), dir)));

t.test('roles inherit defaults, override them key by key, or switch them off', async (t) => {
  const dir = t.testdir({
    'backends.yaml': BACKENDS,
    'roles.yaml': y(
      'defaults:',
      '  breaker: { violations: 5, window: 1m, cooldown: 5m, maxCooldown: 1h }',
      '  rateLimit: { rps: 20, burst: 40 }',
      '  token: { ttl: 10m, session: single }',
      'roles:',
      '  inherits:',
      '    grants: [crm:contacts.read]',
      '  overrides:',
      '    grants: [crm:contacts.read, crm:export]',
      '    breaker: { violations: 2 }',
      '    rateLimit: { rps: 0.5, scopes: { "crm:export": { rps: 0.1, burst: 1 } }, violation: true }',
      '    token: { ttl: 1h }',
      '  unguarded:',
      '    grants: [crm:contacts.read]',
      '    breaker: off',
      '    rateLimit: off',
    ),
    'agents.yaml': y('agents:', '  a-1: { role: inherits, owner: team }'),
  });
  const snapshot = await load(dir);
  const role = (name: string) => snapshot.roles.get(name);
  t.same(role('inherits')?.breaker, { violations: 5, windowMs: 60_000, cooldownMs: 300_000, maxCooldownMs: 3_600_000, revokeTokens: false });
  t.same(role('inherits')?.rateLimit, { rps: 20, burst: 40, scopes: new Map(), violation: false });
  t.same(role('inherits')?.token, { ttlSeconds: 600, session: 'single', idleTimeoutSeconds: null, maxUses: null, rotateSeconds: null, maxDelegationDepth: 1 });
  t.same(role('overrides')?.breaker, { violations: 2, windowMs: 60_000, cooldownMs: 300_000, maxCooldownMs: 3_600_000, revokeTokens: false }, 'window and cooldown still from defaults');
  t.same(role('overrides')?.rateLimit, { rps: 0.5, burst: 40, scopes: new Map([['crm:export', { rps: 0.1, burst: 1 }]]), violation: true }, 'burst from defaults');
  t.same(role('overrides')?.token, { ttlSeconds: 3600, session: 'single', idleTimeoutSeconds: null, maxUses: null, rotateSeconds: null, maxDelegationDepth: 1 });
  t.equal(role('unguarded')?.breaker, null);
  t.equal(role('unguarded')?.rateLimit, null);
  t.same(snapshot.warnings, expand(dir, ['{dir}/roles.yaml:15  roles.unguarded.breaker: the breaker is off: agents of this role are never suspended for calls outside their grant']));
});

t.test('without defaults a role has neither breaker nor rate limit, and check says so', async (t) => {
  const dir = t.testdir({
    'p.yaml': BACKENDS + y('roles:', '  bare:', '    grants: [crm:contacts.read]', 'agents:', '  a-1: { role: bare, owner: team, expires: 2026-12-01 }'),
  });
  const snapshot = await load(dir);
  t.equal(snapshot.roles.get('bare')?.breaker, null);
  t.equal(snapshot.roles.get('bare')?.rateLimit, null);
  t.equal(snapshot.agents.get('a-1')?.expiresAt, Date.UTC(2026, 11, 2), 'works through the day named, UTC');
  t.same(snapshot.warnings, expand(dir, [
    '{dir}/p.yaml:8  roles.bare: has no breaker (no roles.bare.breaker and no defaults.breaker): this agent is never suspended for calls outside its grant',
    '{dir}/p.yaml:11  agents.a-1.expires: expired on 2026-12-02T00:00:00.000Z: the agent is refused (agent_expired); remove it or extend the date',
  ]));
});

t.test('expires: a date or an RFC 3339 time', async (t) => {
  const dir = t.testdir({
    'p.yaml': BACKENDS + y(
      'roles:',
      '  r: { grants: [crm:contacts.read] }',
      'agents:',
      '  a-1: { role: r, owner: team, expires: 2027-03-31 }',
      '  a-2: { role: r, owner: team, expires: "2027-03-31T18:30:00+02:00" }',
      '  a-3: { role: r, owner: team }',
    ),
  });
  const snapshot = await load(dir);
  t.equal(snapshot.agents.get('a-1')?.expiresAt, Date.UTC(2027, 3, 1));
  t.equal(snapshot.agents.get('a-2')?.expiresAt, Date.UTC(2027, 2, 31, 16, 30));
  t.equal(snapshot.agents.get('a-3')?.expiresAt, null);
});

const cases: Array<{ name: string; files: Record<string, string>; expect: string[] }> = [
  {
    name: 'defaults: unknown keys, off, wrong shapes, per-scope limits',
    files: {
      'backends.yaml': BACKENDS,
      'roles.yaml': y(
        'defaults:',
        '  breakr: { violations: 5 }',
        '  breaker: off',
        '  rateLimit: { rps: 10, scopes: { "crm:export": { rps: 1 } } }',
        '  token: 15m',
        'roles:',
        '  r: { grants: [crm:contacts.read] }',
      ),
    },
    expect: [
      '{dir}/roles.yaml:2  defaults.breakr: unknown key (allowed: breaker, rateLimit, token); did you mean "breaker"?',
      '{dir}/roles.yaml:3  defaults.breaker: "off" belongs on a role; leave breaker out of defaults for none',
      '{dir}/roles.yaml:4  defaults.rateLimit.scopes: per-scope limits go on a role (roles.NAME.rateLimit.scopes)',
      '{dir}/roles.yaml:5  defaults.token: expected a map, got "15m"',
    ],
  },
  {
    name: 'defaults: an incomplete breaker and bad numbers',
    files: {
      'backends.yaml': BACKENDS,
      'roles.yaml': y(
        'defaults:',
        '  breaker: { violations: 0, window: 1 }',
        '  rateLimit: { rps: 0, burst: 2.5 }',
        'roles:',
        '  r: { grants: [crm:contacts.read] }',
      ),
    },
    expect: [
      '{dir}/roles.yaml:2  defaults.breaker.violations: expected a whole number from 1 to 1000000, got 0',
      '{dir}/roles.yaml:2  defaults.breaker.window: "1" has no unit (use e.g. 1s)',
      '{dir}/roles.yaml:2  defaults.breaker.cooldown: is required',
      '{dir}/roles.yaml:3  defaults.rateLimit.rps: expected calls per second, a number above 0 and at most 1000000 (e.g. 20 or 0.5), got 0',
      '{dir}/roles.yaml:3  defaults.rateLimit.burst: expected a whole number from 1 to 1000000, got 2.5',
    ],
  },
  {
    name: 'defaults defined in two files',
    files: {
      'backends.yaml': BACKENDS,
      'a.yaml': y('defaults:', '  rateLimit: { rps: 1 }', 'roles:', '  r: { grants: [crm:contacts.read] }'),
      'b.yaml': y('defaults:', '  rateLimit: { rps: 2 }'),
    },
    expect: ['{dir}/b.yaml:2  defaults.rateLimit: defined twice (also at {dir}/a.yaml:2)'],
  },
  {
    name: 'roles: overrides are checked with the defaults laid under them',
    files: {
      'backends.yaml': BACKENDS,
      'roles.yaml': y(
        'defaults:',
        '  breaker: { violations: 5, window: 1m, cooldown: 5m }',
        'roles:',
        '  r:',
        '    grants: [crm:contacts.read]',
        '    breaker: { violatons: 3 }',
        '    rateLimit: { burst: 3, scopes: { "crm:export": { rps: 1 }, "crm:contacts.read": { rps: -1, bust: 2 } } }',
        '  s:',
        '    grants: [crm:contacts.read]',
        '    breaker: false',
        '    rateLimit: on',
      ),
    },
    expect: [
      '{dir}/roles.yaml:6  roles.r.breaker.violatons: unknown key (allowed: violations, window, cooldown, maxCooldown, revokeTokens); did you mean "violations"?',
      '{dir}/roles.yaml:7  roles.r.rateLimit.rps: is required',
      '{dir}/roles.yaml:7  roles.r.rateLimit.scopes.crm:export: "crm:export" is not granted to this role (grants: crm:contacts.read)',
      '{dir}/roles.yaml:7  roles.r.rateLimit.scopes.crm:contacts.read.bust: unknown key (allowed: rps, burst); did you mean "burst"?',
      '{dir}/roles.yaml:7  roles.r.rateLimit.scopes.crm:contacts.read.rps: expected calls per second, a number above 0 and at most 1000000 (e.g. 20 or 0.5), got -1',
      '{dir}/roles.yaml:10  roles.s.breaker: expected a map with keys violations, window, cooldown, maxCooldown, revokeTokens, got false',
      '{dir}/roles.yaml:11  roles.s.rateLimit: expected a map with keys rps, burst, scopes, violation, got "on"',
    ],
  },
  {
    name: 'agents: owner is required, expires must be a date',
    files: {
      'p.yaml': BACKENDS + y(
        'roles:',
        '  r: { grants: [crm:contacts.read] }',
        'agents:',
        '  a-1: { role: r }',
        '  a-2: { role: r, owner: team, expires: 2027-02-30 }',
        '  a-3: { role: r, owner: team, expires: next year }',
        '  a-4: { role: r, owner: team, expires: 20270331 }',
      ),
    },
    expect: [
      '{dir}/p.yaml:10  agents.a-1.owner: is required',
      '{dir}/p.yaml:11  agents.a-2.expires: "2027-02-30" is not a calendar date',
      '{dir}/p.yaml:12  agents.a-3.expires: "next year" is not a date (use 2027-03-31, or an RFC 3339 time such as 2027-03-31T18:00:00Z)',
      '{dir}/p.yaml:13  agents.a-4.expires: expected a date such as 2027-03-31, got 20270331',
    ],
  },
];

for (const c of cases) {
  t.test(c.name, async (t) => {
    const dir = t.testdir(c.files);
    t.same(await problemsOf(dir), expand(dir, c.expect));
  });
}
