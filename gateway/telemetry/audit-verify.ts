// Checking and reading the audit trail: `agentgate audit verify` walks the hash chain and names
// every line that was edited, removed, inserted or reordered; `audit tail` filters for people.
import { GENESIS, hashLine } from './audit-log.js';

export interface AuditProblem {
  /** 1-based line number in the file. */
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

export function verifyAuditLines(lines: readonly string[]): AuditVerification {
  const problems: AuditProblem[] = [];
  const notes: string[] = [];
  let prevHash: string | null = null;
  let lastSeq: number | null = null;
  let firstSeq: number | null = null;
  for (let i = 0; i < lines.length; i++) {
    const n = i + 1;
    const text = lines[i] ?? '';
    let record: { seq?: unknown; prev?: unknown };
    try {
      record = JSON.parse(text) as { seq?: unknown; prev?: unknown };
    } catch {
      problems.push({ line: n, message: 'not valid JSON: edited or truncated' });
      prevHash = hashLine(text);
      if (lastSeq !== null) lastSeq += 1;
      continue;
    }
    const seq = typeof record.seq === 'number' && Number.isInteger(record.seq) ? record.seq : null;
    const prev = typeof record.prev === 'string' ? record.prev : null;
    if (seq === null || prev === null) {
      problems.push({ line: n, message: 'no seq/prev chain fields: inserted or edited' });
      prevHash = hashLine(text);
      continue;
    }
    if (firstSeq === null) {
      firstSeq = seq;
      if (seq === 1 && prev !== GENESIS) problems.push({ line: n, message: 'first line of the trail does not start the chain: edited' });
      if (seq !== 1) notes.push(`starts at seq ${seq}: continues a rotated file (its first link is checked against that file)`);
    } else if (lastSeq !== null) {
      const expected = lastSeq + 1;
      if (seq > expected) {
        problems.push({ line: n, message: `${seq - expected} line(s) removed before this line (seq jumps from ${lastSeq} to ${seq})` });
      } else if (seq < expected) {
        problems.push({ line: n, message: `out of order or duplicated: seq ${seq} after ${lastSeq} (inserted or reordered)` });
      } else if (prevHash !== null && prev !== prevHash) {
        problems.push({ line: n - 1, message: `edited: line ${n} recorded a different hash for it` });
      }
    }
    lastSeq = seq;
    prevHash = hashLine(text);
  }
  return { lines: lines.length, firstSeq, lastSeq, problems, notes };
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
  const what = r.kind === 'admin' ? `${s(r.action)} ${s(r.agent)}` : `${s(r.method)} ${r.backend === null ? '' : `/${s(r.backend)}`}${s(r.path)}`;
  return `${s(r.time)}  ${s(r.kind).padEnd(6)} ${s(r.decision).padEnd(5)} ${s(r.reason).padEnd(20)} ${s(r.agent).padEnd(20)} ${what}  ${s(r.status)}`;
}
