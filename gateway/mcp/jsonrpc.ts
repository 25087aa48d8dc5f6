// Strict JSON-RPC 2.0 parsing of what an agent POSTs to an MCP backend: one message or a batch,
// parsed with the gateway's strict JSON (duplicate keys, BOM and bad UTF-8 refused), every member
// checked, nothing unknown tolerated. What is decided here is what is forwarded, byte for byte.
import { GatewayError } from '../errors.js';
import { parseStrictJson } from '../stages/strict-json.js';
import type { RpcId } from './types.js';

/** Messages in one batch at most: a batch is all-or-nothing, and each member is checked. */
export const MAX_BATCH = 32;
const MAX_ID_CHARS = 256;
const MAX_METHOD_CHARS = 128;

export type RpcMessage =
  | { readonly kind: 'request'; readonly id: RpcId; readonly method: string; readonly params: Readonly<Record<string, unknown>> | null }
  | { readonly kind: 'notification'; readonly method: string; readonly params: Readonly<Record<string, unknown>> | null }
  | { readonly kind: 'response'; readonly id: RpcId | null; readonly result: unknown; readonly error: unknown };

export interface ParsedBody {
  readonly batch: boolean;
  readonly messages: readonly RpcMessage[];
}

const REQUEST_KEYS = new Set(['jsonrpc', 'id', 'method', 'params']);
const RESPONSE_KEYS = new Set(['jsonrpc', 'id', 'result', 'error']);

function invalid(detail: string): GatewayError {
  return new GatewayError('body_invalid', `the JSON-RPC message cannot be checked: ${detail}`);
}

/** Parse a request body; throws body_invalid naming what is wrong. */
export function parseRequestBody(body: Uint8Array): ParsedBody {
  const parsed = parseStrictJson(body);
  if (!parsed.ok) throw invalid(parsed.problem);
  const value = parsed.value;
  if (Array.isArray(value)) {
    if (value.length === 0) throw invalid('an empty batch');
    if (value.length > MAX_BATCH) throw invalid(`a batch of ${value.length} messages (at most ${MAX_BATCH})`);
    const messages = value.map((m, i) => toMessage(m, `message ${i}`, 'client'));
    const seen = new Set<string>();
    for (const m of messages) {
      if (m.kind !== 'request') continue;
      const key = typeof m.id === 'number' ? `n:${m.id}` : `s:${m.id}`;
      if (seen.has(key)) throw invalid(`the id ${JSON.stringify(m.id)} is used twice in one batch`);
      seen.add(key);
    }
    return { batch: true, messages };
  }
  return { batch: false, messages: [toMessage(value, 'the message', 'client')] };
}

/**
 * One JSON-RPC message. `from` says who sent it: a client's response to a server request is
 * allowed from the client, and the server's responses are checked by the response filter.
 */
export function toMessage(value: unknown, where: string, from: 'client' | 'server'): RpcMessage {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw invalid(`${where} is not a JSON object`);
  const m = value as Record<string, unknown>;
  if (m.jsonrpc !== '2.0') throw invalid(`${where} lacks "jsonrpc": "2.0"`);
  if (Object.hasOwn(m, 'method')) {
    for (const key of Object.keys(m)) if (!REQUEST_KEYS.has(key)) throw invalid(`${where} has an unknown member "${key.slice(0, 64)}"`);
    const method = m.method;
    if (typeof method !== 'string' || method === '' || method.length > MAX_METHOD_CHARS) throw invalid(`${where}: "method" must be a non-empty string of at most ${MAX_METHOD_CHARS} characters`);
    const params = m.params;
    if (params !== undefined && (typeof params !== 'object' || params === null || Array.isArray(params))) throw invalid(`${where}: "params" must be an object (MCP uses named parameters)`);
    const p = (params ?? null) as Record<string, unknown> | null;
    if (!Object.hasOwn(m, 'id')) return { kind: 'notification', method, params: p };
    return { kind: 'request', id: checkId(m.id, where), method, params: p };
  }
  for (const key of Object.keys(m)) if (!RESPONSE_KEYS.has(key)) throw invalid(`${where} has an unknown member "${key.slice(0, 64)}"`);
  const hasResult = Object.hasOwn(m, 'result');
  const hasError = Object.hasOwn(m, 'error');
  if (hasResult === hasError) throw invalid(`${where} is neither a request (method) nor a response (exactly one of result, error)`);
  if (hasError) {
    const error = m.error;
    if (typeof error !== 'object' || error === null || Array.isArray(error) || typeof (error as { code?: unknown }).code !== 'number') throw invalid(`${where}: "error" must be an object with a numeric code`);
  }
  // A server's error answer to an unparseable request may carry id null (JSON-RPC 2.0 §5).
  const id = from === 'server' && hasError && m.id === null ? null : checkId(m.id, where);
  return { kind: 'response', id, result: hasResult ? m.result : undefined, error: hasError ? m.error : undefined };
}

function checkId(id: unknown, where: string): RpcId {
  if (typeof id === 'string' && id.length <= MAX_ID_CHARS) return id;
  if (typeof id === 'number' && Number.isSafeInteger(id)) return id;
  throw invalid(`${where}: "id" must be a string (at most ${MAX_ID_CHARS} characters) or an integer`);
}
