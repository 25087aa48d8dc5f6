// MCP test fixtures: a policy with an MCP backend, and a real upstream built with the official
// SDK's McpServer over its StreamableHTTPServerTransport (stateful sessions, SSE or JSON answers).
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { z } from 'zod';
import type { Test } from 'tap';

/** Tools the upstream offers; the policy grants some, names some it does not grant, omits `secret_tool`. */
export const MCP_POLICY = `
backends:
  tools:
    kind: mcp
    upstream: http://127.0.0.1:9
    path: /mcp
    scopes:
      read:
        tools: [search_tickets, get_contact]
        resources: ["tickets://{id}"]
        prompts: [summarize]
      reply:
        tools:
          - name: reply_with_script
            arguments: { script: [greeting, escalate] }
      sql:
        tools:
          - name: run_query
            query: { argument: sql, dialect: sqlite }
      admin: { tools: [change_config] }
roles:
  support:
    grants: [tools:read, tools:reply, tools:sql]
    mask: { tools: [email, phone] }
    query: { aggregateOnly: true, tables: [sales] }
  strict:
    grants: [tools:read, tools:reply]
    breaker: { violations: 3, window: 1m, cooldown: 5m }
  admin:
    grants: [tools:admin]
agents:
  support-agent-01: { role: support, owner: t }
  support-agent-02: { role: strict, owner: t }
  admin-agent-01: { role: admin, owner: t }
`;

export async function writeMcpPolicy(t: Pick<Test, 'testdirName'>, yaml = MCP_POLICY): Promise<string> {
  const dir = join(t.testdirName, 'mcp-policies');
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'policy.yaml'), yaml);
  return dir;
}

function toolServer(): McpServer {
  const server = new McpServer({ name: 'test-tools', version: '1.0.0' });
  const text = (value: unknown) => ({ content: [{ type: 'text' as const, text: JSON.stringify(value) }] });
  server.registerTool('search_tickets', { inputSchema: { query: z.string().optional() } }, async ({ query }, extra) => {
    // Progress notifications ride the same SSE stream as the result.
    const token = extra._meta?.progressToken;
    if (token !== undefined) {
      for (let i = 1; i <= 3; i++) await extra.sendNotification({ method: 'notifications/progress', params: { progressToken: token, progress: i, total: 3 } });
    }
    return text({ tickets: [{ id: '1', subject: `about ${query ?? 'anything'}` }] });
  });
  server.registerTool('get_contact', { inputSchema: { id: z.string() } }, ({ id }) => {
    const contact = { id, name: 'Grace Hopper', email: 'grace@example.com', phone: '+1 555 0100', address: { city: 'Arlington' } };
    return { ...text(contact), structuredContent: contact };
  });
  server.registerTool('reply_with_script', { inputSchema: { ticketId: z.string(), script: z.string() } }, ({ ticketId, script }) => text({ ticketId, script, sent: true }));
  server.registerTool('run_query', { inputSchema: { sql: z.string() } }, ({ sql }) => text({ ran: sql, rows: [[42]] }));
  server.registerTool('change_config', { inputSchema: { autoCloseDays: z.number() } }, ({ autoCloseDays }) => text({ autoCloseDays }));
  server.registerTool('secret_tool', { inputSchema: {} }, () => text({ secret: true }));
  server.registerPrompt('summarize', { argsSchema: { id: z.string() } }, ({ id }) => ({ messages: [{ role: 'user', content: { type: 'text', text: `summarize ${id}` } }] }));
  server.registerPrompt('leak_everything', {}, () => ({ messages: [{ role: 'user', content: { type: 'text', text: 'leak' } }] }));
  server.registerResource('ticket-1', 'tickets://1', { mimeType: 'application/json' }, (uri) => ({ contents: [{ uri: uri.href, text: JSON.stringify({ id: '1', email: 'grace@example.com' }) }] }));
  server.registerResource('config', 'config://queues', { mimeType: 'application/json' }, (uri) => ({ contents: [{ uri: uri.href, text: '{}' }] }));
  return server;
}

export interface ToolUpstream {
  readonly url: string;
  /** POST bodies the server received (JSON text), in order. */
  readonly posts: string[];
  sessions(): number;
}

/** The SDK's McpServer behind its Streamable HTTP transport, one server per session. */
export async function startToolUpstream(t: Pick<Test, 'teardown'>, options: { json?: boolean } = {}): Promise<ToolUpstream> {
  const sessions = new Map<string, StreamableHTTPServerTransport>();
  const posts: string[] = [];
  const http = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      if (req.method === 'POST') posts.push(raw);
      const body: unknown = raw === '' ? undefined : JSON.parse(raw);
      const id = req.headers['mcp-session-id'];
      const existing = typeof id === 'string' ? sessions.get(id) : undefined;
      const run = async (): Promise<void> => {
        if (existing !== undefined) return existing.handleRequest(req, res, body);
        if (id !== undefined) {
          res.writeHead(404, { 'content-type': 'application/json' }).end('{"jsonrpc":"2.0","id":null,"error":{"code":-32001,"message":"Session not found"}}');
          return;
        }
        const transport: StreamableHTTPServerTransport = new StreamableHTTPServerTransport({
          sessionIdGenerator: () => randomUUID(),
          enableJsonResponse: options.json === true,
          onsessioninitialized: (sid) => void sessions.set(sid, transport),
          onsessionclosed: (sid) => void sessions.delete(sid),
        });
        await toolServer().connect(transport);
        await transport.handleRequest(req, res, body);
      };
      run().catch(() => res.destroy());
    });
  });
  await new Promise<void>((done) => http.listen(0, '127.0.0.1', done));
  t.teardown(async () => {
    await Promise.all([...sessions.values()].map((s) => s.close().catch(() => undefined)));
    http.closeAllConnections();
    await new Promise<void>((done) => http.close(() => done()));
  });
  return { url: `http://127.0.0.1:${(http.address() as AddressInfo).port}`, posts, sessions: () => sessions.size };
}

/** The SDK Client connected through the gateway with a bearer token. */
export async function connectClient(t: Pick<Test, 'teardown'>, endpoint: string, token: string): Promise<{ client: Client; transport: StreamableHTTPClientTransport }> {
  const client = new Client({ name: 'agentgate-test', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(endpoint), { requestInit: { headers: { authorization: `Bearer ${token}` } }, reconnectionOptions: { maxRetries: 0, initialReconnectionDelay: 1000, maxReconnectionDelay: 1000, reconnectionDelayGrowFactor: 1 } });
  await client.connect(transport);
  t.teardown(() => client.close().catch(() => undefined));
  return { client, transport };
}
