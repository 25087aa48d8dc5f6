// Human approvals as pure rules over records, shared by both store drivers and the authorize
// check: how a request is keyed, what an approval is bound to, whether it may be used now, what
// is kept and for how long. The drivers only store and fetch records.
import { createHash } from 'node:crypto';
import type { ApprovalRecord, ApprovalUse } from '../store.js';

/** Decided and expired approvals stay listed this long, then are forgotten. */
export const APPROVAL_RETENTION_MS = 86_400_000;
/** Pending approvals kept at most; beyond it new requests are refused (fail closed). */
export const MAX_PENDING_APPROVALS = 10_000;

/** Identifies one exact request across repeats: agent, method, canonical path with query, body hash. */
export function approvalRequestKey(agent: string, method: string, path: string, bodySha256: string): string {
  return createHash('sha256').update(`${agent}\n${method}\n${path}\n${bodySha256}`).digest('hex');
}

/** The digest an approval is bound to: its request and its expiry. */
export function approvalDigest(requestKey: string, expiresAt: number): string {
  return createHash('sha256').update(`${requestKey}\n${expiresAt}`).digest('hex');
}

/** Whether `record` may pass the request `requestKey` at `now` (`ok`), or why not. */
export function approvalUse(record: ApprovalRecord | undefined, requestKey: string, now: number): ApprovalUse {
  if (record === undefined) return 'unknown';
  if (record.status === 'used') return 'used';
  if (record.status === 'denied') return 'denied';
  if (record.expiresAt <= now) return 'expired';
  if (record.status === 'pending') return 'pending';
  if (record.requestKey !== requestKey || record.digest !== approvalDigest(requestKey, record.expiresAt)) return 'mismatch';
  return 'ok';
}

/** The record once used at `now`. */
export function usedApproval(record: ApprovalRecord, now: number): ApprovalRecord {
  return { ...record, status: 'used', usedAt: now };
}

/** The record once decided, or null when it cannot be decided (not pending, or expired). */
export function decidedApproval(record: ApprovalRecord | undefined, decision: 'approved' | 'denied', by: string, reason: string | null, now: number): ApprovalRecord | null {
  if (record === undefined || record.status !== 'pending' || record.expiresAt <= now) return null;
  return { ...record, status: decision, decidedBy: by, decidedAt: now, reason };
}

/**
 * What to do with a new approval request among `existing` records: answer with a live pending one
 * for the same request (retries do not pile up), refuse when too many are pending, else store it.
 */
export function placeApproval(existing: Iterable<ApprovalRecord>, record: ApprovalRecord, now: number): { readonly use: ApprovalRecord } | { readonly store: ApprovalRecord } {
  let pending = 0;
  for (const other of existing) {
    if (other.status !== 'pending') continue;
    if (other.requestKey === record.requestKey && other.expiresAt > now) return { use: other };
    pending++;
  }
  if (pending >= MAX_PENDING_APPROVALS) throw new Error(`more than ${MAX_PENDING_APPROVALS} approvals are pending`);
  return { store: record };
}

/** Drop approvals past their retention. */
export function pruneApprovals(approvals: Map<string, ApprovalRecord>, now: number): void {
  for (const [id, record] of approvals) if (record.expiresAt + APPROVAL_RETENTION_MS <= now) approvals.delete(id);
}
