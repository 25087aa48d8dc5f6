// Per-request CPU of hot-path pieces, this build against a baseline build, in one process,
// alternating builds round by round (CPU time from process.cpuUsage, so a busy machine inflates
// both sides alike): an audit line (append until written; fsync off, then the default fsync
// batch, whose wall time per batch is reported too), a request's metrics and a verified-token
// cache hit (CPU, and bytes allocated per hit); then, apart from the
// builds, one file append through libuv's thread pool against the same append on this thread.
//   bench/baseline.sh e68c703 /tmp/agentgate-before && npm run build
//   node dist/bench/micro.js /tmp/agentgate-before [rounds]
import { randomUUID } from 'node:crypto';
import { constants, writeSync } from 'node:fs';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Session } from 'node:inspector/promises';
import { latencyPercentiles, median } from './stats.js';


type AuditModule = typeof import('../gateway/telemetry/audit-log.js');
type ProxyRecord = import('../gateway/telemetry/audit-log.js').ProxyRecord;
type MetricsModule = typeof import('../gateway/telemetry/metrics.js');

const baseline = process.argv[2];
if (baseline === undefined) {
  process.stderr.write('usage: node dist/bench/micro.js BASELINE_DIR [rounds]\n');
  process.exit(2);
}
const rounds = Number(process.argv[3] ?? 5);
const here = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const builds = { baseline: resolve(baseline), 'this build': here };


/** A proxied request's line, as outcome.ts writes it. */
function record(): ProxyRecord {
  return { time: new Date().toISOString(), kind: 'proxy', requestId: randomUUID(), phase: undefined, agent: 'bench-agent', role: 'caller', onBehalfOf: null, jti: randomUUID(), backend: 'bench', method: 'GET', path: '/small', decision: 'allow', reason: 'none', reasonDetail: null, route: 'GET /small', shadow: undefined, approvalId: undefined, rpc: undefined, status: 200, upstreamStatus: 200, durationMs: 1.234, remote: '127.0.0.1' };
}

async function auditUs(root: string): Promise<number> {
  const { openAuditLog } = (await import(join(root, 'dist/gateway/telemetry/audit-log.js'))) as AuditModule;
  const dir = await mkdtemp(join(tmpdir(), 'agm-'));
  const log = await openAuditLog({ file: join(dir, 'audit.jsonl'), fsync: 'off' });
  const lines = 50_000;
  const records = Array.from({ length: lines }, record);
  const start = process.cpuUsage();
  // Batches of 50 appends, as 50 connections would make them.
  for (let i = 0; i < lines; i += 50) await Promise.all(records.slice(i, i + 50).map((r) => log.append(r)));
  const used = process.cpuUsage(start);
  await log.close();
  await rm(dir, { recursive: true, force: true });
  return (used.user + used.system) / lines;
}

/**
 * The default durability (`fsync: batch`), in batches of 10 lines (about what 50 connections at
 * a few thousand requests a second make between two syncs): CPU per line, the thread pool's
 * included, and the wall time per batch.
 */
async function durableAudit(root: string): Promise<{ cpu: number; wallPerBatch: number }> {
  const { openAuditLog } = (await import(join(root, 'dist/gateway/telemetry/audit-log.js'))) as AuditModule;
  const dir = await mkdtemp(join(here, '.micro-'));
  const log = await openAuditLog({ file: join(dir, 'audit.jsonl'), fsync: 'batch' });
  const lines = 5_000;
  const records = Array.from({ length: lines }, record);
  const started = performance.now();
  const start = process.cpuUsage();
  for (let i = 0; i < lines; i += 10) await Promise.all(records.slice(i, i + 10).map((r) => log.append(r)));
  const used = process.cpuUsage(start);
  const wall = performance.now() - started;
  await log.close();
  await rm(dir, { recursive: true, force: true });
  return { cpu: (used.user + used.system) / lines, wallPerBatch: (wall * 1000) / (lines / 10) };
}

async function metricsUs(root: string): Promise<number> {
  const { createMetrics } = (await import(join(root, 'dist/gateway/telemetry/metrics.js'))) as MetricsModule;
  const metrics = createMetrics({ defaults: false });
  const calls = 300_000;
  for (let i = 0; i < 1000; i++) metrics.observeRequest('bench', 'allow', 'none', 0.001, 0.0001);
  const start = process.cpuUsage();
  for (let i = 0; i < calls; i++) metrics.observeRequest('bench', 'allow', 'none', 0.001 + (i % 7) * 0.001, 0.00008 + (i % 5) * 0.0001);
  const used = process.cpuUsage(start);
  if (!(await metrics.exposition()).includes('agentgate_overhead_seconds_count')) throw new Error('no overhead histogram in the exposition');
  return (used.user + used.system) / calls;
}


