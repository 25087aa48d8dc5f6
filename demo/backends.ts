// The demo fixture's five JSON backends (DESIGN §2): CRM, content library, ticketing, knowledge base
// and the BI report pool (real SQL via sql.js), plus the ticketing MCP server (demo/mcp.ts). Plain
// node:http on loopback, port 0 by default; each call of startDemoBackends gets its own data, so
// demos and tests never share state.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { openReportPool, QueryError, type ReportPool } from './bi.js';
import { ARTICLES, ASSETS, CONTACTS, QUEUE_CONFIG, REPORTS, SCRIPTS, TICKETS, type Contact, type QueueConfig, type Ticket } from './data.js';
import { startDemoMcp, type DemoMcp } from './mcp.js';
import { createRouter, isRecord, parseJson, problem, reply, type Reply, type Route } from './http.js';

export type DemoBackendName = 'crm' | 'content' | 'tickets' | 'kb' | 'bi' | 'tickets-mcp';

/** `tickets-mcp` is the ticketing system's MCP server (demo/mcp.ts), at `/mcp` under its URL. */
export const DEMO_BACKENDS: readonly DemoBackendName[] = ['crm', 'content', 'tickets', 'kb', 'bi', 'tickets-mcp'];

export interface DemoBackendsOptions {
  /** Loopback by default. */
  readonly host?: string;
  /** Fixed ports per backend; 0 or absent picks a free one. */
  readonly ports?: Partial<Record<DemoBackendName, number>>;
}

export interface DemoBackends {
  /** Base URL per backend, e.g. `http://127.0.0.1:40123` (no trailing slash). */
  readonly urls: Record<DemoBackendName, string>;
  close(): Promise<void>;
}

