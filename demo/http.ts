// The small HTTP layer the demo backends share: a METHOD + `/path/:param` router, JSON answers
// (404 for an unknown path, 405 with `Allow` for a wrong method), request bodies capped at 1 MiB,
// and `GET /_whoami` on every backend.
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';

export const MAX_BODY_BYTES = 1024 * 1024;

export interface DemoRequest {
  readonly method: string;
  /** The request-target exactly as received. */
  readonly url: string;
  readonly query: URLSearchParams;
  readonly headers: IncomingHttpHeaders;
  /** Read only for routes that declare `body: true`; empty otherwise. */
  readonly body: Buffer;
}

export type Reply =
  | { readonly status: number; readonly json: unknown }
  | { readonly status: number; readonly text: string; readonly headers: Readonly<Record<string, string>> };

export interface Route {
  readonly method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** `/contacts/:id`; a `:name` segment matches one non-empty segment, percent-decoded. */
  readonly path: string;
  readonly body?: boolean;
  readonly handle: (req: DemoRequest, params: Readonly<Record<string, string>>) => Reply;
}

interface CompiledRoute {
  readonly route: Route;
  readonly segments: readonly string[];
}

export function reply(status: number, json: unknown): Reply {
  return { status, json };
}

export function problem(status: number, error: string, message: string): Reply {
  return { status, json: { error, message } };
}

/** JSON.parse that answers undefined instead of throwing. */
export function parseJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    return undefined;
  }
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A node:http request listener serving `routes`. The router keeps no state of its own. */
export function createRouter(routes: readonly Route[]): (req: IncomingMessage, res: ServerResponse) => void {
  const compiled: CompiledRoute[] = routes.map((route) => ({ route, segments: route.path.split('/').slice(1) }));
  return (req, res) => {
    serve(compiled, req, res).catch(() => {
      if (!res.headersSent) send(res, problem(500, 'internal', 'internal error'));
      else res.destroy();
    });
  };
}

async function serve(routes: readonly CompiledRoute[], req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = req.url ?? '/';
  const method = req.method ?? 'GET';
  const mark = url.indexOf('?');
  const path = mark === -1 ? url : url.slice(0, mark);
  const query = new URLSearchParams(mark === -1 ? '' : url.slice(mark + 1));

  // /_whoami exists only to demonstrate header hygiene: it echoes the request line and headers
  // this backend received, so a demo or test can show that the gateway stripped the agent's
  // Authorization, set X-AgentGate-* identity headers and forwarded the path byte for byte.
  if (path === '/_whoami') {
    if (method !== 'GET' && method !== 'HEAD') return send(res, notAllowed(['GET']));
    return send(res, reply(200, { method, url, headers: req.headers }));
  }

  const segments = path.split('/').slice(1);
  const allowed: string[] = [];
  for (const { route, segments: pattern } of routes) {
    const params = match(pattern, segments);
    if (params === null) continue;
    if (route.method !== method && !(route.method === 'GET' && method === 'HEAD')) {
      allowed.push(route.method);
      continue;
    }
    let body: Buffer = Buffer.alloc(0);
    if (route.body === true) {
      const read = await readBody(req);
      if (read === null) return send(res, problem(413, 'body_too_large', `request bodies are limited to ${MAX_BODY_BYTES} bytes`));
      body = read;
    }
    return send(res, route.handle({ method, url, query, headers: req.headers, body }, params));
  }
  if (allowed.length > 0) return send(res, notAllowed(allowed));
  return send(res, problem(404, 'not_found', `no route for ${path}`));
}

function notAllowed(methods: readonly string[]): Reply {
  const allow = [...new Set(methods.includes('GET') ? [...methods, 'HEAD'] : methods)].join(', ');
  return { status: 405, text: JSON.stringify({ error: 'method_not_allowed', message: `allowed: ${allow}` }), headers: { 'content-type': 'application/json', allow } };
}

function match(pattern: readonly string[], segments: readonly string[]): Record<string, string> | null {
  if (pattern.length !== segments.length) return null;
  const params: Record<string, string> = {};
  for (let i = 0; i < pattern.length; i++) {
    const want = pattern[i] ?? '';
    const got = segments[i] ?? '';
    if (want.startsWith(':')) {
      if (got === '') return null;
      try {
        params[want.slice(1)] = decodeURIComponent(got);
      } catch {
        return null;
      }
    } else if (want !== got) {
      return null;
    }
  }
  return params;
}

/**
 * The whole body, or null when it passes MAX_BODY_BYTES. The rest is drained without being kept,
 * so the 413 goes out on a connection the client can still read from.
 */
function readBody(req: IncomingMessage): Promise<Buffer | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_BODY_BYTES) chunks.push(chunk);
      else chunks.length = 0;
    });
    req.once('end', () => resolve(size <= MAX_BODY_BYTES ? Buffer.concat(chunks) : null));
    req.once('error', reject);
  });
}

function send(res: ServerResponse, answer: Reply): void {
  if ('json' in answer) {
    const text = JSON.stringify(answer.json);
    res.writeHead(answer.status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
    return;
  }
  res.writeHead(answer.status, { ...answer.headers, 'content-length': Buffer.byteLength(answer.text) });
  res.end(answer.text);
}
