// Leaf types of the MCP support: what authorize learned about a Streamable HTTP exchange, read by
// the response filter, the refusal renderer, the audit line and the tool-call metric.
import type { MaskPlan, UriTemplate } from '../policy/types.js';

/** A JSON-RPC id: a string or a number (JSON-RPC 2.0 §4; MCP forbids null for requests). */
export type RpcId = string | number;

/** One message of a request body, as audited: `{ id, method, tool }`. */
export interface RpcSummary {
  /** null for notifications. */
  readonly id: RpcId | null;
  /** null for a client's response to a server request. */
  readonly method: string | null;
  /** `params.name` of a tools/call (prompts/get: the prompt), exactly as sent; else null. */
  readonly tool: string | null;
}

/** What a token may see and call on one MCP backend: the grants its scopes and role share. */
export interface McpView {
  readonly tools: ReadonlySet<string>;
  readonly prompts: ReadonlySet<string>;
  readonly resources: readonly UriTemplate[];
}

/** The Streamable HTTP exchange authorize checked (RequestContext.mcp). */
export interface McpCall {
  /** POST: JSON-RPC messages; GET: the server's stream; DELETE: end the session. */
  readonly kind: 'messages' | 'stream' | 'end';
  readonly batch: boolean;
  readonly messages: readonly RpcSummary[];
  /** Requests awaiting an answer, by id key (see idKey): their method. */
  readonly pending: ReadonlyMap<string, string>;
  readonly view: McpView;
  /** Fields the role masks inside tool results (content[].text JSON, structuredContent); null: none. */
  readonly mask: MaskPlan | null;
  /** The server's session id behind the agent's `Mcp-Session-Id` (mcp/session.ts), forwarded in its place; null: none presented. */
  readonly session: string | null;
}

/** Ids 1 and "1" are different JSON-RPC ids: keep them apart in maps. */
export function idKey(id: RpcId): string {
  return typeof id === 'number' ? `n:${id}` : `s:${id}`;
}
