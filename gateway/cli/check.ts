// `agentgate check`: validate the configuration (and, with --diff, say what a reload does to each
// agent). Reads files only; needs no running gateway. (`explain` is in explain.ts.)
import { resolve } from 'node:path';
import { settingsWarnings } from '../config.js';
import { ConfigError } from '../errors.js';
import { describeChange, diffAgents } from '../policy/diff.js';
import { loadPolicySnapshot } from '../policy/index.js';
import { systemClock } from '../clock.js';
import { readPolicy, settingsFrom } from './common.js';
import { parse, type Out } from './verb.js';

export async function check(args: readonly string[], out: Out): Promise<number> {
  const { values } = parse(args, { diff: { type: 'string' } });
  const settings = await settingsFrom(values.config);
  const policy = await readPolicy(settings, systemClock);
  if (values.diff !== undefined) {
    let old;
    try {
      old = await loadPolicySnapshot(resolve(values.diff), { version: 0, clock: systemClock, defaultTimeoutMs: settings.limits.upstreamTimeoutMs });
    } catch (error) {
      if (error instanceof ConfigError) throw new ConfigError(error.problems.map((p) => `(--diff) ${p}`));
      throw error;
    }
    const changes = diffAgents(old, policy);
    if (values.json) out.stdout(JSON.stringify({ valid: true, from: resolve(values.diff), to: settings.policies, changes }));
    else out.stdout(changes.length === 0 ? `no agent's grants change (${resolve(values.diff)} -> ${settings.policies})` : changes.flatMap(describeChange).join('\n'));
    return 0;
  }
  const summary = {
    config: settings.configFile,
    policies: policy.files,
    backends: policy.backends.size,
    roles: policy.roles.size,
    agents: policy.agents.size,
    workers: settings.workers.count,
    workersSetting: settings.workers.setting,
  };
  // Valid but weaker or likely wrong (a role with its breaker off, an expired agent, an issuer on
  // a loopback port nobody listens on): said, not refused.
  const warnings = [...settingsWarnings(settings), ...(policy.warnings ?? [])];
  if (values.json) out.stdout(JSON.stringify({ valid: true, ...summary, warnings }));
  else {
    for (const warning of warnings) out.stderr(`warning: ${warning}`);
    out.stdout(`${settings.configFile}: ok (${summary.backends} backends, ${summary.roles} roles, ${summary.agents} agents from ${summary.policies.length} policy files, ${workersLine(settings.workers)}${warnings.length > 0 ? `, ${warnings.length} warning${warnings.length === 1 ? '' : 's'}` : ''})`);
  }
  return 0;
}

function workersLine(workers: { readonly setting: 'auto' | number; readonly count: number }): string {
  return `${workers.count} worker process${workers.count === 1 ? '' : 'es'}${workers.setting === 'auto' ? ' (auto)' : ''}`;
}
