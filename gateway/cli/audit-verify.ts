// `agentgate audit verify`: streams one trail (the rotated set of the config's audit file, or the
// files named, oldest first) through the chain check, checks checkpoint signatures with the audit
// public key, and compares the end of the trail with the state store's last checkpoint.
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import type { KeyObject } from 'node:crypto';
import { systemClock } from '../clock.js';
import type { Settings } from '../config.js';
import { readAuditCheckpoint } from '../state/index.js';
import { AUDIT_PUBLIC_KEY_FILE, loadAuditKeys } from '../telemetry/audit-key.js';
import { verifyAuditFiles, type FilesVerification, type KnownCheckpoint } from '../telemetry/audit-verify.js';

export interface VerifyCommandOptions {
  /** Files named on the command line (oldest first); empty: the config's audit file and its rotations. */
  readonly files: readonly string[];
  /** Settings of the config, or null when there is none (then no store checkpoint, no default key). */
  readonly settings: Settings | null;
  /** Public key files given with --key. */
  readonly keyFiles: readonly string[];
  readonly json: boolean;
  readonly stdout: (text: string) => void;
  /** Progress goes here when set (stderr on a terminal). */
  readonly progress: ((text: string) => void) | null;
}

/** `audit.jsonl.N ... audit.jsonl.1 audit.jsonl`: every rotated file that exists, oldest first. */
export async function rotatedSet(file: string): Promise<string[]> {
  const name = basename(file);
  const pattern = new RegExp(`^${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\.(\\d+)$`);
  const rotated = (await readdir(dirname(file)).catch(() => [] as string[]))
    .map((n) => ({ n, k: Number(pattern.exec(n)?.[1] ?? NaN) }))
    .filter((e) => Number.isInteger(e.k))
    .sort((a, b) => b.k - a.k)
    .map((e) => join(dirname(file), e.n));
  return [...rotated, file];
}

export class VerifyInputError extends Error {}

export async function auditVerify(options: VerifyCommandOptions): Promise<number> {
  const { settings } = options;
  const files = options.files.length > 0 ? [...options.files] : settings === null ? [] : await rotatedSet(settings.audit.file);
  for (const file of files) if (!existsSync(file)) throw new VerifyInputError(`no audit file at ${file}`);
  const notes: string[] = [];

  let keys: Map<string, KeyObject> | null = null;
  const keyFiles = [...options.keyFiles];
  if (keyFiles.length === 0 && settings !== null) {
    const beside = join(settings.issuer.keys, AUDIT_PUBLIC_KEY_FILE);
    if (existsSync(beside)) keyFiles.push(beside);
  }
  if (keyFiles.length > 0) {
    try {
      keys = await loadAuditKeys(keyFiles);
    } catch (error) {
      throw new VerifyInputError(`cannot read the audit key: ${(error as Error).message}`);
    }
  }

  // The store's checkpoint belongs to the config's audit file: it is compared only when the trail
  // verified ends with that file.
  let checkpoint: KnownCheckpoint | null = null;
  const last = files[files.length - 1];
  if (settings === null) {
    notes.push('no config: the state store checkpoint was not read, so a cut tail after the last checkpoint line is not detected');
  } else if (last !== undefined && resolve(last) === settings.audit.file) {
    try {
      checkpoint = await readAuditCheckpoint(settings.state, settings.audit.file, systemClock);
    } catch (error) {
      notes.push(`the state store checkpoint could not be read (${(error as Error).message}); a cut tail is not detected`);
    }
    if (checkpoint === null) notes.push('the state store holds no checkpoint for this file yet');
  } else {
    notes.push(`the trail does not end with ${settings.audit.file}: the state store checkpoint is not compared`);
  }

  const started = Date.now();
  const result: FilesVerification = await verifyAuditFiles(files, {
    keys,
    checkpoint,
    onProgress:
      options.progress === null
        ? undefined
        : (p) => options.progress?.(`\rverifying: ${p.lines} lines, ${mib(p.bytes)} of ${mib(p.totalBytes)} MiB (${Math.round((p.bytes / Math.max(1, p.totalBytes)) * 100)} %)`),
  });
  if (options.progress !== null) options.progress('\n');
  const where = (n: number): string => {
    let at = result.origins[0] ?? { file: files[0] ?? '', first: 1 };
    for (const o of result.origins) if (o.first <= n) at = o;
    return `${at.file}:${n - at.first + 1}`;
  };
  const problems = result.problems.map((p) => ({ at: where(p.line), message: p.message }));
  const allNotes = [...result.notes, ...notes];
  const valid = result.problemCount === 0;
  if (options.json) {
    options.stdout(
      JSON.stringify({
        valid,
        files,
        lines: result.lines,
        firstSeq: result.firstSeq,
        lastSeq: result.lastSeq,
        checkpoints: result.checkpoints,
        lastCheckpointSeq: result.lastCheckpointSeq,
        signaturesChecked: keys !== null,
        storeCheckpoint: checkpoint,
        truncated: result.truncation,
        problemCount: result.problemCount,
        problems,
        notes: allNotes,
        seconds: (Date.now() - started) / 1000,
      }),
    );
  } else {
    for (const p of problems) options.stdout(`${p.at}: ${p.message}`);
    if (result.problemCount > problems.length) options.stdout(`... and ${result.problemCount - problems.length} more problem(s)`);
    for (const note of allNotes) options.stdout(`note: ${note}`);
    const name = files.join(', ');
    if (valid) {
      options.stdout(`${name}: ok (${result.lines} lines, seq ${result.firstSeq ?? '-'}..${result.lastSeq ?? '-'}, chain intact, ${result.checkpoints} checkpoint(s)${checkpoint === null ? '' : `, ends at or after the stored checkpoint seq ${checkpoint.seq}`})`);
    } else if (result.truncation !== null && result.problemCount === 1) {
      options.stdout(`${name}: TRUNCATED (${result.truncation.missing} line(s) missing at the end; ${result.lines} lines present)`);
    } else {
      options.stdout(`${name}: TAMPERED (${result.problemCount} problem${result.problemCount === 1 ? '' : 's'} in ${result.lines} lines${result.truncation === null ? '' : `; ${result.truncation.missing} line(s) missing at the end`})`);
    }
  }
  return valid ? 0 : 1;
}

function mib(bytes: number): string {
  return (bytes / 1048576).toFixed(1);
}
