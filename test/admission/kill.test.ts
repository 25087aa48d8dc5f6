// A kill stops the agent's calls in flight as soon as it is in force, not once it is durable: the
// fault it exists for is a disk that does not answer. Every thread of libuv's pool is held in
// open() of a FIFO with no writer, so the kill's journal write (a real memory store with its state
// file) cannot finish; the calls in flight must be stopped anyway, the next call refused, and the
// kill must still be written once the disk answers.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { closeSync, constants, openSync } from 'node:fs';
import { mkdir, open, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { createAdmission } from '../../gateway/admission/admission.js';
import { systemClock } from '../../gateway/clock.js';
import type { RequestContext } from '../../gateway/context.js';
import type { GatewayError } from '../../gateway/errors.js';
import { openMemoryStore } from '../../gateway/state/memory.js';
import { createLogger } from '../../gateway/telemetry/log.js';
import { createMetrics } from '../../gateway/telemetry/metrics.js';

/** Hold every thread of libuv's pool until `release` is called. */
async function holdThreadPool(dir: string): Promise<() => Promise<void>> {
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const fifos = Array.from({ length: Number(process.env.UV_THREADPOOL_SIZE ?? 4) }, (_, i) => join(dir, `hold-${i}.fifo`));
  for (const fifo of fifos) execFileSync('mkfifo', [fifo]);
  const holders = fifos.map((fifo) => open(fifo, 'r'));
  let released: Promise<void> | null = null;
  return () =>
    (released ??= (async () => {
      // A writer appearing lets each held open() return.
      for (const fifo of fifos) closeSync(openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK));
      for (const holder of await Promise.all(holders)) await holder.close();
    })());
}

t.test('a kill stops the calls in flight before its write is durable, and is written when the disk answers', async (t) => {
  // A folder of its own, emptied first: a state file from an earlier run would hold the kill.
  const dir = t.testdirName;
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const stateFile = join(dir, 'state.json');
  const store = await openMemoryStore({ clock: systemClock, file: stateFile });
  t.teardown(() => store.close());
  const admission = createAdmission({ store, metrics: createMetrics({ defaults: false }), log: createLogger({ level: 'silent' }), clock: systemClock });

  const stopped: GatewayError[] = [];
  const call = { principal: { agent: 'bot' } } as unknown as RequestContext;
  admission.track(call, { abort: (reason) => stopped.push(reason) });
  const other = { principal: { agent: 'someone-else' } } as unknown as RequestContext;
  admission.track(other, { abort: (reason) => stopped.push(reason) });
  t.equal(stopped.length, 0, 'nothing is stopped before the kill');

  const release = await holdThreadPool(join(dir, 'fifos'));
  t.teardown(release);
  let durable = false;
  const killed = admission.kill({ agent: 'bot', reason: 'leaked key', at: systemClock.now(), by: 'test' }).then((result) => {
    durable = true;
    return result;
  });
  t.equal(stopped.length, 1, 'the call in flight is stopped at once, with the disk held');
  t.match(stopped[0], { reason: 'agent_killed', reasonDetail: 'leaked key' });
  t.equal(store.killRecord('bot')?.reason, 'leaked key', 'the next call is refused: the kill is in force');
  const late = { principal: { agent: 'bot' } } as unknown as RequestContext;
  admission.track(late, { abort: (reason) => stopped.push(reason) });
  t.equal(stopped.length, 2, 'a call admitted meanwhile is stopped as it is tracked');
  // Turns of the event loop (timers need no thread of the pool): the write stays held.
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setTimeout(resolve, 10));
  t.notOk(durable, 'the answer waits for the durable write');

  await release();
  t.match(await killed, { sharing: 'shared', aborted: 1 });
  const journals = (await readdir(dir)).filter((name) => name.startsWith('state.json.wal.'));
  const written = (await Promise.all(journals.map((name) => readFile(join(dir, name), 'utf8')))).join('');
  t.match(written, /leaked key/, 'and the kill is in the state journal on disk');
});
