// The shared store for many instances: state lives in Redis, every instance keeps a local view
// of it for the synchronous hot-path reads, and a change made by one instance reaches the others
// through one pub/sub channel. A write is in Redis (and published) before the call resolves.
//
//   agentgate:kills            hash agent -> KillRecord (JSON)
//   agentgate:agent-rev        hash agent -> seconds (tokens issued at or before are revoked)
//   agentgate:rev:<jti>        string exp (seconds), expiring at exp
//   agentgate:breakers         hash agent -> BreakerRecord (JSON), changed by compare-and-set
//   agentgate:secrets          hash id -> ClientSecretRecord (JSON)
//   agentgate:approvals        hash id -> ApprovalRecord (JSON), changed by compare-and-set
//   agentgate:ended-sessions   hash sid -> exp (seconds)
//   agentgate:live:<agent>     hash sid -> exp (seconds) of the agent's live sessions
//   agentgate:once:<key>       SET NX, expiring at exp: single-use assertion jtis
//   agentgate:uses:<jti>       counter, incremented by a script only while below maxUses
//   agentgate:audit-checkpoints hash audit file -> its last AuditCheckpointRecord (JSON)
//   agentgate:events           channel: {"kind": ..., "key": ...}; receivers re-read the key
//
// The local view is trusted only while both connections are up and a full load has finished since
// the last (re)connect: `isHealthy()` is false otherwise, and admit fails closed.
import { createClient } from 'redis';
import type { Clock } from '../clock.js';
import { addViolation, type BreakerRecord } from './breaker.js';
import { approvalDigest } from './memory.js';
import { asAuditCheckpoint, type Activity, type ApprovalRecord, type ApprovalUse, type ClientSecretRecord, type KillRecord, type SessionState, type Store, type ViolationOutcome } from './store.js';

export interface RedisStoreOptions {
  readonly clock: Clock;
  /** redis:// or rediss:// URL (may hold a password: never logged). */
  readonly url: string;
  /** How long `openRedisStore` waits for the first connection and load. */
  readonly connectTimeoutMs?: number;
  /** Told when the store turns healthy or unhealthy (no URL, no secrets). */
  readonly onHealth?: (healthy: boolean, why: string) => void;
  /**
   * Told when another instance kills an agent or revokes all its tokens, so this one can abort the
   * agent's calls in flight here too (the next call is refused either way).
   */
  readonly onRemoteStop?: (agent: string, reason: string) => void;
}

const P = 'agentgate:';
const K = {
  kills: `${P}kills`,
  agentRev: `${P}agent-rev`,
  rev: `${P}rev:`,
  breakers: `${P}breakers`,
  secrets: `${P}secrets`,
  approvals: `${P}approvals`,
  ended: `${P}ended-sessions`,
  live: `${P}live:`,
  once: `${P}once:`,
  uses: `${P}uses:`,
  channel: `${P}events`,
  auditCheckpoints: `${P}audit-checkpoints`,
} as const;

type EventKind = 'kill' | 'agent-rev' | 'rev' | 'breaker' | 'secret' | 'approval' | 'ended' | 'uses';
const EVENT_KINDS: ReadonlySet<string> = new Set<EventKind>(['kill', 'agent-rev', 'rev', 'breaker', 'secret', 'approval', 'ended', 'uses']);

/** Replace a hash field only if it still holds what the caller read (empty string: absent). */
const HASH_CAS = `
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if (cur == false and ARGV[2] ~= '') or (cur ~= false and cur ~= ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1`;
/** Raise a numeric hash field to at least ARGV[2]. */
const HASH_MAX = `
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '-1')
if tonumber(ARGV[2]) > cur then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
return 1`;
/** Count one use while below ARGV[1]; the counter expires with the token (ARGV[2], ms). */
const CONSUME_USE = `
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
if count >= tonumber(ARGV[1]) then return -1 end
count = redis.call('INCR', KEYS[1])
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
return count`;
/**
 * Open a session: with ARGV[4] = '1', every other unexpired live session of the agent (KEYS[1])
 * is ended (KEYS[2]) first; returns the ended sids. ARGV: sid, exp (s), now (s), single.
 */
