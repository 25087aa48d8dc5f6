// A supervisor may stop the gateway the moment it says it listens: SIGTERM (or SIGINT) right
// after the "listening" line is a clean shutdown (exit 0, "shutting down" logged, the state
// file's lock released), never the signal's default action. The handlers used to be installed
// only after the line was printed.
import t from 'tap';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { SHIPPED_POLICIES } from '../helpers/root.js';
import { serveCli, writeConfig } from '../helpers/process.js';

const cases: { name: string; signal: NodeJS.Signals }[] = [
  { name: 'SIGTERM at once', signal: 'SIGTERM' },
  { name: 'SIGINT at once', signal: 'SIGINT' },
  { name: 'SIGTERM at once, again (same state file)', signal: 'SIGTERM' },
];

t.test('a signal right after the listening line is a clean stop', async (t) => {
  const dir = t.testdir({});
  const config = await writeConfig(dir, SHIPPED_POLICIES);
  for (const c of cases) {
    await t.test(c.name, async (t) => {
      const gw = await serveCli(t, ['serve', '--config', config]);
      t.equal(await gw.stop(c.signal), 0, 'exit 0, not killed by the signal');
      t.match(gw.output(), new RegExp(`"signal":"${c.signal}"[^\\n]*"msg":"shutting down"`), 'the shutdown is logged');
      await t.rejects(stat(join(dir, 'run', 'state.json.lock')), { code: 'ENOENT' }, 'the state lock is released');
    });
  }
});
