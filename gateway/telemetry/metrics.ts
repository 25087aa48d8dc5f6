// Every Prometheus metric the gateway exports, on one registry per gateway (so tests can run
// several gateways in one process). Label values come only from closed sets: reason codes and
// backend, role and agent names from the policy. Anything else is folded into `unknown`.
import { AggregatorRegistry, Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { ReasonCode } from '../errors.js';
import { NO_REASON, UNKNOWN_LABEL } from './labels.js';

export const UPSTREAM_ERROR_KINDS = ['connect', 'timeout', 'reset', 'redirect', 'protocol'] as const;
export type UpstreamErrorKind = (typeof UPSTREAM_ERROR_KINDS)[number];

/**
 * prom-client's default metrics that are gauges named like counters (promtool refuses the `_total`
 * suffix on a gauge). Dropped: each equals `sum(nodejs_active_<x>)` over the per-type gauge kept.
 */
export const DROPPED_DEFAULT_METRICS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'] as const;

export interface Metrics {
  readonly registry: Registry;
  /** One finished request: counter and latency histograms. */
  observeRequest(backend: string, decision: 'allow' | 'deny', reason: ReasonCode | typeof NO_REASON, seconds: number, overheadSeconds: number): void;
  violation(agent: string, role: string, reason: ReasonCode): void;
  /** A refusal a role in shadow mode (`enforce: false`) let through. */
  shadowRefusal(agent: string, reason: ReasonCode): void;
  /** A call refused by a rate limit: `limit` is `agent`, or the scope (`backend:scope`) whose limit it hit. */
  rateLimited(agent: string, role: string, limit: string): void;
  upstreamError(backend: string, kind: UpstreamErrorKind): void;
  /** One tools/call message on an MCP backend; `tool` from the policy's names, else `unknown`. */
  toolCall(backend: string, tool: string, decision: 'allow' | 'deny'): void;
  tokenIssued(role: string, grantType: string): void;
  /** A token-endpoint (or introspect, revoke) request answered, `seconds` after it arrived: its audit line written. */
  brokerAnswered(endpoint: 'token' | 'introspect' | 'revoke', decision: 'allow' | 'deny', seconds: number): void;
  tokenRevoked(): void;
  breakerTripped(agent: string): void;
  /** The state store stopped being trusted (`cause`: connection, timeout, data_lost). */
  stateOutage(cause: 'connection' | 'timeout' | 'data_lost'): void;
  /** This instance reseeded Redis (`reseed`) or merged its snapshot into a reseeded one (`merge`). */
  stateReseeded(kind: 'reseed' | 'merge'): void;
  exposition(): Promise<string>;
  readonly contentType: string;
}

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const OVERHEAD_BUCKETS = [0.00005, 0.0001, 0.00015, 0.0002, 0.0003, 0.0005, 0.00075, 0.001, 0.002, 0.005, 0.01, 0.05];
/** Token issuance is held to 2 ms: buckets fine enough around it to tell. */
const BROKER_BUCKETS = [0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];

/** One agent's state at scrape time. */
export interface AgentGauge {
  readonly agent: string;
  /** 0 closed, 1 half-open, 2 open. */
  readonly breaker: 0 | 1 | 2;
  readonly killed: boolean;
}

export interface MetricsOptions {
  /** Collect process default metrics (off in tests that run many gateways in one process). */
  readonly defaults?: boolean;
  /** Read at scrape time, so gauges never drift from the store (a breaker turns half-open by time alone). */
  readonly agents?: () => Iterable<AgentGauge>;
  /** The audit trail's state, read at scrape time. */
  readonly audit?: () => { readonly available: boolean; readonly writeErrors: number };
  /** The state store's health and its changes not yet shared, read at scrape time. */
  readonly state?: () => { readonly healthy: boolean; readonly unshared: number };
  /** `version` label of agentgate_build_info (the `node` label is this process's Node.js). */
  readonly version?: string;
  /**
   * The policy's names, read at scrape time: counters whose labels are all from closed sets
   * (per backend, role or agent) start at 0 for each name, so a dashboard draws a line at 0
   * instead of "no data". Label sets that multiply by a reason or limit are left to appear on
   * their first event.
   */
  readonly names?: () => PolicyNames;
}

export interface PolicyNames {
  readonly backends: Iterable<string>;
  readonly roles: Iterable<string>;
  readonly agents: Iterable<string>;
  /** The broker's grant types (the `grant_type` label of agentgate_tokens_issued_total). */
  readonly grantTypes: Iterable<string>;
}

export function createMetrics(options: MetricsOptions = {}): Metrics {
  const registry = new Registry();
  if (options.defaults !== false) {
    collectDefaultMetrics({ register: registry });
    for (const name of DROPPED_DEFAULT_METRICS) registry.removeSingleMetric(name);
  }
  new Gauge({
    name: 'agentgate_build_info',
    help: 'Always 1; the labels name the running AgentGate version and Node.js version.',
    labelNames: ['version', 'node'] as const,
    registers: [registry],
  }).set({ version: options.version ?? 'unknown', node: process.version }, 1);

  // Counted per request in pre-resolved children (a number each) and added to prom-client at
  // scrape time: prom-client's own children hash and validate their labels on every inc().
  const pendingRequests = new Map<string, RequestCount>();
  const requests = new Counter({
    name: 'agentgate_requests_total',
    help: 'Requests on the agent port, by backend, decision and reason.',
    labelNames: ['backend', 'decision', 'reason'] as const,
    registers: [registry],
    collect() {
      for (const child of pendingRequests.values()) {
        if (child.pending === 0) continue;
        this.inc(child.labels, child.pending);
        child.pending = 0;
      }
    },
  });
  // The two per-request histograms are kept by HotHistogram (a bucket scan into a typed array per
  // series, resolved once), not prom-client's Histogram, which hashes the labels on every observe.
  const duration = new HotHistogram('agentgate_request_duration_seconds', 'Time from request arrival to response headers sent, by backend.', 'backend', LATENCY_BUCKETS);
  const overhead = new HotHistogram('agentgate_overhead_seconds', 'Gateway time per request excluding time spent waiting for the upstream.', null, OVERHEAD_BUCKETS);
  registry.registerMetric(duration as unknown as Parameters<Registry['registerMetric']>[0]);
  registry.registerMetric(overhead as unknown as Parameters<Registry['registerMetric']>[0]);
  const overheadSeries = overhead.series('');
  const violations = new Counter({
    name: 'agentgate_violations_total',
    help: 'Calls made with a valid token outside its grant, by agent, role and reason.',
    labelNames: ['agent', 'role', 'reason'] as const,
    registers: [registry],
  });
  const shadowRefusals = new Counter({
    name: 'agentgate_shadow_refusals_total',
    help: 'Calls a role in shadow mode (enforce: false) let through that its constraints would have refused, by agent and reason.',
    labelNames: ['agent', 'reason'] as const,
    registers: [registry],
  });
  const rateLimited = new Counter({
    name: 'agentgate_rate_limited_total',
    help: 'Calls refused by a rate limit (429 rate_limited), by agent, role and limit (agent, or the scope whose limit was hit).',
    labelNames: ['agent', 'role', 'limit'] as const,
    registers: [registry],
  });
  const upstreamErrors = new Counter({
    name: 'agentgate_upstream_errors_total',
    help: 'Failed upstream calls, by backend and kind.',
    labelNames: ['backend', 'kind'] as const,
    registers: [registry],
  });
  const toolCalls = new Counter({
    name: 'agentgate_tool_calls_total',
    help: 'MCP tools/call messages, by backend, tool (from the policy; others are unknown) and decision.',
    labelNames: ['backend', 'tool', 'decision'] as const,
    registers: [registry],
  });
  const tokensIssued = new Counter({
    name: 'agentgate_tokens_issued_total',
    help: 'Access tokens issued, by role and grant type.',
    labelNames: ['role', 'grant_type'] as const,
    registers: [registry],
  });
  const brokerDuration = new Histogram({
    name: 'agentgate_broker_duration_seconds',
    help: 'Time from a broker request\'s arrival (POST /oauth/token, introspect, revoke) to its answer, which waits for its audit line; by endpoint and decision.',
    labelNames: ['endpoint', 'decision'] as const,
    buckets: BROKER_BUCKETS,
    registers: [registry],
  });
  const tokensRevoked = new Counter({
    name: 'agentgate_tokens_revoked_total',
    help: 'Access tokens revoked.',
    registers: [registry],
  });
  const agents = options.agents;
  new Gauge({
    name: 'agentgate_agent_killed',
    help: '1 while an operator kill switch is in force for the agent.',
    labelNames: ['agent'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const a of agents?.() ?? []) this.labels(a.agent).set(a.killed ? 1 : 0);
    },
  });
  new Gauge({
    name: 'agentgate_breaker_state',
    help: 'Circuit breaker per agent: 0 closed, 1 half-open, 2 open.',
    labelNames: ['agent'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const a of agents?.() ?? []) this.labels(a.agent).set(a.breaker);
    },
  });
  const audit = options.audit;
  new Gauge({
    name: 'agentgate_audit_writable',
    help: '1 while the audit trail can be written; 0 while it cannot (requests are refused with 503 audit_unavailable).',
    registers: [registry],
    collect() {
      this.set(audit === undefined || audit().available ? 1 : 0);
    },
  });
  new Counter({
    name: 'agentgate_audit_write_errors_total',
    help: 'Failed writes, syncs and rotations of the audit trail (each retry counts).',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(audit?.().writeErrors ?? 0);
    },
  });
  const trips = new Counter({
    name: 'agentgate_breaker_trips_total',
    help: 'Times an agent\'s circuit breaker opened.',
    labelNames: ['agent'] as const,
    registers: [registry],
  });

  const state = options.state;
  new Gauge({
    name: 'agentgate_state_available',
    help: '1 while the state store can be trusted (connected, answering in time, its data intact); 0 while requests fail closed.',
    registers: [registry],
    collect() {
      this.set(state === undefined || state().healthy ? 1 : 0);
    },
  });
  new Gauge({
    name: 'agentgate_state_unshared_changes',
    help: 'Kills and revocations applied on this instance while Redis was unreachable, not yet pushed to it.',
    registers: [registry],
    collect() {
      this.set(state === undefined ? 0 : state().unshared);
    },
  });
  const outages = new Counter({
    name: 'agentgate_state_outages_total',
    help: 'Times the state store stopped being trusted, by cause (connection, timeout, data_lost).',
    labelNames: ['cause'] as const,
    registers: [registry],
  });
  const reseeds = new Counter({
    name: 'agentgate_state_reseeds_total',
    help: 'Times this instance wrote its snapshot back into a Redis that lost its data (reseed) or into one another instance reseeded (merge).',
    labelNames: ['kind'] as const,
    registers: [registry],
  });

  // Children are resolved once per label combination and reused: prom-client hashes the label
  // object on every inc() otherwise, which shows on the hot path.
  for (const cause of ['connection', 'timeout', 'data_lost'] as const) outages.inc({ cause }, 0);
  for (const kind of ['reseed', 'merge'] as const) reseeds.inc({ kind }, 0);
  // Names already given their zero series (a name stays seeded across reloads: counters never vanish).
  const seeded = new Set<string>();
  function firstTime(key: string): boolean {
    if (seeded.has(key)) return false;
    seeded.add(key);
    return true;
  }
  function seedZeroSeries(): void {
    const names = options.names?.();
    if (names === undefined) return;
    for (const backend of names.backends) {
      if (!firstTime(`backend\u0000${backend}`)) continue;
      requests.inc({ backend, decision: 'allow', reason: NO_REASON }, 0);
      for (const kind of UPSTREAM_ERROR_KINDS) upstreamErrors.inc({ backend, kind }, 0);
    }
    const grantTypes = [...names.grantTypes];
    for (const role of names.roles) {
      if (!firstTime(`role\u0000${role}`)) continue;
      for (const grant_type of grantTypes) tokensIssued.inc({ role, grant_type }, 0);
    }
    for (const agent of names.agents) if (firstTime(`agent\u0000${agent}`)) trips.inc({ agent }, 0);
  }

  const requestChildren = new Map<string, Map<string, RequestCount>>();
  const durationChildren = new Map<string, HistogramSeries>();
  const violationChildren = new Map<string, ReturnType<typeof violations.labels>>();

  function requestChild(backend: string, decision: 'allow' | 'deny', reason: string) {
    let byReason = requestChildren.get(backend);
    if (byReason === undefined) {
      byReason = new Map();
      requestChildren.set(backend, byReason);
    }
    let child = byReason.get(reason);
    if (child === undefined) {
      child = { labels: { backend, decision, reason }, pending: 0 };
      byReason.set(reason, child);
      pendingRequests.set(`${backend}\u0000${reason}`, child);
    }
    return child;
  }

  return {
    registry,
    contentType: registry.contentType,
    observeRequest(backend, decision, reason, seconds, overheadSeconds) {
      requestChild(backend, decision, reason).pending += 1;
      let d = durationChildren.get(backend);
      if (d === undefined) {
        d = duration.series(backend);
        durationChildren.set(backend, d);
      }
      d.observe(seconds);
      overheadSeries.observe(overheadSeconds);
    },
    violation(agent, role, reason) {
      // Resolved once per (agent, role, reason), like the request counters: a refusal flood pays
      // a map lookup, not prom-client's label hashing.
      const key = `${agent}\u0000${role}\u0000${reason}`;
      let child = violationChildren.get(key);
      if (child === undefined) {
        child = violations.labels(agent, role, reason);
        violationChildren.set(key, child);
      }
      child.inc();
    },
    shadowRefusal(agent, reason) {
      shadowRefusals.labels(agent, reason).inc();
    },
    rateLimited(agent, role, limit) {
      rateLimited.labels(agent, role, limit).inc();
    },
    upstreamError(backend, kind) {
      upstreamErrors.labels(backend, kind).inc();
    },
    toolCall(backend, tool, decision) {
      toolCalls.labels(backend, tool, decision).inc();
    },
    tokenIssued(role, grantType) {
      tokensIssued.labels(role, grantType).inc();
    },
    tokenRevoked() {
      tokensRevoked.inc();
    },
    brokerAnswered(endpoint, decision, seconds) {
      brokerDuration.labels(endpoint, decision).observe(seconds);
    },
    breakerTripped(agent) {
      trips.labels(agent).inc();
    },
    stateOutage(cause) {
      outages.labels(cause).inc();
    },
    stateReseeded(kind) {
      reseeds.labels(kind).inc();
    },
    exposition: () => {
      seedZeroSeries();
      return registry.metrics();
    },
  };
}

