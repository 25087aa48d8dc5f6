// What a scope holds: its name, its route items (`"GET /path"` or a map with body, query, JSON
// rules) and what a route or scope may carry: an approval, body value constraints, a SQL field.
import { parseRoute, type ParsedRoute } from '../compile.js';
import type { Position, RawEntry, RawNode } from '../load.js';
import { isSqlMarker, validateJsonRules, validateQueryRules } from '../request-rules.js';
import { DEFAULT_APPROVAL_TTL_MS, type ApprovalPolicy, type BodyConstraint, type FieldRules, type QueryRoute, type Route, type SqlDialect } from '../types.js';
import { describe } from '../units.js';
import { kindOf, type Checker } from './checker.js';

/** Route methods whose requests carry no body unless the route says `body: true`. */
const NO_BODY_ROUTE_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'DELETE', 'OPTIONS']);
export const SCOPE_NAME = /^[a-z][a-zA-Z0-9._-]{0,63}$/;
export const SQL_DIALECTS: readonly SqlDialect[] = ['sqlite', 'postgresql', 'mysql', 'mariadb', 'bigquery', 'transactsql'];
const MAX_APPROVAL_TTL_MS = 7 * 86_400_000;

export function validateRouteItem(c: Checker, item: RawNode, path: string, scope: string, scopeApproval: ApprovalPolicy | null): { route: Route; parsed: ParsedRoute } | null {
  let text: string | null = null;
  let textPath = path;
  let textAt = item.at;
  let body: BodyConstraint | null = null;
  let bodyOk = true;
  let query: QueryRoute | null = null;
  let acceptsBody = false;
  let queryRules: FieldRules | null = null;
  let json: FieldRules | null = null;
  let jsonAt: Position | null = null;
  let approval = scopeApproval;
  if (item.kind === 'scalar') {
    if (typeof item.value !== 'string') {
      c.add(item.at, path, `expected a route such as "GET /contacts/:id", got ${describe(item.value)}`);
      return null;
    }
    text = item.value;
  } else if (item.kind === 'map') {
    const keys = c.map(item, path, ['route', 'body', 'query', 'additionalQuery', 'sql', 'json', 'approval']);
    const routeEntry = c.required(keys, 'route', path, item.at);
    textPath = `${path}.route`;
    textAt = routeEntry?.value.at ?? item.at;
    text = c.string(routeEntry, textPath);
    const bodyEntry = keys?.get('body');
    if (bodyEntry !== undefined && bodyEntry.value.kind === 'scalar' && typeof bodyEntry.value.value === 'boolean') {
      // `body: true`: this route takes a body even on a method that normally carries none.
      acceptsBody = bodyEntry.value.value;
    } else if (bodyEntry !== undefined) {
      body = validateBody(c, bodyEntry, `${path}.body`);
      bodyOk = body !== null;
      acceptsBody = true;
    }
    const queryEntry = keys?.get('query');
    const sqlEntry = keys?.get('sql');
    const additionalEntry = keys?.get('additionalQuery');
    const additionalQuery = c.boolean(additionalEntry, `${path}.additionalQuery`) ?? false;
    if (queryEntry !== undefined && isSqlMarker(queryEntry)) {
      // The older spelling of `sql:`; query-string rules never hold a plain `field` value.
      if (sqlEntry !== undefined) c.add(queryEntry.at, `${path}.query`, 'the SQL field is given twice (query and sql); keep sql');
      query = validateQueryRoute(c, queryEntry, `${path}.query`);
      bodyOk &&= query !== null;
    } else if (queryEntry !== undefined) {
      queryRules = validateQueryRules(c, queryEntry, additionalQuery, `${path}.query`);
      bodyOk &&= queryRules !== null;
    }
    if (additionalEntry !== undefined && queryRules === null && bodyOk) {
      c.add(additionalEntry.at, `${path}.additionalQuery`, 'applies only beside query parameter rules (query: { name: rule })');
      bodyOk = false;
    }
    if (sqlEntry !== undefined) {
      query = validateQueryRoute(c, sqlEntry, `${path}.sql`);
      bodyOk &&= query !== null;
    }
    const jsonEntry = keys?.get('json');
    if (jsonEntry !== undefined) {
      json = validateJsonRules(c, jsonEntry, `${path}.json`);
      bodyOk &&= json !== null;
      jsonAt = jsonEntry.at;
    }
    const approvalEntry = keys?.get('approval');
    if (approvalEntry !== undefined) {
      approval = validateApproval(c, approvalEntry, `${path}.approval`);
      bodyOk &&= approval !== null;
    }
  } else {
    c.add(item.at, path, 'expected a route such as "GET /contacts/:id", or { route, body }, got a list');
    return null;
  }
  if (text === null) return null;
  const parsed = parseRoute(text);
  if (typeof parsed === 'string') {
    c.add(textAt, textPath, parsed);
    return null;
  }
  if (body !== null && (parsed.method === 'GET' || parsed.method === 'HEAD')) {
    c.add(textAt, `${path}.body`, `${parsed.method} requests carry no body to check`);
    return null;
  }
  if (query !== null && (parsed.method === 'GET' || parsed.method === 'HEAD')) {
    c.add(textAt, `${path}.query`, `${parsed.method} requests carry no body with SQL to check`);
    return null;
  }
  if (json !== null && jsonAt !== null && !acceptsBody && NO_BODY_ROUTE_METHODS.has(parsed.method)) {
    c.add(jsonAt, `${path}.json`, `${parsed.method} requests carry no body; add body: true if this route takes one`);
    return null;
  }
  if (!bodyOk) return null;
  if (query !== null || json !== null) acceptsBody = true;
  return { route: Object.freeze({ method: parsed.method, template: `${parsed.method} ${parsed.path}`, scope, body, acceptsBody, query, queryRules, json, approval }), parsed };
}

