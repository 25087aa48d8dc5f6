// The admin API: JSON in, JSON out, problem documents for every bad input. Each handler makes
// its change durable (store write) before answering, so an answered kill is a kill in force.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Clock } from '../clock.js';
import { ADMIN_PROBLEMS, ConfigError, type AdminProblemCode } from '../errors.js';
import { renderAdminProblem, type RenderedProblem } from '../problem.js';
import type { PolicySnapshot } from '../policy/types.js';
import { viewBreaker } from '../state/breaker.js';
import { StateUnavailableError, type ApprovalRecord, type KillRecord, type Sharing, type Store } from '../state/store.js';
import type { AuditLog } from '../telemetry/audit-log.js';
import type { Admission } from '../admission/admission.js';
import { peerCredentials, type PeerCredentials } from './peer.js';

export interface AdminDeps {
  readonly store: Store;
  readonly clock: Clock;
  readonly audit: AuditLog;
  policy(): PolicySnapshot;
  /** Validate and swap in the policies on disk; throws ConfigError with every problem. */
  reload(): Promise<PolicySnapshot>;
  /** Kill switches and agent-wide revocation: durable, then the agent's calls in flight are cut. */
  readonly admission: Pick<Admission, 'kill' | 'revive' | 'revokeAgent'>;
  /** Gateway-wide facts for GET /status. */
  status(): Record<string, unknown>;
  /** Keep metrics gauges in step with kills and breakers. */
  onAgentChange(agent: string): void;
  /** The broker's client secrets (absent: the credential endpoints answer 404). */
  readonly credentials?: AdminCredentials;
  /** Publish a new signing key now; resolves its kid. */
  rotateKeys?(): Promise<string>;
}

/** What the admin API needs of the broker's credential manager (broker/credentials.ts). */
export interface AdminCredentials {
  issue(agent: string): Promise<object>;
  rotate(agent: string, overlapMs?: number): Promise<object>;
  list(agent?: string): object[];
  revoke(agent: string, id?: string): Promise<number>;
}

/** A refused admin call: a catalog code (errors.ts ADMIN_PROBLEMS), what to do, extra members. */
export class AdminError extends Error {
  readonly status: number;

  constructor(
    readonly code: AdminProblemCode,
    readonly detail: string,
    readonly extra: Record<string, unknown> = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(detail);
    this.status = ADMIN_PROBLEMS[code].status;
  }
}

const MAX_BODY = 64 * 1024;

/** The caller of an admin call, looked up while the call runs. */
type Peer = Promise<PeerCredentials | null>;

/** Longest an admin answer waits for the peer lookup. */
const PEER_WAIT_MS = 2_000;

/** Resolves when `promise` settles or after `ms`, whichever is first; never rejects. */
function settled(promise: Promise<unknown>, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    promise.then(
      () => {
        clearTimeout(timer);
        resolve();
      },
      () => {
        clearTimeout(timer);
        resolve();
      },
    );
  });
}
const AGENT_PATH = /^\/agents\/([^/]+)(\/kill|\/revive)?$/;
const CREDENTIALS_PATH = /^\/agents\/([^/]+)\/credentials(\/rotate|\/revoke)?$/;
/** Longest rotation overlap an operator may ask for. */
const MAX_OVERLAP_MS = 30 * 86_400_000;
const APPROVAL_PATH = /^\/approvals\/([^/]+)(\/approve|\/deny)?$/;

/**
 * Calls that only take power away (kill, revoke, credential revoke, deny): still applied while the
 * audit trail cannot be written, with the answer saying their line is pending. Every other change
 * is refused then, because it could not be audited.
 */
function isProtective(path: string): boolean {
  if (path === '/kill' || path === '/tokens/revoke') return true;
  return AGENT_PATH.exec(path)?.[2] === '/kill' || CREDENTIALS_PATH.exec(path)?.[2] === '/revoke' || APPROVAL_PATH.exec(path)?.[2] === '/deny';
}

