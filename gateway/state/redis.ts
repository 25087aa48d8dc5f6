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
//   agentgate:rate:<key>       a rate limit's theoretical arrival time (ms, Redis clock), expiring when the bucket is full
//   agentgate:audit-checkpoints hash host:audit file -> its last AuditCheckpointRecord (JSON)
//   agentgate:marker           hash epoch, gen, origin: the generation marker (see below)
//   agentgate:events           channel: {"kind": ..., "key": ...}; receivers re-read the key
//   agentgate:probe:<id>       channel of one instance's health probe (it publishes to itself)
//
// The local view is trusted only while both connections are up, every command and the health
// probe (every `probeIntervalMs`) answer within `commandTimeoutMs`, the generation marker is as
// expected, and a full load has finished since the last outage: `isHealthy()` is false otherwise,
// and admit fails closed. A kill or revocation made while Redis cannot be written is in force
// here at once, kept in the journal, and pushed (with a log line) when Redis answers again.
//
// The marker tells an emptied or rolled-back Redis from a live one: every change of a kill,
// revocation or breaker raises `gen`; an instance remembers the (epoch, gen) it saw (in its
// journal too). Marker missing, or `gen` below what was seen: Redis lost data. That is an outage;
// the instance writes its snapshot back (union: HSETNX, max) and starts a new epoch (`reseed`),
// at once or when an operator says so. An instance that meets a new epoch made by a reseed merges
// its own snapshot into it the same way, so diverging snapshots end up as their union.
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { createRequire } from 'node:module';
import type { SecureContext, TLSSocket } from 'node:tls';
import { createClient, createSentinel } from 'redis';
import type { Clock } from '../clock.js';
import { addViolation, type BreakerRecord } from './breaker.js';
import { approvalUse, decidedApproval, placeApproval, pruneApprovals, usedApproval } from './rules/approvals.js';
import { ActivityTable, createSweeper, pruneExpired, SessionTable, UseCounts } from './rules/sessions.js';
import { deadline, withDeadlines } from './deadline.js';
import { createJournalWriter, readJournal, type JournalWriter, type Marker, type Snapshot, type UnsharedChange } from './journal.js';
import {
  asAuditCheckpoint,
  StateUnavailableError,
  type Activity,
  type ApprovalRecord,
  type ApprovalUse,
  type ClientSecretRecord,
  type KillRecord,
  type ReseedOutcome,
  type SessionState,
  type Sharing,
  type Store,
  type ViolationOutcome,
} from './store.js';

/** Why the store stopped being trusted (the `cause` label of agentgate_state_outages_total). */
export type OutageCause = 'connection' | 'timeout' | 'data_lost';

/** A Redis user (null: `default`) and its password. */
export interface RedisCredentials {
  readonly username: string | null;
  readonly password: string;
}

/** node-redis's client options for `credentials` (none when null). */
function credentialOptions(credentials: RedisCredentials | null): { username?: string; password?: string } {
  if (credentials === null) return {};
  return credentials.username === null ? { password: credentials.password } : { username: credentials.username, password: credentials.password };
}

export interface RedisStoreOptions {
  readonly clock: Clock;
  /** redis:// or rediss:// URL (may hold a password: never logged); null with `sentinel`. */
  readonly url: string | null;
  /** PEM contents for TLS (`rediss://`, or Sentinel over TLS): CA, client certificate and key. */
  readonly tls?: { readonly ca?: string; readonly cert?: string; readonly key?: string } | null;
  /** Credentials for Redis itself (the master and replicas; with `url`, instead of a password in it). */
  readonly auth?: RedisCredentials | null;
  /** Credentials the sentinels themselves ask for. */
  readonly sentinelAuth?: RedisCredentials | null;
  /** Ask these Sentinels for the master `masterName` and follow its failovers. */
  readonly sentinel?: { readonly nodes: readonly { readonly host: string; readonly port: number }[]; readonly masterName: string } | null;
  /** How long `openRedisStore` waits for the first connection and load. */
  readonly connectTimeoutMs?: number;
  /** Deadline of every command and of each health probe (`state.timeout`, default 250 ms). */
  readonly commandTimeoutMs?: number;
  /** How often the health probe runs (default 100 ms; a probe still running is not doubled). */
  readonly probeIntervalMs?: number;
  /** The local snapshot and journal (`state.journal`); null keeps it in memory only (tests). */
  readonly journal?: string | null;
  /** Redis lost its data: reseed it at once (`auto`, default) or wait for `reseed()` (`manual`). */
  readonly reseed?: 'auto' | 'manual';
  /**
   * A CLI tool (explain, offline credentials) next to a running gateway: read the journal but never
   * write it (it is the gateway's), and never reseed on its own.
   */
  readonly tool?: boolean;
  /** Told when the store turns healthy or unhealthy (no URL, no secrets). */
  readonly onHealth?: (healthy: boolean, why: string) => void;
  /** Told when the store stops being trusted, and why (metrics). */
  readonly onOutage?: (cause: OutageCause) => void;
  /** Told when this instance reseeded Redis or merged its snapshot into a reseeded one (metrics). */
  readonly onReseed?: (kind: 'reseed' | 'merge') => void;
  /** Log lines the operator must see (changes kept locally, pushed late, data lost, reseeds). */
  readonly onNotice?: (level: 'info' | 'warn' | 'error', message: string, fields: Record<string, unknown>) => void;
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
  rate: `${P}rate:`,
  marker: `${P}marker`,
  channel: `${P}events`,
  auditCheckpoints: `${P}audit-checkpoints`,
  probe: `${P}probe:`,
} as const;

type EventKind = 'kill' | 'agent-rev' | 'rev' | 'breaker' | 'secret' | 'approval' | 'ended' | 'uses' | 'reseed';
const EVENT_KINDS: ReadonlySet<string> = new Set<EventKind>(['kill', 'agent-rev', 'rev', 'breaker', 'secret', 'approval', 'ended', 'uses', 'reseed']);

