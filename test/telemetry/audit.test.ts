// The audit trail: a hash chain that names every edited, removed, inserted or reordered line,
// continues across restarts and rotations, and never loses a queued record.
import t from 'tap';
import { constants } from 'node:fs';
import { appendFile, readdir, readFile, readlink, stat, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { AuditUnavailableError, openAuditLog, readAuditLines, type AuditCheckpoint } from '../../gateway/telemetry/audit-log.js';
import { loadAuditKeys, openAuditSigner } from '../../gateway/telemetry/audit-key.js';
import { tailAudit, verifyAuditFiles, verifyAuditLines } from '../../gateway/telemetry/audit-verify.js';

function record(i: number, agent = 'marketing-agent-03') {
  return { time: new Date(Date.UTC(2026, 10, 22, 12, 0, i)).toISOString(), kind: 'admin' as const, requestId: `r${i}`, decision: i % 3 === 0 ? ('deny' as const) : ('allow' as const), reason: i % 3 === 0 ? 'out_of_scope' : 'none', agent, n: i };
}

async function trail(dir: string, count: number): Promise<string[]> {
  const file = join(dir, 'audit.jsonl');
  const log = await openAuditLog({ file });
  for (let i = 1; i <= count; i++) log.write(record(i));
  await log.close();
  return readAuditLines(file);
}

t.test('a clean trail verifies', async (t) => {
  const lines = await trail(t.testdir(), 30);
  t.equal(lines.length, 30);
  t.same(verifyAuditLines(lines), { lines: 30, firstSeq: 1, lastSeq: 30, problems: [], notes: [] });
});

t.test('each kind of tampering is named', async (t) => {
  const lines = await trail(t.testdir(), 30);
  const edit = (i: number) => lines.map((l, k) => (k === i ? l.replace('"allow"', '"deny"').replace('"deny","reason":"out_of_scope"', '"allow","reason":"none"') : l));
  const cases = [
    { name: 'an edited line', lines: edit(9), expect: [{ line: 10, message: /^edited/ }] },
    { name: 'a removed line', lines: lines.filter((_, k) => k !== 9), expect: [{ line: 10, message: /1 line\(s\) removed before this line \(seq jumps from 9 to 11\)/ }] },
    { name: 'two removed lines', lines: lines.filter((_, k) => k !== 9 && k !== 10), expect: [{ line: 10, message: /2 line\(s\) removed/ }] },
    { name: 'an inserted copy', lines: [...lines.slice(0, 10), lines[9] ?? '', ...lines.slice(10)], expect: [{ line: 11, message: /out of order or duplicated/ }] },
    { name: 'two lines swapped', lines: [...lines.slice(0, 9), lines[10] ?? '', lines[9] ?? '', ...lines.slice(11)], expect: [{ line: 10, message: /removed before/ }, { line: 11, message: /out of order/ }] },
    { name: 'a truncated line', lines: lines.map((l, k) => (k === 19 ? l.slice(0, 40) : l)), expect: [{ line: 20, message: /not valid JSON/ }] },
    { name: 'a forged line without chain fields', lines: [...lines.slice(0, 5), '{"time":"x","decision":"allow"}', ...lines.slice(5)], expect: [{ line: 6, message: /no seq\/prev/ }] },
    { name: 'the first line edited', lines: edit(0), expect: [{ line: 1, message: /^edited/ }] },
  ];
  for (const c of cases) {
    const result = verifyAuditLines(c.lines);
    t.match(result.problems, c.expect, c.name);
    t.ok(result.problems.length >= 1, `${c.name}: detected`);
  }
});

t.test('the chain continues across a restart and across rotations', async (t) => {
  const dir = t.testdir();
  const file = join(dir, 'audit.jsonl');
  const first = await openAuditLog({ file, maxBytes: 2000, keep: 20 });
  for (let i = 1; i <= 20; i++) first.write(record(i));
  await first.close();
  const second = await openAuditLog({ file, maxBytes: 2000, keep: 20 });
  for (let i = 21; i <= 40; i++) second.write(record(i));
  await second.close();
  const files = (await readdir(dir)).filter((f) => f.startsWith('audit.jsonl')).sort((a, b) => order(b) - order(a));
  t.ok(files.length > 2, `rotated into ${files.length} files`);
  const all: string[] = [];
  for (const f of files) all.push(...(await readAuditLines(join(dir, f))));
  t.equal(all.length, 40, 'no record lost');
  t.same(verifyAuditLines(all).problems, [], 'one unbroken chain');
  const newest = await readAuditLines(file);
  t.match(verifyAuditLines(newest).notes, [/continues a rotated file/]);
});

/** The open flags of the descriptor this process holds on `file`, from /proc (Linux), or null. */
async function openFlags(file: string): Promise<number | null> {
  for (const fd of await readdir('/proc/self/fd')) {
    const target = await readlink(`/proc/self/fd/${fd}`).catch(() => '');
    if (target !== file) continue;
    const flags = /^flags:\s+([0-7]+)$/m.exec(await readFile(`/proc/self/fdinfo/${fd}`, 'utf8'));
    return flags?.[1] === undefined ? null : parseInt(flags[1], 8);
  }
  return null;
}

// `fsync: batch` promises that an answered line is on disk: the file is opened O_DSYNC, so every
// write returns only once its data is (before a rotation too: the new file gets the same flags).
// `off` leaves syncing to the kernel. Read from the kernel's view of the descriptor.
t.test('fsync batch writes through to the disk (O_DSYNC); off does not', { skip: process.platform === 'linux' ? false : '/proc/self/fdinfo is Linux' }, async (t) => {
  const cases = [
    { fsync: 'batch', synced: true },
    { fsync: 'off', synced: false },
    { fsync: undefined, synced: true },
  ] as const;
  for (const c of cases) {
    const dir = t.testdir();
    const file = join(dir, 'audit.jsonl');
    const log = await openAuditLog({ file, maxBytes: 600, keep: 3, ...(c.fsync === undefined ? {} : { fsync: c.fsync }) });
    const before = await openFlags(file);
    for (let i = 1; i <= 10; i++) await log.append(record(i));
    const after = await openFlags(file);
    await log.close();
    t.ok((await readdir(dir)).includes('audit.jsonl.1'), `${c.fsync ?? 'default'}: the file rotated`);
    t.equal(((before ?? 0) & constants.O_DSYNC) !== 0, c.synced, `${c.fsync ?? 'default'}: O_DSYNC ${c.synced ? 'set' : 'not set'} at open`);
    t.equal(((after ?? 0) & constants.O_DSYNC) !== 0, c.synced, `${c.fsync ?? 'default'}: and on the file opened at rotation`);
    t.ok(before !== null && after !== null, 'the descriptor was found');
  }
});

t.test('backpressure, never drops', async (t) => {
  const file = join(t.testdir(), 'audit.jsonl');
  const log = await openAuditLog({ file, highWaterMark: 100 });
  let pressured = 0;
  for (let i = 1; i <= 5000; i++) {
    if (!log.write(record(i))) {
      pressured++;
      await log.drained();
    }
  }
  await log.close();
  t.ok(pressured > 0, 'the writer reported pressure');
  const lines = await readAuditLines(file);
  t.equal(lines.length, 5000);
  t.same(verifyAuditLines(lines).problems, []);
});

t.test('tail filters', async (t) => {
  const lines = await trail(t.testdir(), 30);
  t.equal(tailAudit(lines, { limit: 5 }).length, 5);
  t.ok(tailAudit(lines, { decision: 'deny', limit: 100 }).every((r) => r.decision === 'deny'));
  t.equal(tailAudit(lines, { decision: 'deny', limit: 100 }).length, 10);
  t.equal(tailAudit(lines, { agent: 'nobody', limit: 100 }).length, 0);
  t.equal(tailAudit(lines, { since: Date.UTC(2026, 10, 22, 12, 0, 25), limit: 100 }).length, 6);
});

function order(name: string): number {
  const m = /\.(\d+)$/.exec(name);
  return m === null ? 0 : Number(m[1]);
}

t.test('append resolves once the line is in the file, and chains signed checkpoints', async (t) => {
  const dir = t.testdir();
  const file = join(dir, 'audit.jsonl');
  const signer = await openAuditSigner(join(dir, 'keys'));
  const saved: AuditCheckpoint[] = [];
  const log = await openAuditLog({ file, signer, checkpointLines: 10, checkpoints: { load: async () => null, save: async (c) => void saved.push(c) } });
  for (let i = 1; i <= 25; i++) {
    await log.append(record(i));
    const lines = await readAuditLines(file);
    t.equal(JSON.parse(lines[lines.length - 1] ?? '{}').requestId ?? 'checkpoint', lines[lines.length - 1]?.includes('"kind":"checkpoint"') ? 'checkpoint' : `r${i}`);
  }
  await log.close();
  const lines = await readAuditLines(file);
  const kinds = lines.map((l) => (JSON.parse(l) as { kind: string }).kind);
  t.same(kinds.filter((k) => k === 'checkpoint').length, 3, 'after 10 and 20 lines, and at close');
  t.equal(kinds[kinds.length - 1], 'checkpoint', 'close ends with a checkpoint');
  t.same(saved.map((c) => c.seq), [11, 22, lines.length], 'each checkpoint reached the store once on disk');
  const keys = await loadAuditKeys([join(dir, 'keys', 'audit-key.pub.pem')]);
  const verified = await verifyAuditFiles([file], { keys, checkpoint: saved[saved.length - 1] ?? null });
  t.equal(verified.problemCount, 0);
  t.equal(verified.checkpoints, 3);
  // `--key` also takes the private key the checkpoints were signed with: the same kid, the same verdict.
  const fromPrivate = await loadAuditKeys([join(dir, 'keys', 'audit-key.pem')]);
  t.same([...fromPrivate.keys()], [...keys.keys()], 'the private key names the same kid as its public half');
  t.equal((await verifyAuditFiles([file], { keys: fromPrivate, checkpoint: saved[saved.length - 1] ?? null })).problemCount, 0);
});

t.test('the audit key: openers racing on an empty folder agree on one key, published whole', async (t) => {
  const dir = join(t.testdir(), 'keys');
  // Each opener finds no key, makes one and publishes it; a reader of a half-written file would
  // throw (not a PEM key), and two winners would give two kids.
  const signers = await Promise.all(Array.from({ length: 8 }, () => openAuditSigner(dir)));
  t.equal(new Set(signers.map((s) => s.kid)).size, 1, 'one key for all');
  t.same((await readdir(dir)).sort(), ['audit-key.pem', 'audit-key.pub.pem'], 'no temporary file left behind');
  t.equal((await stat(join(dir, 'audit-key.pem'))).mode & 0o777, 0o600, 'the private key is private');
  t.equal((await stat(join(dir, 'audit-key.pub.pem'))).mode & 0o777, 0o644, 'the public key is readable by an auditor');
  const keys = await loadAuditKeys([join(dir, 'audit-key.pub.pem')]);
  t.same([...keys.keys()], [signers[0]?.kid], 'the published public key is the one in use');
  // A later start reads it back.
  t.equal((await openAuditSigner(dir)).kid, signers[0]?.kid);
});

t.test('an unwritable file: appends are refused at once, the log says why, close gives up', async (t) => {
  // /dev/full answers every write with ENOSPC: a full disk without a disk.
  const dir = t.testdir();
  const file = join(dir, 'audit.jsonl');
  await symlink('/dev/full', file);
  const changes: Array<[boolean, string | null]> = [];
  const log = await openAuditLog({ file, retryMs: 20, onAvailability: (available, why) => changes.push([available, why]) });
  t.equal(log.available, true);
  const error = await log.append(record(1)).then(
    () => null,
    (e: unknown) => e,
  );
  t.type(error, AuditUnavailableError, 'the waiting append is refused');
  t.equal(log.available, false);
  t.match(log.unavailableReason, /^ENOSPC/);
  t.match(changes, [[false, /^ENOSPC/]]);
  await t.rejects(log.append(record(2)), AuditUnavailableError, 'a new append is refused without waiting');
  t.ok(log.writeErrors >= 1);
  await log.close(100);
});

t.test('a torn last line (a crash mid-batch on a full disk) is dropped at open and the chain continues', async (t) => {
  const dir = t.testdir();
  const file = join(dir, 'audit.jsonl');
  const warnings: string[] = [];
  const first = await openAuditLog({ file });
  for (let i = 1; i <= 5; i++) await first.append(record(i));
  await first.close();
  await appendFile(file, '{"seq":6,"prev":"abc","time":"2026-');
  const second = await openAuditLog({ file, onWarning: (message) => warnings.push(message) });
  await second.append(record(6));
  await second.close();
  t.match(warnings, [/torn line/]);
  const lines = await readAuditLines(file);
  t.equal(lines.length, 6);
  t.same(verifyAuditLines(lines).problems, [], 'no broken line, one chain');
});