/** The jti our tokens carry (tokens/mint.ts: randomUUID). */
const JTI = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

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

  function credentialsOf(): AdminCredentials {
    if (deps.credentials === undefined) throw new AdminError('not_found', 'credential management is not available');
    return deps.credentials;
  }

  function requireAgent(id: string): void {
    if (!deps.policy().agents.has(id)) throw new AdminError('agent_unknown', `no agent "${id}" in the policies`);
  }

  // The operator as the CLI names it (for people); the audit line adds the socket peer's uid and
  // pid as the kernel reports them (the socket is 0600: the gateway's own user, or root).
  function operator(body: Record<string, unknown>): string {
    return typeof body.operator === 'string' && body.operator !== '' && body.operator.length <= 200 ? body.operator : 'unnamed operator';
  }

  function reasonOf(body: Record<string, unknown>): string {
    const reason = body.reason;
    if (typeof reason !== 'string' || reason.trim() === '') throw new AdminError('invalid_request', 'a non-empty "reason" is required');
    if (reason.length > 500) throw new AdminError('invalid_request', '"reason" is limited to 500 characters');
    return reason.trim();
  }

  async function kill(peer: Peer, id: string, reason: string, by: string): Promise<{ agent: string; aborted: number } & SharingView> {
    const record: KillRecord = { agent: id, reason, at: clock.now(), by };
    // Durable first: the next request is refused, and a restart keeps the kill. With Redis away
    // it is in force here and in the journal only, and the answer says so.
    const { sharing, aborted } = await deps.admission.kill(record);
    deps.onAgentChange(id);
    audit(peer, 'kill', id, { detail: reason, by, aborted, shared: sharing === 'shared' });
    return { agent: id, aborted, ...sharingView(sharing) };
  }

  async function revive(peer: Peer, id: string, by: string): Promise<{ agent: string; revived: boolean }> {
    const revived = await deps.admission.revive(id);
    deps.onAgentChange(id);
    audit(peer, 'revive', id, { by, revived });
    return { agent: id, revived };
  }

  // Audit lines wait for the peer lookup, the answer does not: a kill is in force and answered
  // first. `settle()` lets shutdown wait for these lines before the audit file closes.
  const pending = new Set<Promise<void>>();
  // The audit lines of each call (keyed by its peer lookup), which its answer waits for.
  const linesOf = new WeakMap<Peer, Array<Promise<void>>>();
  let seq = 0;
  function audit(peer: Peer, action: string, agent: string | null, fields: Record<string, unknown>): void {
    const time = new Date(clock.now()).toISOString();
    const requestId = `admin-${clock.now()}-${++seq}`;
    // The answer waits for this line, so the peer lookup gets PEER_WAIT_MS at most (then null).
    const done = settled(peer, PEER_WAIT_MS)
      .then(() => Promise.race([peer, Promise.resolve(null)]))
      .then((p) =>
        deps.audit.append({ time, kind: 'admin', requestId, decision: 'allow', reason: 'none', action, agent, ...fields, peer: p === null ? null : { uid: p.uid, pid: p.pid, command: p.command } }),
      );
    const queued = done.then(
      () => undefined,
      () => undefined,
    );
    pending.add(queued);
    void queued.finally(() => pending.delete(queued));
    const lines = linesOf.get(peer) ?? [];
    lines.push(done);
    linesOf.set(peer, lines);
  }

  /** Why the call's audit lines are not written (null when they are), waiting at most PEER_WAIT_MS for the peer. */
  async function linesWritten(peer: Peer): Promise<string | null> {
    await settled(peer, PEER_WAIT_MS);
    const results = await Promise.allSettled(linesOf.get(peer) ?? []);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    return failed === undefined ? null : failed.reason instanceof Error ? failed.reason.message : String(failed.reason);
  }

  async function route(peer: Peer, method: string, path: string, body: Record<string, unknown>): Promise<[number, unknown]> {
    if (path === '/status') {
      allow(method, 'GET');
      const policy = deps.policy();
      let open = 0;
      for (const id of policy.agents.keys()) if (agentView(id)?.breaker === 'open') open++;
      const state = store.status();
      return [200, { ...deps.status(), agents: policy.agents.size, killed: store.kills().length, breakersOpen: open, stateDriver: store.driver, stateHealthy: state.healthy, stateDetail: state.detail, unsharedChanges: state.unshared }];
    }
    if (path === '/agents') {
      allow(method, 'GET');
      return [200, { agents: [...deps.policy().agents.keys()].sort().map((id) => agentView(id)) }];
    }
    if (path === '/credentials') {
      allow(method, 'GET');
      return [200, { credentials: credentialsOf().list() }];
    }
    const cm = CREDENTIALS_PATH.exec(path);
    if (cm !== null) {
      const id = decodeURIComponent(cm[1] ?? '');
      requireAgent(id);
      const manager = credentialsOf();
      if (cm[2] === undefined && method === 'GET') return [200, { credentials: manager.list(id) }];
      allow(method, 'POST', cm[2] === undefined ? 'GET, POST' : 'POST');
      const by = operator(body);
      if (cm[2] === undefined) {
        const issued = await manager.issue(id);
        audit(peer, 'credentials.issue', id, { by, id: (issued as { id?: unknown }).id });
        return [201, issued];
      }
      if (cm[2] === '/rotate') {
        const overlap = body.overlapMs;
        if (overlap !== undefined && (typeof overlap !== 'number' || !Number.isInteger(overlap) || overlap < 0 || overlap > MAX_OVERLAP_MS)) {
          throw new AdminError('invalid_request', `"overlapMs" must be a whole number of milliseconds from 0 to ${MAX_OVERLAP_MS}`);
        }
        const issued = await manager.rotate(id, overlap);
        audit(peer, 'credentials.rotate', id, { by, id: (issued as { id?: unknown }).id, overlapMs: overlap ?? null });
        return [201, issued];
      }
      const secretId = typeof body.id === 'string' && body.id !== '' ? body.id : undefined;
      let removed: number;
      try {
        removed = await manager.revoke(id, secretId);
      } catch (error) {
        throw new AdminError('credential_unknown', (error as Error).message);
      }
      audit(peer, 'credentials.revoke', id, { by, id: secretId ?? 'all', removed });
      return [200, { agent: id, revoked: removed }];
    }
    if (path === '/keys/rotate') {
      allow(method, 'POST');
      if (deps.rotateKeys === undefined) throw new AdminError('not_found', 'key rotation is not available');
      const kid = await deps.rotateKeys();
      audit(peer, 'keys.rotate', null, { by: operator(body), kid });
      return [200, { rotated: true, kid }];
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
      if (m[2] === '/kill') return [200, await kill(peer, id, reasonOf(body), operator(body))];
      return [200, await revive(peer, id, operator(body))];
    }
    if (path === '/approvals') {
      allow(method, 'GET');
      return [200, { approvals: [...store.approvals()].sort((a, b) => a.createdAt - b.createdAt).map(approvalView) }];
    }
    const a = APPROVAL_PATH.exec(path);
    if (a !== null) {
      const id = decodeURIComponent(a[1] ?? '');
      const record = store.approval(id);
      if (record === undefined) throw new AdminError('approval_unknown', `no approval "${id}"`);
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
        throw new AdminError('approval_not_pending', `approval ${id} is ${state}; only a pending, unexpired approval can be decided`);
      }
      audit(peer, decision === 'approved' ? 'approve' : 'deny', decided.agent, { approvalId: id, approval: decision, by, detail: reason, method: decided.method, path: decided.path, digest: decided.digest });
      return [200, approvalView(decided)];
    }
    if (path === '/kill') {
      allow(method, 'POST');
      const reason = reasonOf(body);
      const by = operator(body);
      const results = [];
      for (const id of deps.policy().agents.keys()) results.push(await kill(peer, id, reason, by));
      const local = results.some((r) => !r.shared);
      return [200, { killed: results.length, aborted: results.reduce((n, r) => n + r.aborted, 0), ...sharingView(local ? 'local' : 'shared') }];
    }
    if (path === '/revive') {
      allow(method, 'POST');
      const by = operator(body);
      const ids = new Set([...deps.policy().agents.keys(), ...store.kills().map((k) => k.agent)]);
      let revived = 0;
      for (const id of ids) if ((await revive(peer, id, by)).revived) revived++;
      return [200, { revived }];
    }
    if (path === '/tokens/revoke') {
      allow(method, 'POST');
      const by = operator(body);
      if (typeof body.jti === 'string' && body.jti !== '') {
        // Our tokens' jtis are random UUIDs: anything else was never issued here, and "revoked"
        // would tell the operator a token is dead that may not be ours at all.
        if (!JTI.test(body.jti)) throw new AdminError('not_found', `no token of this gateway has jti "${body.jti.slice(0, 64)}" (its jtis are UUIDs); nothing was revoked`);
        // Unknown expiry: keep the revocation for the longest a token can live (24 h).
        const now = Math.floor(clock.now() / 1000);
        const exp = typeof body.exp === 'number' && Number.isSafeInteger(body.exp) ? Math.min(Math.max(body.exp, now), now + 86_400) : now + 86_400;
        const sharing = await store.revoke(body.jti, exp);
        audit(peer, 'revoke', null, { jti: body.jti, by, shared: sharing === 'shared' });
        return [200, { revoked: 'jti', jti: body.jti, ...sharingView(sharing) }];
      }
      if (typeof body.agent === 'string' && body.agent !== '') {
        requireAgent(body.agent);
        const { sharing, aborted } = await deps.admission.revokeAgent(body.agent, 'tokens revoked');
        audit(peer, 'revoke', body.agent, { scope: 'all tokens', by, aborted, shared: sharing === 'shared' });
        return [200, { revoked: 'agent', agent: body.agent, aborted, ...sharingView(sharing) }];
      }
      throw new AdminError('invalid_request', 'send {"jti": "..."} or {"agent": "..."}');
    }
    if (path === '/state/reseed') {
      allow(method, 'POST');
      const outcome = await store.reseed();
      audit(peer, 'state.reseed', null, { by: operator(body), ...outcome });
      return [200, outcome];
    }
    if (path === '/policies/reload') {
      allow(method, 'POST');
      try {
        const snapshot = await deps.reload();
        audit(peer, 'reload', null, { version: snapshot.version, files: snapshot.files });
        return [200, { reloaded: true, version: snapshot.version, files: snapshot.files }];
      } catch (error) {
        if (error instanceof ConfigError) {
          audit(peer, 'reload', null, { rejected: true, problems: error.problems.length });
          throw new AdminError('policy_invalid', `the policies have ${error.problems.length} problem(s); the current policy stays in force`, { problems: error.problems });
        }
        throw error;
      }
    }
    throw new AdminError('not_found', `no admin endpoint ${path}`);
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // Only calls that change something are audited, so only they ask the kernel who called. The
    // lookup starts once the change is in force (below): spawning `ss` costs the event loop a
    // fork, which a kill should not wait for. The caller is still connected then (it waits for
    // its answer), so the kernel still knows it.
    let lookUp: () => void = () => undefined;
    const peer: Peer =
      req.method === 'POST'
        ? new Promise((resolve) => {
            let started = false;
            lookUp = () => {
              if (started) return;
              started = true;
              resolve(peerCredentials(req.socket));
            };
          })
        : Promise.resolve(null);
    try {
      const path = (req.url ?? '/').split('?')[0] ?? '/';
      if (req.method === 'POST' && !deps.audit.available && !isProtective(path)) {
        throw new AdminError('audit_unavailable', `the audit trail cannot be written (${deps.audit.unavailableReason ?? 'unwritable'}); changes other than kill, revoke and deny are refused until it recovers`);
      }
      const body = req.method === 'POST' ? await readJson(req) : {};
      // Up to its first wait, a route applies its change in memory (a kill: the next request is
      // refused); then the peer lookup starts, alongside the durable write.
      const routed = route(peer, req.method ?? 'GET', path, body);
      lookUp();
      const [status, payload] = await routed;
      // The change is in force; the answer waits for the peer lookup (started when the call
      // arrived), because the caller is gone once it has its answer and with it who it was, and
      // for its audit line. A line that cannot be written is said in the answer.
      const unwritten = req.method === 'POST' ? await linesWritten(peer) : null;
      send(res, status, 'application/json', unwritten === null ? payload : { ...(payload as Record<string, unknown>), auditPending: `${unwritten}; the change is in force and its audit line is written when the audit file recovers (lost if the gateway stops first)` });
    } catch (error) {
      // A refused call is audited with its caller too.
      lookUp();
      if (error instanceof AdminError) {
        if (req.method === 'POST' && error.code !== 'audit_unavailable') {
          audit(peer, 'refused', null, { path: (req.url ?? '/').split('?')[0], decision: 'deny', reason: error.code, detail: error.detail });
          await linesWritten(peer);
        }
        sendProblem(res, renderAdminProblem(error.code, error.detail, error.extra, error.headers));
        return;
      }
      if (error instanceof StateUnavailableError) {
        // Not a bug: the shared state cannot take the change now. Say so, and what to do.
        if (req.method === 'POST') {
          audit(peer, 'refused', null, { path: (req.url ?? '/').split('?')[0], decision: 'deny', reason: 'state_unavailable', detail: error.message });
          await settled(peer, PEER_WAIT_MS);
        }
        sendProblem(res, renderAdminProblem('state_unavailable', error.message));
        return;
      }
      sendProblem(res, renderAdminProblem('internal', 'the admin call failed; see the gateway log'));
      throw error;
    }
  }

  return {
    handle,
    /** Resolves once every admin audit line is queued. */
    async settle(): Promise<void> {
      while (pending.size > 0) await Promise.all([...pending]);
    },
  };
}

