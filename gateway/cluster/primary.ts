// The primary of a `workers: N` gateway. It owns what must be one: the admin socket, the audit
// chain, the state (with the memory driver: the store, its file and its lock), key rotation and
// the metrics port. It forks N workers (node:cluster; the primary accepts the agent port's
// connections and hands them out round-robin) and restarts one that dies. Workers never serve
// without it: they exit when its IPC channel closes. SIGTERM drains every worker, then the primary.
import cluster, { type Worker } from 'node:cluster';
import type { AddressInfo } from 'node:net';
import type { Settings } from '../config.js';
import type { Gateway } from '../server.js';
import type { MemoryStore } from '../state/memory.js';
import type { Store } from '../state/store.js';
import type { Logger } from '../telemetry/log.js';
import { aggregateExposition, type MetricsJson } from '../telemetry/metrics.js';
import type { AuditState, Change, PrimaryMessage, WorkerMessage } from './protocol.js';
import { WORKER_ENV } from './protocol.js';
import { createSharedStore, type SharedStore } from './shared-store.js';

/** A worker that does not confirm a kill (or any change that must be in force) in this time is stopped. */
export const ACK_TIMEOUT_MS = 5_000;
const METRICS_TIMEOUT_MS = 2_000;

export interface PrimaryOptions {
  readonly resetState: boolean;
  /** People's lines (stderr). */
  readonly say: (line: string) => void;
  /** Resolves when SIGINT or SIGTERM arrives. */
  readonly stopped: Promise<void>;
  /** After start: SIGHUP handling and the like (cli/serve.ts). */
  readonly started?: (gateway: Gateway, ports: { agent: AddressInfo; metrics: AddressInfo }) => void;
}

interface Slot {
  readonly index: number;
  worker: Worker | null;
  /** Got its snapshot: receives every change from then on. */
  registered: boolean;
  listening: boolean;
  restarts: number;
  lastStart: number;
}

interface PendingAck {
  readonly waitingFor: Set<Slot>;
  readonly agent: string | null;
  readonly what: string;
  errors: string[];
  resolve(): void;
  timer: NodeJS.Timeout;
}

