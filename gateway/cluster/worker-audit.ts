// The audit log of a cluster worker: lines go to the primary, which chains them into the one
// audit file and answers once they are written (and synced with `fsync: batch`). Write-ahead is
// kept: `append` resolves only after that answer, so a worker answers a request only once its
// line is durable. Lines queued in one turn of the event loop travel in one message.
import { AuditUnavailableError, type AuditLog, type AuditRecord } from '../telemetry/audit-log.js';
import type { AuditState } from './protocol.js';

export interface WorkerAuditOptions {
  /** Send a batch; resolves null once the primary wrote it, or why it could not. */
  send(records: readonly AuditRecord[]): Promise<string | null>;
  readonly highWaterMark?: number;
}

export interface WorkerAudit extends AuditLog {
  /** The primary's audit trail turned (un)available. */
  setState(state: AuditState): void;
}

interface Pending {
  readonly record: AuditRecord;
  resolve(): void;
  reject(error: Error): void;
}

export function createWorkerAudit(options: WorkerAuditOptions): WorkerAudit {
  const highWaterMark = options.highWaterMark ?? 10_000;
  let queue: Pending[] = [];
  let scheduled = false;
  let outstanding = 0;
  let written = 0;
  let writeErrors = 0;
  let state: AuditState = { available: true, reason: null };
  const idle: Array<() => void> = [];

  function settle(): void {
    if (outstanding === 0 && queue.length === 0) for (const done of idle.splice(0)) done();
  }

  function sendBatch(): void {
    scheduled = false;
    const batch = queue;
    queue = [];
    if (batch.length === 0) return;
    outstanding += batch.length;
    options.send(batch.map((p) => p.record)).then(
      (error) => {
        outstanding -= batch.length;
        if (error === null) {
          written += batch.length;
          for (const p of batch) p.resolve();
        } else {
          writeErrors++;
          for (const p of batch) p.reject(new AuditUnavailableError(error));
        }
        settle();
      },
      (error: unknown) => {
        outstanding -= batch.length;
        writeErrors++;
        for (const p of batch) p.reject(new AuditUnavailableError(error instanceof Error ? error.message : String(error)));
        settle();
      },
    );
  }

  function enqueue(record: AuditRecord): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      queue.push({ record, resolve, reject });
      if (!scheduled) {
        scheduled = true;
        setImmediate(sendBatch);
      }
    });
  }

  const untilIdle = (): Promise<void> => (outstanding === 0 && queue.length === 0 ? Promise.resolve() : new Promise<void>((resolve) => idle.push(resolve)));

  return {
    append: enqueue,
    write(record) {
      enqueue(record).catch(() => undefined);
      return outstanding + queue.length < highWaterMark;
    },
    drained: untilIdle,
    flush: untilIdle,
    async close() {
      await untilIdle();
    },
    get written() {
      return written;
    },
    get queued() {
      return outstanding + queue.length;
    },
    get available() {
      return state.available;
    },
    get unavailableReason() {
      return state.reason;
    },
    get writeErrors() {
      return writeErrors;
    },
    lastCheckpoint: null,
    setState(next) {
      state = next;
    },
  };
}
