// docker-compose.yml, the Dockerfile and deploy/ cannot run here (no Docker engine), so they are
// checked by parsing: every service, every file mounted, the container's config and policies
// assembled from the mounts and validated, ports and hosts that match, real CLI verbs, and a
// dashboard and alert rules that only name metrics a running gateway exports.
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, posix } from 'node:path';
import { parse } from 'yaml';
import { request } from 'undici';
import { loadSettings } from '../gateway/config.js';
import { COMMANDS } from '../gateway/main.js';
import { SHIPPED_NODE_FLAGS } from '../bench/procs.js';
import { loadPolicy } from '../gateway/server.js';
import { systemClock } from '../gateway/clock.js';
import { ROOT, startGateway } from './helpers/gateway.js';
import { runCli } from './helpers/process.js';
import { parseExposition } from './helpers/prom.js';

interface Service {
  build?: string;
  image?: string;
  command?: string[];
  ports?: string[];
  expose?: string[];
  volumes?: string[];
  environment?: Record<string, string>;
  depends_on?: Record<string, unknown> | string[];
}

const compose = parse(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8')) as { services: Record<string, Service>; volumes?: Record<string, unknown> };
const service = (name: string): Service => {
  const s = compose.services[name];
  if (s === undefined) throw new Error(`no ${name} service`);
  return s;
};
const hostMounts = (s: Service): Array<[host: string, container: string]> =>
  (s.volumes ?? [])
    .map((v) => v.split(':'))
    .filter(([host]) => host !== undefined && host.startsWith('./'))
    .map(([host, container]) => [host ?? '', container ?? '']);

/** A folder laid out as the container sees the files the service mounts. */
function containerView(t: { testdirName: string }, s: Service, name: string): string {
  const root = join(t.testdirName, `${name}-root`);
  for (const [host, container] of hostMounts(s)) {
    const target = join(root, container);
    mkdirSync(dirname(target), { recursive: true });
    cpSync(join(ROOT, host), target, { recursive: true });
  }
  return root;
}

/** Read a container-side config from the assembled view, with its absolute paths moved into it. */
async function containerSettings(root: string, configPath: string) {
  const text = readFileSync(join(root, configPath), 'utf8').replaceAll(' /app/', ` ${root}/app/`);
  const file = join(root, 'app', 'agentgate.rebased.yaml');
  writeFileSync(file, text);
  return loadSettings({ configFile: file, env: {} });
}

t.test('every service is there and every mounted file exists', async (t) => {
  t.same(Object.keys(compose.services).sort(), ['backends', 'gateway', 'grafana', 'prometheus', 'redis']);
  for (const [name, s] of Object.entries(compose.services)) {
    t.ok(s.build === '.' || typeof s.image === 'string', `${name}: built here or a published image`);
    if (typeof s.image === 'string') t.match(s.image, /:[\w.-]+$/, `${name}: image pinned to a tag`);
    for (const [host] of hostMounts(s)) t.ok(existsSync(join(ROOT, host)), `${name}: mounted ${host} exists`);
    for (const v of s.volumes ?? []) {
      const [source] = v.split(':');
      if (source !== undefined && !source.startsWith('./')) t.ok(compose.volumes !== undefined && source in compose.volumes, `${name}: named volume ${source} is declared`);
    }
    for (const p of s.ports ?? []) t.match(p, /^127\.0\.0\.1:\d+:\d+$/, `${name}: ${p} is published on the host's loopback only`);
  }
});

t.test('gateway: real CLI verb, container config and policies valid, ports and Redis match', async (t) => {
  const gateway = service('gateway');
  const command = gateway.command ?? [];
  t.ok((COMMANDS as readonly string[]).includes(command[0] ?? ''), `"${command[0]}" is a CLI verb`);
  const configPath = command[command.indexOf('--config') + 1] ?? '';
  t.equal(gateway.environment?.AGENTGATE_CONFIG, configPath, 'operator commands in the container find the same config');
  const root = containerView(t, gateway, 'gateway');
  t.ok(existsSync(join(root, configPath)), 'the config it names is mounted');
  const settings = await containerSettings(root, configPath);
  const policy = await loadPolicy(settings, { clock: systemClock, version: 1 });
  t.same([...policy.agents.keys()].sort(), ['data-agent-01', 'marketing-agent-03', 'support-agent-01'], 'the demo agents, from the mounted policies');
  const published = (gateway.ports ?? []).map((p) => Number(p.split(':').at(-1)));
  t.same(published.sort(), [settings.listen.port, settings.metrics.port].sort(), 'published ports are the ones the config listens on');
  t.equal(settings.listen.host, '0.0.0.0', 'listens beyond the container loopback');
  t.equal(settings.metrics.host, '0.0.0.0');
  t.ok(settings.admin.socket.startsWith(`${root}/app/run/`), 'the admin socket lives in the persistent run volume');
  t.equal(settings.state.driver, 'redis', 'state shared through the Redis service');
  if (settings.state.driver === 'redis') t.equal(new URL(settings.state.url ?? '').hostname, 'redis');
  t.ok(Array.isArray(gateway.depends_on) ? gateway.depends_on.includes('redis') : gateway.depends_on?.redis !== undefined, 'waits for Redis');
  for (const backend of policy.backends.values()) {
    t.equal(backend.upstream.hostname, 'backends', `${backend.name} is reached on the backends service`);
  }
  t.match(service('redis').command?.join(' ') ?? '', /--appendonly yes/, 'Redis keeps kill switches across its own restarts');
});

t.test('backends: real CLI verb, ports the policies name', async (t) => {
  const backends = service('backends');
  const command = backends.command ?? [];
  t.ok((COMMANDS as readonly string[]).includes(command[0] ?? ''), `"${command[0]}" is a CLI verb`);
  t.equal(command[command.indexOf('--host') + 1], '0.0.0.0');
  const root = containerView(t, backends, 'backends');
  const settings = await containerSettings(root, command[command.indexOf('--config') + 1] ?? '');
  const policy = await loadPolicy(settings, { clock: systemClock, version: 1 });
  const ports = [...policy.backends.values()].map((b) => b.upstream.port).sort();
  t.same([...(backends.expose ?? [])].sort(), ports, 'exposes exactly the upstream ports');
  t.same(backends.ports ?? [], [], 'not published: agents go through the gateway');
});

t.test('deploy/policies/backends.yaml is policies/backends.yaml with the compose host', async (t) => {
  const shipped = readFileSync(join(ROOT, 'policies', 'backends.yaml'), 'utf8');
  const docker = readFileSync(join(ROOT, 'deploy', 'policies', 'backends.yaml'), 'utf8');
  // Line 1 is the schema modeline (one folder deeper), then the two "Generated" lines.
  const [modeline = '', ...rest] = docker.split('\n');
  const body = [modeline, ...rest.filter((l, i) => !(i < 2 && l.startsWith('#')))].join('\n');
  const expected = shipped.replace('$schema=../schema/', '$schema=../../schema/').replaceAll('upstream: http://127.0.0.1:', 'upstream: http://backends:');
  t.equal(body, expected, 'in step (regenerate it with the sed line in the README)');
});

t.test('Prometheus scrapes the gateway and loads the alert rules', async (t) => {
  const prometheus = service('prometheus');
  const mounts = new Map(hostMounts(prometheus).map(([h, c]) => [c, h]));
  const configFile = (prometheus.command ?? []).find((a) => a.startsWith('--config.file='))?.split('=')[1] ?? '';
  const hostConfig = mounts.get(configFile);
  t.ok(hostConfig !== undefined, 'its config file is mounted');
  const config = parse(readFileSync(join(ROOT, hostConfig ?? ''), 'utf8')) as {
    rule_files: string[];
    scrape_configs: Array<{ job_name: string; static_configs: Array<{ targets: string[] }> }>;
  };
  // Relative to the config file, as Prometheus reads them: the same file works on the host.
  for (const rules of config.rule_files) {
    t.notOk(rules.startsWith('/'), `rule file ${rules} is relative to the config file`);
    t.ok(mounts.has(posix.join(posix.dirname(configFile), rules)), `rule file ${rules} is mounted beside the config`);
    t.ok(existsSync(join(ROOT, dirname(hostConfig ?? ''), rules)), `and is beside it on the host`);
  }
  const gwRoot = containerView(t, service('gateway'), 'gateway-for-prometheus');
  const gwSettings = await containerSettings(gwRoot, '/app/agentgate.yaml');
  const targets = config.scrape_configs.flatMap((s) => s.static_configs.flatMap((c) => c.targets));
  t.same(targets, [`gateway:${gwSettings.metrics.port}`], 'scrapes the gateway service on its metrics port');
});

t.test('Grafana: data source, dashboard provider, and mounts that match', async (t) => {
  const grafana = service('grafana');
  const mounts = new Map(hostMounts(grafana).map(([h, c]) => [c, h]));
  const provisioning = mounts.get('/etc/grafana/provisioning') ?? '';
  const datasources = parse(readFileSync(join(ROOT, provisioning, 'datasources', 'prometheus.yaml'), 'utf8')) as { datasources: Array<{ url: string; uid: string; type: string }> };
  t.match(datasources.datasources, [{ type: 'prometheus', uid: 'prometheus', url: 'http://prometheus:9090' }]);
  const providers = parse(readFileSync(join(ROOT, provisioning, 'dashboards', 'agentgate.yaml'), 'utf8')) as { providers: Array<{ options: { path: string } }> };
  const dashboardsDir = providers.providers[0]?.options.path ?? '';
  t.ok(mounts.has(dashboardsDir), 'the provider reads the mounted dashboards folder');
  t.ok(statSync(join(ROOT, mounts.get(dashboardsDir) ?? '', 'agentgate.json')).isFile());
});

t.test('dashboard and alert rules name only metrics the gateway exports', async (t) => {
  const gw = await startGateway(t);
  const scrape = parseExposition(await (await request(`${gw.metricsUrl}/metrics`)).body.text());
  const exported = new Set<string>();
  for (const [family, type] of scrape.types) {
    exported.add(family);
    if (type === 'histogram') for (const s of ['_bucket', '_sum', '_count']) exported.add(family + s);
  }
  const namesIn = (expr: string): string[] => [...expr.matchAll(/\bagentgate_[a-z_]+\b/g)].map((m) => m[0]);

  const dashboard = JSON.parse(readFileSync(join(ROOT, 'deploy', 'grafana', 'dashboards', 'agentgate.json'), 'utf8')) as {
    uid: string;
    panels: Array<{ title: string; targets: Array<{ expr: string; datasource: { uid: string } }> }>;
  };
  t.equal(dashboard.uid, 'agentgate');
  const titles = dashboard.panels.map((p) => p.title);
  for (const wanted of [/decision/i, /reason/i, /violations by agent/i, /breaker state/i, /killed/i, /overhead p50 \/ p99/i, /upstream errors/i, /tokens issued/i]) {
    t.ok(titles.some((title) => wanted.test(title)), `a panel for ${String(wanted)}`);
  }
  for (const panel of dashboard.panels) {
    t.ok(panel.targets.length > 0, `${panel.title}: has a query`);
    for (const target of panel.targets) {
      t.equal(target.datasource.uid, '${DS_PROMETHEUS}', `${panel.title}: uses the data source chosen at import (no hard-coded uid)`);
      const names = namesIn(target.expr);
      t.ok(names.length > 0, `${panel.title}: queries an AgentGate metric`);
      for (const name of names) t.ok(exported.has(name), `${panel.title}: ${name} is exported`);
    }
  }

  const alerts = parse(readFileSync(join(ROOT, 'deploy', 'prometheus', 'alerts.yml'), 'utf8')) as { groups: Array<{ rules: Array<{ alert: string; expr: string }> }> };
  const rules = alerts.groups.flatMap((g) => g.rules);
  for (const wanted of ['AgentGateBreakerTripped', 'AgentGateKillSwitchInForce', 'AgentGateCrossDomainBurst', 'AgentGateUpstreamErrors']) {
    t.ok(rules.some((r) => r.alert === wanted), `alert ${wanted}`);
  }
  for (const rule of rules) for (const name of namesIn(rule.expr)) t.ok(exported.has(name), `${rule.alert}: ${name} is exported`);
  t.match(rules.find((r) => r.alert === 'AgentGateCrossDomainBurst')?.expr ?? '', /reason="cross_domain"/);

  // promtool, when installed (.ci/run installs it), checks the rules and a real scrape.
  const promtool = spawnSync('promtool', ['--version']);
  if (promtool.error !== undefined) {
    t.comment('promtool not on PATH: skipping promtool check rules / check metrics');
    return;
  }
  execFileSync('promtool', ['check', 'rules', join(ROOT, 'deploy', 'prometheus', 'alerts.yml')]);
  const text = await (await request(`${gw.metricsUrl}/metrics`)).body.text();
  const check = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  t.equal(check.status, 0, `promtool check metrics: ${check.stdout}${check.stderr}`);
  t.pass('promtool check rules passed');
});

t.test('Grafana dashboard imports anywhere: a ${DS_PROMETHEUS} input, no hard-coded data source uid', async (t) => {
  const dashboard = JSON.parse(readFileSync(join(ROOT, 'deploy', 'grafana', 'dashboards', 'agentgate.json'), 'utf8')) as {
    __inputs: Array<{ name: string; type: string; pluginId: string }>;
    __requires: Array<{ type: string; id: string }>;
    templating: { list: Array<{ name: string; type: string; query: string }> };
    panels: Array<{ type: string }>;
  };
  t.match(dashboard.__inputs, [{ name: 'DS_PROMETHEUS', type: 'datasource', pluginId: 'prometheus' }], 'the import dialog asks for a Prometheus data source');
  // File provisioning does not read __inputs: a data source variable of the same name resolves it there.
  t.match(dashboard.templating.list, [{ name: 'DS_PROMETHEUS', type: 'datasource', query: 'prometheus' }]);
  for (const type of new Set(dashboard.panels.map((p) => p.type))) t.ok(dashboard.__requires.some((r) => r.type === 'panel' && r.id === type), `__requires names panel ${type}`);
  const uids: string[] = [];
  const walk = (node: unknown): void => {
    if (Array.isArray(node)) node.forEach(walk);
    else if (node !== null && typeof node === 'object') {
      for (const [key, value] of Object.entries(node)) {
        if (key === 'datasource') uids.push(typeof value === 'object' && value !== null ? String((value as { uid?: unknown }).uid) : String(value));
        walk(value);
      }
    }
  };
  walk(dashboard.panels);
  t.ok(uids.length > 10, 'every panel and query names its data source');
  t.same([...new Set(uids)], ['${DS_PROMETHEUS}'], 'and only through the input');
});

t.test('the docker config validates from the repository root; promtool checks both Prometheus configs', async (t) => {
  const res = await runCli(['check', '--config', 'deploy/agentgate.docker.yaml'], { cwd: ROOT, env: { AGENTGATE_CONFIG: '' }, timeoutMs: 60_000 });
  t.equal(res.code, 0, res.stderr);
  t.match(res.stdout, /deploy\/agentgate\.docker\.yaml: ok \(6 backends, 3 roles, 3 agents from 3 policy files, 1 worker process\)/);
  const settings = await loadSettings({ configFile: join(ROOT, 'deploy', 'agentgate.docker.yaml'), env: {} });
  t.equal(settings.policies, join(ROOT, 'deploy', 'policies'), 'paths resolve against the file');
  const policy = await loadPolicy(settings, { clock: systemClock, version: 1 });
  for (const backend of policy.backends.values()) t.equal(backend.upstream.hostname, 'backends', `${backend.name}: the compose upstream, not the host's`);
  for (const name of ['roles.yaml', 'agents.yaml']) {
    t.equal(readFileSync(join(ROOT, 'deploy', 'policies', name), 'utf8'), readFileSync(join(ROOT, 'policies', name), 'utf8'), `deploy/policies/${name} is policies/${name} (a link)`);
  }
  const noPromtool = spawnSync('promtool', ['--version']).error !== undefined;
  for (const file of ['prometheus.yml', 'prometheus.host.yml']) {
    await t.test(`promtool check config ${file}`, { skip: noPromtool ? 'promtool is not on PATH (.ci/run installs the prometheus package)' : false }, async (t) => {
      // From another folder: the rule file is found relative to the config, not the working directory.
      const check = spawnSync('promtool', ['check', 'config', join(ROOT, 'deploy', 'prometheus', file)], { cwd: t.testdir({}), encoding: 'utf8' });
      t.equal(check.status, 0, `${check.stdout}${check.stderr}`);
      t.match(check.stdout, /SUCCESS: 1 rule files found/);
      t.match(check.stdout, /SUCCESS: \d+ rules found/);
    });
  }
  const host = parse(readFileSync(join(ROOT, 'deploy', 'prometheus', 'prometheus.host.yml'), 'utf8')) as { scrape_configs: Array<{ static_configs: Array<{ targets: string[] }> }> };
  const shipped = await loadSettings({ configFile: join(ROOT, 'agentgate.yaml'), env: {} });
  t.same(host.scrape_configs.flatMap((s) => s.static_configs.flatMap((c) => c.targets)), [`${shipped.metrics.host}:${shipped.metrics.port}`], 'the host config scrapes the shipped metrics address');
});

t.test('Dockerfile', async (t) => {
  const text = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
  t.match(text, /^FROM node:24-slim/m);
  t.match(text, /^USER node$/m, 'runs as non-root');
  t.match(text, /npm ci --omit=dev/);
  t.match(text, /iproute2/, 'ss is there for the admin peer lookup');
  // Issue 15 item 10: a health check on the metrics port the docker config opens, and OCI labels.
  const port = /^metrics:\s*\{[^}]*port:\s*(\d+)/m.exec(readFileSync(join(ROOT, 'deploy', 'agentgate.docker.yaml'), 'utf8'))?.[1];
  t.match(text, /^HEALTHCHECK --interval=\S+ --timeout=\S+ .*\\\n\s+CMD \["node", "-e"/m, 'a HEALTHCHECK');
  t.ok(port !== undefined && text.includes(`fetch('http://127.0.0.1:${port}/healthz')`), 'it probes /healthz on the configured metrics port');
  for (const label of ['title', 'description', 'licenses']) t.match(text, new RegExp(`org\\.opencontainers\\.image\\.${label}=`), `OCI label ${label}`);
  for (const m of text.matchAll(/^COPY (?!--from)(.+) \S+$/gm)) {
    for (const source of (m[1] ?? '').split(' ')) t.ok(existsSync(join(ROOT, source)), `COPY source ${source} exists`);
  }
  // The node flags the image runs with are those of `npm start`, which the benchmark also uses.
  const entry = JSON.parse(`[${/^ENTRYPOINT \[(.+)\]$/m.exec(text)?.[1] ?? ''}]`) as string[];
  const start = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: { start: string } }).scripts.start.split(' ');
  t.same(entry.slice(0, entry.indexOf('bin/agentgate.js') + 1), start.slice(0, start.indexOf('bin/agentgate.js') + 1), 'ENTRYPOINT starts node as npm start does');
  t.ok(start.includes('--max-semi-space-size=4'), 'with the young generation capped (README, "Memory")');
  t.same(SHIPPED_NODE_FLAGS, ['--max-semi-space-size=4'], 'and the benchmark starts its gateways with those flags');
  const cmd = /^CMD \[(.+)\]$/m.exec(text)?.[1] ?? '';
  t.ok((COMMANDS as readonly string[]).includes(JSON.parse(`[${cmd}]`)[0] as string), 'CMD is a CLI verb');
});
