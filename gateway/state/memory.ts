// The embedded store for a single instance: state in process memory.
// Durable persistence to `state.file` arrives with the operator features (kill switch, breaker).
import type { Clock } from '../context.js';
import type { KillRecord, Store } from './store.js';

export interface MemoryStoreOptions {
  readonly clock: Clock;
}

export function createMemoryStore(options: MemoryStoreOptions): Store {
  const { clock } = options;
  /** jti -> expiry (seconds since epoch). */
  const revoked = new Map<string, number>();
  const kills = new Map<string, KillRecord>();

  return {
    driver: 'memory',
    isHealthy: () => true,
    isRevoked(jti) {
      const until = revoked.get(jti);
      if (until === undefined) return false;
      if (until * 1000 <= clock.now()) {
        revoked.delete(jti);
        return false;
      }
      return true;
    },
    async revoke(jti, expiresAt) {
      revoked.set(jti, expiresAt);
    },
    killRecord: (agent) => kills.get(agent),
    async kill(record) {
      kills.set(record.agent, record);
    },
    async revive(agent) {
      return kills.delete(agent);
    },
    async close() {},
  };
}
