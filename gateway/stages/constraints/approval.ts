// The human-approval constraint: a route (or a scope the role lists under `approval`) passes only
// with a person's approval for this exact request. Without a valid X-AgentGate-Approval the call
// is refused with approval_required, naming the pending approval (one per exact request); with
// one, the approval is used up by the commit, once, when every check admitted the call. Reads
// state only: requesting and consuming are intents.
import { createHash, randomUUID } from 'node:crypto';
import type { Clock } from '../../clock.js';
import type { RequestContext, Target } from '../../context.js';
import { GatewayError, approvalRequiredError } from '../../errors.js';
import { DEFAULT_APPROVAL_TTL_MS, type ApprovalPolicy, type Role, type Route } from '../../policy/types.js';
import type { ApprovalUse } from '../../state/store.js';
import type { StateView } from '../../state/view.js';
import { approvalDigest, approvalRequestKey, approvalUse } from '../../state/rules/approvals.js';
import type { Principal } from '../../tokens/claims.js';
import { refuse, type Refusals } from './refusals.js';

/** The header an agent repeats a call with once a person approved it. */
export const APPROVAL_HEADER = 'x-agentgate-approval';
const APPROVAL_ID = /^apr_[0-9a-f-]{36}$/;

const APPROVAL_ANSWERS: Readonly<Record<Exclude<ApprovalUse, 'ok'>, string>> = {
  unknown: 'no approval with this id exists',
  pending: 'this approval is still waiting for a person; repeat the request once it is approved',
  denied: 'this approval was denied',
  used: 'this approval was already used; each approval passes one call',
  expired: 'this approval has expired; send the request without the header to ask again',
  mismatch: 'this approval was given for a different request (agent, method, path or body); send the request without the header to ask again',
};

/** The approval a route needs: its own, or the default for a scope the role lists under `approval`. */
export function approvalPolicy(route: Route, role: Role): ApprovalPolicy | null {
  return route.approval ?? (role.approval.has(route.scope) ? { ttlMs: DEFAULT_APPROVAL_TTL_MS } : null);
}

export interface ApprovalDeps {
  /** Absent: a route that needs approval is always refused. */
  readonly state: StateView | undefined;
  readonly clock: Clock;
}

/** The approval id the call passes with, or null when it is refused (or, in shadow mode, would be). */
export async function checkApproval(
  deps: ApprovalDeps,
  ctx: RequestContext,
  target: Target,
  caller: Principal,
  route: Route,
  policy: ApprovalPolicy,
  body: Buffer,
  refusals: Refusals,
): Promise<string | null> {
  const { state, clock } = deps;
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
