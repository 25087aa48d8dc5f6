// How long `agentgate review` takes over a large audit trail, and how much memory it holds:
// writes a generated audit file of the given size (default 1 GiB) of realistic proxy and broker
// lines inside the review period, then times buildReview over it and reports the peak RSS.
//   node dist/bench/review.js [SIZE_MIB] [DIR]
import { createWriteStream, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { buildReview } from '../gateway/cli/review-report.js';
import { loadPolicySnapshot } from '../gateway/policy/index.js';

const sizeMiB = Number(process.argv[2] ?? 1024);
const dir = process.argv[3] ?? mkdtempSync(join(tmpdir(), 'agentgate-review-bench-'));
const file = join(dir, 'audit.jsonl');
const now = Date.now();
const policy = await loadPolicySnapshot(new URL('../../policies', import.meta.url).pathname, { version: 1, clock: { now: () => now }, defaultTimeoutMs: 30_000 });

const agents = [
  ['marketing-agent-03', 'marketing', 'crm', ['GET /contacts', 'GET /contacts/:id'], 'GET /export'],
  ['support-agent-01', 'support', 'tickets', ['GET /tickets', 'GET /tickets/:id', 'POST /tickets/:id/replies'], 'PUT /config'],
  ['data-agent-01', 'data', 'bi', ['GET /reports', 'POST /query'], null],
] as const;

const out = createWriteStream(file);
let written = 0;
let i = 0;
const target = sizeMiB * 1024 * 1024;
const started = performance.now();
while (written < target) {
  const [agent, role, backend, routes, denied] = agents[i % agents.length] as (typeof agents)[number];
  const deny = i % 17 === 0 && denied !== null;
  const route = deny ? null : routes[i % routes.length];
  const time = new Date(now - 29 * 86_400_000 + Math.floor((i * 7) % (29 * 86_400_000))).toISOString();
  const line = `{"seq":${i + 1},"prev":"9c1e${'0'.repeat(60)}","time":"${time}","kind":"proxy","requestId":"6f2c0b7d-0000-4000-8000-${String(i).padStart(12, '0')}","agent":"${agent}","role":"${role}","onBehalfOf":null,"jti":"0b7d${String(i).padStart(28, '0')}","backend":"${backend}","method":"GET","path":"/items/${i % 1000}","decision":"${deny ? 'deny' : 'allow'}","reason":"${deny ? 'out_of_scope' : 'none'}","reasonDetail":null,"route":${route === null ? 'null' : `"${route}"`},"status":${deny ? 403 : 200},"upstreamStatus":${deny ? 'null' : 200},"durationMs":0.412,"remote":"127.0.0.1"}\n`;
  written += Buffer.byteLength(line);
  if (!out.write(line)) await once(out, 'drain');
  i++;
}
out.end();
await once(out, 'finish');
const generatedMs = performance.now() - started;

let peakRss = process.memoryUsage().rss;
const timer = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 100);
const t0 = performance.now();
const review = await buildReview({ policy, files: [file], sinceMs: now - 30 * 86_400_000, nowMs: now, credentials: [] });
const seconds = (performance.now() - t0) / 1000;
clearInterval(timer);
const bytes = statSync(file).size;
console.log(JSON.stringify({
  file: `${(bytes / 1024 ** 3).toFixed(3)} GiB, ${review.linesRead} lines (generated in ${(generatedMs / 1000).toFixed(1)} s)`,
  reviewSeconds: Number(seconds.toFixed(2)),
  mibPerSecond: Number((bytes / 1024 ** 2 / seconds).toFixed(1)),
  peakRssMiB: Number((peakRss / 1024 ** 2).toFixed(1)),
  node: process.version,
  loadAverage: (await import('node:os')).loadavg().map((l) => l.toFixed(1)).join(' '),
  callsCounted: review.matrix.reduce((n, u) => n + u.calls, 0),
}));
if (process.argv[3] === undefined) rmSync(dir, { recursive: true, force: true });
