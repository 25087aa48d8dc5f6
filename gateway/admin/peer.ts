// Who is on the other end of an admin connection. Node has no SO_PEERCRED, so the kernel is asked
// through sock_diag (the `ss` tool of iproute2): our end's inode names the peer's inode, whose row
// names the process; its uid comes from /proc. The lookup must finish while the caller is still
// connected, so a changing admin call answers once it has (the change itself is in force before).
import { execFile } from 'node:child_process';
import { fstatSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { Socket } from 'node:net';

export interface PeerCredentials {
  readonly uid: number;
  readonly pid: number;
  /** The peer's program: the first word of its command line (e.g. `node`, `curl`). */
  readonly command: string;
}

const SS_ROW = /^\S+\s+\S+\s+\d+\s+\d+\s+(\S+)\s+(\d+)\s+(\S+)\s+(\d+)\s*(.*)$/;
const SS_PROCESS = /\("((?:[^"\\]|\\.)*)",pid=(\d+),fd=\d+\)/;

/** The peer of a connected Unix socket, or null when it cannot be established (never throws). */
export async function peerCredentials(socket: Socket, timeoutMs = 2_000): Promise<PeerCredentials | null> {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) return null;
  let inode: number;
  try {
    inode = fstatSync(fd).ino;
  } catch {
    return null;
  }
  const table = await runSs(timeoutMs);
  if (table === null) return null;
  const peer = findPeer(table, inode);
  if (peer === null) return null;
  const uid = await uidOf(peer.pid);
  if (uid === null) return null;
  // `ss` names the thread that holds the socket (Node 24 calls its main thread "MainThread"):
  // the program the operator ran is the first word of the command line.
  return { uid, pid: peer.pid, command: (await programOf(peer.pid)) ?? peer.command };
}

async function programOf(pid: number): Promise<string | null> {
  try {
    const argv0 = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0')[0] ?? '';
    const name = argv0.slice(argv0.lastIndexOf('/') + 1);
    return name === '' ? null : name;
  } catch {
    return null;
  }
}

/** From `ss -xpnH` output: the process holding the socket connected to `inode`. */
export function findPeer(table: string, inode: number): { pid: number; command: string } | null {
  const rows = new Map<number, { peer: number; process: string }>();
  for (const line of table.split('\n')) {
    const m = SS_ROW.exec(line.trim());
    if (m === null) continue;
    rows.set(Number(m[2]), { peer: Number(m[4]), process: m[5] ?? '' });
  }
  const ours = rows.get(inode);
  if (ours === undefined || ours.peer === 0) return null;
  const theirs = rows.get(ours.peer);
  const p = theirs === undefined ? null : SS_PROCESS.exec(theirs.process);
  if (p === null) return null;
  return { pid: Number(p[2]), command: (p[1] ?? '').replace(/\\(.)/g, '$1') };
}

// One `ss` at a time: lookups that arrive while it runs share the next run (which starts after
// them, so it sees their connections). `ss -p` walks every process's descriptors.
let running: Promise<string | null> | null = null;
let next: Promise<string | null> | null = null;

function runSs(timeoutMs: number): Promise<string | null> {
  if (running === null) {
    const run = spawnSs(timeoutMs);
    running = run;
    void run.finally(() => {
      if (running === run) running = null;
    });
    return run;
  }
  next ??= running.then(() => {
    next = null;
    return runSs(timeoutMs);
  });
  return next;
}

function spawnSs(timeoutMs: number): Promise<string | null> {
  return new Promise((resolve) => {
    execFile('ss', ['-xpnH'], { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (error, stdout) => resolve(error === null ? stdout : null));
  });
}

async function uidOf(pid: number): Promise<number | null> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const m = /^Uid:\s+(\d+)/m.exec(status);
    return m === null ? null : Number(m[1]);
  } catch {
    return null;
  }
}
