// The embedded store for a single instance: state in process memory, made durable in `state.file`.
// Kill switches, revocations and tripped breakers are written (temp file, fsync, rename, fsync of
// the folder) before the call that changed them resolves, and loaded at start. A corrupt file
// stops the start: a kill is never silently forgotten. One writer per file: a writer holds
// `<file>.lock` (lock.ts), so a second gateway or an offline CLI change beside a running gateway
// is refused instead of overwriting its state; readers (`explain`, `review`) open it read-only.
import { mkdir, open, readFile, rename } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Clock } from '../clock.js';
import { decide } from './rules/rate-limit.js';
import { addViolation, type BreakerRecord } from './breaker.js';
import { approvalUse, decidedApproval, placeApproval, pruneApprovals, usedApproval } from './rules/approvals.js';
import { RECORD_BYTES, RevocationSet } from './revocations.js';
import { ActivityTable, createSweeper, pruneExpired, SessionTable, UseCounts } from './rules/sessions.js';
import { lockStateFile, type FileLock, type LockOptions } from './lock.js';
import { asAuditCheckpoint, type AuditCheckpointRecord, type Activity, type ApprovalRecord, type ApprovalUse, type ClientSecretRecord, type KillRecord, type SessionState, type Store } from './store.js';

export interface MemoryStoreOptions {
  readonly clock: Clock;
  /** Where state survives restarts; null keeps it in memory only. */
  readonly file: string | null;
  /** Read the file and never write it (no lock taken): every change is refused. */
  readonly readOnly?: boolean;
  readonly lock?: LockOptions;
  /**
   * Start from this state (the text `snapshot()` made) instead of a file; with `file: null` only.
   * A cluster worker's replica starts so from the primary's store (cluster/worker-store.ts).
   */
  readonly initial?: string;
}

/** What another process decided, set as is (a cluster worker's replica; never persisted by it). */
export type AdoptedChange =
  | { readonly kind: 'breaker'; readonly agent: string; readonly record: BreakerRecord | null }
  | { readonly kind: 'approval'; readonly record: ApprovalRecord };

/** The memory driver: the Store, plus what a cluster primary needs to feed workers' replicas. */
export interface MemoryStore extends Store {
  /** The whole persisted state, as the state file holds it. */
  snapshot(): string;
  adopt(change: AdoptedChange): void;
}

/** A change was asked of a store opened read-only. */
export class ReadOnlyStoreError extends Error {
  constructor() {
    super('this state file was opened read-only (a tool beside the gateway); changes go through the gateway');
    this.name = 'ReadOnlyStoreError';
  }
}

/** The state file exists but cannot be read back; the gateway refuses to start on it. */
export class StateFileError extends Error {
  constructor(
    readonly file: string,
    why: string,
  ) {
    super(`state file ${file} is unreadable (${why}); it may hold kill switches and revocations, so the gateway will not start without it. Fix or restore it, or start with --reset-state to move it aside and start empty`);
    this.name = 'StateFileError';
  }
}

interface StateFile {
  /** 2 since revocations are kept as digests (`revocationTable`); version 1 files are still read. */
  readonly version: 1 | 2;
  readonly savedAt: string;
  readonly kills: KillRecord[];
  /** jti -> exp (seconds): version 1 files; version 2 writes it empty. */
  readonly revocations: Record<string, number>;
  /**
   * Version 2: base64 of the revoked jtis as records of revocations.ts (16-byte SHA-256 prefix of
   * the jti, expiry as a little-endian u32 of seconds).
   */
  readonly revocationTable?: string;
  /** agent -> tokens issued at or before this second are revoked. */
  readonly agentRevocations: Record<string, number>;
  readonly breakers: Record<string, BreakerRecord>;
  /** Client secrets (hashes only). Absent in files written before the token broker. */
  readonly clientSecrets?: ClientSecretRecord[];
  /** sid -> exp (seconds) of sessions ended by revocation. */
  readonly endedSessions?: Record<string, number>;
  /** jti -> uses counted so far and the token's exp (seconds), for tokens with maxUses. */
  readonly uses?: Record<string, { count: number; expiresAt: number }>;
  /** Absent in files written before approvals existed. */
  readonly approvals?: ApprovalRecord[];
  /** Audit file -> its last checkpoint. Absent in files written before checkpoints. */
  readonly auditCheckpoints?: Record<string, AuditCheckpointRecord>;
}

