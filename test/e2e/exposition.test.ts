// Issue 15 item 5: the whole /metrics of a real `agentgate serve` process, prom-client's default
// metrics included, passes `promtool check metrics`; agentgate_build_info names the version and
// Node.js; counters over closed label sets (backends, roles, agents, upstream error kinds, grant
// types, state causes) are there at 0 before any traffic, and are the series traffic then moves.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, startUpstream } from '../helpers/gateway.js';
import { closedPort } from '../helpers/root.js';
import { parseExposition, seriesKey, type Exposition } from '../helpers/prom.js';
import { runCli, serveCli, writeConfig } from '../helpers/process.js';

const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const KINDS = ['connect', 'timeout', 'reset', 'redirect', 'protocol'];

t.test('the full exposition of a served gateway', async (t) => {
  const crm = await startUpstream(t);
  const down = await closedPort(); // nothing listens there
  const dir = t.testdir({
    policies: {
      'p.yaml': [
        'backends:',
        '  crm:',
        `    upstream: ${crm.url}`,
        '    scopes:',
        '      read: ["GET /contacts"]',
        '  down:',
        `    upstream: http://127.0.0.1:${down}`,
        '    scopes:',
        '      read: ["GET /x"]',
        'roles:',
        '  reader:',
        '    grants: [crm:read, down:read]',
        '  idle:',
        '    grants: [crm:read]',
        'agents:',
        '  reader-01: { role: reader, owner: test }',
        '  idle-01: { role: idle, owner: test }',
        '',
      ].join('\n'),
    },
  });
  const config = await writeConfig(join(dir, 'gw'), join(dir, 'policies'));
  const gw = await serveCli(t, ['serve', '--config', config], { timeoutMs: 60_000 });
  t.teardown(() => gw.stop());
  const scrape = async (): Promise<{ text: string; exposition: Exposition }> => {
    const res = await fetch(`${gw.metricsUrl}/metrics`);
    t.equal(res.status, 200);
    const text = await res.text();
    return { text, exposition: parseExposition(text) };
  };

  const before = await scrape();
  const noPromtool = spawnSync('promtool', ['--version']).error !== undefined;
  await t.test('promtool check metrics passes on the whole output', { skip: noPromtool ? 'promtool is not on PATH (.ci/run installs the prometheus package)' : false }, async (t) => {
    const check = spawnSync('promtool', ['check', 'metrics'], { input: before.text, encoding: 'utf8' });
    t.equal(check.status, 0, `promtool check metrics: ${check.stdout}${check.stderr}`);
    t.equal(`${check.stdout}${check.stderr}`, '', 'no lint finding at all');
  });

  await t.test('default process metrics are on, none a gauge named like a counter', async (t) => {
    const { types } = before.exposition;
    for (const name of ['process_cpu_seconds_total', 'process_resident_memory_bytes', 'nodejs_eventloop_lag_seconds', 'nodejs_heap_size_used_bytes', 'nodejs_active_handles']) {
      t.ok(types.has(name), `${name} is exported`);
    }
    for (const [name, type] of types) if (name.endsWith('_total')) t.equal(type, 'counter', `${name} ends in _total, so it is a counter`);
    for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) t.notOk(types.has(name), `${name} is dropped`);
  });

  await t.test('agentgate_build_info', async (t) => {
    const version = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
    t.equal(before.exposition.types.get('agentgate_build_info'), 'gauge');
    t.equal(before.exposition.samples.get(seriesKey('agentgate_build_info', { node: process.version, version })), 1);
    const infos = [...before.exposition.samples.keys()].filter((k) => k.startsWith('agentgate_build_info'));
    t.equal(infos.length, 1, 'one build_info series');
  });

  await t.test('closed label sets start at 0', async (t) => {
    const { samples } = before.exposition;
    const zero = (name: string, labels: Record<string, string>): void => {
      t.equal(samples.get(seriesKey(name, labels)), 0, seriesKey(name, labels));
    };
    for (const backend of ['crm', 'down']) {
      zero('agentgate_requests_total', { backend, decision: 'allow', reason: 'none' });
      for (const kind of KINDS) zero('agentgate_upstream_errors_total', { backend, kind });
    }
    for (const role of ['reader', 'idle']) for (const grant_type of ['client_credentials', TOKEN_EXCHANGE]) zero('agentgate_tokens_issued_total', { role, grant_type });
    for (const agent of ['reader-01', 'idle-01']) zero('agentgate_breaker_trips_total', { agent });
    for (const cause of ['connection', 'timeout', 'data_lost']) zero('agentgate_state_outages_total', { cause });
    for (const kind of ['reseed', 'merge']) zero('agentgate_state_reseeds_total', { kind });
    zero('agentgate_tokens_revoked_total', {});
    // Nothing seeded outside the policy's names: the only backend label values are the policy's.
    const backends = new Set([...samples.keys()].flatMap((k) => [.../backend="([^"]*)"/.exec(k)?.slice(1) ?? []]));
    t.same([...backends].sort(), ['crm', 'down']);
  });

  await t.test('traffic moves the seeded series, no second series appears', async (t) => {
    const minted = await runCli(['token', '--agent', 'reader-01', '--config', config], { timeoutMs: 60_000 });
    t.equal(minted.code, 0, minted.stderr);
    const headers = { authorization: `Bearer ${minted.stdout.trim()}` };
    t.equal((await fetch(`${gw.url}/crm/contacts`, { headers })).status, 200);
    t.equal((await fetch(`${gw.url}/down/x`, { headers })).status, 502);
    const after = (await scrape()).exposition.samples; // parseExposition throws on a duplicate series
    t.equal(after.get(seriesKey('agentgate_requests_total', { backend: 'crm', decision: 'allow', reason: 'none' })), 1);
    t.equal(after.get(seriesKey('agentgate_upstream_errors_total', { backend: 'down', kind: 'connect' })), 1);
    t.equal(after.get(seriesKey('agentgate_upstream_errors_total', { backend: 'crm', kind: 'connect' })), 0);
  });
});
