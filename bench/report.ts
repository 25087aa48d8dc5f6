// RESULTS.md: the machine, the settings, a table per group and the bar of issue 7 with each figure
// against it. Pure: results in, markdown out.
import { PROBES, type KillResult } from './kill.js';
import type { MemoryResult } from './memory.js';
import { SHIPPED_NODE_FLAGS } from './procs.js';
import { formatMiB, formatMs, formatRatio, formatRps, formatSpread, formatUs, markdownTable, verdict, type Summary } from './stats.js';
import type { ContestantResult, ForwardingResult, MaskingResult, PacedResult, RefusalResult } from './throughput.js';
import type { IssuanceResult } from './tokens.js';
import { workersSection, type WorkersResult } from './workers.js';

export interface Machine {
  readonly node: string;
  readonly cpu: string;
  readonly cores: number;
  readonly pinned: boolean;
  readonly loadAverage: readonly number[];
  readonly date: string;
}

export interface Settings {
  readonly rounds: number;
  readonly durationSeconds: number;
  readonly warmupSeconds: number;
  readonly connections: number;
  readonly quick: boolean;
  /** The `--baseline` build measured beside this one, or null. */
  readonly baseline?: string | null;
  readonly command: string;
}

export interface Results {
  readonly machine: Machine;
  readonly settings: Settings;
  readonly forwarding?: readonly ForwardingResult[];
  /** Latency at a fixed rate (open loop), null when it could not be set (no forwarding figure). */
  readonly paced?: PacedResult | null;
  readonly refusal?: RefusalResult;
  readonly masking?: MaskingResult;
  readonly tokens?: readonly IssuanceResult[];
  readonly kill?: KillResult;
  readonly memory?: MemoryResult;
  readonly workers?: WorkersResult;
  readonly elapsedSeconds: number;
}

/** One line of the bar: what, the figure, the bar, met or not. */
export interface BarLine {
  readonly what: string;
  readonly figure: string;
  readonly bar: string;
  readonly met: boolean | null;
}

const MiB = 1024 * 1024;

