// `npm run bench`: starts the loopback backend, the bare proxy and AgentGate (the real
// `agentgate serve` process) pinned to core 0, autocannon pinned to core 1, runs the groups of
// issue 7 and writes bench/RESULTS.md. `npm run bench -- --help` lists the options.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { systemClock } from '../gateway/clock.js';
import { loadSettings } from '../gateway/config.js';
import { loadPolicy } from '../gateway/server.js';
import { AGENTS, writeBenchFiles } from './config.js';
import { runKills } from './kill.js';
import { runMemory } from './memory.js';
import { parseOptions, UsageError, type BenchOptions } from './options.js';
import { canPin, pinSelf, ROOT } from './procs.js';
import { renderResults, type Results } from './report.js';
import { forge, LOAD_CORE, SERVER_CORE, startBackend, startBareProxy, startGatewayRig, startLoadWorker, type Backend, type BareProxy, type GatewayRig, type LoadWorker } from './rig.js';
import { runForwarding, runMasking, runPaced, runRefusal } from './throughput.js';
import { issuanceMethods, measureIssuance, measureStartUp } from './tokens.js';
import { runWorkers } from './workers.js';
import { exportJWK, generateKeyPair } from 'jose';
import { Pool } from 'undici';
import { adminCall } from '../gateway/admin/client.js';

/** The token client's key pair (private_key_jwt); its public half is pinned in the bench policy. */
const clientKey = await (async () => {
  const pair = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
  const jwk = await exportJWK(pair.publicKey);
  return { privateKey: pair.privateKey, publicJwk: { kty: jwk.kty, crv: jwk.crv, x: jwk.x } };
})();

const progress = (line: string): void => {
  process.stderr.write(`${line}\n`);
};