export async function startDemoBackends(options: DemoBackendsOptions = {}): Promise<DemoBackends> {
  const host = options.host ?? '127.0.0.1';
  const pool = await openReportPool();
  const servers: Server[] = [];
  const listen = async (name: DemoBackendName, routes: readonly Route[]): Promise<string> => {
    const server = createServer(createRouter(routes));
    servers.push(server);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.ports?.[name] ?? 0, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const { port } = server.address() as AddressInfo;
    return `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  };
  let mcp: DemoMcp | null = null;
  const close = async (): Promise<void> => {
    await Promise.all(servers.map(stop));
    await mcp?.close();
    pool.close();
  };

  try {
    const urls: Record<DemoBackendName, string> = {
      crm: await listen('crm', crmRoutes()),
      content: await listen('content', contentRoutes()),
      tickets: await listen('tickets', ticketRoutes()),
      kb: await listen('kb', kbRoutes()),
      bi: await listen('bi', biRoutes(pool)),
      'tickets-mcp': (mcp = await startDemoMcp({ host, port: options.ports?.['tickets-mcp'] ?? 0 })).url,
    };
    return { urls, close };
  } catch (error) {
    await close();
    throw error;
  }
}

function stop(server: Server): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) {
      resolve();
      return;
    }
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

interface MutableContact {
  id: string;
  name: string;
  company: string;
  email: string;
  phone: string;
  tags: string[];
  address: { city: string; country: string };
}

const CONTACT_PATCH_FIELDS: ReadonlySet<string> = new Set(['name', 'email', 'phone', 'tags']);

function crmRoutes(): Route[] {
  const contacts: MutableContact[] = CONTACTS.map((c: Contact) => ({ ...c, tags: [...c.tags], address: { ...c.address } }));
  const byId = (id: string): MutableContact | undefined => contacts.find((c) => c.id === id);
  return [
    {
      method: 'GET',
      path: '/contacts',
      handle: (req) => {
        const limit = limitParam(req.query.get('limit'), contacts.length);
        if (limit === null) return problem(400, 'bad_request', 'limit must be a whole number from 0 to 1000');
        const tag = req.query.get('tag');
        const matching = tag === null ? contacts : contacts.filter((c) => c.tags.includes(tag));
        return reply(200, { contacts: matching.slice(0, limit), total: matching.length });
      },
    },
    { method: 'GET', path: '/contacts/:id', handle: (_req, p) => found(byId(p.id ?? ''), 'contact') },
    {
      method: 'PATCH',
      path: '/contacts/:id',
      body: true,
      handle: (req, p) => {
        const contact = byId(p.id ?? '');
        if (contact === undefined) return problem(404, 'not_found', 'no such contact');
        const patch = parseJson(req.body);
        if (!isRecord(patch)) return problem(400, 'bad_request', 'send a JSON object with name, email, phone or tags');
        for (const [key, value] of Object.entries(patch)) {
          if (!CONTACT_PATCH_FIELDS.has(key)) return problem(400, 'bad_request', `field "${key}" cannot be changed`);
          if (key === 'tags') {
            if (!Array.isArray(value) || !value.every((tag) => typeof tag === 'string')) return problem(400, 'bad_request', 'tags must be an array of strings');
          } else if (typeof value !== 'string' || value === '') {
            return problem(400, 'bad_request', `${key} must be a non-empty string`);
          }
        }
        // Validated above: apply the merge only once every field is known to be acceptable.
        if (typeof patch.name === 'string') contact.name = patch.name;
        if (typeof patch.email === 'string') contact.email = patch.email;
        if (typeof patch.phone === 'string') contact.phone = patch.phone;
        if (Array.isArray(patch.tags)) contact.tags = patch.tags.filter((tag): tag is string => typeof tag === 'string');
        return reply(200, contact);
      },
    },
    { method: 'GET', path: '/tags', handle: () => reply(200, { tags: [...new Set(contacts.flatMap((c) => c.tags))].sort() }) },
    {
      method: 'GET',
      path: '/export',
      handle: () => {
        const header = 'id,name,company,email,phone,tags,city,country';
        const lines = contacts.map((c) => [c.id, c.name, c.company, c.email, c.phone, c.tags.join(';'), c.address.city, c.address.country].map(csvField).join(','));
        return {
          status: 200,
          text: `${header}\r\n${lines.join('\r\n')}\r\n`,
          headers: { 'content-type': 'text/csv; charset=utf-8', 'content-disposition': 'attachment; filename="contacts.csv"' },
        };
      },
    },
  ];
}

function contentRoutes(): Route[] {
  return [
    {
      method: 'GET',
      path: '/assets',
      handle: (req) => {
        const kind = req.query.get('kind');
        const tag = req.query.get('tag');
        const assets = ASSETS.filter((a) => (kind === null || a.kind === kind) && (tag === null || a.tags.includes(tag)));
        return reply(200, { assets, total: assets.length });
      },
    },
    { method: 'GET', path: '/assets/:id', handle: (_req, p) => found(ASSETS.find((a) => a.id === p.id), 'asset') },
  ];
}

interface TicketReply {
  readonly id: string;
  readonly script: string;
  readonly text: string;
  readonly note: string | null;
  readonly at: string;
}

const MAX_NOTE_CHARS = 2000;

function ticketRoutes(): Route[] {
  const tickets: Array<Ticket & { replies: TicketReply[] }> = TICKETS.map((t) => ({ ...t, replies: [] }));
  let config: QueueConfig = { ...QUEUE_CONFIG, queues: [...QUEUE_CONFIG.queues] };
  let replyCount = 0;
  return [
    {
      method: 'GET',
      path: '/tickets',
      handle: (req) => {
        const status = req.query.get('status');
        const list = tickets.filter((t) => status === null || t.status === status).map(({ replies, ...t }) => ({ ...t, replies: replies.length }));
        return reply(200, { tickets: list, total: list.length });
      },
    },
    { method: 'GET', path: '/tickets/:id', handle: (_req, p) => found(tickets.find((t) => t.id === p.id), 'ticket') },
    {
      method: 'POST',
      path: '/tickets/:id/replies',
      body: true,
      handle: (req, p) => {
        const ticket = tickets.find((t) => t.id === p.id);
        if (ticket === undefined) return problem(404, 'not_found', 'no such ticket');
        const input = parseJson(req.body);
        const scripts = [...SCRIPTS.keys()].join(', ');
        if (!isRecord(input)) return problem(400, 'bad_request', `send {"script": one of ${scripts}, "note"?: string}`);
        const extra = Object.keys(input).find((key) => key !== 'script' && key !== 'note');
        if (extra !== undefined) return problem(400, 'bad_request', `unexpected field "${extra}"`);
        const template = typeof input.script === 'string' ? SCRIPTS.get(input.script) : undefined;
        if (typeof input.script !== 'string' || template === undefined) return problem(400, 'bad_request', `script must be one of ${scripts}`);
        if (input.note !== undefined && (typeof input.note !== 'string' || input.note.length > MAX_NOTE_CHARS)) {
          return problem(400, 'bad_request', `note must be a string of at most ${MAX_NOTE_CHARS} characters`);
        }
        replyCount += 1;
        const entry: TicketReply = {
          id: `${ticket.id}-${replyCount}`,
          script: input.script,
          text: template.replaceAll('{customer}', ticket.customer),
          note: typeof input.note === 'string' ? input.note : null,
          at: new Date().toISOString(),
        };
        ticket.replies.push(entry);
        return reply(201, { ticket: ticket.id, reply: entry });
      },
    },
    {
      method: 'PUT',
      path: '/config',
      body: true,
      handle: (req) => {
        const input = parseJson(req.body);
        const next = queueConfig(input);
        if (typeof next === 'string') return problem(400, 'bad_request', next);
        config = next;
        return reply(200, config);
      },
    },
  ];
}

/** A whole queue configuration, or what is wrong with it. */
function queueConfig(input: unknown): QueueConfig | string {
  if (!isRecord(input)) return 'send a JSON object {queues, autoCloseDays, defaultPriority}';
  const extra = Object.keys(input).find((key) => !Object.hasOwn(QUEUE_CONFIG, key));
  if (extra !== undefined) return `unexpected field "${extra}"`;
  const { queues, autoCloseDays, defaultPriority } = { ...QUEUE_CONFIG, ...input };
  if (!Array.isArray(queues) || queues.length === 0 || !queues.every((q) => typeof q === 'string' && q !== '')) return 'queues must be a non-empty array of names';
  if (typeof autoCloseDays !== 'number' || !Number.isInteger(autoCloseDays) || autoCloseDays < 1 || autoCloseDays > 365) return 'autoCloseDays must be a whole number from 1 to 365';
  if (defaultPriority !== 'low' && defaultPriority !== 'normal' && defaultPriority !== 'high') return 'defaultPriority must be low, normal or high';
  return { queues: queues.filter((q): q is string => typeof q === 'string'), autoCloseDays, defaultPriority };
}

function kbRoutes(): Route[] {
  return [
    {
      method: 'GET',
      path: '/articles',
      handle: (req) => {
        const tag = req.query.get('tag');
        const articles = ARTICLES.filter((a) => tag === null || a.tags.includes(tag)).map(({ body: _body, ...summary }) => summary);
        return reply(200, { articles, total: articles.length });
      },
    },
    { method: 'GET', path: '/articles/:id', handle: (_req, p) => found(ARTICLES.find((a) => a.id === p.id), 'article') },
  ];
}

function biRoutes(pool: ReportPool): Route[] {
  return [
    { method: 'GET', path: '/reports', handle: () => reply(200, { reports: REPORTS.map(({ sql: _sql, ...summary }) => summary) }) },
    {
      method: 'GET',
      path: '/reports/:id',
      handle: (_req, p) => {
        const report = REPORTS.find((r) => r.id === p.id);
        if (report === undefined) return problem(404, 'not_found', 'no such report');
        return reply(200, { ...report, result: pool.query(report.sql) });
      },
    },
    {
      method: 'POST',
      path: '/query',
      body: true,
      handle: (req) => {
        const input = parseJson(req.body);
        if (!isRecord(input) || typeof input.sql !== 'string') return problem(400, 'bad_request', 'send {"sql": "SELECT ..."}');
        try {
          return reply(200, pool.query(input.sql));
        } catch (error) {
          if (error instanceof QueryError) return problem(400, 'sql_error', error.message);
          throw error;
        }
      },
    },
  ];
}

function found(value: unknown, what: string): Reply {
  return value === undefined ? problem(404, 'not_found', `no such ${what}`) : reply(200, value);
}

/** `?limit=`: absent gives `fallback`; otherwise a whole number 0..1000, or null when malformed. */
function limitParam(value: string | null, fallback: number): number | null {
  if (value === null) return fallback;
  if (!/^\d{1,4}$/.test(value)) return null;
  const limit = Number(value);
  return limit <= 1000 ? limit : null;
}

/** RFC 4180 quoting. */
function csvField(value: string): string {
  return /[",\r\n]/.test(value) ? `"${value.replaceAll('"', '""')}"` : value;
}
