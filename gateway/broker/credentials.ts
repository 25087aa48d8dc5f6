// Agent client secrets (client_secret_basic): generated here (256 random bits), shown once, kept
// in the state store only as SHA-256 hashes. Rotation adds a new secret and lets the old ones run
// out after an overlap window. Used by the admin API, the CLI (offline) and the demo.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Clock } from '../clock.js';
import type { PolicySnapshot } from '../policy/types.js';
import type { ClientSecretRecord, Store } from '../state/store.js';

/** A secret just made: the only moment its plaintext exists. */
export interface IssuedSecret {
  readonly agent: string;
  readonly id: string;
  readonly clientId: string;
  readonly clientSecret: string;
  readonly createdAt: string;
  /** Secrets of the agent that now run out, and when. */
  readonly retiring: ReadonlyArray<{ readonly id: string; readonly notAfter: string }>;
}

export interface CredentialView {
  readonly agent: string;
  readonly type: 'client_secret' | 'private_key_jwt';
  readonly id: string;
  readonly createdAt: string | null;
  readonly notAfter: string | null;
  /** active; retiring (in its overlap window); expired (past its window or the role's rotation period). */
  readonly status: 'active' | 'retiring' | 'expired';
  /** Where it lives: the state store, or a key pinned in the policy. */
  readonly source: 'state' | 'policy';
}

export interface CredentialManager {
  issue(agent: string): Promise<IssuedSecret>;
  rotate(agent: string, overlapMs?: number): Promise<IssuedSecret>;
  list(agent?: string): CredentialView[];
  /** Remove one secret (by id) or every secret of the agent. Resolves how many. */
  revoke(agent: string, id?: string): Promise<number>;
}

/** An operator mistake (unknown agent, unknown id): the CLI prints it, the admin API answers 404. */
export class CredentialError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CredentialError';
  }
}

/** How long a rotated secret keeps working unless the operator says otherwise. */
export const DEFAULT_OVERLAP_MS = 3_600_000;
const SECRET_PREFIX = 'ags_';

export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

/** Constant-time comparison of a presented secret with a stored hash. */
export function secretMatches(secret: string, hash: string): boolean {
  const presented = createHash('sha256').update(secret, 'utf8').digest();
  const stored = Buffer.from(hash, 'hex');
  return stored.length === presented.length && timingSafeEqual(presented, stored);
}

export function createCredentialManager(deps: { store: Store; clock: Clock; policy(): PolicySnapshot }): CredentialManager {
  const { store, clock } = deps;

  function requireAgent(agent: string): void {
    if (!deps.policy().agents.has(agent)) throw new CredentialError(`no agent "${agent}" in the policies`);
  }

  async function add(agent: string, retireOthersAfterMs: number | null): Promise<IssuedSecret> {
    requireAgent(agent);
    const now = clock.now();
    const retiring: Array<{ id: string; notAfter: string }> = [];
    if (retireOthersAfterMs !== null) {
      const notAfter = now + Math.max(0, retireOthersAfterMs);
      for (const record of store.clientSecrets(agent)) {
        if (record.notAfter !== null && record.notAfter <= notAfter) continue;
        await store.saveClientSecret({ ...record, notAfter });
        retiring.push({ id: record.id, notAfter: new Date(notAfter).toISOString() });
      }
    }
    const secret = `${SECRET_PREFIX}${randomBytes(32).toString('base64url')}`;
    const record: ClientSecretRecord = { id: randomBytes(6).toString('hex'), agent, hash: hashSecret(secret), createdAt: now, notAfter: null };
    await store.saveClientSecret(record);
    return { agent, id: record.id, clientId: agent, clientSecret: secret, createdAt: new Date(now).toISOString(), retiring };
  }

  return {
    issue: (agent) => add(agent, null),
    rotate: (agent, overlapMs = DEFAULT_OVERLAP_MS) => add(agent, overlapMs),
    list(agent) {
      if (agent !== undefined) requireAgent(agent);
      const policy = deps.policy();
      const now = clock.now();
      const views: CredentialView[] = [];
      const ids = agent === undefined ? [...policy.agents.keys()].sort() : [agent];
      for (const id of ids) {
        const rotateSeconds = policy.roles.get(policy.agents.get(id)?.role ?? '')?.token.rotateSeconds ?? null;
        for (const [i, credential] of (policy.agents.get(id)?.credentials ?? []).entries()) {
          if (credential.type !== 'private_key_jwt') continue;
          const kid = credential.jwk.kid;
          views.push({ agent: id, type: 'private_key_jwt', id: typeof kid === 'string' ? kid : `policy-key-${i}`, createdAt: null, notAfter: null, status: 'active', source: 'policy' });
        }
        for (const record of store.clientSecrets(id)) {
          const stale = rotateSeconds !== null && now - record.createdAt > rotateSeconds * 1000;
          const status = (record.notAfter !== null && record.notAfter <= now) || stale ? 'expired' : record.notAfter !== null ? 'retiring' : 'active';
          views.push({
            agent: id,
            type: 'client_secret',
            id: record.id,
            createdAt: new Date(record.createdAt).toISOString(),
            notAfter: record.notAfter === null ? null : new Date(record.notAfter).toISOString(),
            status,
            source: 'state',
          });
        }
      }
      return views;
    },
    async revoke(agent, id) {
      requireAgent(agent);
      const removed = await store.deleteClientSecrets(agent, id);
      if (id !== undefined && removed === 0) throw new CredentialError(`agent "${agent}" has no client secret with id "${id}"`);
      return removed;
    },
  };
}
