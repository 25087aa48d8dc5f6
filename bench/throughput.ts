// Groups 1 and 2: forwarding (direct, bare proxy, AgentGate) and the refusal flood (allowed,
// out-of-scope, bad token, all through AgentGate). Contestants are interleaved round by round,
// each round starting with the next contestant, and ratios are paired within a round so a machine
// that slows down mid-run (a shared box) shifts both sides of a ratio alike.
import { BACKEND, PATHS } from './config.js';
import { measure, type Contestant, type LoadWorker, type MeasureSettings, type RoundFigures } from './rig.js';
import { summarize, type Summary } from './stats.js';

export interface ContestantResult {
  readonly name: string;
  readonly rounds: readonly RoundFigures[];
  readonly rps: Summary;
  readonly p50: Summary;
  readonly p99: Summary;
  readonly cpuUsPerRequest: Summary;
  readonly mainCpuUsPerRequest: Summary;
  readonly backendCpuUsPerRequest: Summary;
  readonly unexpected: number;
}

export function toResult(name: string, rounds: readonly RoundFigures[]): ContestantResult {
  return {
    name,
    rounds,
    rps: summarize(rounds.map((r) => r.rps)),
    p50: summarize(rounds.map((r) => r.p50)),
    p99: summarize(rounds.map((r) => r.p99)),
    cpuUsPerRequest: summarize(rounds.map((r) => r.cpuUsPerRequest)),
    mainCpuUsPerRequest: summarize(rounds.map((r) => r.mainCpuUsPerRequest)),
    backendCpuUsPerRequest: summarize(rounds.map((r) => r.backendCpuUsPerRequest)),
    unexpected: rounds.reduce((n, r) => n + r.unexpected, 0),
  };
}

/** Round by round ratio `a / b` of a figure, summarized. */
export function pairedRatio(a: readonly RoundFigures[], b: readonly RoundFigures[], figure: (r: RoundFigures) => number): Summary {
  const n = Math.min(a.length, b.length);
  const ratios: number[] = [];
  for (let i = 0; i < n; i++) ratios.push(figure(a[i] as RoundFigures) / figure(b[i] as RoundFigures));
  return summarize(ratios);
}

/** Round by round difference `a - b` of a figure, summarized. */
export function pairedDifference(a: readonly RoundFigures[], b: readonly RoundFigures[], figure: (r: RoundFigures) => number): Summary {
  const n = Math.min(a.length, b.length);
  const diffs: number[] = [];
  for (let i = 0; i < n; i++) diffs.push(figure(a[i] as RoundFigures) - figure(b[i] as RoundFigures));
  return summarize(diffs);
}

/** The order contestants run in, in round `round`: rotated by one each round. */
export function roundOrder<T>(items: readonly T[], round: number): T[] {
  const k = items.length === 0 ? 0 : round % items.length;
  return [...items.slice(k), ...items.slice(0, k)];
}

export interface Scenario {
  readonly name: string;
  readonly method: 'GET' | 'POST';
  readonly path: string;
  readonly body?: string;
}

export const SCENARIOS: readonly Scenario[] = [
  { name: 'GET 200 B', method: 'GET', path: PATHS.small },
  { name: 'GET 16 KiB', method: 'GET', path: PATHS.large },
  { name: 'POST 1 KiB', method: 'POST', path: PATHS.echo, body: 'a'.repeat(1024) },
];

export interface Endpoints {
  readonly backend: { readonly pid: number; readonly url: string };
  readonly bare: { readonly pid: number; readonly url: string };
  /** The bare proxy that keeps AgentGate's write-ahead audit (and checks nothing), or null. */
  readonly audited: { readonly pid: number; readonly url: string } | null;
  readonly gateway: { readonly pid: number; readonly url: string };
  readonly tokens: { readonly caller: string; readonly flooder: string; readonly forged: string; readonly limited: string; readonly masked: string };
  /** A second AgentGate build (`--baseline`) measured beside this one, or null. */
  readonly baseline: { readonly pid: number; readonly url: string; readonly caller: string } | null;
}

