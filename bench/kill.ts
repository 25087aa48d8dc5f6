// Group 4: kill latency, measured by a probe running during the call. Probe workers send requests
// with the agent's token back to back; each cycle sends the admin call `POST /agents/{id}/kill`
// over the Unix socket and times, from the moment it is sent, (a) the first refusal any probe
// receives (the kill in force) and (b) the admin answer (the kill durable, its audit line waiting
// for the kernel's word on the caller). The agent is revived, and seen allowed again, between
// kills. A probe request sent after the kill was answered and still allowed would break the
// contract and is counted, as is one sent after the revive was answered and still refused.
import { Pool } from 'undici';
import { adminCall } from '../gateway/admin/client.js';
import { BACKEND, PATHS } from './config.js';
import { SampleBuffer, latencyPercentiles, type LatencyPercentiles } from './stats.js';

export interface KillResult {
  readonly kills: number;
  /** Admin call sent -> first refusal received by the probe, ms (the kill in force). */
  readonly latency: LatencyPercentiles;
  /** Admin call sent -> admin answer received (the kill durable by then), ms. */
  readonly adminCall: LatencyPercentiles;
  /** Probe requests sent after the kill answer and still allowed (must be 0). */
  readonly allowedAfterKill: number;
  /** Probe requests sent after the revive answer and still refused (must be 0). */
  readonly refusedAfterRevive: number;
  /** Probe requests sent in all. */
  readonly probes: number;
}

/** Concurrent probe requests in flight during a kill. */
const PROBES = 2;

interface Cycle {
  readonly sentAt: number;
  killAnsweredAt: number;
  firstRefusedAt: number | null;
  reviveSentAt: number;
  reviveAnsweredAt: number;
  firstAllowedAfterRevive: number | null;
  onRefused: (() => void) | null;
  onAllowed: (() => void) | null;
}

export async function runKills(options: { gatewayUrl: string; socket: string; agent: string; token: string; kills: number }): Promise<KillResult> {
  const pool = new Pool(options.gatewayUrl, { connections: PROBES + 1, pipelining: 1 });
  const path = `/${BACKEND}${PATHS.small}`;
  const headers = { authorization: `Bearer ${options.token}` };
  const call = async (): Promise<number> => {
    const res = await pool.request({ method: 'GET', path, headers });
    await res.body.dump();
    return res.statusCode;
  };
  const latency = new SampleBuffer(options.kills);
  const admin = new SampleBuffer(options.kills);
  let allowedAfterKill = 0;
  let refusedAfterRevive = 0;
  let probes = 0;
  let cycle: Cycle | null = null;
  let running = true;
  let failure: Error | null = null;

  async function probe(): Promise<void> {
    while (running) {
      const sent = performance.now();
      const status = await call();
      const received = performance.now();
      probes++;
      const c = cycle;
      if (c === null) continue;
      if (status === 403) {
        if (c.firstRefusedAt === null && received >= c.sentAt) {
          c.firstRefusedAt = received;
          c.onRefused?.();
        }
        if (c.reviveAnsweredAt > 0 && sent > c.reviveAnsweredAt) refusedAfterRevive++;
      } else if (status === 200) {
        // Allowed although sent after the kill answer and answered before the revive was even sent.
        if (c.killAnsweredAt > 0 && c.reviveSentAt === 0 && sent > c.killAnsweredAt) allowedAfterKill++;
        if (c.reviveAnsweredAt > 0 && sent > c.reviveAnsweredAt && c.firstAllowedAfterRevive === null) {
          c.firstAllowedAfterRevive = received;
          c.onAllowed?.();
        }
      } else {
        failure ??= new Error(`unexpected status ${status} during the kill cycles`);
        c.onRefused?.();
        c.onAllowed?.();
      }
    }
  }

  const workers: Array<Promise<void>> = [];
  try {
    for (let i = 0; i < 20; i++) await call();
    for (let i = 0; i < PROBES; i++) workers.push(probe());
    for (let i = 0; i < options.kills && failure === null; i++) {
      const c: Cycle = { sentAt: performance.now(), killAnsweredAt: 0, firstRefusedAt: null, reviveSentAt: 0, reviveAnsweredAt: 0, firstAllowedAfterRevive: null, onRefused: null, onAllowed: null };
      const refused = new Promise<void>((resolve) => (c.onRefused = resolve));
      const allowed = new Promise<void>((resolve) => (c.onAllowed = resolve));
      cycle = c;
      const killed = await adminCall(options.socket, 'POST', `/agents/${options.agent}/kill`, { reason: 'benchmark kill', operator: 'bench' });
      c.killAnsweredAt = performance.now();
      if (killed.status !== 200) throw new Error(`kill answered ${killed.status}: ${JSON.stringify(killed.body)}`);
      await refused;
      if (failure !== null) break;
      latency.push((c.firstRefusedAt as number) - c.sentAt);
      admin.push(c.killAnsweredAt - c.sentAt);
      c.reviveSentAt = performance.now();
      const revived = await adminCall(options.socket, 'POST', `/agents/${options.agent}/revive`, { operator: 'bench' });
      c.reviveAnsweredAt = performance.now();
      if (revived.status !== 200) throw new Error(`revive answered ${revived.status}`);
      await allowed;
    }
  } finally {
    running = false;
    cycle?.onRefused?.();
    cycle?.onAllowed?.();
    await Promise.allSettled(workers);
    await pool.close();
  }
  if (failure !== null) throw failure;
  return { kills: options.kills, latency: latencyPercentiles(latency), adminCall: latencyPercentiles(admin), allowedAfterKill, refusedAfterRevive, probes };
}
