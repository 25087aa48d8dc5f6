// The response filter of MCP backends. Every JSON-RPC message the server sends back, as a JSON
// body or as SSE events, is parsed strictly and must answer a request the gateway checked (once),
// or be a server request or notification; list results keep only what the token grants; tool and
// resource results are masked where the role masks fields. Anything else is refused: before the
// head is sent a 502 upstream_invalid, mid-stream the connection is cut.
import { Readable } from 'node:stream';
import type { RequestContext, RequestSignal } from '../context.js';
import { GatewayError } from '../errors.js';
import type { MaskPlan } from '../policy/types.js';
import { JsonMasker, MaskError } from '../stages/filters/mask.js';
import { parseStrictJson } from '../stages/strict-json.js';
import { toMessage } from './jsonrpc.js';
import { SseParser, refuse } from './sse.js';
import { idKey, type McpCall } from './types.js';

export interface McpFilterOptions {
  /** Largest JSON body or SSE event the gateway reads from an MCP server. */
  readonly maxBytes: number;
}

export interface McpFilter {
  readonly name: 'mcp';
  apply(ctx: RequestContext): void | Promise<void>;
}

export function createMcpFilter(options: McpFilterOptions): McpFilter {
  const { maxBytes } = options;
  return {
    name: 'mcp',
    apply(ctx: RequestContext): void | Promise<void> {
      const call = ctx.mcp;
      const upstream = ctx.upstream;
      if (call === null || upstream === null || ctx.grant === null || call.kind === 'end') return;
      const body = upstream.body;
      if (body === null || upstream.status < 200 || upstream.status >= 300 || upstream.status === 202 || upstream.status === 204) return;
      const headers = upstream.headers;
      const fail = (detail: string): never => {
        body.on('error', () => undefined);
        body.destroy();
        throw refuse(detail);
      };
      const encoding = single(headers['content-encoding']).trim().toLowerCase();
      if (encoding !== '' && encoding !== 'identity') fail(`content-encoding ${JSON.stringify(encoding).slice(0, 40)}`);
      const type = single(headers['content-type']).split(';')[0]?.trim().toLowerCase() ?? '';
      const out = withoutBodyHeaders(headers);
      const answered = new Set<string>();
      if (type === 'text/event-stream') {
        delete out['content-length'];
        // Proxies between us and the agent must not buffer the stream.
        out['cache-control'] = 'no-cache';
        ctx.upstream = { ...upstream, headers: out, body: new SseFilter(body, call, answered, maxBytes) };
        return;
      }
      if (type !== 'application/json' || call.kind === 'stream') fail(`a ${call.kind === 'stream' ? 'GET stream' : 'message'} answered with content-type ${JSON.stringify(type).slice(0, 80)}`);
      if (call.pending.size === 0) fail('a JSON body answering only notifications or responses');
      return readBounded(body, maxBytes, ctx.signal).then((bytes) => {
        const parsed = parseStrictJson(bytes);
        if (!parsed.ok) throw refuse(`the JSON answer: ${parsed.problem}`);
        let value = parsed.value;
        if (call.batch && Array.isArray(value)) value = value.map((m) => serverMessage(m, call, answered));
        else if (!call.batch && !Array.isArray(value)) value = serverMessage(value, call, answered);
        else throw refuse(call.batch ? 'a single message answered a batch' : 'a batch answered a single message');
        const text = Buffer.from(JSON.stringify(value));
        out['content-length'] = String(text.length);
        ctx.upstream = { ...upstream, headers: out, body: Readable.from([text]) };
      });
    },
  };
}

/**
 * Re-emits each event as one `message` event carrying one checked JSON-RPC message. Pull-based: the
 * upstream body is read only while the agent's side reads, so a refusal (which destroys this
 * stream) can only happen once the runner is relaying it and listening for the error.
 */
class SseFilter extends Readable {
  readonly #source: Readable;
  readonly #parser: SseParser;
  readonly #call: McpCall;
  readonly #answered: Set<string>;

