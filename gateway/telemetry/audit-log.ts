// The audit trail: one JSON line per decision, appended to `audit.file`. Writes are batched off
// the hot path and never dropped: past the high-water mark `write` reports pressure and callers
// wait on `drained()`. Lines are hash-chained (`seq`, `prev` = SHA-256 of the previous line), so
// an edited, removed, inserted or reordered line shows; `audit-verify.ts` checks the chain.
import { createHash } from 'node:crypto';
import { mkdir, open, readFile, rename, stat, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';

export interface AuditRecord {
  readonly time: string;
  readonly kind: 'proxy' | 'broker' | 'admin';
  readonly requestId: string;
  readonly decision: 'allow' | 'deny';
  readonly reason: string;
  readonly [field: string]: unknown;
}

export interface AuditLog {
  /** Queue a record. Returns false when the queue is past its high-water mark. */
  write(record: AuditRecord): boolean;
  /** Resolves once the queue is back under the high-water mark. */
  drained(): Promise<void>;
  /** Resolves once everything queued so far is on disk. */
  flush(): Promise<void>;
  close(): Promise<void>;
  /** Lines written to disk so far (for status). */
  readonly written: number;
}

export interface AuditLogOptions {
  readonly file: string;
  /** Queued lines past which `write` reports pressure. */
  readonly highWaterMark?: number;
  /** Rotate when the file would grow past this size (the chain continues in the new file). */
  readonly maxBytes?: number;
  /** Rotated files kept (`audit.jsonl.1` is the newest). */
  readonly keep?: number;
  readonly onError?: (error: unknown) => void;
}

/** The `prev` of the very first line of a trail. */
export const GENESIS = '0'.repeat(64);

export function hashLine(line: string): string {
  return createHash('sha256').update(line).digest('hex');
}

export async function openAuditLog(options: AuditLogOptions): Promise<AuditLog> {
  const { file } = options;
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  const highWaterMark = options.highWaterMark ?? 8192;
  const maxBytes = options.maxBytes ?? 100 * 1024 * 1024;
  const keep = Math.max(1, options.keep ?? 10);

  // Continue the chain where the file (or, after a rotation, the rotated file) left it.
  const tail = (await lastLine(file)) ?? (await lastLine(`${file}.1`));
  let seq = 0;
  let prev = GENESIS;
  if (tail !== null) {
    prev = hashLine(tail);
    try {
      seq = Number((JSON.parse(tail) as { seq?: unknown }).seq) || 0;
    } catch {
      // An unreadable last line (a crash mid-write, or tampering) stays visible to `audit verify`.
      seq = 0;
    }
  }
  let handle: FileHandle = await open(file, 'a', 0o600);
  let size = (await handle.stat()).size;

  let queue: string[] = [];
  let writing: Promise<void> | null = null;
  let written = 0;
  let closed = false;
  let drainWaiters: Array<() => void> = [];

  async function rotate(): Promise<void> {
    await handle.sync();
    await handle.close();
    for (let i = keep - 1; i >= 1; i--) await rename(`${file}.${i}`, `${file}.${i + 1}`).catch(() => undefined);
    await rename(file, `${file}.1`);
    handle = await open(file, 'a', 0o600);
    size = 0;
  }

  async function pump(): Promise<void> {
    while (queue.length > 0) {
      const batch = queue;
      queue = [];
      // The batch is cut where the file would pass maxBytes, so rotation keeps files bounded
      // however many lines one write carries.
      let start = 0;
      while (start < batch.length) {
        if (size > 0 && size + Buffer.byteLength(batch[start] ?? '') > maxBytes) {
          try {
            await rotate();
          } catch (error) {
            options.onError?.(error);
          }
        }
        let end = start;
        let bytes = 0;
        do {
          bytes += Buffer.byteLength(batch[end] ?? '');
          end++;
        } while (end < batch.length && size + bytes + Buffer.byteLength(batch[end] ?? '') <= maxBytes);
        const data = Buffer.from((start === 0 && end === batch.length ? batch : batch.slice(start, end)).join(''));
        // A failed write is retried with the same lines: a record is never dropped.
        for (;;) {
          try {
            await writeAll(handle, data);
            break;
          } catch (error) {
            options.onError?.(error);
            await new Promise((resolve) => setTimeout(resolve, 100));
          }
        }
        size += data.length;
        written += end - start;
        start = end;
      }
      if (queue.length < highWaterMark && drainWaiters.length > 0) {
        const waiters = drainWaiters;
        drainWaiters = [];
        for (const w of waiters) w();
      }
    }
    writing = null;
  }

  return {
    get written() {
      return written;
    },
    write(record) {
      if (closed) throw new Error('audit log is closed');
      seq += 1;
      const line = JSON.stringify({ seq, prev, ...record });
      prev = hashLine(line);
      queue.push(`${line}\n`);
      // The first line of a batch waits for the end of this event-loop turn, so every decision
      // made in the turn goes out in one write rather than one write for the first and one for the rest.
      writing ??= nextTurn().then(pump);
      return queue.length < highWaterMark;
    },
    drained() {
      if (queue.length < highWaterMark) return Promise.resolve();
      return new Promise((resolve) => drainWaiters.push(resolve));
    },
    async flush() {
      while (writing !== null) await writing;
    },
    async close() {
      if (closed) return;
      closed = true;
      while (writing !== null) await writing;
      await handle.sync().catch(() => undefined);
      await handle.close();
    },
  };
}

function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** One write of the whole batch (looping only if the kernel took part of it). */
async function writeAll(handle: FileHandle, data: Buffer): Promise<void> {
  let offset = 0;
  while (offset < data.length) {
    const { bytesWritten } = await handle.write(data, offset, data.length - offset, null);
    offset += bytesWritten;
  }
}

/** The last complete line of `file`, or null when it is empty or missing. */
async function lastLine(file: string): Promise<string | null> {
  let size: number;
  try {
    size = (await stat(file)).size;
  } catch {
    return null;
  }
  if (size === 0) return null;
  // Lines are short; read a bounded tail rather than the whole file.
  const handle = await open(file, 'r');
  try {
    const length = Math.min(size, 1 << 20);
    const buffer = Buffer.alloc(length);
    await handle.read(buffer, 0, length, size - length);
    const text = buffer.toString('utf8').replace(/\n+$/, '');
    const at = text.lastIndexOf('\n');
    return at === -1 ? (length === size ? text : null) : text.slice(at + 1);
  } finally {
    await handle.close();
  }
}

/** Read every line of an audit file (for verify and tail). */
export async function readAuditLines(file: string): Promise<string[]> {
  const text = await readFile(file, 'utf8');
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines;
}
