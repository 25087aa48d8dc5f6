// Renders a GatewayError as an RFC 9457 problem document with its RFC 6750 challenge.
// Never includes a stack trace, a backend address or upstream body text: only catalog text,
// the error's agent-safe `detail` and the request id.
import { ADMIN_PROBLEMS, REASONS, type AdminProblemCode, type GatewayError, type ReasonCode } from './errors.js';

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';
const REALM = 'Bearer realm="agentgate"';

export interface RenderedProblem {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: string;
}

export function problemType(reason: ReasonCode | AdminProblemCode): string {
  return `urn:agentgate:problem:${reason}`;
}

/** The `WWW-Authenticate` value for a reason, or null when it sends none (RFC 6750 §3). */
export function challengeFor(reason: ReasonCode): string | null {
  const bearer = REASONS[reason].bearer;
  switch (bearer) {
    case 'none':
      return null;
    case 'challenge':
      return REALM;
    default:
      return `${REALM}, error="${bearer}"`;
  }
}

export function renderProblem(error: GatewayError, requestId: string): RenderedProblem {
  const rendered = renderReason(error.reason, error.detail, requestId, error.retryAfterSeconds, error.extensions);
  if (error.headers !== undefined) {
    // Extra fields never replace the standard ones (type, length, challenge).
    for (const [name, value] of Object.entries(error.headers)) if (!Object.hasOwn(rendered.headers, name)) rendered.headers[name] = value;
  }
  return rendered;
}

export function renderReason(
  reason: ReasonCode,
  detail: string,
  requestId: string,
  retryAfterSeconds?: number,
  extensions?: Readonly<Record<string, string>>,
): RenderedProblem {
  const spec = REASONS[reason];
  const body = JSON.stringify({
    // Extensions first, so they can never replace a standard member.
    ...extensions,
    type: problemType(reason),
    title: spec.title,
    status: spec.status,
    detail,
    requestId,
  });
  const headers: Record<string, string> = {
    'content-type': PROBLEM_CONTENT_TYPE,
    'content-length': String(Buffer.byteLength(body)),
    'cache-control': 'no-store',
    'x-request-id': requestId,
  };
  const challenge = challengeFor(reason);
  if (challenge !== null) headers['www-authenticate'] = challenge;
  if (retryAfterSeconds !== undefined) headers['retry-after'] = String(Math.max(0, Math.ceil(retryAfterSeconds)));
  return { status: spec.status, headers, body };
}

/**
 * An admin API answer for a refused call: the catalog's type, title and status, the operator's
 * `detail`, and `members` (e.g. the policy `problems`) that never replace a standard member.
 */
export function renderAdminProblem(
  code: AdminProblemCode,
  detail: string,
  members: Readonly<Record<string, unknown>> = {},
  extraHeaders: Readonly<Record<string, string>> = {},
): RenderedProblem {
  const spec = ADMIN_PROBLEMS[code];
  const body = `${JSON.stringify({ ...members, type: problemType(code), title: spec.title, status: spec.status, detail })}\n`;
  return {
    status: spec.status,
    headers: { ...extraHeaders, 'content-type': PROBLEM_CONTENT_TYPE, 'content-length': String(Buffer.byteLength(body)), 'cache-control': 'no-store' },
    body,
  };
}