  constructor(source: Readable, call: McpCall, answered: Set<string>, maxBytes: number) {
    super();
    this.#source = source;
    this.#parser = new SseParser(maxBytes);
    this.#call = call;
    this.#answered = answered;
    source.pause();
    source.on('data', (chunk: Buffer) => {
      try {
        const text = this.#render(this.#parser.write(chunk));
        if (text !== '' && !this.push(text)) source.pause();
      } catch (error) {
        this.destroy(error as Error);
      }
    });
    source.on('end', () => {
      try {
        const text = this.#render(this.#parser.end());
        if (text !== '') this.push(text);
        this.push(null);
      } catch (error) {
        this.destroy(error as Error);
      }
    });
    source.on('error', (error: Error) => this.destroy(error));
  }

  override _read(): void {
    this.#source.resume();
  }

  override _destroy(error: Error | null, done: (error?: Error | null) => void): void {
    this.#source.destroy();
    done(error);
  }

  #render(events: ReturnType<SseParser['write']>): string {
    let out = '';
    for (const event of events) {
      if (event.type !== '' && event.type !== 'message') throw refuse(`an SSE event of type ${JSON.stringify(event.type.slice(0, 40))} (the deprecated HTTP+SSE transport, or not MCP)`);
      let text = '';
      if (event.retry !== null) text += `retry: ${event.retry}\n`;
      if (event.data !== null) {
        const parsed = parseStrictJson(Buffer.from(event.data));
        // Two messages in one event (two data lines each holding JSON) do not parse as one value.
        if (!parsed.ok) throw refuse(`an SSE event that is not exactly one JSON value: ${parsed.problem}`);
        if (Array.isArray(parsed.value)) throw refuse('an SSE event carrying a batch (one event is one message)');
        text += `event: message\ndata: ${JSON.stringify(serverMessage(parsed.value, this.#call, this.#answered))}\n`;
      }
      if (text !== '') out += `${text}\n`;
    }
    return out;
  }
}

/** Check one message from the server and return what is passed on. */
function serverMessage(value: unknown, call: McpCall, answered: Set<string>): unknown {
  let m;
  try {
    m = toMessage(value, 'a message from the backend', 'server');
  } catch (error) {
    throw refuse(error instanceof GatewayError ? error.detail : 'not a JSON-RPC message');
  }
  if (m.kind !== 'response') return value;
  if (m.id === null) return value;
  const key = idKey(m.id);
  const method = call.pending.get(key);
  if (method === undefined) throw refuse(`an answer to id ${JSON.stringify(m.id).slice(0, 80)}, which this request did not send`);
  if (answered.has(key)) throw refuse(`a second answer to id ${JSON.stringify(m.id).slice(0, 80)}`);
  answered.add(key);
  if (m.error !== undefined) return value;
  const result = filterResult(method, m.result, call);
  return result === m.result ? value : { jsonrpc: '2.0', id: m.id, result };
}

function filterResult(method: string, result: unknown, call: McpCall): unknown {
  if (typeof result !== 'object' || result === null || Array.isArray(result)) throw refuse(`the result of ${method} is not an object`);
  const r = result as Record<string, unknown>;
  const view = call.view;
  switch (method) {
    case 'tools/list':
      return { ...r, tools: keep(r.tools, method, (t) => typeof t.name === 'string' && view.tools.has(t.name)) };
    case 'prompts/list':
      return { ...r, prompts: keep(r.prompts, method, (p) => typeof p.name === 'string' && view.prompts.has(p.name)) };
    case 'resources/list':
      return { ...r, resources: keep(r.resources, method, (x) => typeof x.uri === 'string' && view.resources.some((t) => t.pattern.test(String(x.uri)))) };
    case 'resources/templates/list':
      return { ...r, resourceTemplates: keep(r.resourceTemplates, method, (x) => typeof x.uriTemplate === 'string' && view.resources.some((t) => t.text === x.uriTemplate)) };
    case 'tools/call':
      return call.mask === null ? result : maskToolResult(r, call.mask);
    case 'resources/read':
      return call.mask === null ? result : { ...r, contents: maskContents(r.contents, call.mask, 'contents') };
    default:
      return result;
  }
}

