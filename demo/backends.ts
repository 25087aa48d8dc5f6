// Small but realistic demo backends (CRM, content library, ticketing, knowledge base, BI) that the
// demo and the tests start on free loopback ports. Plain node:http; BI answers real SQL with
// SQLite (sql.js) over seeded tables. Every backend also answers GET /_whoami with the request it
// received, to show what the gateway forwards (no agent credential, identity headers set).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import type { Database, SqlJsStatic } from 'sql.js';
import { CONTACTS, ASSETS, TICKETS, ARTICLES, REPORTS, SCRIPTS, seedSql } from './data.js';

export type DemoBackendName = 'crm' | 'content' | 'tickets' | 'kb' | 'bi';
export const DEMO_BACKENDS: readonly DemoBackendName[] = ['crm', 'content', 'tickets', 'kb', 'bi'];

export interface DemoBackends {
  readonly urls: Record<DemoBackendName, string>;
  close(): Promise<void>;
}

type Handler = (req: IncomingMessage, res: ServerResponse, params: Record<string, string>, body: Buffer) => void | Promise<void>;
type Routes = Array<[method: string, pattern: string, handler: Handler]>;

const MAX_BODY = 1 << 20;

export async function startDemoBackends(options: { host?: string; ports?: Partial<Record<DemoBackendName, number>> } = {}): Promise<DemoBackends> {
  const host = options.host ?? '127.0.0.1';
  const db = await openBiDatabase();
  const routes: Record<DemoBackendName, Routes> = {
    crm: crmRoutes(),
    content: [
      ['GET', '/assets', (_q, res) => json(res, 200, { assets: ASSETS })],
      ['GET', '/assets/:id', (_q, res, p) => found(res, ASSETS.find((a) => a.id === p.id), 'asset')],
    ],
    tickets: ticketRoutes(),
    kb: [
      ['GET', '/articles', (_q, res) => json(res, 200, { articles: ARTICLES.map(({ body: _b, ...a }) => a) })],
      ['GET', '/articles/:id', (_q, res, p) => found(res, ARTICLES.find((a) => a.id === p.id), 'article')],
    ],
    bi: [
      ['GET', '/reports', (_q, res) => json(res, 200, { reports: REPORTS.map(({ sql: _s, ...r }) => r) })],
      ['GET', '/reports/:id', (_q, res, p) => {
        const report = REPORTS.find((r) => r.id === p.id);
        if (report === undefined) return json(res, 404, { error: 'no such report' });
        return json(res, 200, { ...report, result: run(db, report.sql) });
      }],
      ['POST', '/query', (_q, res, _p, body) => {
        const parsed = parseJson(body);
        if (parsed === undefined || typeof (parsed as { sql?: unknown }).sql !== 'string') return json(res, 400, { error: 'send {"sql": "..."}' });
        try {
          return json(res, 200, run(db, (parsed as { sql: string }).sql));
        } catch (error) {
          return json(res, 400, { error: `SQL error: ${(error as Error).message}` });
        }
      }],
    ],
  };

  const servers: Server[] = [];
  const urls = {} as Record<DemoBackendName, string>;
  try {
    for (const name of DEMO_BACKENDS) {
      const server = createServer((req, res) => dispatch(routes[name], req, res));
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(options.ports?.[name] ?? 0, host, () => resolve());
      });
      servers.push(server);
      const { port } = server.address() as AddressInfo;
      urls[name] = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
    }
  } catch (error) {
    await closeAll(servers);
    throw error;
  }
  return {
    urls,
    async close() {
      await closeAll(servers);
      db.close();
    },
  };
}

function crmRoutes(): Routes {
  const contacts = CONTACTS.map((c) => ({ ...c, tags: [...c.tags], address: { ...c.address } }));
  return [
    ['GET', '/contacts', (req, res) => {
      const url = new URL(req.url ?? '/', 'http://crm');
      const tag = url.searchParams.get('tag');
      const limit = Number(url.searchParams.get('limit') ?? contacts.length);
      const list = contacts.filter((c) => tag === null || c.tags.includes(tag)).slice(0, Number.isFinite(limit) && limit >= 0 ? limit : contacts.length);
      json(res, 200, { contacts: list, total: list.length });
    }],
    ['GET', '/contacts/:id', (_q, res, p) => found(res, contacts.find((c) => c.id === p.id), 'contact')],
    ['PATCH', '/contacts/:id', (_q, res, p, body) => {
      const contact = contacts.find((c) => c.id === p.id);
      if (contact === undefined) return json(res, 404, { error: 'no such contact' });
      const patch = parseJson(body);
      if (patch === undefined || typeof patch !== 'object' || patch === null || Array.isArray(patch)) return json(res, 400, { error: 'send a JSON object' });
      const fields = patch as Record<string, unknown>;
      for (const key of ['name', 'email', 'phone'] as const) {
        const value = fields[key];
        if (typeof value === 'string') contact[key] = value;
      }
      if (Array.isArray(fields.tags) && fields.tags.every((t) => typeof t === 'string')) contact.tags = fields.tags as string[];
      return json(res, 200, contact);
    }],
    ['GET', '/tags', (_q, res) => json(res, 200, { tags: [...new Set(contacts.flatMap((c) => c.tags))].sort() })],
    ['GET', '/export', (_q, res) => {
      const rows = contacts.map((c) => [c.id, c.name, c.company, c.email, c.phone, c.tags.join(';')].map(csv).join(','));
      res.writeHead(200, { 'content-type': 'text/csv; charset=utf-8', 'content-disposition': 'attachment; filename="contacts.csv"' });
      res.end(`id,name,company,email,phone,tags\n${rows.join('\n')}\n`);
    }],
  ];
}

