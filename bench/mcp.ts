// MCP tool-call overhead: an allowed `tools/call` through the gateway vs straight to the server, in
// one run. The upstream is the demo's SDK McpServer (demo/mcp.ts, JSON answers) on loopback; the
// gateway is built in this process from a temporary config (the shipped tickets-mcp backend), so the
// figures include the client's own cost on the same cores: compare the two rows, not absolutes.
// `npm run build && node dist/bench/mcp.js [--requests N] [--concurrency C]`
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import { startDemoMcp } from '../demo/mcp.js';
import { issueAgentToken, planAgentToken } from '../gateway/broker/issue.js';
import { loadSettings } from '../gateway/config.js';
import { createGateway } from '../gateway/server.js';
import { createLogger } from '../gateway/telemetry/log.js';

const { values } = parseArgs({ options: { requests: { type: 'string', default: '2000' }, concurrency: { type: 'string', default: '8' }, rounds: { type: 'string', default: '3' } } });
const requests = Number(values.requests);
const concurrency = Number(values.concurrency);
const rounds = Number(values.rounds);

const dir = await mkdtemp(join(tmpdir(), 'agb-mcp-'));
const mcp = await startDemoMcp({ jsonResponse: true });
// The shipped tickets-mcp backend; a role without the shipped defaults' rate limit (the bench
// measures forwarding, not the limiter).
await mkdir(join(dir, 'policies'));
await writeFile(join(dir, 'policies', 'policy.yaml'), `backends:
  tickets-mcp:
    kind: mcp
    upstream: http://127.0.0.1:9
    scopes:
      tickets.read: { tools: [search_tickets, get_ticket] }
roles:
  bench:
    grants: [tickets-mcp:tickets.read]
agents:
  bench-agent: { role: bench, owner: bench }
`);
await writeFile(join(dir, 'agentgate.yaml'), [
  'listen:   { host: 127.0.0.1, port: 0 }',
  'metrics:  { host: 127.0.0.1, port: 0 }',
  `admin:    { socket: ${JSON.stringify(join(dir, 'a.sock'))} }`,
  'policies: ./policies',
  'issuer:   { url: http://127.0.0.1:8080, keys: ./keys, alg: EdDSA, rotate: 24h }',
  'state:    { driver: memory, file: ./state.json }',
  'audit:    { file: ./audit.jsonl }',
  '',
].join('\n'));
const settings = await loadSettings({ configFile: join(dir, 'agentgate.yaml'), env: {} });
const gateway = await createGateway(settings, { log: createLogger({ level: 'silent' }), upstreams: { 'tickets-mcp': mcp.url }, defaultMetrics: false, admin: false });
const ports = await gateway.start();
const plan = planAgentToken(gateway.policy(), 'bench-agent');
const token = (await issueAgentToken(gateway.keys, settings.issuer.url, plan, { now: () => Date.now() })).token;

interface Target {
  readonly name: string;
  readonly origin: string;
  readonly path: string;
  readonly headers: Record<string, string>;
}

async function session(target: Omit<Target, 'headers'>, auth: Record<string, string>): Promise<Target> {
  const pool = new Pool(target.origin);
  const base = { ...auth, 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
  const init = await pool.request({ method: 'POST', path: target.path, headers: base, body: JSON.stringify({ jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'bench', version: '1' } } }) });
  await init.body.text();
  const sid = String(init.headers['mcp-session-id']);
  const headers = { ...base, 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' };
  const done = await pool.request({ method: 'POST', path: target.path, headers, body: '{"jsonrpc":"2.0","method":"notifications/initialized"}' });
  await done.body.text();
  await pool.close();
  return { ...target, headers };
}

async function run(target: Target): Promise<{ rps: number; p50: number; p99: number }> {
  const pool = new Pool(target.origin, { connections: concurrency, pipelining: 1 });
  const latencies: number[] = [];
  let next = 0;
  const started = performance.now();
  async function worker(): Promise<void> {
    while (next < requests) {
      const id = ++next;
      const t0 = performance.now();
      const res = await pool.request({ method: 'POST', path: target.path, headers: target.headers, body: `{"jsonrpc":"2.0","id":${id},"method":"tools/call","params":{"name":"get_ticket","arguments":{"id":"1"}}}` });
      const text = await res.body.text();
      if (res.statusCode !== 200 || !text.includes('Refund for duplicate charge')) throw new Error(`${target.name}: ${res.statusCode} ${text.slice(0, 200)}`);
      latencies.push(performance.now() - t0);
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker));
  const seconds = (performance.now() - started) / 1000;
  await pool.close();
  latencies.sort((a, b) => a - b);
  const at = (q: number): number => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0;
  return { rps: requests / seconds, p50: at(0.5), p99: at(0.99) };
}

try {
  const direct = await session({ name: 'direct', origin: mcp.url, path: '/mcp' }, {});
  const via = await session({ name: 'gateway', origin: `http://127.0.0.1:${ports.agent.port}`, path: '/tickets-mcp/mcp' }, { authorization: `Bearer ${token}` });
  // Warm both paths, then alternate rounds so drift on a shared machine hits both alike.
  await run(direct);
  await run(via);
  const rows: Record<string, Array<{ rps: number; p50: number; p99: number }>> = { direct: [], gateway: [] };
  for (let r = 0; r < rounds; r++) {
    rows.direct?.push(await run(direct));
    rows.gateway?.push(await run(via));
  }
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
  console.log(`MCP tools/call get_ticket (JSON answers), ${requests} calls x ${rounds} rounds, concurrency ${concurrency}; node ${process.version}, ${cpus().length}x ${cpus()[0]?.model.trim() ?? ''}, load ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  console.log('path      calls/s   p50 ms   p99 ms   (median of rounds)');
  for (const [name, list] of Object.entries(rows)) {
    console.log(`${name.padEnd(9)} ${median(list.map((x) => x.rps)).toFixed(0).padStart(7)}  ${median(list.map((x) => x.p50)).toFixed(2).padStart(7)}  ${median(list.map((x) => x.p99)).toFixed(2).padStart(7)}`);
  }
} finally {
  await gateway.close(1000);
  await mcp.close();
  await rm(dir, { recursive: true, force: true });
}
