// The broker's HTTP edge: strict application/x-www-form-urlencoded bodies (RFC 6749 §3.2: each
// parameter at most once, empty values count as absent) and OAuth JSON answers. Anything that is
// not a well-formed form is invalid_request, never an exception.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { OAUTH_ERRORS } from '../errors.js';
import { BrokerError } from './errors.js';

/** Token endpoint bodies are small: a client assertion plus a subject and an actor token fit easily. */
export const MAX_FORM_BYTES = 32 * 1024;
const MAX_PARAMS = 32;
const FORM_TYPE = 'application/x-www-form-urlencoded';
/** Visible ASCII and space only (after decoding): no control bytes in any OAuth parameter. */
const PARAM_VALUE = /^[\x20-\x7e]*$/;

export type FormParams = ReadonlyMap<string, string>;

/** Read and parse the request body as a form. Throws BrokerError(invalid_request). */
export async function readForm(req: IncomingMessage, maxBytes = MAX_FORM_BYTES): Promise<FormParams> {
  const type = req.headers['content-type'];
  const [media = '', ...parameters] = (type ?? '').split(';').map((p) => p.trim().toLowerCase());
  if (media !== FORM_TYPE) {
    throw new BrokerError('invalid_request', `send the parameters as ${FORM_TYPE} (got ${type === undefined ? 'no content type' : JSON.stringify(type.slice(0, 80))})`, { reasonDetail: 'content_type' });
  }
  for (const parameter of parameters) {
    if (parameter.startsWith('charset=') && !['utf-8', 'utf8', '"utf-8"'].includes(parameter.slice(8))) {
      throw new BrokerError('invalid_request', 'the form must be UTF-8', { reasonDetail: 'charset' });
    }
  }
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > maxBytes) throw tooLarge(maxBytes);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > maxBytes) throw tooLarge(maxBytes);
    chunks.push(chunk as Buffer);
  }
  const body = Buffer.concat(chunks);
  for (const byte of body) {
    if (byte < 0x20 || byte > 0x7e) throw new BrokerError('invalid_request', 'the form body must be percent-encoded ASCII', { reasonDetail: 'body_bytes' });
  }
  return parseForm(body.toString('latin1'));
}

/** Parse an urlencoded string strictly. Exported for tests. */
export function parseForm(text: string): FormParams {
  const params = new Map<string, string>();
  const seen = new Set<string>();
  if (text === '') return params;
  const parts = text.split('&');
  if (parts.length > MAX_PARAMS) throw new BrokerError('invalid_request', `at most ${MAX_PARAMS} parameters`, { reasonDetail: 'too_many_params' });
  for (const part of parts) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    const name = decode(eq === -1 ? part : part.slice(0, eq));
    const value = decode(eq === -1 ? '' : part.slice(eq + 1));
    if (name === '') throw new BrokerError('invalid_request', 'a parameter has no name', { reasonDetail: 'empty_name' });
    // RFC 6749 §3.2: parameters MUST NOT be included more than once (even an empty one).
    if (seen.has(name)) throw new BrokerError('invalid_request', `parameter "${printable(name)}" is repeated`, { reasonDetail: 'duplicate_param' });
    seen.add(name);
    if (!PARAM_VALUE.test(name) || !PARAM_VALUE.test(value)) {
      throw new BrokerError('invalid_request', `parameter "${printable(name)}" holds characters outside printable ASCII`, { reasonDetail: 'param_bytes' });
    }
    // RFC 6749 §3.1: parameters sent without a value are treated as if omitted.
    if (value !== '') params.set(name, value);
  }
  return params;
}

function decode(text: string): string {
  try {
    return decodeURIComponent(text.replaceAll('+', ' '));
  } catch {
    throw new BrokerError('invalid_request', 'the form has a malformed percent-encoding', { reasonDetail: 'percent_encoding' });
  }
}

function tooLarge(maxBytes: number): BrokerError {
  return new BrokerError('invalid_request', `the request body is larger than ${maxBytes} bytes`, { status: 413, reasonDetail: 'body_too_large' });
}

function printable(text: string): string {
  return JSON.stringify(text.slice(0, 40)).slice(1, -1);
}

/** A JSON answer that no cache may keep (RFC 6749 §5.1). */
export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': String(Buffer.byteLength(text)),
    'cache-control': 'no-store',
    pragma: 'no-cache',
    ...headers,
  });
  res.end(text);
}

/** An RFC 6749 §5.2 error answer; a 401 whose catalog entry says so carries the Basic challenge (§5.2). */
export function sendOAuthError(res: ServerResponse, error: BrokerError, headers: Record<string, string> = {}): void {
  const extra: Record<string, string> = { ...headers };
  if (error.status === 401 && OAUTH_ERRORS[error.error].challenge === 'basic') extra['www-authenticate'] = 'Basic realm="agentgate", charset="UTF-8"';
  if (error.retryAfterSeconds !== undefined) extra['retry-after'] = String(Math.max(1, Math.ceil(error.retryAfterSeconds)));
  if (error.status === 413) extra.connection = 'close';
  sendJson(res, error.status, { error: error.error, error_description: describeSafely(error.description) }, extra);
}

/** RFC 6749 §5.2: error_description is %x20-21 / %x23-5B / %x5D-7E (no `"`, no `\`). */
function describeSafely(text: string): string {
  return text.replaceAll('"', "'").replaceAll('\\', '/').replace(/[^\x20-\x7e]/g, '?');
}