/** Raise a use counter to at least ARGV[1], expiring at ARGV[2] (ms): a reseed never hands out a use twice. */
const RAISE_USES = `
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > cur then redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[2]) end
return 1`;
/** Create the marker of a Redis that never had one (ARGV[1]: the new epoch). */
const INIT_MARKER = `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'epoch', ARGV[1], 'gen', '0', 'origin', 'fresh')
return 1`;
/** Raise the marker's gen after a change; -1 when the marker is gone (Redis lost its data). */
const BUMP_MARKER = `
if redis.call('HEXISTS', KEYS[1], 'epoch') == 0 then return -1 end
return redis.call('HINCRBY', KEYS[1], 'gen', 1)`;

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
/**
 * GCRA over several keys at once (state/rules/rate-limit.ts, the same steps): the call passes only
 * if every key's rule admits it, and only then is each key charged. Timed by Redis's clock, so
 * instances with skewed clocks share one bucket exactly. ARGV: per key, interval (ms) and burst.
 * Returns {allowed 0/1, rule index, remaining, retryAfterMs, resetMs} (ms as strings: fractions).
 */
const RATE_LIMIT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local news = {}
local tightest, tightRemaining, tightReset = 1, -1, 0
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tat < now then tat = now end
  local newTat = tat + interval
  local allowAt = newTat - burst * interval
  if now < allowAt then
    return {0, i - 1, 0, string.format('%.3f', allowAt - now), string.format('%.3f', tat - now)}
  end
  local remaining = math.floor((now - allowAt) / interval)
  if tightRemaining < 0 or remaining < tightRemaining then
    tightest = i
    tightRemaining = remaining
    tightReset = newTat - now
  end
  news[i] = newTat
