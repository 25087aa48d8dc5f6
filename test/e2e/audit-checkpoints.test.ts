// Issue 11: a cut-off tail of the audit trail is named by `audit verify` (signed checkpoint lines,
// and the last checkpoint kept in the state store), and verify streams: a 200,000-line file (which
// crashed it with "Maximum call stack size exceeded") verifies in one pass.
import t from 'tap';
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import { startUpstream } from '../helpers/gateway.js';
import { runCli, serveCli, writeConfig } from '../helpers/process.js';

const POLICY = (upstream: string): string =>
  ['backends:', '  svc:', `    upstream: ${upstream}`, '    scopes:', '      read: ["GET /items/:id"]', 'roles:', '  reader:', '    grants: [svc:read]', 'agents:', '  reader-01: { role: reader, owner: test }', ''].join('\n');

t.test('a cut tail is named with the number of lines missing; an untouched trail passes', async (t) => {
  const upstream = await startUpstream(t);
  const dir = t.testdir({ policies: { 'p.yaml': POLICY(upstream.url) } });
  const config = await writeConfig(dir, join(dir, 'policies'));
  const auditFile = join(dir, 'run', 'audit.jsonl');
  const cli = (...args: string[]) => runCli([...args, '--config', config]);
  const gw = await serveCli(t, ['serve', '--config', config]);
  const token = (await cli('token', '--agent', 'reader-01')).stdout.trim();
  for (let i = 0; i < 700; i += 50) {
    await Promise.all(
      Array.from({ length: 50 }, async (_, k) => {
        const res = await request(`${gw.url}/svc/items/${i + k}`, { headers: { authorization: `Bearer ${token}` } });
        await res.body.dump();
      }),
    );
  }
  t.equal(await gw.stop('SIGTERM'), 0);
  const text = await readFile(auditFile, 'utf8');
  const lines = text.split('\n').filter((l) => l !== '');
  const records = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  const checkpoints = records.filter((r) => r.kind === 'checkpoint');
  t.ok(checkpoints.length >= 1, `${checkpoints.length} checkpoint line(s)`);
  t.match(records[records.length - 1], { kind: 'checkpoint', kid: /^audit-/, sig: /^[A-Za-z0-9_-]{86}$/ }, 'shutdown writes a signed checkpoint last');
  const state = JSON.parse(await readFile(join(dir, 'run', 'state.json'), 'utf8')) as { auditCheckpoints: Record<string, { seq: number; hash: string }> };
  const stored = state.auditCheckpoints[auditFile];
  t.equal(stored?.seq, records[records.length - 1]?.seq, 'the state file holds the last checkpoint');
  t.equal(stored?.hash, createHash('sha256').update(lines[lines.length - 1] ?? '').digest('hex'));
  t.equal((await stat(join(dir, 'run', 'keys', 'audit-key.pem'))).mode & 0o777, 0o600, 'the audit key is private');

  const clean = await cli('audit', 'verify');
  t.equal(clean.code, 0, clean.stdout + clean.stderr);
  t.match(clean.stdout, /: ok \(\d+ lines, seq 1\.\.\d+, chain intact, \d+ checkpoint\(s\), ends at or after the stored checkpoint seq \d+\)/);

  const cases = [
    { name: 'the last line cut', cut: 1 },
    { name: '500 lines cut', cut: 500 },
  ];
  for (const c of cases) {
    await t.test(c.name, async (t) => {
      await writeFile(auditFile, `${lines.slice(0, lines.length - c.cut).join('\n')}\n`);
      const res = await cli('audit', 'verify');
      t.equal(res.code, 1, 'exit 1');
      t.match(res.stdout, new RegExp(`truncated: the trail ends at seq \\d+ but the gateway checkpointed seq \\d+ at \\S+: ${c.cut} line\\(s\\) missing at the end`));
      t.match(res.stdout, new RegExp(`TRUNCATED \\(${c.cut} line\\(s\\) missing at the end`));
      if (c.cut === 1) return;
      const json = JSON.parse((await cli('audit', 'verify', '--json')).stdout) as Record<string, unknown>;
      t.match(json, { valid: false, truncated: { missing: c.cut }, signaturesChecked: true });
    });
  }
  await t.test('a forged checkpoint line is named', async (t) => {
    const forged = lines.map((l, i) => (i === lines.length - 1 ? l.replace(/"sig":"./, (m) => (m.endsWith('A') ? m.slice(0, -1) + 'B' : m.slice(0, -1) + 'A')) : l));
    await writeFile(auditFile, `${forged.join('\n')}\n`);
    const res = await cli('audit', 'verify');
    t.equal(res.code, 1);
    t.match(res.stdout, /checkpoint signature does not match: forged or edited/);
  });
  await writeFile(auditFile, text);
  const restored = await cli('audit', 'verify', '--json');
  t.match(JSON.parse(restored.stdout), { valid: true, problemCount: 0 }, 'the untouched trail passes again');
  await t.test('restarted on a cut file, the gateway continues after the checkpoint: the gap stays visible', async (t) => {
    await writeFile(auditFile, `${lines.slice(0, lines.length - 10).join('\n')}\n`);
    const again = await serveCli(t, ['serve', '--config', config]);
    const res = await request(`${again.url}/svc/items/1`, { headers: { authorization: `Bearer ${token}` } });
    await res.body.dump();
    t.equal(await again.stop('SIGTERM'), 0);
    t.match(again.output(), /audit file ends before its last checkpoint/);
    const verify = await cli('audit', 'verify');
    t.equal(verify.code, 1);
    t.match(verify.stdout, /10 line\(s\) removed before this line/);
  });
});

/** A valid chained trail of `count` proxy lines, written fast (no gateway needed). */
async function writeTrail(file: string, count: number, firstSeq = 1, firstPrev = '0'.repeat(64)): Promise<string> {
  const out = createWriteStream(file);
  let prev = firstPrev;
  let chunk = '';
  for (let seq = firstSeq; seq < firstSeq + count; seq++) {
    const line = JSON.stringify({ seq, prev, time: '2026-12-03T08:00:00.000Z', kind: 'proxy', requestId: `r-${seq}`, agent: 'reader-01', decision: 'allow', reason: 'none', status: 200, path: `/items/${seq}` });
    prev = createHash('sha256').update(line).digest('hex');
    chunk += `${line}\n`;
    if (chunk.length > 1 << 20) {
      if (!out.write(chunk)) await new Promise<void>((resolve) => out.once('drain', () => resolve()));
      chunk = '';
    }
  }
  await new Promise<void>((resolve, reject) => out.end(chunk, () => resolve()).once('error', reject));
  return prev;
}

t.test('verify streams 200,000 lines over rotated files (it used to overflow the stack)', async (t) => {
  const dir = t.testdir();
  const older = join(dir, 'audit.jsonl.1');
  const newer = join(dir, 'audit.jsonl');
  const prev = await writeTrail(older, 120_000);
  await writeTrail(newer, 80_000, 120_001, prev);
  const res = await runCli(['audit', 'verify', older, newer, '--json'], { timeoutMs: 100_000 });
  t.equal(res.code, 0, res.stderr);
  t.match(JSON.parse(res.stdout), { valid: true, lines: 200_000, firstSeq: 1, lastSeq: 200_000, problemCount: 0 });
  t.notMatch(res.stderr, /Maximum call stack/);
});
