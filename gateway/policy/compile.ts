// Route templates -> one trie per backend, built at load. Matching walks the trie most-specific
// first (literal, listed values, parameter, `*`) with backtracking; nothing is compiled per request.
import type { Route, RouteMatch, RouteMethod, RouteTable } from './types.js';

export type Segment =
  | { readonly kind: 'literal'; readonly value: string }
  | { readonly kind: 'enum'; readonly name: string; readonly values: ReadonlySet<string> }
  | { readonly kind: 'param'; readonly name: string }
  | { readonly kind: 'wild' };

export interface ParsedRoute {
  readonly method: RouteMethod;
  readonly segments: readonly Segment[];
}

const METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'ANY']);
const LITERAL = /^[A-Za-z0-9._~-]+$/;
const PARAM = /^:([A-Za-z_][A-Za-z0-9_]*)(?:\(([^()]*)\))?$/;

/** Parse `METHOD /a/:b/:c(x|y)/*`. Returns the parsed route or a message saying what is wrong. */
export function parseRoute(text: string): ParsedRoute | string {
  const m = /^([A-Za-z]+) +(\S+)$/.exec(text.trim());
  if (m === null) return `"${text}" is not a route (use "METHOD /path", e.g. "GET /contacts/:id")`;
  const method = (m[1] ?? '').toUpperCase();
  const path = m[2] ?? '';
  if (!METHODS.has(method) || m[1] !== method) {
    return `"${m[1] ?? ''}" is not a method (use one of: ${[...METHODS].join(', ')}, in capitals)`;
  }
  if (!path.startsWith('/')) return `path "${path}" must start with /`;
  if (path.includes('?') || path.includes('#')) return `path "${path}" must not contain a query or fragment`;
  if (path === '/') return { method: method as RouteMethod, segments: [] };
  const parts = path.slice(1).split('/');
  const segments: Segment[] = [];
  const names = new Set<string>();
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i] ?? '';
    if (part === '') return `path "${path}" has an empty segment (no "//" and no trailing "/")`;
    if (part === '*') {
      if (i !== parts.length - 1) return `"*" may only be the last segment (in "${path}")`;
      segments.push({ kind: 'wild' });
      continue;
    }
    if (part.startsWith(':')) {
      const p = PARAM.exec(part);
      const name = p?.[1];
      if (p === null || name === undefined) return `"${part}" is not a parameter (use :name or :name(a|b))`;
      if (names.has(name)) return `parameter ":${name}" appears twice in "${path}"`;
      names.add(name);
      if (p[2] === undefined) {
        segments.push({ kind: 'param', name });
      } else {
        const values = p[2].split('|');
        const bad = values.find((v) => !LITERAL.test(v) || v === '.' || v === '..');
        if (bad !== undefined) return `listed value "${bad}" of ":${name}" must use only A-Z a-z 0-9 . _ ~ -`;
        segments.push({ kind: 'enum', name, values: new Set(values) });
      }
      continue;
    }
    if (!LITERAL.test(part) || part === '.' || part === '..') {
      return `segment "${part}" must use only A-Z a-z 0-9 . _ ~ - (and not be . or ..)`;
    }
    segments.push({ kind: 'literal', value: part });
  }
  return { method: method as RouteMethod, segments };
}

interface Entry {
  readonly routes: Route[];
  /** Parameter names by position among the variable segments (the first route's names). */
  readonly names: readonly string[];
}

interface Terminal {
  readonly byMethod: Map<string, Entry>;
}

interface TrieNode {
  readonly literal: Map<string, TrieNode>;
  readonly enums: Array<{ readonly values: ReadonlySet<string>; readonly node: TrieNode }>;
  param: TrieNode | null;
  wild: Terminal | null;
  end: Terminal | null;
}

function newNode(): TrieNode {
  return { literal: new Map(), enums: [], param: null, wild: null, end: null };
}

/** Builds one backend's RouteTable. `add` returns a problem message or null. */
export class RouteTableBuilder {
  readonly #root = newNode();

  add(route: Route, parsed: ParsedRoute): string | null {
    let node = this.#root;
    const names: string[] = [];
    for (const segment of parsed.segments) {
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
          names.push(segment.name);
          const same = node.enums.find((e) => sameSet(e.values, segment.values));
          if (same !== undefined) {
            node = same.node;
            break;
          }
          const overlap = node.enums.find((e) => [...segment.values].some((v) => e.values.has(v)));
          if (overlap !== undefined) {
            return `listed values of ":${segment.name}" overlap another route's (${[...overlap.values].join('|')}) at the same position: a request could match both`;
          }
          const next = newNode();
          node.enums.push({ values: segment.values, node: next });
          node = next;
          break;
        }
        case 'param':
          names.push(segment.name);
          node.param ??= newNode();
          node = node.param;
          break;
        case 'wild': {
          names.push('*');
          node.wild ??= { byMethod: new Map() };
          return addTo(node.wild, route, names);
        }
      }
    }
    node.end ??= { byMethod: new Map() };
    return addTo(node.end, route, names);
  }

  build(): RouteTable {
    const root = this.#root;
    return Object.freeze({
      match(method: string, segments: readonly string[]): RouteMatch | null {
        const values: string[] = [];
        const entry = walk(root, segments, 0, method, values);
        if (entry === null) return null;
        const params: Record<string, string> = {};
        for (let i = 0; i < entry.names.length; i++) {
          const name = entry.names[i];
          const value = values[i];
          if (name !== undefined && value !== undefined) params[name] = value;
        }
        return { routes: entry.routes, params };
      },
    });
  }
}

function addTo(terminal: Terminal, route: Route, names: readonly string[]): string | null {
  const existing = terminal.byMethod.get(route.method);
  if (existing === undefined) {
    terminal.byMethod.set(route.method, { routes: [route], names });
    return null;
  }
  if (existing.routes.some((r) => r.scope === route.scope)) {
    return `route "${route.template}" is listed twice in ${route.scope}`;
  }
  existing.routes.push(route);
  return null;
}

function pick(terminal: Terminal | null, method: string): Entry | null {
  if (terminal === null) return null;
  return terminal.byMethod.get(method) ?? (method === 'HEAD' ? terminal.byMethod.get('GET') : undefined) ?? terminal.byMethod.get('ANY') ?? null;
}

function walk(node: TrieNode, segments: readonly string[], i: number, method: string, values: string[]): Entry | null {
  if (i === segments.length) return pick(node.end, method);
  const segment = segments[i] ?? '';
  const literal = node.literal.get(segment);
  if (literal !== undefined) {
    const found = walk(literal, segments, i + 1, method, values);
    if (found !== null) return found;
  }
  if (segment === '') return null;
  for (const e of node.enums) {
    if (!e.values.has(segment)) continue;
    values.push(segment);
    const found = walk(e.node, segments, i + 1, method, values);
    if (found !== null) return found;
    values.pop();
  }
  if (node.param !== null) {
    values.push(segment);
    const found = walk(node.param, segments, i + 1, method, values);
    if (found !== null) return found;
    values.pop();
  }
  const wild = pick(node.wild, method);
  if (wild !== null) {
    values.push(segments.slice(i).join('/'));
    return wild;
  }
  return null;
}

function sameSet(a: ReadonlySet<string>, b: ReadonlySet<string>): boolean {
  return a.size === b.size && [...a].every((v) => b.has(v));
}