function keep(list: unknown, method: string, granted: (item: Record<string, unknown>) => boolean): unknown[] {
  if (!Array.isArray(list)) throw refuse(`the result of ${method} has no list`);
  return list.filter((item): item is Record<string, unknown> => typeof item === 'object' && item !== null && !Array.isArray(item) && granted(item as Record<string, unknown>));
}

function maskToolResult(r: Record<string, unknown>, plan: MaskPlan): Record<string, unknown> {
  const out: Record<string, unknown> = { ...r, content: maskContents(r.content ?? [], plan, 'content') };
  if (r.structuredContent !== undefined) out.structuredContent = maskValue(r.structuredContent, plan);
  return out;
}

/** content[] of a tool result, contents[] of a resource: text must be JSON to be masked. */
function maskContents(list: unknown, plan: MaskPlan, where: string): unknown[] {
  if (!Array.isArray(list)) throw unmaskable(`${where} is not a list`);
  return list.map((item: unknown) => {
    if (typeof item !== 'object' || item === null || Array.isArray(item)) throw unmaskable(`${where} holds a non-object`);
    const c = item as Record<string, unknown>;
    if (typeof c.text === 'string') return { ...c, text: maskText(c.text, plan) };
    if (c.type === 'resource' && typeof c.resource === 'object' && c.resource !== null) {
      const res = c.resource as Record<string, unknown>;
      if (typeof res.text === 'string') return { ...c, resource: { ...res, text: maskText(res.text, plan) } };
      throw unmaskable('an embedded resource without text');
    }
    if (c.type === 'image' || c.type === 'audio' || c.type === 'resource_link') return c;
    // Unknown content (or a blob) may hold the masked fields: fail closed.
    throw unmaskable(`content of type ${JSON.stringify(c.type ?? null).slice(0, 40)}`);
  });
}

function maskText(text: string, plan: MaskPlan): string {
  const bytes = Buffer.from(text);
  if (!parseStrictJson(bytes).ok) throw unmaskable('a text result that is not JSON');
  return maskBytes(bytes, plan).toString('utf8');
}

function maskValue(value: unknown, plan: MaskPlan): unknown {
  return JSON.parse(maskBytes(Buffer.from(JSON.stringify(value)), plan).toString('utf8')) as unknown;
}

function maskBytes(bytes: Buffer, plan: MaskPlan): Buffer {
  const masker = new JsonMasker(plan);
  try {
    return Buffer.concat([...masker.write(bytes), ...masker.end()]);
  } catch (error) {
    throw unmaskable(error instanceof MaskError ? error.message : 'masking failed');
  }
}

function unmaskable(detail: string): GatewayError {
  return new GatewayError('response_unmaskable', 'the tool result must be masked for this role and could not be; nothing was passed on', { reasonDetail: detail });
}

function withoutBodyHeaders(headers: Record<string, string | string[]>): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const name in headers) {
    if (name === 'content-length' || name === 'etag' || name === 'content-md5' || name === 'digest' || name === 'repr-digest' || name === 'content-digest') continue;
    const value = headers[name];
    if (value !== undefined) out[name] = value;
  }
  return out;
}

function readBounded(stream: Readable, maxBytes: number, signal: RequestSignal): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    const cleanup = (): void => {
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('error', onError);
      signal.removeEventListener('abort', onAbort);
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > maxBytes) {
        cleanup();
        stream.on('error', () => undefined);
        stream.destroy();
        reject(refuse(`an answer larger than ${maxBytes} bytes`));
        return;
      }
      parts.push(chunk);
    };
    const onEnd = (): void => {
      cleanup();
      resolve(Buffer.concat(parts, size));
    };
    const onError = (error: Error): void => {
      cleanup();
      reject(error);
    };
    const onAbort = (): void => {
      cleanup();
      reject(signal.reason instanceof Error ? signal.reason : new Error('request aborted'));
    };
    stream.on('data', onData);
    stream.on('end', onEnd);
    stream.on('error', onError);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

function single(value: string | string[] | undefined): string {
  if (value === undefined) return '';
  return Array.isArray(value) ? value.join(',') : value;
}
