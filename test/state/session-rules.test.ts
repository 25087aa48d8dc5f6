// The session, use-count and activity rules both drivers share (state/rules/sessions.ts), driven
// directly: each case is a sequence of steps at given times and the states it must give.
import t from 'tap';
import { ActivityTable, createSweeper, MAX_TRACKED_TOKENS, SessionTable, UseCounts } from '../../gateway/state/rules/sessions.js';

const HOUR = 3600;
const at = (seconds: number): number => seconds * 1000;

t.test('sessions: live, idle, ended, and reads never change anything', async (t) => {
  type Step = [op: 'check' | 'read' | 'end' | 'open-single', sid: string, atSeconds: number, expect?: string];
  const cases: { name: string; idleMs: number | null; steps: Step[] }[] = [
    { name: 'an unknown session is live and is tracked by the write path', idleMs: null, steps: [['check', 's1', 0, 'live'], ['check', 's1', 10, 'live']] },
    { name: 'idle past idleMs: the read reports idle and leaves it, the write ends it', idleMs: 60_000, steps: [['check', 's1', 0, 'live'], ['read', 's1', 61, 'idle'], ['read', 's1', 62, 'idle'], ['check', 's1', 62, 'idle'], ['check', 's1', 63, 'ended'], ['read', 's1', 63, 'ended']] },
    { name: 'a use inside idleMs keeps it alive', idleMs: 60_000, steps: [['check', 's1', 0, 'live'], ['check', 's1', 59, 'live'], ['check', 's1', 118, 'live'], ['check', 's1', 179, 'idle']] },
    { name: 'a read does not count as a use', idleMs: 60_000, steps: [['check', 's1', 0, 'live'], ['read', 's1', 59, 'live'], ['check', 's1', 61, 'idle']] },
    { name: 'an ended session stays ended even if never seen here', idleMs: null, steps: [['end', 's9', 0], ['read', 's9', 1, 'ended'], ['check', 's9', 1, 'ended']] },
    { name: 'single session: opening s2 ends s1, not s2', idleMs: null, steps: [['check', 's1', 0, 'live'], ['open-single', 's2', 1], ['check', 's1', 2, 'ended'], ['check', 's2', 2, 'live']] },
  ];
  for (const c of cases) {
    await t.test(c.name, async (t) => {
      const ended = new Map<string, number>();
      const table = new SessionTable(() => ended);
      for (const [op, sid, seconds, expect] of c.steps) {
        const now = at(seconds);
        if (op === 'end') table.markEnded(sid, HOUR);
        else if (op === 'open-single') {
          table.endOthers('bot', sid);
          table.track(sid, 'bot', HOUR, now);
        } else {
          const before = [...ended];
          const checked = table.check(sid, 'bot', HOUR, c.idleMs, op === 'check', { now: () => now });
          t.equal(checked.state, expect, `${op} ${sid} at ${seconds}s`);
          if (op === 'read') t.same([...ended], before, 'a read ends nothing');
          if (checked.endedNow) t.ok(ended.has(sid), 'ending is recorded in the durable part');
        }
      }
    });
  }
});

t.test('sessions: an ended record never moves back, and expired ones are swept', async (t) => {
  const ended = new Map<string, number>();
  const table = new SessionTable(() => ended);
  table.markEnded('s1', 200);
  table.markEnded('s1', 100);
  t.equal(ended.get('s1'), 200, 'the later expiry wins');
  table.track('s2', 'bot', 50, 0);
  table.sweep(150);
  t.ok(ended.has('s1'), 'not yet expired');
  t.equal(table.check('s2', 'bot', 50, null, false, { now: () => at(150) }).state, 'live', 'a swept session is unknown again (and live for a read)');
  t.same(table.endOthers('bot', null), [], 'nothing left to end for the agent');
  table.sweep(201);
  t.notOk(ended.has('s1'), 'swept once expired');
});

t.test('use counts: at most maxUses, counts from elsewhere never move back', async (t) => {
  const uses = new UseCounts();
  const taken = [1, 2, 3, 4].map(() => uses.take('j', 3, at(HOUR)));
  t.same(taken, [true, true, true, false]);
  t.equal(uses.of('j'), 3);
  uses.note('j', 1, at(HOUR));
  t.equal(uses.of('j'), 3, 'a lower count heard later does not lower it');
  uses.note('k', 5, at(HOUR));
  t.equal(uses.take('k', 5, at(HOUR)), false, 'a count heard from elsewhere is honoured');
  t.same([...uses.live(at(HOUR) - 1)].map(([jti]) => jti).sort(), ['j', 'k']);
  t.same([...uses.live(at(HOUR))], [], 'expired counts are not live');
  uses.sweep(at(HOUR));
  t.equal(uses.of('j'), 0, 'swept');
});

t.test('activity: live tokens exclude expired and revoked ones, and all after an agent revocation', async (t) => {
  const table = new ActivityTable();
  t.same(table.activity('bot', 0, () => false, false), { lastSeen: null, liveTokens: 0 });
  table.touch('bot', 'a', 100, at(1));
  table.touch('bot', 'b', 10, at(2));
  table.touch('bot', 'c', 100, at(3));
  t.same(table.activity('bot', at(5), () => false, false), { lastSeen: at(3), liveTokens: 3 });
  t.same(table.activity('bot', at(11), (jti) => jti === 'c', false), { lastSeen: at(3), liveTokens: 1 }, 'b expired, c revoked');
  t.same(table.activity('bot', at(11), () => false, true), { lastSeen: at(3), liveTokens: 0 }, 'agent revoked');
  for (let i = 0; i < MAX_TRACKED_TOKENS + 10; i++) table.touch('many', `t${i}`, 100, at(1));
  t.equal(table.activity('many', at(2), () => false, false).liveTokens, MAX_TRACKED_TOKENS, 'tracking is bounded');
});

t.test('the sweeper runs once every N insertions', async (t) => {
  let runs = 0;
  const inserted = createSweeper(() => runs++, 3);
  for (let i = 0; i < 10; i++) inserted();
  t.equal(runs, 3);
});
