// The memory driver's write-ahead journal (state/wal.ts): a change is one appended line, synced
// before it is acknowledged, replayed after the snapshot at start; the snapshot is rewritten in
// the background. The contract under a crash: whatever was acknowledged is there after a restart.
// Tested with real kill -9 of a process in the middle of changes and compactions, and of a real
// gateway in the middle of admin kills.
import t from 'tap';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdir, readdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { adminCall } from '../../gateway/admin/client.js';
import { systemClock as clock } from '../../gateway/clock.js';
import { openMemoryStore, resetStateFile } from '../../gateway/state/memory.js';
import { StateFileError } from '../../gateway/state/errors.js';
import { listWals, parseWal, WalCorruptError, walPath } from '../../gateway/state/wal.js';
import { ROOT } from '../helpers/root.js';
import { serveCli, writeConfig } from '../helpers/process.js';

const inAnHour = (): number => Math.floor(clock.now() / 1000) + 3600;

t.test('parseWal: only a cut last line is dropped; a bad line before others is corruption', async (t) => {
  const cases: ReadonlyArray<{ name: string; text: string; records?: number; torn?: boolean; corrupt?: number }> = [
    { name: 'empty', text: '', records: 0, torn: false },
    { name: 'two whole lines', text: '{"op":"a"}\n{"op":"b"}\n', records: 2, torn: false },
    { name: 'last line without its newline', text: '{"op":"a"}\n{"op":"b"}', records: 1, torn: true },
    { name: 'last line cut mid-JSON', text: '{"op":"a"}\n{"op":"ki', records: 1, torn: true },
    { name: 'last complete line of zeros (power cut)', text: '{"op":"a"}\n\0\0\0\0\n', records: 1, torn: true },
    { name: 'a bad line with a line after it', text: '{"op":"a"}\n{"op"\n{"op":"b"}\n', corrupt: 2 },
    { name: 'a JSON line that is not an object', text: '{"op":"a"}\n[1,2]\n', corrupt: 2 },
    { name: 'a JSON null line', text: 'null\n{"op":"a"}\n', corrupt: 1 },
    { name: 'a cut line, then a bad complete line', text: 'xx\n{"op":"a"}\n{"op', corrupt: 1 },
  ];
  for (const c of cases) {
    if (c.corrupt !== undefined) {
      t.throws(() => parseWal(c.text, 'j'), new WalCorruptError('j', c.corrupt), c.name);
      continue;
    }
    const parsed = parseWal(c.text, 'j');
    t.equal(parsed.records.length, c.records, `${c.name}: records`);
    t.equal(parsed.torn !== null, c.torn, `${c.name}: cut line`);
  }
});

