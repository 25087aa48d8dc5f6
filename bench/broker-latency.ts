// Quick measurement of token issuance through the broker: POST /oauth/token (client_secret_basic,
// client_credentials) against an in-process gateway on loopback, one request at a time.
// Run: npm run build && node dist/bench/broker-latency.js [count]
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { loadSettings } from '../gateway/config.js';
import { createGateway } from '../gateway/server.js';
import { createLogger } from '../gateway/telemetry/log.js';

const count = Number(process.argv[2] ?? 2000);
const root = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const dir = await mkdtemp(join(tmpdir(), 'ag-bench-'));
await writeFile(join(dir, 'agentgate.yaml'), [
  'listen: { host: 127.0.0.1, port: 0 }',
  'metrics: { host: 127.0.0.1, port: 0 }',
  `admin: { socket: ${JSON.stringify(join(dir, 'admin.sock'))} }`,
  `policies: ${JSON.stringify(join(root, 'policies'))}`,
  'issuer: { url: "http://127.0.0.1", keys: ./keys }',
  'state: { driver: memory, file: ./state.json }',
  'audit: { file: ./audit.jsonl }',
  '',
].join('\n'));
const settings = await loadSettings({ configFile: join(dir, 'agentgate.yaml'), env: {} });
const gateway = await createGateway(settings, { log: createLogger({ level: 'silent' }), defaultMetrics: false, admin: false });
const { agent } = await gateway.start();
const issued = await gateway.credentials.issue('data-agent-01');
const auth = `Basic ${Buffer.from(`data-agent-01:${issued.clientSecret}`).toString('base64')}`;
const url = `http://127.0.0.1:${agent.port}/oauth/token`;
const once = async (): Promise<number> => {
  const start = process.hrtime.bigint();
  const res = await request(url, { method: 'POST', headers: { authorization: auth, 'content-type': 'application/x-www-form-urlencoded' }, body: 'grant_type=client_credentials&scope=bi:reports.read' });
  await res.body.dump();
  if (res.statusCode !== 200) throw new Error(`status ${res.statusCode}`);
  return Number(process.hrtime.bigint() - start) / 1e6;
};
for (let i = 0; i < 200; i++) await once();
const samples: number[] = [];
for (let i = 0; i < count; i++) samples.push(await once());
samples.sort((a, b) => a - b);
const at = (q: number): string => (samples[Math.min(samples.length - 1, Math.floor(q * samples.length))] ?? 0).toFixed(3);
console.log(JSON.stringify({ requests: count, medianMs: at(0.5), p99Ms: at(0.99), node: process.version, alg: settings.issuer.alg }));
await gateway.close(1000);
