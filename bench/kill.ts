// Group 4: kill latency, measured by a probe running during the call. Probe workers (PROBES
// requests in flight, each sent as soon as the previous one of its worker returns, so their sends
// are staggered) use the agent's token; each cycle sends the admin call `POST /agents/{id}/kill`
// over the Unix socket and times, from the moment it is sent:
//  - the kill in force, bracketed: it came no later than the first refused probe request was
//    received (`latency`, the bar's figure: an upper bound that includes that request's own
//    round trip and write-ahead audit line), and after the last probe request that was still
//    allowed was sent (`allowedSent`, a lower bound); `refusedSent` is when the first refused
//    probe request was sent (0 when it went out before the kill call and was checked after it);
//    requests in flight when the kill lands may be cut (connection closed): counted apart;
//  - the admin answer (the kill durable, its audit line waiting for the kernel's word on the caller). The agent is revived, and seen allowed again, between
// kills. A probe request sent after the kill was answered and still allowed would break the
// contract and is counted, as is one sent after the revive was answered and still refused.
import { Pool } from 'undici';
import { adminCall } from '../gateway/admin/client.js';
import { BACKEND, PATHS } from './config.js';
import { SampleBuffer, latencyPercentiles, type LatencyPercentiles } from './stats.js';

export interface KillResult {
  readonly kills: number;
  /** Admin call sent -> first refusal received by the probe, ms (the kill in force by then: upper bound). */
  readonly latency: LatencyPercentiles;
  /** Admin call sent -> send of the earliest-sent refused probe request, ms (0 when sent before the call). */
  readonly refusedSent: LatencyPercentiles;
  /** Admin call sent -> send of the last probe request still allowed, ms (the kill not yet in force: lower bound). */
  readonly allowedSent: LatencyPercentiles;
  /** Admin call sent -> admin answer received (the kill durable by then), ms. */
  readonly adminCall: LatencyPercentiles;
  /** Probe requests sent after the kill answer and still allowed (must be 0). */
  readonly allowedAfterKill: number;
  /** Probe requests sent after the revive answer and still refused (must be 0). */
  readonly refusedAfterRevive: number;
  /** Probe requests sent in all. */
  readonly probes: number;
  /** Probe requests in flight when a kill arrived and cut by it (connection closed). */
  readonly cut: number;
}

const CUT = -1;

/** Concurrent probe requests in flight during a kill. */
export const PROBES = 8;

interface Cycle {
  readonly sentAt: number;
  killAnsweredAt: number;
  firstRefusedAt: number | null;
  /** Earliest send time of a refused probe request, and latest of an allowed one sent after the call. */
  refusedSentAt: number | null;
  allowedSentAt: number;
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
  /** The status, or CUT when the connection was closed under the request (a kill cuts the agent's calls in flight). */
  const call = async (): Promise<number> => {
    try {
      const res = await pool.request({ method: 'GET', path, headers });
      await res.body.dump();
      return res.statusCode;
    } catch {
      return CUT;
    }
  };
  const latency = new SampleBuffer(options.kills);
  const refusedSent = new SampleBuffer(options.kills);
  const allowedSent = new SampleBuffer(options.kills);
  const admin = new SampleBuffer(options.kills);
  /** Send times of the probe requests in flight, and how to wait for them. */
  const inFlight = new Map<number, Promise<void>>();
  let nextProbe = 0;
  let allowedAfterKill = 0;
  let refusedAfterRevive = 0;
  let probes = 0;
  let cut = 0;
  let cycle: Cycle | null = null;
  let running = true;
  let failure: Error | null = null;

