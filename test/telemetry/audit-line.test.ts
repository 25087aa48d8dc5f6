// The proxy line's own writer must write what JSON.stringify writes, byte for byte, whatever a
// request puts in it (a path, an agent id, an MCP message are the client's text): a difference
// would be a line that parses to something else than what was decided, or one that breaks JSON.
import t from 'tap';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeProxyRecord, type ProxyRecord } from '../../gateway/telemetry/audit-line.js';
import { openAuditLog, readAuditLines } from '../../gateway/telemetry/audit-log.js';
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

/** Test names carry code points, not the text (a raw U+2028 or NUL would garble the TAP stream). */
function codes(text: string): string {
  return text === '' ? 'the empty string' : [...text].map((c) => `U+${(c.codePointAt(0) ?? 0).toString(16).padStart(4, '0')}`).join(' ');
}

const rows: Array<{ name: string; record: ProxyRecord }> = [
  { name: 'an allowed call', record: proxy() },
  { name: 'a refusal with its detail', record: proxy({ decision: 'deny', reason: 'out_of_scope', reasonDetail: 'no scope grants GET /admin', status: 403, upstreamStatus: null }) },
  { name: 'a second line', record: proxy({ phase: 'end', reasonDetail: 'stream failed: ECONNRESET: socket hang up' }) },
  { name: 'shadow, approval and MCP messages', record: proxy({ shadow: [{ constraint: 'hours', rule: 'office' }], approvalId: 'apr-7', rpc: [{ id: 1, method: 'tools/call', tool: 'search "all"\n' }, { id: 'x\u0000', method: 'ping' }] }) },
  { name: 'numbers JSON writes its own way', record: proxy({ durationMs: 0.000001, status: 0, upstreamStatus: -0 }) },
  { name: 'large and non-finite numbers', record: proxy({ durationMs: 1e21, status: Number.NaN, upstreamStatus: Number.POSITIVE_INFINITY }) },
  ...HOSTILE.flatMap((text) => [
    { name: `path with ${codes(text)}`, record: proxy({ path: `/contacts/${text}` }) },
    { name: `agent, detail, ids of ${codes(text)}`, record: proxy({ agent: text, reasonDetail: text, requestId: text, remote: text }) },
  ]),
];

for (const row of rows) {
  t.test(row.name, async (t) => {
    t.equal(writeProxyRecord(row.record), JSON.stringify(row.record));
  });
}

t.test('every field of the type is written, in its order', async (t) => {
  // A field added to ProxyRecord but not to the template would vanish from the line.
  const record = proxy({ phase: 'end', shadow: ['s'], approvalId: 'a', rpc: [{ id: 1 }] });
  t.same(Object.keys(JSON.parse(writeProxyRecord(record)) as object), Object.keys(record));
});


t.test('proxy lines through the log: chained, verified, and read back as the records', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'ag-line-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'audit.jsonl');
  const log = await openAuditLog({ file, fsync: 'off' });
  const records = rows.map((r) => r.record);
  await Promise.all(records.map((r) => log.append(r)));
  await log.close();
  const lines = await readAuditLines(file);
  t.equal(verifyAuditLines(lines).problems.length, 0, 'the chain holds');
  t.same(lines.map((l) => { const { seq: _seq, prev: _prev, ...rest } = JSON.parse(l) as Record<string, unknown>; return rest; }), records.map((r) => JSON.parse(JSON.stringify(r)) as unknown));
});