/** `query: { field: sql, dialect: sqlite }` on a route: its JSON body field `field` holds SQL. */
function validateQueryRoute(c: Checker, entry: RawEntry, path: string): QueryRoute | null {
  const keys = c.map(entry.value, path, ['field', 'dialect']);
  if (keys === null) return null;
  const field = c.string(c.required(keys, 'field', path, entry.at), `${path}.field`);
  const dialect = keys.has('dialect') ? c.oneOf(keys.get('dialect'), `${path}.dialect`, SQL_DIALECTS, 'a SQL dialect') : 'sqlite';
  if (field === null || dialect === null) return null;
  return Object.freeze({ field, dialect });
}

/** `approval: required`, or `approval: { ttl: 30m }` (required, with its own expiry). */
export function validateApproval(c: Checker, entry: RawEntry, path: string): ApprovalPolicy | null {
  const node = entry.value;
  if (node.kind === 'scalar' && node.value === 'required') return Object.freeze({ ttlMs: DEFAULT_APPROVAL_TTL_MS });
  if (node.kind === 'map') {
    const keys = c.map(node, path, ['ttl']);
    const ttlMs = c.duration(c.required(keys, 'ttl', path, entry.at), `${path}.ttl`, { minMs: 10_000, maxMs: MAX_APPROVAL_TTL_MS });
    return ttlMs === null ? null : Object.freeze({ ttlMs });
  }
  c.add(node.at, path, `${node.kind === 'scalar' ? describe(node.value) : kindOf(node)} is not an approval setting (use "required", or { ttl: 30m })`);
  return null;
}

export function validateBody(c: Checker, entry: RawEntry, path: string): BodyConstraint | null {
  const fields = c.names(entry.value, path, 'JSON fields to their allowed values');
  if (fields === null) return null;
  if (fields.size === 0) {
    c.add(entry.value.at, path, 'needs at least one field');
    return null;
  }
  let ok = true;
  const out = new Map<string, ReadonlySet<string>>();
  for (const [field, valuesEntry] of fields) {
    const values = c.list(valuesEntry, `${path}.${field}`);
    if (values === null) {
      ok = false;
      continue;
    }
    const set = new Set<string>();
    for (const [i, v] of values.entries()) {
      if (v.kind === 'scalar' && typeof v.value === 'string') set.add(v.value);
      else {
        c.add(v.at, `${path}.${field}[${i}]`, `expected a string, got ${v.kind === 'scalar' ? describe(v.value) : kindOf(v)}`);
        ok = false;
      }
    }
    if (values.length === 0) {
      c.add(valuesEntry.value.at, `${path}.${field}`, 'needs at least one allowed value');
      ok = false;
    }
    out.set(field, set);
  }
  return ok ? Object.freeze({ fields: out }) : null;
}