export async function servePrimary(settings: Settings, log: Logger, options: PrimaryOptions): Promise<number> {
  const count = settings.workers.count;
  const slots: Slot[] = Array.from({ length: count }, (_, index) => ({ index, worker: null, registered: false, listening: false, restarts: 0, lastStart: 0 }));
  let shared: SharedStore | null = null;
  let gateway: Gateway | null = null;
  let agentAddress: AddressInfo | null = null;
  let stopping = false;
  let nextId = 1;
  const pending = new Map<number, PendingAck>();
  const abortedByAgent = new Map<string, number>();
  const metricsWaiting = new Map<number, { readonly waitingFor: Set<Slot>; readonly parts: MetricsJson[]; resolve(): void }>();

  const send = (slot: Slot, message: PrimaryMessage): void => {
    const worker = slot.worker;
    if (worker === null || !worker.isConnected()) return;
    try {
      worker.send(message);
    } catch (error) {
      log.error('sending to a worker failed', { worker: slot.index, error });
    }
  };

  function ackFrom(slot: Slot, id: number, aborted: number, error: string | null): void {
    const ack = pending.get(id);
    if (ack === undefined || !ack.waitingFor.delete(slot)) return;
    if (ack.agent !== null && aborted > 0) abortedByAgent.set(ack.agent, (abortedByAgent.get(ack.agent) ?? 0) + aborted);
    if (error !== null) ack.errors.push(`worker ${slot.index}: ${error}`);
    if (ack.waitingFor.size === 0) finish(id, ack);
  }
  function finish(id: number, ack: PendingAck): void {
    clearTimeout(ack.timer);
    pending.delete(id);
    ack.resolve();
  }
  /** Forget a worker that is gone: nobody waits for it any more. */
  function dropFromWaits(slot: Slot): void {
    for (const [id, ack] of pending) if (ack.waitingFor.delete(slot) && ack.waitingFor.size === 0) finish(id, ack);
    for (const wait of metricsWaiting.values()) if (wait.waitingFor.delete(slot) && wait.waitingFor.size === 0) wait.resolve();
  }

  /**
   * Send to every worker that has its snapshot and, with `wait`, resolve once each answered. A
   * worker that does not answer in time is stopped (it is restarted from a fresh snapshot): a
   * change that must be in force everywhere is never left unconfirmed on a serving worker.
   */
  function toAll(build: (id: number) => PrimaryMessage, wait: boolean, what: string, agent: string | null): Promise<void> {
    const targets = slots.filter((s) => s.registered && s.worker !== null);
    const id = wait && targets.length > 0 ? nextId++ : 0;
    const message = build(id);
    for (const slot of targets) send(slot, message);
    if (id === 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const ack: PendingAck = {
        waitingFor: new Set(targets),
        agent,
        what,
        errors: [],
        resolve,
        timer: setTimeout(() => {
          for (const slot of ack.waitingFor) {
            log.error('a worker did not confirm a change in time; stopping it (it restarts from the current state)', { worker: slot.index, change: what, timeoutMs: ACK_TIMEOUT_MS });
            slot.registered = false;
            slot.worker?.process.kill('SIGKILL');
          }
          finish(id, ack);
        }, ACK_TIMEOUT_MS),
      };
      pending.set(id, ack);
    }).then(() => undefined);
  }

  const broadcast = (change: Change, ack: boolean): Promise<void> => {
    const agent = change.kind === 'kill' ? change.record.agent : change.kind === 'revokeAgent' ? change.agent : null;
    return toAll((id) => ({ t: 'change', id, change }), ack, change.kind, agent);
  };

  let auditState: AuditState = { available: true, reason: null };
  function watchAudit(): void {
    const audit = gateway?.audit;
    if (audit === undefined) return;
    if (audit.available === auditState.available && audit.unavailableReason === auditState.reason) return;
    auditState = { available: audit.available, reason: audit.unavailableReason };
    void toAll(() => ({ t: 'audit-state', audit: auditState }), false, 'audit-state', null);
  }

  async function onMessage(slot: Slot, message: WorkerMessage): Promise<void> {
    switch (message.t) {
      case 'hello': {
        // The snapshot and registration happen in one step: every later change reaches this worker.
        const memory: MemoryStore | null = shared?.memory ?? null;
        send(slot, { t: 'snapshot', state: memory?.snapshot() ?? null, replayHorizon: gateway?.store.replayHorizon ?? 0, audit: auditState });
        slot.registered = true;
        return;
      }
      case 'listening':
        slot.listening = true;
        agentAddress ??= { address: message.address, port: message.port, family: message.family };
        listeningChanged();
        return;
      case 'failed':
        startupFailure ??= new Error(message.message);
        if (message.code !== null) Object.assign(startupFailure, { code: message.code });
        listeningChanged();
        return;
      case 'call': {
        if (shared === null) {
          send(slot, { t: 'result', id: message.id, ok: false, error: 'the state is not shared through the primary (redis driver)' });
          return;
        }
        try {
          const value = await shared.handle(message.call);
          send(slot, { t: 'result', id: message.id, ok: true, value });
        } catch (error) {
          send(slot, { t: 'result', id: message.id, ok: false, error: error instanceof Error ? error.message : String(error) });
        }
        return;
      }
      case 'audit': {
        const audit = gateway?.audit;
        if (audit === undefined) {
          send(slot, { t: 'audited', id: message.id, error: 'the audit trail is not open yet' });
          return;
        }
        try {
          await Promise.all(message.records.map((record) => audit.append(record)));
          send(slot, { t: 'audited', id: message.id, error: null });
        } catch (error) {
          send(slot, { t: 'audited', id: message.id, error: error instanceof Error ? error.message : String(error) });
        }
        watchAudit();
        return;
      }
      case 'touches':
        shared?.touched(message.agents, message.sessions);
        return;
      case 'ack':
        ackFrom(slot, message.id, message.aborted, message.error);
        return;
      case 'metrics': {
        const wait = metricsWaiting.get(message.id);
        if (wait === undefined || !wait.waitingFor.delete(slot)) return;
        wait.parts.push(message.metrics as MetricsJson);
        if (wait.waitingFor.size === 0) wait.resolve();
        return;
      }
    }
  }

  let startupFailure: Error | null = null;
  let listeningChanged: () => void = () => undefined;

  function fork(slot: Slot): void {
    slot.registered = false;
    slot.listening = false;
    slot.lastStart = Date.now();
    const worker = cluster.fork({ [WORKER_ENV]: '1', AGENTGATE_WORKER_SLOT: String(slot.index) });
    slot.worker = worker;
    worker.on('message', (message: WorkerMessage) => {
      onMessage(slot, message).catch((error: unknown) => log.error('cluster message failed', { worker: slot.index, type: message.t, error }));
    });
    worker.on('exit', (code, signal) => {
      if (slot.worker !== worker) return;
      slot.worker = null;
      slot.registered = false;
      slot.listening = false;
      dropFromWaits(slot);
      if (stopping) return;
      if (agentAddress === null) {
        startupFailure ??= new Error(`worker ${slot.index} exited during start (code ${code}, signal ${signal ?? 'none'})`);
        listeningChanged();
        return;
      }
      // A crash loop backs off (up to 5 s); a worker that ran for a while restarts at once.
      slot.restarts = Date.now() - slot.lastStart > 10_000 ? 0 : slot.restarts + 1;
      const delay = Math.min(5_000, slot.restarts === 0 ? 0 : 100 * 2 ** slot.restarts);
      log.error('worker exited; restarting it', { worker: slot.index, pid: worker.process.pid, code, signal, restartInMs: delay });
      setTimeout(() => {
        if (!stopping) fork(slot);
      }, delay).unref();
    });
  }

  async function exposition(): Promise<string> {
    const id = nextId++;
    const targets = slots.filter((s) => s.listening && s.worker !== null);
    const parts: MetricsJson[] = [];
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, METRICS_TIMEOUT_MS);
      metricsWaiting.set(id, {
        waitingFor: new Set(targets),
        parts,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      });
      if (targets.length === 0) resolve();
      for (const slot of targets) send(slot, { t: 'metrics?', id });
    });
    metricsWaiting.delete(id);
    if (gateway === null) return '';
    return aggregateExposition(gateway.metrics.registry, parts);
  }

  cluster.setupPrimary({ serialization: 'advanced' });
  const { createGateway } = await import('../server.js');
  gateway = await createGateway(settings, {
    log,
    resetState: options.resetState,
    cluster: {
      role: 'primary',
      async openStore(open) {
        const store = await open();
        // Redis: the workers are instances on the same Redis; the primary still hands its kills,
        // revocations and credential changes to each worker and waits for every ack.
        if (store.driver !== 'memory' || !('snapshot' in store)) return relayStops(store, broadcast);
        shared = createSharedStore({ store: store as MemoryStore, broadcast });
        return shared;
      },
      onReload: (snapshot) => toAll((id) => ({ t: 'reload', id }), true, `reload to version ${snapshot.version}`, null),
      onKeysRotated: () => toAll((id) => ({ t: 'keys', id }), true, 'signing keys', null),
      agentAddress: () => agentAddress ?? { address: settings.listen.host, port: settings.listen.port, family: 'IPv4' },
      abortedElsewhere(agent) {
        const aborted = abortedByAgent.get(agent) ?? 0;
        abortedByAgent.delete(agent);
        return aborted;
      },
      exposition,
      workersReady() {
        const up = slots.filter((s) => s.listening).length;
        return { ready: up === count, detail: { workers: count, workersServing: up } };
      },
    },
  });
  const auditWatch = setInterval(watchAudit, 100);
  auditWatch.unref();

  const drainWorkers = async (graceMs: number): Promise<void> => {
    stopping = true;
    const exits = slots.map(
      (slot) =>
        new Promise<void>((resolve) => {
          const worker = slot.worker;
          if (worker === null || worker.isDead()) return resolve();
          const timer = setTimeout(() => worker.process.kill('SIGKILL'), graceMs + 5_000);
          worker.once('exit', () => {
            clearTimeout(timer);
            resolve();
          });
          send(slot, { t: 'drain', graceMs });
        }),
    );
    await Promise.all(exits);
  };

  // Start every worker; the gateway is up once all of them listen (or the first failure says why not).
  try {
    await new Promise<void>((resolve, reject) => {
      listeningChanged = () => {
        if (startupFailure !== null) reject(startupFailure);
        else if (slots.every((s) => s.listening)) resolve();
      };
      for (const slot of slots) fork(slot);
    });
  } catch (error) {
    await drainWorkers(0);
    clearInterval(auditWatch);
    await gateway.close(0);
    throw error;
  }
  listeningChanged = () => undefined;

  const ports = await gateway.start().catch(async (error: unknown) => {
    await drainWorkers(0);
    clearInterval(auditWatch);
    await gateway?.close(0);
    throw error;
  });
  log.info('cluster serving', { workers: count, pids: slots.map((s) => s.worker?.process.pid ?? null) });
  options.started?.(gateway, ports);
  await options.stopped;
  await drainWorkers(10_000);
  clearInterval(auditWatch);
  await gateway.close();
  return 0;
}

