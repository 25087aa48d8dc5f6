// One writer per memory-driver state file (state/lock.ts). A second writer — another gateway on
// the same file, or an offline CLI change beside a gateway whose admin socket it did not reach —
// would overwrite the first one's kills and revocations; it is refused instead. A holder that is
// provably gone (kill -9) is taken over at once; readers open the file without the lock.
import t from 'tap';
import { spawn } from 'node:child_process';
import { readdir, readFile, stat, utimes, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { systemClock as clock } from '../../gateway/clock.js';
import { lockStateFile } from '../../gateway/state/lock.js';
import { openMemoryStore } from '../../gateway/state/memory.js';
import { ReadOnlyStoreError, StateFileLockedError } from '../../gateway/state/errors.js';
import { SHIPPED_POLICIES } from '../helpers/root.js';
import { runCli, serveCli, writeConfig } from '../helpers/process.js';

const inAnHour = (): number => Math.floor(clock.now() / 1000) + 3600;

t.test('in one process: a second writer is refused, a reader is not, close releases', async (t) => {
  const file = join(t.testdirName, 'state.json');
  t.testdir();
  const a = await openMemoryStore({ clock, file });
  await a.kill({ agent: 'bot', reason: 'r', at: 1, by: 'op' });
  await t.rejects(openMemoryStore({ clock, file }), StateFileLockedError, 'a second writer on the same file');
  const reader = await openMemoryStore({ clock, file, readOnly: true });
  t.equal(reader.killRecord('bot')?.reason, 'r', 'a reader sees what the writer wrote');
  await t.rejects(reader.kill({ agent: 'x', reason: 'r', at: 1, by: 'op' }), ReadOnlyStoreError, 'and cannot change it');
  await t.rejects(reader.revoke('j', inAnHour()), ReadOnlyStoreError);
  await reader.close();
  await a.close();
  await t.rejects(stat(`${file}.lock`), { code: 'ENOENT' }, 'the lock is gone after close');
  const b = await openMemoryStore({ clock, file });
  t.equal(b.killRecord('bot')?.reason, 'r', 'the next writer starts from the file');
  await b.close();
});

t.test('left-over locks: taken when provably gone or stale, refused while refreshed', async (t) => {
  const dir = t.testdir();
  const boot = (await readFile('/proc/sys/kernel/random/boot_id', 'utf8').catch(() => '')).trim() || null;
  // A pid that surely is not running: a child that has exited.
  const deadPid = await new Promise<number>((resolve) => {
    const child = spawn(process.execPath, ['-e', '0']);
    child.once('exit', () => resolve(child.pid ?? 0));
  });
  const old = new Date(Date.now() - 3_600_000);
  // The parent's start time in clock ticks (field 22 of /proc/PID/stat): a holder that provably runs.
  const parentStat = await readFile(`/proc/${process.ppid}/stat`, 'utf8');
  const parentTicks = Number(parentStat.slice(parentStat.lastIndexOf(')') + 2).split(' ')[19]);
  const cases: { name: string; holder: Record<string, unknown>; ageMs: 'old' | 'fresh'; refresh?: boolean; staleMs?: number; taken: boolean }[] = [
    { name: 'same host, pid gone (kill -9), fresh heartbeat: taken at once', holder: { pid: deadPid, host: hostname(), boot, ticks: 1, started: 1 }, ageMs: 'fresh', taken: true },
    { name: 'our own pid from an earlier life (restarted container): taken at once', holder: { pid: process.pid, host: hostname(), boot, ticks: 1, started: 1 }, ageMs: 'fresh', taken: true },
    { name: 'same host, pid alive but a different process (reused pid): taken at once', holder: { pid: process.ppid, host: hostname(), boot, ticks: -5, started: 1 }, ageMs: 'fresh', taken: true },
    { name: 'same host, that very process alive: refused at once (no waiting for staleness)', holder: { pid: process.ppid, host: hostname(), boot, ticks: parentTicks, started: 1 }, ageMs: 'fresh', staleMs: 600_000, taken: false },
    { name: 'another host, heartbeat an hour old: taken', holder: { pid: 1, host: 'elsewhere', boot: 'x', ticks: 1, started: 1 }, ageMs: 'old', taken: true },
    { name: 'another host, heartbeat kept fresh: refused after waiting', holder: { pid: 1, host: 'elsewhere', boot: 'x', ticks: 1, started: 1 }, ageMs: 'fresh', refresh: true, taken: false },
    { name: 'another host stops refreshing: taken once stale', holder: { pid: 1, host: 'elsewhere', boot: 'x', ticks: 1, started: 1 }, ageMs: 'fresh', taken: true },
    { name: 'an unreadable lock, fresh: refused after waiting', holder: { garbage: true }, ageMs: 'fresh', refresh: true, taken: false },
    { name: 'an unreadable lock, old: taken', holder: { garbage: true }, ageMs: 'old', taken: true },
  ];
  for (const [i, c] of cases.entries()) {
    await t.test(c.name, async (t) => {
      const file = join(dir, `state-${i}.json`);
      await writeFile(`${file}.lock`, JSON.stringify(c.holder));
      if (c.ageMs === 'old') await utimes(`${file}.lock`, old, old);
      const refresher = c.refresh === true ? setInterval(() => void utimes(`${file}.lock`, new Date(), new Date()).catch(() => undefined), 50) : null;
      try {
        const opening = lockStateFile(file, { heartbeatMs: 100, staleMs: c.staleMs ?? 400 });
        if (c.taken) {
          const lock = await opening;
          t.match(JSON.parse(await readFile(`${file}.lock`, 'utf8')), { pid: process.pid, host: hostname() }, 'the lock is ours now');
          await lock.release();
        } else {
          await t.rejects(opening, StateFileLockedError);
          t.same(JSON.parse(await readFile(`${file}.lock`, 'utf8')), c.holder, 'the holder keeps its lock');
        }
      } finally {
        if (refresher !== null) clearInterval(refresher);
      }
    });
  }
});

t.test('real processes: a second gateway and an offline CLI change are refused; after kill -9 the file is taken over', async (t) => {
  const dir = t.testdir({ a: {}, b: {} });
  const configA = await writeConfig(join(dir, 'a'), SHIPPED_POLICIES);
  const stateFile = join(dir, 'a', 'run', 'state.json');
  const configB = await writeConfig(join(dir, 'b'), SHIPPED_POLICIES, { state: `{ driver: memory, file: ${JSON.stringify(stateFile)} }` });
  const first = await serveCli(t, ['serve', '--config', configA]);
  const killed = await runCli(['kill', 'marketing-agent-03', '--reason', 'drill', '--config', configA]);
  t.equal(killed.code, 0, `kill through the first gateway: ${killed.stderr}`);

  const second = await runCli(['serve', '--config', configB], { timeoutMs: 60_000 });
  t.equal(second.code, 1, 'a second gateway on the same state file does not start');
  t.match(second.stderr, new RegExp(`state file .*state\\.json is in use by process ${String(first.child.pid)} on `), 'and says who holds it');

  // Config B's admin socket has no gateway behind it, so the CLI goes offline: onto A's file.
  const offline = await runCli(['credentials', 'issue', 'marketing-agent-03', '--config', configB]);
  t.not(offline.code, 0, 'an offline change beside a running gateway is refused');
  t.match(offline.stderr, /is in use by process/);
  t.notMatch(await readFile(stateFile, 'utf8'), /clientSecrets":\[[^\]]*marketing-agent-03/, 'and no secret reached the state file');
  for (const name of (await readdir(join(dir, 'a', 'run'))).filter((n) => n.startsWith('state.json.wal.'))) {
    t.notMatch(await readFile(join(dir, 'a', 'run', name), 'utf8'), /"op":"secret"/, `nor its journal ${name}`);
  }

  const explained = await runCli(['explain', '--config', configB, '--token', 'not-a-token', 'GET', '/crm/contacts']);
  t.notMatch(explained.stderr, /in use by/, 'a reader (explain) is not held back by the lock');

  await first.stop('SIGKILL');
  const third = await serveCli(t, ['serve', '--config', configB]);
  t.pass('after kill -9 the next gateway takes the file over at once');
  const agents = await runCli(['agents', '--json', '--config', configB]);
  t.match(agents.stdout, /drill/, 'with the kill the first gateway wrote');
  t.equal(await third.stop(), 0);
  await t.rejects(stat(`${stateFile}.lock`), { code: 'ENOENT' }, 'a clean stop releases the lock');
});