/**
 * One 300-byte append to a file, `mode` 'pool' through libuv's thread pool (a FileHandle write,
 * as the audit writer does it) or 'sync' on the calling thread (writeSync): CPU per write,
 * the thread pool's and the wake-ups' included. The gap is the cost of not blocking the event loop
 * on the disk. `dsync` opens the file O_DSYNC (the default audit durability).
 */
async function appendUs(mode: 'pool' | 'sync', dsync: boolean): Promise<number> {
  const dir = await mkdtemp(join(here, '.micro-'));
  const handle = await open(join(dir, 'f'), constants.O_APPEND | constants.O_CREAT | constants.O_WRONLY | (dsync ? constants.O_DSYNC : 0), 0o600);
  const data = Buffer.alloc(300, 0x61);
  const writes = dsync ? 1000 : 5000;
  const start = process.cpuUsage();
  for (let i = 0; i < writes; i++) {
    if (mode === 'pool') await handle.write(data, 0, data.length, null);
    else writeSync(handle.fd, data, 0, data.length, null);
  }
  const used = process.cpuUsage(start);
  await handle.close();
  await rm(dir, { recursive: true, force: true });
  return (used.user + used.system) / writes;
}

/**
 * A verified-token cache hit through the authenticate stage (the request's Authorization header
 * to its principal), with 1,000 tokens revoked so the revocation check has a table to look in:
 * bytes allocated on the JS heap per hit (V8's sampling heap profiler) and CPU per hit.
 */
async function cacheHit(root: string): Promise<{ bytes: number; cpu: number }> {
  const mod = async <T>(path: string): Promise<T> => (await import(join(root, 'dist/gateway', path))) as T;
  const { systemClock: clock } = await mod<typeof import('../gateway/clock.js')>('clock.js');
  const { loadPolicySnapshot } = await mod<typeof import('../gateway/policy/index.js')>('policy/index.js');
  const { openKeyStore } = await mod<typeof import('../gateway/tokens/keys.js')>('tokens/keys.js');
  const { createTokenVerifier } = await mod<typeof import('../gateway/tokens/verify.js')>('tokens/verify.js');
  const { openMemoryStore } = await mod<typeof import('../gateway/state/memory.js')>('state/memory.js');
  const { viewOf } = await mod<typeof import('../gateway/state/view.js')>('state/view.js');
  const { createAuthenticate } = await mod<typeof import('../gateway/stages/authenticate.js')>('stages/authenticate.js');
  const { createContext, RequestAbort } = await mod<typeof import('../gateway/context.js')>('context.js');
  const { issueAgentToken, planAgentToken } = await mod<typeof import('../gateway/broker/issue.js')>('broker/issue.js');
  const { createLogger } = await mod<typeof import('../gateway/telemetry/log.js')>('telemetry/log.js');
  const dir = await mkdtemp(join(tmpdir(), 'agm-'));
  const policy = await loadPolicySnapshot(join(here, 'policies'), { version: 1, clock, defaultTimeoutMs: 30_000 });
  const keys = await openKeyStore({ dir: join(dir, 'keys'), alg: 'EdDSA', clock });
  const issuer = 'http://agentgate.micro';
  const store = await openMemoryStore({ clock, file: null });
  for (let i = 0; i < 1000; i++) await store.revoke(`revoked-${i}`, Math.floor(clock.now() / 1000) + 3600);
  const stage = createAuthenticate({ verifier: createTokenVerifier({ keys, issuer, clock }), state: viewOf(store) });
  const { token } = await issueAgentToken(keys, issuer, planAgentToken(policy, 'support-agent-01'), clock);
  const authorization = `Bearer ${token}`;
  const ctx = createContext({
    requestId: 'micro',
    clock,
    policy,
    request: { method: 'GET', url: '/crm/contacts', headers: { authorization }, rawHeaders: ['host', 'x', 'Authorization', authorization], remoteAddress: '127.0.0.1', remotePort: 1, encrypted: false, body: null },
    signal: new RequestAbort(),
    log: createLogger({ level: 'silent' }),
  });
  await stage.run(ctx);
  if (ctx.principal?.agent !== 'support-agent-01') throw new Error('the token did not authenticate');
  // Named `hit`: the heap profile is read under this function.
  const hit = function hit(): void {
    ctx.principal = null;
    if (stage.run(ctx) !== undefined) throw new Error('not a cache hit');
  };
  for (let i = 0; i < 20_000; i++) hit();
  const start = process.cpuUsage();
  const calls = 200_000;
  for (let i = 0; i < calls; i++) hit();
  const used = process.cpuUsage(start);
  const bytes = await heapPerCall(hit);
  await store.close();
  await rm(dir, { recursive: true, force: true });
  return { bytes, cpu: (used.user + used.system) / calls };
}

