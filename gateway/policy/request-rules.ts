// Validation of a route's request rules: `query:` (query-string parameters) and `json:` (a JSON
// body's fields), each rule compiled once into what stages/request-rules.ts checks per request.
// Every problem names file, line, path and what is allowed; nothing is guessed.
import type { RawEntry, RawNode } from './load.js';
import type { FieldRule, FieldRules, ValueRule } from './types.js';
import { describe } from './units.js';
import type { Checker } from './validate/checker.js';

export type RuleMode = 'query' | 'json';

/** Query parameter names are written plainly: no escapes, brackets or separators. */
const QUERY_NAME = /^[A-Za-z0-9._~-]{1,64}$/;
/** Listed query values are matched as sent, so they use only characters sent unescaped. */
const QUERY_VALUE = /^[A-Za-z0-9._~-]{1,128}$/;
/** Keys no JSON body may carry (prototype pollution in the backend's language). */
export const FORBIDDEN_KEYS: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype']);
/** Query names that override the method: always refused, so a rule cannot allow them. */
const METHOD_PARAMS = new Set(['_method', 'x_http_method_override', 'x_http_method', 'x_method_override']);
const TYPE_KEYS: Readonly<Record<RuleMode, readonly string[]>> = {
  query: ['int', 'number', 'enum', 'string', 'bool'],
  json: ['int', 'number', 'enum', 'string', 'bool', 'object', 'array'],
};
const DEFAULT_STRING_MAX = 1024;
const MAX_DEPTH = 8;

/** `limit` and `LIMIT`, `page.size` and `page_size` are one parameter to many frameworks. */
export function normaliseQueryName(name: string): string {
  return name.toLowerCase().replace(/[-.]/g, '_');
}

/** True when a `query:` entry is the older SQL marker `{ field: sql, dialect: ... }`. */
export function isSqlMarker(entry: RawEntry): boolean {
  const node = entry.value;
  if (node.kind !== 'map') return false;
  // Parameter rules are maps; the marker's `field` and `dialect` are plain values.
  for (const key of ['field', 'dialect']) {
    const entry = node.entries.get(key);
    if (entry !== undefined && entry.value.kind === 'scalar') return true;
  }
  return false;
}

/** `query: { name: rule, ... }` of a route. */
export function validateQueryRules(c: Checker, entry: RawEntry, additional: boolean, path: string): FieldRules | null {
  const fields = validateFields(c, entry.value, path, 'query', 0);
  return fields === null ? null : Object.freeze({ fields, additional });
}

/** `json: { fields: {...}, additional: false }` of a route. */
export function validateJsonRules(c: Checker, entry: RawEntry, path: string): FieldRules | null {
  return validateObject(c, entry, path, 0);
}

function validateObject(c: Checker, entry: RawEntry, path: string, depth: number): FieldRules | null {
  const keys = c.map(entry.value, path, ['fields', 'additional']);
  if (keys === null) return null;
  const fieldsEntry = c.required(keys, 'fields', path, entry.at);
  const additional = c.boolean(keys.get('additional'), `${path}.additional`) ?? false;
  if (fieldsEntry === undefined) return null;
  const fields = validateFields(c, fieldsEntry.value, `${path}.fields`, 'json', depth);
  return fields === null ? null : Object.freeze({ fields, additional });
}

function validateFields(c: Checker, node: RawNode, path: string, mode: RuleMode, depth: number): ReadonlyMap<string, FieldRule> | null {
  const names = c.names(node, path, mode === 'query' ? 'query parameters to their rules' : 'JSON fields to their rules');
  if (names === null) return null;
  if (names.size === 0) {
    c.add(node.at, path, 'needs at least one rule');
    return null;
  }
  const out = new Map<string, FieldRule>();
  const spelled = new Map<string, string>();
  let ok = true;
  for (const [name, entry] of names) {
    const fPath = `${path}.${name}`;
    let key = name;
    if (mode === 'query') {
      if (!QUERY_NAME.test(name)) {
        c.add(entry.at, fPath, 'a query parameter name uses only A-Z a-z 0-9 . _ ~ - (no brackets or escapes)');
        ok = false;
        continue;
      }
      key = normaliseQueryName(name);
      if (METHOD_PARAMS.has(key)) {
        c.add(entry.at, fPath, `"${name}" overrides the method and is always refused`);
        ok = false;
        continue;
      }
      const same = spelled.get(key);
      if (same !== undefined) {
        c.add(entry.at, fPath, `"${name}" is the same parameter as "${same}" to many frameworks (case, - and . are not told apart)`);
        ok = false;
        continue;
      }
      spelled.set(key, name);
    } else if (FORBIDDEN_KEYS.has(name)) {
      c.add(entry.at, fPath, `"${name}" is always refused in a JSON body`);
      ok = false;
      continue;
    }
    const rule = validateFieldRule(c, entry, fPath, mode, name, depth);
    if (rule === null) ok = false;
    else out.set(key, rule);
  }
  return ok ? out : null;
}

