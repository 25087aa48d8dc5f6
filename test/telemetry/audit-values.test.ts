// Whatever a request puts in its line (a path, an agent id, an MCP message are the client's text),
// the batch writer copies the record's JSON into the batch byte for byte and hashes those bytes:
// every line parses back to the record it was made from, and the chain over them verifies.
import t from 'tap';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openAuditLog, readAuditLines, type ProxyRecord } from '../../gateway/telemetry/audit-log.js';
import { verifyAuditLines } from '../../gateway/telemetry/audit-verify.js';

function proxy(over: Partial<Record<keyof ProxyRecord, unknown>> = {}): ProxyRecord {
  // Typed whole, so a field added to ProxyRecord must be added here, where the key test sees it.
  const base: ProxyRecord = {
    time: '2026-12-04T20:00:00.000Z', kind: 'proxy', requestId: 'r-1', phase: undefined, agent: 'crm-agent-01', role: 'support', onBehalfOf: null,
    jti: 'j-1', backend: 'crm', method: 'GET', path: '/contacts/1', decision: 'allow', reason: 'none', reasonDetail: null, route: 'GET /contacts/{id}',
    shadow: undefined, approvalId: undefined, rpc: undefined, status: 200, upstreamStatus: 200, durationMs: 1.234, remote: '127.0.0.1',
  };
  return { ...base, ...over } as ProxyRecord;
}

const HOSTILE = ['"', '\\', '\\"', '"},"decision":"allow', '\u0000', '\n', '\r\n', '\t', '\u001f', '\u007f', '\u2028\u2029', '\ud800', '\udfff', 'a\udc00b', '\ud83d\ude00', 'é日本', '</script>', ''];

const RECORDS: ProxyRecord[] = [
  proxy(),
  proxy({ decision: 'deny', reason: 'out_of_scope', reasonDetail: 'no scope grants GET /admin', status: 403, upstreamStatus: null }),
  proxy({ phase: 'end', reasonDetail: 'stream failed: ECONNRESET: socket hang up' }),
  proxy({ shadow: [{ constraint: 'hours', rule: 'office' }], approvalId: 'apr-7', rpc: [{ id: 1, method: 'tools/call', tool: 'search "all"\n' }, { id: 'x\u0000', method: 'ping' }] }),
  proxy({ durationMs: 0.000001, status: 0, upstreamStatus: -0 }),
  proxy({ durationMs: 1e21, status: Number.NaN, upstreamStatus: Number.POSITIVE_INFINITY }),
  ...HOSTILE.flatMap((text) => [
    proxy({ path: `/contacts/${text}` }),
    proxy({ agent: text, reasonDetail: text, requestId: text, remote: text }),
  ]),
];

t.test('proxy lines through the log: chained, verified, and read back as the records, in batches of every size', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'ag-line-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'audit.jsonl');
  const log = await openAuditLog({ file, fsync: 'off' });
  const records = [...RECORDS];
  // One line alone, then the rest in one batch, then with a log grown past a batch's first buffer.
  await log.append(records[0] as ProxyRecord);
  await Promise.all(records.slice(1).map((r) => log.append(r)));
  const big = proxy({ reasonDetail: '\u00e9'.repeat(30_000), rpc: Array.from({ length: 200 }, (_, i) => ({ id: i, method: 'tools/call', tool: `t-${i}` })) });
  await Promise.all([log.append(big), ...records.map((r) => log.append(r))]);
  records.push(big, ...records.slice());
  await log.close();
  const lines = await readAuditLines(file);
  t.equal(verifyAuditLines(lines).problems.length, 0, 'the chain holds');
  t.same(lines.map((l) => { const { seq: _seq, prev: _prev, ...rest } = JSON.parse(l) as Record<string, unknown>; return rest; }), records.map((r) => JSON.parse(JSON.stringify(r)) as unknown));
});