/**
 * Bytes of JS heap allocated per call of `fn`, from V8's sampling heap profiler over 100,000
 * calls (a sample every 32 bytes on average; objects a collection has since freed counted too).
 */
async function heapPerCall(fn: () => void): Promise<number> {
  const session = new Session();
  session.connect();
  try {
    await session.post('HeapProfiler.startSampling', { samplingInterval: 32, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
    const calls = 100_000;
    for (let i = 0; i < calls; i++) fn();
    const { profile } = await session.post('HeapProfiler.stopSampling');
    let bytes = 0;
    const stack = [profile.head];
    for (let node = stack.pop(); node !== undefined; node = stack.pop()) {
      // Only what `fn` allocated: the profiler's own messages are made outside it.
      if (node.callFrame.functionName === 'hit') bytes += sizeUnder(node);
      else stack.push(...node.children);
    }
    return bytes / calls;
  } finally {
    session.disconnect();
  }
}

function sizeUnder(node: { selfSize: number; children: Array<{ selfSize: number; children: unknown[] }> }): number {
  let total = node.selfSize;
  for (const child of node.children) total += sizeUnder(child as typeof node);
  return total;
}

/** What is measured per build: each returns its figures by name, in µs (bytes where the name ends `(bytes)`). */
const measures: ReadonlyArray<(root: string) => Promise<Record<string, number>>> = [
  async (root) => {
    const { bytes, cpu } = await cacheHit(root);
    return { 'verified-token cache hit (authenticate stage), CPU': cpu, 'verified-token cache hit, JS heap allocated per hit (bytes)': bytes };
  },
  async (root) => ({ 'audit line (append until written, fsync off), CPU': await auditUs(root) }),
  async (root) => {
    const durable = await durableAudit(root);
    return { 'audit line (fsync batch, 10 lines a batch; on the project\'s disk), CPU': durable.cpu, 'audit batch of 10 (fsync batch), wall': durable.wallPerBatch };
  },
  async (root) => ({ 'request metrics (observeRequest), CPU': await metricsUs(root) }),
];
for (const measure of measures) {
  const figures = new Map<string, { baseline: number[]; 'this build': number[] }>();
  for (let r = 0; r < rounds; r++) {
    for (const [name, root] of Object.entries(builds) as Array<['baseline' | 'this build', string]>) {
      for (const [what, value] of Object.entries(await measure(root))) {
        const row = figures.get(what) ?? { baseline: [], 'this build': [] };
        row[name].push(value);
        figures.set(what, row);
      }
    }
  }
  for (const [what, row] of figures) {
    const unit = what.endsWith('(bytes)') ? 'B' : 'µs';
    process.stdout.write(`${what}: ${median(row.baseline).toFixed(2)} ${unit} -> ${median(row['this build']).toFixed(2)} ${unit} (median of ${rounds} alternating rounds)\n`);
  }
}

// Not a before/after figure: what one append costs through libuv's thread pool against the same
// append on the calling thread, in this process, alternating round by round.
for (const dsync of [false, true]) {
  const pool: number[] = [];
  const sync: number[] = [];
  for (let r = 0; r < rounds; r++) {
    pool.push(await appendUs('pool', dsync));
    sync.push(await appendUs('sync', dsync));
  }
  process.stdout.write(`one 300-byte ${dsync ? 'O_DSYNC ' : ''}append, CPU: thread pool ${median(pool).toFixed(2)} µs, synchronous ${median(sync).toFixed(2)} µs (median of ${rounds} alternating rounds)\n`);
}

// The floor under every figure that waits for a write-ahead audit line (p99 added, issuance, the
// kill probe): how long one O_DSYNC append takes on this disk, one at a time, as the audit file
// makes it with `fsync: batch` (a FileHandle write through the thread pool).
{
  const dir = await mkdtemp(join(here, '.micro-'));
  const handle = await open(join(dir, 'f'), constants.O_APPEND | constants.O_CREAT | constants.O_WRONLY | constants.O_DSYNC, 0o600);
  const data = Buffer.alloc(500, 0x61);
  const samples: number[] = [];
  for (let i = 0; i < 2000; i++) {
    const started = performance.now();
    await handle.write(data, 0, data.length, null);
    samples.push(performance.now() - started);
  }
  await handle.close();
  await rm(dir, { recursive: true, force: true });
  const { p50, p90, p99, max } = latencyPercentiles(samples);
  process.stdout.write(`one 500-byte O_DSYNC append, wall (2,000 in a row): p50 ${p50.toFixed(3)} ms, p90 ${p90.toFixed(3)} ms, p99 ${p99.toFixed(3)} ms, max ${max.toFixed(3)} ms\n`);
}
