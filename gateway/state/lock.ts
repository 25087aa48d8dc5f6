// One writer per state file. The memory driver keeps its state in one process and writes the
// whole file on every change; a second writer (another gateway on the same file, or an offline
// CLI change next to a gateway whose admin socket it could not reach) would silently overwrite
// the first one's kills and revocations. So a writer holds `<file>.lock`:
//
// - created with O_EXCL, holding {pid, host, boot, started}; its mtime is refreshed every
//   `heartbeatMs` while held, and it is removed on close;
// - a lock whose holder is provably gone (same host and boot, and that pid is not running, or runs
//   a different process than the one recorded: kill -9, a restarted container) is taken at once;
// - a lock whose holder provably runs (same host and boot, that very process) is refused at once;
// - a lock from another host (a shared volume) is taken only once its heartbeat is older than
//   `staleMs`: the opener waits that long for it, then refuses if it is still being refreshed.
//
// Readers (`explain`, `review`) open the file without the lock and never write it.
import { link, open, readFile, rename, stat, unlink, utimes } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { StateFileLockedError } from './errors.js';

export interface LockHolder {
  readonly pid: number;
  readonly host: string;
  /** The kernel boot the pid belongs to (Linux), or null. */
  readonly boot: string | null;
  /** The holder's process start, in clock ticks since boot (Linux), or null. */
  readonly ticks: number | null;
  /** ms since the epoch the lock was taken. */
  readonly started: number;
}

export interface FileLock {
  readonly path: string;
  release(): Promise<void>;
}

export interface LockOptions {
  /** How often the holder refreshes the lock's mtime (ms). */
  readonly heartbeatMs?: number;
  /** A foreign holder whose heartbeat is older than this is gone (ms). */
  readonly staleMs?: number;
}

const HEARTBEAT_MS = 5_000;
const STALE_MS = 30_000;
/** Lock files held by this process: a second opener in the same process is refused too. */
const held = new Set<string>();

export async function lockStateFile(file: string, options: LockOptions = {}): Promise<FileLock> {
  const heartbeatMs = options.heartbeatMs ?? HEARTBEAT_MS;
  const staleMs = options.staleMs ?? STALE_MS;
  const path = `${file}.lock`;
  if (held.has(path)) throw new StateFileLockedError(file, me());
  const mine = me();
  const body = `${JSON.stringify(mine)}\n`;
  const waitUntil = Date.now() + staleMs + heartbeatMs;
  for (;;) {
    if (await create(path, body)) break;
    const seen = await inspect(path);
    if (seen === null) continue; // removed meanwhile: try again
    if (gone(seen.holder) || Date.now() - seen.mtimeMs > staleMs) {
      await takeOver(path, seen.raw);
      continue;
    }
    if (alive(seen.holder) || Date.now() >= waitUntil) throw new StateFileLockedError(file, seen.holder);
    await new Promise((resolve) => setTimeout(resolve, Math.min(heartbeatMs, 1_000)));
  }
  held.add(path);
  const timer = setInterval(() => {
    const now = new Date();
    utimes(path, now, now).catch(() => undefined);
  }, heartbeatMs);
  timer.unref();
  let released = false;
  return {
    path,
    async release() {
      if (released) return;
      released = true;
      clearInterval(timer);
      held.delete(path);
      // Only our own lock is removed (never one a stale-taker put in its place).
      const now = await readFile(path, 'utf8').catch(() => null);
      if (now === body) await unlink(path).catch(() => undefined);
    },
  };
}

async function create(path: string, body: string): Promise<boolean> {
  let handle;
  try {
    handle = await open(path, 'wx', 0o600);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  }
  try {
    await handle.writeFile(body);
    await handle.sync();
  } finally {
    await handle.close();
  }
  return true;
}

async function inspect(path: string): Promise<{ raw: string; holder: LockHolder | null; mtimeMs: number } | null> {
  try {
    const [raw, info] = await Promise.all([readFile(path, 'utf8'), stat(path)]);
    return { raw, holder: parseHolder(raw), mtimeMs: info.mtimeMs };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
}

/**
 * Move a stale lock aside, unless it changed since it was judged stale (another opener took it
 * over and wrote its own): then put that one back. Resolves whether the stale lock is gone.
 */
async function takeOver(path: string, judged: string): Promise<boolean> {
  const aside = `${path}.${process.pid}.${Date.now()}`;
  try {
    await rename(path, aside);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
  const moved = await readFile(aside, 'utf8').catch(() => null);
  if (moved !== judged) {
    // A fresh lock: restore it (link fails if yet another one appeared, which then wins).
    await link(aside, path).catch(() => undefined);
  }
  await unlink(aside).catch(() => undefined);
  return moved === judged;
}

function parseHolder(raw: string): LockHolder | null {
  try {
    const v = JSON.parse(raw) as Partial<LockHolder> | null;
    if (v === null || typeof v !== 'object' || typeof v.pid !== 'number' || typeof v.host !== 'string' || typeof v.started !== 'number') return null;
    return { pid: v.pid, host: v.host, boot: typeof v.boot === 'string' ? v.boot : null, ticks: typeof v.ticks === 'number' ? v.ticks : null, started: v.started };
  } catch {
    return null;
  }
}

/** True when the holder is provably not running: same host and boot, and its pid is gone or reused. */
function gone(holder: LockHolder | null): boolean {
  if (holder === null) return false;
  const self = me();
  if (holder.host !== self.host || holder.boot === null || holder.boot !== self.boot) return false;
  // Our own pid: an earlier process that had it (a restarted container), or this one's leftover
  // (this process's live locks are in `held`, checked before).
  if (holder.pid === process.pid) return true;
  try {
    process.kill(holder.pid, 0);
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ESRCH';
  }
  const ticks = startTicks(holder.pid);
  return ticks !== null && holder.ticks !== null && ticks !== holder.ticks;
}

/** True when the holder is provably running: same host and boot, and that very process is there. */
function alive(holder: LockHolder | null): boolean {
  if (holder === null || holder.ticks === null) return false;
  const self = me();
  if (holder.host !== self.host || holder.boot === null || holder.boot !== self.boot || holder.pid === process.pid) return false;
  return startTicks(holder.pid) === holder.ticks;
}

function me(): LockHolder {
  return { pid: process.pid, host: hostname(), boot: bootId(), ticks: startTicks(process.pid), started: Date.now() };
}

function bootId(): string | null {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return null;
  }
}

/** A process's start time in clock ticks since boot (field 22 of /proc/PID/stat), or null. */
function startTicks(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: count from its closing one.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[19]);
    return Number.isFinite(ticks) ? ticks : null;
  } catch {
    return null;
  }
}
