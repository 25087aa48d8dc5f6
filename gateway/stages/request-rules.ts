// Route rules about the request itself, beside the grant: whether a body may come at all (methods
// that carry none take one only where the route says `body: true`). Pure and synchronous; used by
// authorize once the route is known, before anything is read or forwarded.
import type { InboundRequest, Target } from '../context.js';
import { GatewayError } from '../errors.js';
import type { Route } from '../policy/types.js';

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
