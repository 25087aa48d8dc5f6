// What a policy change does to each agent (joiner, mover, leaver, grants added and removed): the
// one comparison `agentgate check --diff` prints before a reload and the reload itself acts on.
import type { PolicySnapshot } from './types.js';

export type AgentChangeKind = 'joiner' | 'leaver' | 'mover' | 'grants';

export interface AgentChange {
  readonly agent: string;
  readonly kind: AgentChangeKind;
  /** The role before (null for a joiner). */
  readonly fromRole: string | null;
  /** The role after (null for a leaver). */
  readonly toRole: string | null;
  /** Grants (`backend:scope`) the agent gains, sorted. */
  readonly added: readonly string[];
  /** Grants it loses, sorted. */
  readonly removed: readonly string[];
}

/** Every agent whose identity or grants differ between `before` and `after`, sorted by agent. */
export function diffAgents(before: PolicySnapshot, after: PolicySnapshot): AgentChange[] {
  const grantsOf = (policy: PolicySnapshot, agent: string): ReadonlySet<string> => {
    const role = policy.agents.get(agent)?.role;
    return (role === undefined ? undefined : policy.roles.get(role)?.grants) ?? new Set<string>();
  };
  const ids = [...new Set([...before.agents.keys(), ...after.agents.keys()])].sort();
  const changes: AgentChange[] = [];
  for (const agent of ids) {
    const was = before.agents.get(agent);
    const is = after.agents.get(agent);
    const old = grantsOf(before, agent);
    const next = grantsOf(after, agent);
    const added = [...next].filter((g) => !old.has(g)).sort();
    const removed = [...old].filter((g) => !next.has(g)).sort();
    const fromRole = was?.role ?? null;
    const toRole = is?.role ?? null;
    let kind: AgentChangeKind | null = null;
    if (was === undefined) kind = 'joiner';
    else if (is === undefined) kind = 'leaver';
    else if (fromRole !== toRole) kind = 'mover';
    else if (added.length > 0 || removed.length > 0) kind = 'grants';
    if (kind !== null) changes.push({ agent, kind, fromRole, toRole, added, removed });
  }
  return changes;
}

/** One change as the lines `check --diff` prints. */
export function describeChange(change: AgentChange): string[] {
  const head =
    change.kind === 'joiner'
      ? `+ ${change.agent}: joiner (role ${change.toRole ?? ''}); gets nothing until credentials are issued`
      : change.kind === 'leaver'
        ? `- ${change.agent}: leaver (role ${change.fromRole ?? ''}); its live tokens and credentials are revoked at the reload`
        : change.kind === 'mover'
          ? `~ ${change.agent}: mover (role ${change.fromRole ?? ''} -> ${change.toRole ?? ''}); its live tokens are revoked at the reload`
          : `~ ${change.agent}: grants of role ${change.toRole ?? ''} changed`;
  return [head, ...change.added.map((g) => `    + ${g}`), ...change.removed.map((g) => `    - ${g}`)];
}
