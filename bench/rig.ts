// The processes a run measures: the backend and the proxies on core 0, the load generator on
// core 1, and the measurement of one contestant (warm-up, then a fixed duration with the CPU time
// the process under test spent, read from /proc).
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { issueAgentToken, planAgentToken } from '../gateway/broker/issue.js';
import { systemClock } from '../gateway/clock.js';
import { loadPolicy } from '../gateway/server.js';
import { loadSettings } from '../gateway/config.js';
import { openKeyStore, type KeyStore } from '../gateway/tokens/keys.js';
import type { MintedToken } from '../gateway/tokens/mint.js';
import type { LoadRequest, LoadResult } from './load.js';
import { BENCH_DIR, captureOutput, cpuTimeMs, mainThreadCpuTimeMs, nextMessage, spawnNode, startGatewayProcess, stopChild, type GatewayProcess } from './procs.js';

/** Core of the processes under test (backend, bare proxy, gateway) and of the load generator. */
export const SERVER_CORE = 0;
export const LOAD_CORE = 1;

export interface Backend {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly url: string;
  count(): Promise<{ requests: number; byPath: Record<string, number> }>;
  stop(): Promise<void>;
}

export async function startBackend(): Promise<Backend> {
  const child = spawnNode(join(BENCH_DIR, 'backend.js'), [], { core: SERVER_CORE, ipc: true });
  const output = captureOutput(child);
  const ready = await nextMessage<{ type: 'ready'; port: number }>(child, 'ready').catch((error: unknown) => {
    throw new Error(`backend did not start: ${String(error)}\n${output()}`);
  });
  return {
    child,
    pid: child.pid ?? 0,
    url: `http://127.0.0.1:${ready.port}`,
    async count() {
      const reply = nextMessage<{ type: 'count'; requests: number; byPath: Record<string, number> }>(child, 'count');
      child.send({ type: 'count' });
      return reply;
    },
    stop: () => stopChild(child),
  };
}

export interface BareProxy {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly url: string;
  stop(): Promise<void>;
}

/** The bare proxy; with `auditFile`, the floor that keeps AgentGate's write-ahead audit (bare-proxy.ts). */
export async function startBareProxy(upstream: string, auditFile?: string): Promise<BareProxy> {
  const child = spawnNode(join(BENCH_DIR, 'bare-proxy.js'), auditFile === undefined ? [upstream] : [upstream, auditFile], { core: SERVER_CORE, ipc: true });
  const output = captureOutput(child);
  const ready = await nextMessage<{ type: 'ready'; port: number }>(child, 'ready').catch((error: unknown) => {
    throw new Error(`bare proxy did not start: ${String(error)}\n${output()}`);
  });
  return { child, pid: child.pid ?? 0, url: `http://127.0.0.1:${ready.port}`, stop: () => stopChild(child) };
}

export interface LoadWorker {
  run(request: Omit<LoadRequest, 'type' | 'id'>): Promise<LoadResult>;
  stop(): Promise<void>;
}

export async function startLoadWorker(): Promise<LoadWorker> {
  const child = spawnNode(join(BENCH_DIR, 'load.js'), [], { core: LOAD_CORE, ipc: true });
  const output = captureOutput(child);
  await nextMessage(child, 'ready').catch((error: unknown) => {
    throw new Error(`load generator did not start: ${String(error)}\n${output()}`);
  });
  let next = 0;
  return {
    async run(request) {
      const id = ++next;
      const reply = nextMessage<LoadResult & { error?: string }>(child, 'result', (request.durationSeconds + 60) * 1000);
      child.send({ ...request, type: 'run', id });
      const result = await reply;
      if (result.error !== undefined) throw new Error(`load generator: ${result.error}`);
      return result;
    },
    stop: () => stopChild(child),
  };
}

/** One thing to measure: a URL served by a process whose CPU time is charged to it. */
export interface Contestant {
  readonly name: string;
  /** The process under test (the backend itself for `direct`). */
  readonly pid: number;
  readonly url: string;
  readonly method: 'GET' | 'POST';
  readonly headers: Record<string, string>;
  readonly body?: string;
  readonly expectStatus: number;
}

export interface RoundFigures {
  readonly rps: number;
  /** ms */
  readonly p50: number;
  readonly p99: number;
  /** CPU µs per response of the process under test. */
  readonly cpuUsPerRequest: number;
  /** Of which its main thread (the event loop); the rest is V8's collector threads and libuv's pool. */
  readonly mainCpuUsPerRequest: number;
  /** CPU µs per response of the backend (0 work for refusals, by design). */
  readonly backendCpuUsPerRequest: number;
  readonly responses: number;
  /** Responses with a status other than the expected one, plus socket errors. */
  readonly unexpected: number;
}

