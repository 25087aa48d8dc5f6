// The admin listener: HTTP/1.1 over a Unix socket (so `curl --unix-socket` works), mode 0600 in
// a 0700 folder. A live gateway already on the path stops the start; a stale socket is removed.
import { createConnection } from 'node:net';
import { createServer, STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { chmod, mkdir, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Duplex } from 'node:stream';
import type { AdminProblemCode } from '../errors.js';
import { renderAdminProblem } from '../problem.js';
import type { Logger } from '../telemetry/log.js';
import { preparePeerLookups, stopPeerLookups } from './peer.js';
import { AdminSocketInUseError } from './errors.js';

export interface AdminSocket {
  readonly path: string;
  close(): Promise<void>;
}

export async function openAdminSocket(
  path: string,
  handler: (req: IncomingMessage, res: ServerResponse) => Promise<void>,
  log: Logger,
): Promise<AdminSocket> {
  // sun_path holds 108 bytes with the terminating NUL; a longer path binds somewhere else.
  if (Buffer.byteLength(path) > 107) {
    throw new Error(`admin socket path ${path} is ${Buffer.byteLength(path)} bytes; Unix sockets allow at most 107: set a shorter admin.socket or AGENTGATE_ADMIN_SOCKET`);
  }
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  if (await isLive(path)) throw new AdminSocketInUseError(path);
  await unlink(path).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== 'ENOENT') throw error;
  });
  // The answer in progress on each connection: a parser error after its head went out cuts the
  // connection instead of writing a second answer into it.
  const serving = new WeakMap<Duplex, ServerResponse>();
  const server: Server = createServer((req, res) => {
    serving.set(req.socket, res);
    handler(req, res).catch((error: unknown) => log.error('admin call failed', { error }));
  });
  // What node's parser refuses (bad bytes, oversized head, a head that never completes) gets a
  // catalog problem document like any other refused admin call, not node's bare status line.
  server.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex) => {
    const open = serving.get(socket);
    if (!socket.writable || error.code === 'ECONNRESET' || (open !== undefined && open.headersSent && !open.writableFinished)) {
      socket.destroy();
      return;
    }
    const [code, detail] = adminParserRefusal(error);
    const problem = renderAdminProblem(code, detail);
    let head = `HTTP/1.1 ${problem.status} ${STATUS_CODES[problem.status] ?? 'Error'}\r\n`;
    for (const [name, value] of Object.entries(problem.headers)) head += `${name}: ${value}\r\n`;
    socket.end(`${head}connection: close\r\n\r\n${problem.body}`);
  });
  // Nobody but the owner may connect, even in the moment between bind and chmod.
  const previous = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } finally {
    process.umask(previous);
  }
  await chmod(path, 0o600);
  // Changing calls ask the kernel who called; the helper that asks is started now, not by a kill.
  preparePeerLookups();
  return {
    path,
    async close() {
      stopPeerLookups();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** The catalog code and detail for a request node's HTTP parser refused on the admin socket. */
export function adminParserRefusal(error: NodeJS.ErrnoException): [AdminProblemCode, string] {
  const code = String(error.code ?? error.message);
  if (code === 'HPE_HEADER_OVERFLOW') return ['headers_too_large', 'the request headers are too large'];
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT') return ['request_timeout', 'the request did not arrive in time'];
  return ['invalid_request', 'the request could not be parsed as HTTP/1.1'];
}

/** True when something answers on the socket path. */
function isLive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection(path);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}
