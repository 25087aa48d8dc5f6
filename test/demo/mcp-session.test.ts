// The README tour's MCP session (dist/demo/mcp-session.js, the SDK client) as a real process,
// through a real gateway in front of the demo's MCP server: what the tour prints is what happens.
import t from 'tap';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startDemoBackends } from '../../demo/backends.js';
import { ROOT, startGateway } from '../helpers/gateway.js';

const run = promisify(execFile);

t.test('the tour session: three tools listed, two calls, two refusals, session ended', async (t) => {
  const demo = await startDemoBackends();
  t.teardown(() => demo.close());
  const gw = await startGateway(t, { upstreams: demo.urls });
  const { stdout } = await run(process.execPath, [join(ROOT, 'dist', 'demo', 'mcp-session.js'), gw.url], { env: { ...process.env, SUPPORT_TOKEN: await gw.token('support-agent-01') }, timeout: 60_000 });
  const lines = stdout.trim().split('\n');
  t.match(lines[0], /^session {5}ag1\.[A-Za-z0-9_-]{43}\.[0-9a-f-]{36}$/, "the gateway's sealed id around the server's UUID");
  t.same(lines.slice(1), [
    'tools/list  search_tickets, get_ticket, reply_with_script',
    'get_ticket  {"id":"1","subject":"Refund for duplicate charge","customer":"Grace Hopper","queue":"billing","status":"open","priority":"high","opened":"2026-11-18","replies":[]}',
    'reply       {"ticketId":"1","reply":{"script":"refund-status","text":"Hello Grace Hopper, your refund is being processed and will arrive within 5 business days."}}',
    'refused     reply_with_script -32003 out_of_scope - field "script" must be one of: greeting, refund-status, escalate',
    'refused     change_config -32003 out_of_scope - tool "change_config" is not granted to this token',
    'session ended',
  ]);
  const tools = (await gw.auditLines()).filter((l) => l.backend === 'tickets-mcp').map((l) => [l.method, l.decision, l.reason, JSON.stringify(l.rpc ?? null)]);
  t.ok(tools.some(([m, d, r, rpc]) => m === 'POST' && d === 'deny' && r === 'out_of_scope' && String(rpc).includes('change_config')), 'the refusal is audited with its tool');
  t.ok(tools.some(([m, d]) => m === 'DELETE' && d === 'allow'), 'the session end is audited');
  t.equal(await run(process.execPath, [join(ROOT, 'dist', 'demo', 'mcp-session.js'), gw.url], { env: { ...process.env, SUPPORT_TOKEN: '' } }).then(() => 0, (e: { code?: number }) => e.code ?? -1), 1, 'no token: exit 1');
});
