// What a backend connects to and passes on: the upstream URL, and the extra request headers and
// cookies it may receive (never a reserved header).
import { DEFAULT_FORWARD_HEADERS, normaliseHeaderName, reservedHeader } from '../../headers.js';
import type { Position, RawEntry } from '../load.js';
import { describe } from '../units.js';
import { kindOf, type Checker } from './checker.js';

/** A header field name (RFC 9110 §5.1 token), written the way the gateway forwards it. */
const HEADER_NAME = /^[a-z0-9][a-z0-9-]*$/;

/** A cookie name (RFC 6265 §4.1.1 token). */
const COOKIE_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** `forwardHeaders: [x-tenant, ...]`: extra request headers the backend receives (never reserved ones). */
export function validateForwardHeaders(c: Checker, entry: RawEntry | undefined, path: string): string[] | null {
  if (entry === undefined) return [];
  const items = c.list(entry, path);
  if (items === null) return null;
  const names: string[] = [];
  let ok = true;
  items.forEach((item, i) => {
    const iPath = `${path}[${i}]`;
    if (item.kind !== 'scalar' || typeof item.value !== 'string' || item.value === '') {
      c.add(item.at, iPath, `expected a header name such as x-tenant-id, got ${item.kind === 'scalar' ? describe(item.value) : kindOf(item)}`);
      ok = false;
      return;
    }
    const name = item.value;
    const normalised = normaliseHeaderName(name);
    const reserved = reservedHeader(normalised);
    if (reserved !== null) {
      const why = reserved === 'cookie' ? 'cookies are listed by name in forwardCookies' : 'the gateway sets or refuses it itself';
      c.add(item.at, iPath, `"${name}" is reserved (${reserved === normalised ? reserved : `${reserved}-*`}): ${why}`);
      ok = false;
    } else if (!HEADER_NAME.test(name)) {
      c.add(item.at, iPath, `"${name}": write header names in lower case with - (e.g. ${HEADER_NAME.test(normalised) ? normalised : 'x-tenant-id'}); the gateway forwards only that exact spelling`);
      ok = false;
    } else if (names.includes(name) || DEFAULT_FORWARD_HEADERS.includes(name)) {
      c.add(item.at, iPath, names.includes(name) ? `"${name}" is listed twice` : `"${name}" is forwarded by default; leave it out`);
      ok = false;
    } else {
      names.push(name);
    }
  });
  return ok ? names : null;
}

/** `forwardCookies: [session_lang, ...]`: the only cookies the backend receives. */
export function validateForwardCookies(c: Checker, entry: RawEntry | undefined, path: string): string[] | null {
  if (entry === undefined) return [];
  const items = c.list(entry, path);
  if (items === null) return null;
  const names: string[] = [];
  let ok = true;
  items.forEach((item, i) => {
    const iPath = `${path}[${i}]`;
    if (item.kind !== 'scalar' || typeof item.value !== 'string' || !COOKIE_NAME.test(item.value)) {
      c.add(item.at, iPath, `expected a cookie name (letters, digits and !#$%&'*+-.^_\`|~), got ${item.kind === 'scalar' ? describe(item.value) : kindOf(item)}`);
      ok = false;
    } else if (names.includes(item.value)) {
      c.add(item.at, iPath, `"${item.value}" is listed twice`);
      ok = false;
    } else {
      names.push(item.value);
    }
  });
  return ok ? names : null;
}

export function checkUpstream(c: Checker, text: string, at: Position, path: string): URL | null {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    c.add(at, path, `"${text}" is not a URL (e.g. http://127.0.0.1:9101)`);
    return null;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    c.add(at, path, `"${text}": scheme must be http or https`);
    return null;
  }
  if (url.username !== '' || url.password !== '' || text.includes('?') || text.includes('#')) {
    c.add(at, path, `"${text}" must not carry credentials, a query or a fragment`);
    return null;
  }
  return url;
}