export function barLines(results: Results): BarLine[] {
  const lines: BarLine[] = [];
  for (const f of results.forwarding ?? []) {
    lines.push({ what: `${f.scenario}: AgentGate / bare proxy throughput`, figure: formatRatio(f.agentgateToBare.median), bar: '≥ 0.85×', met: f.agentgateToBare.median >= 0.85 });
    lines.push({ what: `${f.scenario}: p99 added over the bare proxy`, figure: formatMs(f.addedP99.median), bar: '≤ 1 ms', met: f.addedP99.median <= 1 });
    if (f.auditedToBare !== null) {
      lines.push({ what: `${f.scenario}: the write-ahead audit alone, bare proxy + audit / bare proxy throughput`, figure: formatRatio(f.auditedToBare.median), bar: 'reported', met: null });
    }
  }
  const paced = results.paced;
  if (paced !== undefined && paced !== null) {
    lines.push({ what: `${paced.scenario}: p99 added over the bare proxy at ${formatRps(paced.rate)} requests a second, open loop (half of AgentGate's throughput above; p50 added ${formatMs(paced.addedP50.median)})`, figure: formatMs(paced.addedP99.median), bar: 'reported', met: null });
  }
  for (const r of results.refusal?.refusals ?? []) {
    if (r.status === 429) {
      // Issue 14: the refusal path stays cheaper than an allowed call. The limit (burst 1, then one
      // call per 1000 s) lets the very first call of the run through.
      lines.push({ what: `refusal, ${r.kind}: throughput / allowed (issue 14: cheaper than an allowed call)`, figure: formatRatio(r.toAllowed.median), bar: '> 1×', met: r.toAllowed.median > 1 });
      lines.push({ what: `refusal, ${r.kind}: requests that reached the backend`, figure: String(r.backendRequests), bar: '≤ 1 (burst 1)', met: r.backendRequests <= 1 });
      continue;
    }
    lines.push({ what: `refusal, ${r.kind}: throughput / allowed`, figure: formatRatio(r.toAllowed.median), bar: '≥ 1.5×', met: r.toAllowed.median >= 1.5 });
    lines.push({ what: `refusal, ${r.kind}: requests that reached the backend`, figure: String(r.backendRequests), bar: '0', met: r.backendRequests === 0 });
  }
  if (results.masking !== undefined) {
    // Reported against the plain route (no bar in issue 13 beyond streaming, which the tests check).
    lines.push({ what: 'masked route / plain route throughput (same 18 KiB JSON)', figure: formatRatio(results.masking.toPlain.median), bar: 'reported', met: null });
  }
  for (const t of results.tokens ?? []) {
    if (t.clientSide) lines.push({ what: `p99, ${t.method}`, figure: formatMs(t.latency.p99), bar: '–', met: null });
    else if (t.startUp === true) {
      // The start is reported beside the bar, never judged by it.
      const what = t.server === null ? `token issuance p99, ${t.method}` : `token issuance p99 server side, ${t.method} (${formatShare(t.server.within2ms)} within 2 ms)`;
      lines.push({ what, figure: formatMs(t.server?.p99 ?? t.latency.p99), bar: 'reported', met: null });
    }
    else if (t.server === null) lines.push({ what: `token issuance p99 (${t.method})`, figure: formatMs(t.latency.p99), bar: '≤ 2 ms', met: t.latency.p99 <= 2 });
    else {
      // The bar is the server's part: read from the gateway's own histogram (arrival to answer,
      // its audit line included); the client's round trip is the row under it, reported.
      lines.push({ what: `token issuance p99 server side (${t.method}; agentgate_broker_duration_seconds, ${formatShare(t.server.within2ms)} within 2 ms)`, figure: formatMs(t.server.p99), bar: '≤ 2 ms', met: t.server.within2ms >= 0.99 });
      lines.push({ what: `the same, p99 at the client (the loopback round trip and the client included)`, figure: formatMs(t.latency.p99), bar: '–', met: null });
    }
  }
  if (results.kill !== undefined) {
    const k = results.kill;
    lines.push({ what: `kill in force p99, admin call → first refusal seen by a probe (${k.kills} kills)`, figure: formatMs(k.latency.p99), bar: '≤ 10 ms', met: k.latency.p99 <= 10 && k.allowedAfterKill === 0 && k.refusedAfterRevive === 0 });
    lines.push({ what: 'kill in force p99, admin call → send of the first refused probe request (0 when sent before the call)', figure: formatMs(k.refusedSent.p99), bar: '–', met: null });
    lines.push({ what: 'kill answer p99, admin call → its answer (durable, waits for the peer lookup)', figure: formatMs(k.adminCall.p99), bar: '–', met: null });
  }
  if (results.memory !== undefined) {
    const m = results.memory;
    lines.push({ what: `RSS, ${m.agents} agents with breaker state + ${m.revocations} revocations (shipped node flags: ${SHIPPED_NODE_FLAGS.join(' ')})`, figure: formatMiB(m.loadedRss), bar: '≤ 100 MB (95.4 MiB)', met: m.loadedRss <= 100 * 1e6 });
    const growth = Math.max(m.upload.growth, m.download.growth);
    lines.push({ what: `RSS growth streaming ${formatMiB(m.streamBytes)} up and down`, figure: formatMiB(growth), bar: '≤ 64 MB (61.0 MiB)', met: growth <= 64 * 1e6 });
  }
  return lines;
}

function contestantRow(scenario: string, c: ContestantResult, toBare: Summary | null, toDirect: Summary | null): string[] {
  return [
    scenario,
    c.name,
    formatRps(c.rps.median),
    formatSpread(c.rps),
    formatMs(c.p50.median),
    formatMs(c.p99.median),
    toBare === null ? '–' : formatRatio(toBare.median),
    toDirect === null ? '–' : formatRatio(toDirect.median),
    `${formatUs(c.cpuUsPerRequest.median)} (${formatUs(c.mainCpuUsPerRequest.median)})`,
    c.unexpected === 0 ? '0' : String(c.unexpected),
  ];
}

export function forwardingTable(results: readonly ForwardingResult[]): string {
  const rows: string[][] = [];
  for (const f of results) {
    rows.push(contestantRow(f.scenario, f.direct, null, null));
    rows.push(contestantRow('', f.bare, null, f.bareToDirect));
    if (f.audited !== null) rows.push(contestantRow('', f.audited, f.auditedToBare, null));
    rows.push(contestantRow('', f.agentgate, f.agentgateToBare, f.agentgateToDirect));
    if (f.baseline !== null) rows.push(contestantRow('', f.baseline, null, null));
  }
  return markdownTable(
    ['payload', 'contestant', 'rps', 'spread', 'p50', 'p99', '× bare', '× direct', 'CPU / req (main thread)', 'errors'],
    rows,
    ['left', 'left', 'right', 'right', 'right', 'right', 'right', 'right', 'right', 'right'],
  );
}

