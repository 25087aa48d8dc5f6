// The policy module's entry: read a folder of policy files and return a validated, compiled,
// frozen snapshot, or throw ConfigError with every problem found.
import type { Clock } from '../clock.js';
import { loadPolicyDir } from './load.js';
import type { PolicySnapshot } from './types.js';
import { validatePolicy } from './validate/index.js';

export interface LoadPolicyOptions {
  readonly version: number;
  readonly clock: Clock;
  /** Backend timeout when a backend sets none (limits.upstreamTimeout). */
  readonly defaultTimeoutMs: number;
}

/** Load, validate and compile every policy file of `dir`. Throws ConfigError with every problem. */
export async function loadPolicySnapshot(dir: string, options: LoadPolicyOptions): Promise<PolicySnapshot> {
  const problems: string[] = [];
  const raw = await loadPolicyDir(dir, problems);
  return validatePolicy(raw, options, problems);
}
