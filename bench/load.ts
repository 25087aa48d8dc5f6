// The load generator, run as its own process pinned to the other core: autocannon's programmatic
// API at a fixed number of connections for a fixed time. Every response's latency is kept (in ms,
// with autocannon's sub-millisecond timing) so percentiles are exact, not 1 ms buckets.
import { createRequire } from 'node:module';
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

process.on('message', (message: LoadRequest) => {
  if (message.type !== 'run') return;
  run(message).then(
    (result) => process.send?.(result),
    (error: unknown) => process.send?.({ type: 'result', id: message.id, error: String(error) }),
  );
});
process.on('disconnect', () => process.exit(0));
process.send?.({ type: 'ready' });
