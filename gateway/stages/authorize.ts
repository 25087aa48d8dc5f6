// Authorization: Principal x target -> Grant. Checks, in order: the target was unambiguous, the
// backend exists, it is in the token's `aud`, the caller's network, the role's read-only
// constraint, the most specific route and its scope, body values, aggregate-only SQL and human
// approval. A role with `enforce: false` has its constraint refusals counted and audited instead
// of enforced. Anything it cannot decide is refused. Reads state only: an approval to request or
// to use up is an intent the commit applies (and refuses with state_unavailable when it cannot).
// The stage decides the order; the role constraints are in constraints/ (network.ts, body.ts,
// sql.ts, approval.ts; refusals.ts says where a refusal goes in shadow mode).
import type { RequestContext, Stage, Target } from '../context.js';
import type { Principal } from '../tokens/claims.js';
import type { Clock } from '../clock.js';
import { GatewayError } from '../errors.js';
import { checkRequestHead } from '../headers.js';
import { parseRequestBody, type ParsedBody } from '../mcp/jsonrpc.js';
import { grantedView, holdsAny, planMessages, type MessagePlan } from '../mcp/grants.js';
import { transportKind } from '../mcp/transport.js';
import type { McpSessions } from '../mcp/session.js';
import type { McpCall, McpView } from '../mcp/types.js';
import { SAFE_METHODS, type ApprovalPolicy, type MaskPlan, type McpBackend, type NetworkSet, type Role, type Route } from '../policy/types.js';
import type { StateView } from '../state/view.js';
import type { Metrics } from '../telemetry/metrics.js';
import { approvalPolicy, checkApproval, type ApprovalDeps } from './constraints/approval.js';
import { checkBodyValues, jsonObject, readBody } from './constraints/body.js';
import { checkNetwork } from './constraints/network.js';
import { NO_SHADOW, refuse, type Refusals } from './constraints/refusals.js';
import { checkAggregateSql } from './constraints/sql.js';
import { checkBodyPresence, checkQuery, declaresBody } from './request-rules.js';

export interface AuthorizeOptions {
  readonly maxBodyBytes: number;
  /** Longest pause between two pieces of a body authorize reads (limits.bodyIdleTimeout); default 10 s. */
  readonly bodyIdleMs?: number;
  /** Needed for approvals; without it a route that needs approval is always refused. */
  readonly state?: StateView;
  readonly clock?: Clock;
  readonly metrics?: Metrics;
  /** Peers whose `X-Forwarded-For` is believed; null or absent: none (the socket peer counts). */
  readonly trustedProxies?: NetworkSet | null;
  /** Opens the `Mcp-Session-Id` an agent presents; without it every presented id is refused (mcp_session_unknown). */
  readonly mcpSessions?: McpSessions;
}

