// A cluster worker: `agentgate serve` started by the primary (cluster/primary.ts). It serves the
// agent port (proxy and broker) with a replica of the primary's state and an audit log that goes
// to the primary. It never runs without its primary: when the IPC channel closes it exits at once
// (fail closed). Signals are the primary's business: it drains the workers on SIGTERM.
import type { AddressInfo } from 'node:net';
import { systemClock } from '../clock.js';
import type { Settings } from '../config.js';
import type { Gateway } from '../server.js';
import { openMemoryStore } from '../state/memory.js';
import type { Store } from '../state/store.js';
import type { Logger } from '../telemetry/log.js';
import type { AuditRecord } from '../telemetry/audit-log.js';
import type { Call, Change, PrimaryMessage, WorkerMessage } from './protocol.js';
import { createWorkerAudit } from './worker-audit.js';
import { createWorkerStore, type WorkerStore } from './worker-store.js';

/** Exit code of a worker whose primary went away. */
export const ORPHANED_EXIT = 70;

export async function serveWorker(settings: Settings, log: Logger): Promise<number> {
  const send = (message: WorkerMessage): void => {
    if (process.connected) process.send?.(message);
  };
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => undefined);
  process.on('disconnect', () => {
    log.error('the cluster primary is gone; this worker stops serving now', {});
    process.exit(ORPHANED_EXIT);
  });

  let nextId = 1;
  const waiting = new Map<number, { resolve(value: unknown): void; reject(error: Error): void }>();
  const request = (build: (id: number) => WorkerMessage): Promise<unknown> =>
    new Promise<unknown>((resolve, reject) => {
      const id = nextId++;
      waiting.set(id, { resolve, reject });
      send(build(id));
    });

  let workerStore: WorkerStore | null = null;
  let gateway: Gateway | null = null;
  let snapshot: Extract<PrimaryMessage, { t: 'snapshot' }> | null = null;
  let gotSnapshot: (() => void) | null = null;
  const audit = createWorkerAudit({ send: (records: readonly AuditRecord[]) => request((id) => ({ t: 'audit', id, records })) as Promise<string | null> });

  // Touches are batched: the inventory and other workers' idle clocks need them soon, not now.
  let agentTouches = new Map<string, readonly [string, string, number]>();
  let sessionTouches = new Map<string, readonly [string, string, number]>();
  let touchTimer: NodeJS.Timeout | null = null;
  const flushTouches = (): void => {
    touchTimer = null;
    send({ t: 'touches', agents: [...agentTouches.values()], sessions: [...sessionTouches.values()] });
    agentTouches = new Map();
    sessionTouches = new Map();
  };
  const scheduleTouches = (): void => {
    touchTimer ??= setTimeout(flushTouches, 50);
  };

  const onMessage = async (message: PrimaryMessage): Promise<void> => {
    switch (message.t) {
      case 'snapshot':
        snapshot = message;
        audit.setState(message.audit);
        // The replica exists before the next message is read: no change pushed after the snapshot is missed.
        if (message.state !== null) workerStore = createWorkerStore({
            replica: await openMemoryStore({ clock: systemClock, file: null, initial: message.state }),
            clock: systemClock,
            replayHorizon: message.replayHorizon,
            call: (call: Call) => request((id) => ({ t: 'call', id, call })),
            connected: () => process.connected,
            touch(agent, jti, expiresAt) {
              agentTouches.set(`${agent}\n${jti}`, [agent, jti, expiresAt]);
              scheduleTouches();
            },
            touchSession(sid, agent, expiresAt) {
              sessionTouches.set(sid, [sid, agent, expiresAt]);
              scheduleTouches();
            },
          });
        gotSnapshot?.();
        return;
      case 'result': {
        const pending = waiting.get(message.id);
        waiting.delete(message.id);
        if (message.ok) pending?.resolve(message.value);
        else pending?.reject(new Error(message.error));
        return;
      }
      case 'audited': {
        const pending = waiting.get(message.id);
        waiting.delete(message.id);
        pending?.resolve(message.error);
        return;
      }
      case 'audit-state':
        audit.setState(message.audit);
        return;
      case 'change': {
        let aborted = 0;
        let error: string | null = null;
        try {
          const stop = (agent: string, reason: string): number => gateway?.abortAgent(agent, reason) ?? 0;
          if (workerStore !== null) aborted = await workerStore.applyChange(message.change, stop);
          else if (gateway !== null) aborted = await applyToOwnStore(gateway.store, message.change, stop);
        } catch (e) {
          error = e instanceof Error ? e.message : String(e);
        }
        if (message.id !== 0) send({ t: 'ack', id: message.id, aborted, error });
        return;
      }
      case 'reload': {
        let error: string | null = null;
        try {
          await gateway?.reload();
        } catch (e) {
          error = e instanceof Error ? e.message : String(e);
          log.error('policy reload failed in a worker', { error });
        }
        send({ t: 'ack', id: message.id, aborted: 0, error });
        return;
      }
      case 'keys': {
        let error: string | null = null;
        try {
          await gateway?.keys.refresh();
        } catch (e) {
          error = e instanceof Error ? e.message : String(e);
        }
        send({ t: 'ack', id: message.id, aborted: 0, error });
        return;
      }
      case 'metrics?':
        send({ t: 'metrics', id: message.id, metrics: gateway === null ? [] : await gateway.metrics.registry.getMetricsAsJSON() });
        return;
      case 'drain':
        if (touchTimer !== null) clearTimeout(touchTimer);
        flushTouches();
        await gateway?.close(message.graceMs);
        process.disconnect();
        process.exit(0);
    }
  };
  // The snapshot, pushed changes and answers are handled one after another, in the primary's
  // order (a change the primary pushed before answering is in the replica before the answer is
  // read); the rest (drain, reload, metrics) may wait long and must not hold kills back.
  let inOrder: Promise<void> = Promise.resolve();
  process.on('message', (message: PrimaryMessage) => {
    const handle = (): Promise<void> => onMessage(message).catch((error: unknown) => log.error('cluster message failed', { error, type: message.t }));
    if (message.t === 'snapshot' || message.t === 'change' || message.t === 'result') inOrder = inOrder.then(handle);
    else void handle();
  });

  await new Promise<void>((resolve) => {
    gotSnapshot = resolve;
    send({ t: 'hello' });
  });
  const first = snapshot as Extract<PrimaryMessage, { t: 'snapshot' }> | null;
  if (first === null) throw new Error('no snapshot from the cluster primary');

  const { createGateway } = await import('../server.js');
  // Redis: a journal per worker (it is one per instance), kept across that worker's restarts.
  const slot = Number(process.env.AGENTGATE_WORKER_SLOT ?? 0);
  const own: Settings = settings.state.driver === 'redis' ? { ...settings, state: { ...settings.state, journal: `${settings.state.journal}.worker-${slot}` } } : settings;
  try {
    gateway = await createGateway(own, {
      log,
      cluster: {
        role: 'worker',
        audit,
        async openStore(open): Promise<Store> {
          // Redis: each worker is one more instance on the same Redis.
          return first.state === null || workerStore === null ? open() : workerStore;
        },
      },
    });
    const ports = await gateway.start();
    const agent: AddressInfo = ports.agent;
    send({ t: 'listening', address: agent.address, port: agent.port, family: agent.family });
  } catch (error) {
    send({ t: 'failed', message: error instanceof Error ? error.message : String(error), code: ((error as { code?: unknown }).code as string | undefined) ?? null });
    throw error;
  }
  // Runs until the primary says drain (or goes away).
  return new Promise<number>(() => undefined);
}

/** Redis: a stop the primary relayed, made on this worker's own store (idempotent) before the ack. */
async function applyToOwnStore(store: Store, change: Change, stop: (agent: string, reason: string) => number): Promise<number> {
  switch (change.kind) {
    case 'kill':
      await store.kill(change.record);
      return stop(change.record.agent, change.record.reason);
    case 'revokeAgent':
      await store.revokeAgent(change.agent, change.at);
      return stop(change.agent, 'tokens revoked');
    case 'revoke':
      await store.revoke(change.jti, change.expiresAt);
      return 0;
    case 'revive':
      await store.revive(change.agent);
      return 0;
    case 'secret':
      await store.saveClientSecret(change.record);
      return 0;
    case 'deleteSecrets':
      await store.deleteClientSecrets(change.agent, change.id ?? undefined);
      return 0;
    default:
      return 0;
  }
}
