// The body constraints: reading the body a constraint must see (bounded, JSON, not encoded), and
// the route's listed body values and JSON rules on the parsed object (a REST body or an MCP
// tool's arguments).
import type { RequestContext } from '../../context.js';
import { GatewayError } from '../../errors.js';
import type { Route } from '../../policy/types.js';
import { readBounded } from '../read-body.js';
import { checkJson } from '../request-rules.js';
import { parseStrictJson } from '../strict-json.js';
import { refuse, type Refusals } from './refusals.js';

/** Buffer the body a constraint must read (bounded): what is checked is exactly what is forwarded. */
export async function readBody(ctx: RequestContext, template: string, json: boolean, maxBodyBytes: number, bodyIdleMs: number): Promise<Buffer> {
  if (json) {
    const contentType = ctx.request.headers['content-type'] ?? '';
    if (!isJsonContentType(contentType)) {
      throw new GatewayError('body_invalid', `${template} takes a JSON body (content-type: application/json)`, {
        reasonDetail: `content-type ${JSON.stringify(contentType).slice(0, 80)}`,
      });
    }
  }
  if (ctx.request.headers['content-encoding'] !== undefined) {
    throw new GatewayError('body_invalid', 'a checked body must not be content-encoded');
  }
  return ctx.request.body === null ? Buffer.alloc(0) : readBounded(ctx.request.body, { maxBytes: maxBodyBytes, idleMs: bodyIdleMs }, ctx.signal);
}

export function jsonObject(body: Buffer): Readonly<Record<string, unknown>> {
  const parsed = parseStrictJson(body);
  if (!parsed.ok) throw new GatewayError('body_invalid', `the JSON body cannot be checked: ${parsed.problem}`);
  const value = parsed.value;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new GatewayError('body_invalid', 'the JSON body must be an object');
  }
  return value as Record<string, unknown>;
}

/** The route's listed body values, then its JSON rules, on a JSON object. */
export function checkBodyValues(label: string, route: Route, fields: Readonly<Record<string, unknown>>, refusals: Refusals): void {
  for (const [field, allowed] of route.body?.fields ?? []) {
    const actual = Object.hasOwn(fields, field) ? fields[field] : undefined;
    if (typeof actual !== 'string' || !allowed.has(actual)) {
      refuse(
        refusals,
        new GatewayError('out_of_scope', `field "${field}" must be one of: ${[...allowed].join(', ')}`, {
          reasonDetail: `${label} ${field}=${JSON.stringify(actual)?.slice(0, 64) ?? 'undefined'}`,
        }),
      );
    }
  }
  // After the listed body values, so a wrong script still reads out_of_scope.
  const jsonRefusal = checkJson(fields, route);
  if (jsonRefusal !== null) refuse(refusals, jsonRefusal);
}

function isJsonContentType(value: string): boolean {
  const semi = value.indexOf(';');
  const type = (semi === -1 ? value : value.slice(0, semi)).trim().toLowerCase();
  return type === 'application/json';
}
