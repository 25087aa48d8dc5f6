// Compact revocation storage (state/revocations.ts): the open-addressing set on its own, with a
// pinned slot key so collisions, probe runs that wrap around the end and backward-shift deletion
// are built on purpose; then the same guarantees through the real memory store and its state file
// (restart, expiry on an injected clock, the version 1 file of earlier releases, corrupt tables).
import t from 'tap';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { RECORD_BYTES, RevocationSet } from '../../gateway/state/revocations.js';
import { openMemoryStore } from '../../gateway/state/memory.js';
import { StateFileError } from '../../gateway/state/errors.js';

const KEY = [0x1234_5678, 0x9abc_def0, 0x0fed_cba9, 0x8765_4321] as const;
const NOW = 1_900_000_000;

/** `count` distinct jtis whose first slot is `slot` in `set` (a search over a deterministic series). */
function collidingJtis(set: RevocationSet, slot: number, count: number, prefix: string): string[] {
  const out: string[] = [];
  for (let i = 0; out.length < count; i++) if (set.slotOf(`${prefix}-${i}`) === slot) out.push(`${prefix}-${i}`);
  return out;
}

t.test('the set: collisions, wrap-around, expiry and deletion', async (t) => {
  interface Case {
    readonly name: string;
    /** Slot the colliding jtis share. */
    readonly slot: (capacity: number) => number;
    /** Expiry (seconds after NOW) of each colliding jti, in insertion order. */
    readonly lifetimes: readonly number[];
    /** Seconds after NOW at which the sweep runs and lookups are made. */
    readonly at: number;
  }
  const cases: Case[] = [
    { name: 'three on one slot, none expired', slot: () => 3, lifetimes: [60, 60, 60], at: 0 },
    { name: 'the first of a run expires: the later ones shift up and stay found', slot: () => 5, lifetimes: [10, 60, 60], at: 30 },
    { name: 'the middle of a run expires', slot: () => 7, lifetimes: [60, 10, 60], at: 30 },
    { name: 'the last of a run expires', slot: () => 2, lifetimes: [60, 60, 10], at: 30 },
    { name: 'a run that wraps past the last slot, its first entry expired', slot: (c) => c - 1, lifetimes: [10, 60, 60, 60], at: 30 },
    { name: 'a run that wraps, every other entry expired', slot: (c) => c - 2, lifetimes: [10, 60, 10, 60, 10], at: 30 },
    { name: 'all of a run expired', slot: () => 0, lifetimes: [10, 10, 10], at: 30 },
  ];
  for (const c of cases) {
    await t.test(c.name, async (t) => {
      const set = new RevocationSet({ slotKey: KEY });
      const slot = c.slot(set.capacity);
      const jtis = collidingJtis(set, slot, c.lifetimes.length + 1, c.name);
      const absent = jtis.pop() as string;
      jtis.forEach((jti, i) => set.add(jti, NOW + (c.lifetimes[i] as number), NOW));
      t.equal(set.capacity, 16, 'no growth: the run stays in one small table');
      const now = NOW + c.at;
      // Sweep the whole table: expired entries are deleted, not just hidden.
      set.sweep(now, set.capacity * 2);
      const live = c.lifetimes.filter((l) => l > c.at).length;
      t.equal(set.size, live, 'expired entries deleted by the sweep');
      jtis.forEach((jti, i) => t.equal(set.has(jti, now), (c.lifetimes[i] as number) > c.at, `${jti} ${(c.lifetimes[i] as number) > c.at ? 'still revoked' : 'expired'}`));
      t.equal(set.has(absent, now), false, 'a jti on the same slot that was never revoked is not found');
    });
  }
});