export interface ForwardingResult {
  readonly scenario: string;
  readonly direct: ContestantResult;
  readonly bare: ContestantResult;
  /** The bare proxy with AgentGate's write-ahead audit, when measured. */
  readonly audited: ContestantResult | null;
  readonly agentgate: ContestantResult;
  /** The `--baseline` build, when one was given. */
  readonly baseline: ContestantResult | null;
  readonly agentgateToBare: Summary;
  readonly agentgateToDirect: Summary;
  readonly bareToDirect: Summary;
  /** The audited bare proxy over the bare proxy: what the durable audit alone costs (null: not measured). */
  readonly auditedToBare: Summary | null;
  /** AgentGate over the audited bare proxy: what everything but the audit costs (null: not measured). */
  readonly agentgateToAudited: Summary | null;
  /** AgentGate p99 minus bare p99, ms, paired per round. */
  readonly addedP99: Summary;
}

type Progress = (line: string) => void;

/** The contestant name of the bare proxy that keeps the write-ahead audit. */
export const AUDITED = 'bare proxy + audit';

function describeRound(c: Contestant, r: RoundFigures): string {
  return `${c.name.padEnd(28)} ${Math.round(r.rps).toString().padStart(7)} rps  p50 ${r.p50.toFixed(2)} ms  p99 ${r.p99.toFixed(2)} ms  cpu ${Math.round(r.cpuUsPerRequest)} µs/req (main ${Math.round(r.mainCpuUsPerRequest)})${r.unexpected > 0 ? `  (${r.unexpected} unexpected)` : ''}`;
}

async function interleave(load: LoadWorker, backendPid: number, contestants: readonly Contestant[], rounds: number, settings: MeasureSettings, progress: Progress, beforeEach?: (c: Contestant) => Promise<void>, afterEach?: (c: Contestant, r: RoundFigures) => Promise<void>): Promise<Map<string, RoundFigures[]>> {
  const figures = new Map<string, RoundFigures[]>(contestants.map((c) => [c.name, []]));
  for (let round = 0; round < rounds; round++) {
    for (const contestant of roundOrder(contestants, round)) {
      await beforeEach?.(contestant);
      const result = await measure(load, backendPid, contestant, settings);
      await afterEach?.(contestant, result);
      figures.get(contestant.name)?.push(result);
      progress(`  round ${round + 1}/${rounds}  ${describeRound(contestant, result)}`);
    }
  }
  return figures;
}

export async function runForwarding(load: LoadWorker, endpoints: Endpoints, rounds: number, settings: MeasureSettings, progress: Progress): Promise<ForwardingResult[]> {
  const results: ForwardingResult[] = [];
  for (const scenario of SCENARIOS) {
    progress(`forwarding: ${scenario.name}`);
    const common = {
      method: scenario.method,
      ...(scenario.body === undefined ? {} : { body: scenario.body }),
      expectStatus: 200,
    };
    const bodyHeaders: Record<string, string> = scenario.body === undefined ? {} : { 'content-type': 'application/octet-stream' };
    const contestants: Contestant[] = [
      { ...common, name: 'direct', pid: endpoints.backend.pid, url: `${endpoints.backend.url}${scenario.path}`, headers: bodyHeaders },
      { ...common, name: 'bare proxy', pid: endpoints.bare.pid, url: `${endpoints.bare.url}${scenario.path}`, headers: bodyHeaders },
      {
        ...common,
        name: 'AgentGate',
        pid: endpoints.gateway.pid,
        url: `${endpoints.gateway.url}/${BACKEND}${scenario.path}`,
        headers: { ...bodyHeaders, authorization: `Bearer ${endpoints.tokens.caller}` },
      },
    ];
    const audited = endpoints.audited;
    if (audited !== null) {
      contestants.push({ ...common, name: AUDITED, pid: audited.pid, url: `${audited.url}${scenario.path}`, headers: bodyHeaders });
    }
    const baseline = endpoints.baseline;
    if (baseline !== null) {
      contestants.push({ ...common, name: 'AgentGate (baseline)', pid: baseline.pid, url: `${baseline.url}/${BACKEND}${scenario.path}`, headers: { ...bodyHeaders, authorization: `Bearer ${baseline.caller}` } });
    }
    const figures = await interleave(load, endpoints.backend.pid, contestants, rounds, settings, progress);
    const direct = figures.get('direct') ?? [];
    const bare = figures.get('bare proxy') ?? [];
    const agentgate = figures.get('AgentGate') ?? [];
    const floor = audited === null ? null : (figures.get(AUDITED) ?? []);
    results.push({
      scenario: scenario.name,
      direct: toResult('direct', direct),
      bare: toResult('bare proxy', bare),
      audited: floor === null ? null : toResult(AUDITED, floor),
      agentgate: toResult('AgentGate', agentgate),
      baseline: baseline === null ? null : toResult('AgentGate (baseline)', figures.get('AgentGate (baseline)') ?? []),
      agentgateToBare: pairedRatio(agentgate, bare, (r) => r.rps),
      agentgateToDirect: pairedRatio(agentgate, direct, (r) => r.rps),
      bareToDirect: pairedRatio(bare, direct, (r) => r.rps),
      auditedToBare: floor === null ? null : pairedRatio(floor, bare, (r) => r.rps),
      agentgateToAudited: floor === null ? null : pairedRatio(agentgate, floor, (r) => r.rps),
      addedP99: pairedDifference(agentgate, bare, (r) => r.p99),
    });
  }
  return results;
}

