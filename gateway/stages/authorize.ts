// Authorization: Principal x target -> Grant. Checks, in order: the target was unambiguous, the
// backend exists, it is in the token's `aud`, the role's read-only constraint, the most specific
// route and its scope, and body-value constraints. Anything it cannot decide is refused.
import type { Readable } from 'node:stream';
import type { Principal, RequestContext, Stage, Target } from '../context.js';
import { GatewayError } from '../errors.js';
import { SAFE_METHODS, type BodyConstraint, type Route } from '../policy/types.js';
import { parseStrictJson } from './strict-json.js';

export interface AuthorizeOptions {
  readonly maxBodyBytes: number;
}

export function createAuthorize(options: AuthorizeOptions): Stage {
  const { maxBodyBytes } = options;

  return {
    name: 'authorize',
    run(ctx: RequestContext): void | Promise<void> {
      const target = ctx.target;
      const principal = ctx.principal;
      if (target === null || principal === null) throw new Error('authorize ran before normalize/authenticate');

      if (target.invalid !== null) {
        throw new GatewayError('target_invalid', 'the request target is ambiguous or malformed; send a plain canonical path', {
          reasonDetail: target.invalid,
        });
      }
      const backend = ctx.policy.backends.get(target.backend);
      if (backend === undefined) {
        throw new GatewayError('backend_unknown', 'no backend is published under this path');
      }
      if (!principal.audience.has(backend.name)) {
        throw new GatewayError('cross_domain', `this token was not issued for backend "${backend.name}"`);
      }
      const role = ctx.policy.roles.get(principal.role);
      if (role === undefined) throw new Error(`principal role ${principal.role} missing from pinned policy`);
      if (role.readOnly && !SAFE_METHODS.has(target.method)) {
        throw new GatewayError('read_only', `role "${role.name}" may only read (GET, HEAD, OPTIONS)`);
      }
      const match = backend.routes.match(target.method, target.segments);
      if (match === null) {
        throw new GatewayError('unknown_route', `no route ${target.method} ${target.path} is defined for backend "${backend.name}"`);
      }
      const route = grantedRoute(match.routes, principal, role.grants);
      if (route === null) {
        throw new GatewayError('out_of_scope', `this token's scopes do not grant ${target.method} ${target.path}`, {
          reasonDetail: `route "${match.routes[0]?.template ?? ''}" needs ${match.routes.map((r) => r.scope).join(' or ')}`,
        });
      }
      if (route.body === null) {
        ctx.grant = { backend: backend.name, scope: route.scope, route: route.template, params: match.params, body: null };
        return;
      }
      return checkBody(ctx, target, route, route.body, maxBodyBytes).then((body) => {
        ctx.grant = { backend: backend.name, scope: route.scope, route: route.template, params: match.params, body };
      });
    },
  };
}

/** The first candidate route the token holds a scope for, which the agent's role still grants. */
function grantedRoute(routes: readonly Route[], principal: Principal, roleGrants: ReadonlySet<string>): Route | null {
  for (const route of routes) {
    // The role is read from the pinned policy, so a reload that narrows a role takes effect on
    // tokens issued before it.
    if (principal.scopes.has(route.scope) && roleGrants.has(route.scope)) return route;
  }
  return null;
}

async function checkBody(
  ctx: RequestContext,
  target: Target,
  route: Route,
  constraint: BodyConstraint,
  maxBodyBytes: number,
): Promise<Buffer> {
  const contentType = ctx.request.headers['content-type'] ?? '';
  if (!isJsonContentType(contentType)) {
    throw new GatewayError('body_invalid', `${route.template} takes a JSON body (content-type: application/json)`, {
      reasonDetail: `content-type ${JSON.stringify(contentType).slice(0, 80)}`,
    });
  }
  if (ctx.request.headers['content-encoding'] !== undefined) {
    throw new GatewayError('body_invalid', 'a checked body must not be content-encoded');
  }
  const body = ctx.request.body === null ? Buffer.alloc(0) : await readBounded(ctx.request.body, maxBodyBytes, ctx.signal);
  const parsed = parseStrictJson(body);
  if (!parsed.ok) throw new GatewayError('body_invalid', `the JSON body cannot be checked: ${parsed.problem}`);
  const value = parsed.value;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new GatewayError('body_invalid', 'the JSON body must be an object');
  }
  for (const [field, allowed] of constraint.fields) {
    const actual = (value as Record<string, unknown>)[field];
    if (typeof actual !== 'string' || !allowed.has(actual)) {
      throw new GatewayError('out_of_scope', `field "${field}" must be one of: ${[...allowed].join(', ')}`, {
        reasonDetail: `${target.method} ${target.path} ${field}=${JSON.stringify(actual)?.slice(0, 64) ?? 'undefined'}`,
      });
    }
  }
  return body;
}

function isJsonContentType(value: string): boolean {
  const semi = value.indexOf(';');
  const type = (semi === -1 ? value : value.slice(0, semi)).trim().toLowerCase();
  return type === 'application/json';
}

function readBounded(stream: Readable, limit: number, signal: AbortSignal): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const cleanup = (): void => {
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('error', onError);
      signal.removeEventListener('abort', onAbort);
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limit) {
        cleanup();
        stream.pause();
        reject(new GatewayError('body_too_large', `the request body exceeds ${limit} bytes`));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => {
      cleanup();
      resolve(Buffer.concat(chunks, size));
    };
    const onError = (error: Error): void => {
      cleanup();
      reject(error);
    };
    const onAbort = (): void => {
      cleanup();
      reject(signal.reason instanceof Error ? signal.reason : new Error('request aborted'));
    };
    stream.on('data', onData);
    stream.on('end', onEnd);
    stream.on('error', onError);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
