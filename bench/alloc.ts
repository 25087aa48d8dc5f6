// JS heap allocated per request by the gateway process under the forwarding load (GET 200 B,
// 50 connections, every check on), read with V8's sampling heap profiler through the inspector
// (objects a collection has freed since are counted too), for this build and, given a baseline
// build, for that one too, alternating round by round. Allocation is what the young-generation
// collections pay for; unlike CPU time it does not move with the machine's load.
//   npm run build && node dist/bench/alloc.js [BASELINE_DIR] [rounds]
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { WebSocket } from 'undici';
import { AGENTS, BACKEND, PATHS, writeBenchFiles } from './config.js';
import { ROOT } from './procs.js';
import { SERVER_CORE, startBackend, startGatewayRig, startLoadWorker, type LoadWorker } from './rig.js';
import { median } from './stats.js';

interface ProfileNode {
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number };
  readonly selfSize: number;
  readonly children: readonly ProfileNode[];
}

const baseline = process.argv[2] === undefined ? null : resolve(process.argv[2]);
const rounds = Number(process.argv[3] ?? 3);
const builds: Array<[string, string]> = baseline === null ? [['this build', ROOT]] : [['baseline', baseline], ['this build', ROOT]];

function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const server = createServer();
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address !== null ? done(address.port) : fail(new Error('no port'))));
    });
  });
}

/** A Chrome DevTools Protocol session with the process listening on `port`. */
async function inspect(port: number): Promise<{ call(method: string, params?: object): Promise<Record<string, unknown>>; close(): void }> {
  const targets = (await (await fetch(`http://127.0.0.1:${port}/json/list`)).json()) as Array<{ webSocketDebuggerUrl: string }>;
  const url = targets[0]?.webSocketDebuggerUrl;
  if (url === undefined) throw new Error('the gateway offers no inspector target');
  const ws = new WebSocket(url);
  await new Promise((done, fail) => {
    ws.addEventListener('open', done, { once: true });
    ws.addEventListener('error', fail, { once: true });
  });
  let next = 0;
  const waiting = new Map<number, (message: { result?: Record<string, unknown>; error?: unknown }) => void>();
  ws.addEventListener('message', (event) => {
    const message = JSON.parse(String(event.data)) as { id?: number; result?: Record<string, unknown>; error?: unknown };
    if (message.id !== undefined) waiting.get(message.id)?.(message);
  });
  return {
    call(method, params = {}) {
      const id = ++next;
      return new Promise((done, fail) => {
        waiting.set(id, (message) => {
          waiting.delete(id);
          if (message.error !== undefined) fail(new Error(`${method}: ${JSON.stringify(message.error)}`));
          else done(message.result ?? {});
        });
        ws.send(JSON.stringify({ id, method, params }));
      });
    },
    close: () => ws.close(),
  };
}

/** Self bytes by function (`name file:line`) and in all. */
function tally(node: ProfileNode, into: Map<string, number>): number {
  let total = node.selfSize;
  if (node.selfSize > 0) {
    const { functionName, url, lineNumber } = node.callFrame;
    const key = `${functionName || '(anonymous)'} ${url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*?\/dist\//, 'dist/')}:${lineNumber + 1}`;
    into.set(key, (into.get(key) ?? 0) + node.selfSize);
  }
  for (const child of node.children) total += tally(child, into);
  return total;
}

async function measureBuild(load: LoadWorker, root: string, work: string): Promise<{ perRequest: number; top: Array<[string, number]> }> {
  const backend = await startBackend();
  const port = await freePort();
  const files = await writeBenchFiles(join(work, `gw-${port}`), { socket: join(work, `${port}.sock`), issuer: 'http://agentgate.bench' }, { upstream: backend.url });
  const rig = await startGatewayRig(files.configFile, { core: SERVER_CORE, root, nodeFlags: [`--inspect=127.0.0.1:${port}`] });
  try {
    const token = (await rig.mint(AGENTS.caller)).token;
    const request = { url: `${rig.gateway.url}/${BACKEND}${PATHS.small}`, method: 'GET' as const, headers: { authorization: `Bearer ${token}` }, connections: 50, expectStatus: 200 };
    await load.run({ ...request, durationSeconds: 3 });
    const session = await inspect(port);
    try {
      await session.call('HeapProfiler.enable');
      await session.call('HeapProfiler.startSampling', { samplingInterval: 4096, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
      const result = await load.run({ ...request, durationSeconds: 5 });
      const { profile } = (await session.call('HeapProfiler.stopSampling')) as { profile: { head: ProfileNode } };
      if (result.responses !== result.expected || result.errors > 0) throw new Error(`unexpected answers: ${result.responses - result.expected} wrong status, ${result.errors} errors`);
      const byFunction = new Map<string, number>();
      const total = tally(profile.head, byFunction);
      const top = [...byFunction].sort((a, b) => b[1] - a[1]).slice(0, 8).map(([k, v]): [string, number] => [k, v / result.responses]);
      return { perRequest: total / result.responses, top };
    } finally {
      session.close();
    }
  } finally {
    await rig.stop();
    await backend.stop();
  }
}

const work = await mkdtemp(join(tmpdir(), 'agalloc-'));
const load = await startLoadWorker();
try {
  const figures = new Map<string, number[]>(builds.map(([name]) => [name, []]));
  let last: Array<[string, number]> = [];
  for (let r = 0; r < rounds; r++) {
    for (const [name, root] of builds) {
      const { perRequest, top } = await measureBuild(load, root, work);
      figures.get(name)?.push(perRequest);
      if (name === 'this build') last = top;
      process.stderr.write(`round ${r + 1}, ${name}: ${(perRequest / 1024).toFixed(1)} KiB per request\n`);
    }
  }
  const line = builds.map(([name]) => `${name} ${(median(figures.get(name) ?? []) / 1024).toFixed(1)} KiB`).join(' -> ');
  process.stdout.write(`JS heap allocated per request by the gateway (GET 200 B, 50 connections; median of ${rounds} rounds): ${line}\n`);
  process.stdout.write('largest allocators in this build (last round), bytes per request:\n');
  for (const [where, bytes] of last) process.stdout.write(`  ${bytes.toFixed(0).padStart(6)}  ${where}\n`);
} finally {
  await load.stop();
  await rm(work, { recursive: true, force: true });
}
