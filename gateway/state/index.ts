// Opens the store `state.driver` names: the embedded memory store (one instance, state file) or
// the Redis store (many instances sharing one Redis).
import type { StateSettings } from '../config.js';
import type { Clock } from '../clock.js';
import { openMemoryStore } from './memory.js';
import { openRedisStore } from './redis.js';
import type { Store } from './store.js';

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