const OPEN_SESSION = `
local ended = {}
if ARGV[4] == '1' then
  local live = redis.call('HGETALL', KEYS[1])
  for i = 1, #live, 2 do
    local sid, exp = live[i], tonumber(live[i + 1])
    if sid ~= ARGV[1] and exp > tonumber(ARGV[3]) then
      local cur = tonumber(redis.call('HGET', KEYS[2], sid) or '-1')
      if exp > cur then redis.call('HSET', KEYS[2], sid, live[i + 1]) end
      ended[#ended + 1] = sid
    end
  end
  redis.call('DEL', KEYS[1])
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local ttl = redis.call('TTL', KEYS[1])
if ttl < 0 or tonumber(ARGV[3]) + ttl < tonumber(ARGV[2]) then redis.call('EXPIREAT', KEYS[1], math.ceil(tonumber(ARGV[2]))) end
return ended`;

/** Compare-and-set retries before a write is reported as failed (contention, not an outage). */
const MAX_CAS_ATTEMPTS = 50;
const MAX_TRACKED_TOKENS = 1000;
const APPROVAL_RETENTION_MS = 86_400_000;
const MAX_PENDING_APPROVALS = 10_000;
const SWEEP_EVERY = 1024;

interface Session {
  readonly agent: string;
  readonly expiresAt: number;
  lastSeen: number;
  ended: boolean;
}

/** The view rebuilt by a full load. */
interface View {
  readonly kills: Map<string, KillRecord>;
  readonly agentRevoked: Map<string, number>;
  readonly revoked: Map<string, number>;
  readonly breakers: Map<string, BreakerRecord>;
  readonly secrets: Map<string, ClientSecretRecord>;
  readonly approvals: Map<string, ApprovalRecord>;
  readonly ended: Map<string, number>;
}

function emptyView(): View {
  return { kills: new Map(), agentRevoked: new Map(), revoked: new Map(), breakers: new Map(), secrets: new Map(), approvals: new Map(), ended: new Map() };
}

/** The Redis server could not be reached (or loaded from) in time at start. */
export class RedisUnavailableError extends Error {
  constructor(why: string) {
    super(`state.driver redis: cannot reach Redis (${why}); the gateway will not start without its shared state`);
    this.name = 'RedisUnavailableError';
  }
}

