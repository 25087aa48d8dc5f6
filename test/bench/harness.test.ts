// The benchmark's pure parts: statistics, tables, options, the bar, and the generated config,
// policy and state file, which the real `agentgate check` and the real memory store must accept.
// Nothing here is timed: the figures themselves are the benchmark's business, not the tests'.
import t from 'tap';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { createServer as createHttpServer } from 'node:http';
import { join } from 'node:path';
import { AGENTS, configYaml, extraAgentId, policyYaml, stateJson, writeBenchFiles } from '../../bench/config.js';
import { parseOptions, UsageError, GROUPS } from '../../bench/options.js';
import { barLines, renderResults, type Results } from '../../bench/report.js';
import { measure, startLoadWorker, type RoundFigures } from '../../bench/rig.js';
import { cpuTimeMs, mainThreadCpuTimeMs } from '../../bench/procs.js';
import { Worker } from 'node:worker_threads';
import { formatMs, formatRatio, latencyPercentiles, markdownTable, median, quantileSorted, SampleBuffer, summarize } from '../../bench/stats.js';
import { pairedRatio, roundOrder, toResult } from '../../bench/throughput.js';
import { serverFigures } from '../../bench/tokens.js';
import { openMemoryStore } from '../../gateway/state/memory.js';
import { RECORD_BYTES } from '../../gateway/state/revocations.js';
import { runCli } from '../helpers/process.js';

t.test('median and quantiles', async (t) => {
  const cases = [
    { name: 'odd count', values: [5, 1, 3], median: 3 },
    { name: 'even count', values: [4, 1, 3, 2], median: 2.5 },
    { name: 'numeric, not string, order', values: [10, 9, 100], median: 10 },
    { name: 'single', values: [7], median: 7 },
  ];
  for (const c of cases) t.equal(median(c.values), c.median, c.name);
  t.ok(Number.isNaN(median([])), 'empty: NaN');
  const sorted = Float64Array.from({ length: 100 }, (_, i) => i + 1);
  t.equal(quantileSorted(sorted, 0.5), 50);
  t.equal(quantileSorted(sorted, 0.99), 99);
  t.equal(quantileSorted(sorted, 1), 100);
  t.equal(quantileSorted(sorted, 0), 1);
  t.throws(() => quantileSorted(sorted, 1.5), RangeError);
});

t.test('sample buffer grows and percentiles are exact', async (t) => {
  const buffer = new SampleBuffer(16);
  for (let i = 1000; i >= 1; i--) buffer.push(i / 1000);
  t.equal(buffer.length, 1000);
  const p = latencyPercentiles(buffer);
  t.same(p, { p50: 0.5, p90: 0.9, p99: 0.99, max: 1, count: 1000 });
});

t.test('summary: median, range and spread over rounds', async (t) => {
  t.same(summarize([100, 90, 110]), { median: 100, min: 90, max: 110, rounds: 3, spread: 0.2 });
  t.same(summarize([Number.NaN, 4]), { median: 4, min: 4, max: 4, rounds: 1, spread: 0 }, 'non-finite rounds are left out');
  t.equal(summarize([]).rounds, 0);
});

t.test('paired ratios and round order', async (t) => {
  const fig = (rps: number): RoundFigures => ({ rps, p50: 1, p99: 2, cpuUsPerRequest: 10, mainCpuUsPerRequest: 8, backendCpuUsPerRequest: 5, responses: rps, unexpected: 0 });
  // The machine slows down in round 2; the paired ratio stays 0.5 where a ratio of medians would not.
  const ratio = pairedRatio([fig(50), fig(10), fig(60)], [fig(100), fig(20), fig(120)], (r) => r.rps);
  t.equal(ratio.median, 0.5);
  t.equal(ratio.spread, 0);
  t.same(roundOrder(['a', 'b', 'c'], 0), ['a', 'b', 'c']);
  t.same(roundOrder(['a', 'b', 'c'], 1), ['b', 'c', 'a']);
  t.same(roundOrder(['a', 'b', 'c'], 5), ['c', 'a', 'b']);
  t.same(roundOrder([], 3), []);
  t.equal(toResult('x', [fig(1), { ...fig(3), unexpected: 2 }]).unexpected, 2);
});

