// Route templates -> one frozen trie per backend, built at load. Matching walks it most specific
// first (literal, listed values, parameter, `*`) with backtracking; per request it allocates only
// the match and its params.
import { BlockList, isIP } from 'node:net';
import { DEFAULT_FORWARD_HEADERS, DEFAULT_RESPONSE_HEADERS } from '../headers.js';
import type { MaskRule, NetworkSet, Route, RouteMatch, RouteMethod, RouteTable, UriTemplate } from './types.js';

export type Segment =
  | { readonly kind: 'literal'; readonly value: string }
  | { readonly kind: 'enum'; readonly name: string; readonly values: ReadonlySet<string> }
  | { readonly kind: 'param'; readonly name: string }
  | { readonly kind: 'wild' };

export interface ParsedRoute {
  readonly method: RouteMethod;
  /** `/a/:b`, the path as written. */
  readonly path: string;
  readonly segments: readonly Segment[];
}

export const ROUTE_METHODS: readonly RouteMethod[] = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'ANY'];
const LITERAL = /^[A-Za-z0-9._~-]+$/;
const PARAM_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const LITERAL_HELP = 'A-Z a-z 0-9 . _ ~ -';

/**
 * Parse `METHOD /a/:b/:c(x|y)/*`. Returns the route, or a message naming the route and what is
 * wrong with it.
 */
export function parseRoute(text: string): ParsedRoute | string {
  const m = /^(\S+) +(\S+)$/.exec(text.trim());
  const word = m?.[1];
  const path = m?.[2];
  if (word === undefined || path === undefined) return `"${text}" is not a route (use "METHOD /path", e.g. "GET /contacts/:id")`;
  const bad = (what: string): string => `route "${text.trim()}": ${what}`;
  const method = ROUTE_METHODS.find((x) => x === word);
  if (method === undefined) {
    const upper = ROUTE_METHODS.find((x) => x === word.toUpperCase());
    return bad(upper === undefined ? `unknown method "${word}" (allowed: ${ROUTE_METHODS.join(', ')})` : `write the method in capitals ("${upper}")`);
  }
  if (!path.startsWith('/')) return bad('the path must start with "/"');
  if (path.includes('?') || path.includes('#')) return bad('a route has no query or fragment');
  if (path === '/') return { method, path, segments: [] };
  if (path.endsWith('/')) return bad('no trailing "/" (only the root route is "/")');
  const parts = path.slice(1).split('/');
  const segments: Segment[] = [];
  const names = new Set<string>();
  for (const [i, part] of parts.entries()) {
    if (part === '') return bad('empty segment ("//")');
    if (part === '*') {
      if (i !== parts.length - 1) return bad('"*" may only be the last segment');
      segments.push({ kind: 'wild' });
      continue;
    }
    if (part.startsWith(':')) {
      const p = /^:([^()]*)(?:\((.*)\))?$/.exec(part);
      const name = p?.[1];
      if (p === null || name === undefined) return bad(`"${part}" is not a parameter (use :name or :name(a|b))`);
      if (!PARAM_NAME.test(name)) return bad(`"${part}": a parameter name is a letter or _ followed by letters, digits or _`);
      if (names.has(name)) return bad(`parameter ":${name}" appears twice`);
      names.add(name);
      const list = p[2];
      if (list === undefined) {
        segments.push({ kind: 'param', name });
        continue;
      }
      const values = list.split('|');
      for (const v of values) {
        if (v === '') return bad(`":${name}" lists an empty value`);
        if (!LITERAL.test(v) || v === '.' || v === '..') return bad(`":${name}" lists "${v}"; listed values use only ${LITERAL_HELP} and are not . or ..`);
      }
      segments.push({ kind: 'enum', name, values: new Set(values) });
      continue;
    }
    if (part === '.' || part === '..') return bad(`segment "${part}" is not allowed`);
    if (!LITERAL.test(part)) return bad(`segment "${part}" may use only ${LITERAL_HELP} (parameters start with ":")`);
    segments.push({ kind: 'literal', value: part });
  }
  return { method, path, segments };
}

/** A variable position of a route: where its value is in the request, and its name. */
interface Variable {
  readonly index: number;
  readonly name: string;
  readonly wild: boolean;
}

