// The `workers` group: the same allowed GET 200 B through `workers: 1` and `workers: 2`, in
// interleaved rounds, with the load generator on its own core (taskset) and the gateway's
// processes (primary and workers) on every other core. CPU per request is read from /proc for
// each process: the primary (connection handoff, audit chaining, state changes) and each worker.
// On a 2-core machine both workers share one core, so this measures what the cluster costs per
// request, not how it scales; the README states the expected scaling on more cores and why.
import { execFile } from 'node:child_process';
import { appendFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { promisify } from 'node:util';
import { AGENTS, BACKEND, PATHS, writeBenchFiles } from './config.js';
import { canPin, cpuTimeMs } from './procs.js';
import { LOAD_CORE, startGatewayRig, type GatewayRig, type LoadWorker, type MeasureSettings } from './rig.js';
import { median } from './stats.js';

type Progress = (line: string) => void;

export interface WorkersRound {
  readonly rps: number;
  readonly p50: number;
  readonly p99: number;
  /** CPU µs per response, all the gateway's processes together. */
  readonly cpuUsPerRequest: number;
  readonly primaryCpuUsPerRequest: number;
  /** One per worker (with `workers: 1` the one process is the primary: empty). */
  readonly workerCpuUsPerRequest: readonly number[];
  readonly unexpected: number;
}

export interface WorkersResult {
  readonly cores: number;
  /** The cores the gateway's processes ran on (null: unpinned). */
  readonly gatewayCores: string | null;
  readonly contestants: ReadonlyArray<{ readonly workers: number; readonly rounds: readonly WorkersRound[] }>;
}

const run = promisify(execFile);

/** The cores the gateway may use: every core but the load generator's (all of them when unpinned). */
function gatewayCoreList(): string | null {
  if (!canPin()) return null;
  return cpus()
    .map((_, i) => i)
    .filter((i) => i !== LOAD_CORE)
    .join(',');
}

/** Pids of a cluster's workers, from their `worker listening` log lines. */
function workerPids(output: string): number[] {
  const pids: number[] = [];
  for (const line of output.split('\n')) {
    if (!line.includes('"worker listening"')) continue;
    try {
      pids.push((JSON.parse(line) as { pid: number }).pid);
    } catch {
      // a line cut by the capture limit
    }
  }
  return pids;
}

async function startCluster(workDir: string, backendUrl: string, workers: number): Promise<{ rig: GatewayRig; workerPids: number[] }> {
  const files = await writeBenchFiles(`${workDir}/workers-${workers}`, { socket: `${workDir}/w${workers}.sock`, issuer: 'http://agentgate.bench' }, { upstream: backendUrl });
  await appendFile(files.configFile, `workers: ${workers}\n`);
  const rig = await startGatewayRig(files.configFile, { core: null });
  const pids = workers === 1 ? [] : workerPids(rig.gateway.output());
  if (pids.length !== (workers === 1 ? 0 : workers)) throw new Error(`expected ${workers} worker pids in the gateway's log, found ${pids.length}`);
  const cores = gatewayCoreList();
  // -a: every thread; the workers were forked before this, so each is pinned on its own.
  if (cores !== null) for (const pid of [rig.gateway.pid, ...pids]) await run('taskset', ['-a', '-p', '-c', cores, String(pid)]);
  return { rig, workerPids: pids };
}

export async function runWorkers(options: { workDir: string; backendUrl: string; load: LoadWorker; rounds: number; settings: MeasureSettings; progress: Progress }): Promise<WorkersResult> {
  const { load, settings, progress } = options;
  const counts = [1, 2];
  const clusters = new Map<number, { rig: GatewayRig; workerPids: number[]; token: string }>();
  try {
    for (const n of counts) {
      const cluster = await startCluster(options.workDir, options.backendUrl, n);
      clusters.set(n, { ...cluster, token: (await cluster.rig.mint(AGENTS.caller)).token });
      progress(`workers: ${n} serving on ${cluster.rig.gateway.url} (primary ${cluster.rig.gateway.pid}${n > 1 ? `, workers ${cluster.workerPids.join(' ')}` : ''})`);
    }
    const rounds = new Map<number, WorkersRound[]>(counts.map((n) => [n, []]));
    for (let round = 0; round < options.rounds; round++) {
      // Interleaved, the order flipped every round: drift on a shared machine hits both alike.
      for (const n of round % 2 === 0 ? counts : [...counts].reverse()) {
        const c = clusters.get(n);
        if (c === undefined) continue;
        const request = { url: `${c.rig.gateway.url}/${BACKEND}${PATHS.small}`, method: 'GET' as const, headers: { authorization: `Bearer ${c.token}` }, connections: settings.connections, expectStatus: 200 };
        await load.run({ ...request, durationSeconds: settings.warmupSeconds });
        const pids = [c.rig.gateway.pid, ...c.workerPids];
        const before = await Promise.all(pids.map((pid) => cpuTimeMs(pid)));
        const result = await load.run({ ...request, durationSeconds: settings.durationSeconds });
        const after = await Promise.all(pids.map((pid) => cpuTimeMs(pid)));
        const responses = Math.max(1, result.responses);
        const perRequest = pids.map((_, i) => (((after[i] ?? 0) - (before[i] ?? 0)) * 1000) / responses);
        const figures: WorkersRound = {
          rps: result.rps,
          p50: result.latency.p50,
          p99: result.latency.p99,
          cpuUsPerRequest: perRequest.reduce((a, b) => a + b, 0),
          primaryCpuUsPerRequest: perRequest[0] ?? 0,
          workerCpuUsPerRequest: perRequest.slice(1),
          unexpected: result.responses - result.expected + result.errors,
        };
        rounds.get(n)?.push(figures);
        progress(`workers ${n} round ${round + 1}: ${Math.round(figures.rps)} req/s, p99 ${figures.p99.toFixed(2)} ms, ${figures.cpuUsPerRequest.toFixed(0)} µs CPU/request (primary ${figures.primaryCpuUsPerRequest.toFixed(0)}${figures.workerCpuUsPerRequest.length > 0 ? `, workers ${figures.workerCpuUsPerRequest.map((w) => w.toFixed(0)).join(' + ')}` : ''})`);
      }
    }
    return { cores: cpus().length, gatewayCores: gatewayCoreList(), contestants: counts.map((n) => ({ workers: n, rounds: rounds.get(n) ?? [] })) };
  } finally {
    for (const c of clusters.values()) await c.rig.stop();
  }
}

/** The markdown section of the results. */
export function workersSection(result: WorkersResult): string {
  const med = (rounds: readonly WorkersRound[], f: (r: WorkersRound) => number): number => median(rounds.map(f));
  const rows = result.contestants.map(({ workers, rounds }) => {
    const perWorker = rounds[0]?.workerCpuUsPerRequest.map((_, i) => med(rounds, (r) => r.workerCpuUsPerRequest[i] ?? 0).toFixed(0)).join(' + ') ?? '';
    return `| ${workers} | ${Math.round(med(rounds, (r) => r.rps))} | ${med(rounds, (r) => r.p50).toFixed(2)} | ${med(rounds, (r) => r.p99).toFixed(2)} | ${med(rounds, (r) => r.cpuUsPerRequest).toFixed(0)} | ${med(rounds, (r) => r.primaryCpuUsPerRequest).toFixed(0)} | ${perWorker === '' ? '–' : perWorker} | ${rounds.reduce((a, r) => a + r.unexpected, 0)} |`;
  });
  const one = result.contestants.find((c) => c.workers === 1);
  const two = result.contestants.find((c) => c.workers === 2);
  const ratio = one !== undefined && two !== undefined ? median(two.rounds.map((r) => r.rps)) / Math.max(1, median(one.rounds.map((r) => r.rps))) : null;
  return [
    '| workers | req/s | p50 ms | p99 ms | CPU µs / request (all) | primary | per worker | unexpected |',
    '|---|---|---|---|---|---|---|---|',
    ...rows,
    '',
    `GET 200 B, every check on; medians over ${one?.rounds.length ?? 0} interleaved rounds. Gateway processes on core(s) ${result.gatewayCores ?? 'unpinned'} of ${result.cores}, the load generator on core ${LOAD_CORE}. 2 workers / 1 worker throughput: ${ratio === null ? 'n/a' : `${ratio.toFixed(2)}×`}.${result.cores <= 2 ? ' With two cores both workers share the one gateway core: this run shows what the cluster costs per request (IPC for audit lines and state changes, the primary\'s connection handoff), not how it scales.' : ''}`,
  ].join('\n');
}
