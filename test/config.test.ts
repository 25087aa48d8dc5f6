// agentgate.yaml + env overrides -> Settings: defaults, relative paths, env overrides validated like
// file values, and every problem reported at once as `file:line  path: message`.
import t from 'tap';
import { availableParallelism } from 'node:os';
import { join, relative } from 'node:path';
import { issuerForAddress, loadSettings, settingsWarnings, type LoadSettingsOptions, type Settings } from '../gateway/config.js';
import { ConfigError } from '../gateway/errors.js';
import { ROOT } from './helpers/root.js';

/** Lines of YAML; line N of the file is element N-1. */
const y = (...lines: string[]): string => `${lines.join('\n')}\n`;

/** The DESIGN §2 example, line for line (limits is line 9). */
const DESIGN = [
  'listen:   { host: 127.0.0.1, port: 8080 }',
  'metrics:  { host: 127.0.0.1, port: 9464 }',
  'admin:    { socket: ./run/agentgate.sock }',
  'policies: ./policies',
  'issuer:   { url: http://127.0.0.1:8080, keys: ./run/keys, alg: EdDSA, rotate: 24h }',
  'trust:    []',
  'state:    { driver: memory, file: ./run/state.json }',
  'audit:    { file: ./run/audit.jsonl }',
  'limits:   { maxBodyBytes: 1048576, upstreamTimeout: 30s }',
] as const;

/** The settings DESIGN §2 describes, for a config file in `dir`. */
function designSettings(dir: string, urlFrom: Settings['issuer']['urlFrom'] = 'listen'): Settings {
  return {
    configFile: join(dir, 'agentgate.yaml'),
    baseDir: dir,
    listen: { host: '127.0.0.1', port: 8080 },
    metrics: { host: '127.0.0.1', port: 9464 },
    admin: { socket: join(dir, 'run/agentgate.sock') },
    policies: join(dir, 'policies'),
    issuer: { url: 'http://127.0.0.1:8080', urlFrom, keys: join(dir, 'run/keys'), alg: 'EdDSA', rotateSeconds: 86_400 },
    trust: [],
    state: { driver: 'memory', file: join(dir, 'run/state.json') },
    audit: { file: join(dir, 'run/audit.jsonl'), fsync: 'batch', checkpointLines: 1000, checkpointIntervalMs: 1000 },
    limits: { maxBodyBytes: 1_048_576, upstreamTimeoutMs: 30_000, maxHeaderBytes: 16_384, maxMaskedBodyBytes: 8_388_608, bodyIdleTimeoutMs: 10_000, requestTimeoutMs: 300_000, headersTimeoutMs: 15_000 },
    trustedProxies: null,
    log: { level: 'info' },
    workers: { setting: 1, count: 1 },
  };
}