export async function openRedisStore(options: RedisStoreOptions): Promise<Store> {
  const { clock, url } = options;
  const onHealth = options.onHealth ?? (() => undefined);
  const onRemoteStop = options.onRemoteStop ?? (() => undefined);
  const socket = { reconnectStrategy: (retries: number) => Math.min(50 + retries * 50, 500), connectTimeout: 2000 };
  // No offline queue: a write while Redis is away fails at once instead of waiting unseen.
  const client = createClient({ url, socket, disableOfflineQueue: true, pingInterval: 5000 });
  const subscriber = client.duplicate();

  let view = emptyView();
  const sessions = new Map<string, Session>();
  const liveSessions = new Map<string, Set<string>>();
  /** Token uses seen by this instance (introspection): jti -> count and exp (ms). */
  const uses = new Map<string, { count: number; untilMs: number }>();
  const activity = new Map<string, { lastSeen: number; tokens: Map<string, number> }>();
  let insertions = 0;

  // Health: both connections ready, subscribed, and a full load done since.
  let commandReady = false;
  let subscribed = false;
  let loaded = false;
  let healthy = false;
  let closing = false;
  let loadGeneration = 0;
  /** Until the store is handed out nothing is in flight: changes only fill the view. */
  let opened = false;
  const remoteStop = (agent: string, reason: string): void => {
    if (opened) onRemoteStop(agent, reason);
  };
  /** Events that arrive while a load runs: re-read once the load's view is in place. */
  let pending: { kind: EventKind; key: string }[] | null = null;
  let lastError = '';
  /** The channel listener is registered (node-redis then resubscribes by itself on reconnect). */
  let listening = false;

  function setHealth(why: string): void {
    const now = commandReady && subscribed && loaded && !closing;
    if (now !== healthy) {
      healthy = now;
      onHealth(now, why);
    }
  }
  function lost(why: string): void {
    loaded = false;
    setHealth(why);
  }

  client.on('error', (error: Error) => {
    lastError = error.message;
    commandReady = false;
    lost('redis connection error');
  });
  client.on('reconnecting', () => {
    commandReady = false;
    lost('redis reconnecting');
  });
  subscriber.on('reconnecting', () => {
    subscribed = false;
    lost('redis subscriber reconnecting');
  });
  client.on('end', () => {
    commandReady = false;
    lost('redis connection closed');
  });
  client.on('ready', () => {
    commandReady = true;
    void reload();
  });
  subscriber.on('error', (error: Error) => {
    lastError = error.message;
    subscribed = false;
    lost('redis subscriber error');
  });
  subscriber.on('end', () => {
    subscribed = false;
    lost('redis subscriber closed');
  });
  subscriber.on('ready', () => {
    if (!listening) return;
    // node-redis resubscribes on reconnect; events published while it was away were missed, so
    // the whole view is loaded again.
    subscribed = true;
    void reload();
  });

  async function reload(): Promise<void> {
    if (!commandReady || !subscribed || closing) return;
    const generation = ++loadGeneration;
    loaded = false;
    setHealth('reloading');
    pending = [];
    try {
      const next = await loadAll();
      if (generation !== loadGeneration) return;
      const before = view;
      view = next;
      // Kills made while this instance was away from Redis stop its calls in flight as well.
      for (const [agent, record] of next.kills) if (!before.kills.has(agent)) remoteStop(agent, record.reason);
      const queued = pending;
      pending = null;
      for (const event of queued) await apply(event.kind, event.key);
      if (generation !== loadGeneration || !commandReady || !subscribed) return;
      loaded = true;
      setHealth('loaded');
    } catch (error) {
      lastError = (error as Error).message;
      if (generation === loadGeneration) {
        pending = null;
        lost('load failed');
        // Retry while connected; a lost connection retries on its next 'ready'.
        setTimeout(() => void reload(), 200).unref();
      }
    }
  }

  async function loadAll(): Promise<View> {
    const next = emptyView();
    const nowSeconds = clock.now() / 1000;
    for (const [agent, json] of Object.entries(await client.hGetAll(K.kills))) {
      const record = parse<KillRecord>(json);
      if (record !== null) next.kills.set(agent, record);
    }
    for (const [agent, at] of Object.entries(await client.hGetAll(K.agentRev))) next.agentRevoked.set(agent, Number(at));
    for (const [agent, json] of Object.entries(await client.hGetAll(K.breakers))) {
      const record = parse<BreakerRecord>(json);
      if (record !== null) next.breakers.set(agent, record);
    }
    for (const [id, json] of Object.entries(await client.hGetAll(K.secrets))) {
      const record = parse<ClientSecretRecord>(json);
      if (record !== null) next.secrets.set(id, Object.freeze(record));
    }
    for (const [id, json] of Object.entries(await client.hGetAll(K.approvals))) {
      const record = parse<ApprovalRecord>(json);
      if (record !== null) next.approvals.set(id, record);
    }
    const expired: string[] = [];
    for (const [sid, exp] of Object.entries(await client.hGetAll(K.ended))) {
      if (Number(exp) > nowSeconds) next.ended.set(sid, Number(exp));
      else expired.push(sid);
    }
    if (expired.length > 0) await client.hDel(K.ended, expired);
    for await (const keys of client.scanIterator({ MATCH: `${K.rev}*`, COUNT: 1000 })) {
      if (keys.length === 0) continue;
      const values = await client.mGet(keys);
      keys.forEach((key, i) => {
        const exp = values[i];
        if (exp !== null && exp !== undefined) next.revoked.set(key.slice(K.rev.length), Number(exp));
      });
    }
    return next;
  }

  /** Re-read one key after an event and put it in the local view. */
  async function apply(kind: EventKind, key: string): Promise<void> {
    switch (kind) {
      case 'kill': {
        const json = await client.hGet(K.kills, key);
        const record = json === null || json === undefined ? null : parse<KillRecord>(json);
        if (record === null) view.kills.delete(key);
        else {
          const known = view.kills.has(key);
          view.kills.set(key, record);
          if (!known) remoteStop(key, record.reason);
        }
        return;
      }
      case 'agent-rev': {
        const at = await client.hGet(K.agentRev, key);
        if (at === null || at === undefined) view.agentRevoked.delete(key);
        else {
          const previous = view.agentRevoked.get(key);
          view.agentRevoked.set(key, Number(at));
          if (previous === undefined || Number(at) > previous) remoteStop(key, 'tokens revoked');
        }
        return;
      }
      case 'rev': {
        const exp = await client.get(`${K.rev}${key}`);
        if (exp !== null) view.revoked.set(key, Number(exp));
        return;
      }
      case 'breaker': {
        const json = await client.hGet(K.breakers, key);
        const record = json === null || json === undefined ? null : parse<BreakerRecord>(json);
        if (record === null) view.breakers.delete(key);
        else view.breakers.set(key, record);
        return;
      }
      case 'secret': {
        const json = await client.hGet(K.secrets, key);
        const record = json === null || json === undefined ? null : parse<ClientSecretRecord>(json);
        if (record === null) view.secrets.delete(key);
        else view.secrets.set(key, Object.freeze(record));
        return;
      }
      case 'approval': {
        const json = await client.hGet(K.approvals, key);
        const record = json === null || json === undefined ? null : parse<ApprovalRecord>(json);
        if (record === null) view.approvals.delete(key);
        else view.approvals.set(key, record);
        return;
      }
      case 'ended': {
        const exp = await client.hGet(K.ended, key);
        if (exp === null || exp === undefined) return;
        view.ended.set(key, Number(exp));
        const session = sessions.get(key);
        if (session !== undefined) {
          session.ended = true;
          liveSessions.get(session.agent)?.delete(key);
        }
        return;
      }
      case 'uses': {
        // PTTL, not PEXPIRETIME: Redis 6.2 is enough.
        const [count, ttlMs] = await Promise.all([client.get(`${K.uses}${key}`), client.pTTL(`${K.uses}${key}`)]);
        if (count !== null) noteUses(key, Number(count), clock.now() + Math.max(Number(ttlMs), 0));
        return;
      }
    }
  }

  function onMessage(message: string): void {
    let event: { kind?: unknown; key?: unknown };
    try {
      event = JSON.parse(message) as { kind?: unknown; key?: unknown };
    } catch {
      return;
    }
    if (typeof event.kind !== 'string' || !EVENT_KINDS.has(event.kind) || typeof event.key !== 'string') return;
    const kind = event.kind as EventKind;
    if (pending !== null) {
      pending.push({ kind, key: event.key });
      return;
    }
    apply(kind, event.key).catch(() => {
      // The change is in Redis but not in this view: the view cannot be trusted until reloaded.
      lost('event re-read failed');
      setTimeout(() => void reload(), 200).unref();
    });
  }

  /** Tell every instance (this one included, harmlessly) that `key` changed. */
  async function publish(kind: EventKind, key: string): Promise<void> {
    await client.publish(K.channel, JSON.stringify({ kind, key }));
  }

  /** Read-compute-compare-and-set on a hash field of JSON records; resolves what was written. */
  async function casJson<T, R>(hash: string, field: string, change: (current: T | undefined) => { next: T | null; result: R }): Promise<R> {
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      const raw = (await client.hGet(hash, field)) ?? null;
      const current = raw === null ? undefined : (parse<T>(raw) ?? undefined);
      const { next, result } = change(current);
      if (next === null) return result;
      const written = await client.eval(HASH_CAS, { keys: [hash], arguments: [field, raw ?? '', JSON.stringify(next)] });
      if (written === 1) return result;
    }
    throw new Error(`state.driver redis: ${hash} ${field} changed under ${MAX_CAS_ATTEMPTS} attempts in a row`);
  }

  function sweep(): void {
    if (++insertions % SWEEP_EVERY !== 0) return;
    const nowSeconds = clock.now() / 1000;
    for (const [jti, exp] of view.revoked) if (exp <= nowSeconds) view.revoked.delete(jti);
    for (const [sid, exp] of view.ended) if (exp <= nowSeconds) view.ended.delete(sid);
    for (const [sid, session] of sessions) if (session.expiresAt <= nowSeconds) dropSession(sid, session);
    for (const [jti, entry] of uses) if (entry.untilMs <= nowSeconds * 1000) uses.delete(jti);
  }

  function noteUses(jti: string, count: number, untilMs: number): void {
    const entry = uses.get(jti);
    if (entry === undefined) {
      uses.set(jti, { count, untilMs });
      sweep();
    } else entry.count = Math.max(entry.count, count);
  }

  function dropSession(sid: string, session: Session): void {
    sessions.delete(sid);
    const live = liveSessions.get(session.agent);
    live?.delete(sid);
    if (live?.size === 0) liveSessions.delete(session.agent);
  }

  function trackSession(sid: string, agent: string, expiresAt: number, now: number): Session {
    const session: Session = { agent, expiresAt, lastSeen: now, ended: false };
    sessions.set(sid, session);
    const live = liveSessions.get(agent) ?? new Set();
    live.add(sid);
    liveSessions.set(agent, live);
    sweep();
    return session;
  }

  function markEnded(sid: string, expiresAt: number): void {
    const session = sessions.get(sid);
    if (session !== undefined) {
      session.ended = true;
      liveSessions.get(session.agent)?.delete(sid);
    }
    view.ended.set(sid, Math.max(expiresAt, view.ended.get(sid) ?? 0));
  }

  async function endSessionShared(sid: string, expiresAt: number): Promise<void> {
    await client.eval(HASH_MAX, { keys: [K.ended], arguments: [sid, String(expiresAt)] });
    markEnded(sid, expiresAt);
    await publish('ended', sid);
  }

  // Connect both, and wait for the first full load (bounded): a gateway must not start on an
  // empty view of a state that holds kill switches.
  const timeoutMs = options.connectTimeoutMs ?? 5000;
  const start = async (): Promise<void> => {
    await Promise.all([client.connect(), subscriber.connect()]);
    await subscriber.subscribe(K.channel, onMessage);
    listening = true;
    subscribed = subscriber.isReady;
    await reload();
  };
  start().catch((error: unknown) => {
    lastError = (error as Error).message;
  });
  const deadline = Date.now() + timeoutMs;
  while (!healthy && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
  if (!healthy) {
    closing = true;
    client.destroy();
    subscriber.destroy();
    throw new RedisUnavailableError(lastError === '' ? `no answer within ${timeoutMs} ms` : lastError.replace(/\/\/[^@/]*@/g, '//***@'));
  }

  opened = true;
  return {
    driver: 'redis',
    isHealthy: () => healthy,
    replayHorizon: 0,
    isRevoked(jti, agent, issuedAt) {
      const exp = view.revoked.get(jti);
      if (exp !== undefined && exp * 1000 > clock.now()) return true;
      if (agent !== undefined && issuedAt !== undefined) {
        const before = view.agentRevoked.get(agent);
        if (before !== undefined && issuedAt <= before) return true;
      }
      return false;
    },
    async revoke(jti, expiresAt) {
      // Kept at least a minute even for an already expired token, so the record is seen.
      const until = Math.max(expiresAt * 1000, clock.now() + 60_000);
      await client.set(`${K.rev}${jti}`, String(expiresAt), { expiration: { type: 'PXAT', value: Math.ceil(until) } });
      view.revoked.set(jti, expiresAt);
      sweep();
      await publish('rev', jti);
    },
    async revokeAgent(agent, at) {
      await client.eval(HASH_MAX, { keys: [K.agentRev], arguments: [agent, String(at)] });
      view.agentRevoked.set(agent, Math.max(at, view.agentRevoked.get(agent) ?? 0));
      await publish('agent-rev', agent);
    },
    killRecord: (agent) => view.kills.get(agent),
    kills: () => [...view.kills.values()],
    async kill(record) {
      await client.hSet(K.kills, record.agent, JSON.stringify(record));
      view.kills.set(record.agent, record);
      await publish('kill', record.agent);
    },
    async revive(agent) {
      const [killed, hadBreaker] = await Promise.all([client.hDel(K.kills, agent), client.hDel(K.breakers, agent)]);
      view.kills.delete(agent);
      view.breakers.delete(agent);
      await Promise.all([publish('kill', agent), publish('breaker', agent)]);
      return killed > 0 || hadBreaker > 0;
    },
    breaker: (agent) => view.breakers.get(agent),
    async recordViolation(agent, policy): Promise<ViolationOutcome> {
      // Every violation is written, so N violations spread over instances trip at exactly N.
      const outcome = await casJson<BreakerRecord, ViolationOutcome>(K.breakers, agent, (current) => {
        const result = addViolation(current, policy, clock.now());
        return { next: result.record === current ? null : result.record, result };
      });
      view.breakers.set(agent, outcome.record);
      await publish('breaker', agent);
      return outcome;
    },
    clientSecrets(agent) {
      const all = [...view.secrets.values()];
      return (agent === undefined ? all : all.filter((r) => r.agent === agent)).sort((a, b) => a.createdAt - b.createdAt);
    },
    async saveClientSecret(record) {
      const frozen = Object.freeze({ ...record });
      await client.hSet(K.secrets, record.id, JSON.stringify(frozen));
      view.secrets.set(record.id, frozen);
      await publish('secret', record.id);
    },
    async deleteClientSecrets(agent, id) {
      // From Redis, not the view: a secret another instance just added is removed too.
      const ids: string[] = [];
      for (const [secretId, json] of Object.entries(await client.hGetAll(K.secrets))) {
        const record = parse<ClientSecretRecord>(json);
        if (record !== null && record.agent === agent && (id === undefined || record.id === id)) ids.push(secretId);
      }
      if (ids.length === 0) return 0;
      const removed = await client.hDel(K.secrets, ids);
      for (const secretId of ids) view.secrets.delete(secretId);
      await Promise.all(ids.map((secretId) => publish('secret', secretId)));
      return removed;
    },
    async useOnce(key, expiresAt) {
      const until = Math.max(Math.ceil(expiresAt * 1000), clock.now() + 1000);
      const set = await client.set(`${K.once}${key}`, '1', { condition: 'NX', expiration: { type: 'PXAT', value: until } });
      return set === 'OK';
    },
    async consumeUse(jti, maxUses, expiresAt) {
      const until = Math.max(Math.ceil(expiresAt * 1000), clock.now() + 1000);
      const count = Number(await client.eval(CONSUME_USE, { keys: [`${K.uses}${jti}`], arguments: [String(maxUses), String(until)] }));
      if (count < 0) return false;
      noteUses(jti, count, until);
      await publish('uses', jti);
      return true;
    },
    usesOf: (jti) => uses.get(jti)?.count ?? 0,
    async openSession(sid, agent, expiresAt, single) {
      const now = clock.now();
      const ended = (await client.eval(OPEN_SESSION, {
        keys: [`${K.live}${agent}`, K.ended],
        arguments: [sid, String(expiresAt), String(Math.floor(now / 1000)), single ? '1' : '0'],
      })) as string[];
      if (single) {
        for (const other of liveSessions.get(agent) ?? []) if (other !== sid) markEnded(other, sessions.get(other)?.expiresAt ?? expiresAt);
        for (const other of ended) markEnded(other, sessions.get(other)?.expiresAt ?? expiresAt);
        // Other instances end them when they hear of it; until then they are refused there only
        // after the event arrives (well under a second).
        await Promise.all(ended.map((other) => publish('ended', other)));
      }
      trackSession(sid, agent, expiresAt, now);
    },
    checkSession(sid, agent, expiresAt, idleMs, touch): SessionState {
      if (view.ended.has(sid)) return 'ended';
      const now = clock.now();
      const session = sessions.get(sid);
      if (session === undefined) {
        if (!touch) return 'live';
        trackSession(sid, agent, expiresAt, now);
        return 'live';
      }
      if (session.ended) return 'ended';
      if (idleMs !== null && now - session.lastSeen > idleMs) {
        // The idle clock is this instance's: a session busy on another instance may idle out here.
        markEnded(sid, session.expiresAt);
        endSessionShared(sid, session.expiresAt).catch(() => undefined);
        return 'idle';
      }
      if (touch) session.lastSeen = now;
      return 'live';
    },
    endSession: endSessionShared,
    approval: (id) => view.approvals.get(id),
    approvals() {
      pruneApprovals(view.approvals, clock.now());
      return [...view.approvals.values()];
    },
    async requestApproval(record) {
      const now = clock.now();
      pruneApprovals(view.approvals, now);
      for (const existing of view.approvals.values()) {
        if (existing.requestKey === record.requestKey && existing.status === 'pending' && existing.expiresAt > now) return existing;
      }
      let pending = 0;
      for (const existing of view.approvals.values()) if (existing.status === 'pending') pending++;
      if (pending >= MAX_PENDING_APPROVALS) throw new Error(`more than ${MAX_PENDING_APPROVALS} approvals are pending`);
      await client.hSet(K.approvals, record.id, JSON.stringify(record));
      view.approvals.set(record.id, record);
      await publish('approval', record.id);
      return record;
    },
    async decideApproval(id, decision, by, reason) {
      const decided = await casJson<ApprovalRecord, ApprovalRecord | null>(K.approvals, id, (record) => {
        const now = clock.now();
        if (record === undefined || record.status !== 'pending' || record.expiresAt <= now) return { next: null, result: null };
        const next: ApprovalRecord = { ...record, status: decision, decidedBy: by, decidedAt: now, reason };
        return { next, result: next };
      });
      if (decided !== null) {
        view.approvals.set(id, decided);
        await publish('approval', id);
      }
      return decided;
    },
    async consumeApproval(id, requestKey): Promise<ApprovalUse> {
      const refused = (use: ApprovalUse): { next: null; result: { use: ApprovalUse; used: null } } => ({ next: null, result: { use, used: null } });
      const outcome = await casJson<ApprovalRecord, { use: ApprovalUse; used: ApprovalRecord | null }>(K.approvals, id, (record) => {
        const now = clock.now();
        if (record === undefined) return refused('unknown');
        if (record.status === 'used') return refused('used');
        if (record.status === 'denied') return refused('denied');
        if (record.expiresAt <= now) return refused('expired');
        if (record.status === 'pending') return refused('pending');
        if (record.requestKey !== requestKey || record.digest !== approvalDigest(requestKey, record.expiresAt)) return refused('mismatch');
        const used: ApprovalRecord = { ...record, status: 'used', usedAt: now };
        return { next: used, result: { use: 'ok', used } };
      });
      if (outcome.used !== null) {
        view.approvals.set(id, outcome.used);
        await publish('approval', id);
      }
      return outcome.use;
    },
    touch(agent, jti, expiresAt) {
      let entry = activity.get(agent);
      if (entry === undefined) {
        entry = { lastSeen: 0, tokens: new Map() };
        activity.set(agent, entry);
      }
      entry.lastSeen = clock.now();
      if (!entry.tokens.has(jti)) {
        if (entry.tokens.size >= MAX_TRACKED_TOKENS) prune(entry.tokens, clock.now() / 1000);
        if (entry.tokens.size < MAX_TRACKED_TOKENS) entry.tokens.set(jti, expiresAt);
      }
    },
    activity(agent): Activity {
      const entry = activity.get(agent);
      if (entry === undefined) return { lastSeen: null, liveTokens: 0 };
      const nowSeconds = clock.now() / 1000;
      prune(entry.tokens, nowSeconds);
      let live = 0;
      const before = view.agentRevoked.get(agent);
      for (const [jti, exp] of entry.tokens) if (exp > nowSeconds && !view.revoked.has(jti) && before === undefined) live++;
      return { lastSeen: entry.lastSeen, liveTokens: live };
    },
    async auditCheckpoint(auditFile) {
      const json = await client.hGet(K.auditCheckpoints, auditFile);
      return json === null || json === undefined ? null : asAuditCheckpoint(parse<unknown>(json));
    },
    async saveAuditCheckpoint(checkpoint) {
      await client.hSet(K.auditCheckpoints, checkpoint.file, JSON.stringify(checkpoint));
    },
    async close() {
      // Not reported through onHealth: a shutdown is not an outage.
      closing = true;
      healthy = false;
      await Promise.allSettled([subscriber.close(), client.close()]);
    },
  };
}

function parse<T>(json: string): T | null {
  try {
    const value = JSON.parse(json) as unknown;
    return value !== null && typeof value === 'object' ? (value as T) : null;
  } catch {
    return null;
  }
}

function pruneApprovals(approvals: Map<string, ApprovalRecord>, now: number): void {
  for (const [id, record] of approvals) if (record.expiresAt + APPROVAL_RETENTION_MS <= now) approvals.delete(id);
}

function prune(tokens: Map<string, number>, nowSeconds: number): void {
  for (const [jti, exp] of tokens) if (exp <= nowSeconds) tokens.delete(jti);
}