/** Every route of one method at one trie position (one per scope). */
interface Entry {
  readonly routes: Route[];
  /** Taken from the first route; every other route of the entry uses the same names. */
  readonly variables: readonly Variable[];
}

/** Routes by method at a trie position. */
type Terminal = Map<string, Entry>;

interface TrieNode {
  readonly literal: Map<string, TrieNode>;
  /** Child per listed value; the value sets at one node are disjoint (checked when added). */
  readonly enumByValue: Map<string, TrieNode>;
  /** The listed-value children, each with its value set, for the overlap check. */
  readonly enums: Array<{ readonly values: ReadonlySet<string>; readonly node: TrieNode }>;
  param: TrieNode | null;
  /** Routes ending in `*` here: they take one or more remaining segments. */
  wild: Terminal | null;
  /** Routes ending exactly here. */
  end: Terminal | null;
}

function newNode(): TrieNode {
  return { literal: new Map(), enumByValue: new Map(), enums: [], param: null, wild: null, end: null };
}

/** Builds one backend's RouteTable. `add` returns a problem message, or null when the route is in. */
export class RouteTableBuilder {
  readonly #root = newNode();
  #built = false;

  add(route: Route, parsed: ParsedRoute): string | null {
    if (this.#built) throw new Error('RouteTableBuilder.add after build');
    let node = this.#root;
    const variables: Variable[] = [];
    for (const [index, segment] of parsed.segments.entries()) {
      switch (segment.kind) {
        case 'literal': {
          let next = node.literal.get(segment.value);
          if (next === undefined) {
            next = newNode();
            node.literal.set(segment.value, next);
          }
          node = next;
          break;
        }
        case 'enum': {
          variables.push({ index, name: segment.name, wild: false });
          const same = node.enums.find((e) => sameSet(e.values, segment.values));
          if (same !== undefined) {
            node = same.node;
            break;
          }
          const overlap = node.enums.find((e) => [...segment.values].some((v) => e.values.has(v)));
          if (overlap !== undefined) {
            const shared = [...segment.values].filter((v) => overlap.values.has(v));
            return `route "${route.template}": ":${segment.name}(${[...segment.values].join('|')})" overlaps the listed values (${[...overlap.values].join('|')}) of another route at the same position: a request with ${shared.map((v) => `"${v}"`).join(' or ')} there would match both`;
          }
          const next = newNode();
          node.enums.push({ values: segment.values, node: next });
          for (const v of segment.values) node.enumByValue.set(v, next);
          node = next;
          break;
        }
        case 'param':
          variables.push({ index, name: segment.name, wild: false });
          node.param ??= newNode();
          node = node.param;
          break;
        case 'wild':
          variables.push({ index, name: '*', wild: true });
          node.wild ??= new Map();
          return addTo(node.wild, route, variables);
      }
    }
    node.end ??= new Map();
    return addTo(node.end, route, variables);
  }

  /** Freeze the trie and return its matcher. */
  build(): RouteTable {
    this.#built = true;
    const root = freezeNode(this.#root);
    return Object.freeze({
      match(method: string, segments: readonly string[]): RouteMatch | null {
        const entry = walk(root, segments, 0, method);
        if (entry === null) return null;
        const params: Record<string, string> = {};
        for (const v of entry.variables) {
          params[v.name] = v.wild ? segments.slice(v.index).join('/') : (segments[v.index] ?? '');
        }
        return { routes: entry.routes, params };
      },
    });
  }
}

function addTo(terminal: Terminal, route: Route, variables: readonly Variable[]): string | null {
  const existing = terminal.get(route.method);
  if (existing === undefined) {
    terminal.set(route.method, { routes: [route], variables });
    return null;
  }
  const first = existing.routes[0];
  if (existing.routes.some((r) => r.scope === route.scope)) {
    return `route "${route.template}" is listed twice in ${route.scope}`;
  }
  if (first !== undefined && !sameNames(existing.variables, variables)) {
    // Same requests, same specificity, different parameter names: the params of a match would
    // depend on which scope's route was listed first.
    return `route "${route.template}" matches the same requests as "${first.template}" (${first.scope}) but names its parameters differently; write both the same way`;
  }
  existing.routes.push(route);
  return null;
}

/** The route for `method` at a terminal: the exact method, then GET for HEAD, then ANY. */
function pick(terminal: Terminal | null, method: string): Entry | null {
  if (terminal === null) return null;
  return terminal.get(method) ?? (method === 'HEAD' ? terminal.get('GET') : undefined) ?? terminal.get('ANY') ?? null;
}

function walk(node: TrieNode, segments: readonly string[], i: number, method: string): Entry | null {
  if (i === segments.length) return pick(node.end, method);
  const segment = segments[i];
  // Templates never hold empty segments, so a request with one (`//`, trailing `/`) matches nothing.
  if (segment === undefined || segment === '') return null;
  const literal = node.literal.get(segment);
  if (literal !== undefined) {
    const found = walk(literal, segments, i + 1, method);
    if (found !== null) return found;
  }
  const listed = node.enumByValue.get(segment);
  if (listed !== undefined) {
    const found = walk(listed, segments, i + 1, method);
    if (found !== null) return found;
  }
  if (node.param !== null) {
    const found = walk(node.param, segments, i + 1, method);
    if (found !== null) return found;
  }
  if (node.wild !== null && noEmptyFrom(segments, i + 1)) return pick(node.wild, method);
  return null;
}

function noEmptyFrom(segments: readonly string[], start: number): boolean {
  for (let j = start; j < segments.length; j++) if (segments[j] === '') return false;
  return true;
}

function freezeNode(node: TrieNode): TrieNode {
  for (const child of node.literal.values()) freezeNode(child);
  for (const e of node.enums) freezeNode(e.node);
  if (node.param !== null) freezeNode(node.param);
  for (const terminal of [node.end, node.wild]) {
    for (const entry of terminal?.values() ?? []) {
      Object.freeze(entry.routes);
      Object.freeze(entry.variables);
      Object.freeze(entry);
    }
  }
  Object.freeze(node.enums);
  return Object.freeze(node);
}

function sameNames(a: readonly Variable[], b: readonly Variable[]): boolean {
  return a.length === b.length && a.every((v, i) => v.name === b[i]?.name);
}

function sameSet(a: ReadonlySet<string>, b: ReadonlySet<string>): boolean {
  return a.size === b.size && [...a].every((v) => b.has(v));
}

/**
 * A mask path: keys separated by `.`; a key holding dots or brackets is written `["a.b"]`; `*`
 * is any one key; a leading `$.` anchors the path at the document root (otherwise it matches at
 * any depth). Arrays are transparent: `contacts.email` reaches the `email` of every element.
 * Returns the rule or a message saying what is wrong.
 */
export function parseMaskPath(text: string): MaskRule | string {
  let rest = text;
  let anchored = false;
  if (rest.startsWith('$.')) {
    anchored = true;
    rest = rest.slice(2);
  } else if (rest === '$') {
    return `"${text}": the root itself cannot be masked; name a field`;
  }
  const keys: string[] = [];
  let i = 0;
  while (i < rest.length) {
    if (rest[i] === '[') {
      const end = rest.indexOf('"]', i + 2);
      if (rest[i + 1] !== '"' || end === -1) return `"${text}": a bracketed key is written ["key.with.dots"]`;
      const key = rest.slice(i + 2, end);
      if (key === '' || key.includes('"') || key.includes('\\')) return `"${text}": a bracketed key is non-empty and holds no " or \\`;
      keys.push(key);
      i = end + 2;
    } else {
      let j = i;
      while (j < rest.length && rest[j] !== '.' && rest[j] !== '[') j++;
      const key = rest.slice(i, j);
      if (key === '') return `"${text}": empty key (two dots, or a dot at an end)`;
      if (key.includes(']') || key.includes('"')) return `"${text}": "${key}" holds ] or "; write such keys as ["..."]`;
      keys.push(key);
      i = j;
    }
    if (i < rest.length) {
      if (rest[i] === '.') {
        i++;
        if (i === rest.length) return `"${text}": empty key (two dots, or a dot at an end)`;
      } else if (rest[i] !== '[') {
        return `"${text}": expected "." or "[" after a key`;
      }
    }
  }
  if (keys.length === 0) return `"${text}": empty path`;
  if (keys.every((k) => k === '*') && !anchored) return `"${text}": a path of only "*" would mask everything; name a field`;
  return Object.freeze({ keys: Object.freeze(keys), anchored });
}

export interface ParsedCidr {
  readonly address: string;
  readonly prefix: number;
  readonly family: 'ipv4' | 'ipv6';
}

/** `10.0.0.0/8`, `fd00::/8`, or a single address (a /32 or /128). Returns the network or a message. */
export function parseCidr(text: string): ParsedCidr | string {
  const slash = text.indexOf('/');
  const address = slash === -1 ? text : text.slice(0, slash);
  const version = isIP(address);
  if (version === 0 || address.includes('%')) return `"${text}" is not an IPv4 or IPv6 network (e.g. 10.0.0.0/8, fd00::/8, 192.0.2.7)`;
  const max = version === 4 ? 32 : 128;
  const prefixText = slash === -1 ? String(max) : text.slice(slash + 1);
  if (!/^\d{1,3}$/.test(prefixText) || Number(prefixText) > max) return `"${text}": the prefix length must be 0 to ${max}`;
  return { address, prefix: Number(prefixText), family: version === 4 ? 'ipv4' : 'ipv6' };
}

/** Compile parsed networks into one matcher. */
export function buildNetworkSet(cidrs: readonly { text: string; parsed: ParsedCidr }[]): NetworkSet {
  const list = new BlockList();
  for (const { parsed } of cidrs) list.addSubnet(parsed.address, parsed.prefix, parsed.family);
  return Object.freeze({ cidrs: Object.freeze(cidrs.map((c) => c.text)), list });
}

/**
 * One backend's request-header allowlist: the safe defaults plus its validated `forwardHeaders`,
 * as one frozen set of exact lower-case names, so forwarding does one lookup per header.
 */
export function compileForwardHeaders(extra: readonly string[]): ReadonlySet<string> {
  return Object.freeze(new Set([...DEFAULT_FORWARD_HEADERS, ...extra]));
}

/** One backend's answer-header allowlist: the defaults plus its validated `responseHeaders`. */
export function compileResponseHeaders(extra: readonly string[]): ReadonlySet<string> {
  return Object.freeze(new Set([...DEFAULT_RESPONSE_HEADERS, ...extra]));
}

const URI_SCHEME = /^[A-Za-z][A-Za-z0-9+.-]*:/;
const TEMPLATE_VARIABLE = /^[A-Za-z0-9_]+$/;

/**
 * An MCP resource grant: an RFC 6570 level-1 template such as `tickets://{id}` or
 * `kb://articles/{slug}`. Each `{name}` matches one or more characters other than / ? # (one
 * path segment), so `tickets://{id}` never grants `tickets://1/../admin`. Returns the template or
 * a message saying what is wrong.
 */
export function parseUriTemplate(text: string): UriTemplate | string {
  if (!URI_SCHEME.test(text)) return `"${text}" is not a URI template with a scheme (e.g. tickets://{id})`;
  let pattern = '^';
  let i = 0;
  while (i < text.length) {
    const open = text.indexOf('{', i);
    const literal = open === -1 ? text.slice(i) : text.slice(i, open);
    if (literal.includes('}')) return `"${text}": unbalanced "}"`;
    if (/[\s"<>\\^`|]/.test(literal)) return `"${text}": spaces and " < > \\ ^ \` | are not allowed in a URI`;
    pattern += literal.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    if (open === -1) break;
    const close = text.indexOf('}', open);
    if (close === -1) return `"${text}": unbalanced "{"`;
    const name = text.slice(open + 1, close);
    if (!TEMPLATE_VARIABLE.test(name)) return `"${text}": "{${name}}" is not a simple variable (only {name}: operators such as {+path} or {?q} are not supported)`;
    if (text[close + 1] === '{') return `"${text}": two variables side by side would match ambiguously`;
    pattern += '[^/?#]+';
    i = close + 1;
  }
  return Object.freeze({ text, pattern: new RegExp(`${pattern}$`) });
}