t.test('markdown tables and formatting', async (t) => {
  t.equal(
    markdownTable(['a', 'b'], [['1', 'x|y']], ['left', 'right']),
    ['| a | b |', '| --- | ---: |', '| 1 | x\\|y |'].join('\n'),
  );
  t.throws(() => markdownTable(['a', 'b'], [['only one']]), RangeError);
  t.equal(formatMs(0.25), '250 µs');
  t.equal(formatMs(2.5), '2.50 ms');
  t.equal(formatMs(Number.NaN), '–');
  t.equal(formatMs(-30.2), '−30.2 ms', 'a negative difference keeps its unit');
  t.equal(formatRatio(0.8567), '0.86×');
});

t.test('options: defaults, quick, flags, env, and refusals', async (t) => {
  const full = parseOptions([], {}, '/repo');
  t.match(full, { quick: false, rounds: 5, durationSeconds: 5, connections: 50, kills: 1000, out: '/repo/bench/RESULTS.md', streamBytes: 1024 ** 3 });
  t.same([...full.groups], [...GROUPS]);
  const quick = parseOptions(['--quick'], {}, '/repo');
  t.match(quick, { quick: true, rounds: 2, out: null }, 'a quick run does not replace the committed results');
  t.equal(parseOptions([], { BENCH_QUICK: '1' }, '/repo').quick, true);
  t.equal(parseOptions(['--rounds', '3'], { BENCH_ROUNDS: '7' }, '/repo').rounds, 3, 'a flag beats the environment');
  t.same([...parseOptions(['--groups', 'kill,tokens'], {}, '/repo').groups], ['kill', 'tokens']);
  t.equal(full.baseline, null, 'no baseline build unless asked');
  t.equal(parseOptions(['--baseline', '/tmp/before'], {}, '/repo').baseline, '/tmp/before');
  const refusals = [
    { name: 'unknown group', argv: ['--groups', 'forwarding,speed'], message: /unknown group "speed"/ },
    { name: 'zero rounds', argv: ['--rounds', '0'], message: /--rounds: "0" is not a positive whole number/ },
    { name: 'fractional kills', argv: ['--kills', '1.5'], message: /--kills/ },
    { name: 'not a number', argv: ['--duration', 'fast'], message: /--duration/ },
  ];
  for (const c of refusals) t.throws(() => parseOptions(c.argv, {}, '/repo'), { constructor: UsageError, message: c.message }, c.name);
  t.throws(() => parseOptions(['--bogus'], {}, '/repo'), /Unknown option/);
});

