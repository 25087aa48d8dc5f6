// The README tour's MCP client session: the official SDK Client, through the gateway, as the
// support agent. `node dist/demo/mcp-session.js [GATEWAY_URL]` with SUPPORT_TOKEN in the environment.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpError } from '@modelcontextprotocol/sdk/types.js';

const gateway = process.argv[2] ?? 'http://127.0.0.1:8080';
const token = process.env.SUPPORT_TOKEN ?? '';
if (token === '') {
  process.stderr.write('set SUPPORT_TOKEN (agentgate demo prints it)\n');
  process.exit(1);
}
const transport = new StreamableHTTPClientTransport(new URL(`${gateway}/tickets-mcp/mcp`), { requestInit: { headers: { authorization: `Bearer ${token}` } } });
const client = new Client({ name: 'agentgate-tour', version: '1.0.0' });
const text = (result: Awaited<ReturnType<Client['callTool']>>): string => String((result.content as Array<{ text?: string }>)[0]?.text ?? '');

await client.connect(transport);
console.log('session    ', transport.sessionId);
console.log('tools/list ', (await client.listTools()).tools.map((t) => t.name).join(', '));
console.log('get_ticket ', text(await client.callTool({ name: 'get_ticket', arguments: { id: '1' } })));
console.log('reply      ', text(await client.callTool({ name: 'reply_with_script', arguments: { ticketId: '1', script: 'refund-status' } })));
for (const call of [
  { name: 'reply_with_script', arguments: { ticketId: '1', script: 'refund now!' } },
  { name: 'change_config', arguments: { autoCloseDays: 1 } },
]) {
  try {
    await client.callTool(call);
    console.log('UNEXPECTED: allowed', call.name);
  } catch (error) {
    const data = error instanceof McpError ? (error.data as { reason?: string; detail?: string }) : {};
    console.log('refused    ', call.name, error instanceof McpError ? error.code : '', data.reason ?? '', '-', data.detail ?? String(error));
  }
}
await transport.terminateSession();
await client.close();
console.log('session ended');
