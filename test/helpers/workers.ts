// Helpers for the `workers: N` process tests: which worker processes serve, and which of them
// holds a given connection (read from /proc, Linux only).
import { readFile, readdir, readlink } from 'node:fs/promises';
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
