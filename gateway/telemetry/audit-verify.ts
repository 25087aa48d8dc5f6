// Checking and reading the audit trail: `agentgate audit verify` walks the hash chain and names
// every line that was edited, removed, inserted or reordered, checks the signed checkpoint lines,
// and, given the state store's last checkpoint, names a trail that ends before it (a cut tail).
// Files are streamed: memory stays constant however many lines and rotated files there are.
import { createHash, type KeyObject } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { checkpointPayload, GENESIS } from './audit-log.js';
import { verifyCheckpointSignature } from './audit-key.js';

export interface AuditProblem {
  /** 1-based line number over all lines verified. */
  readonly line: number;
  readonly message: string;
}

export interface AuditVerification {
  readonly lines: number;
  readonly firstSeq: number | null;
  readonly lastSeq: number | null;
  readonly problems: readonly AuditProblem[];
  /** Facts that are not problems (e.g. the file continues a rotated trail). */
  readonly notes: readonly string[];
}

/** The state store's record of the last checkpoint (see state/store.ts). */
export interface KnownCheckpoint {
  readonly seq: number;
  readonly hash: string;
  readonly time: string;
}

export interface ChainOptions {
  /** Public audit keys by kid; without them checkpoint signatures are not checked (a note says so). */
  readonly keys?: ReadonlyMap<string, KeyObject> | null;
  /** The last checkpoint the gateway recorded in its state store for this trail. */
  readonly checkpoint?: KnownCheckpoint | null;
  /** Problems kept in full (the rest are counted): memory stays bounded on a ruined file. */
  readonly maxProblems?: number;
}

/** Missing tail found against the state store's checkpoint. */
export interface Truncation {
  readonly lastSeq: number | null;
  readonly checkpointSeq: number;
  readonly checkpointTime: string;
  /** Lines known to be missing: from the last line to the checkpoint (more may have followed it). */
  readonly missing: number;
}

export interface ChainResult extends AuditVerification {
  /** Every problem found, also those past `maxProblems`. */
  readonly problemCount: number;
  readonly checkpoints: number;
  /** `seq` of the last checkpoint line in the files, or null. */
  readonly lastCheckpointSeq: number | null;
  /** Lines after the last checkpoint line: a cut among them is visible only against the store. */
  readonly linesAfterCheckpoint: number;
  readonly truncation: Truncation | null;
}

/** Walks one trail line by line, oldest first. */
export class ChainVerifier {
  #problems: AuditProblem[] = [];
  #problemCount = 0;
  #notes: string[] = [];
  #prevHash: string | null = null;
  #lastSeq: number | null = null;
  #firstSeq: number | null = null;
  #lines = 0;
  #checkpoints = 0;
  #lastCheckpointSeq: number | null = null;
  #afterCheckpoint = 0;
  #unsignedNoted = false;
  #checkpointSeen = false;
  readonly #keys: ReadonlyMap<string, KeyObject> | null;
  readonly #known: KnownCheckpoint | null;
  readonly #maxProblems: number;

  constructor(options: ChainOptions = {}) {
    this.#keys = options.keys ?? null;
    this.#known = options.checkpoint ?? null;
    this.#maxProblems = options.maxProblems ?? 1000;
  }

  get lines(): number {
    return this.#lines;
  }

  #problem(line: number, message: string): void {
    this.#problemCount++;
    if (this.#problems.length < this.#maxProblems) this.#problems.push({ line, message });
  }

