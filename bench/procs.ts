// Child processes of the benchmark: spawned pinned to a core with taskset (when there is one and
// at least two cores), their CPU time and memory read from /proc, and the gateway started as the
// real `agentgate serve` with the ports it prints.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (dist/bench/ -> ../..). */
export const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
export const CLI = join(ROOT, 'bin', 'agentgate.js');
/** Folder of the compiled bench scripts (this file's folder). */
export const BENCH_DIR = fileURLToPath(new URL('.', import.meta.url));

const TASKSET = ['/usr/bin/taskset', '/bin/taskset'].find((p) => existsSync(p)) ?? null;

/** Whether pinning is possible: taskset present and two cores or more. */
export function canPin(): boolean {
  return TASKSET !== null && cpus().length >= 2;
}

/**
 * Pin this process, every thread it has and every one it makes later, to `core`. The benchmark's
 * own process is a client (the token issuance and kill probes run in it): left unpinned, its JIT
 * and GC threads share the server's core and their work lands in the server's figures.
 */
export function pinSelf(core: number): boolean {
  if (!canPin() || TASKSET === null) return false;
  try {
    execFileSync(TASKSET, ['--all-tasks', '--cpu-list', '--pid', String(core), String(process.pid)], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

let clockTicks: number | null = null;
/** USER_HZ: the unit of utime/stime in /proc/PID/stat. */
function ticksPerSecond(): number {
  if (clockTicks === null) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/** User + system CPU time of `pid` in ms (includes all its threads). */
export function cpuTimeMs(pid: number): Promise<number> {
  return statCpuMs(`/proc/${pid}/stat`);
}

/**
 * User + system CPU time in ms of `pid`'s main thread alone (the event loop: node's, undici's and
 * our JavaScript, and the system calls made there); the rest of `cpuTimeMs` is V8's collector
 * threads and libuv's pool (file writes such as the audit's).
 */
export function mainThreadCpuTimeMs(pid: number): Promise<number> {
  return statCpuMs(`/proc/${pid}/task/${pid}/stat`);
}

async function statCpuMs(path: string): Promise<number> {
  const text = await readFile(path, 'utf8');
  // Field 2 (comm) may hold spaces; count from the closing parenthesis.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // After comm: state is field 3, so utime (14) and stime (15) are at 11 and 12 here.
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  return ((utime + stime) * 1000) / ticksPerSecond();
}

async function statusField(pid: number, field: string): Promise<number> {
  const text = await readFile(`/proc/${pid}/status`, 'utf8');
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text);
  return Number(m?.[1] ?? Number.NaN) * 1024;
}

export const rssBytes = (pid: number): Promise<number> => statusField(pid, 'VmRSS');
export const peakRssBytes = (pid: number): Promise<number> => statusField(pid, 'VmHWM');

/** Reset the kernel's peak-RSS mark (clear_refs "5"), so VmHWM covers what follows only. */
export async function resetPeakRss(pid: number): Promise<boolean> {
  try {
    await writeFile(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

export interface SpawnOptions {
  /** CPU core to pin to; null runs unpinned. */
  readonly core: number | null;
  /** Flags for node itself (e.g. --cpu-prof). */
  readonly nodeFlags?: readonly string[];
  readonly cwd?: string;
  readonly env?: NodeJS.ProcessEnv;
  /** Open an IPC channel (the bench's own scripts talk over it). */
  readonly ipc?: boolean;
}

/** `node [flags] script args` under `taskset -c core` when pinning is possible. */
export function spawnNode(script: string, args: readonly string[], options: SpawnOptions): ChildProcess {
  const nodeArgs = [...(options.nodeFlags ?? []), script, ...args];
  const pinned = options.core !== null && canPin();
  const command = pinned ? (TASKSET as string) : process.execPath;
  const argv = pinned ? ['-c', String(options.core), process.execPath, ...nodeArgs] : nodeArgs;
  return spawn(command, argv, {
    cwd: options.cwd ?? ROOT,
    env: { ...process.env, ...options.env },
    stdio: options.ipc === true ? ['ignore', 'pipe', 'pipe', 'ipc'] : ['ignore', 'pipe', 'pipe'],
  });
}

/** Collect a child's output (for error messages), keep its pipes drained. */
export function captureOutput(child: ChildProcess, limit = 64 * 1024): () => string {
  let out = '';
  const add = (d: string): void => {
    out += d;
    if (out.length > limit) out = out.slice(-limit);
  };
  child.stdout?.setEncoding('utf8').on('data', add);
  child.stderr?.setEncoding('utf8').on('data', add);
  return () => out;
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves when it has exited. */
export async function stopChild(child: ChildProcess, graceMs = 5000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((done) => child.once('exit', () => done()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

/** A message of a given `type` from a child's IPC channel. */
export function nextMessage<T extends { type: string }>(child: ChildProcess, type: string, timeoutMs = 30_000): Promise<T> {
  return new Promise((resolvePromise, reject) => {
    const onMessage = (message: unknown): void => {
      if (typeof message === 'object' && message !== null && (message as { type?: unknown }).type === type) {
        cleanup();
        resolvePromise(message as T);
      }
    };
    const onExit = (code: number | null): void => {
      cleanup();
      reject(new Error(`child exited (${String(code)}) while waiting for "${type}"`));
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`no "${type}" message within ${timeoutMs} ms`));
    }, timeoutMs);
    const cleanup = (): void => {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
    };
    child.on('message', onMessage);
    child.once('exit', onExit);
  });
}

export interface GatewayProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly url: string;
  readonly port: number;
  readonly metricsUrl: string;
  /** ms from spawn to the listening line. */
  readonly startMs: number;
  output(): string;
  stop(): Promise<void>;
}

const LISTENING = /agentgate listening on (http:\/\/\S+) \(metrics on (http:\/\/\S+)\/metrics\)/;

/** Parse the line `agentgate serve` prints once bound; null until it has. */
export function parseListening(output: string): { url: string; metricsUrl: string } | null {
  const m = LISTENING.exec(output);
  return m === null ? null : { url: m[1] ?? '', metricsUrl: m[2] ?? '' };
}

/** Start `agentgate serve --config FILE` pinned to `core` and wait until it has bound its ports. */
/**
 * The node flags AgentGate ships with: those of `npm start` (package.json), which the Dockerfile's
 * ENTRYPOINT repeats (test/compose.test.ts holds them equal). Every gateway the benchmark starts
 * gets them, unless `v8Defaults` asks for V8's own settings (the memory group reports both).
 */
export const SHIPPED_NODE_FLAGS: readonly string[] = (() => {
  const start = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts?: { start?: string } }).scripts?.start ?? '';
  const words = start.split(/\s+/);
  return words.slice(words.indexOf('node') + 1, words.indexOf('bin/agentgate.js')).filter((w) => w.startsWith('--'));
})();

export function startGatewayProcess(configFile: string, options: { core: number | null; nodeFlags?: readonly string[]; timeoutMs?: number; root?: string; v8Defaults?: boolean }): Promise<GatewayProcess> {
  const spawnedAt = performance.now();
  // `root`: another build of the gateway (the bench's --baseline); default this checkout.
  const root = options.root ?? ROOT;
  const nodeFlags = [...(options.v8Defaults === true ? [] : SHIPPED_NODE_FLAGS), ...(options.nodeFlags ?? [])];
  const child = spawnNode(join(root, 'bin', 'agentgate.js'), ['serve', '--config', configFile], { core: options.core, nodeFlags, cwd: root });
  const output = captureOutput(child);
  return new Promise((resolvePromise, reject) => {
    let settled = false;
    const timer = setTimeout(() => {
      if (settled) return;
      settled = true;
      child.kill('SIGKILL');
      reject(new Error(`agentgate did not start within ${options.timeoutMs ?? 60_000} ms:\n${output()}`));
    }, options.timeoutMs ?? 60_000);
    const check = (): void => {
      const bound = parseListening(output());
      if (bound === null || settled) return;
      settled = true;
      clearTimeout(timer);
      resolvePromise({
        child,
        pid: child.pid ?? 0,
        url: bound.url,
        port: Number(new URL(bound.url).port),
        metricsUrl: bound.metricsUrl,
        startMs: performance.now() - spawnedAt,
        output,
        stop: () => stopChild(child, 10_000),
      });
    };
    child.stdout?.on('data', check);
    child.stderr?.on('data', check);
    child.once('exit', (code) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(new Error(`agentgate exited with ${String(code)} before listening:\n${output()}`));
    });
  });
}
