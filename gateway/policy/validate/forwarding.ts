// What a backend connects to and passes on: the upstream URL, the extra request headers and
// cookies it may receive, and the extra answer headers the agent may receive (never a reserved one).
import { DEFAULT_FORWARD_HEADERS, DEFAULT_RESPONSE_HEADERS, normaliseHeaderName, reservedHeader, reservedResponseHeader } from '../../headers.js';
import type { Position, RawEntry } from '../load.js';
import { describe } from '../units.js';
import { kindOf, type Checker } from './checker.js';

/** A header field name (RFC 9110 §5.1 token), written the way the gateway forwards it. */
const HEADER_NAME = /^[a-z0-9][a-z0-9-]*$/;

/** A cookie name (RFC 6265 §4.1.1 token). */
const COOKIE_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** `forwardHeaders: [x-tenant, ...]`: extra request headers the backend receives (never reserved ones). */
export function validateForwardHeaders(c: Checker, entry: RawEntry | undefined, path: string): string[] | null {
  return validateHeaderNames(c, entry, path, {
    example: 'x-tenant-id',
    defaults: DEFAULT_FORWARD_HEADERS,
    defaultsSay: 'forwarded by default',
    exactly: 'the gateway forwards only that exact spelling',
    reserved(normalised) {
      const reserved = reservedHeader(normalised);
      if (reserved === null) return null;
      const why = reserved === 'cookie' ? 'cookies are listed by name in forwardCookies' : 'the gateway sets or refuses it itself';
      return `${reserved === normalised ? reserved : `${reserved}-*`}): ${why}`;
    },
  });
}

/** `responseHeaders: [x-total-count, ...]`: extra answer headers the agent receives (never reserved ones). */
export function validateResponseHeaders(c: Checker, entry: RawEntry | undefined, path: string): string[] | null {
  return validateHeaderNames(c, entry, path, {
    example: 'x-total-count',
    defaults: DEFAULT_RESPONSE_HEADERS,
    defaultsSay: 'passed back by default',
    exactly: 'the gateway passes back only that exact spelling',
    reserved(normalised) {
      const reserved = reservedResponseHeader(normalised);
      if (reserved === null) return null;
      return `${reserved[0]}): ${reserved[1]}`;
    },
  });
}

interface HeaderListRules {
  readonly example: string;
  readonly defaults: readonly string[];
  readonly defaultsSay: string;
  readonly exactly: string;
  /** `name): why` for a reserved (normalised) name, or null. */
  reserved(normalised: string): string | null;
}

function validateHeaderNames(c: Checker, entry: RawEntry | undefined, path: string, rules: HeaderListRules): string[] | null {
  if (entry === undefined) return [];
  const items = c.list(entry, path);
  if (items === null) return null;
  const names: string[] = [];
  let ok = true;
  items.forEach((item, i) => {
    const iPath = `${path}[${i}]`;
    if (item.kind !== 'scalar' || typeof item.value !== 'string' || item.value === '') {
      c.add(item.at, iPath, `expected a header name such as ${rules.example}, got ${item.kind === 'scalar' ? describe(item.value) : kindOf(item)}`);
      ok = false;
      return;
    }
    const name = item.value;
    const normalised = normaliseHeaderName(name);
    const reserved = rules.reserved(normalised);
    if (reserved !== null) {
      c.add(item.at, iPath, `"${name}" is reserved (${reserved}`);
      ok = false;
    } else if (!HEADER_NAME.test(name)) {
      c.add(item.at, iPath, `"${name}": write header names in lower case with - (e.g. ${HEADER_NAME.test(normalised) ? normalised : rules.example}); ${rules.exactly}`);
      ok = false;
    } else if (names.includes(name) || rules.defaults.includes(name)) {
      c.add(item.at, iPath, names.includes(name) ? `"${name}" is listed twice` : `"${name}" is ${rules.defaultsSay}; leave it out`);
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
