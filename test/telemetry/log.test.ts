import { Writable } from 'node:stream';
import t from 'tap';
import { createLogger, type LogLevel } from '../../gateway/telemetry/log.js';

function capture(level: LogLevel = 'info') {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line !== '') lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { lines, log: createLogger({ level, stream, bindings: { service: 'agentgate' } }) };
}

t.test('one JSON object per line with level, time, message and fields', async (t) => {
  const { lines, log } = capture();
  log.info('listening', { agent: '127.0.0.1:8080' });
  t.equal(lines.length, 1);
  t.match(lines[0], { level: 'info', msg: 'listening', agent: '127.0.0.1:8080', service: 'agentgate', pid: process.pid });
  t.match(String(lines[0]?.time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
});

t.test('levels below the threshold are dropped, silent drops all', async (t) => {
  const warn = capture('warn');
  warn.log.info('hidden');
  warn.log.debug('hidden');
  warn.log.warn('shown');
  warn.log.error('shown too');
  t.same(warn.lines.map((l) => l.level), ['warn', 'error']);
  const silent = capture('silent');
  silent.log.error('nothing');
  t.equal(silent.lines.length, 0);
});

t.test('child loggers carry their bindings', async (t) => {
  const { lines, log } = capture();
  log.child({ requestId: 'r-1' }).warn('slow upstream', { backend: 'crm' });
  t.match(lines[0], { requestId: 'r-1', backend: 'crm', service: 'agentgate' });
});

t.test('credentials are redacted wherever a field name says they are one', async (t) => {
  const { lines, log } = capture();
  const jwt = 'eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl';
  const cases: [string, Record<string, unknown>][] = [
    ['top-level token', { token: jwt }],
    ['authorization', { authorization: `Bearer ${jwt}` }],
    ['nested headers', { headers: { authorization: `Bearer ${jwt}`, cookie: 'sid=1' } }],
    ['client secret', { client_secret: 'c2VjcmV0' }],
    ['nested secret', { credential: { secret: 'c2VjcmV0' } }],
    ['assertion', { client_assertion: jwt }],
    ['subject token', { request: { subject_token: jwt } }],
  ];
  for (const [name, fields] of cases) log.info(name, fields);
  t.equal(lines.length, cases.length);
  const text = JSON.stringify(lines);
  t.notMatch(text, /eyJ/, 'no JWT in any line');
  t.notMatch(text, /c2VjcmV0/, 'no secret in any line');
  t.notMatch(text, /sid=1/, 'no cookie');
  t.equal((lines[0] as { token?: unknown }).token, '[redacted]');
});

t.test('errors log name, message and code only', async (t) => {
  const { lines, log } = capture();
  const error = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
  log.error('upstream down', { error });
  t.same(lines[0]?.error, { name: 'Error', message: 'connect ECONNREFUSED', code: 'ECONNREFUSED' });
  t.notMatch(JSON.stringify(lines[0]), /at .*\.ts:\d+/, 'no stack');
});