end
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], string.format('%.3f', news[i]), 'PX', math.ceil(news[i] - now) + 1000)
end
return {1, tightest - 1, tightRemaining, '0', string.format('%.3f', tightReset)}`;
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
  const onOutage = options.onOutage ?? (() => undefined);
  const onReseed = options.onReseed ?? (() => undefined);
  const notice = options.onNotice ?? (() => undefined);
  const onRemoteStop = options.onRemoteStop ?? (() => undefined);
  const timeoutMs = options.commandTimeoutMs ?? 250;
  // Often enough that a hang is noticed well within a second of it (interval + deadline).
  const probeIntervalMs = options.probeIntervalMs ?? 100;
  const reseedMode = options.tool === true ? 'manual' : (options.reseed ?? 'auto');
  const tls = options.tls ?? null;
  const tlsSocket = tls === null ? {} : { tls: true as const, [REDIS_TLS]: true, ...tlsMaterial(tls) };
  guardRedisTlsSockets();
  const socket = { reconnectStrategy: (retries: number) => Math.min(50 + retries * 50, 500), connectTimeout: 2000, ...tlsSocket };
  const sentinelOptions = options.sentinel ?? null;
  const auth = credentialOptions(options.auth ?? null);
  // Sentinel: node-redis asks the sentinels for the master, follows failovers, and keeps its own
  // pub/sub connection; it answers the same commands as a client. Without Sentinel, one client
  // for commands and a duplicate for the subscription. No offline queue either way: a write while
  // Redis is away fails at once instead of waiting unseen.
  const viaSentinel =
    sentinelOptions === null
      ? null
      : createSentinel({
          name: sentinelOptions.masterName,
          sentinelRootNodes: sentinelOptions.nodes.map((node) => ({ host: node.host, port: node.port })),
          nodeClientOptions: { name: CLIENT_NAME, socket, disableOfflineQueue: true, ...auth },
          sentinelClientOptions: { socket, ...credentialOptions(options.sentinelAuth ?? null) },
          masterPoolSize: 1,
          passthroughClientErrorEvents: true,
        });
  if (viaSentinel === null && url === null) throw new RedisUnavailableError('neither a URL nor sentinels were given');
  // The Sentinel object has the command surface of a client (hGet, eval, publish, subscribe...),
  // which is all this driver uses of it; the connection events below are a client's only.
  const raw = viaSentinel === null ? createClient({ url: url ?? undefined, name: CLIENT_NAME, socket, disableOfflineQueue: true, ...auth }) : (viaSentinel as unknown as ReturnType<typeof createClient>);
  const subscriber = viaSentinel === null ? raw.duplicate() : raw;
  // Every command through `client` has the deadline; a command past it is an outage.
  const client = withDeadlines(raw, timeoutMs, (command) => stall(`redis did not answer ${command} within ${timeoutMs} ms`));
  const instanceId = randomUUID();
  const probeChannel = `${K.probe}${instanceId}`;

  // The journal: the snapshot this instance starts from (Redis may have lost what it holds).
  const journalFile = options.journal ?? null;
  const saved: Snapshot | null = journalFile === null ? null : await readJournal(journalFile);
  let view = emptyView();
  /** The marker this instance last saw; null before it ever met one. */
  let known: Marker | null = saved?.marker ?? null;
  /** Kills and revocations made here while Redis could not be written, oldest first. */
  const unshared: UnsharedChange[] = [...(saved?.unshared ?? [])];
  if (saved !== null) {
    for (const record of saved.kills) view.kills.set(record.agent, record);
    for (const [agent, at] of Object.entries(saved.agentRevocations)) view.agentRevoked.set(agent, at);
    for (const [jti, exp] of Object.entries(saved.revocations)) view.revoked.set(jti, exp);
    for (const [sid, exp] of Object.entries(saved.endedSessions)) view.ended.set(sid, exp);
    for (const [agent, record] of Object.entries(saved.breakers)) view.breakers.set(agent, record);
    overlay(view);
  }
  const journal: JournalWriter | null = journalFile === null || options.tool === true ? null : createJournalWriter(journalFile, snapshot, () => clock.now());
  /**
   * Used client-assertion jtis are not in the snapshot: after Redis lost its data, an assertion made
   * before the loss could be replayed, so every assertion made before it is refused (ms).
   */
  let replayHorizon = 0;
  let saveTimer: NodeJS.Timeout | null = null;

  const sweep = createSweeper(() => {
    const now = clock.now();
    pruneExpired(view.revoked, now / 1000);
    sessions.sweep(now / 1000);
    uses.sweep(now);
  });
  const sessions = new SessionTable(() => view.ended, sweep);
  /** Token uses seen by this instance (introspection). */
  const uses = new UseCounts(sweep);
  for (const [jti, entry] of Object.entries(saved?.uses ?? {})) if (entry.untilMs > clock.now()) uses.note(jti, entry.count, entry.untilMs);
  const activity = new ActivityTable();

  // Health: both connections ready, subscribed, answering in time, marker as expected, and a
  // full load done since.
  let commandReady = false;
  let subscribed = false;
  let loaded = false;
  let healthy = false;
  let closing = false;
  /** A command or probe missed its deadline; cleared by the next probe that answers in time. */
  let stalled: string | null = null;
  /** Redis lost data (marker missing or older); cleared by a reseed, or a merge into a newer epoch. */
  let lostData: string | null = null;
  let detail = 'connecting';
  let loadGeneration = 0;
  /** Until the store is handed out nothing is in flight: changes only fill the view. */
  let opened = false;
  const remoteStop = (agent: string, reason: string): void => {
    if (opened) onRemoteStop(agent, reason);
  };
  /** Events that arrive while a load runs: re-read once the load's view is in place. */
  let pending: { kind: EventKind; key: string }[] | null = null;
  let lastError = '';
  /**
   * A TLS failure retrying cannot fix: the server's certificate failed verification (unknown CA,
   * wrong name, expired), or the server refused ours (none sent, or one it does not trust). The
   * first connection gives up at once instead of waiting out its deadline, naming the cause.
   */
  let unfixable: string | null = null;
  const noteError = (error: unknown): void => {
    lastError = error instanceof Error ? error.message : String(error);
    const code = (error as { code?: unknown } | null)?.code;
    if (typeof code !== 'string') return;
    if (UNTRUSTED_CERTIFICATE.has(code)) unfixable = lastError;
    else if (REFUSED_CLIENT_CERTIFICATE.has(code)) unfixable = `Redis refused the TLS handshake: it wants a client certificate it trusts (state.tls.cert and state.tls.key); ${code}`;
  };
  /** The channel listener is registered (node-redis then resubscribes by itself on reconnect). */
  let listening = false;

  function setHealth(why: string, cause: OutageCause = 'connection'): void {
    const now = commandReady && subscribed && loaded && !closing && stalled === null && lostData === null;
    detail = now ? 'ok' : (lostData ?? stalled ?? why);
    if (now !== healthy) {
      healthy = now;
      if (!now && opened && !closing) onOutage(cause);
      onHealth(now, now ? why : detail);
    }
  }
  function lost(why: string): void {
    loaded = false;
    setHealth(why);
  }
  function stall(why: string): void {
    if (closing || stalled !== null) return;
    stalled = why;
    loaded = false;
    setHealth(why, 'timeout');
  }
  function dataLost(why: string): void {
    replayHorizon = Math.max(replayHorizon, Math.ceil(clock.now() / 1000) * 1000);
    if (lostData === null) {
      lostData = why;
      loaded = false;
      setHealth(why, 'data_lost');
      notice('error', 'Redis lost its data; refusing requests until it is reseeded from the local snapshot', {
        why,
        reseed: reseedMode,
        kills: view.kills.size,
        revocations: view.revoked.size + view.agentRevoked.size,
        ...(reseedMode === 'manual' ? { action: 'run `agentgate state reseed` on any instance' } : {}),
      });
    }
    if (reseedMode === 'auto') void reseed().catch(() => undefined);
  }

  if (viaSentinel !== null) {
    // The probe decides health; a failover or a connection error forces a full reload (events
    // may have been missed, and the new master may lack the latest writes: the marker says).
    viaSentinel.on('error', noteError);
    viaSentinel.on('topology-change', (event: { type?: string }) => {
      if (event.type !== 'MASTER_CHANGE' || !listening) return;
      lost('sentinel switched to a new master');
      void reload();
    });
  } else {
    registerClientEvents();
  }
  function registerClientEvents(): void {
    client.on('error', (error: Error) => {
      noteError(error);
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
      noteError(error);
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
  }

  async function reload(): Promise<void> {
    if (!commandReady || !subscribed || closing || stalled !== null || lostData !== null) return;
    const generation = ++loadGeneration;
    loaded = false;
    setHealth('reloading');
    pending = [];
    try {
      // The marker first: a Redis that lost its data must not replace the view (the snapshot
      // a reseed writes back).
      let before = await readMarker();
      if (before === null && known === null) before = await initMarker();
      const verdict = judge(before);
      if (verdict !== 'ok') {
        pending = null;
        if (generation === loadGeneration) onVerdict(verdict, before);
        return;
      }
      await flushUnshared();
      const next = await loadAll();
      const after = await readMarker();
      if (after === null || before === null || after.epoch !== before.epoch || after.gen < before.gen) throw new Error('the marker changed during the load');
      if (generation !== loadGeneration) return;
      known = after;
      overlay(next);
      const previous = view;
      view = next;
      // Kills made while this instance was away from Redis stop its calls in flight as well.
      for (const [agent, record] of next.kills) if (!previous.kills.has(agent)) remoteStop(agent, record.reason);
      const queued = pending;
      pending = null;
      for (const event of queued) await apply(event.kind, event.key);
      if (generation !== loadGeneration || !commandReady || !subscribed) return;
      loaded = true;
      setHealth('loaded');
      scheduleSave();
    } catch (error) {
      lastError = (error as Error).message;
      if (generation === loadGeneration) {
        pending = null;
        lost('load failed');
        // Retry while connected and answering; a lost connection retries on its next 'ready', a
        // stalled one when the probe answers again.
        setTimeout(() => void reload(), 200).unref();
      }
    }
  }

  /** Put the changes not yet shared over a view loaded from Redis: they are in force here. */
  function overlay(target: View): void {
    for (const change of unshared) {
      if (change.op === 'kill') target.kills.set(change.record.agent, change.record);
      else if (change.op === 'revoke') target.revoked.set(change.jti, Math.max(change.expiresAt, target.revoked.get(change.jti) ?? 0));
      else target.agentRevoked.set(change.agent, Math.max(change.at, target.agentRevoked.get(change.agent) ?? 0));
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
    // SCAN step by step through the client with deadlines (scanIterator would bypass them).
    let cursor = '0';
    do {
      const page = await client.scan(cursor, { MATCH: `${K.rev}*`, COUNT: 1000 });
      cursor = String(page.cursor);
      if (page.keys.length === 0) continue;
      const values = await client.mGet(page.keys);
      page.keys.forEach((key, i) => {
        const exp = values[i];
        if (exp !== null && exp !== undefined) next.revoked.set(key.slice(K.rev.length), Number(exp));
      });
    } while (cursor !== '0');
    return next;
  }

  // ---- generation marker, probe, journal, reseed ----

  async function readMarker(): Promise<(Marker & { origin: string }) | null> {
    const fields = await client.hGetAll(K.marker);
    const epoch = fields.epoch;
    const gen = Number(fields.gen);
    if (epoch === undefined || epoch === '' || !Number.isFinite(gen)) return null;
    return { epoch, gen, origin: fields.origin ?? 'fresh' };
  }

  /** First contact with a Redis that never had a marker (a new deployment): start epoch 1. */
  async function initMarker(): Promise<(Marker & { origin: string }) | null> {
    await client.eval(INIT_MARKER, { keys: [K.marker], arguments: [randomUUID()] });
    return readMarker();
  }

  type Verdict = 'ok' | 'lost' | 'merge';
  function judge(current: (Marker & { origin: string }) | null): Verdict {
    if (current === null) return 'lost';
    if (known === null || current.epoch === known.epoch) return known !== null && current.gen < known.gen ? 'lost' : 'ok';
    // A new epoch made by a reseed elsewhere: add what this instance knows (union). A new epoch
    // made fresh (someone met an empty Redis first) is a loss like an absent marker.
    return current.origin === 'reseed' ? 'merge' : 'lost';
  }

  function onVerdict(verdict: Verdict, current: (Marker & { origin: string }) | null): void {
    if (verdict === 'lost') {
      dataLost(current === null ? 'the generation marker is missing (Redis was emptied or restarted without its data)' : current.epoch === known?.epoch ? `the generation marker went back from ${known.gen} to ${current.gen} (Redis restored older data)` : 'the generation marker is new (Redis was emptied and met by an instance without a snapshot)');
    } else if (verdict === 'merge' && current !== null) {
      void merge(current).catch(() => undefined);
    }
  }

  /** Before a re-read's "absent" removes a kill or an open breaker: is Redis's data intact? */
  async function intact(): Promise<boolean> {
    const current = await readMarker();
    const verdict = judge(current);
    if (verdict === 'ok') return true;
    onVerdict(verdict, current);
    return false;
  }

  /** Raise the marker after a change; a missing or older marker means Redis lost data meanwhile. */
  async function bump(): Promise<void> {
    const gen = Number(await client.eval(BUMP_MARKER, { keys: [K.marker] }));
    if (gen < 0) dataLost('the generation marker is missing (Redis was emptied or restarted without its data)');
    else if (known !== null && gen <= known.gen) dataLost(`the generation marker went back to ${gen} below ${known.gen} (Redis restored older data)`);
    else if (known !== null) known = { epoch: known.epoch, gen };
  }

  let probing = false;
  let probeSeq = 0;
  let heard: { nonce: string; resolve: () => void } | null = null;
  function onProbe(message: string): void {
    if (heard !== null && heard.nonce === message) heard.resolve();
  }
  /**
   * One round trip through both connections and the marker check, within the deadline. A stall
   * ends here: a probe that answers in time starts the full reload that makes the store healthy.
   */
  async function probe(): Promise<void> {
    if (probing || closing || !commandReady || !subscribed) return;
    probing = true;
    try {
      const nonce = `${++probeSeq}`;
      const echo = new Promise<void>((resolve) => {
        heard = { nonce, resolve };
      });
      await client.publish(probeChannel, nonce);
      await deadline(echo, timeoutMs, 'the probe through the subscriber', (what) => stall(`redis did not deliver ${what} within ${timeoutMs} ms`));
      const current = await readMarker();
      if (stalled !== null) {
        notice('info', 'Redis answers in time again; reloading the shared state', { after: stalled });
        stalled = null;
        void reload();
        return;
      }
      const verdict = judge(current);
      if (verdict !== 'ok') {
        onVerdict(verdict, current);
        return;
      }
      if (lostData !== null) return;
      if (current !== null && known !== null && current.gen > known.gen) known = { epoch: known.epoch, gen: current.gen };
      if (unshared.length > 0 && healthy) await flushUnshared();
    } catch {
      // A deadline reported the stall; a dropped connection reports itself.
    } finally {
      heard = null;
      probing = false;
    }
  }
  const probeTimer = setInterval(() => void probe(), probeIntervalMs);
  probeTimer.unref();

  function snapshot(): Snapshot {
    const nowSeconds = clock.now() / 1000;
    const live = (map: Map<string, number>): Record<string, number> => {
      const out: Record<string, number> = {};
      for (const [key, exp] of map) if (exp > nowSeconds) out[key] = exp;
      return out;
    };
    const breakers: Record<string, BreakerRecord> = {};
    for (const [agent, record] of view.breakers) if (record.tripped) breakers[agent] = record;
    const counted: Record<string, { count: number; untilMs: number }> = {};
    for (const [jti, count, untilMs] of uses.live(nowSeconds * 1000)) counted[jti] = { count, untilMs };
    return {
      uses: counted,
      marker: known,
      kills: [...view.kills.values()],
      agentRevocations: Object.fromEntries(view.agentRevoked),
      revocations: live(view.revoked),
      endedSessions: live(view.ended),
      breakers,
      unshared: [...unshared],
    };
  }
  /** Write the snapshot soon (coalesced): what is in Redis already is only a copy here. */
  function scheduleSave(): void {
    if (journal === null || saveTimer !== null || closing) return;
    saveTimer = setTimeout(() => {
      saveTimer = null;
      journal.save().catch((error: unknown) => notice('error', 'the state journal could not be written', { file: journalFile, error: (error as Error).message }));
    }, 50);
    saveTimer.unref();
  }

  /** A kill or revocation Redis could not take: in force here, in the journal, pushed later. */
  async function keepLocal(change: UnsharedChange, why: string): Promise<Sharing> {
    unshared.push(change);
    overlay(view);
    notice('warn', `${change.op} applied on this instance only, not yet shared: Redis is unreachable; it is kept in the journal and pushed when Redis answers`, { ...describe(change), why });
    if (journal !== null) {
      try {
        await journal.save();
      } catch (error) {
        throw new StateUnavailableError(`Redis is unreachable and the journal ${journalFile ?? ''} could not be written (${(error as Error).message}); the ${change.op} is in force on this instance until it restarts`, { cause: error });
      }
    }
    return 'local';
  }

  async function push(change: UnsharedChange): Promise<void> {
    if (change.op === 'kill') {
      await client.hSet(K.kills, change.record.agent, JSON.stringify(change.record));
      await bump();
      await publish('kill', change.record.agent);
    } else if (change.op === 'revoke') {
      // Kept at least a minute even for an already expired token, so the record is seen.
      const until = Math.max(change.expiresAt * 1000, clock.now() + 60_000);
      await client.set(`${K.rev}${change.jti}`, String(change.expiresAt), { expiration: { type: 'PXAT', value: Math.ceil(until) } });
      await bump();
      await publish('rev', change.jti);
    } else {
      await client.eval(HASH_MAX, { keys: [K.agentRev], arguments: [change.agent, String(change.at)] });
      await bump();
      await publish('agent-rev', change.agent);
    }
  }

  let flushing: Promise<void> | null = null;
  /** Push the changes kept locally, oldest first; each one pushed is logged with its delay. */
  function flushUnshared(): Promise<void> {
    if (unshared.length === 0) return Promise.resolve();
    flushing ??= (async () => {
      try {
        while (unshared.length > 0) {
          const change = unshared[0] as UnsharedChange;
          await push(change);
          unshared.shift();
          notice('warn', `${change.op} made while Redis was unreachable is now shared with every instance`, { ...describe(change), delayMs: clock.now() - madeAt(change) });
        }
        scheduleSave();
      } finally {
        flushing = null;
      }
    })();
    return flushing;
  }

  /** Write this instance's snapshot into Redis without overwriting anything there (union). */
  async function writeUnion(): Promise<{ kills: number; revocations: number; breakers: number }> {
    await flushUnshared();
    const nowMs = clock.now();
    const jobs: (() => Promise<unknown>)[] = [];
    for (const record of view.kills.values()) jobs.push(() => client.hSetNX(K.kills, record.agent, JSON.stringify(record)));
    for (const [agent, at] of view.agentRevoked) jobs.push(() => client.eval(HASH_MAX, { keys: [K.agentRev], arguments: [agent, String(at)] }));
    let revocations = view.agentRevoked.size;
    for (const [jti, exp] of view.revoked) {
      if (exp * 1000 <= nowMs) continue;
      revocations++;
      jobs.push(() => client.set(`${K.rev}${jti}`, String(exp), { condition: 'NX', expiration: { type: 'PXAT', value: Math.ceil(exp * 1000) } }));
    }
    for (const [sid, exp] of view.ended) if (exp * 1000 > nowMs) jobs.push(() => client.eval(HASH_MAX, { keys: [K.ended], arguments: [sid, String(exp)] }));
    let breakers = 0;
    for (const [agent, record] of view.breakers) {
      if (!record.tripped) continue;
      breakers++;
      jobs.push(() => client.hSetNX(K.breakers, agent, JSON.stringify(record)));
    }
    for (const [jti, count, untilMs] of uses.live(nowMs)) {
      jobs.push(() => client.eval(RAISE_USES, { keys: [`${K.uses}${jti}`], arguments: [String(count), String(Math.ceil(untilMs))] }));
    }
    // Pipelined in slices (node-redis sends concurrent commands in one write).
    for (let i = 0; i < jobs.length; i += 500) await Promise.all(jobs.slice(i, i + 500).map((job) => job()));
    return { kills: view.kills.size, revocations, breakers };
  }

  let reseeding: Promise<ReseedOutcome> | null = null;
  /** Write the snapshot back into a Redis that lost its data and start a new epoch. */
  function reseed(): Promise<ReseedOutcome> {
    if (lostData === null) {
      return Promise.resolve({ reseeded: false, detail: 'Redis holds its data (the generation marker is as expected); nothing to reseed', kills: 0, revocations: 0, breakers: 0 });
    }
    if (!commandReady || stalled !== null) return Promise.reject(new StateUnavailableError('Redis is unreachable; it can be reseeded once it answers'));
    reseeding ??= (async () => {
      try {
        const counts = await writeUnion();
        const current = await readMarker();
        const epoch = randomUUID();
        const gen = Math.max(known?.gen ?? 0, current?.gen ?? 0) + 1;
        await client.hSet(K.marker, { epoch, gen: String(gen), origin: 'reseed' });
        known = { epoch, gen };
        lostData = null;
        onReseed('reseed');
        notice('warn', 'Redis reseeded from this instance\'s snapshot (union with what it held); the other instances merge theirs', { mode: reseedMode, ...counts, epoch });
        await publish('reseed', epoch);
        scheduleSave();
        void reload();
        return { reseeded: true, detail: 'Redis reseeded from this instance\'s snapshot', ...counts };
      } finally {
        reseeding = null;
      }
    })();
    return reseeding;
  }

  let merging = false;
  /** Another instance reseeded Redis: add this instance's snapshot (union), then load. */
  async function merge(current: Marker): Promise<void> {
    if (merging) return;
    merging = true;
    try {
      replayHorizon = Math.max(replayHorizon, Math.ceil(clock.now() / 1000) * 1000);
      if (lostData === null) {
        lostData = 'merging this instance\'s snapshot into a reseeded Redis';
        loaded = false;
        setHealth(lostData, 'data_lost');
      }
      const counts = await writeUnion();
      known = { epoch: current.epoch, gen: current.gen };
      lostData = null;
      onReseed('merge');
      notice('warn', 'merged this instance\'s snapshot into Redis after another instance reseeded it', { ...counts, epoch: current.epoch });
      scheduleSave();
      void reload();
    } finally {
      merging = false;
    }
  }

  /** Re-read one key after an event and put it in the local view. */
  async function apply(kind: EventKind, key: string): Promise<void> {
    switch (kind) {
      case 'kill': {
        const json = await client.hGet(K.kills, key);
        const record = json === null || json === undefined ? null : parse<KillRecord>(json);
        if (record === null) {
          // Absent is a revive, or a Redis that lost its data: only the marker tells them apart.
          if (view.kills.has(key) && !(await intact())) return;
          view.kills.delete(key);
        } else {
          const seen = view.kills.has(key);
          view.kills.set(key, record);
          if (!seen) remoteStop(key, record.reason);
        }
        overlay(view);
        return;
      }
      case 'agent-rev': {
        const at = await client.hGet(K.agentRev, key);
        // Agent revocations only ever move forward: an absent or lower value is lost data, not a change.
        if (at !== null && at !== undefined) {
          const previous = view.agentRevoked.get(key);
          view.agentRevoked.set(key, Math.max(Number(at), previous ?? 0));
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
        if (record === null) {
          if (view.breakers.get(key)?.tripped === true && !(await intact())) return;
          view.breakers.delete(key);
        } else view.breakers.set(key, record);
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
        sessions.heardEnded(key);
        return;
      }
      case 'uses': {
        // PTTL, not PEXPIRETIME: Redis 6.2 is enough.
        const [count, ttlMs] = await Promise.all([client.get(`${K.uses}${key}`), client.pTTL(`${K.uses}${key}`)]);
        if (count !== null) uses.note(key, Number(count), clock.now() + Math.max(Number(ttlMs), 0));
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
    if (kind === 'reseed') {
      // Another instance reseeded Redis: the probe sees the new epoch and merges this snapshot.
      void probe();
      return;
    }
    // A Redis that lost its data answers re-reads with nothing: the view stays as it is.
    if (lostData !== null) return;
    if (pending !== null) {
      pending.push({ kind, key: event.key });
      return;
    }
    apply(kind, event.key).then(() => {
      if (kind !== 'secret' && kind !== 'approval' && kind !== 'uses') scheduleSave();
    }, () => {
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

  async function endSessionShared(sid: string, expiresAt: number): Promise<void> {
    await client.eval(HASH_MAX, { keys: [K.ended], arguments: [sid, String(expiresAt)] });
    sessions.markEnded(sid, expiresAt);
    await publish('ended', sid);
  }

  /** Push a kill or revocation already in force here; kept locally when Redis cannot take it now. */
  async function share(change: UnsharedChange): Promise<Sharing> {
    if (!commandReady || stalled !== null || unshared.length > 0) return keepLocal(change, commandReady ? (stalled ?? 'earlier changes are still waiting') : detail);
    try {
      await push(change);
      scheduleSave();
      return 'shared';
    } catch (error) {
      if (error instanceof StateUnavailableError) return keepLocal(change, error.message);
      throw error;
    }
  }

  // Connect both, and wait for the first full load (bounded): a gateway must not start on an
  // empty view of a state that holds kill switches. With `reseed: manual` a Redis that lost its
  // data is handed out unhealthy, so the operator can reseed it through the admin socket.
  const connectMs = options.connectTimeoutMs ?? 5000;
  const start = async (): Promise<void> => {
    if (viaSentinel !== null) {
      await viaSentinel.connect();
      await viaSentinel.subscribe(K.channel, onMessage);
      await viaSentinel.subscribe(probeChannel, onProbe);
      commandReady = true;
      listening = true;
      subscribed = true;
      await reload();
      return;
    }
    await Promise.all([raw.connect(), subscriber.connect()]);
    await subscriber.subscribe(K.channel, onMessage);
    await subscriber.subscribe(probeChannel, onProbe);
    listening = true;
    subscribed = subscriber.isReady;
    await reload();
  };
  start().catch(noteError);
  const until = Date.now() + connectMs;
  const waiting = (): boolean => !healthy && !(lostData !== null && reseedMode === 'manual');
  while (waiting() && unfixable === null && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 20));
  if (waiting()) {
    closing = true;
    clearInterval(probeTimer);
    if (viaSentinel !== null) void viaSentinel.destroy().catch(() => undefined);
    else {
      raw.destroy();
      subscriber.destroy();
    }
    const why = unfixable ?? lostData ?? stalled ?? (lastError === '' ? `no answer within ${connectMs} ms` : lastError.replace(/\/\/[^@/]*@/g, '//***@'));
    throw new RedisUnavailableError(why);
  }

  opened = true;
  return {
    driver: 'redis',
    isHealthy: () => healthy,
    status: () => ({ healthy, detail, unshared: unshared.length }),
    reseed,
    get replayHorizon() {
      return replayHorizon;
    },
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
      // In force here at once; shared when Redis takes it within the deadline, else kept locally.
      view.revoked.set(jti, Math.max(expiresAt, view.revoked.get(jti) ?? 0));
      sweep();
      return share({ op: 'revoke', jti, expiresAt, madeAt: clock.now() });
    },
    async revokeAgent(agent, at) {
      view.agentRevoked.set(agent, Math.max(at, view.agentRevoked.get(agent) ?? 0));
      return share({ op: 'revoke-agent', agent, at, madeAt: clock.now() });
    },
    killRecord: (agent) => view.kills.get(agent),
    kills: () => [...view.kills.values()],
    async kill(record) {
      view.kills.set(record.agent, record);
      return share({ op: 'kill', record });
    },
    async revive(agent) {
      // Lifting a kill only through the shared state: a revive kept on one instance would let the
      // agent in there while every other instance refuses it (fail closed instead).
      if (!healthy) throw new StateUnavailableError(`the shared state is unavailable (${detail}); a revive is applied only through Redis, try again when it answers`);
      const [killed, hadBreaker] = await Promise.all([client.hDel(K.kills, agent), client.hDel(K.breakers, agent)]);
      view.kills.delete(agent);
      view.breakers.delete(agent);
      await bump();
      await Promise.all([publish('kill', agent), publish('breaker', agent)]);
      scheduleSave();
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
      if (outcome.tripped) {
        await bump();
        scheduleSave();
      }
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
    async rateLimit(keys, rules) {
      const args: string[] = [];
      for (const rule of rules) args.push(String(1000 / rule.rps), String(rule.burst));
      const answer = (await client.eval(RATE_LIMIT, { keys: keys.map((k) => `${K.rate}${k}`), arguments: args })) as unknown;
      if (!Array.isArray(answer) || answer.length !== 5) throw new StateUnavailableError('redis answered the rate limit script with something unexpected');
      const [allowed, rule, remaining, retryAfterMs, resetMs] = answer.map((v: unknown) => Number(v));
      return { allowed: allowed === 1, rule: rule ?? 0, remaining: remaining ?? 0, retryAfterMs: retryAfterMs ?? 0, resetMs: resetMs ?? 0 };
    },
    async consumeUse(jti, maxUses, expiresAt) {
      const until = Math.max(Math.ceil(expiresAt * 1000), clock.now() + 1000);
      const count = Number(await client.eval(CONSUME_USE, { keys: [`${K.uses}${jti}`], arguments: [String(maxUses), String(until)] }));
      if (count < 0) return false;
      uses.note(jti, count, until);
      await publish('uses', jti);
      return true;
    },
    usesOf: (jti) => uses.of(jti),
    async openSession(sid, agent, expiresAt, single) {
      const now = clock.now();
      const ended = (await client.eval(OPEN_SESSION, {
        keys: [`${K.live}${agent}`, K.ended],
        arguments: [sid, String(expiresAt), String(Math.floor(now / 1000)), single ? '1' : '0'],
      })) as string[];
      if (single) {
        sessions.endOthers(agent, sid);
        for (const other of ended) sessions.markEnded(other, sessions.expiresAt(other, expiresAt));
        // Other instances end them when they hear of it; until then they are refused there only
        // after the event arrives (well under a second).
        await Promise.all(ended.map((other) => publish('ended', other)));
      }
      sessions.track(sid, agent, expiresAt, now);
    },
    checkSession(sid, agent, expiresAt, idleMs, touch): SessionState {
      const checked = sessions.check(sid, agent, expiresAt, idleMs, touch, clock);
      // The idle clock is this instance's: a session busy on another instance may idle out here.
      if (checked.endedNow) endSessionShared(sid, checked.expiresAt).catch(() => undefined);
      return checked.state;
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
      const placed = placeApproval(view.approvals.values(), record, now);
      if ('use' in placed) return placed.use;
      await client.hSet(K.approvals, record.id, JSON.stringify(record));
      view.approvals.set(record.id, record);
      await publish('approval', record.id);
      return record;
    },
    async decideApproval(id, decision, by, reason) {
      const decided = await casJson<ApprovalRecord, ApprovalRecord | null>(K.approvals, id, (record) => {
        const next = decidedApproval(record, decision, by, reason, clock.now());
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
        const use = approvalUse(record, requestKey, now);
        if (use !== 'ok' || record === undefined) return refused(use);
        const used = usedApproval(record, now);
        return { next: used, result: { use: 'ok', used } };
      });
      if (outcome.used !== null) {
        view.approvals.set(id, outcome.used);
        await publish('approval', id);
      }
      return outcome.use;
    },
    touch: (agent, jti, expiresAt) => activity.touch(agent, jti, expiresAt, clock.now()),
    activity: (agent): Activity => activity.activity(agent, clock.now(), (jti) => view.revoked.has(jti), view.agentRevoked.has(agent)),
    async auditCheckpoint(auditFile) {
      const json = await client.hGet(K.auditCheckpoints, checkpointField(auditFile));
      return json === null || json === undefined ? null : asAuditCheckpoint(parse<unknown>(json));
    },
    async saveAuditCheckpoint(checkpoint) {
      await client.hSet(K.auditCheckpoints, checkpointField(checkpoint.file), JSON.stringify(checkpoint));
    },
    async close() {
      // Not reported through onHealth: a shutdown is not an outage.
      closing = true;
      healthy = false;
      clearInterval(probeTimer);
      if (saveTimer !== null) clearTimeout(saveTimer);
      // The last snapshot (and any change not yet shared) is on disk before the process exits.
      await journal?.save().catch((error: unknown) => notice('error', 'the state journal could not be written', { file: journalFile, error: (error as Error).message }));
      await (viaSentinel !== null ? viaSentinel.close().catch(() => undefined) : Promise.allSettled([subscriber.close(), raw.close()]));
    },
  };
}

/**
 * The name our connections give themselves (CLIENT SETNAME, shown by CLIENT LIST). It also makes a
 * connection "ready" only once Redis has answered: node-redis ignores a failed CLIENT SETINFO, so
 * without it a server that finished the TLS handshake and then refused us (redis-server wanting a
 * client certificate) counted as ready, and node-redis reconnects at once, without its back off,
 * after a ready connection drops: thousands of handshakes a second on a running gateway.
 */
const CLIENT_NAME = 'agentgate';

/** Marks the TLS options node-redis hands to `tls.connect` for our Redis connections. */
const REDIS_TLS = Symbol('agentgate.redis-tls');
let tlsGuarded = false;
/** The `node:tls` module object node-redis calls `connect` on (an ESM namespace cannot be patched). */
const nodeTls = createRequire(import.meta.url)('node:tls') as typeof import('node:tls');

/** Node's codes for a server certificate that does not verify (OpenSSL's X509_V_ERR_* names and the host check). */
const UNTRUSTED_CERTIFICATE: ReadonlySet<string> = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_SIGNATURE_FAILURE',
  'CERT_NOT_YET_VALID',
  'CERT_HAS_EXPIRED',
  'CERT_REVOKED',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'INVALID_CA',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/**
 * OpenSSL's alerts from a server that refused our side of the handshake: no client certificate
 * (TLS 1.3 says so; TLS 1.2 fails the handshake), or one it does not accept.
 */
const REFUSED_CLIENT_CERTIFICATE: ReadonlySet<string> = new Set([
  'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED',
  'ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE',
  'ERR_SSL_SSLV3_ALERT_CERTIFICATE_EXPIRED',
  'ERR_SSL_SSLV3_ALERT_CERTIFICATE_REVOKED',
  'ERR_SSL_SSLV3_ALERT_CERTIFICATE_UNKNOWN',
  'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA',
]);

/**
 * The CA, certificate and key as one secure context, built once per store: given as PEM strings,
 * `tls.connect` would parse them (and build a fresh OpenSSL context) on every connection and every
 * reconnect, which during an outage is several a second per client. Material that does not parse
 * is handed over as it is, so the connection fails, and is reported, as it did before.
 */
function tlsMaterial(tls: { readonly ca?: string; readonly cert?: string; readonly key?: string }): { secureContext: SecureContext } | { ca?: string; cert?: string; key?: string } {
  const material = { ...(tls.ca === undefined ? {} : { ca: tls.ca }), ...(tls.cert === undefined ? {} : { cert: tls.cert }), ...(tls.key === undefined ? {} : { key: tls.key }) };
  try {
    return { secureContext: nodeTls.createSecureContext(material) };
  } catch {
    return material;
  }
}

/**
 * node-redis listens for one 'error' per socket (`once`). A TLS socket can raise two: a refused
 * handshake (redis-server wants a client certificate: the alert arrives after the client side has
 * finished) and then the reset that follows. The second had no listener and crashed the process
 * as an uncaught exception. Sockets made for our Redis connections (marked by REDIS_TLS, which
 * node-redis passes through to `tls.connect`) get a lasting listener: node-redis still sees the
 * first error and the close, and the late one is dropped instead of ending the gateway. Other
 * callers of `tls.connect` are untouched.
 */
function guardRedisTlsSockets(): void {
  if (tlsGuarded) return;
  tlsGuarded = true;
  const connect = nodeTls.connect;
  const guarded = function (this: unknown, ...args: unknown[]): TLSSocket {
    const socket = (connect as (...a: unknown[]) => TLSSocket).apply(this, args);
    const first = args[0] as Record<PropertyKey, unknown> | undefined;
    if (first !== null && typeof first === 'object' && first[REDIS_TLS] === true) socket.on('error', () => undefined);
    return socket;
  };
  nodeTls.connect = guarded as typeof nodeTls.connect;
}

function parse<T>(json: string): T | null {
  try {
    const value = JSON.parse(json) as unknown;
    return value !== null && typeof value === 'object' ? (value as T) : null;
  } catch {
    return null;
  }
}

function describe(change: UnsharedChange): Record<string, unknown> {
  if (change.op === 'kill') return { agent: change.record.agent, reason: change.record.reason, madeAt: new Date(change.record.at).toISOString() };
  if (change.op === 'revoke') return { jti: change.jti, madeAt: new Date(change.madeAt).toISOString() };
  return { agent: change.agent, madeAt: new Date(change.madeAt).toISOString() };
}

function madeAt(change: UnsharedChange): number {
  return change.op === 'kill' ? change.record.at : change.madeAt;
}

/**
 * Checkpoints are keyed by host and file: instances sharing one Redis (identical containers with
 * the same `audit.file` path) each keep their own, never overwriting another's.
 */
function checkpointField(auditFile: string): string {
  return `${hostname()}:${auditFile}`;
}
