// Sessions, token use counts and agent activity as rules over in-process tables, shared by both
// store drivers. The tables decide (is this session live, idle or ended; may this use be taken;
// how many live tokens has an agent); the drivers store: the memory driver writes its state file,
// the Redis driver runs the shared step in Redis and tells the other instances.
import type { Clock } from '../../clock.js';
import type { Activity, SessionState } from '../store.js';

/** Sweep expired entries after this many insertions (both drivers). */
export const SWEEP_EVERY = 1024;
/** Tokens remembered per agent for `activity` (live token counts); more are not tracked. */
export const MAX_TRACKED_TOKENS = 1000;

/** Calls `sweep` once every `every` insertions: bounded memory without a timer. */
export function createSweeper(sweep: () => void, every = SWEEP_EVERY): () => void {
  let insertions = 0;
  return () => {
    if (++insertions % every === 0) sweep();
  };
}

interface Session {
  readonly agent: string;
  /** seconds */
  readonly expiresAt: number;
  lastSeen: number;
  ended: boolean;
}

/** What a check of a session found; `endedNow`: this check ended it (idle), the driver makes that durable. */
export interface SessionCheck {
  readonly state: SessionState;
  readonly endedNow: boolean;
  /** With `endedNow`: the session's expiry (seconds), what its ended record is kept until; else 0. */
  readonly expiresAt: number;
}

// The answers that end nothing are shared: a check on every request allocates nothing.
const LIVE: SessionCheck = Object.freeze({ state: 'live', endedNow: false, expiresAt: 0 });
const ENDED: SessionCheck = Object.freeze({ state: 'ended', endedNow: false, expiresAt: 0 });
const IDLE: SessionCheck = Object.freeze({ state: 'idle', endedNow: false, expiresAt: 0 });

/**
 * The sessions this process has seen. `ended` (sid -> expiry, seconds) is the durable part each
 * driver keeps (state file, Redis hash); it is read through `ended()` because the Redis driver
 * rebuilds it on a full reload.
 */
export class SessionTable {
  private readonly sessions = new Map<string, Session>();
  private readonly live = new Map<string, Set<string>>();

  constructor(
    private readonly ended: () => Map<string, number>,
    private readonly inserted: () => void = () => undefined,
  ) {}

  /** A session opened (or first seen) now. */
  track(sid: string, agent: string, expiresAt: number, now: number): void {
    this.sessions.set(sid, { agent, expiresAt, lastSeen: now, ended: false });
    let live = this.live.get(agent);
    if (live === undefined) {
      live = new Set();
      this.live.set(agent, live);
    }
    live.add(sid);
    this.inserted();
  }

  /** The expiry (seconds) of a session this process knows, or `fallback`. */
  expiresAt(sid: string, fallback: number): number {
    return this.sessions.get(sid)?.expiresAt ?? fallback;
  }

  /** End `sid` (known here or not) until `expiresAt`; an ended record never moves back. */
  markEnded(sid: string, expiresAt: number): void {
    const session = this.sessions.get(sid);
    if (session !== undefined) {
      session.ended = true;
      this.live.get(session.agent)?.delete(sid);
    }
    const ended = this.ended();
    ended.set(sid, Math.max(expiresAt, ended.get(sid) ?? 0));
  }

  /** Single session: end every live session of `agent` but `keep`; returns the ones ended. */
  endOthers(agent: string, keep: string | null): string[] {
    const live = this.live.get(agent);
    if (live === undefined) return [];
    const ended: string[] = [];
    for (const sid of [...live]) {
      if (sid === keep) continue;
      const session = this.sessions.get(sid);
      if (session === undefined) continue;
      this.markEnded(sid, session.expiresAt);
      ended.push(sid);
    }
    return ended;
  }

  /**
   * Whether `sid` may be used now (`clock`). A read (`touch` false: the checks' view) reports an idle
   * session and changes nothing; only the write path (`touch` true) ends it and records the use.
   */
  check(sid: string, agent: string, expiresAt: number, idleMs: number | null, touch: boolean, clock: Clock): SessionCheck {
    if (this.ended().has(sid)) return ENDED;
    const session = this.sessions.get(sid);
    // The clock is read only when the answer depends on it (a boxed time per call otherwise).
    if (session === undefined) {
      if (touch) this.track(sid, agent, expiresAt, clock.now());
      return LIVE;
    }
    if (session.ended) return ENDED;
    if (idleMs === null && !touch) return LIVE;
    const now = clock.now();
    if (idleMs !== null && now - session.lastSeen > idleMs) {
      if (!touch) return IDLE;
      this.markEnded(sid, session.expiresAt);
      return { state: 'idle', endedNow: true, expiresAt: session.expiresAt };
    }
    if (touch) session.lastSeen = now;
    return LIVE;
  }