t.test('the bar: met and missed lines', async (t) => {
  const summary = (m: number) => summarize([m]);
  const contestant = toResult('c', []);
  const results: Results = {
    machine: { node: 'v20', cpu: 'cpu', cores: 2, pinned: true, loadAverage: [0, 0, 0], date: 'today' },
    settings: { rounds: 1, durationSeconds: 1, warmupSeconds: 1, connections: 50, quick: false, command: 'npm run bench' },
    elapsedSeconds: 1,
    forwarding: [
      {
        scenario: 'GET 200 B',
        direct: contestant,
        bare: contestant,
        audited: contestant,
        agentgate: contestant,
        baseline: null,
        agentgateToBare: summary(0.9),
        agentgateToDirect: summary(0.2),
        bareToDirect: summary(0.22),
        auditedToBare: summary(0.75),
        agentgateToAudited: summary(0.6),
        addedP99: summary(1.5),
      },
    ],
    paced: { scenario: 'GET 200 B', rate: 4000, bare: contestant, audited: null, agentgate: contestant, addedP50: summary(0.3), addedP99: summary(1.2) },
    refusal: {
      allowed: contestant,
      refusals: [
        { kind: 'bad token (401)', status: 401, result: contestant, toAllowed: summary(2), backendRequests: 1 },
        { kind: 'rate limited (429)', status: 429, result: contestant, toAllowed: summary(0.95), backendRequests: 1 },
      ],
    },
    masking: { plain: contestant, masked: contestant, toPlain: summary(0.7) },
    kill: { kills: 10, latency: latencyPercentiles([1, 2, 3]), refusedSent: latencyPercentiles([0, 1]), allowedSent: latencyPercentiles([0]), adminCall: latencyPercentiles([1]), allowedAfterKill: 0, refusedAfterRevive: 0, probes: 100, cut: 0 },
  };
  const lines = barLines(results);
  t.same(
    lines.map((l) => [l.what, l.met]),
    [
      ['GET 200 B: AgentGate / bare proxy throughput', true],
      ['GET 200 B: p99 added over the bare proxy', false],
      ['GET 200 B: the write-ahead audit alone, bare proxy + audit / bare proxy throughput', null],
      ["GET 200 B: p99 added over the bare proxy at 4 000 requests a second, open loop (half of AgentGate's throughput above; p50 added 300 µs)", null],
      ['refusal, bad token (401): throughput / allowed', true],
      ['refusal, bad token (401): requests that reached the backend', false],
      ['refusal, rate limited (429): throughput / allowed (issue 14: cheaper than an allowed call)', false],
      ['refusal, rate limited (429): requests that reached the backend', true],
      ['masked route / plain route throughput (same 18 KiB JSON)', null],
      ['kill in force p99, admin call → first refusal seen by a probe (10 kills)', true],
      ['kill in force p99, admin call → send of the first refused probe request (0 when sent before the call)', null],
      ['kill answer p99, admin call → its answer (durable, waits for the peer lookup)', null],
    ],
  );
  const markdown = renderResults(results);
  t.match(markdown, /Node v20, cpu, 2 cores/);
  t.match(markdown, /\| GET 200 B: p99 added over the bare proxy \| 1\.50 ms \| ≤ 1 ms \| MISSED \|/);
  t.match(markdown, /### 1b\. GET 200 B at 4 000 requests a second \(open loop\)[^]*Added over the bare proxy, paired per round: p50 300 µs, p99 1\.20 ms\./);
  t.match(markdown, /what the durable audit alone costs: GET 200 B 0\.75×\. AgentGate over it, what every check and the rest of the pipeline cost: GET 200 B 0\.60×/);
  // A probe request allowed after the kill answer misses the bar whatever the latency.
  const leaked = barLines({ ...results, kill: { ...(results.kill as NonNullable<Results['kill']>), allowedAfterKill: 1 } });
  t.equal(leaked.find((l) => l.what.startsWith('kill in force'))?.met, false, 'a request allowed after the kill answer fails the bar');
  const stuck = barLines({ ...results, kill: { ...(results.kill as NonNullable<Results['kill']>), refusedAfterRevive: 1 } });
  t.equal(stuck.find((l) => l.what.startsWith('kill in force'))?.met, false, 'a request refused after the revive answer fails it too');
});

t.test('server-side issuance figures from the broker histogram', async (t) => {
  // Cumulative bucket counts (seconds) before and after the timed requests, as /metrics gives them.
  const before: Array<[number, number]> = [[0.001, 10], [0.002, 10], [0.005, 10], [Number.POSITIVE_INFINITY, 10]];
  const cases: Array<{ name: string; after: Array<[number, number]>; within2ms: number; p50: number; p99: number; met: boolean }> = [
    { name: 'all under 1 ms', after: [[0.001, 110], [0.002, 110], [0.005, 110], [Number.POSITIVE_INFINITY, 110]], within2ms: 1, p50: 0.5, p99: 0.99, met: true },
    { name: 'one in a hundred past 2 ms: the bar holds at 99 %', after: [[0.001, 60], [0.002, 109], [0.005, 110], [Number.POSITIVE_INFINITY, 110]], within2ms: 0.99, p50: 1, p99: 2, met: true },
    { name: 'two in a hundred past 2 ms: missed', after: [[0.001, 60], [0.002, 108], [0.005, 110], [Number.POSITIVE_INFINITY, 110]], within2ms: 0.98, p50: 1, p99: 3.5, met: false },
  ];
  for (const c of cases) {
    const got = serverFigures(before, c.after);
    t.equal(got.count, 100, `${c.name}: only the answers between the scrapes`);
    t.equal(got.within2ms, c.within2ms, `${c.name}: share within 2 ms`);
    t.ok(Math.abs(got.p50 - c.p50) < 1e-9 && Math.abs(got.p99 - c.p99) < 1e-9, `${c.name}: p50 ${got.p50} p99 ${got.p99} ms`);
    const issued = { method: 'HTTP', clientSide: false, tokens: 100, tokensPerSecond: 1, latency: latencyPercentiles([1, 5]), server: got };
    const bar = barLines({ ...minimalResults(), tokens: [issued] }).find((l) => l.what.startsWith('token issuance p99 server side'));
    t.equal(bar?.met, c.met, `${c.name}: the bar reads the server's share, not the client's p99 (5 ms)`);
    // The start-up row is reported beside the bar, never judged by it.
    const lines = barLines({ ...minimalResults(), tokens: [{ ...issued, method: 'the first 100 after start', startUp: true }, issued] });
    t.match(lines.filter((l) => l.what.includes('the first 100 after start')), [{ bar: 'reported', met: null }], `${c.name}: start-up row`);
    t.equal(lines.filter((l) => l.met !== null).length, 1, `${c.name}: one bar line, the warm method's`);
  }
});

function minimalResults(): Results {
  return {
    machine: { node: 'v20', cpu: 'cpu', cores: 2, pinned: true, loadAverage: [0, 0, 0], date: 'today' },
    settings: { rounds: 1, durationSeconds: 1, warmupSeconds: 1, connections: 50, quick: false, command: 'npm run bench' },
    elapsedSeconds: 1,
  };
}

t.test('generated config and policy pass `agentgate check`', async (t) => {
  const dir = t.testdir();
  const clientJwk = { kty: 'OKP', crv: 'Ed25519', x: '11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo' };
  const files = await writeBenchFiles(dir, { socket: join(dir, 's.sock'), issuer: 'http://agentgate.bench' }, { upstream: 'http://127.0.0.1:9', extraAgents: 20, clientJwk });
  const result = await runCli(['check', '--config', files.configFile, '--json']);
  t.equal(result.code, 0, result.stderr);
  t.match(JSON.parse(result.stdout), { valid: true, backends: 1, roles: 4, agents: 26 });
  t.match(policyYaml({ upstream: 'http://u', clientJwk }), /token-client: \{ role: caller, owner: bench, credentials: \[\{ type: private_key_jwt, jwk: \{"kty":"OKP"/);
  t.match(configYaml({ policiesDir: '/p', socket: '/s', issuer: 'http://i' }), /maxBodyBytes: 1MiB/);
  t.match(policyYaml({ upstream: 'http://u' }), new RegExp(`${AGENTS.flooder}: \\{ role: flooder`));
});

t.test('the generated state file loads into the real memory store', async (t) => {
  const dir = t.testdir();
  const now = Date.now();
  const jti = 'revoked-jti-under-test';
  await writeBenchFiles(dir, { socket: join(dir, 's.sock'), issuer: 'http://agentgate.bench' }, { upstream: 'http://127.0.0.1:9', extraAgents: 30 }, { agents: 30, revocations: 50, now, include: [jti] });
  const store = await openMemoryStore({ clock: { now: () => now }, file: join(dir, 'run', 'state.json') });
  t.teardown(() => store.close());
  t.equal(store.isRevoked(jti), true, 'the included jti is revoked');
  t.equal(store.isRevoked('not-revoked'), false);
  t.equal(store.breaker(extraAgentId(10))?.tripped, true, 'every tenth agent has an open breaker');
  t.equal(store.breaker(extraAgentId(11))?.violations.length, 2, 'the others hold violations in their window');
  const parsed = JSON.parse(stateJson({ agents: 3, revocations: 4, now })) as { version: number; revocationTable: string };
  t.equal(parsed.version, 2, 'written as the memory store writes it');
  t.equal(Buffer.from(parsed.revocationTable, 'base64').length, 4 * RECORD_BYTES, 'four revocation records');
});

t.test('a contestant that answers nothing is named, not reported as figures', async (t) => {
  // A server that takes connections and never answers: what a stuck proxy looks like to the load generator.
  const held: Socket[] = [];
  const stuck = createServer((socket) => {
    held.push(socket);
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => stuck.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    for (const s of held) s.destroy();
    stuck.close();
  });
  const load = await startLoadWorker();
  t.teardown(() => load.stop());
  const { port } = stuck.address() as AddressInfo;
  const contestant = { name: 'stuck proxy', pid: process.pid, url: `http://127.0.0.1:${port}/small`, method: 'GET' as const, headers: {}, expectStatus: 200 };
  await t.rejects(measure(load, process.pid, contestant, { durationSeconds: 1, warmupSeconds: 0, connections: 2 }), /stuck proxy answered no request in 1 s/);
});

t.test('the open-loop generator times each request from when it was due', async (t) => {
  // One connection; the first answer is held 500 ms, the rest go out at once. Requests due in
  // those 500 ms queue behind it: timed from when they were due, they carry the wait (a closed
  // loop would time them from when they could be sent, and hide it).
  let first = true;
  const server = createHttpServer((req, res) => {
    const answer = (): void => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok');
    };
    if (first) {
      first = false;
      setTimeout(answer, 500);
    } else answer();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => server.close());
  const load = await startLoadWorker();
  t.teardown(() => load.stop());
  const { port } = server.address() as AddressInfo;
  const result = await load.run({ url: `http://127.0.0.1:${port}/`, method: 'GET', headers: {}, connections: 1, durationSeconds: 1, expectStatus: 200, pace: 100 });
  t.equal(result.responses, 100, 'every scheduled request was sent and answered');
  t.equal(result.errors, 0);
  t.ok(result.latency.max >= 500, `the held request's latency includes the hold (max ${result.latency.max} ms)`);
  t.ok(result.latency.p90 >= 200, `so do those queued behind it (p90 ${result.latency.p90} ms)`);
});

t.test('main-thread CPU is the event loop alone: a busy worker thread counts in the total only', { skip: process.platform !== 'linux' ? 'reads /proc' : false }, async (t) => {
  const total0 = await cpuTimeMs(process.pid);
  const main0 = await mainThreadCpuTimeMs(process.pid);
  // The worker spins until the process has used 300 ms more CPU, however long that takes on a
  // busy machine; meanwhile this thread only waits for its message.
  const worker = new Worker(
    `const { readFileSync } = require('node:fs'); const { parentPort, workerData } = require('node:worker_threads');
     const cpu = () => { const f = readFileSync('/proc/self/stat', 'utf8'); const x = f.slice(f.lastIndexOf(')') + 2).split(' '); return (Number(x[11]) + Number(x[12])) * 10; };
     const start = cpu(); while (cpu() - start < workerData) {} parentPort.postMessage('done');`,
    { eval: true, workerData: 300 },
  );
  await new Promise((resolve, reject) => worker.once('message', resolve).once('error', reject));
  await worker.terminate();
  const total = (await cpuTimeMs(process.pid)) - total0;
  const main = (await mainThreadCpuTimeMs(process.pid)) - main0;
  t.ok(total >= 250, `the process used the worker's CPU (${total} ms)`);
  t.ok(main >= 0 && main < total - 200, `the main thread's share leaves it out (${main} of ${total} ms)`);
});