export interface MeasureSettings {
  readonly durationSeconds: number;
  readonly warmupSeconds: number;
  readonly connections: number;
  /** Requests a second on a fixed schedule (open loop, load.ts); absent: closed loop. */
  readonly pace?: number;
}

/** Warm up, then measure one contestant for the fixed duration. */
export async function measure(load: LoadWorker, backendPid: number, contestant: Contestant, settings: MeasureSettings): Promise<RoundFigures> {
  const request = {
    url: contestant.url,
    method: contestant.method,
    headers: contestant.headers,
    ...(contestant.body === undefined ? {} : { body: contestant.body }),
    connections: settings.connections,
    expectStatus: contestant.expectStatus,
    ...(settings.pace === undefined ? {} : { pace: settings.pace }),
  };
  await load.run({ ...request, durationSeconds: settings.warmupSeconds });
  const cpu0 = await cpuTimeMs(contestant.pid);
  const main0 = await mainThreadCpuTimeMs(contestant.pid);
  const backend0 = await cpuTimeMs(backendPid);
  const result = await load.run({ ...request, durationSeconds: settings.durationSeconds });
  const cpu1 = await cpuTimeMs(contestant.pid);
  const main1 = await mainThreadCpuTimeMs(contestant.pid);
  const backend1 = await cpuTimeMs(backendPid);
  // A contestant that answered nothing has no latency (NaN, null once through IPC): say which,
  // rather than fail later on it.
  if (result.responses === 0 || !Number.isFinite(result.latency.p50) || !Number.isFinite(result.latency.p99)) {
    throw new Error(`${contestant.name} answered no request in ${settings.durationSeconds} s (${result.errors} errors): is it stuck?`);
  }
  const responses = Math.max(1, result.responses);
  return {
    rps: result.rps,
    p50: result.latency.p50,
    p99: result.latency.p99,
    cpuUsPerRequest: ((cpu1 - cpu0) * 1000) / responses,
    mainCpuUsPerRequest: ((main1 - main0) * 1000) / responses,
    backendCpuUsPerRequest: contestant.pid === backendPid ? ((cpu1 - cpu0) * 1000) / responses : ((backend1 - backend0) * 1000) / responses,
    responses: result.responses,
    unexpected: result.responses - result.expected + result.errors,
  };
}

export interface GatewayRig {
  readonly gateway: GatewayProcess;
  readonly keys: KeyStore;
  readonly issuer: string;
  readonly socket: string;
  readonly configFile: string;
  /** Mint a token for a policy agent with the gateway's own keys, as `agentgate token` does. */
  mint(agent: string): Promise<MintedToken>;
  stop(): Promise<void>;
}

/** Open (create) the signing keys first, so tokens can be minted before the gateway starts. */
export async function prepareKeys(configFile: string): Promise<{ keys: KeyStore; issuer: string }> {
  const settings = await loadSettings({ configFile, env: {} });
  const keys = await openKeyStore({ dir: settings.issuer.keys, alg: settings.issuer.alg, clock: systemClock });
  return { keys, issuer: settings.issuer.url };
}

export async function startGatewayRig(configFile: string, options: { core: number | null; nodeFlags?: readonly string[]; root?: string; v8Defaults?: boolean }): Promise<GatewayRig> {
  const settings = await loadSettings({ configFile, env: {} });
  const { keys, issuer } = await prepareKeys(configFile);
  const policy = await loadPolicy(settings, { clock: systemClock, version: 1 });
  const gateway = await startGatewayProcess(configFile, { core: options.core, ...(options.nodeFlags === undefined ? {} : { nodeFlags: options.nodeFlags }), ...(options.root === undefined ? {} : { root: options.root }), ...(options.v8Defaults === undefined ? {} : { v8Defaults: options.v8Defaults }) });
  return {
    gateway,
    keys,
    issuer,
    socket: settings.admin.socket,
    configFile,
    mint: (agent) => issueAgentToken(keys, issuer, planAgentToken(policy, agent), systemClock),
    stop: () => gateway.stop(),
  };
}

/** A token with a valid shape and a known kid whose signature does not verify (a forgery). */
export function forge(token: string): string {
  const [header, payload, signature] = token.split('.');
  if (header === undefined || payload === undefined || signature === undefined) throw new Error('not a compact JWS');
  // Change a character in the middle of the signature: still base64url, no longer the signature.
  const at = signature.length >> 1;
  const flipped = signature[at] === 'A' ? 'B' : 'A';
  return `${header}.${payload}.${signature.slice(0, at)}${flipped}${signature.slice(at + 1)}`;
}
