// The `roles:` section: grants, read-only, the role policies over the defaults, masking, the
// aggregate-only query constraint, network, enforce and approval.
import { parseMaskPath } from '../compile.js';
import { problemAt, type RawEntry } from '../load.js';
import type { Backend, BreakerPolicy, MaskPlan, MaskRule, QueryConstraint, RateLimitPolicy, Role } from '../types.js';
import { describe } from '../units.js';
import { kindOf, type Checker } from './checker.js';
import { isOff, overlay, type PolicyDefaults } from './defaults.js';
import { validateNetwork } from './network.js';
import { validateBreaker, validateRateLimit, validateTokenPolicy } from './role-policies.js';

const ROLE_NAME = /^[a-z][a-z0-9_-]{0,63}$/;
const ROLE_KEYS = ['description', 'grants', 'readOnly', 'token', 'breaker', 'rateLimit', 'mask', 'query', 'network', 'enforce', 'approval'];

/** Names in `query.tables`: plain SQL identifiers. */
const TABLE_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;

/** `complete` is false when a file could not be parsed: a name missing here may be defined there. */
export function validateRole(
  c: Checker,
  name: string,
  entry: RawEntry,
  backends: ReadonlyMap<string, Backend>,
  rawBackends: ReadonlyMap<string, RawEntry>,
  complete: boolean,
  defaults: PolicyDefaults,
  warnings: string[],
): Role | null {
  const path = `roles.${name}`;
  if (!ROLE_NAME.test(name)) c.add(entry.at, path, 'role names use a-z, 0-9, _ and -, start with a letter');
  const keys = c.map(entry.value, path, ROLE_KEYS);
  if (keys === null) return null;
  const description = c.string(keys.get('description'), `${path}.description`) ?? '';
  const readOnly = c.boolean(keys.get('readOnly'), `${path}.readOnly`) ?? false;
  const grantNodes = c.list(c.required(keys, 'grants', path, entry.at), `${path}.grants`) ?? [];
  const grants = new Set<string>();
  const reached = new Set<string>();
  grantNodes.forEach((node, i) => {
    const gPath = `${path}.grants[${i}]`;
    if (node.kind !== 'scalar' || typeof node.value !== 'string') {
      c.add(node.at, gPath, `expected "backend:scope", got ${node.kind === 'scalar' ? describe(node.value) : kindOf(node)}`);
      return;
    }
    const grant = node.value;
    const colon = grant.indexOf(':');
    const backendName = colon === -1 ? '' : grant.slice(0, colon);
    const scopeName = colon === -1 ? '' : grant.slice(colon + 1);
    if (colon === -1) {
      c.add(node.at, gPath, `"${grant}" must be backend:scope (e.g. crm:contacts.read)`);
      return;
    }
    const backend = backends.get(backendName);
    if (backend === undefined) {
      if (!rawBackends.has(backendName) && complete) c.add(node.at, gPath, `unknown backend "${backendName}" in "${grant}" (backends: ${[...rawBackends.keys()].join(', ') || 'none'})`);
      return;
    }
    if (!backend.scopes.has(scopeName)) {
      c.add(node.at, gPath, `unknown scope "${grant}" (${backendName} has: ${[...backend.scopes.keys()].join(', ') || 'no scopes'})`);
      return;
    }
    if (grants.has(grant)) {
      c.add(node.at, gPath, `"${grant}" is granted twice`);
      return;
    }
    grants.add(grant);
    reached.add(backendName);
  });
  const tokenEntry = keys.get('token');
  const token = tokenEntry === undefined && defaults.token !== null ? defaults.token.policy : validateTokenPolicy(c, tokenEntry === undefined ? undefined : overlay(defaults.token?.raw, tokenEntry), `${path}.token`);
  // The breaker and the rate limit: inherited from defaults, overridden key by key, or `off`.
  const breakerEntry = keys.get('breaker');
  let breaker: BreakerPolicy | null = null;
  let breakerOk = true;
  if (breakerEntry === undefined) {
    breaker = defaults.breaker?.policy ?? null;
    if (breaker === null) warnings.push(problemAt(entry.at, path, 'has no breaker (no roles.' + name + '.breaker and no defaults.breaker): this agent is never suspended for calls outside its grant'));
  } else if (isOff(breakerEntry)) {
    warnings.push(problemAt(breakerEntry.value.at, `${path}.breaker`, 'the breaker is off: agents of this role are never suspended for calls outside their grant'));
  } else {
    breaker = validateBreaker(c, overlay(defaults.breaker?.raw, breakerEntry), `${path}.breaker`);
    breakerOk = breaker !== null;
  }
  const rateEntry = keys.get('rateLimit');
  let rateLimit: RateLimitPolicy | null = null;
  let rateOk = true;
  if (rateEntry === undefined) rateLimit = defaults.rateLimit?.policy ?? null;
  else if (!isOff(rateEntry)) {
    rateLimit = validateRateLimit(c, overlay(defaults.rateLimit?.raw, rateEntry), `${path}.rateLimit`, grants);
    rateOk = rateLimit !== null;
  }
  const maskEntry = keys.get('mask');
  const mask = maskEntry === undefined ? new Map<string, MaskPlan>() : validateMask(c, maskEntry, `${path}.mask`, reached, rawBackends);
  const queryEntry = keys.get('query');
  const query = queryEntry === undefined ? null : validateQueryConstraint(c, queryEntry, `${path}.query`, grants, backends);
  const networkEntry = keys.get('network');
  const network = networkEntry === undefined ? null : validateNetwork(c, networkEntry, `${path}.network`);
  const enforce = c.boolean(keys.get('enforce'), `${path}.enforce`) ?? true;
  const approval = new Set<string>();
  const approvalEntry = keys.get('approval');
  const approvalNodes = approvalEntry === undefined ? [] : (c.list(approvalEntry, `${path}.approval`) ?? []);
  approvalNodes.forEach((node, i) => {
    const aPath = `${path}.approval[${i}]`;
    if (node.kind !== 'scalar' || typeof node.value !== 'string') {
      c.add(node.at, aPath, `expected a grant of this role ("backend:scope"), got ${node.kind === 'scalar' ? describe(node.value) : kindOf(node)}`);
    } else if (!grants.has(node.value)) {
      c.add(node.at, aPath, `"${node.value}" is not granted to this role (grants: ${[...grants].join(', ') || 'none'})`);
    } else {
      approval.add(node.value);
    }
  });
  if (approvalEntry !== undefined && approvalNodes.length === 0 && approvalEntry.value.kind === 'seq') {
    c.add(approvalEntry.value.at, `${path}.approval`, 'lists the grants that need approval; leave the key out for none');
  }
  if (readOnly) {
    const mcp = [...reached].filter((b) => backends.get(b)?.kind === 'mcp');
    if (mcp.length > 0) {
      // readOnly is about HTTP methods, and every MCP message is a POST: grant read tools instead.
      c.add(keys.get('readOnly')?.at ?? entry.at, `${path}.readOnly`, `cannot apply to MCP backend ${mcp.map((b) => `"${b}"`).join(', ')} (every MCP call is a POST); grant only its reading tools instead`);
      return null;
    }
  }
  if (token === null || !breakerOk || !rateOk) return null;
  if (mask === null || (queryEntry !== undefined && query === null) || (networkEntry !== undefined && network === null)) return null;
  return Object.freeze({ name, description, grants, backends: reached, readOnly, token, breaker, rateLimit, mask, query, network, approval, enforce });
}