function ticketRoutes(): Routes {
  const tickets = TICKETS.map((t) => ({ ...t, replies: [] as Array<{ script: string; text: string; note: string | null; at: string }> }));
  let config: Record<string, unknown> = { queues: ['billing', 'technical', 'general'], autoClose: '7d' };
  return [
    ['GET', '/tickets', (_q, res) => json(res, 200, { tickets: tickets.map(({ replies, ...t }) => ({ ...t, replies: replies.length })) })],
    ['GET', '/tickets/:id', (_q, res, p) => found(res, tickets.find((t) => t.id === p.id), 'ticket')],
    ['POST', '/tickets/:id/replies', (_q, res, p, body) => {
      const ticket = tickets.find((t) => t.id === p.id);
      if (ticket === undefined) return json(res, 404, { error: 'no such ticket' });
      const parsed = parseJson(body) as { script?: unknown; note?: unknown } | undefined;
      const script = typeof parsed?.script === 'string' ? parsed.script : '';
      const template = SCRIPTS[script];
      if (template === undefined) return json(res, 400, { error: `script must be one of ${Object.keys(SCRIPTS).join(', ')}` });
      const reply = { script, text: template.replace('{customer}', ticket.customer), note: typeof parsed?.note === 'string' ? parsed.note : null, at: new Date().toISOString() };
      ticket.replies.push(reply);
      return json(res, 201, { ticket: ticket.id, reply });
    }],
    ['PUT', '/config', (_q, res, _p, body) => {
      const parsed = parseJson(body);
      if (parsed === undefined || typeof parsed !== 'object' || parsed === null) return json(res, 400, { error: 'send a JSON object' });
      config = parsed as Record<string, unknown>;
      return json(res, 200, config);
    }],
  ];
}

async function dispatch(routes: Routes, req: IncomingMessage, res: ServerResponse): Promise<void> {
  try {
    const body = await readBody(req);
    if (body === null) return json(res, 413, { error: 'body too large' });
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    if (path === '/_whoami' && req.method === 'GET') return json(res, 200, { method: req.method, url: req.url, headers: req.headers });
    let pathMatched = false;
    for (const [method, pattern, handler] of routes) {
      const params = matchPath(pattern, path);
      if (params === null) continue;
      pathMatched = true;
      if (method === req.method || (method === 'GET' && req.method === 'HEAD')) return await handler(req, res, params, body);
    }
    return json(res, pathMatched ? 405 : 404, { error: pathMatched ? 'method not allowed' : 'not found' });
  } catch (error) {
    if (!res.headersSent) json(res, 500, { error: (error as Error).message });
    else res.destroy();
  }
}

function matchPath(pattern: string, path: string): Record<string, string> | null {
  const want = pattern.split('/');
  const got = path.split('/');
  if (want.length !== got.length) return null;
  const params: Record<string, string> = {};
  for (let i = 0; i < want.length; i++) {
    const w = want[i] ?? '';
    const g = got[i] ?? '';
    if (w.startsWith(':')) {
      if (g === '') return null;
      params[w.slice(1)] = decodeURIComponent(g);
    } else if (w !== g) {
      return null;
    }
  }
  return params;
}

function readBody(req: IncomingMessage): Promise<Buffer | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY) tooLarge = true;
      else chunks.push(chunk);
    });
    req.on('end', () => resolve(tooLarge ? null : Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function json(res: ServerResponse, status: number, value: unknown): void {
  const text = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function found(res: ServerResponse, value: unknown, what: string): void {
  if (value === undefined) json(res, 404, { error: `no such ${what}` });
  else json(res, 200, value);
}

function parseJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    return undefined;
  }
}

function csv(value: string): string {
  return /[",\n]/.test(value) ? `"${value.replaceAll('"', '""')}"` : value;
}

let sqlJs: Promise<SqlJsStatic> | null = null;

async function openBiDatabase(): Promise<Database> {
  if (sqlJs === null) {
    const require = createRequire(import.meta.url);
    const init = require('sql.js') as (config?: { locateFile?: (file: string) => string }) => Promise<SqlJsStatic>;
    const wasm = require.resolve('sql.js/dist/sql-wasm.wasm');
    sqlJs = init({ locateFile: () => wasm });
  }
  const SQL = await sqlJs;
  const db = new SQL.Database();
  db.run(seedSql());
  return db;
}

function run(db: Database, sql: string): { columns: string[]; rows: unknown[][] } {
  const results = db.exec(sql);
  const last = results[results.length - 1];
  return last === undefined ? { columns: [], rows: [] } : { columns: last.columns, rows: last.values };
}

async function closeAll(servers: readonly Server[]): Promise<void> {
  await Promise.all(
    servers.map(
      (s) =>
        new Promise<void>((resolve) => {
          s.closeAllConnections();
          s.close(() => resolve());
        }),
    ),
  );
}