  /** One line (without its newline), as bytes or text. */
  line(raw: Buffer | string): void {
    const n = ++this.#lines;
    const text = typeof raw === 'string' ? raw : raw.toString('utf8');
    const hash = createHash('sha256').update(raw).digest('hex');
    let record: { seq?: unknown; prev?: unknown; kind?: unknown };
    try {
      record = JSON.parse(text) as { seq?: unknown; prev?: unknown };
    } catch {
      this.#problem(n, 'not valid JSON: edited or truncated');
      this.#prevHash = hash;
      if (this.#lastSeq !== null) this.#lastSeq += 1;
      this.#afterCheckpoint++;
      return;
    }
    const seq = typeof record.seq === 'number' && Number.isInteger(record.seq) ? record.seq : null;
    const prev = typeof record.prev === 'string' ? record.prev : null;
    if (seq === null || prev === null) {
      this.#problem(n, 'no seq/prev chain fields: inserted or edited');
      this.#prevHash = hash;
      this.#afterCheckpoint++;
      return;
    }
    if (this.#firstSeq === null) {
      this.#firstSeq = seq;
      if (seq === 1 && prev !== GENESIS) this.#problem(n, 'first line of the trail does not start the chain: edited');
      if (seq !== 1) this.#notes.push(`starts at seq ${seq}: continues a rotated file (its first link is checked against that file)`);
    } else if (this.#lastSeq !== null) {
      const expected = this.#lastSeq + 1;
      if (seq > expected) {
        this.#problem(n, `${seq - expected} line(s) removed before this line (seq jumps from ${this.#lastSeq} to ${seq})`);
      } else if (seq < expected) {
        this.#problem(n, `out of order or duplicated: seq ${seq} after ${this.#lastSeq} (inserted or reordered)`);
      } else if (this.#prevHash !== null && prev !== this.#prevHash) {
        this.#problem(n - 1, `edited: line ${n} recorded a different hash for it`);
      }
    }
    if (record.kind === 'checkpoint') this.#checkpoint(n, seq, prev, record as Record<string, unknown>);
    else this.#afterCheckpoint++;
    const known = this.#known;
    if (known !== null && seq === known.seq) {
      this.#checkpointSeen = true;
      if (hash !== known.hash) this.#problem(n, `not the line the gateway checkpointed at ${known.time} as seq ${seq}: the trail was rewritten`);
    }
    this.#lastSeq = seq;
    this.#prevHash = hash;
  }

  #checkpoint(n: number, seq: number, prev: string, record: Record<string, unknown>): void {
    this.#checkpoints++;
    this.#lastCheckpointSeq = seq;
    this.#afterCheckpoint = 0;
    const { kid, sig, time } = record;
    if (typeof kid !== 'string' || typeof sig !== 'string' || typeof time !== 'string') {
      this.#problem(n, 'checkpoint line without kid, sig or time: forged or edited');
      return;
    }
    if (this.#keys === null) {
      if (!this.#unsignedNoted) this.#notes.push('checkpoint signatures not checked: no audit public key (audit-key.pub.pem; pass --key)');
      this.#unsignedNoted = true;
      return;
    }
    const key = this.#keys.get(kid);
    if (key === undefined) {
      this.#problem(n, `checkpoint signed by unknown key ${kid}: forged, or verify with that gateway's audit key`);
      return;
    }
    if (!verifyCheckpointSignature(key, checkpointPayload(seq, prev, time, kid), sig)) {
      this.#problem(n, 'checkpoint signature does not match: forged or edited');
    }
  }

  result(): ChainResult {
    let truncation: Truncation | null = null;
    const known = this.#known;
    if (known !== null && !this.#checkpointSeen && (this.#lastSeq === null || this.#lastSeq < known.seq)) {
      const missing = known.seq - (this.#lastSeq ?? 0);
      truncation = { lastSeq: this.#lastSeq, checkpointSeq: known.seq, checkpointTime: known.time, missing };
      this.#problem(
        Math.max(1, this.#lines),
        `truncated: the trail ends at seq ${this.#lastSeq ?? 0} but the gateway checkpointed seq ${known.seq} at ${known.time}: ${missing} line(s) missing at the end`,
      );
    }
    if (this.#checkpoints > 0 && this.#afterCheckpoint > 0 && known === null) {
      this.#notes.push(`${this.#afterCheckpoint} line(s) after the last checkpoint (seq ${this.#lastCheckpointSeq ?? 0}): a cut among them shows only against the state store's checkpoint`);
    }
    return {
      lines: this.#lines,
      firstSeq: this.#firstSeq,
      lastSeq: this.#lastSeq,
      problems: this.#problems,
      problemCount: this.#problemCount,
      notes: this.#notes,
      checkpoints: this.#checkpoints,
      lastCheckpointSeq: this.#lastCheckpointSeq,
      linesAfterCheckpoint: this.#afterCheckpoint,
      truncation,
    };
  }
}

/** Verify lines held in memory (small trails, tests). */
export function verifyAuditLines(lines: readonly string[]): AuditVerification {
  const chain = new ChainVerifier({ maxProblems: Number.MAX_SAFE_INTEGER });
  for (const line of lines) chain.line(line);
  const { lines: count, firstSeq, lastSeq, problems, notes } = chain.result();
  return { lines: count, firstSeq, lastSeq, problems, notes };
}

export interface FileProgress {
  readonly file: string;
  readonly bytes: number;
  readonly totalBytes: number;
  readonly lines: number;
}

export interface FilesVerification extends ChainResult {
  readonly files: readonly string[];
  /** Where each file's lines start in the line numbering of `problems`. */
  readonly origins: ReadonlyArray<{ readonly file: string; readonly first: number }>;
}

/**
 * Stream `files` (one trail, oldest first) through one chain. Reads 1 MiB at a time and keeps no
 * line after it is checked; `onProgress` is told at most every `progressEveryBytes`.
 */
export async function verifyAuditFiles(
  files: readonly string[],
  options: ChainOptions & { readonly onProgress?: (progress: FileProgress) => void; readonly progressEveryBytes?: number } = {},
): Promise<FilesVerification> {
  const chain = new ChainVerifier(options);
  const origins: Array<{ file: string; first: number }> = [];
  let totalBytes = 0;
  for (const file of files) totalBytes += (await stat(file)).size;
  let bytes = 0;
  let reported = 0;
  const every = options.progressEveryBytes ?? 16 * 1024 * 1024;
  for (const file of files) {
    origins.push({ file, first: chain.lines + 1 });
    let rest: Buffer | null = null;
    for await (const chunk of createReadStream(file, { highWaterMark: 1024 * 1024 })) {
      const data: Buffer = rest === null ? (chunk as Buffer) : Buffer.concat([rest, chunk as Buffer]);
      let start = 0;
      for (let at = data.indexOf(0x0a, start); at !== -1; at = data.indexOf(0x0a, start)) {
        chain.line(data.subarray(start, at));
        start = at + 1;
      }
      rest = start === data.length ? null : Buffer.from(data.subarray(start));
      bytes += (chunk as Buffer).length;
      if (options.onProgress !== undefined && bytes - reported >= every) {
        reported = bytes;
        options.onProgress({ file, bytes, totalBytes, lines: chain.lines });
      }
    }
    // A last line without its newline: checked like any other (a torn write shows as invalid JSON).
    if (rest !== null && rest.length > 0) chain.line(rest);
  }
  options.onProgress?.({ file: files[files.length - 1] ?? '', bytes, totalBytes, lines: chain.lines });
  return { ...chain.result(), files, origins };
}

export interface TailFilter {
  readonly agent?: string;
  readonly decision?: 'allow' | 'deny';
  /** ms since the epoch; older records are skipped. */
  readonly since?: number;
  readonly limit: number;
}

/** The last `limit` records matching the filter, oldest first. Unparseable lines are skipped. */
export function tailAudit(lines: readonly string[], filter: TailFilter): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = [];
  for (let i = lines.length - 1; i >= 0 && out.length < filter.limit; i--) {
    let record: Record<string, unknown>;
    try {
      record = JSON.parse(lines[i] ?? '') as Record<string, unknown>;
    } catch {
      continue;
    }
    if (record.kind === 'checkpoint') continue;
    if (filter.agent !== undefined && record.agent !== filter.agent) continue;
    if (filter.decision !== undefined && record.decision !== filter.decision) continue;
    if (filter.since !== undefined && Date.parse(String(record.time)) < filter.since) break;
    out.push(record);
  }
  return out.reverse();
}

/** One human line per record. */
export function formatAuditRecord(r: Record<string, unknown>): string {
  const s = (v: unknown): string => (v === null || v === undefined ? '-' : String(v));
  let what: string;
  if (r.kind === 'admin') what = `${s(r.action)} ${s(r.agent)}`;
  else if (r.kind === 'broker') {
    // Broker lines have an endpoint and a grant type, no method or path of a backend.
    const endpoint = typeof r.endpoint === 'string' ? r.endpoint : '-';
    const grant = typeof r.grantType === 'string' ? ` (${r.grantType})` : '';
    what = `${endpoint.startsWith('/') ? endpoint : `/oauth/${endpoint}`}${grant}`;
  } else {
    const backend = typeof r.backend === 'string' && r.backend !== '' ? `/${r.backend}` : '';
    // A refused target is never logged (it may be hostile or carry secrets): say so instead.
    const path = typeof r.path === 'string' ? r.path : backend === '' ? '(target refused)' : ' (target refused)';
    what = `${s(r.method)} ${backend}${path}`;
  }
  return `${s(r.time)}  ${s(r.kind).padEnd(6)} ${s(r.decision).padEnd(5)} ${s(r.reason).padEnd(20)} ${s(r.agent).padEnd(20)} ${what}  ${s(r.status)}`;
}