export function refusalTable(result: RefusalResult): string {
  const row = (c: ContestantResult, toAllowed: Summary | null, backend: string): string[] => [
    c.name,
    formatRps(c.rps.median),
    formatSpread(c.rps),
    formatMs(c.p50.median),
    formatMs(c.p99.median),
    toAllowed === null ? '–' : formatRatio(toAllowed.median),
    formatUs(c.cpuUsPerRequest.median),
    backend,
    String(c.unexpected),
  ];
  return markdownTable(
    ['request', 'rps', 'spread', 'p50', 'p99', '× allowed', 'gateway CPU / req', 'reached backend', 'wrong status'],
    [row(result.allowed, null, 'all'), ...result.refusals.map((r) => row(r.result, r.toAllowed, String(r.backendRequests)))],
    ['left', 'right', 'right', 'right', 'right', 'right', 'right', 'right', 'right'],
  );
}

export function maskingTable(m: MaskingResult): string {
  const row = (c: ContestantResult, toPlain: Summary | null): string[] => [
    c.name,
    formatRps(c.rps.median),
    formatSpread(c.rps),
    formatMs(c.p50.median),
    formatMs(c.p99.median),
    toPlain === null ? '–' : formatRatio(toPlain.median),
    formatUs(c.cpuUsPerRequest.median),
    String(c.unexpected),
  ];
  return markdownTable(
    ['route', 'rps', 'spread', 'p50', 'p99', '× plain', 'gateway CPU / req', 'errors'],
    [row(m.plain, null), row(m.masked, m.toPlain)],
    ['left', 'right', 'right', 'right', 'right', 'right', 'right', 'right'],
  );
}

export function tokensTable(results: readonly IssuanceResult[]): string {
  return markdownTable(
    ['method', 'tokens', 'tokens / s', 'p50', 'p99', 'max', 'server p50', 'server p99', 'server ≤ 2 ms'],
    results.map((t) => [
      t.method, String(t.tokens), formatRps(t.tokensPerSecond), formatMs(t.latency.p50), formatMs(t.latency.p99), formatMs(t.latency.max),
      t.server === null ? '–' : formatMs(t.server.p50), t.server === null ? '–' : formatMs(t.server.p99), t.server === null ? '–' : formatShare(t.server.within2ms),
    ]),
    ['left', 'right', 'right', 'right', 'right', 'right', 'right', 'right', 'right'],
  );
}

function formatShare(share: number): string {
  return Number.isNaN(share) ? '–' : `${(share * 100).toFixed(share >= 0.999 ? 2 : 1)} %`;
}

export function killTable(k: KillResult): string {
  return markdownTable(
    ['measure', 'kills', 'p50', 'p90', 'p99', 'max'],
    [
      ['admin call sent → last probe request still allowed was sent (kill not yet in force: lower bound)', String(k.kills), formatMs(k.allowedSent.p50), formatMs(k.allowedSent.p90), formatMs(k.allowedSent.p99), formatMs(k.allowedSent.max)],
      ['admin call sent → first refused probe request was sent', String(k.kills), formatMs(k.refusedSent.p50), formatMs(k.refusedSent.p90), formatMs(k.refusedSent.p99), formatMs(k.refusedSent.max)],
      ['admin call sent → first refusal received by the probe (kill in force by then: upper bound, includes that request’s audit line)', String(k.kills), formatMs(k.latency.p50), formatMs(k.latency.p90), formatMs(k.latency.p99), formatMs(k.latency.max)],
      ['admin call sent → its answer (kill durable, peer looked up)', String(k.kills), formatMs(k.adminCall.p50), formatMs(k.adminCall.p90), formatMs(k.adminCall.p99), formatMs(k.adminCall.max)],
    ],
    ['left', 'right', 'right', 'right', 'right', 'right'],
  );
}