async function problemsOf(options: LoadSettingsOptions): Promise<readonly string[]> {
  try {
    await loadSettings(options);
    return [];
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
}

const expand = (dir: string, lines: readonly string[]): string[] => lines.map((l) => l.replaceAll('{dir}', relative(process.cwd(), dir)));

t.test('the shipped agentgate.yaml is the DESIGN example', async (t) => {
  const settings = await loadSettings({ configFile: join(ROOT, 'agentgate.yaml'), env: {} });
  t.same(settings, designSettings(ROOT));
  t.ok(Object.isFrozen(settings));
  for (const key of ['listen', 'metrics', 'admin', 'issuer', 'trust', 'state', 'audit', 'limits'] as const) {
    t.ok(Object.isFrozen(settings[key]), `${key} is frozen`);
  }
});

t.test('defaults equal the DESIGN example', async (t) => {
  for (const [name, text] of [
    ['empty file', ''],
    ['comments only', '# nothing set\n'],
    ['empty sections', y('listen: {}', 'limits: {}', 'issuer: {}', 'state: {}', 'admin: {}', 'audit: {}', 'metrics: {}')],
  ] as const) {
    const dir = t.testdir({ 'agentgate.yaml': text });
    t.same(await loadSettings({ configFile: join(dir, 'agentgate.yaml'), env: {} }), designSettings(dir), name);
  }
});

t.test('where the config file comes from', async (t) => {
  const dir = t.testdir({ 'agentgate.yaml': y(...DESIGN), etc: { 'gw.yaml': y('listen: { port: 1234 }') }, empty: {} });
  const other = join(dir, 'etc', 'gw.yaml');
  t.equal((await loadSettings({ cwd: dir, env: {} })).configFile, join(dir, 'agentgate.yaml'), './agentgate.yaml in cwd');
  t.equal((await loadSettings({ cwd: dir, env: { AGENTGATE_CONFIG: 'etc/gw.yaml' } })).listen.port, 1234, 'AGENTGATE_CONFIG, relative to cwd');
  t.equal((await loadSettings({ cwd: dir, env: { AGENTGATE_CONFIG: other }, configFile: 'agentgate.yaml' })).listen.port, 8080, '--config beats the env');
  const settings = await loadSettings({ configFile: other, env: {} });
  t.equal(settings.baseDir, join(dir, 'etc'));
  t.equal(settings.policies, join(dir, 'etc', 'policies'), 'relative paths resolve against the file folder');

  t.same(await problemsOf({ cwd: join(dir, 'empty'), env: {} }), expand(dir, ['{dir}/empty/agentgate.yaml: no such file (pass --config or set AGENTGATE_CONFIG)']));
  t.same(await problemsOf({ configFile: join(dir, 'nope.yaml'), env: {} }), expand(dir, ['{dir}/nope.yaml: no such file (pass --config or set AGENTGATE_CONFIG)']));
  t.same(await problemsOf({ configFile: join(dir, 'etc'), env: {} }), expand(dir, ['{dir}/etc: cannot read (it is a folder)']));

  const cwd = process.cwd();
  process.chdir(join(dir, 'empty'));
  t.teardown(() => process.chdir(cwd));
  t.same(await problemsOf({ env: {} }), ['agentgate.yaml: no such file (pass --config or set AGENTGATE_CONFIG)'], 'the documented message');
});

t.test('environment overrides', async (t) => {
  const dir = t.testdir({ 'agentgate.yaml': y(...DESIGN), work: {} });
  const configFile = join(dir, 'agentgate.yaml');
  const cwd = join(dir, 'work');
  const cases: ReadonlyArray<{ name: string; env: NodeJS.ProcessEnv; expect: Partial<Settings> }> = [
    { name: 'listen port', env: { AGENTGATE_LISTEN_PORT: '18080' }, expect: { listen: { host: '127.0.0.1', port: 18080 } } },
    { name: 'port 0 picks a free one', env: { AGENTGATE_LISTEN_PORT: '0', AGENTGATE_METRICS_PORT: '0' }, expect: { listen: { host: '127.0.0.1', port: 0 }, metrics: { host: '127.0.0.1', port: 0 } } },
    { name: 'metrics port', env: { AGENTGATE_METRICS_PORT: '19464' }, expect: { metrics: { host: '127.0.0.1', port: 19464 } } },
    { name: 'admin socket, relative to cwd', env: { AGENTGATE_ADMIN_SOCKET: 'gw.sock' }, expect: { admin: { socket: join(cwd, 'gw.sock') } } },
    { name: 'admin socket, absolute', env: { AGENTGATE_ADMIN_SOCKET: '/tmp/x.sock' }, expect: { admin: { socket: '/tmp/x.sock' } } },
    { name: 'state file', env: { AGENTGATE_STATE_FILE: 'state.json' }, expect: { state: { driver: 'memory', file: join(cwd, 'state.json') } } },
    { name: 'redis url switches the driver', env: { AGENTGATE_REDIS_URL: 'redis://127.0.0.1:6379/2', AGENTGATE_STATE_FILE: 'ignored.json' }, expect: { state: { driver: 'redis', url: 'redis://127.0.0.1:6379/2', timeoutMs: 250, journal: join(dir, 'run/state-journal.json'), reseed: 'auto', tls: null, sentinel: null, auth: null, sentinelAuth: null } } },
    { name: 'empty variables count as unset', env: { AGENTGATE_LISTEN_PORT: '', AGENTGATE_REDIS_URL: '', AGENTGATE_ADMIN_SOCKET: '', AGENTGATE_ISSUER_URL: '' }, expect: designSettings(dir, 'config') },
    { name: 'log level', env: { AGENTGATE_LOG_LEVEL: 'warn' }, expect: { log: { level: 'warn' } } },
    { name: 'issuer url', env: { AGENTGATE_ISSUER_URL: 'https://gw.example.com' }, expect: { issuer: { ...designSettings(dir).issuer, url: 'https://gw.example.com', urlFrom: 'env' } } },
  ];
  for (const c of cases) {
    t.match(await loadSettings({ configFile, env: c.env, cwd }), c.expect, c.name);
  }
  t.same(
    await problemsOf({ configFile, cwd, env: { AGENTGATE_LISTEN_PORT: '80a', AGENTGATE_METRICS_PORT: '70000', AGENTGATE_REDIS_URL: 'http://127.0.0.1:6379' } }),
    [
      'AGENTGATE_LISTEN_PORT: "80a" is not a port (a whole number from 0 to 65535; 0 picks a free one)',
      'AGENTGATE_METRICS_PORT: "70000" is not a port (a whole number from 0 to 65535; 0 picks a free one)',
      'AGENTGATE_REDIS_URL: "http://127.0.0.1:6379" is not a redis:// or rediss:// URL',
    ],
  );
  t.same(await problemsOf({ configFile, cwd, env: { AGENTGATE_LOG_LEVEL: 'verbose' } }), ['AGENTGATE_LOG_LEVEL: "verbose" is not a log level (allowed: debug, info, warn, error, silent)']);
  t.same(await problemsOf({ configFile, cwd, env: { AGENTGATE_LOG_LEVEL: 'INFO' } }), ['AGENTGATE_LOG_LEVEL: "INFO" is not a log level (allowed: debug, info, warn, error, silent)'], 'levels are lower case, like the file');
  t.same(
    await Promise.all(['ftp://gw', 'http://gw/?x=1', 'http://u:p@gw', 'gw.example.com'].map((url) => problemsOf({ configFile, cwd, env: { AGENTGATE_ISSUER_URL: url } }))),
    ['ftp://gw', 'http://gw/?x=1', 'http://u:p@gw', 'gw.example.com'].map((url) => [`AGENTGATE_ISSUER_URL: "${url}" is not an http(s) URL without query, fragment or credentials`]),
  );
});

const broken: ReadonlyArray<{ name: string; file: string; env?: NodeJS.ProcessEnv; expect: readonly string[] }> = [
  {
    name: 'the documented example: a duration without a unit on line 9',
    file: y(...DESIGN.slice(0, 8), 'limits:   { maxBodyBytes: 1048576, upstreamTimeout: 30 }'),
    expect: ['{dir}/agentgate.yaml:9  limits.upstreamTimeout: "30" has no unit (use e.g. 30s)'],
  },
  {
    name: 'every problem at once',
    env: { AGENTGATE_METRICS_PORT: '-1' },
    file: y(
      'listen:   { host: 127.0.0.1, port: 80800 }',
      'metrics:  { host: "bad host", port: "9464" }',
      'admin:    { socket: ./run/agentgate.sock, mode: 0600 }',
      'policies: 42',
      'issuer:   { url: "ftp://x", keys: ./run/keys, alg: RS256, rotate: 30s }',
      'trust:    [{ issuer: https://idp.example, jwksUri: not-a-url }, { jwksUri: https://idp.example/jwks }, { issuer: https://idp.example, jwksUri: https://idp.example/jwks }]',
      'state:    { driver: postgres }',
      'audit:    { file: "" }',
      'limits:   { maxBodyBytes: lots, upstreamTimeout: 2h, maxHeaderBytes: 100 }',
      'limit:    {}',
    ),
    expect: [
      'AGENTGATE_METRICS_PORT: "-1" is not a port (a whole number from 0 to 65535; 0 picks a free one)',
      '{dir}/agentgate.yaml:1  listen.port: expected a whole number from 0 to 65535, got 80800',
      '{dir}/agentgate.yaml:2  metrics.host: "bad host" is not a host name or IP address',
      '{dir}/agentgate.yaml:2  metrics.port: expected a whole number from 0 to 65535, got "9464"',
      '{dir}/agentgate.yaml:3  admin.mode: unknown key (allowed: socket)',
      '{dir}/agentgate.yaml:4  policies: expected a non-empty string, got 42',
      '{dir}/agentgate.yaml:5  issuer.url: "ftp://x" is not an http(s) URL without query, fragment or credentials',
      '{dir}/agentgate.yaml:5  issuer.alg: "RS256" is not a signing algorithm (allowed: EdDSA, ES256)',
      '{dir}/agentgate.yaml:5  issuer.rotate: must be at least 1m',
      '{dir}/agentgate.yaml:6  trust[0].jwksUri: "not-a-url" is not an http(s) URL',
      '{dir}/agentgate.yaml:6  trust[1].issuer: is required',
      '{dir}/agentgate.yaml:6  trust[2].issuer: "https://idp.example" is already trusted by trust[0]',
      '{dir}/agentgate.yaml:7  state.driver: "postgres" is not a state driver (allowed: memory, redis)',
      '{dir}/agentgate.yaml:8  audit.file: expected a non-empty string, got ""',
      '{dir}/agentgate.yaml:9  limits.maxBodyBytes: "lots" is not a size (bytes, or a number with B, KB, MB, GB, KiB, MiB, GiB, e.g. 1MiB)',
      '{dir}/agentgate.yaml:9  limits.upstreamTimeout: must be at most 1h',
      '{dir}/agentgate.yaml:9  limits.maxHeaderBytes: must be at least 1024 bytes',
      '{dir}/agentgate.yaml:10  limit: unknown key (allowed: listen, metrics, admin, policies, issuer, trust, state, audit, limits, trustedProxies, log, workers); did you mean "limits"?',
    ],
  },
  {
    name: 'log level',
    file: y('log: { level: verbose, format: pretty }'),
    expect: [
      '{dir}/agentgate.yaml:1  log.format: unknown key (allowed: level)',
      '{dir}/agentgate.yaml:1  log.level: "verbose" is not a log level (allowed: debug, info, warn, error, silent)',
    ],
  },
  {
    name: 'audit durability keys',
    file: y('audit:', '  file: ./a.jsonl', '  fsync: always', '  checkpointLines: 0', '  checkpointInterval: 5', '  fsyncs: batch'),
    expect: [
      '{dir}/agentgate.yaml:3  audit.fsync: "always" is not an fsync mode (allowed: batch, off)',
      '{dir}/agentgate.yaml:4  audit.checkpointLines: expected a whole number from 1 to 1000000, got 0',
      '{dir}/agentgate.yaml:5  audit.checkpointInterval: "5" has no unit (use e.g. 5s)',
      '{dir}/agentgate.yaml:6  audit.fsyncs: unknown key (allowed: file, fsync, checkpointLines, checkpointInterval); did you mean "fsync"?',
    ],
  },
  {
    name: 'request timeouts (issue 10): units, bounds, and a request at least as long as its head',
    file: y('limits:', '  bodyIdleTimeout: 10', '  headersTimeout: 20s', '  requestTimeout: 5s'),
    expect: [
      '{dir}/agentgate.yaml:2  limits.bodyIdleTimeout: "10" has no unit (use e.g. 10s)',
      '{dir}/agentgate.yaml:4  limits.requestTimeout: must be at least limits.headersTimeout (20s): the head is part of the request',
    ],
  },
  {
    name: 'a body idle timeout out of bounds',
    file: y('limits: { bodyIdleTimeout: 1h }'),
    expect: ['{dir}/agentgate.yaml:1  limits.bodyIdleTimeout: must be at most 10m'],
  },
  {
    name: 'redis without a url',
    file: y('state:', '  driver: redis'),
    expect: ['{dir}/agentgate.yaml:1  state.url: is required'],
  },
  {
    name: 'keys of the other driver',
    file: y('state: { driver: redis, url: "http://cache:6379", file: ./s.json }'),
    expect: [
      '{dir}/agentgate.yaml:1  state.file: is not used by driver redis (redis takes url, or sentinels and masterName)',
      '{dir}/agentgate.yaml:1  state.url: "http://cache:6379" is not a redis:// or rediss:// URL',
    ],
  },
  {
    name: 'a url for the memory driver',
    file: y('state:', '  driver: memory', '  url: redis://cache:6379'),
    expect: ['{dir}/agentgate.yaml:3  state.url: is not used by driver memory (memory takes file)'],
  },
  {
    name: 'sections of the wrong kind',
    file: y('state: memory', 'trust: {}', 'listen: [127.0.0.1, 8080]'),
    expect: [
      '{dir}/agentgate.yaml:1  state: expected a map with keys driver, file, url, timeout, journal, reseed, tls, sentinels, masterName, username, passwordFile, sentinelUsername, sentinelPasswordFile, got "memory"',
      '{dir}/agentgate.yaml:2  trust: expected a list, got a map',
      '{dir}/agentgate.yaml:3  listen: expected a map with keys host, port, tls, got a list',
    ],
  },
  {
    name: 'not a map at all',
    file: y('- listen'),
    expect: ['{dir}/agentgate.yaml:1  (top level): expected a map with keys listen, metrics, admin, policies, issuer, trust, state, audit, limits, trustedProxies, log, workers, got a list'],
  },
  {
    name: 'YAML syntax',
    file: y('listen: { host: 127.0.0.1, port: 8080 }', 'limits: { maxBodyBytes: 1MiB', 'audit: { file: x }'),
    expect: ['{dir}/agentgate.yaml:3  YAML syntax: Flow map in block collection must be sufficiently indented and end with a }'],
  },
];

for (const c of broken) {
  t.test(c.name, async (t) => {
    const dir = t.testdir({ 'agentgate.yaml': c.file });
    t.same(await problemsOf({ configFile: join(dir, 'agentgate.yaml'), env: c.env ?? {} }), expand(dir, c.expect));
  });
}

t.test('values with units and optional keys', async (t) => {
  const dir = t.testdir({
    'agentgate.yaml': y(
      'listen: { port: 0 }',
      'issuer: { url: "https://gw.example.com", alg: ES256, rotate: 7d }',
      'trust:',
      '  - { issuer: "https://idp.example", jwksUri: "https://idp.example/jwks.json", audience: agentgate }',
      '  - { issuer: "https://other.example", jwksUri: "http://127.0.0.1:9/jwks" }',
      'state:',
      '  driver: memory',
      '  file:',
      'limits: { maxBodyBytes: 200MiB, upstreamTimeout: 1500ms, maxHeaderBytes: 32KiB, bodyIdleTimeout: 2s, headersTimeout: 5s, requestTimeout: 1m }',
      'policies: /srv/policies',
      'audit: { file: /var/log/ag.jsonl, fsync: off, checkpointLines: 50, checkpointInterval: 250ms }',
    ),
  });
  const settings = await loadSettings({ configFile: join(dir, 'agentgate.yaml'), env: {} });
  t.same(settings.listen, { host: '127.0.0.1', port: 0 });
  t.same(settings.issuer, { url: 'https://gw.example.com', urlFrom: 'config', keys: join(dir, 'run/keys'), alg: 'ES256', rotateSeconds: 604_800 });
  t.same(settings.trust, [
    { issuer: 'https://idp.example', jwksUri: 'https://idp.example/jwks.json', audience: 'agentgate' },
    { issuer: 'https://other.example', jwksUri: 'http://127.0.0.1:9/jwks', audience: null },
  ]);
  t.same(settings.state, { driver: 'memory', file: null }, 'an empty file: keeps state in memory only');
  t.same(settings.limits, { maxBodyBytes: 209_715_200, upstreamTimeoutMs: 1500, maxHeaderBytes: 32_768, maxMaskedBodyBytes: 8_388_608, bodyIdleTimeoutMs: 2000, headersTimeoutMs: 5000, requestTimeoutMs: 60_000 });
  t.equal(settings.policies, '/srv/policies', 'absolute paths stay');
  t.same(settings.audit, { file: '/var/log/ag.jsonl', fsync: 'off', checkpointLines: 50, checkpointIntervalMs: 250 });
});

t.test('the issuer comes from AGENTGATE_ISSUER_URL, else issuer.url, else the listen address', async (t) => {
  const cases: ReadonlyArray<{ file: string; env?: NodeJS.ProcessEnv; url: string; from: Settings['issuer']['urlFrom']; warn?: RegExp }> = [
    { file: '', url: 'http://127.0.0.1:8080', from: 'listen' },
    { file: 'listen: { port: 9000 }', url: 'http://127.0.0.1:9000', from: 'listen' },
    { file: 'listen: { port: 9000 }', env: { AGENTGATE_LISTEN_PORT: '0' }, url: 'http://127.0.0.1:0', from: 'listen' },
    { file: 'listen: { host: 0.0.0.0, port: 8080 }', url: 'http://127.0.0.1:8080', from: 'listen' },
    { file: 'listen: { host: "::", port: 8080 }', url: 'http://[::1]:8080', from: 'listen' },
    { file: 'listen: { host: "::1", port: 80 }', url: 'http://[::1]', from: 'listen' },
    { file: 'issuer: { url: https://gw.example.com }', url: 'https://gw.example.com', from: 'config' },
    { file: 'issuer: { url: https://gw.example.com }', env: { AGENTGATE_ISSUER_URL: 'http://127.0.0.1:7000' }, url: 'http://127.0.0.1:7000', from: 'env', warn: /^AGENTGATE_ISSUER_URL http:\/\/127\.0\.0\.1:7000 does not match listen 127\.0\.0\.1:8080/ },
    // Loopback mismatches are warned about; a public name in front of a loopback listener is not.
    { file: 'issuer: { url: "http://127.0.0.1:8080" }\nlisten: { port: 9000 }', url: 'http://127.0.0.1:8080', from: 'config', warn: /^issuer\.url http:\/\/127\.0\.0\.1:8080 does not match listen 127\.0\.0\.1:9000: .*leave issuer\.url out/ },
    { file: 'issuer: { url: "http://localhost:8080" }', env: { AGENTGATE_LISTEN_PORT: '0' }, url: 'http://localhost:8080', from: 'config', warn: /does not match listen 127\.0\.0\.1:0/ },
    { file: 'issuer: { url: "http://[::1]:8081" }\nlisten: { host: "::1", port: 8080 }', url: 'http://[::1]:8081', from: 'config', warn: /does not match/ },
    { file: 'issuer: { url: "http://127.0.0.1:8080" }', url: 'http://127.0.0.1:8080', from: 'config' },
    // Issue 15 item 11: https on a loopback gateway that speaks plain HTTP cannot be reached.
    { file: 'issuer: { url: "https://127.0.0.1" }\nlisten: { port: 443 }', url: 'https://127.0.0.1', from: 'config', warn: /^issuer\.url https:\/\/127\.0\.0\.1 is https but the agent port speaks plain HTTP: set listen\.tls/ },
    { file: 'issuer: { url: "https://gw.example.com" }\nlisten: { port: 9000 }', url: 'https://gw.example.com', from: 'config' },
    { file: 'issuer: { url: "http://127.0.0.1:8080" }\nlisten: { host: 0.0.0.0, port: 9000 }', url: 'http://127.0.0.1:8080', from: 'config' },
  ];
  for (const c of cases) {
    const dir = t.testdir({ 'agentgate.yaml': `${c.file}\n` });
    const settings = await loadSettings({ configFile: join(dir, 'agentgate.yaml'), env: c.env ?? {} });
    const name = `${c.file.replaceAll('\n', '; ')} ${JSON.stringify(c.env ?? {})}`;
    t.same([settings.issuer.url, settings.issuer.urlFrom], [c.url, c.from], name);
    const warnings = settingsWarnings(settings);
    if (c.warn === undefined) t.same(warnings, [], `${name}: no warning`);
    else t.match(warnings, [c.warn], `${name}: warned`);
  }
  t.equal(issuerForAddress('https', '127.0.0.1', 443), 'https://127.0.0.1');
  t.equal(issuerForAddress('https', '::', 8443), 'https://[::1]:8443');
  t.equal(issuerForAddress('http', '10.0.0.5', 80), 'http://10.0.0.5');
});

t.test('workers: auto or 1..256, AGENTGATE_WORKERS overrides it; anything else is refused', async (t) => {
  const cpus = availableParallelism();
  const accepted: ReadonlyArray<{ file: string; env?: NodeJS.ProcessEnv; want: Settings['workers'] }> = [
    { file: '', want: { setting: 1, count: 1 } },
    { file: 'workers: 1', want: { setting: 1, count: 1 } },
    { file: 'workers: 4', want: { setting: 4, count: 4 } },
    { file: 'workers: 256', want: { setting: 256, count: 256 } },
    { file: 'workers: auto', want: { setting: 'auto', count: Math.min(256, cpus) } },
    { file: 'workers: 4', env: { AGENTGATE_WORKERS: '2' }, want: { setting: 2, count: 2 } },
    { file: '', env: { AGENTGATE_WORKERS: 'auto' }, want: { setting: 'auto', count: Math.min(256, cpus) } },
    { file: 'workers: 3', env: { AGENTGATE_WORKERS: '' }, want: { setting: 3, count: 3 } },
  ];
  for (const c of accepted) {
    const dir = t.testdir({ 'agentgate.yaml': c.file });
    const settings = await loadSettings({ configFile: join(dir, 'agentgate.yaml'), env: c.env ?? {} });
    t.same(settings.workers, c.want, `${c.file || '(absent)'} ${JSON.stringify(c.env ?? {})}`);
  }
  const refused: ReadonlyArray<{ file: string; env?: NodeJS.ProcessEnv; expect: RegExp }> = [
    { file: 'workers: 0', expect: /workers.*expected auto or a whole number from 1 to 256, got 0/ },
    { file: 'workers: -2', expect: /workers.*got -2/ },
    { file: 'workers: 257', expect: /workers.*got 257/ },
    { file: 'workers: 1.5', expect: /workers.*got 1.5/ },
    { file: 'workers: "2"', expect: /workers.*got "2"/ },
    { file: 'workers: AUTO', expect: /workers.*got "AUTO"/ },
    { file: 'workers: true', expect: /workers.*got true/ },
    { file: 'workers: [2]', expect: /workers.*got seq/ },
    { file: 'workers: { count: 2 }', expect: /workers.*got map/ },
    { file: 'workers:', expect: /workers.*got null/ },
    { file: '', env: { AGENTGATE_WORKERS: '0' }, expect: /AGENTGATE_WORKERS: "0" is not a worker count/ },
    { file: '', env: { AGENTGATE_WORKERS: 'many' }, expect: /AGENTGATE_WORKERS: "many"/ },
    { file: '', env: { AGENTGATE_WORKERS: '2x' }, expect: /AGENTGATE_WORKERS: "2x"/ },
    { file: '', env: { AGENTGATE_WORKERS: '99999' }, expect: /AGENTGATE_WORKERS: "99999"/ },
  ];
  for (const c of refused) {
    const dir = t.testdir({ 'agentgate.yaml': c.file });
    const problems = await problemsOf({ configFile: join(dir, 'agentgate.yaml'), env: c.env ?? {} });
    t.equal(problems.length, 1, `${c.file} ${JSON.stringify(c.env ?? {})}: one problem`);
    t.match(problems.join('\n'), c.expect, `${c.file} ${JSON.stringify(c.env ?? {})}`);
  }
});
