// What the checks may know of shared state (StateView: reads only) and what a decision may change
// (Intent: data). Stages read the view and append intents; one commit step (admission/) applies
// them after the checks, and `agentgate explain` runs the checks without ever committing.
import type { BreakerPolicy, BreakerRecord } from './breaker.js';
import { jtiDigest } from './revocations.js';
import type { ApprovalRecord, KillRecord, SessionState, Store } from './store.js';

/** Read-only state for the checks. Every method is synchronous and changes nothing. */
export interface StateView {
  readonly driver: Store['driver'];
  /** False when the backing store cannot be trusted: the checks then fail closed. */
  isHealthy(): boolean;
  /** `digest`: the jti's `revocationKey`, when the caller keeps it (no hashing per check then). */
  isRevoked(jti: string, agent: string, issuedAt: number, digest?: Uint32Array): boolean;
  /** What the revocation table looks a jti up by (a 16-byte digest); the same jti, the same key. */
  revocationKey(jti: string): Uint32Array;
  killRecord(agent: string): KillRecord | undefined;
  breaker(agent: string): BreakerRecord | undefined;
  /** The session's state now; `idle` when unused longer than `idleMs` (ending it is an intent). */
  sessionState(sid: string, agent: string, expiresAt: number, idleMs: number | null): SessionState;
  /** Uses counted so far for `jti`. */
  usesOf(jti: string): number;
  approval(id: string): ApprovalRecord | undefined;
  /** A live pending approval for the same request (agent, method, path, body), if one exists. */
  pendingApproval(requestKey: string, now: number): ApprovalRecord | undefined;
}

/**
 * One change a decision makes. `when` says whether it applies only to a call the checks admitted
 * (`admitted`: a use spent, an approval consumed) or whatever the outcome (`always`: last-seen,
 * an idle session ended, an approval requested, a violation counted).
 */
export type Intent =
  | { readonly kind: 'spend_use'; readonly when: 'admitted'; readonly jti: string; readonly maxUses: number; readonly expiresAt: number }
  | { readonly kind: 'consume_approval'; readonly when: 'admitted'; readonly id: string; readonly requestKey: string }
  | { readonly kind: 'touch_session'; readonly when: 'always'; readonly sid: string; readonly agent: string; readonly expiresAt: number }
  | { readonly kind: 'end_session'; readonly when: 'always'; readonly sid: string; readonly expiresAt: number }
  | { readonly kind: 'touch'; readonly when: 'always'; readonly agent: string; readonly jti: string; readonly expiresAt: number }
  | { readonly kind: 'request_approval'; readonly when: 'always'; readonly record: ApprovalRecord }
  | { readonly kind: 'violation'; readonly when: 'always'; readonly agent: string; readonly role: string; readonly policy: BreakerPolicy };

/** A read-only view over a store: the checks get this, never the store itself. */
export function viewOf(store: Store): StateView {
  return Object.freeze({
    driver: store.driver,
    isHealthy: () => store.isHealthy(),
    isRevoked: (jti: string, agent: string, issuedAt: number, digest?: Uint32Array) => store.isRevoked(jti, agent, issuedAt, digest),
    revocationKey: (jti: string) => jtiDigest(jti),
    killRecord: (agent: string) => store.killRecord(agent),
    breaker: (agent: string) => store.breaker(agent),
    sessionState: (sid: string, agent: string, expiresAt: number, idleMs: number | null) => store.checkSession(sid, agent, expiresAt, idleMs, false),
    usesOf: (jti: string) => store.usesOf(jti),
    approval: (id: string) => store.approval(id),
    pendingApproval(requestKey: string, now: number) {
      for (const record of store.approvals()) {
        if (record.requestKey === requestKey && record.status === 'pending' && record.expiresAt > now) return record;
      }
      return undefined;
    },
  });
}
