// The loopback backend every contestant talks to, run as its own process (pinned beside the
// proxy under test). Fixed bodies, a streaming download and a sink for uploads; it counts what it
// serves so the refusal flood can prove no refused call reached it. Talks to run.ts over IPC.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

const SMALL = Buffer.from(JSON.stringify({ ok: true, pad: 'x'.repeat(200 - 22) }));
const LARGE = Buffer.alloc(16 * 1024, 0x61);
const CHUNK = Buffer.alloc(64 * 1024, 0x62);
// About 18 KiB of JSON with fields a role masks (email, phone) beside ones it does not.
const CONTACTS = Buffer.from(
  JSON.stringify({
    contacts: Array.from({ length: 150 }, (_, i) => ({ id: i, name: `Contact ${i}`, company: `Company ${i % 7}`, email: `contact${i}@example.com`, phone: `+1-555-${String(i).padStart(4, '0')}`, tags: ['a', 'b'] })),
  }),
);

let requests = 0;
const byPath = new Map<string, number>();

function send(res: ServerResponse, body: Buffer, type = 'application/json'): void {
  res.writeHead(200, { 'content-type': type, 'content-length': String(body.length) });
  res.end(body);
}

function download(res: ServerResponse, size: number): void {
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(size) });
  let sent = 0;
  const pump = (): void => {
    while (sent < size) {
      const piece = Math.min(CHUNK.length, size - sent);
      sent += piece;
      if (!res.write(piece === CHUNK.length ? CHUNK : CHUNK.subarray(0, piece))) {
        res.once('drain', pump);
        return;
      }
    }
    res.end();
  };
  pump();
}

function handle(req: IncomingMessage, res: ServerResponse): void {
  requests++;
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  const path = q === -1 ? url : url.slice(0, q);
  byPath.set(path, (byPath.get(path) ?? 0) + 1);
  if (req.method === 'GET' && path === '/large') return send(res, LARGE, 'application/octet-stream');
  if (req.method === 'GET' && path === '/contacts') return send(res, CONTACTS);
  if (req.method === 'GET' && path === '/download') {
    const bytes = Number(new URLSearchParams(q === -1 ? '' : url.slice(q + 1)).get('bytes') ?? 0);
    return download(res, Number.isSafeInteger(bytes) && bytes > 0 ? bytes : 0);
  }
  if (req.method === 'POST') {
    let received = 0;
    req.on('data', (c: Buffer) => (received += c.length));
    req.on('end', () => (path === '/upload' ? send(res, Buffer.from(JSON.stringify({ received }))) : send(res, SMALL)));
    return;
  }
  send(res, SMALL);
}

const server = createServer({ keepAliveTimeout: 60_000, requestTimeout: 0 }, handle);
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address() as AddressInfo;
  process.send?.({ type: 'ready', port });
});
process.on('message', (message: { type?: string }) => {
  if (message.type === 'count') process.send?.({ type: 'count', requests, byPath: Object.fromEntries(byPath) });
});
process.on('disconnect', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
