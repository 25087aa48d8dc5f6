// A backend on a bare TCP server (net.createServer) that records every byte it receives, before
// any HTTP parser could drop or fold one, and answers each complete HTTP/1.1 request with 200 JSON.
// Its own minimal parser frames requests by Content-Length or chunked encoding, nothing else.
import { createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import type { Test } from 'tap';

export interface RawSeenRequest {
  readonly requestLine: string;
  /** Header names and values exactly as received, in order. */
  readonly headers: ReadonlyArray<readonly [string, string]>;
  readonly body: Buffer;
}

export interface RawBackend {
  readonly url: string;
  readonly port: number;
  /** Every byte received, across all connections, in arrival order. */
  bytes(): Buffer;
  readonly requests: RawSeenRequest[];
  readonly server: Server;
}

/**
 * A bare TCP server on 127.0.0.1 handing each connection to `onSocket`; its connections are
 * destroyed and the server closed at the test's teardown.
 */
export async function listenRaw(t: Pick<Test, 'teardown'>, onSocket: (socket: Socket) => void): Promise<{ server: Server; port: number; url: string }> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    onSocket(socket);
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  t.teardown(
    () =>
      new Promise<void>((done) => {
        for (const s of sockets) s.destroy();
        server.close(() => done());
      }),
  );
  const port = (server.address() as AddressInfo).port;
  return { server, port, url: `http://127.0.0.1:${port}` };
}

export async function startRawBackend(t: Pick<Test, 'teardown'>): Promise<RawBackend> {
  const chunks: Buffer[] = [];
  const requests: RawSeenRequest[] = [];
  const { server, port, url } = await listenRaw(t, (socket) => {
    let pending = Buffer.alloc(0);
    socket.on('data', (data: Buffer) => {
      chunks.push(Buffer.from(data));
      pending = Buffer.concat([pending, data]);
      for (;;) {
        const parsed = parseOne(pending);
        if (parsed === null) return;
        if (parsed === 'bad') {
          socket.destroy();
          return;
        }
        pending = pending.subarray(parsed.used);
        requests.push(parsed.request);
        const body = JSON.stringify({ ok: true, requestLine: parsed.request.requestLine });
        socket.write(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
      }
    });
  });
  return { url, port, bytes: () => Buffer.concat(chunks), requests, server };
}

/** One complete request at the start of `buf`, null when more bytes are needed, 'bad' when unframeable. */
function parseOne(buf: Buffer): { request: RawSeenRequest; used: number } | null | 'bad' {
  const end = buf.indexOf('\r\n\r\n');
  if (end === -1) return null;
  const lines = buf.subarray(0, end).toString('latin1').split('\r\n');
  const requestLine = lines.shift() ?? '';
  const headers: Array<[string, string]> = [];
  for (const line of lines) {
    const colon = line.indexOf(':');
    if (colon <= 0) return 'bad';
    headers.push([line.slice(0, colon), line.slice(colon + 1).trim()]);
  }
  const find = (name: string): string | undefined => headers.find(([n]) => n.toLowerCase() === name)?.[1];
  const start = end + 4;
  const te = find('transfer-encoding');
  if (te !== undefined) {
    if (te.toLowerCase() !== 'chunked') return 'bad';
    const parts: Buffer[] = [];
    let at = start;
    for (;;) {
      const lineEnd = buf.indexOf('\r\n', at);
      if (lineEnd === -1) return null;
      const size = Number.parseInt(buf.subarray(at, lineEnd).toString('latin1').split(';')[0] ?? '', 16);
      if (!Number.isInteger(size) || size < 0) return 'bad';
      at = lineEnd + 2;
      if (size === 0) {
        const trailerEnd = buf.indexOf('\r\n', at);
        if (trailerEnd === -1) return null;
        return { request: { requestLine, headers, body: Buffer.concat(parts) }, used: trailerEnd + 2 };
      }
      if (buf.length < at + size + 2) return null;
      parts.push(Buffer.from(buf.subarray(at, at + size)));
      at += size + 2;
    }
  }
  const length = Number(find('content-length') ?? '0');
  if (!Number.isInteger(length) || length < 0) return 'bad';
  if (buf.length < start + length) return null;
  return { request: { requestLine, headers, body: Buffer.from(buf.subarray(start, start + length)) }, used: start + length };
}
