// The benchmark's options: defaults sized to finish `npm run bench` in under 10 minutes, `--quick`
// for a smoke run of a minute or two, and flags or BENCH_* variables for each knob. Pure.
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';

export const GROUPS = ['forwarding', 'refusal', 'masking', 'tokens', 'kill', 'memory', 'workers'] as const;
export type GroupName = (typeof GROUPS)[number];

export interface BenchOptions {
  readonly quick: boolean;
  readonly groups: ReadonlySet<GroupName>;
  /** Interleaved rounds per contestant; medians are taken over them. */
  readonly rounds: number;
  /** Measured seconds per contestant per round. */
  readonly durationSeconds: number;
  /** Unmeasured seconds of load before each measurement. */
  readonly warmupSeconds: number;
  readonly connections: number;
  /** Tokens minted per issuance method. */
  readonly tokens: number;
  readonly kills: number;
  readonly memoryAgents: number;
  readonly memoryRevocations: number;
  /** Bytes streamed up and down in the memory group. */
  readonly streamBytes: number;
  /** Markdown output file, or null to print only. */
  readonly out: string | null;
  /** Folder for a CPU profile of the gateway process (`node --cpu-prof`), or null. */
  readonly cpuProf: string | null;
  readonly keep: boolean;
  /**
   * A second AgentGate build (a folder holding `bin/agentgate.js` and its built `dist/`) measured
   * beside this one in the forwarding group: CPU per request before -> after from the same run.
   */
  readonly baseline: string | null;
}

const FULL = { rounds: 5, durationSeconds: 5, warmupSeconds: 1, tokens: 5000, kills: 1000, streamMiB: 1024 };
const QUICK = { rounds: 2, durationSeconds: 2, warmupSeconds: 0.5, tokens: 1000, kills: 200, streamMiB: 256 };

export const USAGE = `usage: npm run bench -- [options]

  --quick               a smoke run (${QUICK.rounds} rounds of ${QUICK.durationSeconds}s, ${QUICK.kills} kills, ${QUICK.streamMiB} MiB streamed); BENCH_QUICK=1
  --groups LIST         comma-separated: ${GROUPS.join(',')} (default all); BENCH_GROUPS
  --rounds N            interleaved rounds (default ${FULL.rounds}); BENCH_ROUNDS
  --duration S          measured seconds per contestant and round (default ${FULL.durationSeconds}); BENCH_DURATION
  --warmup S            unmeasured seconds before each measurement (default ${FULL.warmupSeconds}); BENCH_WARMUP
  --connections N       concurrent connections (default 50); BENCH_CONNECTIONS
  --tokens N            tokens minted per issuance method (default ${FULL.tokens})
  --kills N             kill/revive cycles (default ${FULL.kills})
  --stream-mib N        MiB streamed up and down in the memory group (default ${FULL.streamMiB})
  --agents N            agents holding breaker state in the memory group (default 10000)
  --revocations N       live revocations in the memory group (default 100000)
  --out FILE            markdown results (default bench/RESULTS.md, none with --quick; --no-write prints only)
  --cpu-prof DIR        write a CPU profile of the gateway process into DIR
  --keep                keep the temporary folder (configs, audit, state)
  --baseline DIR        also measure the AgentGate build in DIR (bin/agentgate.js + dist/, e.g. made by
                        bench/baseline.sh COMMIT DIR) in the forwarding group: before -> after, same run`;

export class UsageError extends Error {}

function positiveNumber(name: string, text: string | undefined, fallback: number, integer: boolean): number {
  if (text === undefined || text === '') return fallback;
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0 || (integer && !Number.isInteger(value))) {
    throw new UsageError(`${name}: "${text}" is not a positive ${integer ? 'whole number' : 'number'}`);
  }
  return value;
}

/** Options from argv (after the script) and env; throws UsageError with a one-line reason. */
export function parseOptions(argv: readonly string[], env: NodeJS.ProcessEnv, repoRoot: string): BenchOptions {
  const { values } = parseArgs({
    args: [...argv],
    strict: true,
    options: {
      quick: { type: 'boolean', default: false },
      groups: { type: 'string' },
      rounds: { type: 'string' },
      duration: { type: 'string' },
      warmup: { type: 'string' },
      connections: { type: 'string' },
      tokens: { type: 'string' },
      kills: { type: 'string' },
      'stream-mib': { type: 'string' },
      agents: { type: 'string' },
      revocations: { type: 'string' },
      out: { type: 'string' },
      'no-write': { type: 'boolean', default: false },
      'cpu-prof': { type: 'string' },
      keep: { type: 'boolean', default: false },
      baseline: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) throw new UsageError(USAGE);
  const quick = values.quick || env.BENCH_QUICK === '1' || env.BENCH_QUICK === 'true';
  const base = quick ? QUICK : FULL;
  const groupList = values.groups ?? env.BENCH_GROUPS;
  let groups: Set<GroupName> = new Set(GROUPS);
  if (groupList !== undefined && groupList !== '') {
    groups = new Set();
    for (const name of groupList.split(',').map((g) => g.trim()).filter((g) => g !== '')) {
      if (!(GROUPS as readonly string[]).includes(name)) throw new UsageError(`--groups: unknown group "${name}" (groups: ${GROUPS.join(', ')})`);
      groups.add(name as GroupName);
    }
  }
  // A quick run prints only, unless told where to write: it must not replace the committed results.
  const out = values['no-write'] ? null : (values.out ?? (quick ? null : `${repoRoot}/bench/RESULTS.md`));
  return {
    quick,
    groups,
    rounds: positiveNumber('--rounds', values.rounds ?? env.BENCH_ROUNDS, base.rounds, true),
    durationSeconds: positiveNumber('--duration', values.duration ?? env.BENCH_DURATION, base.durationSeconds, false),
    warmupSeconds: positiveNumber('--warmup', values.warmup ?? env.BENCH_WARMUP, base.warmupSeconds, false),
    connections: positiveNumber('--connections', values.connections ?? env.BENCH_CONNECTIONS, 50, true),
    tokens: positiveNumber('--tokens', values.tokens, base.tokens, true),
    kills: positiveNumber('--kills', values.kills, base.kills, true),
    memoryAgents: positiveNumber('--agents', values.agents, 10_000, true),
    memoryRevocations: positiveNumber('--revocations', values.revocations, 100_000, true),
    streamBytes: positiveNumber('--stream-mib', values['stream-mib'], base.streamMiB, true) * 1024 * 1024,
    out,
    cpuProf: values['cpu-prof'] ?? null,
    keep: values.keep,
    baseline: values.baseline === undefined || values.baseline === '' ? null : resolve(values.baseline),
  };
}
