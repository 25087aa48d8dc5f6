// Issue 5: under 20,000 requests over 64 connections the audit holds exactly one line per request,
// with the status the client got and a gap-free sequence. In a file of its own (it used to share
// audit.test.ts with the process tests) so that neither comes near tap's timeout on a busy machine.
import t from 'tap';
import { startGateway, startUpstream } from '../helpers/gateway.js';
import { join } from 'node:path';
import { load, POLICY } from '../helpers/audit-load.js';

t.test('20,000 requests with concurrency: exactly one audit line each', async (t) => {
  const upstream = await startUpstream(t);
  const dir = t.testdir({ policies: { 'p.yaml': POLICY(upstream.url) } });
  const gw = await startGateway(t, { policies: join(dir, 'policies') });
  const tokens = [await gw.token('reader-01'), await gw.token('reader-02'), 'forged.token.value'];
  const answered = await load(gw.url, 20_000, 64, (i) => tokens[i % 3] ?? '');
  t.equal(answered.length, 20_000, 'every request answered');
  const all = await gw.auditLines({ checkpoints: true });
  const lines = all.filter((l) => l.kind === 'proxy');
  t.equal(lines.length, 20_000, 'one proxy line per request');
  const ids = new Set(lines.map((l) => String(l.requestId)));
  t.equal(ids.size, 20_000, 'no request audited twice');
  t.ok(
    answered.every((a) => ids.has(a.id)),
    'every answered request id is in the audit',
  );
  const byId = new Map(lines.map((l) => [String(l.requestId), l]));
  const mismatched = answered.filter((a) => byId.get(a.id)?.status !== a.status);
  t.equal(mismatched.length, 0, 'the audited status is the status the client got');
  t.same(
    all.map((l) => l.seq),
    all.map((_, i) => i + 1),
    'sequence numbers are gap-free (checkpoint lines take their place in the chain)',
  );
});