/** What a kill or revocation answer says about where it is in force. */
interface SharingView {
  readonly shared: boolean;
  readonly sharing: 'shared' | 'applied here, not yet shared';
  readonly note?: string;
}

function sharingView(sharing: Sharing): SharingView {
  if (sharing === 'shared') return { shared: true, sharing: 'shared' };
  return {
    shared: false,
    sharing: 'applied here, not yet shared',
    note: 'Redis is unreachable: this instance refuses at once and keeps the change in its journal; the other instances fail closed meanwhile and learn of it when Redis answers and it is pushed',
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

/** `methods`: the Allow field of the 405 (RFC 9110 §15.5.6) when the path takes more than `expected`. */
function allow(method: string, expected: string, methods: string = expected): void {
  if (method !== expected) throw new AdminError('method_not_allowed', `use ${methods.replace(', ', ' or ')}`, {}, { allow: methods });
}

function sendProblem(res: ServerResponse, problem: RenderedProblem): void {
  res.writeHead(problem.status, problem.headers);
  res.end(problem.body);
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
    if (size > MAX_BODY) throw new AdminError('body_too_large', `body larger than ${MAX_BODY} bytes`);
    chunks.push(chunk as Buffer);
  }
  if (size === 0) return {};
  let value: unknown;
  try {
    value = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new AdminError('invalid_request', 'the body is not valid JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new AdminError('invalid_request', 'the body must be a JSON object');
  return value as Record<string, unknown>;
}
