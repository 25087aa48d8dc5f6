// The demo's MCP server: the ticketing system's tools over Streamable HTTP, built with the official
// SDK's McpServer, one server instance per session as the SDK's examples do. Tools: search_tickets,
// get_ticket, reply_with_script, change_config; a `tickets://{id}` resource template and a
// `summarize_ticket` prompt. It trusts whoever reaches it: the gateway in front decides who may.
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { McpServer, ResourceTemplate } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { z } from 'zod';
import { QUEUE_CONFIG, SCRIPTS, TICKETS, type QueueConfig, type Ticket } from './data.js';

export interface DemoMcpOptions {
  readonly host?: string;
  readonly port?: number;
  /** Answer with JSON bodies instead of SSE streams (the transport allows both). */
  readonly jsonResponse?: boolean;
}

export interface DemoMcp {
  /** Base URL (no trailing slash); the endpoint is `${url}/mcp`. */
  readonly url: string;
  /** Sessions currently open. */
  readonly sessions: () => number;
  close(): Promise<void>;
}

interface TicketState {
  readonly tickets: Array<Ticket & { replies: Array<{ script: string; text: string }> }>;
  config: QueueConfig;
}

/** The tickets MCP server with the demo data (each call has its own copy). */
export function createTicketsMcpServer(state: TicketState): McpServer {
  const server = new McpServer({ name: 'agentgate-demo-tickets', version: '1.0.0' });
  const json = (value: unknown) => ({ content: [{ type: 'text' as const, text: JSON.stringify(value) }] });
  const notFound = (id: string) => ({ content: [{ type: 'text' as const, text: JSON.stringify({ error: `no ticket ${id}` }) }], isError: true });
  server.registerTool(
    'search_tickets',
    { description: 'Find tickets by words in the subject, queue or status', inputSchema: { query: z.string().optional(), status: z.enum(['open', 'pending', 'closed']).optional() }, annotations: { readOnlyHint: true } },
    ({ query, status }) => {
      const q = (query ?? '').toLowerCase();
      const found = state.tickets.filter((t) => (status === undefined || t.status === status) && (q === '' || `${t.subject} ${t.queue}`.toLowerCase().includes(q)));
      const tickets = found.map(({ replies: _replies, ...t }) => t);
      return { ...json({ tickets }), structuredContent: { tickets } };
    },
  );
  server.registerTool('get_ticket', { description: 'One ticket with its replies', inputSchema: { id: z.string() }, annotations: { readOnlyHint: true } }, ({ id }) => {
    const ticket = state.tickets.find((t) => t.id === id);
    return ticket === undefined ? notFound(id) : json(ticket);
  });
  server.registerTool(
    'reply_with_script',
    { description: 'Answer a ticket with one of the standard reply scripts', inputSchema: { ticketId: z.string(), script: z.string() } },
    ({ ticketId, script }) => {
      const ticket = state.tickets.find((t) => t.id === ticketId);
      const template = SCRIPTS.get(script);
      if (ticket === undefined) return notFound(ticketId);
      if (template === undefined) return { content: [{ type: 'text' as const, text: JSON.stringify({ error: `no script ${script}` }) }], isError: true };
      const reply = { script, text: template.replace('{customer}', ticket.customer) };
      ticket.replies.push(reply);
      return json({ ticketId, reply });
    },
  );
  server.registerTool(
    'change_config',
    { description: 'Replace the ticketing queue configuration', inputSchema: { autoCloseDays: z.number().int().min(1).max(90).optional(), defaultPriority: z.enum(['low', 'normal', 'high']).optional() }, annotations: { destructiveHint: true } },
    ({ autoCloseDays, defaultPriority }) => {
      state.config = { ...state.config, ...(autoCloseDays === undefined ? {} : { autoCloseDays }), ...(defaultPriority === undefined ? {} : { defaultPriority }) };
      return json({ config: state.config });
    },
  );
  server.registerResource('ticket', new ResourceTemplate('tickets://{id}', { list: () => ({ resources: state.tickets.map((t) => ({ uri: `tickets://${t.id}`, name: `ticket ${t.id}` })) }) }), { description: 'A ticket as JSON', mimeType: 'application/json' }, (uri, { id }) => {
    const ticket = state.tickets.find((t) => t.id === String(id));
    return { contents: [{ uri: uri.href, mimeType: 'application/json', text: JSON.stringify(ticket ?? null) }] };
  });
  server.registerResource('queue-config', 'config://tickets/queues', { description: 'The queue configuration', mimeType: 'application/json' }, (uri) => ({ contents: [{ uri: uri.href, mimeType: 'application/json', text: JSON.stringify(state.config) }] }));
  server.registerPrompt('summarize_ticket', { description: 'Summarize a ticket for a handover', argsSchema: { id: z.string() } }, ({ id }) => ({
    messages: [{ role: 'user', content: { type: 'text', text: `Summarize ticket ${id} in three lines for the next shift.` } }],
  }));
  return server;
}

/** Start the demo MCP server on loopback (a free port by default), stateful with sessions. */
export async function startDemoMcp(options: DemoMcpOptions = {}): Promise<DemoMcp> {
  const host = options.host ?? '127.0.0.1';
  const state: TicketState = { tickets: TICKETS.map((t) => ({ ...t, replies: [] })), config: { ...QUEUE_CONFIG, queues: [...QUEUE_CONFIG.queues] } };
  const sessions = new Map<string, StreamableHTTPServerTransport>();
  const http: Server = createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' }).end('{"error":"internal"}');
      else res.destroy();
    });
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if ((req.url ?? '').split('?')[0] !== '/mcp') {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not found"}');
      return;
    }
    const id = req.headers['mcp-session-id'];
    const existing = typeof id === 'string' ? sessions.get(id) : undefined;
    if (existing !== undefined) {
      await existing.handleRequest(req, res);
      return;
    }
    if (id !== undefined || req.method !== 'POST') {
      res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: -32001, message: 'Session not found' } }));
      return;
    }
    const transport: StreamableHTTPServerTransport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      enableJsonResponse: options.jsonResponse === true,
      onsessioninitialized: (sid) => {
        sessions.set(sid, transport);
      },
      onsessionclosed: (sid) => {
        sessions.delete(sid);
      },
    });
    transport.onclose = () => {
      if (transport.sessionId !== undefined) sessions.delete(transport.sessionId);
    };
    await createTicketsMcpServer(state).connect(transport);
    await transport.handleRequest(req, res);
  }

  await new Promise<void>((resolve, reject) => {
    http.once('error', reject);
    http.listen(options.port ?? 0, host, () => {
      http.off('error', reject);
      resolve();
    });
  });
  const { port } = http.address() as AddressInfo;
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`,
    sessions: () => sessions.size,
    async close() {
      await Promise.all([...sessions.values()].map((t) => t.close().catch(() => undefined)));
      sessions.clear();
      await new Promise<void>((resolve) => {
        http.close(() => resolve());
        http.closeAllConnections();
      });
    },
  };
}
