// Test harness for the contract that is a process: the real `agentgate` CLI (compiled by
// `npm test`'s pretest build), spawned with its own config, talked to over loopback.
import { spawn, type ChildProcess, type ChildProcessByStdio, type SpawnOptionsWithStdioTuple } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Readable } from 'node:stream';
import { ROOT } from './root.js';

export const CLI = join(ROOT, 'bin', 'agentgate.js');

const CHILD_COVERAGE = pathToFileURL(join(ROOT, 'test', 'helpers', 'child-coverage.mjs')).href;

/**
 * Spawn `node bin/agentgate.js ARGS` (stdin ignored, stdout and stderr piped) with the test's
 * environment plus `env`; a variable set to undefined there is removed.
 *
 * Under tap, @tapjs/processinfo sits in NODE_OPTIONS and rewrites the environment of every child
 * process to load itself. Our children get child-coverage.mjs instead, which records the same V8
 * coverage (so the CLI and the admin API count in the coverage gate) without processinfo's module
 * loader hooks, about 0.6 s of CPU per short CLI process on Node 20 (or nothing, when coverage is
 * off). The swap goes through env(1), which execs node with the NODE_OPTIONS given here after
 * processinfo has rewritten env(1)'s own: same pid, same signals, same exit code.
 */
export function spawnAgentgate(args: readonly string[], options: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): ChildProcessByStdio<null, Readable, Readable> {
  const env: NodeJS.ProcessEnv = { ...process.env, ...options.env };
  for (const [name, value] of Object.entries(env)) if (value === undefined) delete env[name];
  const spawnOptions: SpawnOptionsWithStdioTuple<'ignore', 'pipe', 'pipe'> = { cwd: options.cwd ?? ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] };
  const nodeOptions = env.NODE_OPTIONS ?? '';
  if (!nodeOptions.includes('@tapjs/processinfo')) return spawn(process.execPath, [CLI, ...args], spawnOptions);
  const kept = nodeOptions.replace(/"?--(?:import|loader|experimental-loader|require)[= ]\S*@tapjs\/processinfo[^\s"]*"?/g, '').trim();
  const covering = env._TAPJS_PROCESSINFO_COVERAGE_ !== '0';
  if (covering) {
    const root = env._TAPJS_PROCESSINFO_CWD_ ?? ROOT;
    env.AGENTGATE_TEST_COVERAGE_ROOT = root;
    env.AGENTGATE_TEST_COVERAGE_DIR = join(root, '.tap', 'coverage');
  }
  const childOptions = covering ? `${kept} --import=${CHILD_COVERAGE}`.trim() : kept;
  return spawn('env', [`NODE_OPTIONS=${childOptions}`, process.execPath, CLI, ...args], spawnOptions);
}

export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Run one CLI command to completion (bounded by `timeoutMs`). */
export function runCli(args: readonly string[], options: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawnAgentgate(args, options);
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

export interface ServedGateway {
  readonly child: ChildProcess;
  readonly url: string;
  readonly metricsUrl: string;
  output(): string;
  /** SIGTERM and wait for exit; resolves the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Start `agentgate serve` (or `demo`) and wait for its "listening" line. */
export function serveCli(
  t: { teardown(fn: () => unknown): void },
  args: readonly string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {},
): Promise<ServedGateway> {
  return new Promise((resolve, reject) => {
    const child = spawnAgentgate(args, options);
    let out = '';
    let settled = false;
    const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
    t.teardown(async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      // A graceful stop first: a process that exits writes its V8 coverage (tap's coverage then
      // covers the CLI and the admin API it served); SIGKILL only if it has not gone in 5 s.
      child.kill('SIGTERM');
      const late = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(late);
    });
    const timer = setTimeout(() => {
      if (!settled) {
        settled = true;
        child.kill('SIGKILL');
        reject(new Error(`gateway did not start in time:\n${out}`));
      }
    }, options.timeoutMs ?? 60_000);
    const onData = (d: string): void => {
      out += d;
      const m = /agentgate listening on (https?:\/\/\S+) \(metrics on (http:\/\/\S+)\/metrics\)/.exec(out);
      if (m !== null && !settled) {
        settled = true;
        clearTimeout(timer);
        resolve({
          child,
          url: m[1] ?? '',
          metricsUrl: m[2] ?? '',
          output: () => out,
          async stop(signal: NodeJS.Signals = 'SIGTERM') {
            child.kill(signal);
            return exited;
          },
        });
      }
    };
    child.stdout.setEncoding('utf8').on('data', onData);
    child.stderr.setEncoding('utf8').on('data', onData);
    child.once('exit', (code) => {
      if (!settled) {
        settled = true;
        clearTimeout(timer);
        reject(new Error(`gateway exited with ${String(code)} before listening:\n${out}`));
      }
    });
  });
}

/** Short-lived socket folders under the temp folder, removed when the test process exits. */
const socketDirs = new Set<string>();
process.once('exit', () => {
  for (const d of socketDirs) rmSync(d, { recursive: true, force: true });
});

/**
 * Write a config whose every port is 0 and whose state lives in `dir` (or where `extra.state`,
 * a YAML flow mapping such as `{ driver: redis, url: "redis://..." }`, says).
 */
export async function writeConfig(dir: string, policiesDir: string, extra: { limits?: string; state?: string } = {}): Promise<string> {
  await mkdir(dir, { recursive: true });
  // Unix socket paths are limited to 107 bytes; test folders are deeper than that.
  const socketDir = mkdtempSync(join(tmpdir(), 'ag-'));
  socketDirs.add(socketDir);
  const socket = join(socketDir, 'admin.sock');
  const file = join(dir, 'agentgate.yaml');
  await writeFile(
    file,
    [
      'listen:   { host: 127.0.0.1, port: 0 }',
      'metrics:  { host: 127.0.0.1, port: 0 }',
      `admin:    { socket: ${JSON.stringify(socket)} }`,
      `policies: ${JSON.stringify(policiesDir)}`,
      'issuer:   { url: "http://agentgate.test", keys: ./run/keys, alg: EdDSA, rotate: 24h }',
      'trust:    []',
      `state:    ${extra.state ?? '{ driver: memory, file: ./run/state.json }'}`,
      'audit:    { file: ./run/audit.jsonl }',
      `limits:   ${extra.limits ?? '{ maxBodyBytes: 1048576, upstreamTimeout: 5s }'}`,
      '',
    ].join('\n'),
  );
  return file;
}