export interface PacedResult {
  readonly scenario: string;
  /** Requests a second, the same for every contestant: half of AgentGate's closed-loop throughput. */
  readonly rate: number;
  readonly bare: ContestantResult;
  readonly audited: ContestantResult | null;
  readonly agentgate: ContestantResult;
  /** AgentGate's p50 and p99 minus the bare proxy's, ms, paired per round. */
  readonly addedP50: Summary;
  readonly addedP99: Summary;
}

/**
 * The latency each proxy adds when it is not saturated: GET 200 B sent on a fixed schedule (open
 * loop, load.ts `pace`) at half of AgentGate's closed-loop throughput in `forwarding`, over the
 * same number of connections. At saturation (the closed loop above) latency is connections /
 * throughput, so its p99 added repeats the throughput gap; here it is what a call waits for.
 */
export async function runPaced(load: LoadWorker, endpoints: Endpoints, forwarding: readonly ForwardingResult[], rounds: number, settings: MeasureSettings, progress: Progress): Promise<PacedResult | null> {
  const scenario = SCENARIOS[0];
  const saturated = forwarding.find((f) => f.scenario === scenario?.name)?.agentgate.rps.median;
  if (scenario === undefined || saturated === undefined || !(saturated > 0)) return null;
  const rate = Math.max(100, Math.round(saturated / 2 / 100) * 100);
  progress(`latency at ${rate} requests a second (open loop): ${scenario.name}`);
  const common = { method: scenario.method, expectStatus: 200 };
  const contestants: Contestant[] = [
    { ...common, name: 'bare proxy', pid: endpoints.bare.pid, url: `${endpoints.bare.url}${scenario.path}`, headers: {} },
    { ...common, name: 'AgentGate', pid: endpoints.gateway.pid, url: `${endpoints.gateway.url}/${BACKEND}${scenario.path}`, headers: { authorization: `Bearer ${endpoints.tokens.caller}` } },
  ];
  const audited = endpoints.audited;
  if (audited !== null) contestants.push({ ...common, name: AUDITED, pid: audited.pid, url: `${audited.url}${scenario.path}`, headers: {} });
  const figures = await interleave(load, endpoints.backend.pid, contestants, rounds, { ...settings, pace: rate }, progress);
  const bare = figures.get('bare proxy') ?? [];
  const agentgate = figures.get('AgentGate') ?? [];
  return {
    scenario: scenario.name,
    rate,
    bare: toResult('bare proxy', bare),
    audited: audited === null ? null : toResult(AUDITED, figures.get(AUDITED) ?? []),
    agentgate: toResult('AgentGate', agentgate),
    addedP50: pairedDifference(agentgate, bare, (r) => r.p50),
    addedP99: pairedDifference(agentgate, bare, (r) => r.p99),
  };
}

