// The messages between a cluster primary and its workers (node:cluster IPC, advanced
// serialization). Workers ask (`call`, `audit`), the primary answers by id; the primary pushes
// state changes (`change`), which a worker applies to its replica and acknowledges when asked.
import type { BreakerPolicy, BreakerRecord } from '../state/breaker.js';
import type { RateLimitRule } from '../state/rules/rate-limit.js';
import type { ApprovalRecord, ClientSecretRecord, KillRecord } from '../state/store.js';
import type { AuditRecord } from '../telemetry/audit-log.js';

/** A state change as every worker's replica applies it (in the order the primary made them). */
export type Change =
  | { readonly kind: 'kill'; readonly record: KillRecord }
  | { readonly kind: 'revive'; readonly agent: string }
  | { readonly kind: 'revoke'; readonly jti: string; readonly expiresAt: number }
  | { readonly kind: 'revokeAgent'; readonly agent: string; readonly at: number }
  | { readonly kind: 'secret'; readonly record: ClientSecretRecord }
  | { readonly kind: 'deleteSecrets'; readonly agent: string; readonly id: string | null }
  | { readonly kind: 'session'; readonly sid: string; readonly agent: string; readonly expiresAt: number; readonly single: boolean }
  | { readonly kind: 'endSession'; readonly sid: string; readonly expiresAt: number }
  | { readonly kind: 'touchSession'; readonly sid: string; readonly agent: string; readonly expiresAt: number }
  | { readonly kind: 'use'; readonly jti: string; readonly maxUses: number; readonly expiresAt: number }
  | { readonly kind: 'breaker'; readonly agent: string; readonly record: BreakerRecord | null }
  | { readonly kind: 'approval'; readonly record: ApprovalRecord };

/** The Store operations a worker sends to the primary (the ones that change shared state). */
export type Call =
  | { readonly op: 'kill'; readonly record: KillRecord }
  | { readonly op: 'revive'; readonly agent: string }
  | { readonly op: 'revoke'; readonly jti: string; readonly expiresAt: number }
  | { readonly op: 'revokeAgent'; readonly agent: string; readonly at: number }
  | { readonly op: 'recordViolation'; readonly agent: string; readonly policy: BreakerPolicy }
  | { readonly op: 'saveClientSecret'; readonly record: ClientSecretRecord }
  | { readonly op: 'deleteClientSecrets'; readonly agent: string; readonly id: string | null }
  | { readonly op: 'useOnce'; readonly key: string; readonly expiresAt: number }
  | { readonly op: 'consumeUse'; readonly jti: string; readonly maxUses: number; readonly expiresAt: number }
  | { readonly op: 'rateLimit'; readonly keys: readonly string[]; readonly rules: readonly RateLimitRule[] }
  | { readonly op: 'openSession'; readonly sid: string; readonly agent: string; readonly expiresAt: number; readonly single: boolean }
  | { readonly op: 'endSession'; readonly sid: string; readonly expiresAt: number }
  | { readonly op: 'requestApproval'; readonly record: ApprovalRecord }
  | { readonly op: 'decideApproval'; readonly id: string; readonly decision: 'approved' | 'denied'; readonly by: string; readonly reason: string | null }
  | { readonly op: 'consumeApproval'; readonly id: string; readonly requestKey: string }
  | { readonly op: 'reseed' };

export type WorkerMessage =
  | { readonly t: 'hello' }
  | { readonly t: 'listening'; readonly address: string; readonly port: number; readonly family: string }
  | { readonly t: 'failed'; readonly message: string; readonly code: string | null }
  | { readonly t: 'call'; readonly id: number; readonly call: Call }
  | { readonly t: 'audit'; readonly id: number; readonly records: readonly AuditRecord[] }
  /** Inventory and session idle clocks: sent in batches, nobody waits for them. */
  | { readonly t: 'touches'; readonly agents: ReadonlyArray<readonly [string, string, number]>; readonly sessions: ReadonlyArray<readonly [string, string, number]> }
  | { readonly t: 'ack'; readonly id: number; readonly aborted: number; readonly error: string | null }
  | { readonly t: 'metrics'; readonly id: number; readonly metrics: unknown };

export type PrimaryMessage =
  | { readonly t: 'snapshot'; readonly state: string | null; readonly replayHorizon: number; readonly audit: AuditState }
  | { readonly t: 'result'; readonly id: number; readonly ok: true; readonly value: unknown }
  | { readonly t: 'result'; readonly id: number; readonly ok: false; readonly error: string }
  | { readonly t: 'audited'; readonly id: number; readonly error: string | null }
  | { readonly t: 'audit-state'; readonly audit: AuditState }
  /** `id` 0: apply, no answer wanted; otherwise answer with an `ack` of that id. */
  | { readonly t: 'change'; readonly id: number; readonly change: Change }
  | { readonly t: 'reload'; readonly id: number }
  | { readonly t: 'keys'; readonly id: number }
  | { readonly t: 'metrics?'; readonly id: number }
  | { readonly t: 'drain'; readonly graceMs: number };

export interface AuditState {
  readonly available: boolean;
  readonly reason: string | null;
}

/** Set in a worker's environment by the primary; `agentgate serve` then runs as that worker. */
export const WORKER_ENV = 'AGENTGATE_CLUSTER_WORKER';
