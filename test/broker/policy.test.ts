// The broker's policy keys: the `users:` section (claims -> scopes) and token.maxDelegationDepth,
// validated with exact messages, and the mapping the exchange applies to a user's claims.
import t from 'tap';
import { relative } from 'node:path';
import { ConfigError } from '../../gateway/errors.js';
import { loadPolicySnapshot } from '../../gateway/policy/index.js';
import { rightsOf } from '../../gateway/broker/exchange.js';

const clock = { now: () => 1_700_000_000_000 };
const y = (...lines: string[]): string => `${lines.join('\n')}\n`;
const BASE = y(
  'backends:',
  '  crm:',
  '    upstream: http://127.0.0.1:9101',
  '    scopes:',
  '      contacts.read: ["GET /contacts"]',
  '      export: ["GET /export"]',
  'roles:',
  '  marketing:',
  '    grants: [crm:contacts.read]',
);

async function problemsOf(files: Record<string, string>): Promise<string[]> {
  const dir = t.testdir(files);
  try {
    await loadPolicySnapshot(dir, { version: 1, clock, defaultTimeoutMs: 1000 });
    return [];
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    return error.problems.map((p) => p.replaceAll(relative(process.cwd(), dir), '{dir}'));
  }
}

const cases = [
  {
    name: 'a valid users section and delegation depth',
    files: { 'a.yaml': BASE.replace('    grants: [crm:contacts.read]', '    grants: [crm:contacts.read]\n    token: { maxDelegationDepth: 2 }'), 'users.yaml': y('users:', '  groups:', '    sales: [crm:contacts.read]') },
    expect: [],
  },
  {
    name: 'unknown scopes, bad claim names, non-lists and a depth out of range',
    files: {
      'a.yaml': BASE.replace('    grants: [crm:contacts.read]', '    grants: [crm:contacts.read]\n    token: { maxDelegationDepth: 9 }'),
      'users.yaml': y('users:', '  groups:', '    sales: [crm:contacts.raed, nope, bi:reports.read]', '    ops: crm:export', '  sub:', '    alice: [crm:export]', '  "9bad": {}'),
    },
    expect: [
      '{dir}/a.yaml:10  roles.marketing.token.maxDelegationDepth: expected a whole number from 0 to 7, got 9',
      '{dir}/users.yaml:3  users.groups.sales[0]: unknown scope "crm:contacts.raed" (crm has: contacts.read, export)',
      '{dir}/users.yaml:3  users.groups.sales[1]: "nope" must be backend:scope (e.g. crm:contacts.read)',
      '{dir}/users.yaml:3  users.groups.sales[2]: unknown backend "bi" in "bi:reports.read" (backends: crm)',
      '{dir}/users.yaml:4  users.groups.ops: expected a list, got "crm:export"',
      '{dir}/users.yaml:5  users.sub: "sub" cannot grant rights (use a claim such as groups, roles or scope)',
      '{dir}/users.yaml:7  users.9bad: a claim name uses letters, digits, _ . : -, and starts with a letter or _',
    ],
  },
];

for (const c of cases) {
  t.test(c.name, async (t) => {
    t.same(await problemsOf(c.files), c.expect);
  });
}

t.test('rightsOf maps string, space-separated and list claims; unknown values grant nothing', async (t) => {
  const users = new Map([
    ['groups', new Map([['sales', new Set(['crm:contacts.read'])], ['ops', new Set(['crm:export'])]])],
    ['scope', new Map([['reports', new Set(['bi:reports.read'])]])],
  ]);
  t.same([...rightsOf({ groups: ['sales', 'unknown', 7] }, users)], ['crm:contacts.read']);
  t.same([...rightsOf({ groups: 'sales ops' }, users)].sort(), ['crm:contacts.read', 'crm:export']);
  t.same([...rightsOf({ scope: 'openid reports' }, users)], ['bi:reports.read']);
  t.same([...rightsOf({ groups: { sales: true }, roles: ['sales'] }, users)], []);
  t.same([...rightsOf({ groups: '__proto__' }, users)], []);
});