export async function openMemoryStore(options: MemoryStoreOptions): Promise<MemoryStore> {
  const { clock, file } = options;
  const revoked = new RevocationSet();
  const agentRevoked = new Map<string, number>();
  const kills = new Map<string, KillRecord>();
  const breakers = new Map<string, BreakerRecord>();
  const activity = new ActivityTable();
  const secrets = new Map<string, ClientSecretRecord>();
  /** Ended sessions that must survive a restart: sid -> exp (seconds). */
  const endedSessions = new Map<string, number>();
  /** Used client assertion jtis: key -> exp (seconds). */
  const usedOnce = new Map<string, number>();
  /** Rate-limit key -> theoretical arrival time (ms); in memory only: a restart forgives. */
  const rateTats = new Map<string, number>();
  const sweep = createSweeper(() => {
    const now = clock.now();
    pruneExpired(usedOnce, now / 1000);
    uses.sweep(now);
    sessions.sweep(now / 1000);
  });
  const sessions = new SessionTable(() => endedSessions, sweep);
  const uses = new UseCounts(sweep);
  const approvals = new Map<string, ApprovalRecord>();
  const checkpoints = new Map<string, AuditCheckpointRecord>();

  const readOnly = options.readOnly === true;
  let lock: FileLock | null = null;
  if (file !== null && !readOnly) {
    await mkdir(dirname(file), { recursive: true });
    lock = await lockStateFile(file, options.lock);
  }
  if (file !== null || options.initial !== undefined) {
    const loaded = file === null ? parseStateText(options.initial ?? '', '(snapshot)') : await readStateFile(file).catch(async (error: unknown) => {
      await lock?.release();
      throw error;
    });
    if (loaded !== null) {
      for (const k of loaded.kills) kills.set(k.agent, k);
      const nowSeconds = clock.now() / 1000;
      if (loaded.revocationTable !== undefined) revoked.addBuffer(Buffer.from(loaded.revocationTable, 'base64'), nowSeconds);
      for (const [jti, exp] of Object.entries(loaded.revocations)) revoked.add(jti, exp, nowSeconds);
      for (const [agent, at] of Object.entries(loaded.agentRevocations)) agentRevoked.set(agent, at);
      for (const [agent, record] of Object.entries(loaded.breakers)) breakers.set(agent, record);
      for (const record of loaded.clientSecrets ?? []) secrets.set(record.id, record);
      for (const [sid, exp] of Object.entries(loaded.endedSessions ?? {})) if (exp > nowSeconds) endedSessions.set(sid, exp);
      for (const [jti, entry] of Object.entries(loaded.uses ?? {})) if (entry.expiresAt > nowSeconds) uses.note(jti, entry.count, entry.expiresAt * 1000);
      for (const record of loaded.approvals ?? []) approvals.set(record.id, record);
      for (const value of Object.values(loaded.auditCheckpoints ?? {})) {
        const checkpoint = asAuditCheckpoint(value);
        if (checkpoint !== null) checkpoints.set(checkpoint.file, checkpoint);
      }
    }
  }

  let writing: Promise<void> | null = null;
  let dirty = false;
  function persist(): Promise<void> {
    if (readOnly) return Promise.reject(new ReadOnlyStoreError());
    if (file === null) return Promise.resolve();
    dirty = true;
    writing ??= (async () => {
      try {
        while (dirty) {
          dirty = false;
          await writeAtomic(file, serialize());
        }
      } finally {
        writing = null;
      }
    })();
    return writing;
  }

  function serialize(): string {
    const nowSeconds = clock.now() / 1000;
    const tripped: Record<string, BreakerRecord> = {};
    for (const [agent, record] of breakers) if (record.tripped) tripped[agent] = record;
    const ended: Record<string, number> = {};
    for (const [sid, exp] of endedSessions) if (exp > nowSeconds) ended[sid] = exp;
    const counted: Record<string, { count: number; expiresAt: number }> = {};
    for (const [jti, count, untilMs] of uses.live(clock.now())) counted[jti] = { count, expiresAt: untilMs / 1000 };
    const state: StateFile = {
      version: 2,
      savedAt: new Date(clock.now()).toISOString(),
      kills: [...kills.values()],
      revocations: {},
      revocationTable: revoked.toBuffer(nowSeconds).toString('base64'),
      agentRevocations: Object.fromEntries(agentRevoked),
      breakers: tripped,
      clientSecrets: [...secrets.values()],
      endedSessions: ended,
      uses: counted,
      approvals: [...approvals.values()],
      auditCheckpoints: Object.fromEntries(checkpoints),
    };
    return `${JSON.stringify(state)}\n`;
  }

  // Used assertion jtis live in memory only (an fsync per token request would cost more than the
  // whole issuance); assertions that could predate this moment are refused instead. `iat` has a
  // one-second granularity, so the horizon is the next whole second; the server opens its
  // listeners only once it has passed, so a fresh assertion is never mistaken for an old one.
  const replayHorizon = Math.ceil(clock.now() / 1000) * 1000;

  return {
    driver: 'memory',
    replayHorizon,
    snapshot: serialize,
    adopt(change) {
      if (change.kind === 'approval') approvals.set(change.record.id, change.record);
      else if (change.record === null) breakers.delete(change.agent);
      else breakers.set(change.agent, change.record);
    },
    isHealthy: () => true,
    status: () => ({ healthy: true, detail: file === null ? 'in memory' : 'state file', unshared: 0 }),
    reseed: () => Promise.resolve({ reseeded: false, detail: 'the memory driver keeps its state in its own file; there is no shared store to reseed', kills: 0, revocations: 0, breakers: 0 }),
    isRevoked(jti, agent, issuedAt) {
      if (agent !== undefined && issuedAt !== undefined) {
        const before = agentRevoked.get(agent);
        if (before !== undefined && issuedAt <= before) return true;
      }
      return revoked.has(jti, clock.now() / 1000);
    },
    async revoke(jti, expiresAt) {
      revoked.add(jti, expiresAt, clock.now() / 1000);
      await persist();
      return 'shared';
    },
    async revokeAgent(agent, at) {
      agentRevoked.set(agent, Math.max(at, agentRevoked.get(agent) ?? 0));
      await persist();
      return 'shared';
    },
    killRecord: (agent) => kills.get(agent),
    kills: () => [...kills.values()],
    async kill(record) {
      kills.set(record.agent, record);
      await persist();
      return 'shared';
    },
    async revive(agent) {
      const killed = kills.delete(agent);
      const hadBreaker = breakers.delete(agent);
      if (killed || hadBreaker) await persist();
      return killed || hadBreaker;
    },
    breaker: (agent) => breakers.get(agent),
    async recordViolation(agent, policy) {
      const result = addViolation(breakers.get(agent), policy, clock.now());
      breakers.set(agent, result.record);
      if (result.tripped) await persist();
      return result;
    },
    clientSecrets(agent) {
      const all = [...secrets.values()];
      return (agent === undefined ? all : all.filter((r) => r.agent === agent)).sort((a, b) => a.createdAt - b.createdAt);
    },
    saveClientSecret(record) {
      secrets.set(record.id, Object.freeze({ ...record }));
      return persist();
    },
    async deleteClientSecrets(agent, id) {
      let removed = 0;
      for (const record of [...secrets.values()]) {
        if (record.agent === agent && (id === undefined || record.id === id)) {
          secrets.delete(record.id);
          removed++;
        }
      }
      if (removed > 0) await persist();
      return removed;
    },
    async useOnce(key, expiresAt) {
      const until = usedOnce.get(key);
      if (until !== undefined && until * 1000 > clock.now()) return false;
      usedOnce.set(key, expiresAt);
      sweep();
      return true;
    },
    async rateLimit(keys, rules) {
      const now = clock.now();
      const outcome = decide(rules, keys.map((k) => rateTats.get(k)), now);
      if (outcome.tats !== null) {
        // Keys whose bucket is full again hold nothing worth keeping; drop them now and then.
        if (rateTats.size > 10_000) for (const [k, tat] of rateTats) if (tat <= now) rateTats.delete(k);
        outcome.tats.forEach((tat, i) => rateTats.set(keys[i] as string, tat));
      }
      return outcome;
    },
    async consumeUse(jti, maxUses, expiresAt) {
      // Taken in one synchronous step, so concurrent calls on this event loop can never both take
      // the last use; the count is on disk before the call goes on (concurrent uses share one write).
      if (!uses.take(jti, maxUses, expiresAt * 1000)) return false;
      await persist();
      return true;
    },
    usesOf: (jti) => uses.of(jti),
    async openSession(sid, agent, expiresAt, single) {
      // Durable before the new token is handed out: a restart must not revive the old session.
      if (single && sessions.endOthers(agent, sid).length > 0) await persist();
      sessions.track(sid, agent, expiresAt, clock.now());
    },
    checkSession(sid, agent, expiresAt, idleMs, touch): SessionState {
      const checked = sessions.check(sid, agent, expiresAt, idleMs, touch, clock.now());
      // In force at once in memory; the file catches up (a failed write is retried by the next one).
      if (checked.endedNow) persist().catch(() => undefined);
      return checked.state;
    },
    endSession(sid, expiresAt) {
      sessions.markEnded(sid, expiresAt);
      return persist();
    },
    approval: (id) => approvals.get(id),
    approvals() {
      pruneApprovals(approvals, clock.now());
      return [...approvals.values()];
    },
    async requestApproval(record) {
      const now = clock.now();
      pruneApprovals(approvals, now);
      const placed = placeApproval(approvals.values(), record, now);
      if ('use' in placed) return placed.use;
      approvals.set(record.id, record);
      await persist();
      return record;
    },
    async decideApproval(id, decision, by, reason) {
      const decided = decidedApproval(approvals.get(id), decision, by, reason, clock.now());
      if (decided === null) return null;
      approvals.set(id, decided);
      await persist();
      return decided;
    },
    async consumeApproval(id, requestKey): Promise<ApprovalUse> {
      const record = approvals.get(id);
      const now = clock.now();
      const use = approvalUse(record, requestKey, now);
      if (use !== 'ok' || record === undefined) return use;
      // Marked used (synchronously, so a concurrent repeat sees it) and durable before the call goes on.
      approvals.set(id, usedApproval(record, now));
      await persist();
      return 'ok';
    },
    touch: (agent, jti, expiresAt) => activity.touch(agent, jti, expiresAt, clock.now()),
    activity: (agent): Activity => activity.activity(agent, clock.now(), (jti) => revoked.has(jti, clock.now() / 1000), agentRevoked.has(agent)),
    auditCheckpoint(auditFile) {
      return Promise.resolve(checkpoints.get(auditFile) ?? null);
    },
    saveAuditCheckpoint(checkpoint) {
      checkpoints.set(checkpoint.file, checkpoint);
      return persist();
    },
    async close() {
      while (writing !== null) await writing;
      await lock?.release();
    },
  };
}

