// The CLI's side of the admin socket: one JSON call, with one-line errors an operator can act on.
import { existsSync } from 'node:fs';
import { request } from 'node:http';

export interface AdminResponse {
  readonly status: number;
  readonly body: Record<string, unknown>;
}

export class AdminClientError extends Error {
  /** `not_running` when no gateway answers on the socket (absent or stale socket). */
  readonly code: 'not_running' | 'failed';

  constructor(message: string, code: 'not_running' | 'failed' = 'failed') {
    super(message);
    this.name = 'AdminClientError';
    this.code = code;
  }
}

export function adminCall(socketPath: string, method: 'GET' | 'POST', path: string, body?: Record<string, unknown>, timeoutMs = 10_000): Promise<AdminResponse> {
  // Checked before connecting: the kernel's answer to a long or absent path is less clear than these.
  if (!existsSync(socketPath)) {
    return Promise.reject(new AdminClientError(`no admin socket at ${socketPath}: is the gateway running? (set --socket or AGENTGATE_SOCKET)`, 'not_running'));
  }
  if (Buffer.byteLength(socketPath) > 107) {
    return Promise.reject(new AdminClientError(`admin socket path ${socketPath} is longer than the 107 bytes Unix sockets allow: use a shorter path`));
  }
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = request(
      {
        socketPath,
        method,
        path,
        headers: payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
        timeout: timeoutMs,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          try {
            resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown> });
          } catch {
            reject(new AdminClientError(`the admin socket ${socketPath} answered something that is not JSON (status ${res.statusCode ?? 0})`));
          }
        });
      },
    );
    req.on('timeout', () => req.destroy(new AdminClientError(`the admin socket ${socketPath} did not answer within ${timeoutMs} ms`)));
    req.on('error', (error: NodeJS.ErrnoException) => {
      if (error instanceof AdminClientError) return reject(error);
      switch (error.code) {
        case 'ENOENT':
          return reject(new AdminClientError(`no admin socket at ${socketPath}: is the gateway running? (set --socket or AGENTGATE_SOCKET)`, 'not_running'));
        case 'EACCES':
        case 'EPERM':
          return reject(new AdminClientError(`permission denied on ${socketPath}: run as the gateway's user (the socket is mode 0600)`));
        case 'ECONNREFUSED':
          return reject(new AdminClientError(`nothing is listening on ${socketPath} (a stale socket): is the gateway running?`, 'not_running'));
        default:
          return reject(new AdminClientError(`admin socket ${socketPath}: ${error.message}`));
      }
    });
    req.end(payload);
  });
}
