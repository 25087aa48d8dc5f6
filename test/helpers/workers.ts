// Helpers for the `workers: N` process tests: which worker processes serve, and which of them
// holds a given connection (read from /proc, Linux only).
import { readFile, readdir, readlink } from 'node:fs/promises';
import { request as rawRequest } from 'node:http';
import type { ServedGateway } from './process.js';

/** Pids of the serving workers, from their `worker listening` log lines (the newest per slot). */
export function workerPids(gw: ServedGateway): Map<number, number> {
  const bySlot = new Map<number, number>();
  for (const line of gw.output().split('\n')) {
    if (!line.includes('"worker listening"')) continue;
    const entry = JSON.parse(line) as { pid: number; worker: number };
    bySlot.set(entry.worker, entry.pid);
  }
  return bySlot;
}

export async function until<T>(what: string, probe: () => T | null | Promise<T | null>, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== null) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** The process holding the server side of the TCP connection from client port `clientPort` to `serverPort`. */
export async function ownerOf(serverPort: number, clientPort: number, pids: readonly number[]): Promise<number | null> {
  const hex = (port: number): string => port.toString(16).toUpperCase().padStart(4, '0');
  const table = await readFile('/proc/net/tcp', 'utf8');
  let inode: string | null = null;
  for (const row of table.split('\n').slice(1)) {
    const cols = row.trim().split(/\s+/);
    if (cols.length < 10) continue;
    if (cols[1]?.endsWith(`:${hex(serverPort)}`) && cols[2]?.endsWith(`:${hex(clientPort)}`)) inode = cols[9] ?? null;
  }
  if (inode === null || inode === '0') return null;
  for (const pid of pids) {
    const fds = await readdir(`/proc/${pid}/fd`).catch(() => [] as string[]);
    for (const fd of fds) if ((await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '')) === `socket:[${inode}]`) return pid;
  }
  return null;
}

/**
 * One call to `/crm/contacts` with `bearer` on its own connection: its status, its body and the
 * worker that served it. The connection is held open (keep-alive; `agent: false` would ask the
 * gateway to close it) until the owner is looked up, before the body is read: the client closes
 * its socket once the response ends.
 */
export function callSeen(gw: ServedGateway, bearer: string): Promise<{ status: number; body: string; pid: number | null }> {
  const port = Number(new URL(gw.url).port);
  return new Promise((resolve, reject) => {
    const req = rawRequest(`${gw.url}/crm/contacts`, { headers: { authorization: `Bearer ${bearer}`, connection: 'keep-alive' }, agent: false });
    req.on('error', reject);
    req.on('response', (res) => {
      ownerOf(port, req.socket?.localPort ?? 0, [...workerPids(gw).values()]).then((pid) => {
        let body = '';
        res.setEncoding('utf8').on('data', (d: string) => (body += d));
        res.on('end', () => {
          req.socket?.destroy();
          resolve({ status: res.statusCode ?? 0, body, pid });
        });
      }, reject);
    });
    req.end();
  });
}
