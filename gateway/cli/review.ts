// `agentgate review`: the monthly access review from the policies, the state store's credentials
// and the audit trail (the file and its rotated set, streamed). Reads files only; no running
// gateway needed.
import { readdir, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { systemClock } from '../clock.js';
import { parseDuration } from '../policy/units.js';
import { openStore } from '../state/index.js';
import { readPolicy, settingsFrom } from './common.js';
import { CliError, parse, type Out } from './verb.js';
import { buildReview, reviewCsv, reviewHtml, type CredentialAge } from './review-report.js';

/** The audit file and its rotated set, oldest first. */
async function auditSet(file: string): Promise<string[]> {
  const dir = dirname(file);
  const base = basename(file);
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const rotated = names
    .map((n) => ({ n, m: new RegExp(`^${base.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\.(\\d+)$`).exec(n) }))
    .filter((x) => x.m !== null)
    .sort((a, b) => Number(b.m?.[1]) - Number(a.m?.[1]))
    .map((x) => join(dir, x.n));
  return [...rotated, ...(names.includes(base) ? [file] : [])];
}

export async function review(args: readonly string[], out: Out): Promise<number> {
  const { values } = parse(args, { since: { type: 'string' }, csv: { type: 'boolean', default: false }, html: { type: 'string' } });
  const formats = [values.json, values.csv, values.html !== undefined].filter(Boolean).length;
  if (formats > 1) throw new CliError('review takes one of --json, --csv, --html FILE', 2);
  const since = parseDuration(values.since ?? '30d');
  if (!since.ok) throw new CliError(`--since: ${since.error}`, 2);
  const settings = await settingsFrom(values.config);
  const policy = await readPolicy(settings, systemClock);
  const store = await openStore(settings.state, systemClock, { readOnly: true });
  let credentials: CredentialAge[];
  try {
    credentials = store.clientSecrets().map((s) => ({ agent: s.agent, id: s.id, createdAt: s.createdAt }));
  } finally {
    await store.close();
  }
  const now = systemClock.now();
  const files = await auditSet(settings.audit.file);
  const report = await buildReview({ policy, files, sinceMs: now - since.value, nowMs: now, credentials });
  if (values.json) out.stdout(JSON.stringify(report));
  else if (values.csv) out.stdout(reviewCsv(report).trimEnd());
  else if (values.html !== undefined) {
    const target = resolve(values.html);
    await writeFile(target, reviewHtml(report), { mode: 0o600 });
    out.stdout(`${target}: ${report.matrix.length} grants of ${policy.agents.size} agents, ${report.findings.length} findings, ${report.linesRead} audit lines`);
  } else {
    const lines = [`access review ${report.since} .. ${report.until} (${report.linesRead} audit lines from ${files.length} files)`, ''];
    lines.push(['AGENT', 'ROLE', 'GRANT', 'CALLS', 'REFUSED', 'LAST USED'].join('\t'));
    for (const u of report.matrix) lines.push([u.agent, u.role, u.grant, u.calls, u.refusals, u.lastUsed ?? 'never'].join('\t'));
    lines.push('', `findings (${report.findings.length}):`);
    for (const f of report.findings) lines.push(`  ${f.kind}: ${f.detail}${f.edit === null ? '' : `\n    edit: ${f.edit}`}`);
    out.stdout(lines.join('\n'));
  }
  return 0;
}
