// Policy validation: every kind of problem, exactly as an operator reads it (`file:line  path:
// message`), all of them at once, sorted by file and line, without cascades.
import t from 'tap';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { mkdtempSync } from 'node:fs';
import { ConfigError } from '../../gateway/errors.js';
import { loadPolicySnapshot } from '../../gateway/policy/index.js';
import type { PolicySnapshot } from '../../gateway/policy/types.js';

const clock = { now: () => 1_700_000_000_000 };
const X = '11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo'; // RFC 8037 A.2 public key
const EC_X = 'f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU'; // RFC 7515 A.3 P-256 x
const Y = 'x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0'; // RFC 7515 A.3 P-256 y

/** Lines of YAML; line N of the file is element N-1, so expected line numbers can be read off. */
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

/** `{dir}` in an expected line stands for the test folder as messages show it (cwd-relative). */
const expand = (dir: string, lines: readonly string[]): string[] => lines.map((l) => l.replaceAll('{dir}', relative(process.cwd(), dir)));

const CRM = y(
  'backends:',
  '  crm:',
  '    upstream: http://127.0.0.1:9101',
  '    scopes:',
  '      contacts.read: ["GET /contacts", "GET /contacts/:id"]',
  '      export: ["GET /export"]',
);
const MARKETING = y('roles:', '  marketing:', '    grants: [crm:contacts.read]');

interface Case {
  readonly name: string;
  readonly files: Record<string, string | Record<string, string>>;
  readonly expect: readonly string[];
}