/** One label combination of agentgate_requests_total: requests counted since the last scrape. */
interface RequestCount {
  readonly labels: { readonly backend: string; readonly decision: string; readonly reason: string };
  pending: number;
}

/** One series of a HotHistogram: per-bucket counts (not cumulative), sum and count. */
class HistogramSeries {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  constructor(readonly bounds: readonly number[]) {
    this.counts = new Float64Array(bounds.length);
  }

  observe(value: number): void {
    if (!Number.isFinite(value)) return;
    const bounds = this.bounds;
    // Few buckets, most observations in the first ones: a linear scan beats a binary search.
    for (let i = 0; i < bounds.length; i++) {
      if (value <= (bounds[i] as number)) {
        this.counts[i] = (this.counts[i] ?? 0) + 1;
        break;
      }
    }
    this.sum += value;
    this.count += 1;
  }
}

interface HistogramValue {
  readonly metricName: string;
  readonly labels: Record<string, string | number>;
  readonly value: number;
}

/**
 * A Prometheus histogram with at most one label, for the per-request observations: each series is
 * resolved once and observed without allocating. Registered into the prom-client registry, which
 * reads it at scrape time through `get`/`getForPromString` (the exposition is prom-client's own:
 * cumulative `_bucket` lines with `le`, then `_sum` and `_count`).
 */
class HotHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  readonly #series = new Map<string, HistogramSeries>();

  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelName: string | null,
    readonly buckets: readonly number[],
  ) {}

  /** The series for a label value (`''` for a histogram without a label). */
  series(labelValue: string): HistogramSeries {
    let series = this.#series.get(labelValue);
    if (series === undefined) {
      series = new HistogramSeries(this.buckets);
      this.#series.set(labelValue, series);
    }
    return series;
  }

  get(): { name: string; help: string; type: string; aggregator: string; values: HistogramValue[] } {
    const values: HistogramValue[] = [];
    for (const [labelValue, series] of this.#series) {
      const base: Record<string, string> = this.labelName === null ? {} : { [this.labelName]: labelValue };
      let cumulative = 0;
      for (let i = 0; i < this.buckets.length; i++) {
        cumulative += series.counts[i] ?? 0;
        values.push({ metricName: `${this.name}_bucket`, labels: { ...base, le: this.buckets[i] as number }, value: cumulative });
      }
      values.push({ metricName: `${this.name}_bucket`, labels: { ...base, le: '+Inf' }, value: series.count });
      values.push({ metricName: `${this.name}_sum`, labels: base, value: series.sum });
      values.push({ metricName: `${this.name}_count`, labels: base, value: series.count });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  getForPromString(): ReturnType<HotHistogram['get']> {
    return this.get();
  }

  reset(): void {
    this.#series.clear();
  }
}

/**
 * Metrics only a cluster primary knows (state, kills, breakers, the audit file, the build): its
 * values are taken, the workers' copies dropped. Everything else is summed over the processes
 * (prom-client's default metrics carry their own aggregation).
 */
const PRIMARY_ONLY = new Set(['agentgate_build_info', 'agentgate_agent_killed', 'agentgate_breaker_state', 'agentgate_audit_writable', 'agentgate_audit_write_errors_total', 'agentgate_state_available', 'agentgate_state_unshared_changes']);

/** A worker's `registry.getMetricsAsJSON()`, as it crossed the IPC channel. */
export type MetricsJson = Awaited<ReturnType<Registry['getMetricsAsJSON']>>;

/** One exposition for a `workers: N` gateway: the primary's registry and every worker's. */
export async function aggregateExposition(primary: Registry, workers: readonly MetricsJson[]): Promise<string> {
  const withAggregator = (metrics: MetricsJson): MetricsJson => metrics.map((m) => (m.aggregator === undefined ? { ...m, aggregator: 'sum' } : m));
  const parts = [withAggregator(await primary.getMetricsAsJSON()), ...workers.map((w) => withAggregator(w.filter((m) => !PRIMARY_ONLY.has(m.name))))];
  return AggregatorRegistry.aggregate(parts).metrics();
}
