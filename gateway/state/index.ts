// Opens the store `state.driver` names: the embedded memory store (one instance, state file) or
// the Redis store (many instances sharing one Redis).
import type { StateSettings } from '../config.js';
import type { Clock } from '../clock.js';
import { openMemoryStore } from './memory.js';
import { openRedisStore } from './redis.js';
import { readFile } from 'node:fs/promises';
import { asAuditCheckpoint, type AuditCheckpointRecord, type Store } from './store.js';

export interface OpenStoreOptions {
  /** Told when a Redis store loses or regains its connection (memory stores never change). */
  readonly onHealth?: (healthy: boolean, why: string) => void;
  /** Told when another instance kills an agent or revokes its tokens (Redis only). */
  readonly onRemoteStop?: (agent: string, reason: string) => void;
}

export function openStore(settings: StateSettings, clock: Clock, options: OpenStoreOptions = {}): Promise<Store> {
  if (settings.driver === 'redis') return openRedisStore({ clock, url: settings.url, onHealth: options.onHealth, onRemoteStop: options.onRemoteStop });
  return openMemoryStore({ clock, file: settings.file });
}

/**
 * The last audit checkpoint recorded for `auditFile`, read without opening the store for writing
 * (`audit verify` next to a running gateway): the state file read as is, or one Redis read.
 */
export async function readAuditCheckpoint(settings: StateSettings, auditFile: string, clock: Clock): Promise<AuditCheckpointRecord | null> {
  if (settings.driver === 'memory') {
    if (settings.file === null) return null;
    let text: string;
    try {
      text = await readFile(settings.file, 'utf8');
    } catch (error) {
      if ((error as { code?: unknown }).code === 'ENOENT') return null;
      throw error;
    }
    const parsed = JSON.parse(text) as { auditCheckpoints?: Record<string, unknown> } | null;
    return asAuditCheckpoint(parsed?.auditCheckpoints?.[auditFile] ?? null);
  }
  const store = await openStore(settings, clock);
  try {
    return await store.auditCheckpoint(auditFile);
  } finally {
    await store.close();
  }
}