export interface RefusalResult {
  readonly allowed: ContestantResult;
  readonly refusals: ReadonlyArray<{
    readonly kind: string;
    readonly status: number;
    readonly result: ContestantResult;
    /** Refused rps over allowed rps, paired per round. */
    readonly toAllowed: Summary;
    /** Requests the backend received while this kind was being sent (must be 0). */
    readonly backendRequests: number;
  }>;
}

export async function runRefusal(
  load: LoadWorker,
  endpoints: Endpoints,
  rounds: number,
  settings: MeasureSettings,
  backendCount: () => Promise<number>,
  progress: Progress,
): Promise<RefusalResult> {
  progress('refusal flood');
  const base = `${endpoints.gateway.url}/${BACKEND}`;
  const contestants: Contestant[] = [
    { name: 'allowed (GET 200 B)', pid: endpoints.gateway.pid, url: `${base}${PATHS.small}`, method: 'GET', headers: { authorization: `Bearer ${endpoints.tokens.caller}` }, expectStatus: 200 },
    { name: 'out of scope (403)', pid: endpoints.gateway.pid, url: `${base}${PATHS.admin}`, method: 'GET', headers: { authorization: `Bearer ${endpoints.tokens.flooder}` }, expectStatus: 403 },
    { name: 'bad token (401)', pid: endpoints.gateway.pid, url: `${base}${PATHS.small}`, method: 'GET', headers: { authorization: `Bearer ${endpoints.tokens.forged}` }, expectStatus: 401 },
    { name: 'rate limited (429)', pid: endpoints.gateway.pid, url: `${base}${PATHS.small}`, method: 'GET', headers: { authorization: `Bearer ${endpoints.tokens.limited}` }, expectStatus: 429 },
  ];
  const leaked = new Map<string, number>();
  let before = 0;
  const figures = await interleave(
    load,
    endpoints.backend.pid,
    contestants,
    rounds,
    settings,
    progress,
    async () => {
      // Let the previous contestant's last in-flight calls land before counting.
      await new Promise((resolve) => setTimeout(resolve, 300));
      before = await backendCount();
    },
    async (c) => {
      const after = await backendCount();
      leaked.set(c.name, (leaked.get(c.name) ?? 0) + (after - before));
    },
  );
  const allowed = figures.get('allowed (GET 200 B)') ?? [];
  return {
    allowed: toResult('allowed (GET 200 B)', allowed),
    refusals: contestants.slice(1).map((c) => ({
      kind: c.name,
      status: c.expectStatus,
      result: toResult(c.name, figures.get(c.name) ?? []),
      toAllowed: pairedRatio(figures.get(c.name) ?? [], allowed, (r) => r.rps),
      backendRequests: leaked.get(c.name) ?? 0,
    })),
  };
}


export interface MaskingResult {
  readonly plain: ContestantResult;
  readonly masked: ContestantResult;
  /** Masked rps over plain rps, paired per round. */
  readonly toPlain: Summary;
}

/**
 * The masked route against the plain one: the same JSON body (PATHS.contacts) through AgentGate,
 * for the caller (no filter: the plain path) and for a role that masks two of its fields.
 */
export async function runMasking(load: LoadWorker, endpoints: Endpoints, rounds: number, settings: MeasureSettings, progress: Progress): Promise<MaskingResult> {
  progress('masking: the same JSON body plain and masked');
  const url = `${endpoints.gateway.url}/${BACKEND}${PATHS.contacts}`;
  const contestants: Contestant[] = [
    { name: 'plain route', pid: endpoints.gateway.pid, url, method: 'GET', headers: { authorization: `Bearer ${endpoints.tokens.caller}` }, expectStatus: 200 },
    { name: 'masked route', pid: endpoints.gateway.pid, url, method: 'GET', headers: { authorization: `Bearer ${endpoints.tokens.masked}` }, expectStatus: 200 },
  ];
  const figures = await interleave(load, endpoints.backend.pid, contestants, rounds, settings, progress);
  const plain = figures.get('plain route') ?? [];
  const masked = figures.get('masked route') ?? [];
  return { plain: toResult('plain route', plain), masked: toResult('masked route', masked), toPlain: pairedRatio(masked, plain, (r) => r.rps) };
}