t.test('the set: what add accepts and refuses', async (t) => {
  const cases: ReadonlyArray<{ name: string; exp: number; revokedAt: number | null }> = [
    { name: 'an expiry in the future', exp: NOW + 60, revokedAt: NOW + 59 },
    { name: 'an expiry now (already over)', exp: NOW, revokedAt: null },
    { name: 'an expiry in the past', exp: NOW - 1, revokedAt: null },
    { name: 'expiry 0', exp: 0, revokedAt: null },
    { name: 'a negative expiry', exp: -5, revokedAt: null },
    { name: 'NaN', exp: Number.NaN, revokedAt: null },
    { name: 'a fractional expiry is rounded up (never shortened)', exp: NOW + 0.5, revokedAt: NOW + 0.9 },
    { name: 'past 2106 is kept as long as the table can say', exp: 2 ** 40, revokedAt: 0xffff_fffe },
  ];
  for (const c of cases) {
    const set = new RevocationSet();
    set.add('jti', c.exp, NOW);
    t.equal(set.size, c.revokedAt === null ? 0 : 1, `${c.name}: ${c.revokedAt === null ? 'not stored' : 'stored'}`);
    if (c.revokedAt !== null) t.equal(set.has('jti', c.revokedAt), true, `${c.name}: revoked until its expiry`);
  }
  const set = new RevocationSet();
  set.add('jti', NOW + 100, NOW);
  set.add('jti', NOW + 10, NOW);
  t.equal(set.has('jti', NOW + 50), true, 'a later revocation with an earlier expiry does not shorten the first');
  t.equal(set.size, 1, 'the same jti twice is one entry');
  set.add('jti', NOW + 200, NOW);
  t.equal(set.has('jti', NOW + 150), true, 'a later expiry extends it');
});

t.test('the set: growth keeps every entry, and purges the expired ones first', async (t) => {
  const set = new RevocationSet({ slotKey: KEY });
  for (let i = 0; i < 5000; i++) set.add(`grow-${i}`, NOW + (i % 2 === 0 ? 10 : 1000), NOW);
  t.equal(set.size, 5000);
  t.ok(set.capacity >= 5000 / 0.75, `capacity ${set.capacity} keeps the load at or under 3/4`);
  let found = 0;
  for (let i = 0; i < 5000; i++) if (set.has(`grow-${i}`, NOW)) found++;
  t.equal(found, 5000, 'every entry found after the rehashes');
  t.equal(set.has('grow-5000', NOW), false);
  // Half of them expire; inserting more rebuilds without them instead of growing past them.
  const later = NOW + 100;
  const capacity = set.capacity;
  for (let i = 0; i < 2000; i++) set.add(`more-${i}`, later + 1000, later);
  t.equal(set.size, 2500 + 2000, 'the insertions swept every expired entry away');
  t.ok(set.capacity <= capacity, `no growth needed (capacity ${capacity} -> ${set.capacity})`);
  for (let i = 1; i < 5000; i += 2) if (!set.has(`grow-${i}`, later)) t.fail(`grow-${i} lost`);
  for (let i = 0; i < 2000; i++) if (!set.has(`more-${i}`, later)) t.fail(`more-${i} lost`);
  t.equal(set.has('grow-0', later), false, 'an expired entry is gone');
  set.purge(NOW + 5000);
  t.equal(set.size, 0, 'purge after every expiry empties it');
  t.equal(set.capacity, 16, 'and shrinks it');
});

t.test('the set: records round-trip, and a torn record buffer is refused whole', async (t) => {
  const a = new RevocationSet();
  for (let i = 0; i < 100; i++) a.add(`rt-${i}`, NOW + 60 + i, NOW);
  a.add('expired', NOW + 1, NOW);
  const bytes = a.toBuffer(NOW + 2);
  t.equal(bytes.length, 100 * RECORD_BYTES, 'expired entries are not written');
  const b = new RevocationSet();
  t.equal(b.addBuffer(bytes, NOW + 2), true);
  for (let i = 0; i < 100; i++) t.equal(b.has(`rt-${i}`, NOW + 59 + i), true);
  t.equal(b.has(`rt-0`, NOW + 60), false, 'with its expiry');
  const c = new RevocationSet();
  t.equal(c.addBuffer(bytes.subarray(0, bytes.length - 1), NOW), false);
  t.equal(c.size, 0, 'nothing added from a torn buffer');
});

