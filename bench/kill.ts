// Group 4: kill latency. Each cycle: the admin call `POST /agents/{id}/kill` over the Unix socket,
// then requests with the agent's token until the first refusal; the latency runs from sending the
// admin call to receiving that refusal. The agent is revived (and seen allowed again) between
// kills. A request allowed after the kill was answered would break the contract and is counted.
import { Pool } from 'undici';
import { adminCall } from '../gateway/admin/client.js';
import { BACKEND, PATHS } from './config.js';
import { SampleBuffer, latencyPercentiles, type LatencyPercentiles } from './stats.js';

export interface KillResult {
  readonly kills: number;
  /** Admin call sent -> first refused request received, ms. */
  readonly latency: LatencyPercentiles;
  /** Admin call sent -> admin answer received (the kill is durable by then), ms. */
  readonly adminCall: LatencyPercentiles;
  /** Requests allowed after the kill answer (must be 0). */
  readonly allowedAfterKill: number;
  /** Requests refused after the revive answer (must be 0). */
  readonly refusedAfterRevive: number;
}

export async function runKills(options: { gatewayUrl: string; socket: string; agent: string; token: string; kills: number }): Promise<KillResult> {
  const pool = new Pool(options.gatewayUrl, { connections: 2 });
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
  try {
    for (let i = 0; i < 20; i++) await call();
    for (let i = 0; i < options.kills; i++) {
      const t0 = performance.now();
      const killed = await adminCall(options.socket, 'POST', `/agents/${options.agent}/kill`, { reason: 'benchmark kill', operator: 'bench' });
      const answered = performance.now();
      if (killed.status !== 200) throw new Error(`kill answered ${killed.status}: ${JSON.stringify(killed.body)}`);
      for (;;) {
        const status = await call();
        if (status === 403) break;
        if (status !== 200) throw new Error(`unexpected status ${status} after a kill`);
        allowedAfterKill++;
      }
      latency.push(performance.now() - t0);
      admin.push(answered - t0);
      const revived = await adminCall(options.socket, 'POST', `/agents/${options.agent}/revive`, { operator: 'bench' });
      if (revived.status !== 200) throw new Error(`revive answered ${revived.status}`);
      if ((await call()) !== 200) refusedAfterRevive++;
    }
  } finally {
    await pool.close();
  }
  return { kills: options.kills, latency: latencyPercentiles(latency), adminCall: latencyPercentiles(admin), allowedAfterKill, refusedAfterRevive };
}
