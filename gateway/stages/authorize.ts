// Authorization: Principal x target -> Grant. Checks, in order: the target was unambiguous, the
// backend exists, it is in the token's `aud`, the caller's network, the role's read-only
// constraint, the most specific route and its scope, body values, aggregate-only SQL and human
// approval. A role with `enforce: false` has its constraint refusals counted and audited instead
// of enforced. Anything it cannot decide is refused. Reads state only: an approval to request or
// to use up is an intent the commit applies (and refuses with state_unavailable when it cannot).
import { createHash, randomUUID } from 'node:crypto';
import { isIP } from 'node:net';
import type { Readable } from 'node:stream';
import type { RequestContext, ShadowRefusal, Stage, Target } from '../context.js';
import type { Principal } from '../tokens/claims.js';
import type { Clock } from '../clock.js';
import { GatewayError, approvalRequiredError } from '../errors.js';
import { checkRequestHead } from '../headers.js';
import { parseRequestBody, type ParsedBody } from '../mcp/jsonrpc.js';
import { grantedView, holdsAny, planMessages, type MessagePlan } from '../mcp/grants.js';
import { transportKind } from '../mcp/transport.js';
import type { McpCall, McpView } from '../mcp/types.js';
import { DEFAULT_APPROVAL_TTL_MS, SAFE_METHODS, type Agent, type ApprovalPolicy, type MaskPlan, type McpBackend, type NetworkSet, type Role, type Route } from '../policy/types.js';
import type { ApprovalUse } from '../state/store.js';
import type { StateView } from '../state/view.js';
import { approvalDigest, approvalRequestKey, approvalUse } from '../state/rules/approvals.js';
import type { Metrics } from '../telemetry/metrics.js';
import { checkSql } from './aggregate-sql.js';
import { readBounded } from './read-body.js';
import { checkBodyPresence, checkJson, checkQuery, declaresBody } from './request-rules.js';
import { parseStrictJson } from './strict-json.js';

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
}

/** The header an agent repeats a call with once a person approved it. */
export const APPROVAL_HEADER = 'x-agentgate-approval';
const APPROVAL_ID = /^apr_[0-9a-f-]{36}$/;