function validateFieldRule(c: Checker, entry: RawEntry, path: string, mode: RuleMode, name: string, depth: number): FieldRule | null {
  const types = TYPE_KEYS[mode];
  const keys = c.map(entry.value, path, [...types, 'required']);
  if (keys === null) return null;
  const present = types.filter((k) => keys.has(k));
  const required = c.boolean(keys.get('required'), `${path}.required`) ?? false;
  const [kind] = present;
  if (present.length !== 1 || kind === undefined) {
    c.add(entry.value.at, path, `needs exactly one of ${types.join(', ')}${present.length > 1 ? ` (has ${present.join(', ')})` : ''}`);
    return null;
  }
  const typeEntry = keys.get(kind);
  if (typeEntry === undefined) return null;
  const tPath = `${path}.${kind}`;
  const rule = validateValueRule(c, kind, typeEntry, tPath, mode, depth);
  if (rule === null) return null;
  return Object.freeze({ name, rule, required, source: `${entry.at.file}:${entry.at.line}`, text: ruleText(rule) });
}

function validateValueRule(c: Checker, kind: string, entry: RawEntry, path: string, mode: RuleMode, depth: number): ValueRule | null {
  const node = entry.value;
  switch (kind) {
    case 'int':
    case 'number': {
      const items = c.list(entry, path);
      if (items === null) return null;
      const bounds = items.map((i) => (i.kind === 'scalar' ? i.value : undefined));
      const [min, max] = bounds;
      const fits = (v: unknown): v is number => typeof v === 'number' && (kind === 'int' ? Number.isSafeInteger(v) : Number.isFinite(v));
      if (bounds.length !== 2 || !fits(min) || !fits(max) || min > max) {
        c.add(node.at, path, `expected [min, max] with ${kind === 'int' ? 'whole numbers' : 'numbers'}, min <= max (e.g. [1, 100])`);
        return null;
      }
      return Object.freeze({ kind, min, max });
    }
    case 'enum': {
      const items = c.list(entry, path);
      if (items === null) return null;
      const values = new Set<string>();
      let ok = items.length > 0;
      if (!ok) c.add(node.at, path, 'needs at least one value');
      items.forEach((item, i) => {
        const value = item.kind === 'scalar' && typeof item.value === 'string' ? item.value : null;
        if (value === null || (mode === 'query' && !QUERY_VALUE.test(value))) {
          c.add(item.at, `${path}[${i}]`, mode === 'query' ? `expected a value of A-Z a-z 0-9 . _ ~ - (matched as sent), got ${item.kind === 'scalar' ? describe(item.value) : 'a list or map'}` : `expected a string, got ${item.kind === 'scalar' ? describe(item.value) : 'a list or map'}`);
          ok = false;
        } else values.add(value);
      });
      return ok ? Object.freeze({ kind: 'enum', values }) : null;
    }
    case 'string': {
      if (node.kind === 'scalar' && node.value === true) return Object.freeze({ kind: 'string', min: 0, max: DEFAULT_STRING_MAX, pattern: null });
      const keys = c.map(node, path, ['min', 'max', 'pattern']);
      if (keys === null) return null;
      const min = keys.has('min') ? c.integer(keys.get('min'), `${path}.min`, 0, 1_000_000) : 0;
      const max = keys.has('max') ? c.integer(keys.get('max'), `${path}.max`, 1, 1_000_000) : DEFAULT_STRING_MAX;
      const patternText = c.string(keys.get('pattern'), `${path}.pattern`);
      let pattern: RegExp | null = null;
      if (patternText !== null) {
        try {
          // Anchored: the whole value must match, never a part of it.
          pattern = new RegExp(`^(?:${patternText})$`, 'u');
        } catch (error) {
          c.add(keys.get('pattern')?.value.at ?? node.at, `${path}.pattern`, `not a regular expression: ${(error as Error).message}`);
          return null;
        }
      }
      if (min === null || max === null) return null;
      if (min > max) {
        c.add(node.at, path, `min ${min} is above max ${max}`);
        return null;
      }
      return Object.freeze({ kind: 'string', min, max, pattern });
    }
    case 'bool':
      if (node.kind !== 'scalar' || node.value !== true) {
        c.add(node.at, path, 'write bool: true');
        return null;
      }
      return Object.freeze({ kind: 'bool' });
    case 'object': {
      if (depth >= MAX_DEPTH) {
        c.add(node.at, path, `objects nest at most ${MAX_DEPTH} deep`);
        return null;
      }
      const rules = validateObject(c, entry, path, depth + 1);
      return rules === null ? null : Object.freeze({ kind: 'object', rules });
    }
    case 'array': {
      const keys = c.map(node, path, ['items', 'max']);
      if (keys === null) return null;
      const itemsEntry = c.required(keys, 'items', path, entry.at);
      const max = c.integer(c.required(keys, 'max', path, entry.at), `${path}.max`, 0, 100_000);
      if (itemsEntry === undefined || max === null || depth >= MAX_DEPTH) return null;
      const items = validateFieldRule(c, itemsEntry, `${path}.items`, 'json', '[]', depth + 1);
      return items === null ? null : Object.freeze({ kind: 'array', items, max });
    }
    default:
      return null;
  }
}

export function ruleText(rule: ValueRule): string {
  switch (rule.kind) {
    case 'int':
    case 'number':
      return `${rule.kind} ${rule.min}..${rule.max}`;
    case 'enum':
      return `one of ${[...rule.values].join(', ')}`;
    case 'string':
      return `string of ${rule.min}..${rule.max} characters${rule.pattern === null ? '' : ` matching ${rule.pattern.source.slice(4, -2)}`}`;
    case 'bool':
      return 'true or false';
    case 'object':
      return `object with ${[...rule.rules.fields.values()].map((f) => f.name).join(', ')}${rule.rules.additional ? ' and others' : ' only'}`;
    case 'array':
      return `list of at most ${rule.max}, each ${rule.items.text}`;
  }
}
