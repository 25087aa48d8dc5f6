// Route rules about the request itself, beside the grant: whether a body may come at all (methods
// that carry none take one only where the route says `body: true`), the query string's `query:`
// rules and a JSON body's `json:` rules. Pure and synchronous; used by authorize once the route is
// known, before anything is forwarded. A refusal names the rule that decided (audit, explain).
import type { InboundRequest, Target } from '../context.js';
import { GatewayError } from '../errors.js';
import type { FieldRule, FieldRules, Route, ValueRule } from '../policy/types.js';

/** Methods whose requests carry no body unless a route declares one (RFC 9110 §9.3). */
const NO_BODY_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'DELETE', 'OPTIONS', 'TRACE']);

/** A request with a body (Content-Length above 0, or any Transfer-Encoding). */
export function declaresBody(request: InboundRequest, target: Target): boolean {
  return (target.contentLength !== null && target.contentLength > 0) || request.headers['transfer-encoding'] !== undefined;
}

/**
 * Refuse a body on a method that carries none, unless the route takes one: a backend that ignores
 * such a body would read it as the next request on a reused connection.
 */
export function checkBodyPresence(request: InboundRequest, target: Target, route: Route): void {
  if (route.acceptsBody || !NO_BODY_METHODS.has(target.method) || !declaresBody(request, target)) return;
  throw new GatewayError('body_unexpected', `${route.template} takes no request body; send the request without one`, {
    reasonDetail: `${target.method} with ${target.contentLength === null ? 'Transfer-Encoding' : `Content-Length ${target.contentLength}`}`,
    closeConnection: true,
  });
}

const INT = /^(?:0|-?[1-9][0-9]{0,15})$/;
const NUMBER = /^-?(?:0|[1-9][0-9]{0,15})(?:\.[0-9]{1,16})?$/;
const PLAIN_NAME = /^[A-Za-z0-9._~-]+$/;

/** One refused rule: what the agent reads, and which rule decided (audit, `explain`). */
function refusal(reason: 'query_refused' | 'body_refused', detail: string, decided: string): GatewayError {
  return new GatewayError(reason, detail, { reasonDetail: decided });
}

function ruleRef(where: string, rule: FieldRule, route: Route): string {
  return `${route.template} ${where} rule "${rule.name}" (${rule.text}) at ${rule.source}`;
}

/** `limit` and `LIMIT`, `page.size` and `page_size` are one parameter to many frameworks. */
function normaliseQueryName(name: string): string {
  return name.toLowerCase().replace(/[-.]/g, '_');
}

/**
 * Check the raw query string against the route's `query:` rules: `&`-separated `name=value`
 * pairs only, names written plainly and at most once (compared normalised), every value parsing
 * exactly as its rule says, unknown names refused unless `additionalQuery: true`. Returns the
 * refusal, or null when the query passes.
 */
export function checkQuery(query: string, route: Route): GatewayError | null {
  const rules = route.queryRules;
  if (rules === null) return null;
  const seen = new Set<string>();
  const text = query.length > 1 ? query.slice(1) : '';
  if (text !== '') {
    if (text.includes(';')) return refusal('query_refused', 'separate query parameters with & only', `${route.template}: ";" in the query`);
    for (const part of text.split('&')) {
      if (part === '') return refusal('query_refused', 'the query has an empty parameter (&&, or a leading or trailing &)', `${route.template}: empty query pair`);
      const eq = part.indexOf('=');
      const rawName = eq === -1 ? part : part.slice(0, eq);
      if (/\[|\]|%5[bBdD]/.test(rawName)) return refusal('query_refused', `query parameter names take no brackets ("${clip(rawName)}")`, `${route.template}: bracketed name ${clip(rawName)}`);
      if (!PLAIN_NAME.test(rawName)) return refusal('query_refused', `write query parameter names plainly, without escapes ("${clip(rawName)}")`, `${route.template}: escaped or unusual name ${clip(rawName)}`);
      const key = normaliseQueryName(rawName);
      if (seen.has(key)) return refusal('query_refused', `query parameter "${clip(rawName)}" is given more than once`, `${route.template}: repeated ${clip(rawName)}`);
      seen.add(key);
      const rule = rules.fields.get(key);
      if (rule === undefined) {
        if (rules.additional) continue;
        const allowed = [...rules.fields.values()].map((r) => r.name).join(', ');
        return refusal('query_refused', `query parameter "${clip(rawName)}" is not accepted on ${route.template} (accepted: ${allowed})`, `${route.template}: unknown query parameter ${clip(rawName)} (additionalQuery: false)`);
      }
      if (rule.name !== rawName) return refusal('query_refused', `write the query parameter as "${rule.name}"`, `${ruleRef('query', rule, route)}: spelled ${clip(rawName)}`);
      if (eq === -1) return refusal('query_refused', `query parameter "${rule.name}" needs a value (${rule.text})`, `${ruleRef('query', rule, route)}: no value`);
      const problem = checkQueryValue(part.slice(eq + 1), rule.rule);
      if (problem !== null) return refusal('query_refused', `query parameter "${rule.name}" must be ${rule.text}`, `${ruleRef('query', rule, route)}: ${problem}`);
    }
  }
  for (const [key, rule] of rules.fields) {
    if (rule.required && !seen.has(key)) return refusal('query_refused', `query parameter "${rule.name}" is required (${rule.text})`, `${ruleRef('query', rule, route)}: missing`);
  }
  return null;
}