export function createAuthorize(options: AuthorizeOptions): Stage {
  const { maxBodyBytes, state, metrics } = options;
  const bodyIdleMs = options.bodyIdleMs ?? 10_000;
  const clock = options.clock ?? { now: () => Date.now() };
  const trustedProxies = options.trustedProxies ?? null;
  const approvals: ApprovalDeps = { state, clock };
  const mcpSessions = options.mcpSessions ?? null;

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
      // Framing lookalikes, method overrides, URL rewrites: refused before anything else is decided.
      checkRequestHead(ctx.request, target.query);
      const backend = ctx.policy.backends.get(target.backend);
      if (backend === undefined) {
        throw new GatewayError('backend_unknown', 'no backend is published under this path');
      }
      if (!principal.audience.has(backend.name)) {
        throw new GatewayError('cross_domain', `this token was not issued for backend "${backend.name}"`);
      }
      const role = ctx.policy.roles.get(principal.role);
      if (role === undefined) throw new Error(`principal role ${principal.role} missing from pinned policy`);
      const agent = ctx.policy.agents.get(principal.agent);
      // Shadow refusals are collected only for roles in shadow mode; others throw at once.
      const refusals: Refusals = { shadow: role.enforce ? null : [], agent: principal.agent, metrics };

      if (role.network !== null || (agent?.network ?? null) !== null) checkNetwork(ctx, role, agent, trustedProxies, refusals);
      // An MCP backend is authorized per JSON-RPC message (tools, resources, prompts), not per route.
      if (backend.mcp !== null) return authorizeMcp(ctx, target, principal, role, backend.name, backend.mcp, refusals);
      if (role.readOnly && !SAFE_METHODS.has(target.method)) {
        refuse(refusals, new GatewayError('read_only', `role "${role.name}" may only read (GET, HEAD, OPTIONS)`));
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
      checkBodyPresence(ctx.request, target, route);
      const queryRefusal = checkQuery(target.query, route);
      if (queryRefusal !== null) refuse(refusals, queryRefusal);
      const mask = role.mask.size === 0 ? null : (role.mask.get(backend.name) ?? null);
      const approval = approvalPolicy(route, role);
      const checksQuery = route.query !== null && role.query !== null;
      if (route.body === null && route.json === null && !checksQuery && approval === null) {
        // The hot path: nothing to read, nothing to wait for.
        ctx.grant = { backend: backend.name, scope: route.scope, route: route.template, params: match.params, body: null, mask, shadow: refusals.shadow ?? NO_SHADOW, approvalId: null };
        return;
      }
      return checkContent(ctx, target, principal, role, route, match.params, mask, approval, refusals);
    },
  };

  async function checkContent(
    ctx: RequestContext,
    target: Target,
    principal: Principal,
    role: Role,
    route: Route,
    params: Readonly<Record<string, string>>,
    mask: MaskPlan | null,
    approval: ApprovalPolicy | null,
    refusals: Refusals,
  ): Promise<void> {
    const json = route.body !== null || route.json !== null || (route.query !== null && role.query !== null);
    const body = await readBody(ctx, route.template, json, maxBodyBytes, bodyIdleMs);
    if (json) checkBodyConstraints(`${target.method} ${target.path}`, route, role, jsonObject(body), refusals);
    let approvalId: string | null = null;
    // Last: a request other checks refuse never waits for a person.
    if (approval !== null) approvalId = await checkApproval(approvals, ctx, target, principal, route, approval, body, refusals);
    ctx.grant = { backend: target.backend, scope: route.scope, route: route.template, params, body, mask, shadow: refusals.shadow ?? NO_SHADOW, approvalId };
  }

  async function authorizeMcp(ctx: RequestContext, target: Target, principal: Principal, role: Role, backend: string, mcp: McpBackend, refusals: Refusals): Promise<void> {
    const kind = transportKind(target, ctx.request.headers, backend, mcp);
    const session = serverSession(ctx.request.headers['mcp-session-id'], principal, backend);
    const view = grantedView(mcp, principal.scopes, role.grants);
    const mask = role.mask.size === 0 ? null : (role.mask.get(backend) ?? null);
    if (kind !== 'messages') {
      ctx.mcp = { kind, batch: false, messages: [], pending: new Map(), view, mask, session };
      // A GET or DELETE body would reach the server unchecked.
      if (declaresBody(ctx.request, target)) throw new GatewayError('body_unexpected', `${target.method} ${mcp.path} takes no request body; send JSON-RPC messages with POST`, { closeConnection: true });
      if (!holdsAny(backend, principal.scopes, role.grants)) throw new GatewayError('out_of_scope', `this token holds no scope of backend "${backend}"`);
      // grant.mask stays null: MCP results are masked inside their JSON-RPC messages (mcp/filter.ts).
      ctx.grant = { backend, scope: '', route: `${target.method} ${mcp.path}`, params: {}, body: null, mask: null, shadow: refusals.shadow ?? NO_SHADOW, approvalId: null };
      return;
    }
    const body = await readBody(ctx, `POST ${mcp.path}`, true, maxBodyBytes, bodyIdleMs);
    const parsed = parseRequestBody(body);
    const plan = planMessagesAudited(ctx, parsed, mcp, view, mask, principal, role, kind, session);
    let approvalId: string | null = null;
    for (const call of plan.tools) {
      checkBodyConstraints(`tools/call ${call.name}`, call.route, role, call.arguments, refusals);
      const approval = approvalPolicy(call.route, role);
      if (approval === null) continue;
      if (parsed.batch) throw new GatewayError('body_invalid', `tool "${call.name}" needs a person's approval and must be called alone, not in a batch`);
      // The approval covers the tool and its arguments, not the JSON-RPC id a retry changes.
      const subject = Buffer.from(JSON.stringify({ tool: call.name, arguments: call.arguments }));
      approvalId = await checkApproval(approvals, ctx, { ...target, path: `${target.path}#tools/call/${call.name}` }, principal, call.route, approval, subject, refusals);
    }
    const first = plan.tools[0];
    ctx.grant = { backend, scope: plan.scope, route: first === undefined ? (plan.summaries[0]?.method ?? 'response') : first.route.template, params: {}, body, mask: null, shadow: refusals.shadow ?? NO_SHADOW, approvalId };
  }

  /**
   * The server's session id behind the `Mcp-Session-Id` presented (null: none presented). An id
   * the gateway did not hand to this agent (acting for this user, with a delegated token) for
   * this backend (another agent's or user's, altered, the server's own, or sealed under a secret
   * since replaced) is refused as not found: MCP clients answer a 404 by starting a new session.
   * Not a violation: a stale id is not an attack.
   */
  function serverSession(presented: string | string[] | undefined, owner: Principal, backend: string): string | null {
    if (presented === undefined) return null;
    const opened = typeof presented === 'string' && mcpSessions !== null ? mcpSessions.open(owner, backend, presented) : null;
    if (opened !== null) return opened;
    throw new GatewayError('mcp_session_unknown', 'this Mcp-Session-Id was not given to this agent (or the user it acts for) by the gateway; start a new session (initialize without Mcp-Session-Id)', {
      reasonDetail: typeof presented === 'string' ? `session id of ${presented.length} characters not opened` : 'more than one Mcp-Session-Id',
    });
  }
}

/** Decide every message, recording what was asked first so a refusal is audited per message. */
function planMessagesAudited(ctx: RequestContext, parsed: ParsedBody, mcp: McpBackend, view: McpView, mask: MaskPlan | null, principal: Principal, role: Role, kind: McpCall['kind'], session: string | null): MessagePlan {
  const summaries = parsed.messages.map((m) => ({
    id: m.kind === 'notification' ? null : m.id,
    method: m.kind === 'response' ? null : m.method,
    tool: m.kind !== 'response' && (m.method === 'tools/call' || m.method === 'prompts/get') && typeof m.params?.name === 'string' ? m.params.name.slice(0, 128) : null,
  }));
  ctx.mcp = { kind, batch: parsed.batch, messages: summaries, pending: new Map(), view, mask, session };
  const plan = planMessages(parsed, mcp, view, principal.scopes, role.grants);
  ctx.mcp = { kind, batch: parsed.batch, messages: plan.summaries, pending: plan.pending, view, mask, session };
  return plan;
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

/** Body-value rules, then aggregate-only SQL, on a JSON object: a REST body or a tool's arguments. */
function checkBodyConstraints(label: string, route: Route, role: Role, fields: Readonly<Record<string, unknown>>, refusals: Refusals): void {
  checkBodyValues(label, route, fields, refusals);
  checkAggregateSql(label, route, role, fields, refusals);
}
