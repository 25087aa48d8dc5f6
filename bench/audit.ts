// Audit trail figures (issue 11), outside the suite because they take minutes and want a quiet
// machine: `npm run build && node dist/bench/audit.js [verify] [fsync]`.
//   verify  writes a valid chained trail of 2,000,000 lines / 1 GiB and runs the real
//           `agentgate audit verify --json` on it, reporting its time and peak RSS (bar: 256 MiB).
//   fsync   the real `agentgate serve` in front of a loopback backend, `audit.fsync: batch` against
//           `off`, interleaved rounds of N connections for D seconds: requests/s, p50, p99.
// BENCH_AUDIT_LINES, BENCH_AUDIT_ROUNDS, BENCH_AUDIT_SECONDS, BENCH_AUDIT_CONNECTIONS tune it.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const CLI = join(ROOT, 'bin', 'agentgate.js');
const env = (name: string, fallback: number): number => (process.env[name] === undefined ? fallback : Number(process.env[name]));

/** Print the child's peak RSS (KiB) on exit; read by `run`. */
const MAXRSS_HOOK = `data:text/javascript,process.on('exit',()=>process.stderr.write('maxrss-kib '+process.resourceUsage().maxRSS+'\\n'))`;

function run(args: readonly string[]): Promise<{ code: number | null; stdout: string; stderr: string; maxRssKiB: number }> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, ['--import', MAXRSS_HOOK, CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', fail);
    child.on('close', (code) => done({ code, stdout, stderr, maxRssKiB: Number(/maxrss-kib (\d+)/.exec(stderr)?.[1] ?? NaN) }));
  });
}

/** A valid chained trail of `count` proxy lines of about `lineBytes` bytes each. */
async function writeTrail(file: string, count: number, lineBytes: number): Promise<void> {
  const out = createWriteStream(file);
  let prev = '0'.repeat(64);
  let chunk = '';
  const pad = 'x'.repeat(Math.max(0, lineBytes - 330));
  for (let seq = 1; seq <= count; seq++) {
    const line = JSON.stringify({ seq, prev, time: '2026-12-03T08:00:00.000Z', kind: 'proxy', requestId: `00000000-0000-4000-8000-${String(seq).padStart(12, '0')}`, agent: 'reader-01', role: 'reader', backend: 'svc', method: 'GET', path: `/items/${seq}`, decision: 'allow', reason: 'none', status: 200, pad });
    prev = createHash('sha256').update(line).digest('hex');
    chunk += `${line}\n`;
    if (chunk.length > 4 << 20) {
      if (!out.write(chunk)) await new Promise<void>((r) => out.once('drain', () => r()));
      chunk = '';
    }
  }
  await new Promise<void>((r) => out.end(chunk, () => r()));
}

async function benchVerify(dir: string): Promise<string[]> {
  const lines = env('BENCH_AUDIT_LINES', 2_000_000);
  const file = join(dir, 'audit.jsonl');
  await writeTrail(file, lines, 537);
  const size = (await stat(file)).size;
  const started = Date.now();
  const res = await run(['audit', 'verify', file, '--json']);
  const seconds = (Date.now() - started) / 1000;
  const summary = JSON.parse(res.stdout) as { valid: boolean; lines: number };
  return [
    '## `audit verify` on one large trail',
    '',
    '| lines | file | valid | wall | peak RSS | bar |',
    '| ---: | ---: | --- | ---: | ---: | --- |',
    `| ${summary.lines.toLocaleString('en')} | ${(size / 1048576).toFixed(0)} MiB | ${String(summary.valid)} | ${seconds.toFixed(1)} s | ${(res.maxRssKiB / 1024).toFixed(1)} MiB | ≤ 256 MiB: ${res.maxRssKiB / 1024 <= 256 ? 'met' : 'MISSED'} |`,
    '',
  ];
}

interface Round {
  readonly rps: number;
  readonly p50: number;
  readonly p99: number;
}

