// The REST role constraints on MCP tool calls, through the SDK client: a person's approval per call
// (tool + arguments, whatever the JSON-RPC id), and shadow mode (refusals counted and audited, the
// call let through).
import t from 'tap';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { startGateway } from '../helpers/gateway.js';
import { connectClient, MCP_POLICY, startToolUpstream, writeMcpPolicy } from '../helpers/mcp.js';

const POLICY = MCP_POLICY.replace('      admin: { tools: [change_config] }', '      admin:\n        tools: [change_config]\n        approval: required').replace(
  '  admin:\n    grants: [tools:admin]',
  '  admin:\n    grants: [tools:admin]\n  shadow:\n    grants: [tools:reply]\n    enforce: false',
).replace('agents:\n', 'agents:\n  shadow-agent-01: { role: shadow, owner: t }\n');

t.test('approval and shadow mode on tool calls', async (t) => {
  const upstream = await startToolUpstream(t);
  const gw = await startGateway(t, { policies: await writeMcpPolicy(t, POLICY), upstreams: { tools: upstream.url } });
  const endpoint = `${gw.url}/tools/mcp`;

  await t.test('a tool that needs approval: refused with an approval id, then passes once approved', async (t) => {
    const { client } = await connectClient(t, endpoint, await gw.token('admin-agent-01'));
    const before = upstream.posts.length;
    const first = await client.callTool({ name: 'change_config', arguments: { autoCloseDays: 3 } }).then(() => null, (e: unknown) => e);
    t.ok(first instanceof McpError);
    const data = (first as McpError).data as { reason: string; approvalId: string };
    t.equal(data.reason, 'approval_required');
    t.match(data.approvalId, /^apr_/);
    t.equal(upstream.posts.length, before, 'not forwarded');
    t.ok(await gw.gateway.store.decideApproval(data.approvalId, 'approved', 'test', null));
    // The SDK sends a new JSON-RPC id; the approval covers the tool and its arguments.
    const approved = await connectClient(t, endpoint, await gw.token('admin-agent-01'));
    const other = await approved.client.callTool({ name: 'change_config', arguments: { autoCloseDays: 4 } }, undefined, {}).then(() => null, (e: unknown) => e);
    t.ok(other instanceof McpError, 'other arguments need their own approval (no header: a new request)');
    const withHeader = await connectClient(t, endpoint, await gw.token('admin-agent-01'));
    // The header rides on every request of this client; initialize and lists do not use it.
    const transport = withHeader.transport as unknown as { _requestInit?: { headers?: Record<string, string> } };
    transport._requestInit = { headers: { ...(transport._requestInit?.headers ?? {}), 'x-agentgate-approval': data.approvalId } };
    const ok = await withHeader.client.callTool({ name: 'change_config', arguments: { autoCloseDays: 3 } });
    t.same(ok.content, [{ type: 'text', text: JSON.stringify({ autoCloseDays: 3 }) }], 'the approved call ran');
    const again = await withHeader.client.callTool({ name: 'change_config', arguments: { autoCloseDays: 3 } }).then(() => null, (e: unknown) => e);
    t.equal(((again as McpError).data as { reason: string }).reason, 'approval_invalid', 'an approval passes one call');
    const line = (await gw.auditLines()).find((l) => typeof l.approvalId === 'string');
    t.match(line, { decision: 'allow', approvalId: data.approvalId, rpc: [{ method: 'tools/call', tool: 'change_config' }] });
  });

  await t.test('shadow mode: a script outside the list passes, counted and audited', async (t) => {
    const { client } = await connectClient(t, endpoint, await gw.token('shadow-agent-01'));
    const result = await client.callTool({ name: 'reply_with_script', arguments: { ticketId: '1', script: 'free text' } });
    t.same(result.content, [{ type: 'text', text: JSON.stringify({ ticketId: '1', script: 'free text', sent: true }) }]);
    const line = (await gw.auditLines()).filter((l) => l.agent === 'shadow-agent-01' && Array.isArray(l.shadow)).at(-1);
    t.match(line, { decision: 'allow', shadow: [{ reason: 'out_of_scope' }], rpc: [{ tool: 'reply_with_script' }] });
    const denied = await client.callTool({ name: 'change_config', arguments: { autoCloseDays: 1 } }).then(() => null, (e: unknown) => e);
    t.equal(((denied as McpError).data as { reason: string }).reason, 'out_of_scope', 'shadow mode never grants a tool');
  });
});
