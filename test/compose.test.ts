// docker-compose.yml and the Dockerfile cannot run here (no Docker engine), so they are checked
// by parsing: services, ports that match the container config, files that exist, real CLI verbs.
import t from 'tap';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { loadSettings } from '../gateway/config.js';
import { COMMANDS } from '../gateway/main.js';
import { ROOT } from './helpers/gateway.js';

interface Service {
  build?: string;
  image?: string;
  command?: string[];
  ports?: string[];
  volumes?: string[];
}

t.test('docker-compose.yml', async (t) => {
  const compose = parse(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8')) as { services: Record<string, Service> };
  const gateway = compose.services.gateway;
  if (gateway === undefined) throw new Error('no gateway service');
  t.equal(gateway.build, '.', 'built from the repository Dockerfile');

  const command = gateway.command ?? [];
  t.ok((COMMANDS as readonly string[]).includes(command[0] ?? ''), `"${command[0]}" is a CLI verb`);
  const configIndex = command.indexOf('--config');
  t.ok(configIndex > 0, 'passes --config');
  const containerConfig = command[configIndex + 1];

  const mounts = new Map<string, string>();
  for (const volume of gateway.volumes ?? []) {
    const [host, container] = volume.split(':');
    if (host === undefined || container === undefined) continue;
    t.ok(existsSync(join(ROOT, host)), `mounted ${host} exists`);
    mounts.set(container, host);
  }
  const hostConfig = containerConfig === undefined ? undefined : mounts.get(containerConfig);
  t.ok(hostConfig !== undefined, 'the config it names is mounted');
  const settings = await loadSettings({ configFile: join(ROOT, hostConfig ?? ''), env: {} });
  const published = (gateway.ports ?? []).map((p) => Number(p.split(':').at(-1)));
  t.same(published.sort(), [settings.listen.port, settings.metrics.port].sort(), 'ports match the config');
  t.equal(settings.listen.host, '0.0.0.0', 'listens beyond the container loopback');
  t.equal(mounts.get(settings.policies), './policies', 'the policies folder is the one mounted');
});

t.test('Dockerfile', async (t) => {
  const text = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
  t.match(text, /^FROM node:24-slim/m);
  t.match(text, /^USER node$/m, 'runs as non-root');
  t.match(text, /npm ci --omit=dev/);
  for (const m of text.matchAll(/^COPY (?!--from)(.+) \S+$/gm)) {
    for (const source of (m[1] ?? '').split(' ')) t.ok(existsSync(join(ROOT, source)), `COPY source ${source} exists`);
  }
});