/** `mask: { backend: [field paths] }`: the backends must be ones the role reaches. */
function validateMask(
  c: Checker,
  entry: RawEntry,
  path: string,
  reached: ReadonlySet<string>,
  rawBackends: ReadonlyMap<string, RawEntry>,
): ReadonlyMap<string, MaskPlan> | null {
  const backends = c.names(entry.value, path, 'backends to the fields masked in their responses');
  if (backends === null) return null;
  const plans = new Map<string, MaskPlan>();
  let ok = true;
  for (const [backend, pathsEntry] of backends) {
    const bPath = `${path}.${backend}`;
    if (!reached.has(backend)) {
      const known = rawBackends.has(backend);
      c.add(pathsEntry.at, bPath, known ? `this role reaches no route of backend "${backend}" (it reaches: ${[...reached].join(', ') || 'none'})` : `unknown backend "${backend}" (backends: ${[...rawBackends.keys()].join(', ') || 'none'})`);
      ok = false;
      continue;
    }
    const items = c.list(pathsEntry, bPath);
    if (items === null) {
      ok = false;
      continue;
    }
    if (items.length === 0) {
      c.add(pathsEntry.value.at, bPath, 'needs at least one field path');
      ok = false;
      continue;
    }
    const paths: string[] = [];
    const rules: MaskRule[] = [];
    items.forEach((item, i) => {
      const iPath = `${bPath}[${i}]`;
      if (item.kind !== 'scalar' || (typeof item.value !== 'string' && typeof item.value !== 'number')) {
        c.add(item.at, iPath, `expected a field path such as email or contacts.phone, got ${item.kind === 'scalar' ? describe(item.value) : kindOf(item)}`);
        ok = false;
        return;
      }
      const text = String(item.value);
      const rule = parseMaskPath(text);
      if (typeof rule === 'string') {
        c.add(item.at, iPath, rule);
        ok = false;
        return;
      }
      if (paths.includes(text)) {
        c.add(item.at, iPath, `"${text}" is listed twice`);
        ok = false;
        return;
      }
      paths.push(text);
      rules.push(rule);
    });
    plans.set(backend, Object.freeze({ paths: Object.freeze(paths), rules: Object.freeze(rules) }));
  }
  return ok ? plans : null;
}

