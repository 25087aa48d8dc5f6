// Canonicalise and check the request target in one pass, and check the declared body size. Pure and
// synchronous, no dependency. Ambiguous targets are marked `invalid`, never repaired: authorize raises
// target_invalid after authentication, so a missing token still answers 401 first.
import type { InboundRequest, RequestContext, Stage, Target } from '../context.js';
import { GatewayError } from '../errors.js';

export interface NormalizeOptions {
  readonly maxBodyBytes: number;
}

const END = -1;
const SLASH = 0x2f;
const PERCENT = 0x25;
const QUESTION = 0x3f;
const HASH = 0x23;
const SEMICOLON = 0x3b;
const BACKSLASH = 0x5c;

/** RFC 3986 §2.3 unreserved: the only escapes decoded. */
const UNRESERVED = new Uint8Array(128);
/** RFC 3986 §3.3 pchar, raw, minus `;` (path parameters are refused) and `%` (handled apart). */
const PATH_OK = new Uint8Array(128);
/** RFC 3986 §3.4 query: pchar plus `/` and `?`, raw, minus `%`. */
const QUERY_OK = new Uint8Array(128);
for (const ch of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~') UNRESERVED[ch.charCodeAt(0)] = 1;
for (let i = 0; i < 128; i++) PATH_OK[i] = UNRESERVED[i] ?? 0;
for (const ch of "!$&'()*+,=:@") PATH_OK[ch.charCodeAt(0)] = 1;
for (let i = 0; i < 128; i++) QUERY_OK[i] = PATH_OK[i] ?? 0;
for (const ch of ';/?') QUERY_OK[ch.charCodeAt(0)] = 1;

const HEX_UPPER = '0123456789ABCDEF';
const utf8 = new TextDecoder('utf-8', { fatal: true });
/** Characters a Unicode lookalike must not fold into (NFKC), lest a normalising backend see a delimiter. */
const FOLDED_DELIMITER = /[/\\.%?#;\u0000-\u001f\u007f]/;

/**
 * Scratch for one run of percent-encoded bytes >= 0x80. Module-level but never state between
 * requests: `parseTarget` is synchronous and each run is consumed before it returns.
 */
let scratch: Uint8Array = new Uint8Array(256);

export function createNormalize(options: NormalizeOptions): Stage {
  const { maxBodyBytes } = options;
  if (!Number.isSafeInteger(maxBodyBytes) || maxBodyBytes < 0) {
    throw new TypeError(`normalize: maxBodyBytes must be a non-negative integer, got ${String(maxBodyBytes)}`);
  }
  return {
    name: 'normalize',
    run(ctx: RequestContext): void {
      const request = ctx.request;
      const length = declaredLength(request);
      if (typeof length === 'number' && length > maxBodyBytes) {
        throw new GatewayError('body_too_large', `the request body may be at most ${maxBodyBytes} bytes`, {
          reasonDetail: `Content-Length ${length} > ${maxBodyBytes}`,
        });
      }
      if (typeof length === 'string') {
        // Request smuggling or a length nobody can agree on: the target is unusable as a whole.
        const target = parseTarget(request.method, request.url);
        ctx.target = refuse(request.method, length, target.backend, null);
        return;
      }
      ctx.target = parseTarget(request.method, request.url, length);
    },
  };
}

/**
 * Parse an origin-form target into backend, canonical path and raw query (RFC 9112 §3.2.1).
 * Never throws: a target it will not forward comes back with `invalid` set and no segments.
 */
export function parseTarget(method: string, url: string, contentLength: number | null = null): Target {
  const end = url.length;
  if (end === 0 || url.charCodeAt(0) !== SLASH) return refuse(method, nonOriginForm(url), '', contentLength);

  let backend: string | null = null;
  const segments: string[] = [];
  let pathStart = end; // index of the `/` that ends the backend segment
  let rewritten = false; // some segment after the backend differs from its raw bytes
  let segStart = 1;
  // Canonical text of the current segment is `built + url.slice(copyFrom, i)` once it has an escape.
  let escaped = false;
  let built = '';
  let copyFrom = 1;
  let run = 0; // encoded bytes >= 0x80 in `scratch`, checked as UTF-8 when the run ends
  let i = 1;
  let c = END;

  for (;;) {
    c = i < end ? url.charCodeAt(i) : END;
    if (c === PERCENT) {
      const hi = hexValue(url.charCodeAt(i + 1));
      const lo = hexValue(url.charCodeAt(i + 2));
      if (hi < 0 || lo < 0) return refuse(method, 'malformed percent escape', backend, contentLength);
      const byte = (hi << 4) | lo;
      if (!escaped) {
        escaped = true;
        built = url.slice(segStart, i);
      } else if (copyFrom < i) {
        built += url.slice(copyFrom, i);
      }
      copyFrom = i + 3;
      i += 3;
      if (byte >= 0x80) {
        if (run === scratch.length) scratch = grow(scratch);
        scratch[run++] = byte;
        built += `%${HEX_UPPER[hi]}${HEX_UPPER[lo]}`;
        continue;
      }
      if (run > 0) {
        const why = checkRun(run);
        if (why !== null) return refuse(method, why, backend, contentLength);
        run = 0;
      }
      if (UNRESERVED[byte] === 1) {
        built += String.fromCharCode(byte);
        continue;
      }
      const why = forbiddenEscape(byte);
      if (why !== null) return refuse(method, why, backend, contentLength);
      built += `%${HEX_UPPER[hi]}${HEX_UPPER[lo]}`;
      continue;
    }
    if (run > 0) {
      const why = checkRun(run);
      if (why !== null) return refuse(method, why, backend, contentLength);
      run = 0;
    }
    if (c === SLASH || c === QUESTION || c === END) {
      let segment: string;
      if (escaped) {
        segment = copyFrom < i ? built + url.slice(copyFrom, i) : built;
        if (backend !== null) rewritten = true;
        escaped = false;
        built = '';
      } else {
        segment = url.slice(segStart, i);
      }
      if (segment === '') {
        // `//` anywhere (also a leading `//`, which some stacks read as an authority). A final
        // empty segment is a trailing slash, kept as sent.
        if (c === SLASH) return refuse(method, 'empty segment', backend, contentLength);
      } else if (segment === '.' || segment === '..') {
        return refuse(method, 'dot segment', backend, contentLength);
      }
      if (backend === null) {
        backend = segment;
        pathStart = i;
      } else {
        segments.push(segment);
      }
      if (c !== SLASH) break;
      i++;
      segStart = i;
      copyFrom = i;
      continue;
    }
    if (c > 0x7f || PATH_OK[c] !== 1) return refuse(method, rawByteReason(c, 'path'), backend, contentLength);
    i++;
  }

  const pathEnd = i;
  if (backend === null || backend === '') return refuse(method, 'no backend in target', '', contentLength);

  let query = '';
  if (c === QUESTION) {
    for (let q = pathEnd + 1; q < end; q++) {
      const qc = url.charCodeAt(q);
      if (qc === PERCENT) {
        const hi = hexValue(url.charCodeAt(q + 1));
        const lo = hexValue(url.charCodeAt(q + 2));
        if (hi < 0 || lo < 0) return refuse(method, 'malformed percent escape in query', backend, contentLength);
        const byte = (hi << 4) | lo;
        if (byte < 0x20 || byte === 0x7f) return refuse(method, 'encoded control byte in query', backend, contentLength);
        q += 2;
        continue;
      }
      if (qc > 0x7f || QUERY_OK[qc] !== 1) return refuse(method, rawByteReason(qc, 'query'), backend, contentLength);
    }
    query = url.slice(pathEnd);
  }

  // `/crm/` addresses the backend root exactly like `/crm`: both forward `/`.
  if (segments.length === 1 && segments[0] === '') segments.pop();
  let path: string;
  if (segments.length === 0) path = '/';
  else if (rewritten) path = `/${segments.join('/')}`;
  else path = url.slice(pathStart, pathEnd);
  return { method, backend, path, query, segments, invalid: null, contentLength };
}

function refuse(method: string, why: string, backend: string | null, contentLength: number | null): Target {
  return { method, backend: backend ?? '', path: '', query: '', segments: [], invalid: why, contentLength };
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return -1; // also NaN past the end of the string
}

/** Why an escaped ASCII byte that is not unreserved is refused, or null to keep it escaped. */
function forbiddenEscape(byte: number): string | null {
  if (byte === SLASH) return 'encoded slash';
  if (byte === BACKSLASH) return 'encoded backslash';
  if (byte === PERCENT) return 'encoded percent (double encoding)';
  if (byte < 0x20 || byte === 0x7f) return byte === 0 ? 'encoded NUL' : 'encoded control byte';
  return null;
}

/**
 * One run of encoded bytes >= 0x80 must be well-formed UTF-8 (no overlongs, surrogates or stray
 * continuation bytes) and must not fold (NFKC) into a delimiter such as a fullwidth `/` or `.`.
 */
function checkRun(length: number): string | null {
  let text: string;
  try {
    text = utf8.decode(scratch.subarray(0, length));
  } catch {
    return 'escapes are not valid UTF-8';
  }
  return FOLDED_DELIMITER.test(text.normalize('NFKC')) ? 'escaped character folds to a delimiter' : null;
}

function grow(buffer: Uint8Array): Uint8Array {
  const bigger = new Uint8Array(buffer.length * 2);
  bigger.set(buffer);
  return bigger;
}

function rawByteReason(c: number, where: 'path' | 'query'): string {
  if (c === HASH) return 'fragment in target';
  if (c === SEMICOLON) return 'path parameter (;)';
  if (c === BACKSLASH) return `backslash in ${where}`;
  if (c < 0x20 || c === 0x7f) return `control byte in ${where}`;
  if (c > 0x7f) return `non-ASCII byte in ${where}`;
  return `byte not allowed in ${where}`;
}

/** Names the form of a target that does not start with `/` (RFC 9112 §3.2). */
function nonOriginForm(url: string): string {
  if (url === '*') return 'asterisk-form target';
  const colon = url.indexOf(':');
  if (colon <= 0) return 'target is not origin-form';
  for (let i = 0; i < colon; i++) {
    const c = url.charCodeAt(i) | 0x20;
    const ok = (c >= 0x61 && c <= 0x7a) || (i > 0 && ((c >= 0x30 && c <= 0x39) || c === 0x2b || c === 0x2d || c === 0x2e));
    if (!ok) return 'target is not origin-form';
  }
  for (let i = colon + 1; i < url.length; i++) {
    const c = url.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return 'absolute-form target';
  }
  return 'authority-form target';
}

/**
 * The declared body length, null when absent, or why it cannot be trusted: a malformed value,
 * differing values (RFC 9110 §8.6), or Content-Length beside Transfer-Encoding (RFC 9112 §6.3,
 * request smuggling). `rawHeaders` is read because node keeps only the first Content-Length.
 */
function declaredLength(request: InboundRequest): number | null | string {
  const raw = request.rawHeaders;
  let value: string | null = null;
  let transferEncoding = request.headers['transfer-encoding'] !== undefined;
  let seen = false;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i] ?? '';
    if (name.length === 14 && name.toLowerCase() === 'content-length') {
      const digits = lengthDigits(raw[i + 1] ?? '');
      if (digits === null) return 'malformed Content-Length';
      if (value !== null && value !== digits) return 'differing Content-Length values';
      value = digits;
      seen = true;
    } else if (name.length === 17 && name.toLowerCase() === 'transfer-encoding') {
      transferEncoding = true;
    }
  }
  if (!seen) {
    const header = request.headers['content-length'];
    if (header === undefined) return null;
    value = lengthDigits(header);
    if (value === null) return 'malformed Content-Length';
  }
  if (transferEncoding) return 'both Content-Length and Transfer-Encoding';
  return Number(value);
}

/**
 * The digits of a Content-Length field value without leading zeros, or null when malformed. A
 * list of identical values (`5, 5`) is one value; anything else must be plain digits.
 */
function lengthDigits(field: string): string | null {
  let result: string | null = null;
  let i = 0;
  const end = field.length;
  while (i <= end) {
    while (i < end && (field.charCodeAt(i) === 0x20 || field.charCodeAt(i) === 0x09)) i++;
    const start = i;
    while (i < end && field.charCodeAt(i) >= 0x30 && field.charCodeAt(i) <= 0x39) i++;
    if (i === start) return null;
    let first = start;
    while (first < i - 1 && field.charCodeAt(first) === 0x30) first++;
    const digits = field.slice(first, i);
    if (result !== null && result !== digits) return null;
    result = digits;
    while (i < end && (field.charCodeAt(i) === 0x20 || field.charCodeAt(i) === 0x09)) i++;
    if (i === end) return result;
    if (field.charCodeAt(i) !== 0x2c) return null;
    i++;
  }
  return null;
}
