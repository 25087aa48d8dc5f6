// The injected clock: a leaf module, so any module can take a clock without importing the
// request context. Tests pass their own to control time without patching Date.

/** Milliseconds since the epoch. */
export interface Clock {
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };
