// The audit trail: one JSON line per decision, appended to `audit.file`. It is write-ahead for
// what clients see: `append` resolves only once the line's batch is written (and, with
// `fsync: batch`, on disk), and callers send an answer only after that. Lines are hash-chained
// (`seq`, `prev` = SHA-256 of the previous line) and signed checkpoint lines, also kept in the
// state store, make a cut-off tail visible; `audit-verify.ts` checks both.
// When the file cannot be written (ENOSPC, EIO, EACCES) the log turns unavailable: waiting
// appends reject at once, callers refuse new work, and the writer retries from the exact byte not
// yet written, so a recovered file never holds a duplicated or broken line.
import { createHash, hash as cryptoHash } from 'node:crypto';
import { constants } from 'node:fs';
import { mkdir, open, readFile, rename, stat, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { ReasonCode } from '../errors.js';

/** A line's record: a proxied request's (its fields fixed), or the broker's and admin socket's. */
export type AuditRecord = ProxyRecord | ServiceRecord;

/**
 * One proxied request's line (`kind: proxy`): what outcome.ts records, in this order. A type
 * alias rather than an interface, so it stays assignable where records are indexed by name.
 */
export type ProxyRecord = {
  readonly time: string;
  readonly kind: 'proxy';
  readonly requestId: string;
  /** `end` on a second line for the same request. */
  readonly phase: 'end' | undefined;
  readonly agent: string | null;
  readonly role: string | null;
  readonly onBehalfOf: string | null;
  readonly jti: string | null;
  readonly backend: string | null;
  readonly method: string;
  readonly path: string | null;
  readonly decision: 'allow' | 'deny';
  readonly reason: ReasonCode | 'none';
  readonly reasonDetail: string | null;
  readonly route: string | null;
  readonly shadow: readonly unknown[] | undefined;
  readonly approvalId: string | undefined;
  readonly rpc: readonly unknown[] | undefined;
  readonly status: number;
  readonly upstreamStatus: number | null;
  readonly durationMs: number;
  readonly remote: string;
};

export interface ServiceRecord {
  readonly time: string;
  readonly kind: 'broker' | 'admin';
  readonly requestId: string;
  readonly decision: 'allow' | 'deny';
  readonly reason: string;
  readonly [field: string]: unknown;
}

/** Where the trail was at a checkpoint: kept in the state store and as a signed line. */
export interface AuditCheckpoint {
  /** Absolute path of the audit file the checkpoint line went to. */
  readonly file: string;
  /** `seq` of the checkpoint line. */
  readonly seq: number;
  /** SHA-256 (hex) of the checkpoint line. */
  readonly hash: string;
  /** ISO time of the checkpoint. */
  readonly time: string;
}

/** Signs checkpoint lines (Ed25519, the gateway's dedicated audit key). */
export interface AuditSigner {
  readonly kid: string;
  /** base64url signature over `payload`. */
  sign(payload: string): string;
}

/** Where checkpoints are kept besides the file (the state store). */
export interface CheckpointStore {
  load(): Promise<AuditCheckpoint | null>;
  save(checkpoint: AuditCheckpoint): Promise<void>;
}

/** Raised to callers waiting on a line while the audit file cannot be written. */
export class AuditUnavailableError extends Error {
  constructor(readonly why: string) {
    super(`the audit trail cannot be written (${why})`);
    this.name = 'AuditUnavailableError';
  }
}

export type AuditFsync = 'batch' | 'off';

export interface AuditLog {
  /**
   * Chain and queue a record; resolves once it is written (and synced with `fsync: batch`).
   * Rejects with AuditUnavailableError when its batch could not be written: the line stays
   * queued and reaches the file when it recovers, but the caller must not answer as if it had.
   */
  append(record: AuditRecord): Promise<void>;
  /** Queue a record without waiting. Returns false when the queue is past its high-water mark. */
  write(record: AuditRecord): boolean;
  /** Resolves once the queue is back under the high-water mark. */
  drained(): Promise<void>;
  /** Resolves once everything queued so far is written (or the log is unavailable). */
  flush(): Promise<void>;
  /** Write a final checkpoint, flush, sync and close; gives up on an unwritable file after `timeoutMs` (10 s). */
  close(timeoutMs?: number): Promise<void>;
  /** Lines written to disk so far (for status). */
  readonly written: number;
  /** Lines appended and not yet written: waiting for a batch, or in the batch being written. */
  readonly queued: number;
  /** False from a failed write (or sync, or rotation) until a retry succeeds. */
  readonly available: boolean;
  /** Why the log is unavailable (`ENOSPC: ...`), or null. */
  readonly unavailableReason: string | null;
  /** Failed writes, syncs and rotations so far. */
  readonly writeErrors: number;
  /** The last checkpoint that is durable in the file. */
  readonly lastCheckpoint: AuditCheckpoint | null;
}

export interface AuditLogOptions {
  readonly file: string;
  /** Queued lines past which `write` reports pressure. */
  readonly highWaterMark?: number;
  /** Rotate when the file would grow past this size (the chain continues in the new file). */
  readonly maxBytes?: number;
  /** Rotated files kept (`audit.jsonl.1` is the newest). */
  readonly keep?: number;
  /** `batch` (default): every batch on disk before it resolves (O_DSYNC); `off`: survives process crashes only. */
  readonly fsync?: AuditFsync;
  /** A checkpoint every this many lines (default 1,000)... */
  readonly checkpointLines?: number;
  /** ...or this often while lines arrive (default 1 s), and at close. */
  readonly checkpointIntervalMs?: number;
  /** Signs checkpoint lines; without one no checkpoint line is written. */
  readonly signer?: AuditSigner | null;
  readonly checkpoints?: CheckpointStore | null;
  /** Pause between retries of a failed write (default 250 ms). */
  readonly retryMs?: number;
  readonly onError?: (error: unknown) => void;
  /** Called when the log turns unavailable (with why) and when it recovers. */
  readonly onAvailability?: (available: boolean, why: string | null) => void;
  /** Something at open that an operator must know (a torn tail dropped, a truncated file). */
  readonly onWarning?: (message: string, fields: Record<string, unknown>) => void;
}

/** The `prev` of the very first line of a trail. */
export const GENESIS = '0'.repeat(64);

/** What a checkpoint line's signature covers (kind, seq, prev, time, kid; in this order). */
export function checkpointPayload(seq: number, prev: string, time: string, kid: string): string {
  return `agentgate-audit-checkpoint\n${seq}\n${prev}\n${time}\n${kid}`;
}

export function hashLine(line: string | Buffer): string {
  return createHash('sha256').update(line).digest('hex');
}

/** One-shot SHA-256 (crypto.hash, Node 20.12+) of a line's bytes: no Hash object per line. */
const sha256Hex: (line: Buffer) => string = typeof cryptoHash === 'function' ? (line) => cryptoHash('sha256', line, 'hex') : hashLine;

interface Waiter {
  resolve(): void;
  reject(error: Error): void;
}

/**
 * A line not yet in a batch. Its `seq` and `prev` are given, and its hash taken, when a batch is
 * cut (in order, so the chain is the same as if each had been hashed on arrival): `body` is the
 * record's JSON without its opening brace; a checkpoint is signed then, over its own seq and prev.
 */
interface Pending {
  readonly body: string | null;
  readonly waiter: Waiter | null;
  /** Set for a checkpoint line: when it was decided. */
  readonly checkpointTime: string | null;
}

interface Batch {
  readonly data: Buffer;
  /** Bytes of `data` already in the file: a retry continues here, never from 0. */
  offset: number;
  readonly lines: number;
  waiters: Waiter[];
  readonly checkpoint: AuditCheckpoint | null;
  /** The file must rotate before this batch goes out. */
  rotateFirst: boolean;
}

export async function openAuditLog(options: AuditLogOptions): Promise<AuditLog> {
  const { file } = options;
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  const highWaterMark = options.highWaterMark ?? 8192;
  const maxBytes = options.maxBytes ?? 100 * 1024 * 1024;
  const keep = Math.max(1, options.keep ?? 10);
  const fsync = options.fsync ?? 'batch';
  const checkpointLines = Math.max(1, options.checkpointLines ?? 1000);
  const checkpointIntervalMs = Math.max(10, options.checkpointIntervalMs ?? 1000);
  const retryMs = options.retryMs ?? 250;
  const signer = options.signer ?? null;
  const warn = options.onWarning ?? (() => undefined);

  // `fsync: batch` opens the file O_DSYNC: each batch's write returns once its data is on disk,
  // one system call and one trip through libuv's thread pool instead of a write and an
  // fdatasync (measured in bench/RESULTS.md, issue 13). Appends only; read back by path.
  // A platform without O_DSYNC (Windows) gets the write and an fdatasync per batch instead.
  const dsync: number | undefined = fsync === 'batch' ? constants.O_DSYNC : undefined;
  const syncAfterWrite = fsync === 'batch' && dsync === undefined;
  const flags = constants.O_APPEND | constants.O_CREAT | constants.O_RDWR | (dsync ?? 0);
  let handle: FileHandle = await open(file, flags, 0o600);
  // A batch cut short by a crash while the disk was full leaves a torn last line. No client was
  // answered on it (answers wait for the whole batch), so it is dropped like a torn WAL record.
  await dropTornTail(handle, file, warn);
  let size = (await handle.stat()).size;

  // Continue the chain where the file (or, after a rotation, the rotated file) left it.
  const tail = (await lastLine(file)) ?? (await lastLine(`${file}.1`));
  let seq = 0;
  let prev = GENESIS;
  if (tail !== null) {
    prev = hashLine(tail);
    seq = seqOf(tail) ?? 0;
  }
  const checkpointFailed = (error: unknown): void => warn('audit checkpoint not recorded in the state store; the line in the file stands', { error: describe(error) });
  let lastCheckpoint = (await options.checkpoints?.load().catch((error: unknown) => {
    warn('the state store\'s audit checkpoint could not be read; truncation while stopped is not checked at this start', { error: describe(error) });
    return null;
  })) ?? null;
  if (lastCheckpoint !== null && lastCheckpoint.file === file && lastCheckpoint.seq > seq) {
    // The file lost lines while the gateway was down. Continuing from the checkpoint keeps the
    // loss visible: `audit verify` names the gap at the first new line.
    warn('audit file ends before its last checkpoint: lines were removed while the gateway was stopped', {
      file,
      lastSeq: seq,
      checkpointSeq: lastCheckpoint.seq,
      missing: lastCheckpoint.seq - seq,
    });
    seq = lastCheckpoint.seq;
    prev = lastCheckpoint.hash;
  }

  let pending: Pending[] = [];
  let current: Batch | null = null;
  let writing: Promise<void> | null = null;
  let written = 0;
  let closed = false;
  let drainWaiters: Array<() => void> = [];
  let unavailable: string | null = null;
  let writeErrors = 0;
  let sinceCheckpoint = 0;
  let checkpointTimer: NodeJS.Timeout | null = null;
  // Rotation runs in steps that each happen once, so a retry after a failure neither shifts the
  // rotated files twice nor reopens a file it already has.
  let abandoned = false;
  let saving: Promise<void> = Promise.resolve();
  let rotationShifted = false;
  let rotationRenamed = false;

  function chainCheckpoint(): void {
    if (signer === null || sinceCheckpoint === 0) return;
    sinceCheckpoint = 0;
    pending.push({ body: null, waiter: null, checkpointTime: new Date().toISOString() });
    schedule();
  }

  /** A checkpoint line's fields after its seq and prev (without the leading comma), signed over both. */
  function checkpointFields(entry: Pending, lineSeq: number, linePrev: string): string {
    const time = entry.checkpointTime ?? '';
    const kid = signer?.kid ?? '';
    const sig = signer?.sign(checkpointPayload(lineSeq, linePrev, time, kid)) ?? '';
    return JSON.stringify({ time, kind: 'checkpoint', kid, sig }).slice(1);
  }

  function addRecord(record: AuditRecord, waiter: Waiter | null): void {
    if (closed) throw new Error('audit log is closed');
    // Serialised now (the record may change after this call); chained and hashed when its batch is cut.
    const json = JSON.stringify(record);
    pending.push({ body: json.length > 2 ? json.slice(1) : '', waiter, checkpointTime: null });
    schedule();
    sinceCheckpoint += 1;
    if (sinceCheckpoint >= checkpointLines) chainCheckpoint();
    else if (checkpointTimer === null && signer !== null) {
      checkpointTimer = setTimeout(() => {
        checkpointTimer = null;
        if (!closed) chainCheckpoint();
      }, checkpointIntervalMs);
      checkpointTimer.unref();
    }
  }

  function schedule(): void {
    // The first line of a batch waits for the end of this event-loop turn, so every decision
    // made in the turn goes out in one write rather than one write for the first and one for the rest.
    writing ??= nextTurn().then(pump);
  }

  /**
   * The next batch: as many pending lines as fit before `maxBytes`, at least one. This is where
   * lines are chained: each gets the next `seq` and the previous line's hash as `prev`.
   */
  function cut(): Batch {
    let rotateFirst = false;
    let room = size;
    let end = 0;
    // The batch is written straight into one buffer, and each line hashed from its bytes there.
    let data = Buffer.allocUnsafe(Math.min(pending.length, 64) * 1024);
    let used = 0;
    const waiters: Waiter[] = [];
    let checkpoint: AuditCheckpoint | null = null;
    while (end < pending.length) {
      const entry = pending[end];
      if (entry === undefined) break;
      const head = `{"seq":${seq + 1},"prev":"${prev}"`;
      const fields = entry.body ?? checkpointFields(entry, seq + 1, prev);
      // UTF-8 takes at most 3 bytes per UTF-16 unit; +2 for the comma (or brace) and the newline.
      const most = head.length + fields.length * 3 + 2;
      if (used + most > data.length) {
        const larger = Buffer.allocUnsafe(Math.max(data.length * 2, used + most));
        data.copy(larger, 0, 0, used);
        data = larger;
      }
      // Written piece by piece, so the record's JSON is copied once, into the batch.
      let bytes = data.write(head, used, 'latin1');
      if (fields === '') data[used + bytes++] = 0x7d; // an empty record: `}`
      else {
        data[used + bytes++] = 0x2c; // `,`
        bytes += data.write(fields, used + bytes, 'utf8');
      }
      bytes += 1; // the newline, written once the line is hashed
      if (end === 0 && size > 0 && size + bytes > maxBytes) {
        rotateFirst = true;
        room = 0;
      } else if (end > 0 && room + bytes > maxBytes) break; // not taken: the next batch rewrites it
      room += bytes;
      seq += 1;
      prev = sha256Hex(data.subarray(used, used + bytes - 1));
      data[used + bytes - 1] = 0x0a;
      used += bytes;
      if (entry.waiter !== null) waiters.push(entry.waiter);
      if (entry.checkpointTime !== null) checkpoint = { file, seq, hash: prev, time: entry.checkpointTime };
      end++;
    }
    pending = end === pending.length ? [] : pending.slice(end);
    return { data: data.subarray(0, used), offset: 0, lines: end, waiters, checkpoint, rotateFirst };
  }

  async function rotate(): Promise<void> {
    if (!rotationRenamed) {
      await handle.sync();
      if (!rotationShifted) {
        for (let i = keep - 1; i >= 1; i--) await rename(`${file}.${i}`, `${file}.${i + 1}`).catch(() => undefined);
        rotationShifted = true;
      }
      await rename(file, `${file}.1`);
      rotationRenamed = true;
    }
    const next = await open(file, flags, 0o600);
    await handle.close().catch(() => undefined);
    handle = next;
    size = 0;
    rotationShifted = false;
    rotationRenamed = false;
  }

  async function writeOut(batch: Batch): Promise<void> {
    if (batch.rotateFirst) {
      await rotate();
      batch.rotateFirst = false;
    }
    while (batch.offset < batch.data.length) {
      const { bytesWritten } = await handle.write(batch.data, batch.offset, batch.data.length - batch.offset, null);
      batch.offset += bytesWritten;
      size += bytesWritten;
    }
    if (syncAfterWrite) await handle.datasync();
  }

  function fail(error: unknown): void {
    writeErrors += 1;
    const why = describe(error);
    const turned = unavailable !== why;
    unavailable = why;
    // Retries repeat every `retryMs`; only a new cause is reported.
    if (turned) {
      options.onAvailability?.(false, why);
      options.onError?.(error);
    }
    // Nobody waits on a line that is not written: the batch's and every queued caller's answer
    // is refused now. The lines themselves stay queued, in order, for the retry.
    const refusal = new AuditUnavailableError(why);
    if (current !== null) {
      for (const w of current.waiters) w.reject(refusal);
      current.waiters = [];
    }
    pending = pending.map((p) => (p.waiter === null ? p : (p.waiter.reject(refusal), { ...p, waiter: null })));
    releaseDrainWaiters();
  }

  function releaseDrainWaiters(): void {
    if (drainWaiters.length === 0) return;
    const waiters = drainWaiters;
    drainWaiters = [];
    for (const w of waiters) w();
  }

  async function pump(): Promise<void> {
    for (;;) {
      current ??= pending.length > 0 ? cut() : null;
      const batch = current;
      if (batch === null) break;
      try {
        await writeOut(batch);
      } catch (error) {
        fail(error);
        if (abandoned) break;
        await new Promise((resolve) => setTimeout(resolve, retryMs));
        if (abandoned) break;
        continue;
      }
      current = null;
      written += batch.lines;
      if (unavailable !== null) {
        unavailable = null;
        options.onAvailability?.(true, null);
      }
      for (const w of batch.waiters) w.resolve();
      if (batch.checkpoint !== null) {
        lastCheckpoint = batch.checkpoint;
        const saved = options.checkpoints?.save(batch.checkpoint).catch(checkpointFailed);
        if (saved !== undefined) saving = saved;
      }
      if (pending.length < highWaterMark) releaseDrainWaiters();
    }
    writing = null;
  }

  return {
    get written() {
      return written;
    },
    get queued() {
      return pending.length + (current === null ? 0 : current.lines);
    },
    get available() {
      return unavailable === null;
    },
    get unavailableReason() {
      return unavailable;
    },
    get writeErrors() {
      return writeErrors;
    },
    get lastCheckpoint() {
      return lastCheckpoint;
    },
    append(record) {
      if (unavailable !== null) {
        // Queued behind a failed batch: refused at once, written when the file recovers.
        addRecord(record, null);
        return Promise.reject(new AuditUnavailableError(unavailable));
      }
      return new Promise<void>((resolve, reject) => addRecord(record, { resolve, reject }));
    },
    write(record) {
      addRecord(record, null);
      return pending.length < highWaterMark;
    },
    drained() {
      if (pending.length < highWaterMark || unavailable !== null) return Promise.resolve();
      return new Promise((resolve) => drainWaiters.push(resolve));
    },
    async flush() {
      while (writing !== null && unavailable === null) await writing;
    },
    async close(timeoutMs = 10_000) {
      if (closed) return;
      closed = true;
      if (checkpointTimer !== null) clearTimeout(checkpointTimer);
      chainCheckpoint();
      // An unwritable file is retried until the deadline; past it the lines still queued are
      // reported lost rather than holding shutdown forever.
      const deadline = Date.now() + timeoutMs;
      while (writing !== null && (unavailable === null || Date.now() < deadline)) {
        await Promise.race([writing, new Promise((resolve) => setTimeout(resolve, retryMs).unref())]);
      }
      if (writing !== null) {
        abandoned = true;
        const lost = pending.length + (current === null ? 0 : current.lines);
        options.onError?.(new AuditUnavailableError(`${unavailable ?? 'unwritable'}; ${lost} line(s) not written at shutdown`));
        await writing;
      }
      // The final checkpoint is in the state store before close resolves (the store closes next).
      await saving;
      await handle.sync().catch(() => undefined);
      await handle.close();
    },
  };
}

function describe(error: unknown): string {
  if (error instanceof AuditUnavailableError) return error.why;
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return typeof code === 'string' && !error.message.startsWith(code) ? `${code}: ${error.message}` : error.message;
  }
  return String(error);
}

