// Tool-level least privilege: which MCP methods pass, which tools, resources and prompts a token
// may use, decided per JSON-RPC message from the token's scopes and its role's grants (both, so
// a reload that narrows a role takes effect on tokens already issued). Names are compared
// exactly, so a look-alike or differently cased name is simply not granted.
import { GatewayError } from '../errors.js';
import type { McpBackend, Route } from '../policy/types.js';
import type { ParsedBody } from './jsonrpc.js';
import { idKey, type McpView, type RpcSummary } from './types.js';

/** Methods every token of the backend may send; list answers are filtered to the grant. */
const OPEN_METHODS = new Set(['initialize', 'ping', 'tools/list', 'prompts/list', 'resources/list', 'resources/templates/list']);
const RESOURCE_METHODS = new Set(['resources/read', 'resources/subscribe', 'resources/unsubscribe']);

/** A granted tools/call whose arguments the role's constraints still check. */
export interface ToolCall {
  readonly name: string;
  readonly route: Route;
  readonly arguments: Readonly<Record<string, unknown>>;
}

export interface MessagePlan {
  readonly summaries: readonly RpcSummary[];
  readonly pending: ReadonlyMap<string, string>;
  readonly tools: readonly ToolCall[];
  /** The scope that granted the first tool, resource or prompt used; '' for open methods only. */
  readonly scope: string;
}

export function grantedView(mcp: McpBackend, scopes: ReadonlySet<string>, roleGrants: ReadonlySet<string>): McpView {
  const held = (scope: string): boolean => scopes.has(scope) && roleGrants.has(scope);
  const tools = new Set<string>();
  for (const [name, routes] of mcp.tools) if (routes.some((r) => held(r.scope))) tools.add(name);
  const prompts = new Set<string>();
  for (const [name, list] of mcp.prompts) if (list.some(held)) prompts.add(name);
  const resources = mcp.resources.filter((r) => held(r.scope)).map((r) => r.template);
  return { tools, prompts, resources };
}

/** Whether the token holds anything at all on the backend (needed for its stream and sessions). */
export function holdsAny(backend: string, scopes: ReadonlySet<string>, roleGrants: ReadonlySet<string>): boolean {
  for (const scope of scopes) if (roleGrants.has(scope) && scope.startsWith(`${backend}:`)) return true;
  return false;
}

export function uriGranted(view: McpView, uri: string): boolean {
  return view.resources.some((t) => t.pattern.test(uri));
}

/**
 * Decide every message of a body. Throws the first refusal (out_of_scope for an ungranted tool,
 * resource or prompt, method_denied for a method outside the allowlist); in a batch the whole
 * batch is refused, so nothing of it is forwarded.
 */
export function planMessages(body: ParsedBody, mcp: McpBackend, view: McpView, scopes: ReadonlySet<string>, roleGrants: ReadonlySet<string>): MessagePlan {
  const summaries: RpcSummary[] = [];
  const pending = new Map<string, string>();
  const tools: ToolCall[] = [];
  let scope = '';
  const held = (s: string): boolean => scopes.has(s) && roleGrants.has(s);
  body.messages.forEach((m, i) => {
    const where = body.batch ? `message ${i} of the batch` : 'the message';
    const refuse = (reason: 'out_of_scope' | 'method_denied' | 'body_invalid', what: string, detail: string): never => {
      throw new GatewayError(reason, body.batch ? `${where}: ${what}; the whole batch was refused and nothing of it was sent` : what, { reasonDetail: detail });
    };
    if (m.kind === 'response') {
      // The agent answering a server request (roots, sampling, elicitation): the server asked.
      summaries.push({ id: m.id, method: null, tool: null });
      return;
    }
    const params = m.params;
    const name = typeof params?.name === 'string' ? params.name : null;
    summaries.push({ id: m.kind === 'request' ? m.id : null, method: m.method, tool: m.method === 'tools/call' || m.method === 'prompts/get' ? (name?.slice(0, 128) ?? null) : null });
    if (m.kind === 'notification') {
      if (!m.method.startsWith('notifications/')) refuse('method_denied', `"${m.method.slice(0, 64)}" sent as a notification (no id) is not allowed`, `notification ${m.method.slice(0, 64)}`);
      return;
    }
    pending.set(idKey(m.id), m.method);
    if (OPEN_METHODS.has(m.method)) {
      if (m.method === 'initialize' && body.batch) refuse('body_invalid', 'initialize must not be part of a batch', 'initialize in batch');
      return;
    }
    if (m.method === 'tools/call') {
      if (name === null) refuse('body_invalid', 'tools/call needs params.name, a string', 'tools/call without a name');
      const args = params?.arguments;
      if (args !== undefined && (typeof args !== 'object' || args === null || Array.isArray(args))) refuse('body_invalid', 'tools/call params.arguments must be an object', 'arguments not an object');
      const route = mcp.tools.get(name ?? '')?.find((r) => held(r.scope));
      if (route === undefined) {
        const known = mcp.tools.has(name ?? '');
        refuse('out_of_scope', `tool "${(name ?? '').slice(0, 128)}" is not granted to this token`, known ? `tool ${name ?? ''} needs ${(mcp.tools.get(name ?? '') ?? []).map((r) => r.scope).join(' or ')}` : `tool ${JSON.stringify((name ?? '').slice(0, 128))} is not in the policy`);
        return;
      }
      if (scope === '') scope = route.scope;
      tools.push({ name: name ?? '', route, arguments: (args ?? {}) as Record<string, unknown> });
      return;
    }
    if (RESOURCE_METHODS.has(m.method)) {
      const uri = params?.uri;
      if (typeof uri !== 'string') refuse('body_invalid', `${m.method} needs params.uri, a string`, `${m.method} without uri`);
      const found = mcp.resources.find((r) => held(r.scope) && r.template.pattern.test(String(uri)));
      if (found === undefined) refuse('out_of_scope', `resource "${String(uri).slice(0, 256)}" is not granted to this token`, `${m.method} ${String(uri).slice(0, 256)}`);
      else if (scope === '') scope = found.scope;
      return;
    }
    if (m.method === 'prompts/get') {
      const granted = name === null ? undefined : mcp.prompts.get(name)?.find(held);
      if (granted === undefined) refuse('out_of_scope', `prompt "${(name ?? '').slice(0, 128)}" is not granted to this token`, `prompts/get ${JSON.stringify((name ?? '').slice(0, 128))}`);
      else if (scope === '') scope = granted;
      return;
    }
    if (m.method === 'completion/complete') {
      // Completions name what they complete: only a granted prompt or resource template.
      const ref = params?.ref as Record<string, unknown> | undefined;
      const ok =
        (ref?.type === 'ref/prompt' && typeof ref.name === 'string' && view.prompts.has(ref.name)) ||
        (ref?.type === 'ref/resource' && typeof ref.uri === 'string' && view.resources.some((t) => t.text === ref.uri));
      if (!ok) refuse('out_of_scope', 'completion/complete may only refer to a granted prompt or resource template', 'completion ref not granted');
      return;
    }
    refuse('method_denied', `method "${m.method.slice(0, 64)}" is not allowed through the gateway`, `method ${m.method.slice(0, 64)}`);
  });
  return { summaries, pending, tools, scope };
}