function checkQueryValue(raw: string, rule: ValueRule): string | null {
  switch (rule.kind) {
    case 'int':
    case 'number': {
      // Exactly as written: no sign but -, no exponent, hex, spaces, escapes or leading zeros.
      if (!(rule.kind === 'int' ? INT : NUMBER).test(raw)) return `${clip(raw)} is not written as a plain ${rule.kind === 'int' ? 'whole number' : 'decimal number'}`;
      const value = Number(raw);
      return value < rule.min || value > rule.max ? `${clip(raw)} is out of range` : null;
    }
    case 'enum':
      return rule.values.has(raw) ? null : `${clip(raw)} is not listed`;
    case 'bool':
      return raw === 'true' || raw === 'false' ? null : `${clip(raw)} is not true or false`;
    case 'string': {
      let value: string;
      try {
        value = decodeURIComponent(raw);
      } catch {
        return 'escapes are not valid UTF-8';
      }
      // `+` is a space to form decoders and a plus to others: the rule must hold for both.
      const readings = raw.includes('+') ? [value, decodeURIComponent(raw.replaceAll('+', '%20'))] : [value];
      for (const reading of readings) {
        const length = [...reading].length;
        if (length < rule.min || length > rule.max) return `${length} characters`;
        if (rule.pattern !== null && !rule.pattern.test(reading)) return `${clip(raw)} does not match the pattern`;
      }
      return null;
    }
    case 'object':
    case 'array':
      return 'not a query value';
  }
}

/**
 * Check a parsed JSON body against the route's `json:` rules (the strict parser has already
 * refused duplicate keys and `__proto__`, `constructor`, `prototype`). Returns the refusal or null.
 */
export function checkJson(value: unknown, route: Route): GatewayError | null {
  const rules = route.json;
  if (rules === null) return null;
  if (!isPlainObject(value)) return refusal('body_refused', 'the JSON body must be an object', `${route.template} json: body is ${kindOf(value)}`);
  const problem = checkObject(value, rules, '');
  if (problem === null) return null;
  return refusal('body_refused', problem.detail, `${route.template} json${problem.rule === null ? '' : ` rule "${problem.path}" (${problem.rule.text}) at ${problem.rule.source}`}: ${problem.why}`);
}

interface JsonProblem {
  readonly path: string;
  readonly rule: FieldRule | null;
  readonly detail: string;
  readonly why: string;
}

function checkObject(value: Record<string, unknown>, rules: FieldRules, prefix: string): JsonProblem | null {
  if (!rules.additional) {
    for (const key of Object.keys(value)) {
      if (!rules.fields.has(key)) {
        const allowed = [...rules.fields.keys()].join(', ');
        return { path: `${prefix}${key}`, rule: null, detail: `field "${clip(prefix + key)}" is not accepted (accepted${prefix === '' ? '' : ` in ${prefix.slice(0, -1)}`}: ${allowed})`, why: `unknown field ${clip(prefix + key)} (additional: false)` };
      }
    }
  }
  for (const [key, rule] of rules.fields) {
    const path = `${prefix}${key}`;
    if (!Object.hasOwn(value, key)) {
      if (rule.required) return { path, rule, detail: `field "${path}" is required (${rule.text})`, why: 'missing' };
      continue;
    }
    const problem = checkJsonValue(value[key], rule, path);
    if (problem !== null) return problem;
  }
  return null;
}

function checkJsonValue(value: unknown, rule: FieldRule, path: string): JsonProblem | null {
  const r = rule.rule;
  const fail = (why: string): JsonProblem => ({ path, rule, detail: `field "${clip(path)}" must be ${rule.text}`, why });
  switch (r.kind) {
    case 'int':
      if (typeof value !== 'number' || !Number.isSafeInteger(value)) return fail(`${kindOf(value)} is not a whole number`);
      return value < r.min || value > r.max ? fail(`${value} is out of range`) : null;
    case 'number':
      if (typeof value !== 'number' || !Number.isFinite(value)) return fail(`${kindOf(value)} is not a number`);
      return value < r.min || value > r.max ? fail(`${value} is out of range`) : null;
    case 'enum':
      return typeof value === 'string' && r.values.has(value) ? null : fail(`${typeof value === 'string' ? JSON.stringify(clip(value)) : kindOf(value)} is not listed`);
    case 'bool':
      return typeof value === 'boolean' ? null : fail(`${kindOf(value)} is not true or false`);
    case 'string': {
      if (typeof value !== 'string') return fail(`${kindOf(value)} is not a string`);
      const length = [...value].length;
      if (length < r.min || length > r.max) return fail(`${length} characters`);
      return r.pattern !== null && !r.pattern.test(value) ? fail('does not match the pattern') : null;
    }
    case 'object':
      return isPlainObject(value) ? checkObject(value, r.rules, `${path}.`) : fail(`${kindOf(value)} is not an object`);
    case 'array': {
      if (!Array.isArray(value)) return fail(`${kindOf(value)} is not a list`);
      if (value.length > r.max) return fail(`${value.length} items`);
      for (let i = 0; i < value.length; i++) {
        const problem = checkJsonValue(value[i], r.items, `${path}[${i}]`);
        if (problem !== null) return problem;
      }
      return null;
    }
  }
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function kindOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'string') return 'a string';
  return typeof value === 'number' ? String(value) : typeof value;
}

function clip(text: string): string {
  return text.length > 64 ? `${text.slice(0, 61)}...` : text;
}
