// A raw HTTP/1.1 exchange over one TCP connection: the request bytes go out exactly as written
// (no client library normalizes dot segments or drops headers), the answer is parsed minimally.
import { connect } from 'node:net';

export interface RawResponse {
  readonly status: number;
  /** Lower-cased names; repeated headers joined with ", ". */
  readonly headers: Record<string, string>;
  readonly body: string;
  readonly text: string;
}

export function rawRequest(port: number, request: string, timeoutMs = 5000): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    socket.on('data', (d: Buffer) => chunks.push(d));
    socket.on('error', (error: NodeJS.ErrnoException) => {
      // The gateway may close while we still write a refused body; what it answered still counts.
      if (error.code !== 'EPIPE' && error.code !== 'ECONNRESET') reject(error);
    });
    socket.on('close', () => resolve(parse(Buffer.concat(chunks).toString('latin1'))));
    socket.setTimeout(timeoutMs, () => socket.destroy());
    socket.write(Buffer.from(request, 'latin1'));
  });
}

/** Build a request: `GET /path` plus headers; Host and Connection: close are added. */
export function buildRequest(method: string, target: string, headers: Record<string, string> = {}, body = ''): string {
  let head = `${method} ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\n`;
  for (const [name, value] of Object.entries(headers)) head += `${name}: ${value}\r\n`;
  if (body !== '' && !Object.keys(headers).some((h) => h.toLowerCase() === 'content-length')) head += `Content-Length: ${Buffer.byteLength(body)}\r\n`;
  const hasConnection = Object.keys(headers).some((h) => h.toLowerCase() === 'connection');
  return `${head}${hasConnection ? '' : 'Connection: close\r\n'}\r\n${body}`;
}

function parse(text: string): RawResponse {
  const split = text.indexOf('\r\n\r\n');
  const head = split === -1 ? text : text.slice(0, split);
  const body = split === -1 ? '' : text.slice(split + 4);
  const [statusLine = '', ...lines] = head.split('\r\n');
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    if (colon === -1) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
  }
  return { status: Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine)?.[1] ?? 0), headers, body, text };
}

/** An answer read off one connection, and whether the gateway closed it unasked. */
export interface RawAnswer {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: string;
  /** The gateway closed the connection (it was not asked to). */
  readonly closed: boolean;
}

/**
 * Send bytes on one connection; resolve when the gateway closes it, or (`untilAnswered`) as soon
 * as one whole answer framed by Content-Length arrived; `waitMs` bounds either wait.
 */
export function sendRaw(port: number, bytes: string | Buffer, options: { untilAnswered?: boolean; waitMs?: number } = {}): Promise<RawAnswer> {
  const waitMs = options.waitMs ?? 5000;
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let closed = false;
    const finish = (): void => {
      const text = Buffer.concat(chunks).toString('latin1');
      const split = text.indexOf('\r\n\r\n');
      const head = split === -1 ? text : text.slice(0, split);
      const [statusLine = '', ...lines] = head.split('\r\n');
      const headers: Record<string, string> = {};
      for (const line of lines) {
        const colon = line.indexOf(':');
        if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
      }
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(statusLine)?.[1] ?? 0), headers, body: split === -1 ? '' : text.slice(split + 4), closed });
    };
    socket.on('data', (d: Buffer) => {
      chunks.push(d);
      if (options.untilAnswered === true && answered(Buffer.concat(chunks))) {
        socket.removeAllListeners('close');
        socket.destroy();
        finish();
      }
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      closed = true;
      finish();
    });
    socket.setTimeout(waitMs, () => {
      socket.removeAllListeners('close');
      socket.destroy();
      finish();
    });
    socket.write(typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes);
  });
}


function answered(buf: Buffer): boolean {
  const end = buf.indexOf('\r\n\r\n');
  if (end === -1) return false;
  const length = /\r\ncontent-length: *(\d+)/i.exec(buf.subarray(0, end).toString('latin1'))?.[1];
  return length !== undefined && buf.length >= end + 4 + Number(length);
}