function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

function seqOf(line: string): number | null {
  try {
    const seq = (JSON.parse(line) as { seq?: unknown }).seq;
    return typeof seq === 'number' && Number.isInteger(seq) ? seq : null;
  } catch {
    return null;
  }
}

/** Cut a last line that lacks its newline (a batch torn by a crash on a full disk). */
async function dropTornTail(handle: FileHandle, file: string, warn: (message: string, fields: Record<string, unknown>) => void): Promise<void> {
  const size = (await handle.stat()).size;
  if (size === 0) return;
  const last = Buffer.alloc(1);
  await handle.read(last, 0, 1, size - 1);
  if (last[0] === 0x0a) return;
  const length = Math.min(size, 1 << 20);
  const buffer = Buffer.alloc(length);
  await handle.read(buffer, 0, length, size - length);
  const at = buffer.lastIndexOf(0x0a);
  if (at === -1 && length < size) return; // a line longer than 1 MiB is not ours: leave it for verify
  const keepBytes = at === -1 ? 0 : size - length + at + 1;
  await handle.truncate(keepBytes);
  await handle.sync();
  warn('audit file ended in a torn line (a crash while a batch was being written); dropped it', { file, bytes: size - keepBytes });
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

/** Read every line of an audit file into memory (small files: tests and `audit tail`). */
export async function readAuditLines(file: string): Promise<string[]> {
  const text = await readFile(file, 'utf8');
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines;
}
