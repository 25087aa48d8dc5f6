// The load generator, run as its own process pinned to the other core: autocannon's programmatic
// API at a fixed number of connections for a fixed time (closed loop: each connection sends its
// next request when the last one is answered). Every response's latency is kept (in ms, with
// autocannon's sub-millisecond timing) so percentiles are exact, not 1 ms buckets.
// With `pace`, an open loop instead: requests are sent on a fixed schedule, `pace` a second, over
// at most `connections` connections (undici), and each latency is timed from the moment its
// request was due, so a slow answer that holds back the ones behind it counts for all of them.
import { createRequire } from 'node:module';
import { Pool } from 'undici';
import { SampleBuffer, latencyPercentiles, type LatencyPercentiles } from './stats.js';

export interface LoadRequest {
  readonly type: 'run';
  readonly id: number;
  readonly url: string;
  readonly method: 'GET' | 'POST';
  readonly headers: Record<string, string>;
  readonly body?: string;
  readonly connections: number;
  readonly durationSeconds: number;
  /** Responses with this status are the ones latencies are kept for. */
  readonly expectStatus: number;
  /** Requests a second on a fixed schedule (open loop); absent: closed loop, as fast as answered. */
  readonly pace?: number;
}

export interface LoadResult {
  readonly type: 'result';
  readonly id: number;
  /** Responses received within the run. */
  readonly responses: number;
  readonly expected: number;
  readonly seconds: number;
  readonly rps: number;
  /** Over responses with the expected status, ms. */
  readonly latency: LatencyPercentiles;
  readonly statusCounts: Record<string, number>;
  readonly errors: number;
  readonly timeouts: number;
}

interface AutocannonInstance {
  on(event: 'response', listener: (client: unknown, statusCode: number, bytes: number, ms: number) => void): void;
}
interface AutocannonResult {
  readonly errors: number;
  readonly timeouts: number;
}
type Autocannon = (options: Record<string, unknown>, done: (error: Error | null, result: AutocannonResult) => void) => AutocannonInstance;

const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;

function run(request: LoadRequest): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    const samples = new SampleBuffer(1 << 18);
    const statusCounts: Record<string, number> = {};
    let responses = 0;
    const started = performance.now();
    const instance = autocannon(
      {
        url: request.url,
        method: request.method,
        headers: request.headers,
        ...(request.body === undefined ? {} : { body: request.body }),
        connections: request.connections,
        pipelining: 1,
        duration: request.durationSeconds,
        timeout: 10,
      },
      (error, result) => {
        if (error !== null) return reject(error);
        const seconds = (performance.now() - started) / 1000;
        resolve({
          type: 'result',
          id: request.id,
          responses,
          expected: samples.length,
          seconds,
          rps: responses / request.durationSeconds,
          latency: latencyPercentiles(samples),
          statusCounts,
          errors: result.errors,
          timeouts: result.timeouts,
        });
      },
    );
    instance.on('response', (_client, statusCode, _bytes, ms) => {
      responses++;
      statusCounts[statusCode] = (statusCounts[statusCode] ?? 0) + 1;
      if (statusCode === request.expectStatus) samples.push(ms);
    });
  });
}

/** The open loop: request i is due at start + i / pace; its latency runs from then. */
async function runPaced(request: LoadRequest & { pace: number }): Promise<LoadResult> {
  const url = new URL(request.url);
  const pool = new Pool(url.origin, { connections: request.connections, pipelining: 1 });
  const samples = new SampleBuffer(1 << 18);
  const statusCounts: Record<string, number> = {};
  const total = Math.max(1, Math.floor(request.pace * request.durationSeconds));
  const interval = 1000 / request.pace;
  let responses = 0;
  let errors = 0;
  let settled = 0;
  let sent = 0;
  const started = performance.now();
  try {
    await new Promise<void>((resolve) => {
      const settle = (): void => {
        if (++settled === total) resolve();
      };
      const send = (due: number): void => {
        pool
          .request({ path: url.pathname + url.search, method: request.method, headers: request.headers, ...(request.body === undefined ? {} : { body: request.body }), headersTimeout: 10_000, bodyTimeout: 10_000 })
          .then(
            async (answer) => {
              await answer.body.dump({ limit: Number.MAX_SAFE_INTEGER });
              responses++;
              statusCounts[answer.statusCode] = (statusCounts[answer.statusCode] ?? 0) + 1;
              if (answer.statusCode === request.expectStatus) samples.push(performance.now() - due);
            },
            () => {
              errors++;
            },
          )
          .finally(settle);
      };
      // Every request due by now goes out; then sleep until the next is due (timers have 1 ms
      // granularity, so requests leave in groups of at most a millisecond's worth).
      const tick = (): void => {
        const now = performance.now();
        while (sent < total && started + sent * interval <= now) send(started + sent++ * interval);
        if (sent < total) setTimeout(tick, Math.max(0, started + sent * interval - performance.now()));
      };
      tick();
    });
  } finally {
    await pool.close();
  }
  const seconds = (performance.now() - started) / 1000;
  return {
    type: 'result',
    id: request.id,
    responses,
    expected: samples.length,
    seconds,
    rps: responses / seconds,
    latency: latencyPercentiles(samples),
    statusCounts,
    errors,
    timeouts: 0,
  };
}

process.on('message', (message: LoadRequest) => {
  if (message.type !== 'run') return;
  (message.pace === undefined ? run(message) : runPaced({ ...message, pace: message.pace })).then(
    (result) => process.send?.(result),
    (error: unknown) => process.send?.({ type: 'result', id: message.id, error: String(error) }),
  );
});
process.on('disconnect', () => process.exit(0));
process.send?.({ type: 'ready' });
