// POST /oauth/token, grant client_credentials (RFC 6749 §4.4) and the issuance shared with token
// exchange: scopes narrowed to what was asked (a subset of the role's grants), aud = the backends
// they touch, TTL = min(asked, role's), a session opened where the role's token policy needs one.
import type { Clock } from '../clock.js';
import type { PolicySnapshot } from '../policy/types.js';
import type { Store } from '../state/store.js';
import type { KeyStore } from '../tokens/keys.js';
import type { AuthenticatedClient } from './client-auth.js';
import type { FormParams } from './form.js';
import { BrokerError } from './errors.js';
import { issueAgentToken, planAgentToken, type TokenPlan } from './issue.js';
import { backendForResource } from '../policy/resource.js';

export interface IssueDeps {
  readonly issuer: string;
  readonly keys: KeyStore;
  readonly store: Store;
  readonly clock: Clock;
  onIssued(role: string, grantType: string): void;
}

/** Fields of the broker's audit line, filled in as the request goes. */
export type BrokerNote = Record<string, unknown>;

/** RFC 6749 §3.3 scope-token characters. */
const SCOPE_TOKEN = /^[\x21\x23-\x5b\x5d-\x7e]+$/;
const MAX_SCOPES = 64;

/** The `scope` parameter as a list, or undefined when absent. */
export function parseScope(value: string | undefined): string[] | undefined {
  if (value === undefined) return undefined;
  const scopes = value.split(' ').filter((s) => s !== '');
  if (scopes.length > MAX_SCOPES || scopes.some((s) => !SCOPE_TOKEN.test(s) || s.length > 128)) {
    throw new BrokerError('invalid_scope', 'scope must be space-separated scope names such as crm:contacts.read', { reasonDetail: 'scope_syntax' });
  }
  return scopes.length === 0 ? undefined : scopes;
}

/** Mint the token of `plan`, open its session when the role needs one, and shape the answer. */
export async function issue(plan: TokenPlan, grantType: string, deps: IssueDeps, note: BrokerNote, policy: PolicySnapshot): Promise<Record<string, unknown>> {
  const minted = await issueAgentToken(deps.keys, deps.issuer, plan, deps.clock);
  const tokenPolicy = policy.roles.get(plan.role)?.token;
  if (tokenPolicy !== undefined && (tokenPolicy.session === 'single' || tokenPolicy.idleTimeoutSeconds !== null)) {
    // Before the token is handed out: with session single this ends the agent's older session.
    await deps.store.openSession(minted.sid, plan.agent, minted.expiresAt, tokenPolicy.session === 'single');
  }
  deps.onIssued(plan.role, grantType);
  Object.assign(note, { jti: minted.jti, sid: minted.sid, scope: plan.scopes.join(' '), aud: plan.audience, expiresAt: minted.expiresAt });
  return {
    access_token: minted.token,
    token_type: 'Bearer',
    expires_in: minted.expiresAt - minted.issuedAt,
    scope: plan.scopes.join(' '),
  };
}

/**
 * RFC 8707 resource indicators: a `resource` narrows the token to that one backend (its scopes
 * only, so `aud` names only it). The identifier must be exactly a backend's resource URL, as its
 * protected resource metadata states. Without `resource`, `asked` is returned unchanged.
 */
export function scopesForResource(policy: PolicySnapshot, issuer: string, resource: string | undefined, asked: readonly string[] | undefined, grants: Iterable<string>): string[] | undefined {
  if (resource === undefined) return asked === undefined ? undefined : [...asked];
  const backend = backendForResource(policy, issuer, resource);
  if (backend === undefined) {
    throw new BrokerError('invalid_target', 'resource must be the URL of one backend of this gateway, as its protected resource metadata names it', { reasonDetail: `unknown resource ${JSON.stringify(resource.slice(0, 200))}` });
  }
  const prefix = `${backend.name}:`;
  if (asked !== undefined) {
    const elsewhere = asked.filter((s) => !s.startsWith(prefix));
    if (elsewhere.length > 0) throw new BrokerError('invalid_target', `scope ${elsewhere.join(', ')} is not on the resource ${resource}`, { reasonDetail: 'scope_beyond_resource' });
    return [...asked];
  }
  const onIt = [...grants].filter((s) => s.startsWith(prefix)).sort();
  if (onIt.length === 0) throw new BrokerError('invalid_scope', `this client is granted nothing on the resource ${resource}`, { reasonDetail: 'no_scope_on_resource' });
  return onIt;
}

export async function clientCredentials(params: FormParams, client: AuthenticatedClient, deps: IssueDeps, note: BrokerNote, policy: PolicySnapshot): Promise<Record<string, unknown>> {
  const resource = params.get('resource');
  const scopes = scopesForResource(policy, deps.issuer, resource, parseScope(params.get('scope')), policy.roles.get(client.agent.role)?.grants ?? []);
  if (resource !== undefined) note.resource = resource.slice(0, 200);
  const plan = planAgentToken(policy, client.agent.id, scopes === undefined ? {} : { scopes }, deps.clock.now());
  note.role = plan.role;
  return issue(plan, 'client_credentials', deps, note, policy);
}
