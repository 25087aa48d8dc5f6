// The audit trail: one JSON line per decision, appended to `audit.file`. Writes are batched off
// the hot path and never dropped: past the high-water mark `write` reports pressure and callers
// wait on `drained()` before answering, so memory stays bounded without losing a record.
import { mkdir, open, type FileHandle } from 'node:fs/promises';
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
  readonly onError?: (error: unknown) => void;
}

export async function openAuditLog(options: AuditLogOptions): Promise<AuditLog> {
  await mkdir(dirname(options.file), { recursive: true, mode: 0o700 });
  const handle: FileHandle = await open(options.file, 'a', 0o600);
  const highWaterMark = options.highWaterMark ?? 8192;

  let queue: string[] = [];
  let writing: Promise<void> | null = null;
  let written = 0;
  let closed = false;
  let drainWaiters: Array<() => void> = [];

  async function pump(): Promise<void> {
    while (queue.length > 0) {
      const batch = queue;
      queue = [];
      const data = batch.join('');
      // A failed write is retried with the same batch: a record is never dropped. The error is
      // reported so the operator sees the disk trouble.
      for (;;) {
        try {
          await handle.appendFile(data);
          break;
        } catch (error) {
          options.onError?.(error);
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      }
      written += batch.length;
      if (queue.length < highWaterMark && drainWaiters.length > 0) {
        const waiters = drainWaiters;
        drainWaiters = [];
        for (const w of waiters) w();
      }
    }
    writing = null;
  }

  function schedule(): void {
    if (writing === null) writing = pump();
  }

  return {
    get written() {
      return written;
    },
    write(record) {
      if (closed) throw new Error('audit log is closed');
      queue.push(`${JSON.stringify(record)}\n`);
      schedule();
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