async function main(argv: readonly string[]): Promise<number> {
  let options: BenchOptions;
  try {
    options = parseOptions(argv, process.env, ROOT);
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`${error.message}\n`);
      return argv.includes('--help') || argv.includes('-h') ? 0 : 2;
    }
    throw error;
  }
  if (!canPin()) progress('warning: taskset or a second core is missing; processes run unpinned');
  // This process is a client too (issuance, kill probe): it runs beside the load generator.
  else if (!pinSelf(LOAD_CORE)) progress(`warning: could not pin the benchmark itself to core ${LOAD_CORE}`);
  const started = performance.now();
  const machine = {
    node: process.version,
    cpu: cpus()[0]?.model.trim() ?? 'unknown CPU',
    cores: cpus().length,
    pinned: canPin(),
    loadAverage: loadavg(),
    date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
  };
  // Short: the admin socket path lives in here and Unix sockets allow 107 bytes.
  const workDir = await mkdtemp(join(tmpdir(), 'agb-'));
  let backend: Backend | null = null;
  let bare: BareProxy | null = null;
  let audited: BareProxy | null = null;
  let rig: GatewayRig | null = null;
  let baselineRig: GatewayRig | null = null;
  let load: LoadWorker | null = null;
  const results: { -readonly [K in keyof Results]?: Results[K] } = {};
  try {
    backend = await startBackend();
    load = await startLoadWorker();
    const settings = { durationSeconds: options.durationSeconds, warmupSeconds: options.warmupSeconds, connections: options.connections };
    const needsGateway = ['forwarding', 'refusal', 'masking', 'tokens', 'kill'].some((g) => options.groups.has(g as never));
    if (needsGateway) {
      const files = await writeBenchFiles(join(workDir, 'gateway'), { socket: join(workDir, 'admin.sock'), issuer: 'http://agentgate.bench' }, { upstream: backend.url, clientJwk: clientKey.publicJwk });
      const nodeFlags = options.cpuProf === null ? [] : ['--cpu-prof', `--cpu-prof-dir=${options.cpuProf}`];
      if (options.cpuProf !== null) await mkdir(options.cpuProf, { recursive: true });
      rig = await startGatewayRig(files.configFile, { core: SERVER_CORE, nodeFlags });
      progress(`agentgate serving on ${rig.gateway.url} (pid ${rig.gateway.pid}), backend ${backend.url} (pid ${backend.pid})`);
    }
    if (rig !== null && (options.groups.has('forwarding') || options.groups.has('refusal') || options.groups.has('masking'))) {
      const caller = (await rig.mint(AGENTS.caller)).token;
      const endpoints = {
        backend: { pid: backend.pid, url: backend.url },
        bare: { pid: 0, url: '' },
        audited: null,
        gateway: { pid: rig.gateway.pid, url: rig.gateway.url },
        tokens: { caller, flooder: (await rig.mint(AGENTS.flooder)).token, forged: forge(caller), limited: (await rig.mint(AGENTS.limited)).token, masked: (await rig.mint(AGENTS.masked)).token },
        baseline: null,
      };
      if (options.groups.has('forwarding')) {
        bare = await startBareProxy(backend.url);
        audited = await startBareProxy(backend.url, join(workDir, 'floor', 'audit.jsonl'));
        if (options.baseline !== null) {
          // The other build gets its own folder (keys, state, audit, admin socket), pinned alike.
          const baseFiles = await writeBenchFiles(join(workDir, 'baseline'), { socket: join(workDir, 'base.sock'), issuer: 'http://agentgate.bench' }, { upstream: backend.url });
          baselineRig = await startGatewayRig(baseFiles.configFile, { core: SERVER_CORE, root: options.baseline });
          progress(`baseline agentgate (${options.baseline}) serving on ${baselineRig.gateway.url} (pid ${baselineRig.gateway.pid})`);
        }
        const baseline = baselineRig === null ? null : { pid: baselineRig.gateway.pid, url: baselineRig.gateway.url, caller: (await baselineRig.mint(AGENTS.caller)).token };
        const forwardingEndpoints = { ...endpoints, bare: { pid: bare.pid, url: bare.url }, audited: { pid: audited.pid, url: audited.url }, baseline };
        results.forwarding = await runForwarding(load, forwardingEndpoints, options.rounds, settings, progress);
        results.paced = await runPaced(load, forwardingEndpoints, results.forwarding, options.rounds, settings, progress);
        await bare.stop();
        bare = null;
        await audited.stop();
        audited = null;
        await baselineRig?.stop();
        baselineRig = null;
      }
      // Three rounds at most: two contestants of one gateway, and the whole run stays under ~8 minutes.
      if (options.groups.has('masking')) results.masking = await runMasking(load, endpoints, Math.min(options.rounds, 3), settings, progress);
      if (options.groups.has('refusal')) {
        const b = backend;
        results.refusal = await runRefusal(load, endpoints, options.rounds, settings, async () => (await b.count()).requests, progress);
      }
    }
    if (rig !== null && options.groups.has('tokens')) {
      progress(`token issuance: ${options.tokens} tokens per method`);
      const settingsFile = await loadSettings({ configFile: rig.configFile, env: {} });
      const policy = await loadPolicy(settingsFile, { clock: systemClock, version: 1 });
      // A client secret for the token client, issued through the running gateway's admin socket.
      const secret = await adminCall(rig.socket, 'POST', `/agents/${AGENTS.client}/credentials`, { operator: 'bench' });
      const pool = new Pool(rig.gateway.url, { connections: 1 });
      try {
        const http = { pool, metricsUrl: rig.gateway.metricsUrl, client: AGENTS.client, privateKey: clientKey.privateKey, clientSecret: String(secret.body.clientSecret) };
        const methods = issuanceMethods({ keys: rig.keys, issuer: rig.issuer, policy, agent: AGENTS.caller, http });
        const issued = [];
        const startUp = await measureStartUp(methods, options.tokens);
        if (startUp !== null) issued.push(startUp);
        for (const method of methods) issued.push(await measureIssuance(method, options.tokens));
        results.tokens = issued;
      } finally {
        await pool.close();
      }
    }
    if (rig !== null && options.groups.has('kill')) {
      progress(`kill latency: ${options.kills} kills`);
      results.kill = await runKills({ gatewayUrl: rig.gateway.url, socket: rig.socket, agent: AGENTS.killed, token: (await rig.mint(AGENTS.killed)).token, kills: options.kills });
    }
    if (rig !== null) {
      await rig.stop();
      rig = null;
      if (options.cpuProf !== null) progress(`gateway CPU profile written to ${options.cpuProf}`);
    }
    if (options.groups.has('workers')) {
      progress('workers: 1 vs 2 worker processes, GET 200 B');
      results.workers = await runWorkers({ workDir, backendUrl: backend.url, load, rounds: options.rounds, settings: { durationSeconds: options.durationSeconds, warmupSeconds: options.warmupSeconds, connections: options.connections }, progress });
    }
    if (options.groups.has('memory')) {
      results.memory = await runMemory({ workDir, backendUrl: backend.url, load, agents: options.memoryAgents, revocations: options.memoryRevocations, streamBytes: options.streamBytes, progress });
    }
  } finally {
    await rig?.stop();
    await baselineRig?.stop();
    await bare?.stop();
    await audited?.stop();
    await load?.stop();
    await backend?.stop();
    if (options.keep) progress(`kept ${workDir}`);
    else await rm(workDir, { recursive: true, force: true });
  }
  const markdown = renderResults({
    ...results,
    machine,
    settings: {
      rounds: options.rounds,
      durationSeconds: options.durationSeconds,
      warmupSeconds: options.warmupSeconds,
      connections: options.connections,
      quick: options.quick,
      baseline: options.baseline,
      command: ['npm run bench', ...(argv.length > 0 ? ['--', ...argv] : [])].join(' '),
    },
    elapsedSeconds: (performance.now() - started) / 1000,
  });
  process.stdout.write(`\n${markdown}`);
  if (options.out !== null) {
    await mkdir(dirname(options.out), { recursive: true });
    await writeFile(options.out, markdown);
    progress(`written to ${options.out}`);
  }
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exitCode = 1;
  },
);
