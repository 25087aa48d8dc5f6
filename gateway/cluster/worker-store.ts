// The Store of a cluster worker with the memory driver: a replica of the primary's state for the
// synchronous reads of the hot path (kills, revocations, breakers, sessions, secrets, approvals),
// and every change sent to the primary, which makes it on the one real store (exact there:
// consumeUse, useOnce, rateLimit, recordViolation), persists it, and pushes it to every worker's
// replica before it answers. The replica is a memory store started from the primary's snapshot;
// `applyChange` replays on it what the primary pushes, in the primary's order.
import type { Clock } from '../clock.js';
import type { MemoryStore } from '../state/memory.js';
import { StateUnavailableError, type Store } from '../state/store.js';
import type { Call, Change } from './protocol.js';

export interface WorkerStoreOptions {
  readonly replica: MemoryStore;
  readonly clock: Clock;
  readonly replayHorizon: number;
  /** Send one call to the primary; resolves its answer, rejects when it failed or the primary is gone. */
  call(call: Call): Promise<unknown>;
  /** Queue an inventory touch and a session idle-clock touch for the primary (batched). */
  touch(agent: string, jti: string, expiresAt: number): void;
  touchSession(sid: string, agent: string, expiresAt: number): void;
  /** False once the primary is gone: the worker refuses everything (it is about to exit). */
  connected(): boolean;
}

export interface WorkerStore extends Store {
  /** Apply a change the primary pushed; resolves how many calls in flight it cut (kills, revocations). */
  applyChange(change: Change, onStop: (agent: string, reason: string) => number): Promise<number>;
}

export function createWorkerStore(options: WorkerStoreOptions): WorkerStore {
  const { replica, call } = options;
  const ask = async <T>(c: Call): Promise<T> => {
    if (!options.connected()) throw new StateUnavailableError('the cluster primary is gone');
    return (await call(c)) as T;
  };
  return {
    driver: 'memory',
    replayHorizon: options.replayHorizon,
    isHealthy: () => options.connected(),
    status: () => (options.connected() ? { healthy: true, detail: 'state file, through the cluster primary', unshared: 0 } : { healthy: false, detail: 'the cluster primary is gone', unshared: 0 }),
    reseed: () => ask({ op: 'reseed' }),
    // Reads: the replica, kept current by the primary's pushes.
    isRevoked: (jti, agent, issuedAt, digest) => replica.isRevoked(jti, agent, issuedAt, digest),
    killRecord: (agent) => replica.killRecord(agent),
    kills: () => replica.kills(),
    breaker: (agent) => replica.breaker(agent),
    clientSecrets: (agent) => replica.clientSecrets(agent),
    usesOf: (jti) => replica.usesOf(jti),
    approval: (id) => replica.approval(id),
    approvals: () => replica.approvals(),
    activity: (agent) => replica.activity(agent),
    checkSession(sid, agent, expiresAt, idleMs, touch) {
      const state = replica.checkSession(sid, agent, expiresAt, idleMs, touch);
      // The other workers' idle clocks (and the primary's) learn of the use shortly after.
      if (touch && state === 'live') options.touchSession(sid, agent, expiresAt);
      return state;
    },
    touch(agent, jti, expiresAt) {
      options.touch(agent, jti, expiresAt);
    },
    // Changes: made by the primary, which pushes them here before it answers.
    kill: (record) => ask({ op: 'kill', record }),
    revive: (agent) => ask({ op: 'revive', agent }),
    revoke: (jti, expiresAt) => ask({ op: 'revoke', jti, expiresAt }),
    revokeAgent: (agent, at) => ask({ op: 'revokeAgent', agent, at }),
    recordViolation: (agent, policy) => ask({ op: 'recordViolation', agent, policy }),
    saveClientSecret: (record) => ask({ op: 'saveClientSecret', record }),
    deleteClientSecrets: (agent, id) => ask({ op: 'deleteClientSecrets', agent, id: id ?? null }),
    useOnce: (key, expiresAt) => ask({ op: 'useOnce', key, expiresAt }),
    consumeUse: (jti, maxUses, expiresAt) => ask({ op: 'consumeUse', jti, maxUses, expiresAt }),
    rateLimit: (keys, rules) => ask({ op: 'rateLimit', keys, rules }),
    openSession: (sid, agent, expiresAt, single) => ask({ op: 'openSession', sid, agent, expiresAt, single }),
    endSession: (sid, expiresAt) => ask({ op: 'endSession', sid, expiresAt }),
    requestApproval: (record) => ask({ op: 'requestApproval', record }),
    decideApproval: (id, decision, by, reason) => ask({ op: 'decideApproval', id, decision, by, reason }),
    consumeApproval: (id, requestKey) => ask({ op: 'consumeApproval', id, requestKey }),
    // The audit trail and its checkpoints live in the primary.
    auditCheckpoint: () => Promise.resolve(null),
    saveAuditCheckpoint: () => Promise.reject(new Error('a cluster worker keeps no audit checkpoints; the primary does')),
    close: () => replica.close(),
    async applyChange(change, onStop) {
      switch (change.kind) {
        case 'kill':
          await replica.kill(change.record);
          return onStop(change.record.agent, change.record.reason);
        case 'revive':
          await replica.revive(change.agent);
          return 0;
        case 'revoke':
          await replica.revoke(change.jti, change.expiresAt);
          return 0;
        case 'revokeAgent':
          await replica.revokeAgent(change.agent, change.at);
          return onStop(change.agent, 'tokens revoked');
        case 'secret':
          await replica.saveClientSecret(change.record);
          return 0;
        case 'deleteSecrets':
          await replica.deleteClientSecrets(change.agent, change.id ?? undefined);
          return 0;
        case 'session':
          await replica.openSession(change.sid, change.agent, change.expiresAt, change.single);
          return 0;
        case 'endSession':
          await replica.endSession(change.sid, change.expiresAt);
          return 0;
        case 'touchSession':
          replica.checkSession(change.sid, change.agent, change.expiresAt, null, true);
          return 0;
        case 'use':
          await replica.consumeUse(change.jti, change.maxUses, change.expiresAt);
          return 0;
        case 'breaker':
          replica.adopt({ kind: 'breaker', agent: change.agent, record: change.record });
          return 0;
        case 'approval':
          replica.adopt({ kind: 'approval', record: change.record });
          return 0;
      }
    },
  };
}
