// The embedded store for a single instance: state in process memory, made durable in `state.file`
// (a snapshot) and its write-ahead journal (wal.ts). Kill switches, revocations and tripped
// breakers are appended to the journal and synced (fdatasync, shared by concurrent changes) before
// the call that changed them resolves; the snapshot is rewritten in the background (temp file,
// fsync, rename, fsync of the folder) when the journal has grown, at start and at a clean stop.
// A corrupt file or journal stops the start: a kill is never silently forgotten. One writer per file: a writer holds
// `<file>.lock` (lock.ts), so a second gateway or an offline CLI change beside a running gateway
// is refused instead of overwriting its state; readers (`explain`, `review`) open it read-only.
import { mkdir, readFile, rename, stat, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { syncDir, writeAtomic } from './atomic-file.js';
import type { Clock } from '../clock.js';
import { decide } from './rules/rate-limit.js';
import { addViolation, type BreakerRecord } from './breaker.js';
import { approvalUse, decidedApproval, placeApproval, pruneApprovals, usedApproval } from './rules/approvals.js';
import { jtiDigest, RECORD_BYTES, RevocationSet } from './revocations.js';
import { listWals, readWal, WalCorruptError, walPath, WalWriter } from './wal.js';
import { ActivityTable, createSweeper, pruneExpired, SessionTable, UseCounts } from './rules/sessions.js';
import { lockStateFile, type FileLock, type LockOptions } from './lock.js';
import { ReadOnlyStoreError, StateFileError } from './errors.js';
import { asAuditCheckpoint, type AuditCheckpointRecord, type Activity, type ApprovalRecord, type ApprovalUse, type ClientSecretRecord, type KillRecord, type SessionState, type Store } from './store.js';

export interface MemoryStoreOptions {
  readonly clock: Clock;
  /** Where state survives restarts; null keeps it in memory only. */
  readonly file: string | null;
  /** Read the file and never write it (no lock taken): every change is refused. */
  readonly readOnly?: boolean;
  readonly lock?: LockOptions;
  /** Told about a journal line cut by a crash (dropped) and a snapshot that could not be written. */
  readonly onWarning?: (message: string, fields: Record<string, unknown>) => void;
  /** Rewrite the snapshot once the journal holds this many bytes (and more than the snapshot). */
  readonly compactBytes?: number;
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
  /** The whole state, as a complete state file holds it. */
  snapshot(): string;
  adopt(change: AdoptedChange): void;
}

/** Default journal size that starts a background snapshot. */
const COMPACT_BYTES = 1024 * 1024;

interface StateFile {
  /**
   * 2 since revocations are kept as digests (`revocationTable`); version 1 files are still read.
   * 3: a snapshot written while the gateway runs, followed by its journal: an older release, which
   * would ignore the journal, refuses it. A clean stop writes version 2 (the snapshot alone holds
   * everything then).
   */
  readonly version: 1 | 2 | 3;
  /**
   * The journal generation that follows this snapshot (`<file>.wal.<N>`, wal.ts): changes made
   * after it are replayed from journals N and later. Absent in files written before the journal
   * (0); required in version 3.
   */
  readonly journal?: number;
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

/** One line of the journal: a change, in the order it was made. */
type Change =
  | { readonly op: 'kill'; readonly record: KillRecord }
  | { readonly op: 'revive'; readonly agent: string }
  /** The jti's digest as four u32 words (revocations.ts), never the jti itself. */
  | { readonly op: 'revoke'; readonly d: readonly number[]; readonly exp: number }
  | { readonly op: 'revoke-agent'; readonly agent: string; readonly at: number }
  | { readonly op: 'breaker'; readonly agent: string; readonly record: BreakerRecord }
  | { readonly op: 'secret'; readonly record: ClientSecretRecord }
  | { readonly op: 'secret-deleted'; readonly id: string }
  /** Uses counted of a maxUses token so far; `until` in ms. */
  | { readonly op: 'use'; readonly jti: string; readonly count: number; readonly until: number }
  | { readonly op: 'session-ended'; readonly sid: string; readonly exp: number }
  | { readonly op: 'approval'; readonly record: ApprovalRecord }
  | { readonly op: 'checkpoint'; readonly record: AuditCheckpointRecord };

function isKill(v: unknown): v is KillRecord {
  const k = v as Partial<KillRecord> | null;
  return typeof k === 'object' && k !== null && typeof k.agent === 'string' && typeof k.reason === 'string' && typeof k.at === 'number';
}

function isSecret(v: unknown): v is ClientSecretRecord {
  const r = v as Partial<ClientSecretRecord> | null;
  return typeof r === 'object' && r !== null && typeof r.id === 'string' && typeof r.agent === 'string' && typeof r.hash === 'string' && typeof r.createdAt === 'number';
}

function isApproval(v: unknown): v is ApprovalRecord {
  const a = v as Partial<ApprovalRecord> | null;
  return typeof a === 'object' && a !== null && typeof a.id === 'string' && typeof a.requestKey === 'string' && typeof a.expiresAt === 'number';
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
  const compactBytes = options.compactBytes ?? COMPACT_BYTES;
  const warn = options.onWarning ?? (() => undefined);
  let lock: FileLock | null = null;
  if (file !== null && !readOnly) {
    await mkdir(dirname(file), { recursive: true });
    lock = await lockStateFile(file, options.lock);
  }

  /** Apply one journal record; false when it is not one. */
  function apply(change: unknown, nowSeconds: number): boolean {
    const c = change as Partial<Record<string, unknown>> & { op?: unknown };
    switch (c.op) {
      case 'kill':
        if (!isKill(c.record)) return false;
        kills.set(c.record.agent, c.record);
        return true;
      case 'revive':
        if (typeof c.agent !== 'string') return false;
        kills.delete(c.agent);
        breakers.delete(c.agent);
        return true;
      case 'revoke': {
        const d = c.d;
        if (!Array.isArray(d) || d.length !== 4 || !d.every((w) => Number.isInteger(w) && w >= 0 && w <= 0xffff_ffff) || typeof c.exp !== 'number') return false;
        revoked.addDigest(Uint32Array.from(d as number[]), c.exp, nowSeconds);
        return true;
      }
      case 'revoke-agent':
        if (typeof c.agent !== 'string' || typeof c.at !== 'number') return false;
        agentRevoked.set(c.agent, Math.max(c.at, agentRevoked.get(c.agent) ?? 0));
        return true;
      case 'breaker': {
        const r = c.record as Partial<BreakerRecord> | undefined;
        if (typeof c.agent !== 'string' || typeof r !== 'object' || r === null || typeof r.tripped !== 'boolean' || !Array.isArray(r.violations)) return false;
        breakers.set(c.agent, r as BreakerRecord);
        return true;
      }
      case 'secret':
        if (!isSecret(c.record)) return false;
        secrets.set(c.record.id, c.record);
        return true;
      case 'secret-deleted':
        if (typeof c.id !== 'string') return false;
        secrets.delete(c.id);
        return true;
      case 'use':
        if (typeof c.jti !== 'string' || typeof c.count !== 'number' || typeof c.until !== 'number') return false;
        if (c.until > nowSeconds * 1000) uses.note(c.jti, c.count, c.until);
        return true;
      case 'session-ended':
        if (typeof c.sid !== 'string' || typeof c.exp !== 'number') return false;
        if (c.exp > nowSeconds) endedSessions.set(c.sid, Math.max(c.exp, endedSessions.get(c.sid) ?? 0));
        return true;
      case 'approval':
        if (!isApproval(c.record)) return false;
        approvals.set(c.record.id, c.record);
        return true;
      case 'checkpoint': {
        const checkpoint = asAuditCheckpoint(c.record);
        if (checkpoint === null) return false;
        checkpoints.set(checkpoint.file, checkpoint);
        return true;
      }
      default:
        return false;
    }
  }

  /** Journal generation the live journal has (and the next snapshot names). */
  let gen = 0;
  let loadedJournal = false;
  let hasSnapshot = false;
  if (file !== null) {
    const loaded = await readState(file).catch(async (error: unknown) => {
      await lock?.release();
      throw error;
    });
    const nowSeconds = clock.now() / 1000;
    const snapshot = loaded.state;
    hasSnapshot = snapshot !== null;
    if (snapshot !== null) loadSnapshot(snapshot, nowSeconds);
    for (const journal of loaded.journals) {
      for (const [i, change] of journal.records.entries()) {
        if (!apply(change, nowSeconds)) {
          await lock?.release();
          throw new StateFileError(file, `journal ${journal.path} line ${i + 1} is not a journal record`);
        }
      }
      if (journal.torn !== null) warn('state journal ended in a cut line (a write the gateway did not finish, never acknowledged); dropped', { file: journal.path, bytes: Buffer.byteLength(journal.torn) });
      if (journal.records.length > 0 || journal.torn !== null) loadedJournal = true;
    }
    gen = loaded.gen;
  } else if (options.initial !== undefined) {
    loadSnapshot(parseStateText(options.initial, '(snapshot)'), clock.now() / 1000);
  }

  function loadSnapshot(snapshot: StateFile, nowSeconds: number): void {
    {
      for (const k of snapshot.kills) kills.set(k.agent, k);
      if (snapshot.revocationTable !== undefined) revoked.addBuffer(Buffer.from(snapshot.revocationTable, 'base64'), nowSeconds);
      for (const [jti, exp] of Object.entries(snapshot.revocations)) revoked.add(jti, exp, nowSeconds);
      for (const [agent, at] of Object.entries(snapshot.agentRevocations)) agentRevoked.set(agent, at);
      for (const [agent, record] of Object.entries(snapshot.breakers)) breakers.set(agent, record);
      for (const record of snapshot.clientSecrets ?? []) secrets.set(record.id, record);
      for (const [sid, exp] of Object.entries(snapshot.endedSessions ?? {})) if (exp > nowSeconds) endedSessions.set(sid, exp);
      for (const [jti, entry] of Object.entries(snapshot.uses ?? {})) if (entry.expiresAt > nowSeconds) uses.note(jti, entry.count, entry.expiresAt * 1000);
      for (const record of snapshot.approvals ?? []) approvals.set(record.id, record);
      for (const value of Object.values(snapshot.auditCheckpoints ?? {})) {
        const checkpoint = asAuditCheckpoint(value);
        if (checkpoint !== null) checkpoints.set(checkpoint.file, checkpoint);
      }
    }
  }

  let wal: WalWriter | null = null;
  /** Bytes of the last snapshot written (a journal smaller than it is not worth compacting). */
  let snapshotBytes = 0;
  let compactRun: Promise<void> | null = null;
  let compactAgain = false;
  /** Set by close: the last snapshot is written as version 2, complete without a journal. */
  let closing = false;
  /** The snapshot on disk is a version 3 one (it needs its journal). */
  let runningSnapshot = false;

  /**
   * Write a new snapshot: open the next journal generation, switch appends to it, and write the
   * snapshot naming it; then the older journals go. Calls made meanwhile share the next round.
   */
  function compact(): Promise<void> {
    compactAgain = true;
    compactRun ??= (async () => {
      try {
        while (compactAgain) {
          compactAgain = false;
          await compactOnce();
        }
      } finally {
        compactRun = null;
      }
    })();
    return compactRun;
  }

  async function compactOnce(): Promise<void> {
    const stateFile = file as string;
    const next = gen + 1;
    const fresh = await WalWriter.open(stateFile, next);
    try {
      await syncDir(dirname(stateFile));
    } catch (error) {
      await fresh.close();
      throw error;
    }
    // Synchronous from the switch to the snapshot text: every change so far is in the snapshot,
    // every later one in the new journal.
    const old = wal;
    wal = fresh;
    gen = next;
    const final = closing;
    const text = serialize(next, final ? 2 : 3);
    await writeAtomic(stateFile, text);
    snapshotBytes = text.length;
    runningSnapshot = !final;
    await old?.close().catch(() => undefined);
    for (const w of await listWals(stateFile)) if (w.gen < next) await unlink(w.path).catch(() => undefined);
  }

  if (file !== null && !readOnly) {
    try {
      if (loadedJournal || !hasSnapshot) {
        // Start from one clean snapshot: a cut last line is never followed by new lines, and the
        // state file exists while the gateway runs.
        await compact();
      } else {
        wal = await WalWriter.open(file, gen);
        await syncDir(dirname(file));
        for (const w of await listWals(file)) if (w.gen < gen) await unlink(w.path).catch(() => undefined);
      }
    } catch (error) {
      await wal?.close().catch(() => undefined);
      await lock?.release();
      throw error;
    }
  }

  /** Make `changes` (already in force in memory) durable: one journal append, shared syncs. */
  function journal(...changes: Change[]): Promise<void> {
    if (readOnly) return Promise.reject(new ReadOnlyStoreError());
    if (file === null) return Promise.resolve();
    // A journal whose write failed may end in part of a line: a full snapshot takes over.
    if (wal === null || wal.broken) return compact();
    let text = '';
    for (const change of changes) text += `${JSON.stringify(change)}\n`;
    const done = wal.append(text);
    if (compactRun === null && wal.bytes >= compactBytes && wal.bytes >= snapshotBytes) {
      compact().catch((error: unknown) => warn('state snapshot could not be written; the journal keeps every change and the next change tries again', { file, error: String((error as Error).message) }));
    }
    return done;
  }

  function serialize(journal: number, version: 2 | 3): string {
    const nowSeconds = clock.now() / 1000;
    const tripped: Record<string, BreakerRecord> = {};
    for (const [agent, record] of breakers) if (record.tripped) tripped[agent] = record;
    const ended: Record<string, number> = {};
    for (const [sid, exp] of endedSessions) if (exp > nowSeconds) ended[sid] = exp;
    const counted: Record<string, { count: number; expiresAt: number }> = {};
    for (const [jti, count, untilMs] of uses.live(clock.now())) counted[jti] = { count, expiresAt: untilMs / 1000 };
    const state: StateFile = {
      version,
      journal,
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
    snapshot: () => serialize(gen, 2),
    adopt(change) {
      if (change.kind === 'approval') approvals.set(change.record.id, change.record);
      else if (change.record === null) breakers.delete(change.agent);
      else breakers.set(change.agent, change.record);
    },
    isHealthy: () => true,
    status: () => ({ healthy: true, detail: file === null ? 'in memory' : 'state file', unshared: 0 }),
    reseed: () => Promise.resolve({ reseeded: false, detail: 'the memory driver keeps its state in its own file; there is no shared store to reseed', kills: 0, revocations: 0, breakers: 0 }),
    isRevoked(jti, agent, issuedAt, digest) {
      if (agent !== undefined && issuedAt !== undefined) {
        const before = agentRevoked.get(agent);
        if (before !== undefined && issuedAt <= before) return true;
      }
      if (digest === undefined) return revoked.has(jti, clock.now() / 1000);
      const until = revoked.expiryOf(digest);
      return until !== 0 && until * 1000 > clock.now();
    },
    async revoke(jti, expiresAt) {
      const d = jtiDigest(jti);
      revoked.addDigest(d, expiresAt, clock.now() / 1000);
      await journal({ op: 'revoke', d: [...d], exp: expiresAt });
      return 'shared';
    },
    async revokeAgent(agent, at) {
      agentRevoked.set(agent, Math.max(at, agentRevoked.get(agent) ?? 0));
      await journal({ op: 'revoke-agent', agent, at });
      return 'shared';
    },
    killRecord: (agent) => kills.get(agent),
    kills: () => [...kills.values()],
    async kill(kill) {
      kills.set(kill.agent, kill);
      await journal({ op: 'kill', record: kill });
      return 'shared';
    },
    async revive(agent) {
      const killed = kills.delete(agent);
      const hadBreaker = breakers.delete(agent);
      if (killed || hadBreaker) await journal({ op: 'revive', agent });
      return killed || hadBreaker;
    },
    breaker: (agent) => breakers.get(agent),
    async recordViolation(agent, policy) {
      const result = addViolation(breakers.get(agent), policy, clock.now());
      breakers.set(agent, result.record);
      if (result.tripped) await journal({ op: 'breaker', agent, record: result.record });
      return result;
    },
    clientSecrets(agent) {
      const all = [...secrets.values()];
      return (agent === undefined ? all : all.filter((r) => r.agent === agent)).sort((a, b) => a.createdAt - b.createdAt);
    },
    saveClientSecret(secret) {
      const saved = Object.freeze({ ...secret });
      secrets.set(saved.id, saved);
      return journal({ op: 'secret', record: saved });
    },
    async deleteClientSecrets(agent, id) {
      const removed: Change[] = [];
      for (const secret of [...secrets.values()]) {
        if (secret.agent === agent && (id === undefined || secret.id === id)) {
          secrets.delete(secret.id);
          removed.push({ op: 'secret-deleted', id: secret.id });
        }
      }
      if (removed.length > 0) await journal(...removed);
      return removed.length;
    },
    async useOnce(key, expiresAt) {
      const until = usedOnce.get(key);
      if (until !== undefined && until * 1000 > clock.now()) return false;
      usedOnce.set(key, expiresAt);
      sweep();
      return true;
    },
    rateLimit(keys, rules) {
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
      await journal({ op: 'use', jti, count: uses.of(jti), until: expiresAt * 1000 });
      return true;
    },
    usesOf: (jti) => uses.of(jti),
    async openSession(sid, agent, expiresAt, single) {
      // Durable before the new token is handed out: a restart must not revive the old session.
      if (single) {
        const ended = sessions.endOthers(agent, sid);
        if (ended.length > 0) await journal(...ended.map((s): Change => ({ op: 'session-ended', sid: s, exp: endedSessions.get(s) ?? expiresAt })));
      }
      sessions.track(sid, agent, expiresAt, clock.now());
    },
    checkSession(sid, agent, expiresAt, idleMs, touch): SessionState {
      const checked = sessions.check(sid, agent, expiresAt, idleMs, touch, clock);
      // In force at once in memory; the file catches up (a failed write is retried by the next one).
      if (checked.endedNow) journal({ op: 'session-ended', sid, exp: checked.expiresAt }).catch(() => undefined);
      return checked.state;
    },
    endSession(sid, expiresAt) {
      sessions.markEnded(sid, expiresAt);
      return journal({ op: 'session-ended', sid, exp: endedSessions.get(sid) ?? expiresAt });
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
      await journal({ op: 'approval', record });
      return record;
    },
    async decideApproval(id, decision, by, reason) {
      const decided = decidedApproval(approvals.get(id), decision, by, reason, clock.now());
      if (decided === null) return null;
      approvals.set(id, decided);
      await journal({ op: 'approval', record: decided });
      return decided;
    },
    async consumeApproval(id, requestKey): Promise<ApprovalUse> {
      const record = approvals.get(id);
      const now = clock.now();
      const use = approvalUse(record, requestKey, now);
      if (use !== 'ok' || record === undefined) return use;
      // Marked used (synchronously, so a concurrent repeat sees it) and durable before the call goes on.
      const used = usedApproval(record, now);
      approvals.set(id, used);
      await journal({ op: 'approval', record: used });
      return 'ok';
    },
    touch: (agent, jti, expiresAt) => activity.touch(agent, jti, expiresAt, clock.now()),
    activity: (agent): Activity => activity.activity(agent, clock.now(), (jti) => revoked.has(jti, clock.now() / 1000), agentRevoked.has(agent)),
    auditCheckpoint(auditFile) {
      return Promise.resolve(checkpoints.get(auditFile) ?? null);
    },
    saveAuditCheckpoint(checkpoint) {
      checkpoints.set(checkpoint.file, checkpoint);
      return journal({ op: 'checkpoint', record: checkpoint });
    },
    async close() {
      try {
        while (compactRun !== null) await compactRun.catch(() => undefined);
        if (wal !== null) {
          await wal.settled();
          // A clean stop leaves one snapshot that holds everything (version 2), and no journal.
          closing = true;
          if (wal.bytes > 0 || wal.broken || runningSnapshot) await compact();
          const last = wal;
          await last.close();
          if (last.bytes === 0 && !last.broken) await unlink(walPath(file as string, last.gen)).catch(() => undefined);
        }
      } finally {
        await lock?.release();
      }
    },
  };
}

interface LoadedState {
  readonly state: StateFile | null;
  /** The generation the next journal gets: after the snapshot's and every journal on disk. */
  readonly gen: number;
  readonly journals: ReadonlyArray<{ readonly path: string; readonly records: unknown[]; readonly torn: string | null }>;
}

/**
 * The snapshot and the journals that follow it. A reader beside a running gateway may see a
 * compaction happen meanwhile (the snapshot replaced, old journals deleted): it reads again.
 */
async function readState(file: string): Promise<LoadedState> {
  for (let attempt = 0; ; attempt++) {
    const before = await identity(file);
    const state = await readStateFile(file);
    const from = state?.journal ?? 0;
    let gen = from;
    let moved = false;
    const journals: Array<{ path: string; records: unknown[]; torn: string | null }> = [];
    for (const w of await listWals(file)) {
      gen = Math.max(gen, w.gen);
      if (w.gen < from) continue;
      let parsed;
      try {
        parsed = await readWal(w.path);
      } catch (error) {
        if (error instanceof WalCorruptError) throw new StateFileError(file, error.message);
        throw new StateFileError(file, `journal ${w.path}: ${String((error as Error).message)}`);
      }
      if (parsed === null) {
        moved = true;
        break;
      }
      journals.push({ path: w.path, ...parsed });
    }
    if (!moved && (await identity(file)) === before) return { state, gen, journals };
    if (attempt >= 10) throw new StateFileError(file, 'it kept being replaced while it was read');
  }
}

/** Which file is at `path` now (a rename over it changes this), or null. */
async function identity(path: string): Promise<string | null> {
  try {
    const s = await stat(path, { bigint: true });
    return `${s.dev}:${s.ino}:${s.mtimeNs}:${s.size}`;
  } catch (error) {
    if ((error as { code?: unknown }).code === 'ENOENT') return null;
    throw error;
  }
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
    (state.version !== 1 && state.version !== 2 && state.version !== 3) ||
    (state.version === 3 && state.journal === undefined) ||
    (state.journal !== undefined && (typeof state.journal !== 'number' || !Number.isSafeInteger(state.journal) || state.journal < 0)) ||
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
    throw new StateFileError(file, 'not an AgentGate state file (version 1, 2 or 3)');
  }
  return state as StateFile;
}

/**
 * Move an unreadable state file aside so the gateway can start empty, its journals with it
 * (`<aside>.wal.<N>`); returns where the file went (or its first journal, when there was no file).
 */
export async function resetStateFile(file: string, clock: Clock): Promise<string | null> {
  const aside = `${file}.corrupt-${new Date(clock.now()).toISOString().replaceAll(':', '-')}`;
  let moved: string | null = null;
  try {
    await rename(file, aside);
    moved = aside;
  } catch (error) {
    if ((error as { code?: unknown }).code !== 'ENOENT') throw error;
  }
  for (const w of await listWals(file)) {
    await rename(w.path, walPath(aside, w.gen));
    moved ??= walPath(aside, w.gen);
  }
  return moved;
}
