// The state errors the CLI turns into one line and exit code 1. A leaf: the dispatcher
// (cli/index.ts) tells them apart without loading the store drivers.
import type { LockHolder } from './lock.js';

/** A change was asked of a store opened read-only. */
export class ReadOnlyStoreError extends Error {
  constructor() {
    super('this state file was opened read-only (a tool beside the gateway); changes go through the gateway');
    this.name = 'ReadOnlyStoreError';
  }
}

/** The state file exists but cannot be read back; the gateway refuses to start on it. */
export class StateFileError extends Error {
  constructor(
    readonly file: string,
    why: string,
  ) {
    super(`state file ${file} is unreadable (${why}); it may hold kill switches and revocations, so the gateway will not start without it. Fix or restore it, or start with --reset-state to move it aside and start empty`);
    this.name = 'StateFileError';
  }
}

/** Another live writer holds the state file. */
export class StateFileLockedError extends Error {
  constructor(
    readonly file: string,
    readonly holder: LockHolder | null,
  ) {
    const who = holder === null ? 'another process' : `process ${holder.pid} on ${holder.host} (since ${new Date(holder.started).toISOString()})`;
    super(`state file ${file} is in use by ${who}: only one gateway may write a memory-driver state file. Stop that process, or make changes through its admin socket; if it is gone for good and not on this host, ${file}.lock is taken over once it is older than its heartbeat period`);
    this.name = 'StateFileLockedError';
  }
}
