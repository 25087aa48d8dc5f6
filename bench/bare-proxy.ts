// The floor cost of any Node proxy: node:http in, undici Pool.stream out, no checks at all
// beyond dropping hop-by-hop headers. Run as its own process, pinned like the gateway.
//
// Given an audit file (`bare-proxy.js UPSTREAM AUDIT_FILE`), it is instead the floor of a proxy
// that keeps AgentGate's write-ahead audit and checks nothing: each answer's head goes out only
// once its line is written by AgentGate's own audit log at its default durability (hash chain,
// `fsync: batch`), the upstream body held meanwhile, as the gateway's plain path does. The bench
// reports it beside the bare proxy, so the share of the gap that the durable audit alone costs is
// a measured figure rather than a guess.
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Pool, type Dispatcher } from 'undici';
import { openAuditLog, type AuditLog } from '../gateway/telemetry/audit-log.js';

const upstream = process.argv[2];
const auditFile = process.argv[3];
if (upstream === undefined) throw new Error('usage: bare-proxy.js UPSTREAM_URL [AUDIT_FILE]');
const pool = new Pool(upstream, { connections: 256, pipelining: 1, keepAliveTimeout: 10_000 });

const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'host']);

function strip(headers: IncomingHttpHeaders | Record<string, string | string[] | undefined>): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const name in headers) {
    const value = headers[name];
    if (value !== undefined && !HOP.has(name)) out[name] = value;
  }
  return out;
}

function hasBody(req: IncomingMessage): boolean {
  return req.headers['content-length'] !== undefined ? req.headers['content-length'] !== '0' : req.headers['transfer-encoding'] !== undefined;
}

function plain(req: IncomingMessage, res: ServerResponse): void {
  pool.stream(
    { path: req.url ?? '/', method: req.method as 'GET', headers: strip(req.headers), body: hasBody(req) ? req : null },
    ({ statusCode, headers }) => {
      res.writeHead(statusCode, strip(headers));
      return res;
    },
    (error) => {
      if (error !== null && error !== undefined) {
        if (res.headersSent) res.destroy();
        else res.writeHead(502).end();
      }
    },
  );
}

/** One exchange of the audited floor: the upstream is paused at its head until the line is written. */
class Audited implements Dispatcher.DispatchHandler {
  readonly #req: IncomingMessage;
  readonly #res: ServerResponse;
  readonly #audit: AuditLog;
  readonly #started = process.hrtime.bigint();
  readonly #receivedAt = Date.now();
  /** Read at arrival, as the gateway does: a consumed request body may take the socket with it. */
  readonly #remote: string;
  #headSent = false;
  #ended = false;
  #failed = false;
  #held: Buffer[] = [];

  constructor(req: IncomingMessage, res: ServerResponse, audit: AuditLog) {
    this.#req = req;
    this.#res = res;
    this.#audit = audit;
    this.#remote = req.socket.remoteAddress ?? '';
  }

  onRequestStart(): void {}

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders): void {
    if (statusCode < 200) return;
    controller.pause();
    const req = this.#req;
    const res = this.#res;
    // A client gone before its answer is out releases the upstream connection, paused or not.
    res.once('close', () => {
      if (!res.writableFinished && !this.#ended) {
        this.#failed = true;
        controller.abort(new Error('the client closed the connection'));
      }
    });
    // The line AgentGate writes for the same allowed call, field for field.
    const written = this.#audit.append({
      time: new Date(this.#receivedAt).toISOString(),
      kind: 'proxy',
      requestId: randomUUID(),
      phase: undefined,
      agent: 'bench-agent',
      role: 'caller',
      onBehalfOf: null,
      jti: 'e296dbae-51af-423d-976e-4e275e05a3ff',
      backend: 'bench',
      method: req.method ?? 'GET',
      path: req.url ?? '/',
      decision: 'allow',
      reason: 'none',
      reasonDetail: null,
      route: `${req.method ?? 'GET'} ${req.url ?? '/'}`,
      shadow: undefined,
      approvalId: undefined,
      rpc: undefined,
      status: statusCode,
      upstreamStatus: statusCode,
      durationMs: Math.round(Number(process.hrtime.bigint() - this.#started) / 1000) / 1000,
      remote: this.#remote,
    });
    written.then(
      () => {
        if (this.#failed) return;
        res.writeHead(statusCode, strip(headers));
        this.#headSent = true;
        for (const chunk of this.#held) res.write(chunk);
        this.#held = [];
        if (this.#ended) {
          res.end();
          return;
        }
        res.on('drain', () => controller.resume());
        if (!res.writableNeedDrain) controller.resume();
      },
      () => {
        controller.abort(new Error('audit unavailable'));
        res.destroy();
      },
    );
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (!this.#headSent) {
      this.#held.push(chunk);
      controller.pause();
    } else if (!this.#res.write(chunk)) controller.pause();
  }

  onResponseEnd(): void {
    this.#ended = true;
    if (this.#headSent) this.#res.end();
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    const res = this.#res;
    if (this.#failed && res.destroyed) return; // aborted above: the client is gone
    process.stderr.write(`bare proxy + audit: ${String(error)}\n`);
    this.#failed = true;
    if (res.headersSent) res.destroy();
    else res.writeHead(502).end();
  }
}

const audit = auditFile === undefined ? null : await openAuditLog({ file: auditFile });

const server = createServer({ keepAliveTimeout: 60_000, requestTimeout: 0 }, (req, res) => {
  if (audit === null) return plain(req, res);
  pool.dispatch({ path: req.url ?? '/', method: req.method as 'GET', headers: strip(req.headers), body: hasBody(req) ? req : null }, new Audited(req, res, audit));
});
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address() as AddressInfo;
  process.send?.({ type: 'ready', port });
});
process.on('disconnect', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
