// The bench's audited floor (`bare-proxy.js UPSTREAM AUDIT_FILE`): a proxy that checks nothing but
// keeps AgentGate's write-ahead audit. Its figure is only worth reporting if it really writes one
// chained line per call, at the call's status, before the call is answered.
import t from 'tap';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { PATHS } from '../../bench/config.js';
import { startBackend, startBareProxy } from '../../bench/rig.js';
import { readAuditLines } from '../../gateway/telemetry/audit-log.js';
import { runCli } from '../helpers/process.js';

t.test('the audited bare proxy: one chained line per call, in the file when its answer arrives', async (t) => {
  const dir = t.testdir();
  const file = join(dir, 'audit.jsonl');
  const backend = await startBackend();
  t.teardown(() => backend.stop());
  const floor = await startBareProxy(backend.url, file);
  t.teardown(() => floor.stop());

  const calls = [
    { method: 'GET' as const, path: PATHS.small, body: undefined },
    // The request body streams through to the backend, which counts it.
    { method: 'POST' as const, path: PATHS.upload, body: 'a'.repeat(1024) },
    { method: 'GET' as const, path: PATHS.large, body: undefined },
    // Many chunks: the upstream is paused at its head and resumed once the line is written.
    { method: 'GET' as const, path: `${PATHS.download}?bytes=3000000`, body: undefined },
  ];
  const call = async (base: string, c: (typeof calls)[number]): Promise<{ status: number; text: string }> => {
    const answer = await request(`${base}${c.path}`, { method: c.method, ...(c.body === undefined ? {} : { body: c.body, headers: { 'content-type': 'application/octet-stream' } }) });
    return { status: answer.statusCode, text: await answer.body.text() };
  };
  for (const [i, c] of calls.entries()) {
    const direct = await call(backend.url, c);
    const proxied = await call(floor.url, c);
    t.equal(proxied.status, 200, `${c.method} ${c.path}: the backend's answer`);
    t.ok(proxied.text === direct.text && direct.text.length > 0, `${c.method} ${c.path}: the whole body, as the backend sends it (${proxied.text.length} of ${direct.text.length} bytes)`);
    // Read as soon as the answer is in: the line was written before the head went out.
    const lines = (await readAuditLines(file)).map((l) => JSON.parse(l) as Record<string, unknown>);
    t.equal(lines.length, i + 1, `${c.method} ${c.path}: its line is in the file when its answer arrives`);
    t.match(lines[i], { seq: i + 1, kind: 'proxy', decision: 'allow', method: c.method, path: c.path, status: 200, upstreamStatus: 200 });
  }

  const verified = await runCli(['audit', 'verify', file, '--json']);
  t.equal(verified.code, 0, `the floor's trail verifies as AgentGate's does: ${verified.stdout}${verified.stderr}`);
  t.match(JSON.parse(verified.stdout), { lines: calls.length });
});

t.test('the audited bare proxy: clients that leave mid-answer give their upstream connection back', async (t) => {
  const dir = t.testdir();
  const backend = await startBackend();
  t.teardown(() => backend.stop());
  const floor = await startBareProxy(backend.url, join(dir, 'audit.jsonl'));
  t.teardown(() => floor.stop());
  // More clients than the floor's pool has upstream connections (256), each gone after the head
  // of a body too large to pass unpaused: a connection kept paused for a departed client would
  // leave none for the call after them.
  const client = new Agent({ connections: 8 });
  t.teardown(() => client.destroy());
  // Bounded: with the connections all held, a call would wait for its head forever.
  const within = <T>(call: Promise<T>): Promise<T | 'no answer in 20 s'> => {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'no answer in 20 s'>((resolve) => (timer = setTimeout(resolve, 20_000, 'no answer in 20 s')));
    return Promise.race([call, late]).finally(() => clearTimeout(timer));
  };
  for (let i = 0; i < 260; i++) {
    const answer = await within(request(`${floor.url}${PATHS.download}?bytes=8000000`, { dispatcher: client }));
    if (answer === 'no answer in 20 s') {
      t.fail(`call ${i + 1} got ${answer}: upstream connections were kept for clients that left`);
      return;
    }
    answer.body.destroy();
  }
  t.pass('260 clients left mid-answer, each was answered');
  const after = await within(request(`${floor.url}${PATHS.small}`).then(async (a) => ({ status: a.statusCode, length: (await a.body.text()).length })));
  t.match(after, { status: 200 }, 'a call after them is answered');
});
