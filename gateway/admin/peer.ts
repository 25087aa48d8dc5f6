// Who is on the other end of an admin connection. Node has no SO_PEERCRED, so the kernel is asked
// through sock_diag (the `ss` tool of iproute2): our end's inode names the peer's inode, whose row
// names the process; its uid comes from /proc. The lookup must finish while the caller is still
// connected, so a changing admin call answers once it has (the change itself is in force before).
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fstatSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { setPriority } from 'node:os';

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

/** Most `ss` output a lookup reads (every Unix socket of the host). */
const MAX_TABLE = 16 * 1024 * 1024;

/**
 * `ss` runs in a small shell started once (`preparePeerLookups`), which forks it for each lookup:
 * forking the gateway itself (100 MB and more) stops its event loop for several ms, right when a
 * kill has just taken effect and the agent's next requests are waiting to be refused. Each run
 * ends with a marker holding a random token and `ss`'s exit status, so no process name in the
 * table can pass for the end. A helper that fails or stalls is killed and started again later.
 * It runs at the lowest CPU priority (nice 19), and so does every `ss` it forks.
 */
interface Helper {
  readonly child: ChildProcess;
  readonly marker: string;
  /** The lookup waiting for its table, or null. */
  waiting: { out: string; done: (table: string | null) => void } | null;
}

let helper: Helper | null = null;

function startHelper(): Helper | null {
  const token = randomBytes(16).toString('hex');
  const marker = `--agentgate-ss-end-${token}--`;
  let child: ChildProcess;
  try {
    child = spawn('sh', ['-c', `while IFS= read -r _; do ss -xpnH 2>/dev/null; printf '\\n%s %s\\n' '${marker}' "$?"; done`], { stdio: ['pipe', 'pipe', 'ignore'] });
  } catch {
    return null;
  }
  // `ss -p` reads every process's descriptors: a few ms of CPU per lookup. At the lowest priority
  // it takes none from the gateway when they share a core (a kill's refusals go out first; the
  // admin answer, which waits for the lookup, is what waits).
  if (child.pid !== undefined) {
    try {
      setPriority(child.pid, 19);
    } catch {
      // Not allowed here: it runs at the gateway's priority.
    }
  }
  const h: Helper = { child, marker, waiting: null };
  const fail = (): void => {
    if (helper === h) helper = null;
    const w = h.waiting;
    h.waiting = null;
    w?.done(null);
  };
  child.on('error', fail);
  child.on('exit', fail);
  child.stdin?.on('error', fail);
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    const w = h.waiting;
    if (w === null) return;
    w.out += chunk;
    const end = w.out.indexOf(`\n${marker} `);
    if (end < 0) {
      if (w.out.length > MAX_TABLE) {
        child.kill('SIGKILL');
        fail();
      }
      return;
    }
    const close = w.out.indexOf('\n', end + 1);
    if (close < 0) return;
    const status = w.out.slice(end + marker.length + 2, close).trim();
    h.waiting = null;
    w.done(status === '0' ? w.out.slice(0, end + 1) : null);
  });
  // The helper never keeps the gateway running; it ends when its input closes with the gateway.
  child.unref();
  (child.stdin as unknown as { unref?: () => void } | null)?.unref?.();
  (child.stdout as unknown as { unref?: () => void } | null)?.unref?.();
  return h;
}

/** Start the lookup helper now, while nothing waits on it (the admin socket's start). */
export function preparePeerLookups(): void {
  helper ??= startHelper();
}

/** The lookup helper's pid, or null when none runs (tests kill it to see it come back). */
export function peerLookupHelperPid(): number | null {
  return helper?.child.pid ?? null;
}

/** Stop the lookup helper (the gateway's stop). */
export function stopPeerLookups(): void {
  const h = helper;
  helper = null;
  h?.child.kill();
}

function spawnSs(timeoutMs: number): Promise<string | null> {
  helper ??= startHelper();
  const h = helper;
  if (h === null || h.waiting !== null || h.child.stdin === null) return Promise.resolve(null);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      // Stalled: start afresh next time.
      if (helper === h) helper = null;
      h.child.kill('SIGKILL');
      if (h.waiting !== null) {
        h.waiting = null;
        resolve(null);
      }
    }, timeoutMs);
    timer.unref();
    h.waiting = {
      out: '',
      done: (table) => {
        clearTimeout(timer);
        resolve(table);
      },
    };
    h.child.stdin?.write('\n');
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
