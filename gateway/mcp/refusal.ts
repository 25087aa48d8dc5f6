// How refusals reach an MCP client. A refused message that the gateway could parse is answered the
// way MCP reports a failed request: HTTP 200 with a JSON-RPC error response (one per request of a
// refused batch), code -32003 and the problem document as `error.data`, so the SDK client raises
// an McpError the agent can read instead of a transport failure. Everything before the message
// (token, cross-domain, breaker, kill, malformed JSON) stays an HTTP problem; on an MCP backend its
// challenge names the Protected Resource Metadata (RFC 9728 §5.1).
import type { RequestContext } from '../context.js';
import type { GatewayError, ReasonCode } from '../errors.js';
import type { RenderedProblem } from '../problem.js';
import { problemType } from '../problem.js';
import { resourceMetadataUrl } from '../policy/resource.js';
import { idKey } from './types.js';

/** The JSON-RPC error code of a request the gateway's policy refused (server-defined range). */
export const POLICY_REFUSED = -32003;
/** JSON-RPC 2.0 "Invalid params": the message was well formed but its parameters cannot be checked. */
export const INVALID_PARAMS = -32602;

/** Refusals of a parsed message, answered in JSON-RPC. */
const MESSAGE_REASONS: ReadonlySet<ReasonCode> = new Set(['out_of_scope', 'method_denied', 'not_aggregate', 'approval_required', 'approval_invalid', 'body_invalid']);

export function renderMcpRefusal(ctx: RequestContext, error: GatewayError, rendered: RenderedProblem, publicUrl: string | null): RenderedProblem {
  const backend = ctx.target === null ? undefined : ctx.policy.backends.get(ctx.target.backend);
  const mcp = backend?.mcp ?? null;
  if (backend === undefined || mcp === null) return rendered;
  const call = ctx.mcp;
  if (call !== null && call.kind === 'messages' && MESSAGE_REASONS.has(error.reason)) {
    const ids = call.messages.filter((m) => m.method !== null && m.id !== null).map((m) => m.id);
    if (ids.length > 0) {
      const data = {
        ...error.extensions,
        type: problemType(error.reason),
        title: error.spec.title,
        status: error.status,
        reason: error.reason,
        detail: error.detail,
        requestId: ctx.requestId,
      };
      const code = error.reason === 'body_invalid' ? INVALID_PARAMS : POLICY_REFUSED;
      const answers = ids.map((id) => ({ jsonrpc: '2.0', id, error: { code, message: `${error.spec.title}: ${error.detail}`, data } }));
      // Distinct ids only (the parser refuses a batch that repeats one).
      const unique = new Map(answers.map((a) => [idKey(a.id ?? ''), a]));
      const body = JSON.stringify(call.batch ? [...unique.values()] : answers[0]);
      return {
        status: 200,
        headers: { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), 'cache-control': 'no-store', 'x-request-id': ctx.requestId },
        body,
      };
    }
  }
  const challenge = rendered.headers['www-authenticate'];
  if (challenge !== undefined && publicUrl !== null) {
    return { ...rendered, headers: { ...rendered.headers, 'www-authenticate': `${challenge}, resource_metadata="${resourceMetadataUrl(publicUrl, backend)}"` } };
  }
  return rendered;
}