async function readStateFile(file: string): Promise<StateFile | null> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as { code?: unknown }).code === 'ENOENT') return null;
    throw new StateFileError(file, String((error as Error).message));
  }
  return parseStateText(text, file);
}

function parseStateText(text: string, file: string): StateFile {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new StateFileError(file, 'not valid JSON');
  }
  const state = parsed as Partial<StateFile> | null;
  if (
    state === null ||
    typeof state !== 'object' ||
    (state.version !== 1 && state.version !== 2) ||
    !Array.isArray(state.kills) ||
    typeof state.revocations !== 'object' ||
    state.revocations === null ||
    Object.values(state.revocations).some((exp) => typeof exp !== 'number') ||
    (state.revocationTable !== undefined && (typeof state.revocationTable !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(state.revocationTable) || Buffer.byteLength(state.revocationTable, 'base64') % RECORD_BYTES !== 0)) ||
    typeof state.agentRevocations !== 'object' ||
    typeof state.breakers !== 'object' ||
    (state.clientSecrets !== undefined && (!Array.isArray(state.clientSecrets) || state.clientSecrets.some((r) => typeof r?.id !== 'string' || typeof r.agent !== 'string' || typeof r.hash !== 'string' || typeof r.createdAt !== 'number'))) ||
    (state.endedSessions !== undefined && (typeof state.endedSessions !== 'object' || state.endedSessions === null)) ||
    (state.uses !== undefined && (typeof state.uses !== 'object' || state.uses === null)) ||
    state.kills.some((k) => typeof k?.agent !== 'string' || typeof k.reason !== 'string' || typeof k.at !== 'number') ||
    (state.approvals !== undefined && (!Array.isArray(state.approvals) || state.approvals.some((a) => typeof a?.id !== 'string' || typeof a.requestKey !== 'string' || typeof a.expiresAt !== 'number')))
  ) {
    throw new StateFileError(file, 'not an AgentGate state file (version 1 or 2)');
  }
  return state as StateFile;
}

/** Move an unreadable state file aside so the gateway can start empty; returns where it went. */
export async function resetStateFile(file: string, clock: Clock): Promise<string | null> {
  const aside = `${file}.corrupt-${new Date(clock.now()).toISOString().replaceAll(':', '-')}`;
  try {
    await rename(file, aside);
    return aside;
  } catch (error) {
    if ((error as { code?: unknown }).code === 'ENOENT') return null;
    throw error;
  }
}

async function writeAtomic(file: string, data: string): Promise<void> {
  const dir = dirname(file);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const tmp = `${file}.tmp-${process.pid}`;
  const handle = await open(tmp, 'w', 0o600);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(tmp, file);
  // The rename is durable only once the folder entry is on disk.
  const dirHandle = await open(dir, 'r');
  try {
    await dirHandle.sync();
  } finally {
    await dirHandle.close();
  }
}
