// The published signing keys and their rotation: a new key every `issuer.rotate`, published in the
// JWKS a while before it signs (verifiers that cache the JWKS know it first), the old public key
// kept until every token it signed has expired, and keys added by another process (`agentgate keys
// rotate` without a running gateway, a second instance) picked up on each tick.
import type { Clock } from '../clock.js';
import type { KeyStore } from '../tokens/keys.js';

/** Longest token lifetime policy allows (24 h) plus the verifier's skew: how long a superseded key stays. */
export const RETAIN_SUPERSEDED_MS = 24 * 3_600_000 + 60_000;
const TICK_MS = 60_000;
/** How long a scheduled new key is published before it signs (longer than verifiers' JWKS cache). */
export const PREPUBLISH_MS = 10 * 60_000;

export interface KeyRotation {
  /** Rotate when the current key is older than the period, retire keys past retention. */
  tick(): Promise<void>;
  /** Force a rotation now (`agentgate keys rotate`). Resolves the new kid. */
  rotateNow(): Promise<string>;
  start(): void;
  stop(): void;
}

export interface KeyRotationOptions {
  readonly keys: KeyStore;
  readonly clock: Clock;
  readonly rotateMs: number;
  readonly retainMs?: number;
  readonly onRotated?: (kid: string) => void;
  readonly onError?: (error: unknown) => void;
}

export function createKeyRotation(options: KeyRotationOptions): KeyRotation {
  const { keys, clock, rotateMs } = options;
  const retainMs = options.retainMs ?? RETAIN_SUPERSEDED_MS;
  let timer: NodeJS.Timeout | null = null;
  let running: Promise<void> | null = null;

  const prepublishMs = Math.min(PREPUBLISH_MS, Math.floor(rotateMs / 2));

  async function tick(): Promise<void> {
    await keys.refresh();
    const now = clock.now();
    const current = keys.current();
    const pending = keys.all().some((k) => k.alg === keys.alg && k.activatesAt > now);
    // Due at current.activatesAt + rotateMs; the successor is published prepublishMs before.
    if (!pending && now >= current.activatesAt + rotateMs - prepublishMs) {
      const kid = await keys.rotate({ activateInMs: Math.max(0, current.activatesAt + rotateMs - now) });
      options.onRotated?.(kid);
    }
    await keys.retire(retainMs);
  }

  return {
    tick,
    async rotateNow() {
      const kid = await keys.rotate();
      options.onRotated?.(kid);
      return kid;
    },
    start() {
      if (timer !== null) return;
      timer = setInterval(() => {
        if (running !== null) return;
        running = tick()
          .catch((error: unknown) => options.onError?.(error))
          .finally(() => {
            running = null;
          });
      }, Math.min(TICK_MS, rotateMs));
      timer.unref();
    },
    stop() {
      if (timer !== null) clearInterval(timer);
      timer = null;
    },
  };
}
