// Issue 10 policy keys: forwardHeaders, forwardCookies and responseHeaders on a backend (reserved
// names refused), and per-route request rules, each problem exactly as `agentgate check` prints it.
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
    name: 'responseHeaders: reserved answer names in any spelling, bad spellings, duplicates, defaults',
    file: y(
      'backends:',
      '  app:',
      '    upstream: http://127.0.0.1:9101',
      '    responseHeaders:',
      '      - x-total-count',
      '      - Set-Cookie',
      '      - set_cookie2',
      '      - x-agentgate-agent',
      '      - transfer-encoding',
      '      - www-authenticate',
      '      - alt-svc',
      '      - strict-transport-security',
      '      - x-request-id',
      '      - mcp-session-id',
      '      - ratelimit-policy',
      '      - proxy-authenticate',
      '      - X-Total-Pages',
      '      - x-total-count',
      '      - etag',
      '      - 7',
      '    scopes:',
      '      read: ["GET /items"]',
    ),
    expect: [
      '{file}:6  backends.app.responseHeaders[1]: "Set-Cookie" is reserved (set-cookie): cookies are listed by name in forwardCookies',
      '{file}:7  backends.app.responseHeaders[2]: "set_cookie2" is reserved (set-cookie2): cookies are listed by name in forwardCookies',
      '{file}:8  backends.app.responseHeaders[3]: "x-agentgate-agent" is reserved (x-agentgate-*): the gateway sets or refuses it itself',
      '{file}:9  backends.app.responseHeaders[4]: "transfer-encoding" is reserved (transfer-encoding): it describes the backend\'s connection, not the answer',
      '{file}:10  backends.app.responseHeaders[5]: "www-authenticate" is reserved (www-authenticate): agents authenticate to the gateway, never to the backend',
      '{file}:11  backends.app.responseHeaders[6]: "alt-svc" is reserved (alt-svc): it would speak for the gateway\'s own origin',
      '{file}:12  backends.app.responseHeaders[7]: "strict-transport-security" is reserved (strict-transport-security): it would speak for the gateway\'s own origin',
      '{file}:13  backends.app.responseHeaders[8]: "x-request-id" is reserved (x-request-id): the gateway sets or refuses it itself',
      '{file}:14  backends.app.responseHeaders[9]: "mcp-session-id" is reserved (mcp-session-id): the gateway sets or refuses it itself',
      '{file}:15  backends.app.responseHeaders[10]: "ratelimit-policy" is reserved (ratelimit-policy): the gateway sets or refuses it itself',
      '{file}:16  backends.app.responseHeaders[11]: "proxy-authenticate" is reserved (proxy-authenticate): agents authenticate to the gateway, never to the backend',
      '{file}:17  backends.app.responseHeaders[12]: "X-Total-Pages": write header names in lower case with - (e.g. x-total-pages); the gateway passes back only that exact spelling',
      '{file}:18  backends.app.responseHeaders[13]: "x-total-count" is listed twice',
      '{file}:19  backends.app.responseHeaders[14]: "etag" is passed back by default; leave it out',
      '{file}:20  backends.app.responseHeaders[15]: expected a header name such as x-total-count, got 7',
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

const ruleCases: readonly Case[] = [
  {
    name: 'query and json rules: every problem with its line',
    file: y(
      'backends:',
      '  app:',
      '    upstream: http://127.0.0.1:9101',
      '    scopes:',
      '      read:',
      '        - route: GET /a',
      '          query:',
      '            limit: { int: [100, 1] }',
      '            LIMIT: { int: [1, 2] }',
      '            "tags[]": { string: true }',
      '            _method: { string: true }',
      '            status: { enum: [open, "not listed"] }',
      '            q: { string: { max: 0 } }',
      '            both: { int: [1, 2], bool: true }',
      '            none: { required: true }',
      '            re: { string: { pattern: "(" } }',
      '            flag: { bool: yes }',
      '        - route: GET /b',
      '          additionalQuery: true',
      '        - route: GET /c',
      '          json: { fields: { q: { string: true } } }',
      '        - route: POST /d',
      '          json:',
      '            fields:',
      '              __proto__: { string: true }',
      '              n: { int: [1.5, 2] }',
      '              list: { array: { items: { int: [1, 2] } } }',
      '              obj: { object: { additional: true } }',
      '            extra: 1',
    ),
    expect: [
      '{file}:8  backends.app.scopes.read[0].query.limit.int: expected [min, max] with whole numbers, min <= max (e.g. [1, 100])',
      '{file}:9  backends.app.scopes.read[0].query.LIMIT: "LIMIT" is the same parameter as "limit" to many frameworks (case, - and . are not told apart)',
      '{file}:10  backends.app.scopes.read[0].query.tags[]: a query parameter name uses only A-Z a-z 0-9 . _ ~ - (no brackets or escapes)',
      '{file}:11  backends.app.scopes.read[0].query._method: "_method" overrides the method and is always refused',
      '{file}:12  backends.app.scopes.read[0].query.status.enum[1]: expected a value of A-Z a-z 0-9 . _ ~ - (matched as sent), got "not listed"',
      '{file}:13  backends.app.scopes.read[0].query.q.string.max: expected a whole number from 1 to 1000000, got 0',
      '{file}:14  backends.app.scopes.read[0].query.both: needs exactly one of int, number, enum, string, bool (has int, bool)',
      '{file}:15  backends.app.scopes.read[0].query.none: needs exactly one of int, number, enum, string, bool',
      '{file}:16  backends.app.scopes.read[0].query.re.string.pattern: not a regular expression: Invalid regular expression: /^(?:()$/u: Unterminated group',
      '{file}:17  backends.app.scopes.read[0].query.flag.bool: write bool: true',
      '{file}:19  backends.app.scopes.read[1].additionalQuery: applies only beside query parameter rules (query: { name: rule })',
      '{file}:21  backends.app.scopes.read[2].json: GET requests carry no body; add body: true if this route takes one',
      '{file}:25  backends.app.scopes.read[3].json.fields.__proto__: "__proto__" is always refused in a JSON body',
      '{file}:26  backends.app.scopes.read[3].json.fields.n.int: expected [min, max] with whole numbers, min <= max (e.g. [1, 100])',
      '{file}:27  backends.app.scopes.read[3].json.fields.list.array.max: is required',
      '{file}:28  backends.app.scopes.read[3].json.fields.obj.object.fields: is required',
      '{file}:29  backends.app.scopes.read[3].json.extra: unknown key (allowed: fields, additional)',
    ],
  },
];

runCases(headerCases);
runCases(ruleCases);

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
  t.ok(app?.responseHeaders.has('content-type'), 'answer defaults included');
  t.notOk(app?.responseHeaders.has('set-cookie'), 'cookies never by the header allowlist');
  t.notOk(app?.responseHeaders.has('x-total-count'), 'nothing beyond the defaults unless listed');
});

t.test('responseHeaders widens the answer allowlist, on REST and MCP backends', async (t) => {
  const dir = t.testdir({
    'backends.yaml': y(
      'backends:',
      '  app:',
      '    upstream: http://127.0.0.1:9101',
      '    responseHeaders: [x-total-count, link]',
      '    scopes:',
      '      read: ["GET /items"]',
      '  tools:',
      '    kind: mcp',
      '    upstream: http://127.0.0.1:9102',
      '    responseHeaders: [x-trace-note]',
      '    scopes:',
      '      read: { tools: [search] }',
    ),
  });
  const snapshot = await load(dir);
  t.same([...(snapshot.backends.get('app')?.responseHeaders ?? [])].slice(-2), ['x-total-count', 'link']);
  t.ok(snapshot.backends.get('tools')?.responseHeaders.has('x-trace-note'));
  t.ok(snapshot.backends.get('tools')?.responseHeaders.has('content-type'));
});
