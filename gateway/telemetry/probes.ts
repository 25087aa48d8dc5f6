// The metrics listener's routes: Prometheus `/metrics`, liveness `/healthz`, readiness `/readyz`.
// Readiness is what the composition root says it is (state store healthy, signing keys present);
// a failed exposition answers 500 and is logged, never crashes the listener.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';

export interface Readiness {
  readonly ready: boolean;
  /** The JSON body's members besides `status`. */
  readonly detail: Record<string, unknown>;
}

export interface ProbeDeps {
  readonly metrics: Metrics;
  readonly log: Logger;
  readiness(): Readiness;
}

export function createProbeHandler(deps: ProbeDeps): (req: IncomingMessage, res: ServerResponse) => void {
  const { metrics, log } = deps;
  return (req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (path === '/metrics') {
      metrics.exposition().then(
        (text) => res.writeHead(200, { 'content-type': metrics.contentType }).end(text),
        (error: unknown) => {
          log.error('metrics exposition failed', { error });
          res.writeHead(500).end();
        },
      );
    } else if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
    } else if (path === '/readyz') {
      const { ready, detail } = deps.readiness();
      res.writeHead(ready ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify({ status: ready ? 'ready' : 'not_ready', ...detail }));
    } else {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not found"}');
    }
  };
}