async function serve(dir: string, fsync: 'batch' | 'off', upstream: string): Promise<{ url: string; stop(): Promise<void> }> {
  const gwDir = join(dir, `gw-${fsync}`);
  await mkdir(join(gwDir, 'policies'), { recursive: true });
  await writeFile(
    join(gwDir, 'policies', 'p.yaml'),
    ['backends:', '  svc:', `    upstream: ${upstream}`, '    scopes:', '      read: ["GET /items/:id"]', 'roles:', '  reader:', '    grants: [svc:read]', '    breaker: off', 'agents:', '  reader-01: { role: reader, owner: bench }', ''].join('\n'),
  );
  const config = join(gwDir, 'agentgate.yaml');
  await writeFile(
    config,
    [
      'listen:   { host: 127.0.0.1, port: 0 }',
      'metrics:  { host: 127.0.0.1, port: 0 }',
      `admin:    { socket: ${JSON.stringify(join(await mkdtemp(join(tmpdir(), 'ag-')), 'a.sock'))} }`,
      'policies: ./policies',
      'issuer:   { url: "http://agentgate.bench", keys: ./run/keys, alg: EdDSA, rotate: 24h }',
      'state:    { driver: memory, file: ./run/state.json }',
      `audit:    { file: ./run/audit.jsonl, fsync: ${fsync} }`,
      '',
    ].join('\n'),
  );
  const child = spawn(process.execPath, [CLI, 'serve', '--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
  const url = await new Promise<string>((done, fail) => {
    let out = '';
    const on = (d: Buffer): void => {
      out += d.toString();
      const m = /agentgate listening on (http:\/\/\S+)/.exec(out);
      if (m !== null) done(m[1] ?? '');
    };
    child.stdout.on('data', on);
    child.stderr.on('data', on);
    child.once('exit', () => fail(new Error(`gateway exited:\n${out}`)));
  });
  return {
    url: `${url}|${config}`,
    stop: () =>
      new Promise<void>((done) => {
        child.once('exit', () => done());
        child.kill('SIGTERM');
      }),
  };
}

async function measure(url: string, token: string, connections: number, seconds: number): Promise<Round> {
  const pool = new Pool(url, { connections, pipelining: 1 });
  const latencies: number[] = [];
  const until = Date.now() + seconds * 1000;
  const worker = async (): Promise<void> => {
    while (Date.now() < until) {
      const t0 = performance.now();
      const res = await pool.request({ method: 'GET', path: '/svc/items/1', headers: { authorization: `Bearer ${token}` } });
      await res.body.dump();
      latencies.push(performance.now() - t0);
    }
  };
  await Promise.all(Array.from({ length: connections }, worker));
  await pool.close();
  latencies.sort((a, b) => a - b);
  const at = (q: number): number => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? NaN;
  return { rps: latencies.length / seconds, p50: at(0.5), p99: at(0.99) };
}

async function benchFsync(dir: string): Promise<string[]> {
  const backend = createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}'));
  await new Promise<void>((r) => backend.listen(0, '127.0.0.1', () => r()));
  const upstream = `http://127.0.0.1:${(backend.address() as AddressInfo).port}`;
  const rounds = env('BENCH_AUDIT_ROUNDS', 5);
  const seconds = env('BENCH_AUDIT_SECONDS', 5);
  const connections = env('BENCH_AUDIT_CONNECTIONS', 50);
  const results: Record<'batch' | 'off', Round[]> = { batch: [], off: [] };
  const gateways = { batch: await serve(dir, 'batch', upstream), off: await serve(dir, 'off', upstream) };
  const [batchUrl, batchConfig] = gateways.batch.url.split('|');
  const [offUrl] = gateways.off.url.split('|');
  const token = (await run(['token', '--agent', 'reader-01', '--config', batchConfig ?? ''])).stdout.trim();
  const offToken = (await run(['token', '--agent', 'reader-01', '--config', join(dir, 'gw-off', 'agentgate.yaml')])).stdout.trim();
  for (let i = 0; i < rounds; i++) {
    results.batch.push(await measure(batchUrl ?? '', token, connections, seconds));
    results.off.push(await measure(offUrl ?? '', offToken, connections, seconds));
  }
  await gateways.batch.stop();
  await gateways.off.stop();
  backend.close();
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
  const row = (name: string, r: Round[]): string => `| \`${name}\` | ${median(r.map((x) => x.rps)).toFixed(0)} | ${median(r.map((x) => x.p50)).toFixed(2)} ms | ${median(r.map((x) => x.p99)).toFixed(2)} ms |`;
  const ratio = median(results.batch.map((b, i) => b.rps / (results.off[i]?.rps ?? NaN)));
  return [
    '## Cost of `audit.fsync: batch` (fdatasync per batch) against `off`',
    '',
    `${connections} connections, ${rounds} interleaved rounds of ${seconds} s, GET 200 through \`agentgate serve\` to a loopback backend; medians over the rounds.`,
    '',
    '| audit.fsync | requests/s | p50 | p99 |',
    '| --- | ---: | ---: | ---: |',
    row('off', results.off),
    row('batch', results.batch),
    '',
    `batch / off throughput: ${ratio.toFixed(2)}×`,
    '',
  ];
}

const which = process.argv.slice(2);
const all = which.length === 0;
const dir = await mkdtemp(join(tmpdir(), 'agentgate-bench-audit-'));
const out = [`Node ${process.version}; load average at start ${loadavg().map((l) => l.toFixed(2)).join(' / ')}`, ''];
try {
  if (all || which.includes('verify')) out.push(...(await benchVerify(dir)));
  if (all || which.includes('fsync')) out.push(...(await benchFsync(dir)));
} finally {
  await rm(dir, { recursive: true, force: true });
}
process.stdout.write(`${out.join('\n')}\n`);