const cases: readonly Case[] = [
  {
    name: 'the documented examples, from two files at once',
    files: {
      'backends.yaml': y(
        'backends:',
        '  crm:',
        '    upstream: http://127.0.0.1:9101',
        '    scopes:',
        '      contacts.read: ["GET /contacts", "GET /contacts/:id"]',
        '      export: ["GET /export"]',
        '  content:',
        '    upstream: http://127.0.0.1:9102',
        '    scopes:',
        '      assets.read: ["GET /assets"]',
      ),
      'roles.yaml': y(
        '# Roles of the demo.',
        '#',
        '# Marketing reads; support answers.',
        'roles:',
        '  support:',
        '    grants: [content:assets.read]',
        '',
        '  marketing:',
        '    description: Reads CRM contacts',
        '    readOnly: true',
        '    token: { ttl: 30m }',
        '    grants:',
        '      - content:assets.read',
        '      - crm:contacts.raed',
      ),
      'agents.yaml': y(
        'agents:',
        '  marketing-agent-03:',
        '    role: marketing',
        '    owner: growth-team',
        '',
        '  support-agent-01:',
        '    role: helpdesk',
        '    owner: support-ops',
      ),
    },
    expect: [
      '{dir}/agents.yaml:7  agents.support-agent-01.role: role "helpdesk" is not defined',
      '{dir}/roles.yaml:14  roles.marketing.grants[1]: unknown scope "crm:contacts.raed" (crm has: contacts.read, export)',
    ],
  },
  {
    name: 'unknown role keys',
    files: {
      'backends.yaml': CRM,
      'roles.yaml': y(
        'roles:',
        '  marketing:',
        '    grants: [crm:contacts.read]',
        '    readonly: true',
        '    masks: { crm: [email, phone] }',
        '    colour: red',
        '    token: { ttl: 30m, sesion: single }',
        '  data:',
        '    grants: [crm:export]',
        '    breaker: { violations: 3, window: 5m, cooldown: 15m, cooldwn: 1h }',
      ),
    },
    expect: [
      '{dir}/roles.yaml:4  roles.marketing.readonly: unknown key (allowed: description, grants, readOnly, token, breaker, rateLimit, mask, query, network, enforce, approval); did you mean "readOnly"?',
      '{dir}/roles.yaml:5  roles.marketing.masks: unknown key (allowed: description, grants, readOnly, token, breaker, rateLimit, mask, query, network, enforce, approval); did you mean "mask"?',
      '{dir}/roles.yaml:6  roles.marketing.colour: unknown key (allowed: description, grants, readOnly, token, breaker, rateLimit, mask, query, network, enforce, approval)',
      '{dir}/roles.yaml:7  roles.marketing.token.sesion: unknown key (allowed: ttl, session, idleTimeout, maxUses, rotate, maxDelegationDepth); did you mean "session"?',
      '{dir}/roles.yaml:10  roles.data.breaker.cooldwn: unknown key (allowed: violations, window, cooldown, maxCooldown, revokeTokens); did you mean "cooldown"?',
    ],
  },
  {
    name: 'role constraints with bad values',
    files: {
      'backends.yaml': y(
        'backends:',
        '  crm:',
        '    upstream: http://127.0.0.1:9101',
        '    scopes:',
        '      contacts.read: ["GET /contacts", "GET /contacts/:id"]',
        '      export: ["GET /export"]',
        '  bi:',
        '    upstream: http://127.0.0.1:9105',
        '    scopes:',
        '      query:',
        '        - route: POST /query',
        '          query: { field: sql, dialect: oracle }',
        '        - route: GET /peek',
        '          query: { field: sql }',
        '        - { route: POST /raw, query: { dialect: sqlite } }',
        '      approve:',
        '        routes: ["POST /publish"]',
        '        approval: always',
        '      approve2: { routes: ["POST /publish2"], approval: { ttl: 1s } }',
        '      approve3: { routes: ["POST /publish3"], approval: required, color: red }',
        '      approve4:',
        '        - { route: POST /publish4, approval: { ttl: 30m, by: owner } }',
      ),
      'roles.yaml': y(
        'roles:',
        '  marketing:',
        '    grants: [crm:contacts.read]',
        '    mask: { crm: [email, "contacts..phone", "$", "*", "a[b"], tickets: [x], bi: [y] }',
        '    enforce: strict',
        '    approval: [crm:export, 7]',
        '  data:',
        '    grants: [crm:export]',
        '    query: { aggregateOnly: yes, tables: [sales, "drop table", 3] }',
        '    network: { allow: [10.0.0.0/8, 10.0.0.0/33, "fd00::/200", example.org, "fe80::1%eth0"] }',
        '  empty:',
        '    grants: [crm:export]',
        '    mask: { crm: [] }',
        '    network: { allow: [] }',
        '    query: { tables: [] }',
        '    approval: []',
      ),
      'agents.yaml': y(
        'agents:',
        '  m-01: { role: marketing, owner: ops, network: { allow: [192.0.2.300] } }',
        '  m-02: { role: marketing, owner: ops, network: { deny: [192.0.2.0/24] } }',
      ),
    },
    expect: [
      '{dir}/agents.yaml:2  agents.m-01.network.allow[0]: "192.0.2.300" is not an IPv4 or IPv6 network (e.g. 10.0.0.0/8, fd00::/8, 192.0.2.7)',
      '{dir}/agents.yaml:3  agents.m-02.network.deny: unknown key (allowed: allow)',
      '{dir}/agents.yaml:3  agents.m-02.network.allow: is required',
      '{dir}/backends.yaml:12  backends.bi.scopes.query[0].query.dialect: "oracle" is not a SQL dialect (allowed: sqlite, postgresql, mysql, mariadb, bigquery, transactsql)',
      '{dir}/backends.yaml:13  backends.bi.scopes.query[1].query: GET requests carry no body with SQL to check',
      '{dir}/backends.yaml:15  backends.bi.scopes.query[2].query.field: is required',
      '{dir}/backends.yaml:18  backends.bi.scopes.approve.approval: "always" is not an approval setting (use "required", or { ttl: 30m })',
      '{dir}/backends.yaml:19  backends.bi.scopes.approve2.approval.ttl: must be at least 10s',
      '{dir}/backends.yaml:20  backends.bi.scopes.approve3.color: unknown key (allowed: routes, approval, description)',
      '{dir}/backends.yaml:22  backends.bi.scopes.approve4[0].approval.by: unknown key (allowed: ttl)',
      '{dir}/roles.yaml:4  roles.marketing.mask.crm[1]: "contacts..phone": empty key (two dots, or a dot at an end)',
      '{dir}/roles.yaml:4  roles.marketing.mask.crm[2]: "$": the root itself cannot be masked; name a field',
      '{dir}/roles.yaml:4  roles.marketing.mask.crm[3]: "*": a path of only "*" would mask everything; name a field',
      '{dir}/roles.yaml:4  roles.marketing.mask.crm[4]: "a[b": a bracketed key is written ["key.with.dots"]',
      '{dir}/roles.yaml:4  roles.marketing.mask.tickets: unknown backend "tickets" (backends: crm, bi)',
      '{dir}/roles.yaml:4  roles.marketing.mask.bi: this role reaches no route of backend "bi" (it reaches: crm)',
      '{dir}/roles.yaml:5  roles.marketing.enforce: expected true or false, got "strict"',
      '{dir}/roles.yaml:6  roles.marketing.approval[0]: "crm:export" is not granted to this role (grants: crm:contacts.read)',
      '{dir}/roles.yaml:6  roles.marketing.approval[1]: expected a grant of this role ("backend:scope"), got 7',
      '{dir}/roles.yaml:9  roles.data.query.aggregateOnly: expected true or false, got "yes"',
      '{dir}/roles.yaml:9  roles.data.query.tables[1]: expected a table name (letters, digits and _, not starting with a digit), got "drop table"',
      '{dir}/roles.yaml:9  roles.data.query.tables[2]: expected a table name (letters, digits and _, not starting with a digit), got 3',
      '{dir}/roles.yaml:9  roles.data.query: none of this role\'s grants has a route marked query: { field, dialect }; the constraint would never apply',
      '{dir}/roles.yaml:10  roles.data.network.allow[1]: "10.0.0.0/33": the prefix length must be 0 to 32',
      '{dir}/roles.yaml:10  roles.data.network.allow[2]: "fd00::/200": the prefix length must be 0 to 128',
      '{dir}/roles.yaml:10  roles.data.network.allow[3]: "example.org" is not an IPv4 or IPv6 network (e.g. 10.0.0.0/8, fd00::/8, 192.0.2.7)',
      '{dir}/roles.yaml:10  roles.data.network.allow[4]: "fe80::1%eth0" is not an IPv4 or IPv6 network (e.g. 10.0.0.0/8, fd00::/8, 192.0.2.7)',
      '{dir}/roles.yaml:13  roles.empty.mask.crm: needs at least one field path',
      '{dir}/roles.yaml:14  roles.empty.network.allow: needs at least one network (e.g. 10.0.0.0/8)',
      '{dir}/roles.yaml:15  roles.empty.query.tables: needs at least one table',
      '{dir}/roles.yaml:15  roles.empty.query: none of this role\'s grants has a route marked query: { field, dialect }; the constraint would never apply',
      '{dir}/roles.yaml:16  roles.empty.approval: lists the grants that need approval; leave the key out for none',
    ],
  },
  {
    name: 'role types, enumerations, durations and grants',
    files: {
      'backends.yaml': CRM,
      'roles.yaml': y(
        'roles:',
        '  a:',
        '    grants: crm:contacts.read',
        '    readOnly: "yes"',
        '    description: 42',
        '    token:',
        '      ttl: 30',
        '      session: double',
        '      idleTimeout: soon',
        '      maxUses: 0',
        '      rotate: 30s',
        '  b:',
        '    grants: [crm, nobackend:x, crm:contacts.read, crm:contacts.read, 7, "crm:"]',
        '    token: { ttl: 48h }',
        '  c:',
        '    token: []',
        '  d:',
        '    grants: []',
        '    breaker: { violations: 0, window: 5, cooldown: soon, maxCooldown: 1m, revokeTokens: 1 }',
        '  e:',
        '    grants: []',
        '    breaker: { window: 1m, cooldown: 10m, maxCooldown: 5m }',
        '  Bad_Role:',
        '    grants: []',
      ),
    },
    expect: [
      '{dir}/roles.yaml:3  roles.a.grants: expected a list, got "crm:contacts.read"',
      '{dir}/roles.yaml:4  roles.a.readOnly: expected true or false, got "yes"',
      '{dir}/roles.yaml:5  roles.a.description: expected a non-empty string, got 42',
      '{dir}/roles.yaml:7  roles.a.token.ttl: "30" has no unit (use e.g. 30s)',
      '{dir}/roles.yaml:8  roles.a.token.session: "double" is not a session mode (allowed: single, multi)',
      '{dir}/roles.yaml:9  roles.a.token.idleTimeout: "soon" is not a duration (a number and one of ms, s, m, h, d, e.g. 30s)',
      '{dir}/roles.yaml:10  roles.a.token.maxUses: expected a whole number from 1 to 1000000000, got 0',
      '{dir}/roles.yaml:11  roles.a.token.rotate: must be at least 1m',
      '{dir}/roles.yaml:13  roles.b.grants[0]: "crm" must be backend:scope (e.g. crm:contacts.read)',
      '{dir}/roles.yaml:13  roles.b.grants[1]: unknown backend "nobackend" in "nobackend:x" (backends: crm)',
      '{dir}/roles.yaml:13  roles.b.grants[3]: "crm:contacts.read" is granted twice',
      '{dir}/roles.yaml:13  roles.b.grants[4]: expected "backend:scope", got 7',
      '{dir}/roles.yaml:13  roles.b.grants[5]: unknown scope "crm:" (crm has: contacts.read, export)',
      '{dir}/roles.yaml:14  roles.b.token.ttl: must be at most 24h',
      '{dir}/roles.yaml:15  roles.c.grants: is required',
      '{dir}/roles.yaml:16  roles.c.token: expected a map with keys ttl, session, idleTimeout, maxUses, rotate, maxDelegationDepth, got a list',
      '{dir}/roles.yaml:19  roles.d.breaker.violations: expected a whole number from 1 to 1000000, got 0',
      '{dir}/roles.yaml:19  roles.d.breaker.window: "5" has no unit (use e.g. 5s)',
      '{dir}/roles.yaml:19  roles.d.breaker.cooldown: "soon" is not a duration (a number and one of ms, s, m, h, d, e.g. 30s), or "manual"',
      '{dir}/roles.yaml:19  roles.d.breaker.revokeTokens: expected true or false, got 1',
      '{dir}/roles.yaml:22  roles.e.breaker.violations: is required',
      '{dir}/roles.yaml:22  roles.e.breaker.maxCooldown: must be at least 10m',
      '{dir}/roles.yaml:23  roles.Bad_Role: role names use a-z, 0-9, _ and -, start with a letter',
    ],
  },
  {
    name: 'backends, scopes and routes',
    files: {
      'backends.yaml': y(
        'backends:',
        '  CRM:',
        '    upstream: http://127.0.0.1:9101',
        '    scopes: { read: ["GET /a"] }',
        '  ftp:',
        '    upstream: ftp://127.0.0.1/',
        '    timeout: 30',
        '    scopes: { read: ["GET /a"] }',
        '  creds:',
        '    upstream: http://user:pw@127.0.0.1:9101',
        '    scopes: { read: ["GET /a"] }',
        '  query:',
        '    upstream: "http://127.0.0.1:9101/?x=1"',
        '    scopes: {}',
        '  noscopes:',
        '    upstream: not a url',
        '  oauth:',
        '    upstream: http://127.0.0.1:9101',
        '    scopes:',
        '      Read: ["GET /a"]',
        '      empty: []',
        '      single: "GET /a"',
        '      bad:',
        '        - GET /a//b',
        '        - 42',
        '        - [GET /a]',
        '        - { route: FETCH /x }',
        '        - { path: GET /x }',
        '        - { route: GET /x, body: { script: [a] } }',
        '        - { route: POST /x, body: { script: [a, 1], mode: [] } }',
        '        - { route: POST /y, body: [script] }',
        '        - { route: POST /z, body: {} }',
        '        - { route: POST /w, body: { script: greeting } }',
      ),
    },
    expect: [
      '{dir}/backends.yaml:2  backends.CRM: backend names use a-z, 0-9 and -, start with a letter, at most 32 characters',
      '{dir}/backends.yaml:6  backends.ftp.upstream: "ftp://127.0.0.1/": scheme must be http or https',
      '{dir}/backends.yaml:7  backends.ftp.timeout: "30" has no unit (use e.g. 30s)',
      '{dir}/backends.yaml:10  backends.creds.upstream: "http://user:pw@127.0.0.1:9101" must not carry credentials, a query or a fragment',
      '{dir}/backends.yaml:13  backends.query.upstream: "http://127.0.0.1:9101/?x=1" must not carry credentials, a query or a fragment',
      '{dir}/backends.yaml:14  backends.query.scopes: needs at least one scope',
      '{dir}/backends.yaml:15  backends.noscopes.scopes: is required',
      '{dir}/backends.yaml:16  backends.noscopes.upstream: "not a url" is not a URL (e.g. http://127.0.0.1:9101)',
      '{dir}/backends.yaml:17  backends.oauth: "oauth" is reserved for the gateway\'s own endpoints',
      '{dir}/backends.yaml:20  backends.oauth.scopes.Read: scope names use letters, digits, . _ -, start with a lower-case letter',
      '{dir}/backends.yaml:21  backends.oauth.scopes.empty: needs at least one route',
      '{dir}/backends.yaml:22  backends.oauth.scopes.single: expected a list, got "GET /a"',
      '{dir}/backends.yaml:24  backends.oauth.scopes.bad[0]: route "GET /a//b": empty segment ("//")',
      '{dir}/backends.yaml:25  backends.oauth.scopes.bad[1]: expected a route such as "GET /contacts/:id", got 42',
      '{dir}/backends.yaml:26  backends.oauth.scopes.bad[2]: expected a route such as "GET /contacts/:id", or { route, body }, got a list',
      '{dir}/backends.yaml:27  backends.oauth.scopes.bad[3].route: route "FETCH /x": unknown method "FETCH" (allowed: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, ANY)',
      '{dir}/backends.yaml:28  backends.oauth.scopes.bad[4].path: unknown key (allowed: route, body, query, additionalQuery, sql, json, approval)',
      '{dir}/backends.yaml:28  backends.oauth.scopes.bad[4].route: is required',
      '{dir}/backends.yaml:29  backends.oauth.scopes.bad[5].body: GET requests carry no body to check',
      '{dir}/backends.yaml:30  backends.oauth.scopes.bad[6].body.script[1]: expected a string, got 1',
      '{dir}/backends.yaml:30  backends.oauth.scopes.bad[6].body.mode: needs at least one allowed value',
      '{dir}/backends.yaml:31  backends.oauth.scopes.bad[7].body: expected a map of JSON fields to their allowed values, got a list',
      '{dir}/backends.yaml:32  backends.oauth.scopes.bad[8].body: needs at least one field',
      '{dir}/backends.yaml:33  backends.oauth.scopes.bad[9].body.script: expected a list, got "greeting"',
    ],
  },
  {
    name: 'routes that could match the same request at the same specificity',
    files: {
      'backends.yaml': y(
        'backends:',
        '  api:',
        '    upstream: http://127.0.0.1:9',
        '    scopes:',
        '      one:',
        '        - GET /r/:a(x|y)',
        '        - GET /c/:id',
        '        - GET /c/:id',
        '      two:',
        '        - GET /r/:b(y|z)',
        '        - GET /c/:cid',
        '        - GET /r/:a(y|x)',
        '        - GET /c/:id',
        '        - POST /c/:cid',
        '        - GET /r/:a(x|y)/*',
        '        - GET /r/:b(y|z)/*',
      ),
    },
    expect: [
      '{dir}/backends.yaml:8  backends.api.scopes.one[2]: route "GET /c/:id" is listed twice in api:one',
      '{dir}/backends.yaml:10  backends.api.scopes.two[0]: route "GET /r/:b(y|z)": ":b(y|z)" overlaps the listed values (x|y) of another route at the same position: a request with "y" there would match both',
      '{dir}/backends.yaml:11  backends.api.scopes.two[1]: route "GET /c/:cid" matches the same requests as "GET /c/:id" (api:one) but names its parameters differently; write both the same way',
      '{dir}/backends.yaml:16  backends.api.scopes.two[6]: route "GET /r/:b(y|z)/*": ":b(y|z)" overlaps the listed values (x|y) of another route at the same position: a request with "y" there would match both',
    ],
  },
  {
    name: 'agents and their credentials',
    files: {
      'backends.yaml': CRM,
      'roles.yaml': MARKETING,
      'agents.yaml': y(
        'agents:',
        '  Bad_Agent:',
        '    role: marketing',
        '    owner: x',
        '  no-owner:',
        '    role: marketing',
        '  empty-owner:',
        '    role: marketing',
        '    owner: ""',
        '  keyed:',
        '    role: marketing',
        '    owner: growth',
        '    credentials:',
        `      - { type: private_key_jwt, jwk: { kty: OKP, crv: Ed25519, x: "${X}", d: "secret" } }`,
        '      - { type: private_key_jwt, jwk: { kty: RSA, n: abc, e: AQAB } }',
        '      - { type: private_key_jwt, jwk: { kty: EC, crv: P-256, x: short } }',
        '      - { type: client_secret, secret: hunter2 }',
        `      - { type: private_key_jwt, jwk: { kty: OKP, crv: Ed25519, x: "${X}" } }`,
        '      - ok',
        '      - { type: private_key_jwt, jwk: { kty: OKP, crv: X25519, x: abc } }',
        '      - { type: private_key_jwt }',
        '  unkeyed:',
        '    role: marketing',
        '    owner: growth',
        '    credentials: { type: private_key_jwt }',
        '    roles: marketing',
        '  jwks:',
        '    role: marketing',
        '    owner: growth',
        '    credentials:',
        '      - { type: private_key_jwt, jwk: "abc" }',
        `      - { type: private_key_jwt, jwk: { kty: OKP, crv: Ed25519, x: "${X}", key_ops: [verify] } }`,
        `      - { type: private_key_jwt, jwk: { kty: OKP, crv: Ed25519, x: "${X}", ext: { a: 1 } } }`,
        // Well formed, but (0, 0) is not a point of P-256.
        `      - { type: private_key_jwt, jwk: { kty: EC, crv: P-256, x: "${'A'.repeat(43)}", y: "${'A'.repeat(43)}" } }`,
      ),
    },
    expect: [
      '{dir}/agents.yaml:2  agents.Bad_Agent: agent ids use a-z, 0-9, . _ -, start with a letter or digit, at most 63 characters',
      '{dir}/agents.yaml:5  agents.no-owner.owner: is required',
      '{dir}/agents.yaml:9  agents.empty-owner.owner: expected a non-empty string, got ""',
      '{dir}/agents.yaml:14  agents.keyed.credentials[0].jwk: contains private key material ("d"); a policy holds only the public key',
      '{dir}/agents.yaml:15  agents.keyed.credentials[1].jwk.kty: "RSA" is not a supported key type (allowed: OKP with crv Ed25519, EC with crv P-256)',
      '{dir}/agents.yaml:16  agents.keyed.credentials[2].jwk.x: "short" is not 32 bytes in base64url',
      '{dir}/agents.yaml:16  agents.keyed.credentials[2].jwk.y: is required (32 bytes in base64url)',
      '{dir}/agents.yaml:17  agents.keyed.credentials[3].secret: unknown key (allowed: type, jwk)',
      '{dir}/agents.yaml:17  agents.keyed.credentials[3].type: "client_secret" is not a credential type for policies (allowed: private_key_jwt; client secrets live in the state store: agentgate credentials issue)',
      '{dir}/agents.yaml:19  agents.keyed.credentials[5]: expected a map with keys type, jwk, got "ok"',
      '{dir}/agents.yaml:20  agents.keyed.credentials[6].jwk.crv: "X25519" is not supported with kty OKP (allowed: Ed25519)',
      '{dir}/agents.yaml:21  agents.keyed.credentials[7].jwk: is required',
      '{dir}/agents.yaml:25  agents.unkeyed.credentials: expected a list, got a map',
      '{dir}/agents.yaml:26  agents.unkeyed.roles: unknown key (allowed: role, owner, description, credentials, network, expires); did you mean "role"?',
      '{dir}/agents.yaml:31  agents.jwks.credentials[0].jwk: expected a public JWK map, got "abc"',
      '{dir}/agents.yaml:33  agents.jwks.credentials[2].jwk.ext: JWK members are plain values or lists of them',
      '{dir}/agents.yaml:34  agents.jwks.credentials[3].jwk: is not a usable P-256 public key (the point is not on the curve)',
    ],
  },
  {
    name: 'top level of each file, YAML syntax, file kinds',
    files: {
      'a.yaml': y('role:', '  marketing: {}'),
      'b.yaml': y('- just', '- a list'),
      'c.yaml': y('agents: [x]'),
      'd.yml': y('roles:', '  r:', '    grants: [a]', '    token: ttl: 5m'),
      'e.yaml': '',
      'f.yaml': y('# only a comment', 'agents:'),
      'g.yaml': y('backends:', '  crm:', '    upstream: &u http://127.0.0.1:9101', '    scopes: { read: ["GET /a"] }', '  crm2:', '    upstream: *u'),
      'h.yaml': y('---', 'roles: {}', '---', 'agents: {}'),
      'i.yaml': y('roles:', '  ? [a, b]', '  : { grants: [] }'),
      'j.yaml': y('agents: !custom', '  j-01: { role: nobody, owner: x }'),
      '.hidden.yaml': ': : : not yaml',
      'notes.txt': ': : : not yaml',
      'sub.yaml': { 'inner.yaml': ': : :' },
    },
    expect: [
      '{dir}/a.yaml:1  role: unknown key (allowed: defaults, backends, roles, agents, users); did you mean "roles"?',
      '{dir}/b.yaml:1  (top level): expected a map with keys defaults, backends, roles, agents, users',
      '{dir}/c.yaml:1  agents: expected a map of agents by name, got a list',
      '{dir}/d.yml:4  YAML syntax: Nested mappings are not allowed in compact mappings',
      '{dir}/g.yaml:6  backends.crm2.upstream: anchors and aliases are not supported (write the value out)',
      '{dir}/h.yaml:3  YAML syntax: more than one document (remove the extra "---")',
      '{dir}/i.yaml:2  roles: keys must be plain words',
      '{dir}/j.yaml:1  YAML: Unresolved tag: !custom',
    ],
  },
  {
    name: 'a name defined twice, across files and within one',
    files: {
      'a.yaml': y(CRM, MARKETING.trimEnd()),
      'b.yaml': y('# more', 'backends:', '  crm:', '    upstream: http://127.0.0.1:9201', '    scopes: { x: ["GET /x"] }', 'roles:', '  marketing:', '    grants: []'),
      'c.yaml': y('agents:', '  one: { role: marketing, owner: a }', '  two: { role: marketing, owner: b }', '  one: { role: marketing, owner: c }', '  three: { role: nobody, owner: d }'),
      'd.yaml': y('roles:', '  r1: { grants: [] }', 'roles:', '  r2: { grants: [] }'),
    },
    expect: [
      '{dir}/b.yaml:3  backends.crm: defined twice (also at {dir}/a.yaml:2)',
      '{dir}/b.yaml:7  roles.marketing: defined twice (also at {dir}/a.yaml:9)',
      '{dir}/c.yaml:4  agents.one: defined twice (also at {dir}/c.yaml:2)',
      '{dir}/c.yaml:5  agents.three.role: role "nobody" is not defined',
      '{dir}/d.yaml:3  roles: defined twice (also at {dir}/d.yaml:1)',
    ],
  },
  {
    name: 'a broken set: every problem at once, no cascades',
    files: {
      '1-backends.yaml': y(
        'backends:',
        '  crm:',
        '    upstream: http://127.0.0.1:9101',
        '    scopes:',
        '      contacts.read: ["GET /contacts", "GET /contacts/:id/"]',
        '  tickets:',
        '    upstream: tickets.local',
        '    scopes:',
        '      tickets.read: ["GET /tickets"]',
      ),
      '2-roles.yaml': y(
        'roles:',
        '  support:',
        '    grants: [tickets:tickets.read, kb:articles.read]',
        '    token: { ttl: 1 hour }',
        '  marketing:',
        '    grants: [crm:contacts.read, crm:export]',
      ),
      '3-agents.yaml': y(
        'agents:',
        '  support-agent-01: { role: support, owner: support-ops }',
        '  marketing-agent-03: { role: marketing }',
        '  data-agent-01: { role: data, owner: analytics }',
      ),
    },
    expect: [
      '{dir}/1-backends.yaml:5  backends.crm.scopes.contacts.read[1]: route "GET /contacts/:id/": no trailing "/" (only the root route is "/")',
      '{dir}/1-backends.yaml:7  backends.tickets.upstream: "tickets.local" is not a URL (e.g. http://127.0.0.1:9101)',
      '{dir}/2-roles.yaml:3  roles.support.grants[1]: unknown backend "kb" in "kb:articles.read" (backends: crm, tickets)',
      '{dir}/2-roles.yaml:4  roles.support.token.ttl: "1 hour" is not a duration (a number and one of ms, s, m, h, d, e.g. 30s)',
      '{dir}/2-roles.yaml:6  roles.marketing.grants[1]: unknown scope "crm:export" (crm has: contacts.read)',
      '{dir}/3-agents.yaml:3  agents.marketing-agent-03.owner: is required',
      '{dir}/3-agents.yaml:4  agents.data-agent-01.role: role "data" is not defined',
    ],
  },
  {
    name: 'a file that does not parse hides no other file, and causes no cascades',
    files: {
      'backends.yaml': CRM,
      'roles.yaml': y('roles:', '  marketing:', '    grants: [crm:contacts.read', '  data: {}'),
      'agents.yaml': y('agents:', '  marketing-agent-03: { role: marketing, owner: growth-team }', '  data-agent-01: { role: data }'),
    },
    expect: [
      '{dir}/agents.yaml:3  agents.data-agent-01.owner: is required',
      '{dir}/roles.yaml:4  YAML syntax: Flow sequence in block collection must be sufficiently indented and end with a ]',
    ],
  },
  {
    name: 'a folder without policy files',
    files: { 'README.md': '# nothing here', 'old.yaml.bak': 'roles: {}' },
    expect: ['{dir}: no policy files (*.yaml or *.yml) in this folder'],
  },
];