export function createAuthorize(options: AuthorizeOptions): Stage {
  const { maxBodyBytes, state, metrics } = options;
  const bodyIdleMs = options.bodyIdleMs ?? 10_000;
  const clock = options.clock ?? { now: () => Date.now() };
  const trustedProxies = options.trustedProxies ?? null;

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
      const approval = route.approval ?? (role.approval.has(route.scope) ? { ttlMs: DEFAULT_APPROVAL_TTL_MS } : null);
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
    if (approval !== null) approvalId = await checkApproval(ctx, target, principal, route, approval, body, refusals);
    ctx.grant = { backend: target.backend, scope: route.scope, route: route.template, params, body, mask, shadow: refusals.shadow ?? NO_SHADOW, approvalId };
  }

  async function authorizeMcp(ctx: RequestContext, target: Target, principal: Principal, role: Role, backend: string, mcp: McpBackend, refusals: Refusals): Promise<void> {
    const kind = transportKind(target, ctx.request.headers, backend, mcp);
    const view = grantedView(mcp, principal.scopes, role.grants);
    const mask = role.mask.size === 0 ? null : (role.mask.get(backend) ?? null);
    if (kind !== 'messages') {
      ctx.mcp = { kind, batch: false, messages: [], pending: new Map(), view, mask };
      // A GET or DELETE body would reach the server unchecked.
      if (declaresBody(ctx.request, target)) throw new GatewayError('body_unexpected', `${target.method} ${mcp.path} takes no request body; send JSON-RPC messages with POST`, { closeConnection: true });
      if (!holdsAny(backend, principal.scopes, role.grants)) throw new GatewayError('out_of_scope', `this token holds no scope of backend "${backend}"`);
      // grant.mask stays null: MCP results are masked inside their JSON-RPC messages (mcp/filter.ts).
      ctx.grant = { backend, scope: '', route: `${target.method} ${mcp.path}`, params: {}, body: null, mask: null, shadow: refusals.shadow ?? NO_SHADOW, approvalId: null };
      return;
    }
    const body = await readBody(ctx, `POST ${mcp.path}`, true, maxBodyBytes, bodyIdleMs);
    const parsed = parseRequestBody(body);
    const plan = planMessagesAudited(ctx, parsed, mcp, view, mask, principal, role, kind);
    let approvalId: string | null = null;
    for (const call of plan.tools) {
      checkBodyConstraints(`tools/call ${call.name}`, call.route, role, call.arguments, refusals);
      const approval = call.route.approval ?? (role.approval.has(call.route.scope) ? { ttlMs: DEFAULT_APPROVAL_TTL_MS } : null);
      if (approval === null) continue;
      if (parsed.batch) throw new GatewayError('body_invalid', `tool "${call.name}" needs a person's approval and must be called alone, not in a batch`);
      // The approval covers the tool and its arguments, not the JSON-RPC id a retry changes.
      const subject = Buffer.from(JSON.stringify({ tool: call.name, arguments: call.arguments }));
      approvalId = await checkApproval(ctx, { ...target, path: `${target.path}#tools/call/${call.name}` }, principal, call.route, approval, subject, refusals);
    }
    const first = plan.tools[0];
    ctx.grant = { backend, scope: plan.scope, route: first === undefined ? (plan.summaries[0]?.method ?? 'response') : first.route.template, params: {}, body, mask: null, shadow: refusals.shadow ?? NO_SHADOW, approvalId };
  }

  async function checkApproval(ctx: RequestContext, target: Target, caller: Principal, route: Route, policy: ApprovalPolicy, body: Buffer, refusals: Refusals): Promise<string | null> {
    if (state === undefined) {
      refuse(refusals, new GatewayError('approval_required', `${route.template} needs a person's approval for each call`, { reasonDetail: 'no approval store' }));
      return null;
    }
    const bodySha256 = createHash('sha256').update(body).digest('hex');
    const path = target.path + target.query;
    const requestKey = approvalRequestKey(caller.agent, target.method, path, bodySha256);
    const presented = ctx.request.headers[APPROVAL_HEADER];
    const now = clock.now();
    if (presented !== undefined) {
      const id = typeof presented === 'string' ? presented.trim() : '';
      const use: ApprovalUse = APPROVAL_ID.test(id) ? approvalUse(state.approval(id), requestKey, now) : 'unknown';
      if (use === 'ok') {
        // Used up by the commit, once, and only when every check admitted the call.
        ctx.intents.push({ kind: 'consume_approval', when: 'admitted', id, requestKey });
        return id;
      }
      refuse(refusals, new GatewayError('approval_invalid', APPROVAL_ANSWERS[use], { reasonDetail: `approval ${id.slice(0, 48)}: ${use}` }));
      return null;
    }
    const expiresAt = now + policy.ttlMs;
    let record = state.pendingApproval(requestKey, now);
    if (record === undefined) {
      record = {
        id: `apr_${randomUUID()}`,
        agent: caller.agent,
        role: caller.role,
        backend: target.backend,
        method: target.method,
        path,
        route: route.template,
        bodySha256,
        requestKey,
        digest: approvalDigest(requestKey, expiresAt),
        createdAt: now,
        expiresAt,
        status: 'pending',
        decidedBy: null,
        decidedAt: null,
        reason: null,
        usedAt: null,
      };
      // Recorded by the commit before the agent is answered; the answer names the stored record.
      ctx.intents.push({ kind: 'request_approval', when: 'always', record });
    }
    refuse(refusals, approvalRequiredError(record));
    return null;
  }
}

/** Decide every message, recording what was asked first so a refusal is audited per message. */
function planMessagesAudited(ctx: RequestContext, parsed: ParsedBody, mcp: McpBackend, view: McpView, mask: MaskPlan | null, principal: Principal, role: Role, kind: McpCall['kind']): MessagePlan {
  const summaries = parsed.messages.map((m) => ({
    id: m.kind === 'notification' ? null : m.id,
    method: m.kind === 'response' ? null : m.method,
    tool: m.kind !== 'response' && (m.method === 'tools/call' || m.method === 'prompts/get') && typeof m.params?.name === 'string' ? m.params.name.slice(0, 128) : null,
  }));
  ctx.mcp = { kind, batch: parsed.batch, messages: summaries, pending: new Map(), view, mask };
  const plan = planMessages(parsed, mcp, view, principal.scopes, role.grants);
  ctx.mcp = { kind, batch: parsed.batch, messages: plan.summaries, pending: plan.pending, view, mask };
  return plan;
}

/** Where a constraint refusal goes: thrown, or (shadow mode) recorded and counted. */
interface Refusals {
  readonly shadow: ShadowRefusal[] | null;
  readonly agent: string;
  readonly metrics: Metrics | undefined;
}

const NO_SHADOW: readonly ShadowRefusal[] = Object.freeze([]);

function refuse(refusals: Refusals, error: GatewayError): void {
  if (refusals.shadow === null) throw error;
  refusals.shadow.push({ reason: error.reason, detail: error.reasonDetail });
  refusals.metrics?.shadowRefusal(refusals.agent, error.reason);
}