  async function probe(): Promise<void> {
    while (running) {
      const sent = performance.now();
      const id = nextProbe++;
      const answer = call();
      inFlight.set(
        id,
        answer.then(
          () => undefined,
          () => undefined,
        ),
      );
      let status: number;
      try {
        status = await answer;
      } finally {
        inFlight.delete(id);
      }
      const received = performance.now();
      probes++;
      const c = cycle;
      if (c === null) continue;
      if (status === 403) {
        if (c.reviveSentAt === 0 && received >= c.sentAt) c.refusedSentAt = Math.min(c.refusedSentAt ?? sent, sent);
        if (c.firstRefusedAt === null && received >= c.sentAt) {
          c.firstRefusedAt = received;
          c.onRefused?.();
        }
        if (c.reviveAnsweredAt > 0 && sent > c.reviveAnsweredAt) refusedAfterRevive++;
      } else if (status === 200) {
        if (c.reviveSentAt === 0 && sent >= c.sentAt) c.allowedSentAt = Math.max(c.allowedSentAt, sent);
        // Allowed although sent after the kill answer and answered before the revive was even sent.
        if (c.killAnsweredAt > 0 && c.reviveSentAt === 0 && sent > c.killAnsweredAt) allowedAfterKill++;
        if (c.reviveAnsweredAt > 0 && sent > c.reviveAnsweredAt && c.firstAllowedAfterRevive === null) {
          c.firstAllowedAfterRevive = received;
          c.onAllowed?.();
        }
      } else if (status === CUT && c.reviveSentAt === 0 && (c.killAnsweredAt === 0 || sent < c.killAnsweredAt)) {
        // In flight when the kill arrived and cut by it: neither allowed nor refused.
        cut++;
      } else {
        failure ??= new Error(`unexpected ${status === CUT ? 'closed connection' : `status ${status}`} during the kill cycles`);
        c.onRefused?.();
        c.onAllowed?.();
      }
    }
  }

  const workers: Array<Promise<void>> = [];
  try {
    for (let i = 0; i < 20; i++) await call();
    for (let i = 0; i < PROBES; i++) {
      workers.push(probe());
      // Staggered from the start: one request goes out, then the next a little later.
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    for (let i = 0; i < options.kills && failure === null; i++) {
      const c: Cycle = { sentAt: performance.now(), killAnsweredAt: 0, firstRefusedAt: null, refusedSentAt: null, allowedSentAt: 0, reviveSentAt: 0, reviveAnsweredAt: 0, firstAllowedAfterRevive: null, onRefused: null, onAllowed: null };
      const refused = new Promise<void>((resolve) => (c.onRefused = resolve));
      const allowed = new Promise<void>((resolve) => (c.onAllowed = resolve));
      cycle = c;
      const killed = await adminCall(options.socket, 'POST', `/agents/${options.agent}/kill`, { reason: 'benchmark kill', operator: 'bench' });
      c.killAnsweredAt = performance.now();
      if (killed.status !== 200) throw new Error(`kill answered ${killed.status}: ${JSON.stringify(killed.body)}`);
      await refused;
      if (failure !== null) break;
      // Requests sent before the first refusal came back may still be out (an earlier-sent one
      // refused, or a later-sent one allowed): their answers belong to the bracket.
      await Promise.all([...inFlight.values()]);
      latency.push((c.firstRefusedAt as number) - c.sentAt);
      refusedSent.push(Math.max(0, (c.refusedSentAt ?? c.sentAt) - c.sentAt));
      allowedSent.push(Math.max(0, c.allowedSentAt - c.sentAt));
      admin.push(c.killAnsweredAt - c.sentAt);
      c.reviveSentAt = performance.now();
      const revived = await adminCall(options.socket, 'POST', `/agents/${options.agent}/revive`, { operator: 'bench' });
      c.reviveAnsweredAt = performance.now();
      if (revived.status !== 200) throw new Error(`revive answered ${revived.status}`);
      await allowed;
      // Nothing from this cycle may land in the next one (a request refused before the revive
      // and answered after the next kill was sent would look like that kill's refusal).
      await Promise.all([...inFlight.values()]);
    }
  } finally {
    running = false;
    cycle?.onRefused?.();
    cycle?.onAllowed?.();
    await Promise.allSettled(workers);
    await pool.close();
  }
  if (failure !== null) throw failure;
  return { kills: options.kills, latency: latencyPercentiles(latency), refusedSent: latencyPercentiles(refusedSent), allowedSent: latencyPercentiles(allowedSent), adminCall: latencyPercentiles(admin), allowedAfterKill, refusedAfterRevive, probes, cut };
}
