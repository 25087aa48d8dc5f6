// The state contract shared by every instance: revocations and kill switches.
// Reads on the hot path are synchronous against a local view the driver keeps current;
// writes are durable (state file, or Redis) before they resolve.

/** An operator's kill switch on one agent. */
export interface KillRecord {
  readonly agent: string;
  readonly reason: string;
  /** ms since the epoch. */
  readonly at: number;
  /** Who pulled it (operator description, e.g. `uid=1000 pid=4242`). */
  readonly by: string;
}

/**
 * Shared gateway state. Implementations: `memory.ts` (one instance, optional state file) and,
 * later, `redis.ts` (many instances).
 */
export interface Store {
  readonly driver: 'memory' | 'redis';
  /** False when the backing store cannot be trusted (e.g. Redis unreachable): admit fails closed. */
  isHealthy(): boolean;

  /** True when `jti` was revoked and the revocation has not yet outlived the token. */
  isRevoked(jti: string): boolean;
  /** Revoke until `expiresAt` (seconds since the epoch), after which the token is dead anyway. */
  revoke(jti: string, expiresAt: number): Promise<void>;

  killRecord(agent: string): KillRecord | undefined;
  kill(record: KillRecord): Promise<void>;
  /** Lift a kill switch; resolves false when the agent was not killed. */
  revive(agent: string): Promise<boolean>;

  close(): Promise<void>;
}
