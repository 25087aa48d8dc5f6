// Issue 10 policy keys: forwardHeaders and forwardCookies on a backend (reserved names refused),
// and per-route request rules, each problem exactly as `agentgate check` prints it.
import t from 'tap';
import { relative } from 'node:path';
import { ConfigError } from '../../gateway/errors.js';
import { loadPolicySnapshot } from '../../gateway/policy/index.js';
import type { PolicySnapshot } from '../../gateway/policy/types.js';

const clock = { now: () => 1_700_000_000_000 };
const y = (...lines: string[]): string => `${lines.join('\n')}\n`;

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

interface Case {
  readonly name: string;
  readonly file: string;
  readonly expect: readonly string[];
}

const headerCases: readonly Case[] = [
  {
    name: 'forwardHeaders: reserved names in any spelling, bad spellings, duplicates, defaults',
    file: y(
      'backends:',
      '  app:',
      '    upstream: http://127.0.0.1:9101',
      '    forwardHeaders:',
      '      - x-tenant-id',
      '      - X_AgentGate_Agent',
      '      - x-forwarded-prefix',
      '      - authorization',
      '      - Cookie',
      '      - x.real.ip',
      '      - transfer-encoding',
      '      - x-http-method-override',
      '      - X-Tenant',
      '      - x-tenant-id',
      '      - accept',
      '      - x-envoy-original-path',
      '      - 42',
      '      - x-original-url',
      '    scopes:',
      '      read: ["GET /items"]',
    ),
    expect: [
      '{file}:6  backends.app.forwardHeaders[1]: "X_AgentGate_Agent" is reserved (x-agentgate-*): the gateway sets or refuses it itself',
      '{file}:7  backends.app.forwardHeaders[2]: "x-forwarded-prefix" is reserved (x-forwarded-*): the gateway sets or refuses it itself',
      '{file}:8  backends.app.forwardHeaders[3]: "authorization" is reserved (authorization): the gateway sets or refuses it itself',
      '{file}:9  backends.app.forwardHeaders[4]: "Cookie" is reserved (cookie): cookies are listed by name in forwardCookies',
      '{file}:10  backends.app.forwardHeaders[5]: "x.real.ip" is reserved (x-real-ip): the gateway sets or refuses it itself',
      '{file}:11  backends.app.forwardHeaders[6]: "transfer-encoding" is reserved (transfer-encoding): the gateway sets or refuses it itself',
      '{file}:12  backends.app.forwardHeaders[7]: "x-http-method-override" is reserved (x-http-method-override): the gateway sets or refuses it itself',
      '{file}:13  backends.app.forwardHeaders[8]: "X-Tenant": write header names in lower case with - (e.g. x-tenant); the gateway forwards only that exact spelling',
      '{file}:14  backends.app.forwardHeaders[9]: "x-tenant-id" is listed twice',
      '{file}:15  backends.app.forwardHeaders[10]: "accept" is forwarded by default; leave it out',
      '{file}:16  backends.app.forwardHeaders[11]: "x-envoy-original-path" is reserved (x-envoy-*): the gateway sets or refuses it itself',
      '{file}:17  backends.app.forwardHeaders[12]: expected a header name such as x-tenant-id, got 42',
      '{file}:18  backends.app.forwardHeaders[13]: "x-original-url" is reserved (x-original-url): the gateway sets or refuses it itself',
    ],
  },
  {
    name: 'forwardCookies: names only, no duplicates',
    file: y(
      'backends:',
      '  app:',
      '    upstream: http://127.0.0.1:9101',
      '    forwardCookies: [lang, "a b", lang, "x;y", {}]',
      '    scopes:',
      '      read: ["GET /items"]',
    ),
    expect: [
      '{file}:4  backends.app.forwardCookies[1]: expected a cookie name (letters, digits and !#$%&\'*+-.^_`|~), got "a b"',
      '{file}:4  backends.app.forwardCookies[2]: "lang" is listed twice',
      '{file}:4  backends.app.forwardCookies[3]: expected a cookie name (letters, digits and !#$%&\'*+-.^_`|~), got "x;y"',
      '{file}:4  backends.app.forwardCookies[4]: expected a cookie name (letters, digits and !#$%&\'*+-.^_`|~), got a map',
    ],
  },
  {
    name: 'forwardHeaders must be a list',
    file: y('backends:', '  app:', '    upstream: http://127.0.0.1:9101', '    forwardHeaders: x-tenant-id', '    scopes:', '      read: ["GET /items"]'),
    expect: ['{file}:4  backends.app.forwardHeaders: expected a list, got "x-tenant-id"'],
  },
];

function runCases(cases: readonly Case[]): void {
  for (const c of cases) {
    t.test(c.name, async (t) => {
      const dir = t.testdir({ 'backends.yaml': c.file });
      const file = `${relative(process.cwd(), dir)}/backends.yaml`;
      t.same(await problemsOf(dir), c.expect.map((l) => l.replaceAll('{file}', file)));
    });
  }
}

runCases(headerCases);

t.test('a valid backend compiles its allowlist once', async (t) => {
  const dir = t.testdir({
    'backends.yaml': y('backends:', '  app:', '    upstream: http://127.0.0.1:9101', '    forwardHeaders: [x-tenant-id]', '    forwardCookies: [lang]', '    scopes:', '      read: ["GET /items"]'),
  });
  const snapshot = await load(dir);
  const app = snapshot.backends.get('app');
  t.ok(app?.forwardHeaders.has('x-tenant-id'));
  t.ok(app?.forwardHeaders.has('accept'), 'defaults included');
  t.notOk(app?.forwardHeaders.has('cookie'));
  t.same([...(app?.forwardCookies ?? [])], ['lang']);
});
