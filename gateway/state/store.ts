// The state contract shared by every instance: revocations, kill switches, breakers, and the
// per-agent activity the inventory shows. Reads on the hot path are synchronous against a local
// view the driver keeps current; writes are durable (state file, or Redis) before they resolve.
import type { BreakerPolicy, BreakerRecord } from './breaker.js';
import type { RateDecision, RateLimitRule } from './rules/rate-limit.js';

/**
 * Where a kill or revocation stands once the call resolves: `shared` is in the store every
 * instance reads (Redis, or the memory driver's state file); `local` is in force on this instance
 * and in its journal only, because Redis could not be reached; it is pushed when Redis returns.
 */
export type Sharing = 'shared' | 'local';

/** The state store cannot be read or written right now (Redis unreachable, too slow, or lost its data). */
export class StateUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StateUnavailableError';
  }
}

/** What `/readyz`, `status` and the metrics say about the store. */
export interface StateStatus {
  readonly healthy: boolean;
  /** Why it is (not) healthy, in words (no addresses, no secrets). */
  readonly detail: string;
  /** Kills and revocations made here while Redis was unreachable, not yet pushed. */
  readonly unshared: number;
}

/** What a reseed did (`agentgate state reseed`). */
export interface ReseedOutcome {
  readonly reseeded: boolean;
  readonly detail: string;
  readonly kills: number;
  readonly revocations: number;
  readonly breakers: number;
}

/** An operator's kill switch on one agent. */
export interface KillRecord {
  readonly agent: string;
  readonly reason: string;
  /** ms since the epoch. */
  readonly at: number;
  /** Who pulled it (operator description, e.g. `uid=1000 pid=4242`). */
  readonly by: string;
}

/** What the inventory shows about an agent's recent use (not persisted). */
export interface Activity {
  /** ms since the epoch of the last authenticated call. */
  readonly lastSeen: number | null;
  /** Distinct unexpired tokens seen or issued. */
  readonly liveTokens: number;
}

/**
 * A client secret of an agent (client_secret_basic). Only the SHA-256 of the secret is kept:
 * secrets are 256 random bits, so a fast hash is enough and the plaintext is never stored.
 */
export interface ClientSecretRecord {
  /** Short public id of this secret, for `credentials list` and `revoke`. */
  readonly id: string;
  readonly agent: string;
  /** Hex SHA-256 of the secret. */
  readonly hash: string;
  /** ms since the epoch. */
  readonly createdAt: number;
  /** ms since the epoch after which the secret is refused (end of a rotation overlap), or null. */
  readonly notAfter: number | null;
}

/** What a session check found. */
export type SessionState = 'live' | 'ended' | 'idle';
export type ApprovalStatus = 'pending' | 'approved' | 'denied' | 'used';

/**
 * A request waiting for, or holding, a person's approval. Bound to one exact request: `digest` is
 * sha256 over `requestKey` (agent, method, canonical path and query, body hash) and the expiry.
 */
export interface ApprovalRecord {
  readonly id: string;
  readonly agent: string;
  readonly role: string;
  readonly backend: string;
  readonly method: string;
  /** Canonical path with its query, as checked and forwarded. */
  readonly path: string;
  readonly route: string;
  readonly bodySha256: string;
  /** sha256(agent, method, path, body hash): identifies the request across repeats. */
  readonly requestKey: string;
  /** sha256(requestKey, expiresAt): what the approval is bound to. */
  readonly digest: string;
  /** ms since the epoch. */
  readonly createdAt: number;
  readonly expiresAt: number;
  readonly status: ApprovalStatus;
  readonly decidedBy: string | null;
  readonly decidedAt: number | null;
  readonly reason: string | null;
  readonly usedAt: number | null;
}

/** Why an approval could not be used for a request (or `ok` when it was, once). */
export type ApprovalUse = 'ok' | 'unknown' | 'pending' | 'denied' | 'used' | 'expired' | 'mismatch';

/** Where an audit trail was at its last checkpoint (see telemetry/audit-log.ts). */
export interface AuditCheckpointRecord {
  /** Absolute path of the audit file. */
  readonly file: string;
  readonly seq: number;
  /** SHA-256 (hex) of the checkpoint line. */
  readonly hash: string;
  readonly time: string;
}

/** A stored checkpoint, or null when the value is not one. */
export function asAuditCheckpoint(value: unknown): AuditCheckpointRecord | null {
  const v = value as Partial<AuditCheckpointRecord> | null;
  if (v === null || typeof v !== 'object') return null;
  if (typeof v.file !== 'string' || typeof v.seq !== 'number' || !Number.isInteger(v.seq) || typeof v.hash !== 'string' || !/^[0-9a-f]{64}$/.test(v.hash) || typeof v.time !== 'string') return null;
  return { file: v.file, seq: v.seq, hash: v.hash, time: v.time };
}

export interface ViolationOutcome {
  readonly record: BreakerRecord;
  readonly tripped: boolean;
}

/**
 * Shared gateway state. Implementations: `memory.ts` (one instance, state file) and `redis.ts`
 * (many instances).
 */
export interface Store {
  readonly driver: 'memory' | 'redis';
  /** False when the backing store cannot be trusted (e.g. Redis unreachable): admit fails closed. */
  isHealthy(): boolean;
  status(): StateStatus;
  /** Write this instance's snapshot back into a store that lost its data (Redis); memory: nothing to do. */
  reseed(): Promise<ReseedOutcome>;

