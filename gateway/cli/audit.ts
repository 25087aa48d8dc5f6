// `agentgate audit verify` and `agentgate audit tail`: read the audit trail's files; no running
// gateway needed.
import { open, stat } from 'node:fs/promises';
import { parseDuration } from '../policy/units.js';
import { readAuditLines } from '../telemetry/audit-log.js';
import { formatAuditRecord, tailAudit, type TailFilter } from '../telemetry/audit-verify.js';
import type { Settings } from '../config.js';
import { auditVerify, VerifyInputError } from './audit-verify.js';
import { settingsFrom } from './common.js';
import { CliError, parse, type Out } from './verb.js';

export async function auditCommand(args: readonly string[], out: Out): Promise<number> {
  const [sub, ...rest] = args;
  const { values, positionals } = parse(
    rest,
    {
      agent: { type: 'string' },
      decision: { type: 'string' },
      since: { type: 'string' },
      lines: { type: 'string', short: 'n' },
      follow: { type: 'boolean', short: 'f', default: false },
      key: { type: 'string', multiple: true },
    },
    true,
  );
  if (sub === undefined) throw new CliError('audit needs verify or tail (agentgate audit --help)', 2);
  if (sub !== 'verify' && values.key !== undefined) throw new CliError('--key is an option of audit verify', 2);
  const files = sub === 'verify' ? [] : positionals.length > 0 ? positionals : [(await settingsFrom(values.config)).audit.file];
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
    let settings: Settings | null = null;
    try {
      settings = await settingsFrom(values.config);
    } catch (error) {
      // Files named explicitly can be checked without a config (an auditor's copy).
      if (positionals.length === 0 || values.config !== undefined) throw error;
    }
    try {
      return await auditVerify({
        files: positionals,
        settings,
        keyFiles: values.key ?? [],
        json: values.json === true,
        stdout: out.stdout,
        progress: process.stderr.isTTY === true && values.json !== true ? (text) => process.stderr.write(text) : null,
      });
    } catch (error) {
      if (error instanceof VerifyInputError) throw new CliError(error.message);
      throw error;
    }
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

