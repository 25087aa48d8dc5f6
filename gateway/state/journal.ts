// The Redis driver's local snapshot and journal (`state.journal`): the kills, revocations, ended
// sessions and open breakers this instance knows, the Redis generation marker it last saw, and
// the changes made here while Redis was unreachable (not yet shared). Written atomically (temp
// file, fsync, rename, fsync of the folder); a change made during an outage is on disk before the
// call that made it resolves. An unreadable journal stops the start: it may hold unshared kills.
import { readFile, rename } from 'node:fs/promises';
import { writeAtomic } from './atomic-file.js';
import type { BreakerRecord } from './breaker.js';
import type { KillRecord } from './store.js';

/** Redis's generation marker: `epoch` names one continuous life of the data, `gen` counts changes in it. */
export interface Marker {
  readonly epoch: string;
  readonly gen: number;
}

/** A change applied on this instance while Redis was unreachable, waiting to be pushed. */
export type UnsharedChange =
  | { readonly op: 'kill'; readonly record: KillRecord }
  | { readonly op: 'revoke'; readonly jti: string; readonly expiresAt: number; readonly madeAt: number }
  | { readonly op: 'revoke-agent'; readonly agent: string; readonly at: number; readonly madeAt: number };

export interface Snapshot {
  readonly marker: Marker | null;
  readonly kills: readonly KillRecord[];
  /** agent -> tokens issued at or before this second are revoked. */
  readonly agentRevocations: Readonly<Record<string, number>>;
  /** jti -> exp (seconds). */
  readonly revocations: Readonly<Record<string, number>>;
  /** sid -> exp (seconds). */
  readonly endedSessions: Readonly<Record<string, number>>;
  /** Tripped breakers only. */
  readonly breakers: Readonly<Record<string, BreakerRecord>>;
  /** jti -> uses counted of a token with maxUses, and when its counter expires (ms). */
  readonly uses?: Readonly<Record<string, { readonly count: number; readonly untilMs: number }>>;
  readonly unshared: readonly UnsharedChange[];
}

export const EMPTY_SNAPSHOT: Snapshot = Object.freeze({ marker: null, kills: [], agentRevocations: {}, revocations: {}, endedSessions: {}, breakers: {}, unshared: [] });

/** The journal exists but cannot be read back; the gateway refuses to start on it. */
export class JournalError extends Error {
  constructor(
    readonly file: string,
    why: string,
  ) {
    super(`state journal ${file} is unreadable (${why}); it may hold kills and revocations not yet shared through Redis, so the gateway will not start without it. Fix or restore it, or start with --reset-state to move it aside`);
    this.name = 'JournalError';
  }
}

/** Read the journal; null when there is none yet. */
export async function readJournal(file: string): Promise<Snapshot | null> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new JournalError(file, (error as Error).message);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new JournalError(file, `not JSON: ${(error as Error).message}`);
  }
  const problem = checkSnapshot(value);
  if (problem !== null) throw new JournalError(file, problem);
  return value as Snapshot;
}

/** Move an unreadable journal aside (the CLI's --reset-state); resolves where it went, or null. */
export async function moveJournalAside(file: string, now: number): Promise<string | null> {
  const aside = `${file}.corrupt-${new Date(now).toISOString().replace(/[:.]/g, '-')}`;
  try {
    await rename(file, aside);
    return aside;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isNumberMap = (v: unknown): boolean => isRecord(v) && Object.values(v).every((n) => typeof n === 'number' && Number.isFinite(n));
const isKill = (v: unknown): boolean => isRecord(v) && typeof v.agent === 'string' && typeof v.reason === 'string' && typeof v.at === 'number' && typeof v.by === 'string';

function checkSnapshot(v: unknown): string | null {
  if (!isRecord(v) || v.version !== 1) return 'not a version 1 journal';
  if (v.marker !== null && !(isRecord(v.marker) && typeof v.marker.epoch === 'string' && typeof v.marker.gen === 'number')) return 'bad marker';
  if (!Array.isArray(v.kills) || !v.kills.every(isKill)) return 'bad kills';
  for (const key of ['agentRevocations', 'revocations', 'endedSessions'] as const) if (!isNumberMap(v[key])) return `bad ${key}`;
  if (!isRecord(v.breakers) || !Object.values(v.breakers).every((b) => isRecord(b) && typeof b.tripped === 'boolean')) return 'bad breakers';
  if (v.uses !== undefined && !(isRecord(v.uses) && Object.values(v.uses).every((u) => isRecord(u) && typeof u.count === 'number' && typeof u.untilMs === 'number'))) return 'bad uses';
  if (!Array.isArray(v.unshared)) return 'bad unshared';
  for (const change of v.unshared as unknown[]) {
    if (!isRecord(change)) return 'bad unshared change';
    const ok =
      (change.op === 'kill' && isKill(change.record)) ||
      (change.op === 'revoke' && typeof change.jti === 'string' && typeof change.expiresAt === 'number' && typeof change.madeAt === 'number') ||
      (change.op === 'revoke-agent' && typeof change.agent === 'string' && typeof change.at === 'number' && typeof change.madeAt === 'number');
    if (!ok) return 'bad unshared change';
  }
  return null;
}

export interface JournalWriter {
  /** Resolves once a write that started after this call (so holds the current snapshot) is on disk. */
  save(): Promise<void>;
}

/**
 * Coalescing writer: at most one write in flight; calls made meanwhile share the next one. `build`
 * is read when a write starts, so every write holds the newest snapshot.
 */
export function createJournalWriter(file: string, build: () => Snapshot, now: () => number): JournalWriter {
  let running: Promise<void> | null = null;
  let next: Promise<void> | null = null;
  const writeOnce = async (): Promise<void> => {
    const snapshot = build();
    await writeAtomic(file, JSON.stringify({ version: 1, savedAt: new Date(now()).toISOString(), ...snapshot }));
  };
  const run = (): Promise<void> => {
    const current = writeOnce().finally(() => {
      if (running === current) running = null;
    });
    running = current;
    return current;
  };
  return {
    save() {
      if (running === null) return run();
      if (next === null) {
        next = running.catch(() => undefined).then(() => {
          next = null;
          return run();
        });
      }
      return next;
    },
  };
}