t.test('through the store: journal lines, replay, compaction, clean stop', async (t) => {
  const dir = t.testdir();
  const file = join(dir, 'state.json');
  const store = await openMemoryStore({ clock, file, compactBytes: 1 << 30 });
  t.match(JSON.parse(await readFile(file, 'utf8')), { version: 3, journal: 1 }, 'a fresh start writes a snapshot that names its journal (version 3: an older release refuses it)');
  await store.kill({ agent: 'bot', reason: 'drill', at: 1, by: 'op' });
  await store.revoke('tok-1', inAnHour());
  const lines = (await readFile(walPath(file, 1), 'utf8')).split('\n').filter((l) => l !== '');
  t.equal(lines.length, 2, 'one line per change');
  t.notMatch(lines.join('\n'), /tok-1/, 'the journal holds digests, not token ids');
  t.notMatch(await readFile(file, 'utf8'), /drill/, 'the snapshot is not rewritten per change');
  await store.close();
  t.same((await listWals(file)).map((w) => w.gen), [], 'a clean stop leaves no journal');
  t.match(await readFile(file, 'utf8'), /drill/, 'and a snapshot with everything in it');
  t.match(JSON.parse(await readFile(file, 'utf8')), { version: 2 }, 'as version 2, which an older release reads');

  const reader = await openMemoryStore({ clock, file, readOnly: true });
  t.equal(reader.killRecord('bot')?.reason, 'drill');
  t.equal(reader.isRevoked('tok-1'), true);
  await reader.close();

  // Background compaction: a small threshold, many changes, every one still there after.
  const again = await openMemoryStore({ clock, file, compactBytes: 512 });
  await Promise.all(Array.from({ length: 300 }, (_, i) => again.revoke(`many-${i}`, inAnHour())));
  const reading = await openMemoryStore({ clock, file, readOnly: true });
  let seen = 0;
  for (let i = 0; i < 300; i++) if (reading.isRevoked(`many-${i}`)) seen++;
  t.equal(seen, 300, 'a reader beside the writer sees every acknowledged change (snapshot + journals)');
  await reading.close();
  // The rewrite runs in the background: wait for it (with a deadline).
  const deadline = Date.now() + 10_000;
  let gen = 0;
  while ((gen = (JSON.parse(await readFile(file, 'utf8')) as { journal: number }).journal) <= 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
  t.ok(gen > 2, `the snapshot was rewritten in the background (generation ${gen})`);
  await again.close();
});

t.test('a bad journal stops the start; --reset-state moves it aside with the file', async (t) => {
  const cases: ReadonlyArray<{ name: string; text: string }> = [
    { name: 'a bad line before another', text: '{"op":"kill","record":{"agent":"a","reason":"r","at":1,"by":"o"}}\nnope\n{"op":"revive","agent":"a"}\n' },
    { name: 'an unknown op', text: '{"op":"grant-everything","agent":"a"}\n' },
    { name: 'a kill without an agent', text: '{"op":"kill","record":{"reason":"r","at":1}}\n' },
    { name: 'a revocation digest of three words', text: '{"op":"revoke","d":[1,2,3],"exp":99999999999}\n' },
    { name: 'a revocation digest word out of range', text: '{"op":"revoke","d":[1,2,3,4294967296],"exp":99999999999}\n' },
    { name: 'a secret without its hash', text: '{"op":"secret","record":{"id":"s","agent":"a","createdAt":1}}\n' },
    { name: 'a checkpoint with a bad hash', text: '{"op":"checkpoint","record":{"file":"/a","seq":1,"hash":"zz","time":"t"}}\n' },
  ];
  for (const c of cases) {
    const dir = t.testdir();
    const file = join(dir, 'state.json');
    await writeFile(file, JSON.stringify({ version: 2, journal: 3, savedAt: 'x', kills: [], revocations: {}, agentRevocations: {}, breakers: {} }));
    await writeFile(walPath(file, 3), c.text);
    await t.rejects(openMemoryStore({ clock, file }), StateFileError, c.name);
    await t.rejects(openMemoryStore({ clock, file, readOnly: true }), StateFileError, `${c.name} (read-only)`);
    const aside = await resetStateFile(file, clock);
    t.ok(aside !== null && (await readdir(dir)).some((n) => n.endsWith('.wal.3') && n.includes('corrupt')), `${c.name}: moved aside with its journal`);
    const fresh = await openMemoryStore({ clock, file });
    t.equal(fresh.kills().length, 0, `${c.name}: starts empty after the reset`);
    await fresh.close();
  }
  const dir = t.testdir();
  const file = join(dir, 'state.json');
  await writeFile(file, JSON.stringify({ version: 2, journal: -1, savedAt: 'x', kills: [], revocations: {}, agentRevocations: {}, breakers: {} }));
  await t.rejects(openMemoryStore({ clock, file }), StateFileError, 'a negative journal generation');
  await writeFile(file, JSON.stringify({ version: 3, savedAt: 'x', kills: [], revocations: {}, agentRevocations: {}, breakers: {} }));
  await t.rejects(openMemoryStore({ clock, file }), StateFileError, 'version 3 without its journal generation');
});

t.test('a journal write that fails (disk full) is never acknowledged; the next change starts a new generation', { skip: process.platform !== 'linux' && 'needs /dev/full' }, async (t) => {
  const dir = t.testdir();
  const file = join(dir, 'state.json');
  const store = await openMemoryStore({ clock, file, compactBytes: 1 });
  // The next generation a background rewrite opens fails every write with ENOSPC.
  await symlink('/dev/full', walPath(file, 2));
  // One change longer than the snapshot starts a background rewrite, which switches to generation 2.
  await store.kill({ agent: 'fill', reason: 'x'.repeat(1024), at: 0, by: 'op' });
  const deadline = Date.now() + 10_000;
  while ((JSON.parse(await readFile(file, 'utf8')) as { journal: number }).journal < 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
  t.equal((JSON.parse(await readFile(file, 'utf8')) as { journal: number }).journal, 2, 'a background rewrite switched to the failing journal');
  await t.rejects(store.kill({ agent: 'first', reason: 'disk full', at: 1, by: 'op' }), { code: 'ENOSPC' }, 'the kill is not acknowledged as durable');
  t.equal(store.killRecord('first')?.reason, 'disk full', 'but it is in force in memory (fail closed)');
  await store.kill({ agent: 'second', reason: 'after', at: 2, by: 'op' });
  const gens = (await listWals(file)).map((w) => w.gen);
  t.ok(gens.length > 0 && gens.every((g) => g > 2), `the next change went to a new journal generation, the failed one is gone (${gens.join(', ')})`);
  const text = await readFile(file, 'utf8');
  t.match(text, /"first"/, 'and the snapshot written for it holds the kill the failed write lost');
  // A crash now (no close): a reader of the files sees both kills.
  const reader = await openMemoryStore({ clock, file, readOnly: true });
  t.equal(reader.killRecord('first')?.reason, 'disk full');
  t.equal(reader.killRecord('second')?.reason, 'after');
  await reader.close();
  await store.close();
});

t.test('a state file of the previous version (no journal) loads, and journals from there', async (t) => {
  const dir = t.testdir();
  const file = join(dir, 'state.json');
  await writeFile(file, JSON.stringify({ version: 2, savedAt: 'x', kills: [{ agent: 'old', reason: 'before', at: 1, by: 'op' }], revocations: {}, agentRevocations: {}, breakers: {} }));
  const store = await openMemoryStore({ clock, file });
  t.equal(store.killRecord('old')?.reason, 'before');
  await store.kill({ agent: 'new', reason: 'after', at: 2, by: 'op' });
  await store.close();
  const reopened = await openMemoryStore({ clock, file });
  t.equal(reopened.killRecord('old')?.reason, 'before');
  t.equal(reopened.killRecord('new')?.reason, 'after');
  await reopened.close();
});

// A child process changing state as fast as it can (kills, revocations, revives, client secrets)
// with a tiny compaction threshold, so kill -9 lands mid-append, mid-sync and mid-compaction. It
// prints `issue N` before change N and `ack N` once it resolved (pipes are written synchronously);
// every acknowledged change must be there after.
const CHILD = `
const [memory, file, round] = process.argv.slice(1);
const { openMemoryStore } = await import(memory);
const store = await openMemoryStore({ clock: { now: () => Date.now() }, file, compactBytes: 2048 });
const exp = Math.floor(Date.now() / 1000) + 3600;
let next = 0;
process.stdout.write('ready\\n');
async function lane() {
  for (;;) {
    const n = next++;
    const name = round + '-' + n;
    process.stdout.write('issue ' + n + '\\n');
    if (n % 4 === 0) await store.kill({ agent: 'a-' + name, reason: 'r', at: n, by: 'drill' });
    else if (n % 4 === 1) await store.revoke('tok-' + name, exp);
    else if (n % 4 === 2) await store.revive('a-' + round + '-' + (n - 2));
    else await store.saveClientSecret({ id: 's-' + name, agent: 'x', hash: 'h', createdAt: n, notAfter: null });
    process.stdout.write('ack ' + n + '\\n');
  }
}
for (let i = 0; i < 8; i++) lane();
`;

t.test('kill -9 mid-change and mid-compaction: every acknowledged change survives', async (t) => {
  const dir = t.testdir();
  const file = join(dir, 'state.json');
  const memory = join(ROOT, 'dist', 'gateway', 'state', 'memory.js');
  let compactions = 0;
  for (let round = 0; round < 6; round++) {
    const child = spawn(process.execPath, ['--input-type=module', '-e', CHILD, memory, file, String(round)], { stdio: ['ignore', 'pipe', 'inherit'] });
    const acked = new Set<number>();
    const issued = new Set<number>();
    let out = '';
    const ready = new Promise<void>((resolve, reject) => {
      child.stdout.setEncoding('utf8').on('data', (d: string) => {
        out += d;
        const lines = out.split('\n');
        out = lines.pop() ?? '';
        for (const l of lines) {
          if (l === 'ready') resolve();
          else if (l.startsWith('ack ')) acked.add(Number(l.slice(4)));
          else if (l.startsWith('issue ')) issued.add(Number(l.slice(6)));
        }
      });
      child.once('exit', (code) => reject(new Error(`child exited (${String(code)}) before it was ready`)));
    });
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    await ready;
    // A random moment: early rounds often land in the first appends, later ones mid-compaction.
    await new Promise((resolve) => setTimeout(resolve, 30 + Math.floor(Math.random() * 400)));
    child.kill('SIGKILL');
    await exited;
    const gens = (await listWals(file)).map((w) => w.gen);
    compactions = Math.max(compactions, ...gens);

    const store = await openMemoryStore({ clock, file });
    const lost: string[] = [];
    for (const n of acked) {
      const name = `${round}-${n}`;
      // A kill whose revive was issued may be lifted (the revive may have reached the disk unanswered).
      if (n % 4 === 0 && !issued.has(n + 2) && store.killRecord(`a-${name}`) === undefined) lost.push(`kill ${name}`);
      if (n % 4 === 1 && !store.isRevoked(`tok-${name}`)) lost.push(`revoke ${name}`);
      if (n % 4 === 2 && store.killRecord(`a-${round}-${n - 2}`) !== undefined) lost.push(`revive ${name}`);
      if (n % 4 === 3 && !store.clientSecrets('x').some((s) => s.id === `s-${name}`)) lost.push(`secret ${name}`);
    }
    t.same(lost, [], `round ${round}: ${acked.size} changes acknowledged before kill -9, none lost`);
    await store.close();
  }
  t.ok(compactions > 1, `the drill ran through compactions (journal generation ${compactions})`);
});

t.test('a real gateway killed with kill -9 mid-kills keeps every kill it answered', async (t) => {
  const dir = t.testdir({ policies: {} });
  const agents = Array.from({ length: 40 }, (_, i) => `drill-${String(i).padStart(2, '0')}`);
  await writeFile(
    join(dir, 'policies', 'policy.yaml'),
    ['backends:', '  svc:', '    upstream: http://127.0.0.1:9', '    scopes:', '      read: ["GET /items/:id"]', 'roles:', '  reader:', '    grants: [svc:read]', 'agents:', ...agents.map((a) => `  ${a}: { role: reader, owner: test }`), ''].join('\n'),
  );
  await mkdir(join(dir, 'gw'), { recursive: true });
  const config = await writeConfig(join(dir, 'gw'), join(dir, 'policies'));
  const socket = (/admin: +\{ socket: ("[^"]+") \}/.exec(await readFile(config, 'utf8')) as RegExpExecArray)[1] as string;
  const socketPath = JSON.parse(socket) as string;
  const answered = new Set<string>();
  for (let round = 0; round < 2; round++) {
    const gw = await serveCli(t, ['serve', '--config', config], { timeoutMs: 60_000 });
    let stopped = false;
    const lane = async (lane: number): Promise<void> => {
      for (let i = lane; !stopped && i < agents.length; i += 4) {
        const agent = agents[i] as string;
        // Revocations between the kills keep the journal busy with other lines.
        void adminCall(socketPath, 'POST', '/tokens/revoke', { jti: randomUUID(), operator: 'drill' }).catch(() => undefined);
        try {
          const res = await adminCall(socketPath, 'POST', `/agents/${agent}/kill`, { reason: `drill round ${round}`, operator: 'drill' });
          if (res.status === 200) answered.add(agent);
        } catch {
          return;
        }
      }
    };
    const lanes = Promise.all([0, 1, 2, 3].map((l) => lane(l + round)));
    // Stop once some kills were answered, at a random moment after.
    const deadline = Date.now() + 30_000;
    while (answered.size < 4 + round * 8 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
    await new Promise((resolve) => setTimeout(resolve, Math.floor(Math.random() * 50)));
    await gw.stop('SIGKILL');
    stopped = true;
    await lanes;
  }
  t.ok(answered.size >= 12, `${answered.size} kills answered before the crashes`);
  const gw = await serveCli(t, ['serve', '--config', config], { timeoutMs: 60_000 });
  const missing: string[] = [];
  for (const agent of answered) {
    const view = await adminCall(socketPath, 'GET', `/agents/${agent}`);
    if (view.body.killed === null || view.body.killed === undefined) missing.push(agent);
  }
  t.same(missing, [], 'every kill answered before a kill -9 is in force after the restart');
  t.equal(await gw.stop(), 0);
});