/**
 * Redis: every worker reads its own replica of Redis, kept current by Redis's pub/sub. A kill
 * (revocation, revive, credential change) made here is also handed to every worker, which makes
 * it on its own store (an idempotent write) and cuts the agent's calls in flight before it acks:
 * in force on every worker before the admin socket answers, as with the memory driver.
 */
function relayStops(store: Store, broadcast: (change: Change, ack: boolean) => Promise<void>): Store {
  const relayed = async <T>(made: Promise<T>, change: Change): Promise<T> => {
    const value = await made;
    await broadcast(change, true);
    return value;
  };
  return {
    ...store,
    isHealthy: () => store.isHealthy(),
    status: () => store.status(),
    get replayHorizon() {
      return store.replayHorizon;
    },
    kill: (record) => relayed(store.kill(record), { kind: 'kill', record }),
    revive: (agent) => relayed(store.revive(agent), { kind: 'revive', agent }),
    revoke: (jti, expiresAt) => relayed(store.revoke(jti, expiresAt), { kind: 'revoke', jti, expiresAt }),
    revokeAgent: (agent, at) => relayed(store.revokeAgent(agent, at), { kind: 'revokeAgent', agent, at }),
    saveClientSecret: (record) => relayed(store.saveClientSecret(record), { kind: 'secret', record }),
    deleteClientSecrets: (agent, id) => relayed(store.deleteClientSecrets(agent, id), { kind: 'deleteSecrets', agent, id: id ?? null }),
  };
}
