// The primary's Store with the memory driver: the one real store, and every change it makes
// pushed to every worker's replica (worker-store.ts). A change is pushed right after the store
// took it in memory (before its write to the state file), in the order they were made, so a
// worker that got its snapshot earlier receives exactly the changes the snapshot lacks. Kills,
// revocations, revivals, credential, breaker and approval changes resolve only once every worker
// acknowledged them: a kill answered by the admin socket is in force on every worker.
import type { MemoryStore } from '../state/memory.js';
import type { Store } from '../state/store.js';
import type { Call, Change } from './protocol.js';

export interface SharedStoreOptions {
  readonly store: MemoryStore;
  /** Push a change to every worker; with `ack`, resolves once each has applied it (or is gone). */
  broadcast(change: Change, ack: boolean): Promise<void>;
}

export interface SharedStore extends Store {
  readonly memory: MemoryStore;
  /** Make a change a worker asked for; resolves what the store answered. */
  handle(call: Call): Promise<unknown>;
  /** Inventory and session touches a worker reported (pushed on to the other workers). */
  touched(agents: ReadonlyArray<readonly [string, string, number]>, sessions: ReadonlyArray<readonly [string, string, number]>): void;
}

export function createSharedStore(options: SharedStoreOptions): SharedStore {
  const { store: m, broadcast } = options;
  /** Start the change on the store (its in-memory part is synchronous), push it, then wait for both. */
  async function changed<T>(made: Promise<T>, change: Change | null, ack: boolean): Promise<T> {
    const pushed = change === null ? Promise.resolve() : broadcast(change, ack);
    const [value] = await Promise.all([made, pushed]);
    return value;
  }
  /** Sessions opened through this store, by agent (sid -> exp in seconds), for `single`. */
  const opened = new Map<string, Map<string, number>>();
  const shared: SharedStore = {
    ...m,
    memory: m,
    kill: (record) => changed(m.kill(record), { kind: 'kill', record }, true),
    revive: (agent) => changed(m.revive(agent), { kind: 'revive', agent }, true),
    revoke: (jti, expiresAt) => changed(m.revoke(jti, expiresAt), { kind: 'revoke', jti, expiresAt }, true),
    revokeAgent: (agent, at) => changed(m.revokeAgent(agent, at), { kind: 'revokeAgent', agent, at }, true),
    recordViolation(agent, policy) {
      const made = m.recordViolation(agent, policy);
      return changed(made, { kind: 'breaker', agent, record: m.breaker(agent) ?? null }, true);
    },
    saveClientSecret: (record) => changed(m.saveClientSecret(record), { kind: 'secret', record }, true),
    deleteClientSecrets: (agent, id) => changed(m.deleteClientSecrets(agent, id), { kind: 'deleteSecrets', agent, id: id ?? null }, true),
    // A use is counted here, exactly; the replicas only show it (introspection).
    consumeUse: (jti, maxUses, expiresAt) => changed(m.consumeUse(jti, maxUses, expiresAt), { kind: 'use', jti, maxUses, expiresAt }, false),
    // A single session ends the agent's others: in force everywhere before the new token is out.
    // Each ended sid is pushed by name too: a worker restarted since that session opened never
    // saw it, so replaying `single` there would not end it.
    async openSession(sid, agent, expiresAt, single) {
      const nowSeconds = Date.now() / 1000;
      let mine = opened.get(agent);
      if (mine === undefined) opened.set(agent, (mine = new Map()));
      for (const [other, exp] of mine) if (exp <= nowSeconds) mine.delete(other);
      const ended = single ? [...mine].filter(([other]) => other !== sid) : [];
      for (const [other] of ended) mine.delete(other);
      mine.set(sid, expiresAt);
      const made = m.openSession(sid, agent, expiresAt, single);
      await Promise.all([
        changed(made, { kind: 'session', sid, agent, expiresAt, single }, single),
        ...ended.map(([other, exp]) => broadcast({ kind: 'endSession', sid: other, expiresAt: exp }, true)),
      ]);
    },
    endSession: (sid, expiresAt) => changed(m.endSession(sid, expiresAt), { kind: 'endSession', sid, expiresAt }, true),
    checkSession(sid, agent, expiresAt, idleMs, touch) {
      const state = m.checkSession(sid, agent, expiresAt, idleMs, touch);
      if (touch && state === 'live') void broadcast({ kind: 'touchSession', sid, agent, expiresAt }, false);
      return state;
    },
    async requestApproval(record) {
      const made = m.requestApproval(record);
      const stored = m.approval(record.id);
      return changed(made, stored === undefined ? null : { kind: 'approval', record: stored }, true);
    },
    decideApproval(id, decision, by, reason) {
      const made = m.decideApproval(id, decision, by, reason);
      const record = m.approval(id);
      return changed(made, record === undefined ? null : { kind: 'approval', record }, true);
    },
    consumeApproval(id, requestKey) {
      const made = m.consumeApproval(id, requestKey);
      const record = m.approval(id);
      return changed(made, record === undefined ? null : { kind: 'approval', record }, true);
    },
    handle(call) {
      switch (call.op) {
        case 'kill':
          return shared.kill(call.record);
        case 'revive':
          return shared.revive(call.agent);
        case 'revoke':
          return shared.revoke(call.jti, call.expiresAt);
        case 'revokeAgent':
          return shared.revokeAgent(call.agent, call.at);
        case 'recordViolation':
          return shared.recordViolation(call.agent, call.policy);
        case 'saveClientSecret':
          return shared.saveClientSecret(call.record);
        case 'deleteClientSecrets':
          return shared.deleteClientSecrets(call.agent, call.id ?? undefined);
        case 'useOnce':
          return m.useOnce(call.key, call.expiresAt);
        case 'consumeUse':
          return shared.consumeUse(call.jti, call.maxUses, call.expiresAt);
        case 'rateLimit':
          return Promise.resolve(m.rateLimit(call.keys, call.rules));
        case 'openSession':
          return shared.openSession(call.sid, call.agent, call.expiresAt, call.single);
        case 'endSession':
          return shared.endSession(call.sid, call.expiresAt);
        case 'requestApproval':
          return shared.requestApproval(call.record);
        case 'decideApproval':
          return shared.decideApproval(call.id, call.decision, call.by, call.reason);
        case 'consumeApproval':
          return shared.consumeApproval(call.id, call.requestKey);
        case 'reseed':
          return m.reseed();
      }
    },
    touched(agents, sessions) {
      for (const [agent, jti, expiresAt] of agents) m.touch(agent, jti, expiresAt);
      for (const [sid, agent, expiresAt] of sessions) shared.checkSession(sid, agent, expiresAt, null, true);
    },
  };
  return shared;
}