  /** True when `jti` was revoked, or the agent's tokens issued at or before `issuedAt` were. */
  /**
   * `digest`, when given, is `jtiDigest(jti)` computed once by the caller: the memory driver then
   * hashes nothing per check (a verified-token cache hit allocates nothing).
   */
  isRevoked(jti: string, agent?: string, issuedAt?: number, digest?: Uint32Array): boolean;
  /** Revoke one token until `expiresAt` (seconds since the epoch). */
  revoke(jti: string, expiresAt: number): Promise<Sharing>;
  /**
   * Revoke every token of `agent` issued at or before `at` (seconds since the epoch). As `kill`:
   * in force here before the call returns its promise.
   */
  revokeAgent(agent: string, at: number): Promise<Sharing>;

  killRecord(agent: string): KillRecord | undefined;
  kills(): readonly KillRecord[];
  /**
   * In force on this instance before the call returns its promise (admission stops the calls in
   * flight then, without waiting for the write), even when Redis is unreachable (then `local`).
   * A cluster worker's store is the exception: the primary's push puts it in force, and cuts.
   */
  kill(record: KillRecord): Promise<Sharing>;
  /** Lift a kill switch and reset the breaker; resolves false when there was neither. */
  revive(agent: string): Promise<boolean>;

  breaker(agent: string): BreakerRecord | undefined;
  /** Count one violation; persisted when the breaker changes state. */
  recordViolation(agent: string, policy: BreakerPolicy): Promise<ViolationOutcome>;

  /** Client secrets of `agent` (every agent when omitted), oldest first. Synchronous. */
  clientSecrets(agent?: string): readonly ClientSecretRecord[];
  /** Add or replace (by id) a client secret; durable before it resolves. */
  saveClientSecret(record: ClientSecretRecord): Promise<void>;
  /** Remove one secret of `agent` (by id) or all of them; resolves how many were removed. */
  deleteClientSecrets(agent: string, id?: string): Promise<number>;

  /**
   * Record a client assertion's `jti` (namespaced by the caller) as used until `expiresAt`
   * (seconds). Resolves false when it was already used: a replay. Check-and-set is atomic.
   */
  useOnce(key: string, expiresAt: number): Promise<boolean>;
  /**
   * ms since the epoch: single-use records made before this moment may be unknown to the store
   * (the memory driver keeps them in memory only, so this is when it opened; Redis keeps them, 0).
   * Callers refuse anything that could have been used before it rather than risk a replay.
   */
  readonly replayHorizon: number;

  /**
   * Count one use of token `jti` against `maxUses`; resolves false when the token is spent. Exact
   * under concurrency (the check and the increment are one step) and durable before it resolves,
   * so a restart never hands out a use twice.
   */
  consumeUse(jti: string, maxUses: number, expiresAt: number): Promise<boolean>;

  /**
   * Charge one call against `rules`, one key each (the agent's, and a scope's), atomically: the
   * call passes only if every rule admits it, and only then is each one charged (GCRA, see
   * rules/rate-limit.ts). Not persisted (a restart forgives); shared by every instance with Redis,
   * in one round trip timed by Redis's clock. Rejects when the store cannot decide. The memory
   * driver decides at once (a value, no promise: nothing on the request path waits for it).
   */
  rateLimit(keys: readonly string[], rules: readonly RateLimitRule[]): RateDecision | Promise<RateDecision>;
  /** Uses counted so far for `jti` (introspection; does not count one). */
  usesOf(jti: string): number;

  /**
   * Open session `sid` for `agent`. With `single`, every other live session of the agent ends
   * (one live session per agent). `expiresAt` in seconds.
   */
  openSession(sid: string, agent: string, expiresAt: number, single: boolean): Promise<void>;
  /**
   * Check (and, when `touch`, refresh) session `sid` on a call: `ended` after revocation or a newer
   * single session, `idle` when unused for longer than `idleMs`. Without `touch` it is a pure read;
   * with it, an idle session ends and a sid the store never saw (a token minted offline) starts
   * its idle clock now.
   */
  checkSession(sid: string, agent: string, expiresAt: number, idleMs: number | null, touch: boolean): SessionState;
  /** End session `sid` until `expiresAt` (seconds); durable before it resolves. */
  endSession(sid: string, expiresAt: number): Promise<void>;
  approval(id: string): ApprovalRecord | undefined;
  /** Every approval still kept (pending, and decided ones until a day after they expire). */
  approvals(): readonly ApprovalRecord[];
  /**
   * Record a pending approval, persisted before it resolves; when a live pending one exists for
   * the same `requestKey` it is returned instead, so retries do not pile up requests.
   */
  requestApproval(record: ApprovalRecord): Promise<ApprovalRecord>;
  /** Approve or deny a pending, unexpired approval; resolves the updated record, or null when it is not pending. */
  decideApproval(id: string, decision: 'approved' | 'denied', by: string, reason: string | null): Promise<ApprovalRecord | null>;
  /** Use an approved approval for the request `requestKey`, once; durable before it resolves 'ok'. */
  consumeApproval(id: string, requestKey: string): Promise<ApprovalUse>;

  /** Note an authenticated call (inventory). Cheap and synchronous. */
  touch(agent: string, jti: string, expiresAt: number): void;
  activity(agent: string): Activity;

  /** The last audit checkpoint recorded for audit file `file`, or null. */
  auditCheckpoint(file: string): Promise<AuditCheckpointRecord | null>;
  /** Record an audit checkpoint (one per audit file, the newest wins); durable before it resolves. */
  saveAuditCheckpoint(checkpoint: AuditCheckpointRecord): Promise<void>;

  close(): Promise<void>;
}