for (const c of cases) {
  t.test(c.name, async (t) => {
    const dir = t.testdir(c.files);
    t.same(await problemsOf(dir), expand(dir, c.expect));
  });
}

t.test('a policies folder that does not exist', async (t) => {
  const dir = t.testdir({ 'agentgate.yaml': 'policies: ./nowhere' });
  t.same(await problemsOf(`${dir}/nowhere`), expand(dir, ['{dir}/nowhere: no such folder']));
  t.same(await problemsOf(`${dir}/agentgate.yaml`), expand(dir, ['{dir}/agentgate.yaml: is not a folder']));
});

t.test('a file outside the working directory is shown with its absolute path', async (t) => {
  const dir = t.testdir({ 'roles.yaml': y('roles:', '  r: { grants: [] , readOnly: 1 }') });
  const cwd = process.cwd();
  // A fresh folder of its own: the checkout itself may live under the temp folder.
  process.chdir(mkdtempSync(join(tmpdir(), 'agentgate-cwd-')));
  t.teardown(() => process.chdir(cwd));
  t.same(await problemsOf(dir), [`${dir}/roles.yaml:2  roles.r.readOnly: expected true or false, got 1`]);
});

t.test('a valid set compiles to the typed snapshot', async (t) => {
  const dir = t.testdir({
    'a.yaml': y(
      'backends:',
      '  api:',
      '    upstream: https://api.internal:8443/v2/',
      '    timeout: 10s',
      '    scopes:',
      '      read: ["GET /things", "HEAD /things/:id"]',
      '      write:',
      '        - route: POST /things',
      '          body: { kind: [small, large], color: [red] }',
    ),
    'b.yml': y(
      'roles:',
      '  worker:',
      '    description: Does the work',
      '    grants: [api:read, api:write]',
      '    readOnly: false',
      '    token: { ttl: 30m, session: single, idleTimeout: 5m, maxUses: 100, rotate: 7d }',
      '    breaker: { violations: 3, window: 5m, cooldown: 15m, revokeTokens: true }',
      '  watcher:',
      '    grants: [api:read]',
      '    breaker: { violations: 2, window: 1m, cooldown: manual, maxCooldown: 1h }',
      'agents:',
      '  worker-01:',
      '    role: worker',
      '    owner: ops',
      '    description: The first worker',
      '    credentials:',
      `      - { type: private_key_jwt, jwk: { kty: OKP, crv: Ed25519, x: "${X}", kid: w1 } }`,
      `      - { type: private_key_jwt, jwk: { kty: EC, crv: P-256, x: "${EC_X}", y: "${Y}" } }`,
      '  watcher-01: { role: watcher, owner: ops }',
    ),
  });
  const snapshot = await load(dir);
  const rel = relative(process.cwd(), dir);
  t.same(snapshot.files, [`${rel}/a.yaml`, `${rel}/b.yml`]);
  t.equal(snapshot.version, 1);
  t.equal(snapshot.loadedAt, 1_700_000_000_000);

  const api = snapshot.backends.get('api');
  t.equal(api?.origin, 'https://api.internal:8443');
  t.equal(api?.basePath, '/v2');
  t.equal(api?.timeoutMs, 10_000);
  t.same([...(api?.scopes.keys() ?? [])], ['read', 'write']);
  const write = api?.scopes.get('write');
  t.match(write, { id: 'api:write', backend: 'api', name: 'write' });
  t.same(write?.routes.map((r) => r.template), ['POST /things']);
  t.same(
    [...(write?.routes[0]?.body?.fields ?? new Map<string, ReadonlySet<string>>())].map(([k, v]) => [k, [...v]]),
    [['kind', ['small', 'large']], ['color', ['red']]],
  );
  t.equal(api?.routes.match('HEAD', ['things', '1'])?.routes[0]?.scope, 'api:read');
  t.equal(api?.routes.match('GET', ['things', '1']), null, 'a HEAD route does not answer GET');

  const worker = snapshot.roles.get('worker');
  t.same(worker?.token, { ttlSeconds: 1800, session: 'single', idleTimeoutSeconds: 300, maxUses: 100, rotateSeconds: 604_800, maxDelegationDepth: 1 });
  t.same(worker?.breaker, { violations: 3, windowMs: 300_000, cooldownMs: 900_000, maxCooldownMs: 86_400_000, revokeTokens: true });
  t.same([...(worker?.grants ?? [])], ['api:read', 'api:write']);
  t.same([...(worker?.backends ?? [])], ['api']);
  t.equal(worker?.description, 'Does the work');
  const watcher = snapshot.roles.get('watcher');
  t.same(watcher?.token, { ttlSeconds: 900, session: 'multi', idleTimeoutSeconds: null, maxUses: null, rotateSeconds: null, maxDelegationDepth: 1 }, 'token defaults');
  t.same(watcher?.breaker, { violations: 2, windowMs: 60_000, cooldownMs: null, maxCooldownMs: 3_600_000, revokeTokens: false });
  t.equal(watcher?.readOnly, false);

  const agent = snapshot.agents.get('worker-01');
  t.same(agent, {
    id: 'worker-01',
    role: 'worker',
    owner: 'ops',
    description: 'The first worker',
    credentials: [
      { type: 'private_key_jwt', jwk: { kty: 'OKP', crv: 'Ed25519', x: X, kid: 'w1' } },
      { type: 'private_key_jwt', jwk: { kty: 'EC', crv: 'P-256', x: EC_X, y: Y } },
    ],
    network: null,
    expiresAt: null,
  });
  const first = agent?.credentials[0];
  t.ok(first?.type === 'private_key_jwt' && Object.isFrozen(first.jwk), 'the JWK is frozen');
  t.same(snapshot.agents.get('watcher-01'), { id: 'watcher-01', role: 'watcher', owner: 'ops', description: '', credentials: [], network: null, expiresAt: null });
  t.equal(snapshot.roles.get('watcher')?.breaker?.cooldownMs, null);
});
