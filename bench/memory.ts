// Group 5: memory. (a) RSS of a gateway process whose policy holds 10,000 more agents, each with
// breaker state, and whose state file holds 100,000 live revocations, against the same gateway
// with the bench policy alone; the loaded state is proven in force (a revoked token refused, an
// open breaker refused) before RSS is read. (b) RSS growth (peak, from VmHWM) while 1 GiB streams
// up and then down through that gateway. (c) The loaded gateway's RSS once more, started without
// the shipped node flags (V8's default young generation), for comparison.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { request } from 'undici';
import { AGENTS, BACKEND, PATHS, extraAgentId, writeBenchFiles, type StateOptions } from './config.js';
import { peakRssBytes, resetPeakRss, rssBytes } from './procs.js';
import { prepareKeys, startGatewayRig, type GatewayRig, type LoadWorker, SERVER_CORE } from './rig.js';
import { issueAgentToken, planAgentToken } from '../gateway/broker/issue.js';
import { systemClock } from '../gateway/clock.js';
import { loadPolicy } from '../gateway/server.js';
import { loadSettings } from '../gateway/config.js';

export interface MemoryResult {
  readonly agents: number;
  readonly revocations: number;
  /** RSS of the gateway with the bench policy only, after the same warm-up. */
  readonly baselineRss: number;
  readonly loadedRss: number;
  /** The same loaded gateway started without the shipped node flags (V8's default young generation). */
  readonly loadedRssV8Default: number;
  /** ms from spawn to listening, loaded. */
  readonly loadedStartMs: number;
  readonly stateChecks: string;
  readonly streamBytes: number;
  readonly upload: { readonly growth: number; readonly seconds: number };
  readonly download: { readonly growth: number; readonly seconds: number };
}

const CHUNK = Buffer.alloc(64 * 1024, 0x61);
const WARM_BYTES = 16 * 1024 * 1024;

function* chunks(total: number): Generator<Buffer> {
  for (let sent = 0; sent < total; sent += CHUNK.length) yield total - sent >= CHUNK.length ? CHUNK : CHUNK.subarray(0, total - sent);
}

async function settle(rig: GatewayRig, load: LoadWorker, token: string): Promise<number> {
  // The same short load on both gateways, so JIT, pools and buffers are in their steady state.
  await load.run({ url: `${rig.gateway.url}/${BACKEND}${PATHS.small}`, method: 'GET', headers: { authorization: `Bearer ${token}` }, connections: 10, durationSeconds: 1, expectStatus: 200 });
  // Steady state: V8 hands the pages of start-up garbage (parsing a 10,000-agent policy and a
  // 100,000-revocation state file) back to the system only when its memory reducer runs, several
  // seconds after the last allocation burst. Read RSS once a second until it holds still (within
  // 1 % twice in a row), for at most 20 s.
  let previous = await rssBytes(rig.gateway.pid);
  let still = 0;
  for (let i = 0; i < 20 && still < 2; i++) {
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const now = await rssBytes(rig.gateway.pid);
    still = Math.abs(now - previous) <= previous * 0.01 ? still + 1 : 0;
    previous = now;
  }
  return previous;
}

async function status(url: string, token: string): Promise<number> {
  const res = await request(url, { headers: { authorization: `Bearer ${token}` } });
  await res.body.dump();
  return res.statusCode;
}

async function upload(url: string, token: string, bytes: number): Promise<void> {
  const res = await request(url, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream', 'content-length': String(bytes) },
    body: Readable.from(chunks(bytes)),
  });
  const body = (await res.body.json()) as { received?: number };
  if (res.statusCode !== 200 || body.received !== bytes) throw new Error(`upload answered ${res.statusCode}, backend received ${String(body.received)} of ${bytes} bytes`);
}

async function download(url: string, token: string, bytes: number): Promise<void> {
  const res = await request(`${url}?bytes=${bytes}`, { headers: { authorization: `Bearer ${token}` } });
  let received = 0;
  for await (const chunk of res.body) received += (chunk as Buffer).length;
  if (res.statusCode !== 200 || received !== bytes) throw new Error(`download answered ${res.statusCode} with ${received} of ${bytes} bytes`);
}