export function memoryTable(m: MemoryResult): string {
  const rate = (seconds: number): string => `${Math.round(m.streamBytes / MiB / seconds)} MiB/s`;
  return markdownTable(
    ['measure', 'value', 'note'],
    [
      ['RSS, bench policy only (3 agents)', formatMiB(m.baselineRss), 'after 1 s of load, once RSS holds still (≤ 20 s)'],
      [`RSS, +${m.agents} agents with breaker state, ${m.revocations} revocations`, formatMiB(m.loadedRss), `same warm-up; started in ${formatMs(m.loadedStartMs)}; ${m.stateChecks}`],
      [`the same, V8's default young generation (without ${SHIPPED_NODE_FLAGS.join(' ')})`, formatMiB(m.loadedRssV8Default), 'same warm-up; what `node bin/agentgate.js serve` without the flag holds'],
      [`RSS growth, ${formatMiB(m.streamBytes)} upload`, formatMiB(m.upload.growth), `peak (VmHWM) over RSS before; ${rate(m.upload.seconds)}`],
      [`RSS growth, ${formatMiB(m.streamBytes)} download`, formatMiB(m.download.growth), `peak (VmHWM) over RSS before; ${rate(m.download.seconds)}`],
    ],
    ['left', 'right', 'left'],
  );
}

