// RequestAbort: the runner's per-request abort that replaces an AbortController on the hot path.
// What the stages rely on: listeners run once, in order, on the first abort only; a listener added
// after the abort never runs; a removed one never runs; the reason is kept; abortSignalOf gives
// undici a standard AbortSignal that follows it.
import t from 'tap';
import { RequestAbort, abortSignalOf } from '../gateway/context.js';

t.test('listeners run once, in order, with the first reason kept', async (t) => {
  const signal = new RequestAbort();
  const calls: string[] = [];
  const object = { handleEvent: () => calls.push('object') };
  signal.addEventListener('abort', () => calls.push('first'));
  signal.addEventListener('abort', object);
  signal.addEventListener('abort', object); // added twice: still called once, as EventTarget does
  t.equal(signal.aborted, false);
  t.equal(signal.reason, undefined);
  const reason = new Error('killed');
  signal.abort(reason);
  signal.abort(new Error('second'));
  t.same(calls, ['first', 'object']);
  t.equal(signal.aborted, true);
  t.equal(signal.reason, reason, 'the first reason stays');
});

t.test('a listener removed before, or added after, the abort never runs', async (t) => {
  const signal = new RequestAbort();
  let removed = 0;
  let late = 0;
  const listener = (): void => void removed++;
  signal.addEventListener('abort', listener);
  signal.removeEventListener('abort', listener);
  signal.removeEventListener('abort', () => undefined); // unknown: nothing happens
  signal.abort('gone');
  signal.addEventListener('abort', () => void late++);
  t.equal(removed, 0);
  t.equal(late, 0);
});

t.test('a failing listener neither stops the others nor the aborter', async (t) => {
  const signal = new RequestAbort();
  let after = 0;
  signal.addEventListener('abort', () => {
    throw new Error('listener bug');
  });
  signal.addEventListener('abort', () => void after++);
  const reported = new Promise<unknown>((resolve) => process.once('uncaughtException', resolve));
  t.doesNotThrow(() => signal.abort('x'));
  t.equal(after, 1);
  t.match(await reported, { message: 'listener bug' }, 'reported as an uncaught exception, like an EventTarget listener');
});

t.test('abortSignalOf follows the request, before and after its abort', async (t) => {
  const live = new RequestAbort();
  const follower = abortSignalOf(live);
  t.ok(follower instanceof AbortSignal);
  t.equal(follower.aborted, false);
  live.abort('client gone');
  t.equal(follower.aborted, true);
  t.equal(follower.reason, 'client gone');

  const dead = new RequestAbort();
  dead.abort('killed');
  const late = abortSignalOf(dead);
  t.equal(late.aborted, true);
  t.equal(late.reason, 'killed');

  const standard = new AbortController().signal;
  t.equal(abortSignalOf(standard), standard, 'an AbortSignal is used as it is');
});