  /** Heard from elsewhere (another instance) that `sid` ended. */
  heardEnded(sid: string): void {
    const session = this.sessions.get(sid);
    if (session === undefined) return;
    session.ended = true;
    this.live.get(session.agent)?.delete(sid);
  }

  /** Forget sessions and ended records past their expiry. */
  sweep(nowSeconds: number): void {
    for (const [sid, session] of this.sessions) {
      if (session.expiresAt > nowSeconds) continue;
      this.sessions.delete(sid);
      const live = this.live.get(session.agent);
      live?.delete(sid);
      if (live?.size === 0) this.live.delete(session.agent);
    }
    const ended = this.ended();
    for (const [sid, exp] of ended) if (exp <= nowSeconds) ended.delete(sid);
  }
}

/** Token use counts: jti -> count, kept until the token expires (ms). */
export class UseCounts {
  private readonly counts = new Map<string, { count: number; untilMs: number }>();

  constructor(private readonly inserted: () => void = () => undefined) {}

  /** Uses counted so far for `jti`. */
  of(jti: string): number {
    return this.counts.get(jti)?.count ?? 0;
  }

  /** Take one use of at most `maxUses` (one synchronous step: two calls never both take the last). */
  take(jti: string, maxUses: number, untilMs: number): boolean {
    let entry = this.counts.get(jti);
    if (entry === undefined) {
      entry = { count: 0, untilMs };
      this.counts.set(jti, entry);
      this.inserted();
    }
    if (entry.count >= maxUses) return false;
    entry.count++;
    return true;
  }

  /** A count decided elsewhere (Redis, a saved file); counts never move back. */
  note(jti: string, count: number, untilMs: number): void {
    const entry = this.counts.get(jti);
    if (entry === undefined) {
      this.counts.set(jti, { count, untilMs });
      this.inserted();
    } else entry.count = Math.max(entry.count, count);
  }

  /** The unexpired counts, for a state file or snapshot. */
  *live(nowMs: number): Iterable<[jti: string, count: number, untilMs: number]> {
    for (const [jti, entry] of this.counts) if (entry.untilMs > nowMs) yield [jti, entry.count, entry.untilMs];
  }

  sweep(nowMs: number): void {
    for (const [jti, entry] of this.counts) if (entry.untilMs <= nowMs) this.counts.delete(jti);
  }
}

/** When each agent last called, and the tokens it was seen with (for `agentgate agents`). */
export class ActivityTable {
  private readonly agents = new Map<string, { lastSeen: number; tokens: Map<string, number> }>();

  /** An authenticated call by `agent` with token `jti` (expiry in seconds) at `now` (ms). */
  touch(agent: string, jti: string, expiresAt: number, now: number): void {
    let entry = this.agents.get(agent);
    if (entry === undefined) {
      entry = { lastSeen: 0, tokens: new Map() };
      this.agents.set(agent, entry);
    }
    entry.lastSeen = now;
    if (entry.tokens.has(jti)) return;
    if (entry.tokens.size >= MAX_TRACKED_TOKENS) pruneExpired(entry.tokens, now / 1000);
    if (entry.tokens.size < MAX_TRACKED_TOKENS) entry.tokens.set(jti, expiresAt);
  }

  /**
   * Last seen and live tokens of `agent`: unexpired, not revoked one by one, and none at all once
   * every token of the agent has been revoked.
   */
  activity(agent: string, now: number, isRevoked: (jti: string) => boolean, agentRevoked: boolean): Activity {
    const entry = this.agents.get(agent);
    if (entry === undefined) return { lastSeen: null, liveTokens: 0 };
    const nowSeconds = now / 1000;
    pruneExpired(entry.tokens, nowSeconds);
    let live = 0;
    if (!agentRevoked) for (const jti of entry.tokens.keys()) if (!isRevoked(jti)) live++;
    return { lastSeen: entry.lastSeen, liveTokens: live };
  }
}

/** Drop entries whose expiry (seconds) has passed. */
export function pruneExpired(entries: Map<string, number>, nowSeconds: number): void {
  for (const [key, exp] of entries) if (exp <= nowSeconds) entries.delete(key);
}