/** `query: { aggregateOnly, tables }`: the role must reach at least one route marked `query`. */
function validateQueryConstraint(c: Checker, entry: RawEntry, path: string, grants: ReadonlySet<string>, backends: ReadonlyMap<string, Backend>): QueryConstraint | null {
  const keys = c.map(entry.value, path, ['aggregateOnly', 'tables']);
  if (keys === null) return null;
  const aggregateOnly = c.boolean(keys.get('aggregateOnly'), `${path}.aggregateOnly`) ?? true;
  const tablesEntry = c.required(keys, 'tables', path, entry.at);
  const items = c.list(tablesEntry, `${path}.tables`);
  if (items === null) return null;
  const tables = new Set<string>();
  let ok = true;
  items.forEach((item, i) => {
    const tPath = `${path}.tables[${i}]`;
    if (item.kind !== 'scalar' || typeof item.value !== 'string' || !TABLE_NAME.test(item.value)) {
      c.add(item.at, tPath, `expected a table name (letters, digits and _, not starting with a digit), got ${item.kind === 'scalar' ? describe(item.value) : kindOf(item)}`);
      ok = false;
      return;
    }
    tables.add(item.value.toLowerCase());
  });
  if (items.length === 0 && tablesEntry !== undefined) {
    c.add(tablesEntry.value.at, `${path}.tables`, 'needs at least one table');
    ok = false;
  }
  let queryRoutes = 0;
  for (const grant of grants) {
    const colon = grant.indexOf(':');
    const scope = backends.get(grant.slice(0, colon))?.scopes.get(grant.slice(colon + 1));
    for (const route of scope?.routes ?? []) if (route.query !== null) queryRoutes++;
  }
  if (queryRoutes === 0 && grants.size > 0) {
    // The constraint would never run: say so rather than let the operator believe it is on.
    c.add(entry.at, path, 'none of this role\'s grants has a route marked query: { field, dialect }; the constraint would never apply');
    ok = false;
  }
  if (!ok) return null;
  return Object.freeze({ aggregateOnly, tables });
}
