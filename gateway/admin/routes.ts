// The admin API: JSON in, JSON out, problem documents for every bad input. Each handler makes
// its change durable (store write) before answering, so an answered kill is a kill in force.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Clock } from '../context.js';
import { ConfigError } from '../errors.js';
import type { PolicySnapshot } from '../policy/types.js';
import { viewBreaker } from '../state/breaker.js';
import type { ApprovalRecord, KillRecord, Store } from '../state/store.js';
import type { AuditLog } from '../telemetry/audit-log.js';

export interface AdminDeps {
  readonly store: Store;
  readonly clock: Clock;
  readonly audit: AuditLog;
  policy(): PolicySnapshot;
  /** Validate and swap in the policies on disk; throws ConfigError with every problem. */
  reload(): Promise<PolicySnapshot>;
  /** Abort the agent's in-flight requests, streams and WebSockets. Returns how many. */
  abortAgent(agent: string, reason: string): number;
  /** Gateway-wide facts for GET /status. */
  status(): Record<string, unknown>;
  /** Keep metrics gauges in step with kills and breakers. */
  onAgentChange(agent: string): void;
}

export class AdminError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly detail: string,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(detail);
  }
}

const MAX_BODY = 64 * 1024;
const AGENT_PATH = /^\/agents\/([^/]+)(\/kill|\/revive)?$/;
const APPROVAL_PATH = /^\/approvals\/([^/]+)(\/approve|\/deny)?$/;