export async function runMemory(options: { workDir: string; backendUrl: string; load: LoadWorker; agents: number; revocations: number; streamBytes: number; progress: (line: string) => void }): Promise<MemoryResult> {
  const { load, progress } = options;
  const socketDir = options.workDir;
  const config = { socket: join(socketDir, 'base.sock'), issuer: 'http://agentgate.bench', maxBodyBytes: '4GiB' };

  progress('memory: baseline gateway (bench policy only)');
  const baseDir = join(options.workDir, 'memory-baseline');
  await mkdir(baseDir, { recursive: true });
  const baseFiles = await writeBenchFiles(baseDir, config, { upstream: options.backendUrl });
  const base = await startGatewayRig(baseFiles.configFile, { core: SERVER_CORE });
  let baselineRss: number;
  try {
    baselineRss = await settle(base, load, (await base.mint(AGENTS.caller)).token);
  } finally {
    await base.stop();
  }

  progress(`memory: gateway with ${options.agents} agents holding breaker state and ${options.revocations} revocations`);
  const dir = join(options.workDir, 'memory-loaded');
  await mkdir(dir, { recursive: true });
  const files = await writeBenchFiles(dir, { ...config, socket: join(socketDir, 'loaded.sock') }, { upstream: options.backendUrl, extraAgents: options.agents });
  // Tokens minted before the start, one of them revoked in the preloaded state file.
  const { keys, issuer } = await prepareKeys(files.configFile);
  const policy = await loadPolicy(await loadSettings({ configFile: files.configFile, env: {} }), { clock: systemClock, version: 1 });
  const mint = (agent: string) => issueAgentToken(keys, issuer, planAgentToken(policy, agent), systemClock);
  const revoked = await mint(AGENTS.caller);
  const state: StateOptions = { agents: options.agents, revocations: options.revocations, now: Date.now(), include: [revoked.jti] };
  await writeBenchFiles(dir, { ...config, socket: join(socketDir, 'loaded.sock') }, { upstream: options.backendUrl, extraAgents: options.agents }, state);
  const rig = await startGatewayRig(files.configFile, { core: SERVER_CORE });
  let measured: Omit<MemoryResult, 'loadedRssV8Default'>;
  const loadedStartMs = rig.gateway.startMs;
  try {
    const allowed = (await rig.mint(AGENTS.caller)).token;
    // agent-00010 has an open breaker in the generated state (every tenth agent).
    const suspended = options.agents >= 10 ? (await rig.mint(extraAgentId(10))).token : null;
    const smallUrl = `${rig.gateway.url}/${BACKEND}${PATHS.small}`;
    const checks = [
      ['fresh token', await status(smallUrl, allowed), 200],
      ['revoked token (from the state file)', await status(smallUrl, revoked.token), 401],
      ...(suspended === null ? [] : [['agent with an open breaker', await status(smallUrl, suspended), 403]]),
    ] as Array<[string, number, number]>;
    const failed = checks.filter(([, got, want]) => got !== want);
    if (failed.length > 0) throw new Error(`loaded state not in force: ${failed.map(([name, got, want]) => `${name} answered ${got}, expected ${want}`).join('; ')}`);
    const stateChecks = checks.map(([name, got]) => `${name} → ${got}`).join(', ');
    const loadedRss = await settle(rig, load, allowed);

    progress(`memory: streaming ${Math.round(options.streamBytes / 1024 / 1024)} MiB up, then down`);
    const upUrl = `${rig.gateway.url}/${BACKEND}${PATHS.upload}`;
    const downUrl = `${rig.gateway.url}/${BACKEND}${PATHS.download}`;
    await upload(upUrl, allowed, WARM_BYTES);
    await download(downUrl, allowed, WARM_BYTES);
    const pid = rig.gateway.pid;
    const before = await rssBytes(pid);
    await resetPeakRss(pid);
    let t0 = performance.now();
    await upload(upUrl, allowed, options.streamBytes);
    const upSeconds = (performance.now() - t0) / 1000;
    const upPeak = await peakRssBytes(pid);
    const beforeDown = await rssBytes(pid);
    await resetPeakRss(pid);
    t0 = performance.now();
    await download(downUrl, allowed, options.streamBytes);
    const downSeconds = (performance.now() - t0) / 1000;
    const downPeak = await peakRssBytes(pid);
    measured = {
      agents: options.agents,
      revocations: options.revocations,
      baselineRss,
      loadedRss,
      loadedStartMs,
      stateChecks,
      streamBytes: options.streamBytes,
      upload: { growth: upPeak - before, seconds: upSeconds },
      download: { growth: downPeak - Math.min(before, beforeDown), seconds: downSeconds },
    };
  } finally {
    await rig.stop();
  }
  progress('memory: the loaded gateway again, with V8\'s default young generation');
  const plain = await startGatewayRig(files.configFile, { core: SERVER_CORE, v8Defaults: true });
  try {
    return { ...measured, loadedRssV8Default: await settle(plain, load, (await plain.mint(AGENTS.caller)).token) };
  } finally {
    await plain.stop();
  }
}
