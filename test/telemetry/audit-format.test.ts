// `agentgate audit tail`'s one line per record: broker lines name their endpoint and grant, a
// refused target says so, and no field prints as a bare "-" where the record has a meaning.
import t from 'tap';
import { formatAuditRecord } from '../../gateway/telemetry/audit-verify.js';

const time = '2026-12-03T08:00:00.000Z';
const cases: ReadonlyArray<{ name: string; record: Record<string, unknown>; expect: RegExp; not?: RegExp }> = [
  { name: 'proxy allow', record: { time, kind: 'proxy', decision: 'allow', reason: 'none', agent: 'data-agent-01', method: 'GET', backend: 'bi', path: '/reports', status: 200 }, expect: /GET \/bi\/reports {2}200$/ },
  { name: 'refused target', record: { time, kind: 'proxy', decision: 'deny', reason: 'target_invalid', agent: 'marketing-agent-03', method: 'GET', backend: 'crm', path: null, status: 400 }, expect: /GET \/crm \(target refused\) {2}400$/, not: /\/crm-/ },
  { name: 'refused before a backend was known', record: { time, kind: 'proxy', decision: 'deny', reason: 'target_invalid', agent: null, method: 'GET', backend: null, path: null, status: 400 }, expect: /GET \(target refused\) {2}400$/ },
  { name: 'broker token', record: { time, kind: 'broker', decision: 'allow', reason: 'none', agent: 'data-agent-01', endpoint: 'token', grantType: 'client_credentials', status: 200 }, expect: /\/oauth\/token \(client_credentials\) {2}200$/, not: /- \/--/ },
  { name: 'broker refusal without status', record: { time, kind: 'broker', decision: 'deny', reason: 'invalid_client', agent: null, endpoint: 'introspect' }, expect: /\/oauth\/introspect {2}-$/, not: /- \/--/ },
  { name: 'admin', record: { time, kind: 'admin', decision: 'allow', reason: 'none', action: 'kill', agent: 'data-agent-01' }, expect: /kill data-agent-01/ },
];
for (const c of cases) {
  const line = formatAuditRecord(c.record);
  t.match(line, c.expect, c.name);
  if (c.not !== undefined) t.notMatch(line, c.not, `${c.name}: not the old rendering`);
}
