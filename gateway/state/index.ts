// Opens the store `state.driver` names: the embedded memory store (one instance, state file) or
// the Redis store (many instances sharing one Redis).
import { readFile } from 'node:fs/promises';
import type { RedisAuthSettings, StateSettings } from '../config.js';
import type { Clock } from '../clock.js';
import { readSecretFile } from '../secret-file.js';
import { openMemoryStore } from './memory.js';
import type { OutageCause } from './redis.js';
import { asAuditCheckpoint, type AuditCheckpointRecord, type Store } from './store.js';

export interface OpenStoreOptions {
  /** Told when a Redis store loses or regains its connection (memory stores never change). */
  readonly onHealth?: (healthy: boolean, why: string) => void;
  /** Told when another instance kills an agent or revokes its tokens (Redis only). */
  readonly onRemoteStop?: (agent: string, reason: string) => void;
  /** Told when a Redis store stops being trusted, and why. */
  readonly onOutage?: (cause: OutageCause) => void;
  /** Told when this instance reseeded Redis, or merged its snapshot into a reseeded Redis. */
  readonly onReseed?: (kind: 'reseed' | 'merge') => void;
  /** A CLI tool beside a running gateway: reads the Redis journal, never writes it, never reseeds. */
  readonly tool?: boolean;
  /**
   * A reader beside a running gateway (`explain`, `review`): a memory-driver state file is read
   * without taking its writer's lock, and never written. Implies `tool`.
   */
  readonly readOnly?: boolean;
  /** Log lines about changes kept locally, pushed late, lost data and reseeds. */
  readonly onNotice?: (level: 'info' | 'warn' | 'error', message: string, fields: Record<string, unknown>) => void;
}

export async function openStore(settings: StateSettings, clock: Clock, options: OpenStoreOptions = {}): Promise<Store> {
  if (settings.driver === 'redis') {
    const pem = async (file: string | null): Promise<string | undefined> => (file === null ? undefined : readFile(file, 'utf8'));
    const tls = settings.tls === null ? null : { ca: await pem(settings.tls.ca), cert: await pem(settings.tls.cert), key: await pem(settings.tls.key) };
    // Passwords are read here, at start, and handed to the client only (never logged, never in
    // settings), by the same reader config.ts checked the files with at load.
    const credentials = (auth: RedisAuthSettings | null) => (auth === null ? null : { username: auth.username, password: readSecretFile(auth.passwordFile) });
    // Loaded on first use: the Redis client is some 600 modules that memory-driver processes and
    // most CLI verbs never need.
    const { openRedisStore } = await import('./redis.js');
    return openRedisStore({
      clock,
      url: settings.url,
      tls: tls ?? (settings.url?.startsWith('rediss://') === true ? {} : null),
      sentinel: settings.sentinel,
      auth: credentials(settings.auth),
      sentinelAuth: credentials(settings.sentinelAuth),
      commandTimeoutMs: settings.timeoutMs,
      journal: settings.journal,
      reseed: settings.reseed,
      ...options,
      tool: options.tool === true || options.readOnly === true,
    });
  }
  return openMemoryStore({ clock, file: settings.file, readOnly: options.readOnly === true, onWarning: (message, fields) => options.onNotice?.('warn', message, fields) });
}

/**
 * The last audit checkpoint recorded for `auditFile`, read without opening the store for writing
 * (`audit verify` next to a running gateway): the state file read as is, or one Redis read.
 */
export async function readAuditCheckpoint(settings: StateSettings, auditFile: string, clock: Clock): Promise<AuditCheckpointRecord | null> {
  if (settings.driver === 'memory') {
    if (settings.file === null) return null;
    // The snapshot and its journal, read without the writer's lock (a gateway may be running).
    const store = await openMemoryStore({ clock, file: settings.file, readOnly: true });
    try {
      return await store.auditCheckpoint(auditFile);
    } finally {
      await store.close();
    }
  }
  const store = await openStore(settings, clock);
  try {
    return await store.auditCheckpoint(auditFile);
  } finally {
    await store.close();
  }
}