export function createAdminHandler(deps: AdminDeps) {
  const { store, clock } = deps;

  function agentView(id: string) {
    const policy = deps.policy();
    const agent = policy.agents.get(id);
    if (agent === undefined) return null;
    const role = policy.roles.get(agent.role);
    const breaker = viewBreaker(store.breaker(id), role?.breaker ?? null, clock.now());
    const kill = store.killRecord(id);
    const activity = store.activity(id);
    return {
      id,
      role: agent.role,
      owner: agent.owner,
      breaker: breaker.state,
      retryAfterSeconds: breaker.retryAfterSeconds,
      violationsInWindow: breaker.violationsInWindow,
      trips: store.breaker(id)?.trips ?? 0,
      killed: kill === undefined ? null : { at: new Date(kill.at).toISOString(), reason: kill.reason, by: kill.by },
      lastSeen: activity.lastSeen === null ? null : new Date(activity.lastSeen).toISOString(),
      liveTokens: activity.liveTokens,
    };
  }

  function requireAgent(id: string): void {
    if (!deps.policy().agents.has(id)) throw new AdminError(404, 'agent_unknown', `no agent "${id}" in the policies`);
  }

  // Node cannot read the socket peer's credentials (SO_PEERCRED); the socket is 0600, so the
  // peer runs as the gateway's own user (or root). The CLI names the operator it runs for.
  function operator(body: Record<string, unknown>): string {
    const who = typeof body.operator === 'string' && body.operator !== '' && body.operator.length <= 200 ? body.operator : 'unnamed operator';
    return `${who} (admin socket, uid ${process.getuid?.() ?? '?'})`;
  }

  function reasonOf(body: Record<string, unknown>): string {
    const reason = body.reason;
    if (typeof reason !== 'string' || reason.trim() === '') throw new AdminError(400, 'invalid_request', 'a non-empty "reason" is required');
    if (reason.length > 500) throw new AdminError(400, 'invalid_request', '"reason" is limited to 500 characters');
    return reason.trim();
  }

  async function kill(id: string, reason: string, by: string): Promise<{ agent: string; aborted: number }> {
    const record: KillRecord = { agent: id, reason, at: clock.now(), by };
    // Durable first: the next request is refused, and a restart keeps the kill.
    await store.kill(record);
    deps.onAgentChange(id);
    const aborted = deps.abortAgent(id, reason);
    audit('kill', id, { reason, by, aborted });
    return { agent: id, aborted };
  }

  async function revive(id: string, by: string): Promise<{ agent: string; revived: boolean }> {
    const revived = await store.revive(id);
    deps.onAgentChange(id);
    audit('revive', id, { by, revived });
    return { agent: id, revived };
  }

  function audit(action: string, agent: string | null, fields: Record<string, unknown>): void {
    deps.audit.write({ time: new Date(clock.now()).toISOString(), kind: 'admin', requestId: `admin-${clock.now()}`, decision: 'allow', reason: 'none', action, agent, ...fields });
  }

  async function route(method: string, path: string, body: Record<string, unknown>): Promise<[number, unknown]> {
    if (path === '/status') {
      allow(method, 'GET');
      const policy = deps.policy();
      let open = 0;
      for (const id of policy.agents.keys()) if (agentView(id)?.breaker === 'open') open++;
      return [200, { ...deps.status(), agents: policy.agents.size, killed: store.kills().length, breakersOpen: open, stateDriver: store.driver, stateHealthy: store.isHealthy() }];
    }
    if (path === '/agents') {
      allow(method, 'GET');
      return [200, { agents: [...deps.policy().agents.keys()].sort().map((id) => agentView(id)) }];
    }
    const m = AGENT_PATH.exec(path);
    if (m !== null) {
      const id = decodeURIComponent(m[1] ?? '');
      requireAgent(id);
      if (m[2] === undefined) {
        allow(method, 'GET');
        return [200, agentView(id)];
      }
      allow(method, 'POST');
      if (m[2] === '/kill') return [200, await kill(id, reasonOf(body), operator(body))];
      return [200, await revive(id, operator(body))];
    }
    if (path === '/approvals') {
      allow(method, 'GET');
      return [200, { approvals: [...store.approvals()].sort((a, b) => a.createdAt - b.createdAt).map(approvalView) }];
    }
    const a = APPROVAL_PATH.exec(path);
    if (a !== null) {
      const id = decodeURIComponent(a[1] ?? '');
      const record = store.approval(id);
      if (record === undefined) throw new AdminError(404, 'approval_unknown', `no approval "${id}"`);
      if (a[2] === undefined) {
        allow(method, 'GET');
        return [200, approvalView(record)];
      }
      allow(method, 'POST');
      const decision = a[2] === '/approve' ? 'approved' : 'denied';
      const reason = decision === 'denied' ? reasonOf(body) : typeof body.reason === 'string' && body.reason.trim() !== '' ? reasonOf(body) : null;
      const by = operator(body);
      const decided = await store.decideApproval(id, decision, by, reason);
      if (decided === null) {
        const current = store.approval(id) ?? record;
        const state = current.status !== 'pending' ? `already ${current.status}` : 'expired';
        throw new AdminError(409, 'approval_not_pending', `approval ${id} is ${state}; only a pending, unexpired approval can be decided`);
      }
      audit(decision === 'approved' ? 'approve' : 'deny', decided.agent, { approvalId: id, decision, by, reason, method: decided.method, path: decided.path, digest: decided.digest });
      return [200, approvalView(decided)];
    }
    if (path === '/kill') {
      allow(method, 'POST');
      const reason = reasonOf(body);
      const by = operator(body);
      const results = [];
      for (const id of deps.policy().agents.keys()) results.push(await kill(id, reason, by));
      return [200, { killed: results.length, aborted: results.reduce((n, r) => n + r.aborted, 0) }];
    }
    if (path === '/revive') {
      allow(method, 'POST');
      const by = operator(body);
      const ids = new Set([...deps.policy().agents.keys(), ...store.kills().map((k) => k.agent)]);
      let revived = 0;
      for (const id of ids) if ((await revive(id, by)).revived) revived++;
      return [200, { revived }];
    }
    if (path === '/tokens/revoke') {
      allow(method, 'POST');
      const by = operator(body);
      if (typeof body.jti === 'string' && body.jti !== '') {
        // Unknown expiry: keep the revocation for the longest a token can live (24 h).
        const exp = typeof body.exp === 'number' ? body.exp : Math.floor(clock.now() / 1000) + 86_400;
        await store.revoke(body.jti, exp);
        audit('revoke', null, { jti: body.jti, by });
        return [200, { revoked: 'jti', jti: body.jti }];
      }
      if (typeof body.agent === 'string' && body.agent !== '') {
        requireAgent(body.agent);
        await store.revokeAgent(body.agent, Math.floor(clock.now() / 1000));
        const aborted = deps.abortAgent(body.agent, 'tokens revoked');
        audit('revoke', body.agent, { scope: 'all tokens', by, aborted });
        return [200, { revoked: 'agent', agent: body.agent, aborted }];
      }
      throw new AdminError(400, 'invalid_request', 'send {"jti": "..."} or {"agent": "..."}');
    }
    if (path === '/policies/reload') {
      allow(method, 'POST');
      try {
        const snapshot = await deps.reload();
        audit('reload', null, { version: snapshot.version, files: snapshot.files });
        return [200, { reloaded: true, version: snapshot.version, files: snapshot.files }];
      } catch (error) {
        if (error instanceof ConfigError) {
          audit('reload', null, { rejected: true, problems: error.problems.length });
          throw new AdminError(422, 'policy_invalid', `the policies have ${error.problems.length} problem(s); the current policy stays in force`, { problems: error.problems });
        }
        throw error;
      }
    }
    throw new AdminError(404, 'not_found', `no admin endpoint ${path}`);
  }

  return async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const path = (req.url ?? '/').split('?')[0] ?? '/';
      const body = req.method === 'POST' ? await readJson(req) : {};
      const [status, payload] = await route(req.method ?? 'GET', path, body);
      send(res, status, 'application/json', payload);
    } catch (error) {
      if (error instanceof AdminError) {
        send(res, error.status, 'application/problem+json', { type: `urn:agentgate:problem:${error.code}`, title: error.code.replaceAll('_', ' '), status: error.status, detail: error.detail, ...error.extra });
        return;
      }
      send(res, 500, 'application/problem+json', { type: 'urn:agentgate:problem:internal', title: 'internal', status: 500, detail: 'the admin call failed; see the gateway log' });
      throw error;
    }
  };
}

function approvalView(r: ApprovalRecord) {
  return {
    id: r.id,
    status: r.status,
    agent: r.agent,
    role: r.role,
    backend: r.backend,
    method: r.method,
    path: r.path,
    route: r.route,
    bodySha256: r.bodySha256,
    digest: r.digest,
    createdAt: new Date(r.createdAt).toISOString(),
    expiresAt: new Date(r.expiresAt).toISOString(),
    decidedBy: r.decidedBy,
    decidedAt: r.decidedAt === null ? null : new Date(r.decidedAt).toISOString(),
    reason: r.reason,
    usedAt: r.usedAt === null ? null : new Date(r.usedAt).toISOString(),
  };
}

function allow(method: string, expected: string): void {
  if (method !== expected) throw new AdminError(405, 'method_not_allowed', `use ${expected}`);
}

function send(res: ServerResponse, status: number, type: string, payload: unknown): void {
  const text = `${JSON.stringify(payload)}\n`;
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw new AdminError(413, 'invalid_request', `body larger than ${MAX_BODY} bytes`);
    chunks.push(chunk as Buffer);
  }
  if (size === 0) return {};
  let value: unknown;
  try {
    value = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new AdminError(400, 'invalid_request', 'the body is not valid JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new AdminError(400, 'invalid_request', 'the body must be a JSON object');
  return value as Record<string, unknown>;
}
