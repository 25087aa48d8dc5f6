// Issue 15 item 12: schema/agentgate.schema.json and schema/policy.schema.json (JSON Schema
// 2020-12, for editors) agree with the validators that decide (gateway/config.ts,
// gateway/policy/validate.ts). The schemas are hand-written, so this file is their guard: every
// shipped YAML names its schema and validates against it; variants both accept; and a table of
// broken documents, each one change away from a document both accept, that both refuse. A real
// JSON Schema validator (ajv, draft 2020-12, strict mode) judges the schema side.
import t from 'tap';
import { lstatSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { parse, stringify } from 'yaml';
import { loadSettings } from '../gateway/config.js';
import { ConfigError } from '../gateway/errors.js';
import { loadPolicySnapshot } from '../gateway/policy/index.js';
import { systemClock } from '../gateway/clock.js';
import { ROOT } from './helpers/root.js';

const ajv = new Ajv2020({ allErrors: true, strict: true, strictRequired: false, allowUnionTypes: true }) // required inside anyOf/if names keys defined beside it;
const readJson = (file: string): Record<string, unknown> => JSON.parse(readFileSync(join(ROOT, file), 'utf8')) as Record<string, unknown>;
const configSchema = ajv.compile(readJson('schema/agentgate.schema.json'));
const policySchema = ajv.compile(readJson('schema/policy.schema.json'));
const errorsOf = (ok: boolean, errors: unknown): string => (ok ? '' : JSON.stringify(errors));

type Doc = Record<string, unknown>;
/** A deep copy to mutate (documents are plain JSON). */
const copy = (doc: Doc): Doc => JSON.parse(JSON.stringify(doc)) as Doc;
/** Set `value` at a dotted path (keys containing dots are given as arrays). */
function set(doc: Doc, path: ReadonlyArray<string | number>, value: unknown): Doc {
  let node = doc as Record<string | number, unknown>;
  for (const key of path.slice(0, -1)) node = node[key] as Record<string | number, unknown>;
  const last = path.at(-1) ?? '';
  if (value === undefined) delete node[last];
  else Object.defineProperty(node, last, { value, enumerable: true, writable: true, configurable: true }); // __proto__ too
  return doc;
}

const SHIPPED: ReadonlyArray<{ file: string; schema: 'agentgate' | 'policy' }> = [
  { file: 'agentgate.yaml', schema: 'agentgate' },
  { file: 'deploy/agentgate.docker.yaml', schema: 'agentgate' },
  ...readdirSync(join(ROOT, 'policies')).filter((f) => f.endsWith('.yaml')).map((f) => ({ file: `policies/${f}`, schema: 'policy' as const })),
  // deploy/policies/roles.yaml and agents.yaml are links to policies/ (checked there).
  ...readdirSync(join(ROOT, 'deploy', 'policies'))
    .filter((f) => f.endsWith('.yaml') && !lstatSync(join(ROOT, 'deploy', 'policies', f)).isSymbolicLink())
    .map((f) => ({ file: `deploy/policies/${f}`, schema: 'policy' as const })),
];

t.test('every shipped YAML names its schema on its first line and validates against it', async (t) => {
  t.ok(SHIPPED.length >= 6, 'config, docker config, policies and the compose backends');
  for (const { file, schema } of SHIPPED) {
    const text = readFileSync(join(ROOT, file), 'utf8');
    const first = text.split('\n')[0] ?? '';
    const m = /^# yaml-language-server: \$schema=(\S+)$/.exec(first);
    t.ok(m !== null, `${file}: first line is the yaml-language-server modeline`);
    const target = resolve(dirname(join(ROOT, file)), m?.[1] ?? '');
    t.equal(relative(ROOT, target), `schema/${schema}.schema.json`, `${file}: names schema/${schema}.schema.json by a relative path that resolves`);
    const validate = schema === 'agentgate' ? configSchema : policySchema;
    const ok = validate(parse(text) ?? {});
    t.ok(ok, `${file} validates: ${errorsOf(ok, validate.errors)}`);
  }
});

t.test('the schemas are draft 2020-12 and strict-mode clean', async (t) => {
  for (const file of ['schema/agentgate.schema.json', 'schema/policy.schema.json']) {
    const schema = readJson(file);
    t.equal(schema.$schema, 'https://json-schema.org/draft/2020-12/schema', file);
    t.equal(schema.additionalProperties, false, `${file}: unknown top-level keys are refused, as the validator does`);
  }
});

// ---------------------------------------------------------------------------------------------
// Policies

const BASE_POLICY: Doc = {
  defaults: { breaker: { violations: 5, window: '5m', cooldown: '10m' }, token: { ttl: '15m' } },
  backends: {
    crm: {
      upstream: 'http://127.0.0.1:9101',
      timeout: '5s',
      forwardHeaders: ['x-tenant-id'],
      responseHeaders: ['x-total-count'],
      scopes: {
        'contacts.read': ['GET /contacts', 'GET /contacts/:id', { route: 'GET /search', query: { q: { string: { max: 64 } }, limit: { int: [1, 100] } } }],
        export: { routes: [{ route: 'POST /export', json: { fields: { format: { enum: ['csv', 'json'], required: true } } } }], approval: { ttl: '30m' } },
      },
    },
    tools: {
      kind: 'mcp',
      upstream: 'http://127.0.0.1:9102',
      path: '/mcp',
      scopes: { read: { tools: ['search', { name: 'run', arguments: { mode: ['safe'] } }], prompts: ['summary'], resources: ['tickets://{id}'] } },
    },
  },
  roles: {
    reader: { description: 'reads', grants: ['crm:contacts.read', 'tools:read'], rateLimit: { rps: 5, scopes: { 'crm:contacts.read': { rps: 2 } } }, mask: { crm: ['email'] } },
    exporter: { grants: ['crm:export'], breaker: 'off', token: { ttl: '5m', session: 'single' }, network: { allow: ['10.0.0.0/8'] }, approval: ['crm:export'] },
  },
  agents: {
    'reader-01': { role: 'reader', owner: 'team-a', expires: '2099-12-31' },
    'exporter-01': { role: 'exporter', owner: 'team-b', credentials: [{ type: 'private_key_jwt', jwk: { kty: 'OKP', crv: 'Ed25519', x: 'A'.repeat(43) } }] },
  },
  users: { groups: { sales: ['crm:contacts.read'] } },
};

async function policyVerdict(dir: string, doc: Doc): Promise<{ schema: string; validator: string }> {
  writeFileSync(join(dir, 'p.yaml'), stringify(doc));
  const ok = policySchema(doc);
  let validator = '';
  try {
    await loadPolicySnapshot(dir, { version: 1, clock: systemClock, defaultTimeoutMs: 30_000 });
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    validator = error.problems.join('\n');
  }
  return { schema: errorsOf(ok, policySchema.errors), validator };
}

const policyAccepted: Array<{ name: string; change: (d: Doc) => Doc }> = [
  { name: 'the base document', change: (d) => d },
  { name: 'a cooldown of manual', change: (d) => set(d, ['defaults', 'breaker', 'cooldown'], 'manual') },
  { name: 'a route with an SQL field', change: (d) => set(d, ['backends', 'crm', 'scopes', 'export', 'routes'], [{ route: 'POST /query', sql: { field: 'sql', dialect: 'postgresql' } }]) },
  { name: 'body: true on a DELETE', change: (d) => set(d, ['backends', 'crm', 'scopes', 'export', 'routes'], [{ route: 'DELETE /contacts/:id', body: true }]) },
  { name: 'a nested JSON rule', change: (d) => set(d, ['backends', 'crm', 'scopes', 'export', 'routes', 0, 'json', 'fields', 'opts'], { object: { fields: { tags: { array: { items: { string: true }, max: 5 } } }, additional: true } }) },
  { name: 'an agent expiring at an instant', change: (d) => set(d, ['agents', 'reader-01', 'expires'], '2099-01-01T12:00:00Z') },
  { name: 'a rate limit off and readOnly', change: (d) => set(set(d, ['roles', 'exporter', 'rateLimit'], 'off'), ['roles', 'exporter', 'readOnly'], true) },
  { name: 'token rules', change: (d) => set(d, ['roles', 'reader', 'token'], { ttl: '10m', idleTimeout: '2m', maxUses: 100, rotate: '5m', maxDelegationDepth: 0 }) },
  { name: 'a file with agents only', change: () => ({}) },
];

const policyRefused: Array<{ name: string; change: (d: Doc) => Doc }> = [
  { name: 'an unknown top-level key', change: (d) => set(d, ['backend'], {}) },
  { name: 'a backend name in capitals', change: (d) => set(d, ['backends', 'CRM'], (d.backends as Doc).crm) },
  { name: 'the reserved backend name oauth', change: (d) => set(d, ['backends', 'oauth'], (d.backends as Doc).crm) },
  { name: 'an ftp upstream', change: (d) => set(d, ['backends', 'crm', 'upstream'], 'ftp://127.0.0.1/') },
  { name: 'an upstream with a query', change: (d) => set(d, ['backends', 'crm', 'upstream'], 'http://127.0.0.1:9101/?a=1') },
  { name: 'an upstream with credentials', change: (d) => set(d, ['backends', 'crm', 'upstream'], 'http://u:p@127.0.0.1:9101') },
  { name: 'an unknown backend key', change: (d) => set(d, ['backends', 'crm', 'timeoutMs'], 5000) },
  { name: 'a timeout without a unit', change: (d) => set(d, ['backends', 'crm', 'timeout'], '30') },
  { name: 'a timeout as a bare number', change: (d) => set(d, ['backends', 'crm', 'timeout'], 30) },
  { name: 'a backend kind that does not exist', change: (d) => set(d, ['backends', 'crm', 'kind'], 'graphql') },
  { name: 'a backend without scopes', change: (d) => set(d, ['backends', 'crm', 'scopes'], {}) },
  { name: 'a route with a lower-case method', change: (d) => set(d, ['backends', 'crm', 'scopes', 'contacts.read', 0], 'get /contacts') },
  { name: 'a route without a path', change: (d) => set(d, ['backends', 'crm', 'scopes', 'contacts.read', 0], 'GET') },
  { name: 'a scope with no routes', change: (d) => set(d, ['backends', 'crm', 'scopes', 'contacts.read'], []) },
  { name: 'a route map without route', change: (d) => set(d, ['backends', 'crm', 'scopes', 'contacts.read', 0], { body: true }) },
  { name: 'tools on a REST scope', change: (d) => set(d, ['backends', 'crm', 'scopes', 'export', 'tools'], ['x']) },
  { name: 'routes on an MCP scope', change: (d) => set(d, ['backends', 'tools', 'scopes', 'read', 'routes'], ['GET /x']) },
  { name: 'an MCP scope granting nothing', change: (d) => set(d, ['backends', 'tools', 'scopes', 'read'], { description: 'nothing' }) },
  { name: 'an MCP tool name with a space', change: (d) => set(d, ['backends', 'tools', 'scopes', 'read', 'tools', 0], 'run tool') },
  { name: 'a path on a REST backend', change: (d) => set(d, ['backends', 'crm', 'path'], '/mcp') },
  { name: 'an answer header in capitals', change: (d) => set(d, ['backends', 'crm', 'responseHeaders'], ['X-Total-Count']) },
  { name: 'a forwarded header in capitals', change: (d) => set(d, ['backends', 'crm', 'forwardHeaders'], ['X-Tenant-Id']) },
  { name: 'a JSON rule with two types', change: (d) => set(d, ['backends', 'crm', 'scopes', 'export', 'routes', 0, 'json', 'fields', 'format'], { enum: ['csv'], string: true }) },
  { name: 'a JSON rule with no type', change: (d) => set(d, ['backends', 'crm', 'scopes', 'export', 'routes', 0, 'json', 'fields', 'format'], { required: true }) },
  { name: 'a JSON rule on __proto__', change: (d) => set(d, ['backends', 'crm', 'scopes', 'export', 'routes', 0, 'json', 'fields', '__proto__'], { bool: true }) },
  { name: 'a JSON rule bool: false', change: (d) => set(d, ['backends', 'crm', 'scopes', 'export', 'routes', 0, 'json', 'fields', 'format'], { bool: false }) },
  { name: 'int bounds that are not a pair', change: (d) => set(d, ['backends', 'crm', 'scopes', 'contacts.read', 2, 'query', 'limit'], { int: [1] }) },
  { name: 'a query parameter name with brackets', change: (d) => set(d, ['backends', 'crm', 'scopes', 'contacts.read', 2, 'query', 'a[b]'], { bool: true }) },
  { name: 'an SQL dialect that does not exist', change: (d) => set(d, ['backends', 'crm', 'scopes', 'export', 'routes'], [{ route: 'POST /query', sql: { field: 'sql', dialect: 'oracle' } }]) },
  { name: 'approval maybe', change: (d) => set(d, ['backends', 'crm', 'scopes', 'export', 'approval'], 'maybe') },
  { name: 'an approval ttl without a unit', change: (d) => set(d, ['backends', 'crm', 'scopes', 'export', 'approval'], { ttl: 30 }) },
  { name: 'a role without grants', change: (d) => set(d, ['roles', 'reader', 'grants'], undefined) },
  { name: 'a grant that is not backend:scope', change: (d) => set(d, ['roles', 'reader', 'grants'], ['crm']) },
  { name: 'a grant listed twice', change: (d) => set(d, ['roles', 'reader', 'grants'], ['crm:contacts.read', 'crm:contacts.read']) },
  { name: 'readOnly as a string', change: (d) => set(d, ['roles', 'reader', 'readOnly'], 'yes') },
  { name: 'a role key in the wrong case', change: (d) => set(d, ['roles', 'reader', 'readonly'], true) },
  { name: 'a role name in capitals', change: (d) => set(d, ['roles', 'Reader'], { grants: ['crm:contacts.read'] }) },
  { name: 'a breaker of 0 violations', change: (d) => set(d, ['defaults', 'breaker', 'violations'], 0) },
  { name: 'a breaker cooldown of forever', change: (d) => set(d, ['defaults', 'breaker', 'cooldown'], 'forever') },
  { name: 'defaults.breaker without a window', change: (d) => set(d, ['defaults', 'breaker', 'window'], undefined) },
  { name: 'breaker off in defaults', change: (d) => set(d, ['defaults', 'breaker'], 'off') },
  { name: 'per-scope limits in defaults', change: (d) => set(d, ['defaults', 'rateLimit'], { rps: 1, scopes: { 'crm:contacts.read': { rps: 1 } } }) },
  { name: 'an unknown defaults key', change: (d) => set(d, ['defaults', 'mask'], {}) },
  { name: 'a token session of many', change: (d) => set(d, ['roles', 'reader', 'token'], { session: 'many' }) },
  { name: 'a delegation depth of 8', change: (d) => set(d, ['roles', 'reader', 'token'], { maxDelegationDepth: 8 }) },
  { name: 'a rate limit of 0 calls per second', change: (d) => set(d, ['roles', 'reader', 'rateLimit', 'rps'], 0) },
  { name: 'a burst of 0', change: (d) => set(d, ['roles', 'reader', 'rateLimit', 'burst'], 0) },
  { name: 'a mask with no fields', change: (d) => set(d, ['roles', 'reader', 'mask', 'crm'], []) },
  { name: 'a network allow list that is empty', change: (d) => set(d, ['roles', 'exporter', 'network', 'allow'], []) },
  { name: 'an approval list that is empty', change: (d) => set(d, ['roles', 'exporter', 'approval'], []) },
  { name: 'query tables that are empty', change: (d) => set(d, ['roles', 'reader', 'query'], { tables: [] }) },
  { name: 'an agent without an owner', change: (d) => set(d, ['agents', 'reader-01', 'owner'], undefined) },
  { name: 'an agent without a role', change: (d) => set(d, ['agents', 'reader-01', 'role'], undefined) },
  { name: 'an agent id in capitals', change: (d) => set(d, ['agents', 'Reader-01'], { role: 'reader', owner: 'x' }) },
  { name: 'an agent expiring tomorrow (a word)', change: (d) => set(d, ['agents', 'reader-01', 'expires'], 'tomorrow') },
  { name: 'an unknown agent key', change: (d) => set(d, ['agents', 'reader-01', 'secret'], 'x') },
  { name: 'a private key in a credential', change: (d) => set(d, ['agents', 'exporter-01', 'credentials', 0, 'jwk', 'd'], 'B'.repeat(43)) },
  { name: 'a client_secret credential', change: (d) => set(d, ['agents', 'exporter-01', 'credentials', 0, 'type'], 'client_secret') },
  { name: 'an RSA credential', change: (d) => set(d, ['agents', 'exporter-01', 'credentials', 0, 'jwk'], { kty: 'RSA', n: 'x', e: 'AQAB' }) },
  { name: 'users granting on sub', change: (d) => set(d, ['users', 'sub'], { alice: ['crm:contacts.read'] }) },
  { name: 'users with a grant that is not backend:scope', change: (d) => set(d, ['users', 'groups', 'sales'], ['everything']) },
];

t.test('policy files: the schema and the validator agree', async (t) => {
  t.ok(policyRefused.length > policyAccepted.length * 3, 'refusals outnumber acceptances');
  for (const c of policyAccepted) {
    await t.test(`accepted: ${c.name}`, async (t) => {
      const verdict = await policyVerdict(t.testdir({}), c.change(copy(BASE_POLICY)));
      t.equal(verdict.schema, '', 'the schema accepts it');
      t.equal(verdict.validator, '', 'the validator accepts it');
    });
  }
  for (const c of policyRefused) {
    await t.test(`refused: ${c.name}`, async (t) => {
      const verdict = await policyVerdict(t.testdir({}), c.change(copy(BASE_POLICY)));
      t.not(verdict.schema, '', 'the schema refuses it');
      t.not(verdict.validator, '', 'the validator refuses it');
    });
  }
});

// ---------------------------------------------------------------------------------------------
// agentgate.yaml

const BASE_CONFIG: Doc = {
  listen: { host: '127.0.0.1', port: 8080 },
  metrics: { host: '127.0.0.1', port: 9464 },
  admin: { socket: './run/agentgate.sock' },
  policies: './policies',
  issuer: { url: 'https://gw.example.com', keys: './run/keys', alg: 'EdDSA', rotate: '24h' },
  trust: [{ issuer: 'https://idp.example.com', jwksUri: 'https://idp.example.com/jwks', audience: 'agentgate' }],
  state: { driver: 'memory', file: './run/state.json' },
  audit: { file: './run/audit.jsonl', fsync: 'batch', checkpointLines: 1000, checkpointInterval: '1s' },
  limits: { maxBodyBytes: '1MiB', upstreamTimeout: '30s', maxHeaderBytes: 16384, maxMaskedBodyBytes: 8388608, bodyIdleTimeout: '10s', requestTimeout: '5m', headersTimeout: '15s' },
  trustedProxies: ['10.0.0.0/8', 'fd00::/8'],
  log: { level: 'info' },
};

async function configVerdict(dir: string, doc: Doc): Promise<{ schema: string; validator: string }> {
  writeFileSync(join(dir, 'agentgate.yaml'), stringify(doc));
  const ok = configSchema(doc);
  let validator = '';
  try {
    await loadSettings({ configFile: join(dir, 'agentgate.yaml'), env: {} });
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    validator = error.problems.join('\n');
  }
  return { schema: errorsOf(ok, configSchema.errors), validator };
}

const configAccepted: Array<{ name: string; change: (d: Doc) => Doc; files?: Record<string, string> }> = [
  { name: 'the base document', change: (d) => d },
  { name: 'an empty file', change: () => ({}) },
  { name: 'Redis by URL with TLS', change: (d) => set(d, ['state'], { driver: 'redis', url: 'rediss://redis:6380/0', timeout: '250ms', journal: './run/j.json', reseed: 'manual' }) },
  { name: 'Redis through Sentinel', change: (d) => set(d, ['state'], { driver: 'redis', sentinels: ['s1:26379', '[::1]:26380'], masterName: 'agentgate' }) },
  {
    name: 'Redis through Sentinel with passwords',
    change: (d) => set(d, ['state'], { driver: 'redis', sentinels: ['s1:26379'], masterName: 'agentgate', username: 'agentgate', passwordFile: './redis.pw', sentinelPasswordFile: './sentinel.pw' }),
    files: { 'redis.pw': 'x\n', 'sentinel.pw': 'y\n' },
  },
  { name: 'Redis by URL with a password file', change: (d) => set(d, ['state'], { driver: 'redis', url: 'redis://redis:6379', passwordFile: './redis.pw' }), files: { 'redis.pw': 'x\n' } },
  { name: 'state in memory only', change: (d) => set(d, ['state'], { driver: 'memory', file: null }) },
  { name: 'port 0', change: (d) => set(d, ['listen', 'port'], 0) },
];

const configRefused: Array<{ name: string; change: (d: Doc) => Doc }> = [
  { name: 'an unknown top-level key', change: (d) => set(d, ['listener'], {}) },
  { name: 'an unknown listen key', change: (d) => set(d, ['listen', 'address'], '127.0.0.1') },
  { name: 'a port above 65535', change: (d) => set(d, ['listen', 'port'], 70000) },
  { name: 'a port as text', change: (d) => set(d, ['metrics', 'port'], '9464x') },
  { name: 'a host with a space', change: (d) => set(d, ['listen', 'host'], 'local host') },
  { name: 'tls on the metrics port', change: (d) => set(d, ['metrics', 'tls'], { cert: './c.pem', key: './k.pem' }) },
  { name: 'listen.tls without a key', change: (d) => set(d, ['listen', 'tls'], { cert: './c.pem' }) },
  { name: 'listen.tls at TLS 1.1', change: (d) => set(d, ['listen', 'tls'], { cert: './c.pem', key: './k.pem', minVersion: 'TLSv1.1' }) },
  { name: 'an unknown listen.tls key', change: (d) => set(d, ['listen', 'tls'], { cert: './c.pem', key: './k.pem', ciphers: 'ALL' }) },
  { name: 'an RS256 issuer', change: (d) => set(d, ['issuer', 'alg'], 'RS256') },
  { name: 'an ftp issuer URL', change: (d) => set(d, ['issuer', 'url'], 'ftp://gw.example.com') },
  { name: 'an issuer URL with a query', change: (d) => set(d, ['issuer', 'url'], 'https://gw.example.com/?x=1') },
  { name: 'a rotation without a unit', change: (d) => set(d, ['issuer', 'rotate'], 86400) },
  { name: 'a trusted issuer without a JWKS URI', change: (d) => set(d, ['trust', 0, 'jwksUri'], undefined) },
  { name: 'trust as a map', change: (d) => set(d, ['trust'], { issuer: 'x' }) },
  { name: 'a state driver etcd', change: (d) => set(d, ['state'], { driver: 'etcd' }) },
  { name: 'Redis without a URL or sentinels', change: (d) => set(d, ['state'], { driver: 'redis' }) },
  { name: 'a Redis URL on the memory driver', change: (d) => set(d, ['state'], { driver: 'memory', url: 'redis://x:6379' }) },
  { name: 'a state file on the Redis driver', change: (d) => set(d, ['state'], { driver: 'redis', url: 'redis://x:6379', file: './s.json' }) },
  { name: 'a Redis URL that is http', change: (d) => set(d, ['state'], { driver: 'redis', url: 'http://x:6379' }) },
  { name: 'sentinels without a master name', change: (d) => set(d, ['state'], { driver: 'redis', sentinels: ['s1:26379'] }) },
  { name: 'a URL and sentinels', change: (d) => set(d, ['state'], { driver: 'redis', url: 'redis://x:6379', sentinels: ['s1:26379'], masterName: 'm' }) },
  { name: 'a Redis client certificate without its key', change: (d) => set(d, ['state'], { driver: 'redis', url: 'rediss://x:6380', tls: { cert: './c.pem' } }) },
  { name: 'a reseed mode of sometimes', change: (d) => set(d, ['state'], { driver: 'redis', url: 'redis://x:6379', reseed: 'sometimes' }) },
  { name: 'a Redis user without a password file', change: (d) => set(d, ['state'], { driver: 'redis', url: 'redis://x:6379', username: 'agentgate' }) },
  { name: 'a sentinel password without sentinels', change: (d) => set(d, ['state'], { driver: 'redis', url: 'redis://x:6379', sentinelPasswordFile: './pw' }) },
  { name: 'a Redis password file on the memory driver', change: (d) => set(d, ['state'], { driver: 'memory', passwordFile: './pw' }) },
  { name: 'fsync always', change: (d) => set(d, ['audit', 'fsync'], 'always') },
  { name: 'checkpointLines 0', change: (d) => set(d, ['audit', 'checkpointLines'], 0) },
  { name: 'an upstream timeout without a unit', change: (d) => set(d, ['limits', 'upstreamTimeout'], '30') },
  { name: 'a body size in lightyears', change: (d) => set(d, ['limits', 'maxBodyBytes'], '1 lightyear') },
  { name: 'a negative body size', change: (d) => set(d, ['limits', 'maxBodyBytes'], -1) },
  { name: 'an unknown limit', change: (d) => set(d, ['limits', 'maxBody'], 1) },
  { name: 'a trusted proxy that is not a network', change: (d) => set(d, ['trustedProxies'], ['proxy.internal']) },
  { name: 'a log level of verbose', change: (d) => set(d, ['log', 'level'], 'verbose') },
];

t.test('agentgate.yaml: the schema and the validator agree', async (t) => {
  t.ok(configRefused.length > configAccepted.length * 3, 'refusals outnumber acceptances');
  for (const c of configAccepted) {
    await t.test(`accepted: ${c.name}`, async (t) => {
      const verdict = await configVerdict(t.testdir(c.files ?? {}), c.change(copy(BASE_CONFIG)));
      t.equal(verdict.schema, '', 'the schema accepts it');
      t.equal(verdict.validator, '', 'the validator accepts it');
    });
  }
  for (const c of configRefused) {
    await t.test(`refused: ${c.name}`, async (t) => {
      const verdict = await configVerdict(t.testdir({}), c.change(copy(BASE_CONFIG)));
      t.not(verdict.schema, '', 'the schema refuses it');
      t.not(verdict.validator, '', 'the validator refuses it');
    });
  }
});