const APPROVAL_ANSWERS: Readonly<Record<Exclude<ApprovalUse, 'ok'>, string>> = {
  unknown: 'no approval with this id exists',
  pending: 'this approval is still waiting for a person; repeat the request once it is approved',
  denied: 'this approval was denied',
  used: 'this approval was already used; each approval passes one call',
  expired: 'this approval has expired; send the request without the header to ask again',
  mismatch: 'this approval was given for a different request (agent, method, path or body); send the request without the header to ask again',
};

/** The first candidate route the token holds a scope for, which the agent's role still grants. */
function grantedRoute(routes: readonly Route[], principal: Principal, roleGrants: ReadonlySet<string>): Route | null {
  for (const route of routes) {
    // The role is read from the pinned policy, so a reload that narrows a role takes effect on
    // tokens issued before it.
    if (principal.scopes.has(route.scope) && roleGrants.has(route.scope)) return route;
  }
  return null;
}

/**
 * The caller's address: the socket peer, or, when the peer is a trusted proxy, the right-most
 * `X-Forwarded-For` entry that is not itself a trusted proxy. Null when an entry is not an address.
 */
export function clientAddress(remoteAddress: string, forwardedFor: string | string[] | undefined, trusted: NetworkSet | null): string | null {
  if (trusted === null || forwardedFor === undefined || !inSet(trusted, remoteAddress)) return remoteAddress;
  const entries = (Array.isArray(forwardedFor) ? forwardedFor.join(',') : forwardedFor).split(',');
  let address = remoteAddress;
  for (let i = entries.length - 1; i >= 0; i--) {
    const entry = (entries[i] ?? '').trim();
    if (isIP(entry) === 0) return null;
    address = entry;
    if (!inSet(trusted, entry)) return entry;
  }
  return address;
}

function inSet(set: NetworkSet, address: string): boolean {
  const family = isIP(address);
  if (family === 0) return false;
  return set.list.check(address, family === 4 ? 'ipv4' : 'ipv6');
}

function checkNetwork(ctx: RequestContext, role: Role, agent: Agent | undefined, trusted: NetworkSet | null, refusals: Refusals): void {
  const address = clientAddress(ctx.request.remoteAddress, ctx.request.headers['x-forwarded-for'], trusted);
  const sets = [role.network?.allow, agent?.network?.allow];
  for (const set of sets) {
    if (set === undefined) continue;
    if (address === null || !inSet(set, address)) {
      refuse(
        refusals,
        new GatewayError('network_denied', 'calls for this agent are not accepted from this network', {
          reasonDetail: `${address ?? 'unparseable X-Forwarded-For'} (peer ${ctx.request.remoteAddress}) not in ${set.cidrs.join(', ')}`,
        }),
      );
      return;
    }
  }
}

/** Buffer the body a constraint must read (bounded): what is checked is exactly what is forwarded. */
async function readBody(ctx: RequestContext, template: string, json: boolean, maxBodyBytes: number, bodyIdleMs: number): Promise<Buffer> {
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

function jsonObject(body: Buffer): Readonly<Record<string, unknown>> {
  const parsed = parseStrictJson(body);
  if (!parsed.ok) throw new GatewayError('body_invalid', `the JSON body cannot be checked: ${parsed.problem}`);
  const value = parsed.value;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new GatewayError('body_invalid', 'the JSON body must be an object');
  }
  return value as Record<string, unknown>;
}

/** Body-value rules and aggregate-only SQL on a JSON object: a REST body or a tool's arguments. */
function checkBodyConstraints(label: string, route: Route, role: Role, fields: Readonly<Record<string, unknown>>, refusals: Refusals): void {
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
  const query = route.query;
  const constraint = role.query;
  if (query === null || constraint === null) return;
  const sql = Object.hasOwn(fields, query.field) ? fields[query.field] : undefined;
  const verdict = typeof sql === 'string' ? checkSql(sql, constraint, query.dialect) : { ok: false as const, problem: `${label} needs the SQL as a string in "${query.field}"` };
  if (!verdict.ok) {
    refuse(refusals, new GatewayError('not_aggregate', `${verdict.problem}; role "${role.name}" may run ${constraint.aggregateOnly ? 'aggregate queries only, ' : ''}over ${[...constraint.tables].join(', ')}`, {
      reasonDetail: `${verdict.problem}: ${typeof sql === 'string' ? JSON.stringify(sql.slice(0, 200)) : typeof sql}`,
    }));
  }
}

function isJsonContentType(value: string): boolean {
  const semi = value.indexOf(';');
  const type = (semi === -1 ? value : value.slice(0, semi)).trim().toLowerCase();
  return type === 'application/json';
}