t.test('through the memory store: survives a restart, expires on the clock, no jti on disk', async (t) => {
  const dir = t.testdir();
  const file = join(dir, 'state.json');
  let now = NOW * 1000;
  const clock = { now: () => now };
  const store = await openMemoryStore({ clock, file });
  for (let i = 0; i < 2000; i++) await store.revoke(`tok-${i}`, NOW + (i < 1000 ? 60 : 3600));
  t.equal(store.isRevoked('tok-0'), true);
  t.equal(store.isRevoked('tok-1999'), true);
  t.equal(store.isRevoked('tok-2000'), false);
  await store.close();
  const text = await readFile(file, 'utf8');
  t.notMatch(text, /tok-1/, 'the state file holds digests, not token ids');
  t.match(JSON.parse(text), { version: 2, revocations: {} });

  const reopened = await openMemoryStore({ clock, file });
  let revoked = 0;
  for (let i = 0; i < 2000; i++) if (reopened.isRevoked(`tok-${i}`)) revoked++;
  t.equal(revoked, 2000, 'every revocation in force after the restart');
  now = (NOW + 61) * 1000;
  t.equal(reopened.isRevoked('tok-0'), false, 'expired with its token');
  t.equal(reopened.isRevoked('tok-1000'), true, 'the longer one still holds');
  await reopened.revoke('after', NOW + 3600);
  await reopened.close();
  const bytes = Buffer.from((JSON.parse(await readFile(file, 'utf8')) as { revocationTable: string }).revocationTable, 'base64');
  t.equal(bytes.length, 1001 * RECORD_BYTES, 'the expired ones are not written again');
});

t.test('through the memory store: a version 1 state file (jtis as keys) still loads', async (t) => {
  const dir = t.testdir();
  const file = join(dir, 'state.json');
  await writeFile(file, JSON.stringify({ version: 1, savedAt: 'x', kills: [], revocations: { old: NOW + 60, gone: NOW - 1 }, agentRevocations: {}, breakers: {} }));
  const store = await openMemoryStore({ clock: { now: () => NOW * 1000 }, file });
  t.equal(store.isRevoked('old'), true);
  t.equal(store.isRevoked('gone'), false);
  t.equal(store.isRevoked('other'), false);
  await store.revoke('new', NOW + 60);
  await store.close();
  const again = await openMemoryStore({ clock: { now: () => NOW * 1000 }, file });
  t.equal(again.isRevoked('old'), true, 'rewritten as version 2 with the old revocation in it');
  t.equal(again.isRevoked('new'), true);
  await again.close();
});

t.test('through the memory store: a state file with a bad revocation table stops the start', async (t) => {
  const base = { version: 2, savedAt: 'x', kills: [], revocations: {}, agentRevocations: {}, breakers: {} };
  const cases: ReadonlyArray<{ name: string; state: Record<string, unknown> }> = [
    { name: 'a table that is not a whole number of records', state: { ...base, revocationTable: Buffer.alloc(RECORD_BYTES + 1).toString('base64') } },
    { name: 'a table that is not base64', state: { ...base, revocationTable: '!!!!' } },
    { name: 'a table that is a number', state: { ...base, revocationTable: 42 } },
    { name: 'a table that is an array', state: { ...base, revocationTable: ['a'] } },
    { name: 'revocations that is null', state: { ...base, revocations: null } },
    { name: 'a version 1 revocation whose expiry is a string', state: { ...base, version: 1, revocations: { j: 'soon' } } },
    { name: 'version 3', state: { ...base, version: 3 } },
  ];
  for (const c of cases) {
    const dir = t.testdir();
    const file = join(dir, 'state.json');
    await writeFile(file, JSON.stringify(c.state));
    await t.rejects(openMemoryStore({ clock: { now: () => NOW * 1000 }, file }), StateFileError, c.name);
  }
  const dir = t.testdir();
  const file = join(dir, 'state.json');
  await writeFile(file, JSON.stringify({ ...base, revocationTable: '' }));
  const store = await openMemoryStore({ clock: { now: () => NOW * 1000 }, file });
  t.equal(store.isRevoked('x'), false, 'an empty table is fine');
  await store.close();
});
