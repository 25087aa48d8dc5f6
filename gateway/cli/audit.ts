// `agentgate audit verify` and `agentgate audit tail`: read the audit trail's files; no running
// gateway needed.
import { open, stat } from 'node:fs/promises';
import { parseDuration } from '../policy/units.js';
import { readAuditLines } from '../telemetry/audit-log.js';
import { formatAuditRecord, tailAudit, verifyAuditLines, type TailFilter } from '../telemetry/audit-verify.js';
import { CliError, parse, settingsFrom, type Out, type Verb } from './common.js';

export const auditVerbs: readonly Verb[] = [
  {
    name: 'audit',
    section: 'audit',
    usage: [
      ['audit verify [FILE...]', 'check the hash chain; names every edited, removed, inserted or reordered line'],
      ['audit tail [FILE] [--agent A] [--decision allow|deny] [--since 10m] [-n N] [--follow]', 'recent records, one line each'],
    ],
    options: [
      ['FILE', 'default: audit.file of the config; verify takes several files, oldest first (audit.jsonl.2 audit.jsonl.1 audit.jsonl)'],
      ['--agent A', '(tail) only this agent'],
      ['--decision D', '(tail) allow or deny'],
      ['--since D', '(tail) only records newer than D, e.g. 10m'],
      ['-n, --lines N', '(tail) how many records (default 20)'],
      ['-f, --follow', '(tail) keep printing records as they are appended, across rotation'],
    ],
    takes: ['json'],
    notes: 'verify exits 0 when the chain is intact, 1 when a line was edited, removed, inserted or reordered.',
    run: auditCommand,
  },
];

async function auditCommand(args: readonly string[], out: Out): Promise<number> {
  const [sub, ...rest] = args;
  const { values, positionals } = parse(
    rest,
    {
      agent: { type: 'string' },
      decision: { type: 'string' },
      since: { type: 'string' },
      lines: { type: 'string', short: 'n' },
      follow: { type: 'boolean', short: 'f', default: false },
    },
    true,
  );
  if (sub === undefined) throw new CliError('audit needs verify or tail (agentgate audit --help)', 2);
  const files = positionals.length > 0 ? positionals : [(await settingsFrom(values.config)).audit.file];
  const readLines = async (file: string): Promise<string[]> => {
    try {
      return await readAuditLines(file);
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      throw new CliError(code === 'ENOENT' ? `no audit file at ${file}` : `cannot read ${file}: ${error instanceof Error ? error.message : String(error)}`);
    }
  };
  if (sub === 'verify') {
    // Several files are one trail, oldest first: the chain is checked across their boundaries.
    const lines: string[] = [];
    const origin: Array<{ file: string; first: number }> = [];
    for (const file of files) {
      origin.push({ file, first: lines.length + 1 });
      lines.push(...(await readLines(file)));
    }
    const where = (n: number): string => {
      let at = origin[0] ?? { file: files[0] ?? '', first: 1 };
      for (const o of origin) if (o.first <= n) at = o;
      return `${at.file}:${n - at.first + 1}`;
    };
    const result = verifyAuditLines(lines);
    const problems = result.problems.map((p) => ({ at: where(p.line), message: p.message }));
    if (values.json) {
      out.stdout(JSON.stringify({ valid: problems.length === 0, files, lines: result.lines, firstSeq: result.firstSeq, lastSeq: result.lastSeq, problems, notes: result.notes }));
    } else {
      for (const p of problems) out.stdout(`${p.at}: ${p.message}`);
      for (const note of result.notes) out.stdout(`note: ${note}`);
      out.stdout(
        problems.length === 0
          ? `${files.join(', ')}: ok (${result.lines} lines, seq ${result.firstSeq ?? '-'}..${result.lastSeq ?? '-'}, chain intact)`
          : `${files.join(', ')}: TAMPERED (${problems.length} problem${problems.length === 1 ? '' : 's'} in ${result.lines} lines)`,
      );
    }
    return problems.length === 0 ? 0 : 1;
  }
  if (sub !== 'tail') throw new CliError(`unknown audit command "${sub}" (audit verify | audit tail)`, 2);
  if (files.length > 1) throw new CliError('audit tail reads one file', 2);
  const file = files[0] ?? '';
  const decision = values.decision;
  if (decision !== undefined && decision !== 'allow' && decision !== 'deny') throw new CliError('--decision is allow or deny', 2);
  let since: number | undefined;
  if (values.since !== undefined) {
    const parsed = parseDuration(values.since);
    if (!parsed.ok) throw new CliError(`--since: ${parsed.error}`, 2);
    since = Date.now() - parsed.value;
  }
  const limit = values.lines === undefined ? 20 : Number(values.lines);
  if (!Number.isInteger(limit) || limit < 1) throw new CliError('-n needs a positive whole number', 2);
  const filter: TailFilter = { agent: values.agent, decision, since, limit };
  const show = (records: Array<Record<string, unknown>>): void => {
    for (const r of records) out.stdout(values.json ? JSON.stringify(r) : formatAuditRecord(r));
  };
  show(tailAudit(await readLines(file), filter));
  if (!values.follow) return 0;
  await followAudit(file, (lines) => show(tailAudit(lines, { ...filter, limit: Number.MAX_SAFE_INTEGER })));
  return 0;
}

/** Print lines appended to the file until SIGINT/SIGTERM; starts over when the file rotates. */
async function followAudit(file: string, onLines: (lines: string[]) => void): Promise<void> {
  let offset = (await stat(file)).size;
  let partial = '';
  let stopped = false;
  const stop = (): void => {
    stopped = true;
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  while (!stopped) {
    await new Promise((resolve) => setTimeout(resolve, 200));
    let size: number;
    try {
      size = (await stat(file)).size;
    } catch {
      continue; // between rotation's rename and the next write
    }
    if (size < offset) {
      offset = 0; // rotated: the new file starts over
      partial = '';
    }
    if (size === offset) continue;
    const handle = await open(file, 'r');
    try {
      const buffer = Buffer.alloc(size - offset);
      await handle.read(buffer, 0, buffer.length, offset);
      offset = size;
      const text = partial + buffer.toString('utf8');
      const lines = text.split('\n');
      partial = lines.pop() ?? '';
      onLines(lines.filter((l) => l !== ''));
    } finally {
      await handle.close();
    }
  }
}