export function renderResults(results: Results): string {
  const { machine, settings } = results;
  const out: string[] = [];
  out.push('# AgentGate benchmark results', '');
  out.push(`Generated by \`${settings.command}\` on ${machine.date} in ${Math.round(results.elapsedSeconds)} s${settings.quick ? ' (**quick run**: not for quoting)' : ''}.`, '');
  out.push(`- Node ${machine.node}, ${machine.cpu}, ${machine.cores} cores; load average at start ${machine.loadAverage.map((l) => l.toFixed(2)).join(' / ')}`);
  out.push(
    machine.pinned
      ? '- Backend, bare proxy and gateway pinned to core 0, load generator (autocannon) to core 1 (`taskset`).'
      : '- **Not pinned** (taskset missing or a single core): ratios include scheduling noise.',
  );
  out.push(`- ${settings.connections} connections, ${settings.warmupSeconds} s warm-up then ${settings.durationSeconds} s measured per contestant, ${settings.rounds} interleaved rounds; figures are medians over the rounds, spread is ± half the range over the median; ratios are paired within each round, then the median taken.`);
  out.push(`- AgentGate runs as \`node ${[...SHIPPED_NODE_FLAGS, 'bin/agentgate.js serve'].join(' ')}\` (the node flags of \`npm start\` and the image) with every check on: bearer token (EdDSA, verified-token cache), route match, breaker, Prometheus metrics, hash-chained audit file. CPU / req is the process under test (the backend itself for *direct*), from /proc; in brackets in the forwarding table, its main thread alone (the event loop), the rest being V8's collector threads and libuv's pool (the audit's writes).`, '');

  const bar = barLines(results);
  if (bar.length > 0) {
    out.push('## The bar (issue 7)', '');
    out.push(markdownTable(['figure', 'measured', 'bar', ''], bar.map((b) => [b.what, b.figure, b.bar, verdict(b.met)]), ['left', 'right', 'right', 'left']), '');
  }
  if (results.forwarding !== undefined) {
    out.push('## 1. Forwarding', '', forwardingTable(results.forwarding), '');
    const p99 = results.forwarding.map((f) => `${f.scenario} ${formatMs(f.addedP99.median)}`).join(', ');
    out.push(`p99 added by AgentGate over the bare proxy (paired per round): ${p99}.`, '');
    const floors = results.forwarding.filter((f) => f.agentgateToAudited !== null);
    if (floors.length > 0) {
      const alone = floors.map((f) => `${f.scenario} ${formatRatio(f.auditedToBare?.median ?? 0)}`).join(', ');
      const rest = floors.map((f) => `${f.scenario} ${formatRatio(f.agentgateToAudited?.median ?? 0)}`).join(', ');
      out.push(
        `*bare proxy + audit* is the bare proxy holding each answer until its line is written by AgentGate's audit log at its default durability (hash chain, \`fsync: batch\`), checking nothing, and forwarding as AgentGate's plain path does (undici \`dispatch\`, the upstream paused at its head; the bare proxy uses \`Pool.stream\`) (\`bench/bare-proxy.ts\`): the floor of a proxy that keeps the write-ahead audit. Its throughput over the bare proxy, what the durable audit alone costs: ${alone}. AgentGate over it, what every check and the rest of the pipeline cost: ${rest}.`,
        '',
      );
    }
    const paced = results.paced;
    if (paced !== undefined && paced !== null) {
      const rows = [paced.bare, ...(paced.audited === null ? [] : [paced.audited]), paced.agentgate].map((c) => [c.name, formatRps(c.rps.median), formatMs(c.p50.median), formatMs(c.p99.median), formatUs(c.cpuUsPerRequest.median), c.unexpected === 0 ? '0' : String(c.unexpected)]);
      out.push(
        `### 1b. ${paced.scenario} at ${formatRps(paced.rate)} requests a second (open loop)`,
        '',
        markdownTable(['contestant', 'rps', 'p50', 'p99', 'CPU / req', 'errors'], rows, ['left', 'right', 'right', 'right', 'right', 'right']),
        '',
        `Requests sent on a fixed schedule (half of AgentGate's closed-loop throughput above, the same rate for each contestant) over up to ${settings.connections} connections, each timed from the moment it was due, so an answer held up also counts against the ones queued behind it. Above, at saturation, latency is connections / throughput and its p99 added repeats the throughput gap; here it is what a call waits for. Added over the bare proxy, paired per round: p50 ${formatMs(paced.addedP50.median)}, p99 ${formatMs(paced.addedP99.median)}.`,
        '',
      );
    }
    const before = results.forwarding.filter((f) => f.baseline !== null);
    if (before.length > 0) {
      const cpu = before.map((f) => `${f.scenario} ${formatUs(f.baseline?.cpuUsPerRequest.median ?? 0)} → ${formatUs(f.agentgate.cpuUsPerRequest.median)}`).join(', ');
      out.push(`Gateway CPU per request, baseline build (\`${settings.baseline ?? '?'}\`) → this build, same run: ${cpu}.`, '');
    }
  }
  if (results.refusal !== undefined) out.push('## 2. Refusal flood', '', refusalTable(results.refusal), '', 'Out of scope: a valid token of an agent whose breaker counts every violation (threshold not reached during the run). Bad token: one forged token (known kid, bad signature) replayed: the first call pays the signature check, the replays are refused from the verifier’s memory of final refusals. Rate limited: a valid token of an agent whose role allows a burst of 1 and then one call per 1000 s (429 `rate_limited`, the call passed every other check first).', '');
  if (results.masking !== undefined) {
    out.push('## 2b. Masking', '', maskingTable(results.masking), '', 'The same JSON body (150 contacts, 18 KiB) through AgentGate: for the caller (no response filter: the plain path) and for a role that masks `email` and `phone` (the streaming JSON masker).', '');
  }
  if (results.tokens !== undefined) {
    out.push('## 3. Token issuance', '', tokensTable(results.tokens), '');
    out.push('Sequential issuance, one at a time, over one keep-alive connection to the real `agentgate serve` process (its token endpoint audits every issuance). The private_key_jwt client signs a fresh EdDSA assertion per request, as a real client does; the signing alone and the two together are the rows beside the request timed with the assertion in hand. p50 / p99 / max are at the client (the loopback round trip and the client included); the server columns are the gateway\'s own `agentgate_broker_duration_seconds` over the same requests (arrival to answer, the answer sent after its audit line is written), quantiles interpolated within its buckets, and the share answered within 2 ms (a bucket bound): the bar (≤ 2 ms server-side) is met when that share is at least 99 %. tokens / s is over the timed part. The first row is the gateway\'s first issuances after its start, the HTTP methods in turn: a fresh process answers its first few thousand more slowly (V8 still compiling the path, on the same core), so that row has no bar and each row under it is measured after it, warm, whichever method comes first.', '');
  }
  if (results.kill !== undefined) {
    out.push('## 4. Kill latency', '', killTable(results.kill), '');
    out.push(`A probe (${PROBES} requests in flight, each sent as soon as its worker’s previous one returns, so sends are staggered; ${results.kill.probes} in all) runs during every call. The kill took effect after the last allowed probe request was sent (0: none was sent after the kill call) and no later than the first refusal was received; a refused request sent before the kill call (0 in the send row) was checked after the kill took effect. In flight when a kill arrived and cut by it: ${results.kill.cut}. Probe requests sent after the kill was answered and still allowed: ${results.kill.allowedAfterKill}; sent after the revive was answered and still refused: ${results.kill.refusedAfterRevive}. Each kill and revive is appended to the state journal (fdatasync) before it is answered.`, '');
  }
  if (results.memory !== undefined) out.push('## 5. Memory', '', memoryTable(results.memory), '');
  if (results.workers !== undefined) out.push('## 6. Worker processes (`workers`)', '', workersSection(results.workers), '');
  return `${out.join('\n').trimEnd()}\n`;
}
