// Raw policy trees -> a typed, compiled, frozen PolicySnapshot. Collects every problem before
// failing; each names file, line, path, what is wrong and what is allowed. Unknown keys are
// errors: a typo must never silently switch a constraint off. This file runs the sections in
// order (defaults, backends, roles, agents, users); each section's rules live in its own file.
import type { Clock } from '../../clock.js';
import type { RawPolicy } from '../load.js';
import type { Agent, Backend, PolicySnapshot, Role } from '../types.js';
import { validateAgent } from './agents.js';
import { validateBackend } from './backends.js';
import { Checker } from './checker.js';
import { validateDefaults } from './defaults.js';
import { validateRole } from './roles.js';
import { validateUsers } from './users.js';

export interface ValidateOptions {
  readonly version: number;
  readonly clock: Clock;
  readonly defaultTimeoutMs: number;
}

/** Validate and compile merged policy files. Throws ConfigError with every problem. */
export function validatePolicy(raw: RawPolicy, options: ValidateOptions, earlier: readonly string[] = []): PolicySnapshot {
  const c = new Checker();
  c.problems.push(...earlier);
  const sections = raw.sections;
  const warnings: string[] = [];
  const defaults = validateDefaults(c, sections.defaults);
  const backends = new Map<string, Backend>();
  for (const [name, entry] of sections.backends) {
    const backend = validateBackend(c, name, entry, options.defaultTimeoutMs);
    if (backend !== null) backends.set(name, backend);
  }
  const roles = new Map<string, Role>();
  for (const [name, entry] of sections.roles) {
    const role = validateRole(c, name, entry, backends, sections.backends, raw.complete, defaults, warnings);
    if (role !== null) roles.set(name, role);
  }
  const agents = new Map<string, Agent>();
  for (const [name, entry] of sections.agents) {
    const agent = validateAgent(c, name, entry, sections.roles, raw.complete, warnings, options.clock.now());
    if (agent !== null) agents.set(name, agent);
  }
  const users = validateUsers(c, sections.users, backends, sections.backends, raw.complete);
  c.fail();
  return Object.freeze({
    version: options.version,
    loadedAt: options.clock.now(),
    files: Object.freeze([...raw.files]),
    backends,
    roles,
    agents,
    users,
    warnings: Object.freeze(warnings),
  });
}
