// Composition root: builds every module from Settings, opens the agent and metrics listeners,
// and owns start, reload and shutdown. Nothing else constructs stages or stores.
import { STATUS_CODES, createServer, type Server, type ServerOptions, type ServerResponse } from 'node:http';
import { createServer as createTlsServer, type Server as TlsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { isLoopbackHost, issuerForAddress, settingsWarnings, listenTlsProblems, tlsServerOptions, type Settings } from './config.js';
import { systemClock, type Clock } from './clock.js';
import { ConfigError } from './errors.js';
import { createPipeline, type Pipeline } from './pipeline.js';
import { createAdmission, type Admission } from './admission/admission.js';
import { createOutcomeWriter } from './outcome.js';
import { createProbeHandler } from './telemetry/probes.js';
import { loadPolicySnapshot } from './policy/index.js';
import { diffAgents } from './policy/diff.js';
import type { Backend, PolicySnapshot } from './policy/types.js';
import { createRateLimiter } from './admission/rate-limiter.js';
import { createAdmit } from './stages/admit.js';
import { createAuthenticate } from './stages/authenticate.js';
import { createAuthorize } from './stages/authorize.js';
import { createForward, type ForwardStage } from './stages/forward.js';
import { createMaskFilter } from './stages/filters/mask.js';
import { createMcpFilter } from './mcp/filter.js';
import { preloadSqlDialect } from './stages/aggregate-sql.js';
import { createNormalize } from './stages/normalize.js';
import { openStore } from './state/index.js';
import { JournalError, moveJournalAside, readJournal } from './state/journal.js';
import { resetStateFile } from './state/memory.js';
import type { Store } from './state/store.js';
import { createAdminHandler } from './admin/routes.js';
import { openAdminSocket, type AdminSocket } from './admin/socket.js';
import { openAuditLog, type AuditLog } from './telemetry/audit-log.js';
import { openAuditSigner } from './telemetry/audit-key.js';
import { createLogger, type Logger } from './telemetry/log.js';
import { createMetrics, type Metrics } from './telemetry/metrics.js';
import { openKeyStore, type KeyStore } from './tokens/keys.js';
import { createMcpSessions } from './mcp/session.js';
import { openSessionSecret } from './tokens/session-secret.js';
import { createTokenVerifier } from './tokens/verify.js';
import { createUpgradeHandler, type UpgradeHandler } from './upgrade.js';
import { createBroker, type Broker } from './broker/router.js';
import { createCredentialManager, type CredentialManager } from './broker/credentials.js';
import { createKeyRotation } from './broker/jwks.js';
import { createTrustedIssuers } from './tokens/trusted.js';
import { TOKEN_EXCHANGE } from './broker/metadata.js';
import { VERSION } from './version.js';

export interface GatewayOptions {
  readonly clock?: Clock;
  readonly log?: Logger;
  /** Replace backends' upstream URLs (the demo starts its backends on free ports). */
  readonly upstreams?: Readonly<Record<string, string>>;
  /** Collect process default metrics (off in tests that run many gateways in one process). */
  readonly defaultMetrics?: boolean;
  /** Move an unreadable state file aside and start empty (the CLI's --reset-state). */
  readonly resetState?: boolean;
  /** Open the admin socket (default true). */
  readonly admin?: boolean;
  /**
   * Take the issuer from the address the agent port bound even when issuer.url is set (the demo);
   * only AGENTGATE_ISSUER_URL still wins. Without it the bound address is used when no issuer is
   * configured at all.
   */
  readonly issuerFromBoundAddress?: boolean;
  /** A process of a `workers: N` gateway (gateway/cluster/); absent: one process, as always. */
  readonly cluster?: ClusterHooks;
}

/**
 * How a process of a `workers: N` gateway differs from a single gateway. The primary owns the
 * admin socket, the audit file, the state and the metrics port, and does not listen on the agent
 * port; a worker serves the agent port only, with a store and an audit log that go to the primary.
 */
export interface ClusterHooks {
  readonly role: 'primary' | 'worker';
  /** The store this process uses, given the one `settings.state` would open. */
  openStore(open: () => Promise<Store>, onRemoteStop: (agent: string, reason: string) => void): Promise<Store>;
  /** Worker: the audit log (lines go to the primary's chain). */
  readonly audit?: AuditLog;
  /** Primary: after a reload swapped the policies in; resolves once every worker has them too. */
  readonly onReload?: (snapshot: PolicySnapshot) => Promise<void>;
  /** Primary: after a signing key was published; resolves once every worker has read it. */
  readonly onKeysRotated?: (kid: string) => Promise<void>;
  /** Primary: the agent port as the workers bound it. */
  readonly agentAddress?: () => AddressInfo;
  /** Primary: calls in flight the workers aborted for `agent` since last asked. */
  readonly abortedElsewhere?: (agent: string) => number;
  /** Primary: the /metrics text (its own registry and every worker's, aggregated). */
  readonly exposition?: () => Promise<string>;
  /** Primary: readiness beyond its own (every worker up). */
  readonly workersReady?: () => { readonly ready: boolean; readonly detail: Record<string, unknown> };
}

export interface BoundPorts {
  readonly agent: AddressInfo;
  readonly metrics: AddressInfo;
}

export interface Gateway {
  readonly settings: Settings;
  readonly keys: KeyStore;
  readonly store: Store;
  readonly metrics: Metrics;
  readonly audit: AuditLog;
  /** Agents' client secrets (the broker's client_secret_basic), in this gateway's store. */
  readonly credentials: CredentialManager;
  /** Publish a new signing key now; resolves its kid. */
  rotateKeys(): Promise<string>;
  policy(): PolicySnapshot;
  /** The `iss` of our tokens and base of the broker's URLs (final once `start` resolved). */
  issuer(): string;
  /** Validate the policies on disk and swap them in; throws ConfigError and keeps the old ones. */
  reload(): Promise<PolicySnapshot>;
  /** Abort every in-flight request, stream and WebSocket of the agent; returns how many. */
  abortAgent(agent: string, reason: string): number;
  start(): Promise<BoundPorts>;
  /** Stop accepting, let in-flight requests finish (up to `graceMs`), flush audit, close pools. */
  close(graceMs?: number): Promise<void>;
}

/** Load and compile the policies of `settings`, applying upstream overrides. Throws ConfigError. */
export async function loadPolicy(
  settings: Settings,
  options: { clock: Clock; version: number; upstreams?: Readonly<Record<string, string>> },
): Promise<PolicySnapshot> {
  const snapshot = await loadPolicySnapshot(settings.policies, {
    version: options.version,
    clock: options.clock,
    defaultTimeoutMs: settings.limits.upstreamTimeoutMs,
  });
  const overrides = options.upstreams;
  if (overrides === undefined) return snapshot;
  const backends = new Map<string, Backend>();
  for (const [name, backend] of snapshot.backends) {
    const replacement = overrides[name];
    if (replacement === undefined) {
      backends.set(name, backend);
      continue;
    }
    const upstream = new URL(replacement);
    backends.set(name, Object.freeze({ ...backend, upstream, origin: upstream.origin, basePath: upstream.pathname.replace(/\/+$/, '') }));
  }
  return Object.freeze({ ...snapshot, backends });
}

/**
 * One full collection before the first request. Reading a large policy and state file leaves tens
 * of MB of parse garbage in the old generation, and V8 would keep those pages (and size its next
 * collection by them) until long after start. Node exposes no other way to ask for it than the
 * `gc` function, which a fresh context gets while --expose-gc is set.
 */
function shedStartupGarbage(): void {
  setFlagsFromString('--expose-gc');
  try {
    const gc: unknown = runInNewContext('gc');
    if (typeof gc === 'function') (gc as () => void)();
  } finally {
    setFlagsFromString('--no-expose-gc');
  }
}

/** Load the SQL grammars the policy's query routes name, so no request pays for loading one. */
function preloadDialects(policy: PolicySnapshot): void {
  for (const backend of policy.backends.values()) {
    for (const scope of backend.scopes.values()) for (const route of scope.routes) if (route.query !== null) preloadSqlDialect(route.query.dialect);
  }
}

export async function createGateway(settings: Settings, options: GatewayOptions = {}): Promise<Gateway> {
  const clock = options.clock ?? systemClock;
  const log = options.log ?? createLogger();
  let policy = await loadPolicy(settings, { clock, version: 1, upstreams: options.upstreams });
  preloadDialects(policy);
  const keys = await openKeyStore({ dir: settings.issuer.keys, alg: settings.issuer.alg, clock });
  const mcpSessions = createMcpSessions(await openSessionSecret(settings.issuer.keys));
  if (settings.state.driver === 'memory' && options.resetState === true && settings.state.file !== null) {
    const stateFile = settings.state.file;
    const aside = await resetStateFile(stateFile, clock);
    if (aside !== null) log.warn('state file moved aside; starting with empty state', { file: stateFile, movedTo: aside });
  }
  if (settings.state.driver === 'redis' && options.resetState === true) {
    // Only an unreadable journal is moved aside: a readable one may hold kills not yet shared.
    const journalFile = settings.state.journal;
    const unreadable = await readJournal(journalFile).then(
      () => false,
      (error: unknown) => error instanceof JournalError,
    );
    const aside = unreadable ? await moveJournalAside(journalFile, clock.now()) : null;
    if (aside !== null) log.warn('state journal moved aside; starting from what Redis holds', { file: journalFile, movedTo: aside });
  }
  // Read at scrape time: the store and admission are made just below.
  let storeRef: Store | null = null;
  let admissionRef: Admission | null = null;
  let auditStatus: { readonly available: boolean; readonly writeErrors: number } | null = null;
  const metrics = createMetrics({
    defaults: options.defaultMetrics ?? true,
    audit: () => auditStatus ?? { available: true, writeErrors: 0 },
    agents: () => admissionRef?.gauges(policy) ?? [],
    state: () => storeRef?.status() ?? { healthy: false, unshared: 0 },
    version: VERSION,
    names: () => ({ backends: policy.backends.keys(), roles: policy.roles.keys(), agents: policy.agents.keys(), grantTypes: ['client_credentials', TOKEN_EXCHANGE] }),
  });
  // Redis: unhealthy while the connection is lost, a command or probe misses `state.timeout`, or
  // Redis lost its data; admit and authenticate then fail closed (503).
  const onRemoteStop = (agent: string, reason: string): void => {
    const aborted = admission.abortAgent(agent, reason);
    if (aborted > 0) log.warn('calls in flight aborted by a kill or revoke from another instance', { agent, aborted });
  };
  const cluster = options.cluster;
  const openConfiguredStore = (): Promise<Store> => openStore(settings.state, clock, {
    onHealth: (healthy, why) => (healthy ? log.info('state store available', { driver: 'redis', why }) : log.error('state store unavailable; refusing requests', { driver: 'redis', why })),
    onOutage: (cause) => metrics.stateOutage(cause),
    onReseed: (kind) => metrics.stateReseeded(kind),
    onNotice: (level, message, fields) => log[level](message, { driver: settings.state.driver, ...fields }),
    // A kill or revoke made on another instance also cuts this instance's calls in flight.
    onRemoteStop,
  });
  const store: Store = cluster === undefined ? await openConfiguredStore() : await cluster.openStore(openConfiguredStore, onRemoteStop);
  storeRef = store;
  // Kill registry, breaker trips, revoke-on-trip, in-flight aborts and the commit step.
  const admission: Admission = withAbortedElsewhere(createAdmission({ store, metrics, log, clock }), cluster?.abortedElsewhere);
  admissionRef = admission;

  let version = 1;
  async function reload(): Promise<PolicySnapshot> {
    // A renewed certificate is picked up by a reload too; a bad one keeps both the old pair and the old policies.
    const tlsProblems = settings.listen.tls === undefined ? [] : listenTlsProblems(settings.listen.tls);
    if (tlsProblems.length > 0) throw new ConfigError(tlsProblems);
    const next = await loadPolicy(settings, { clock, version: version + 1, upstreams: options.upstreams });
    if (settings.listen.tls !== undefined && 'setSecureContext' in agentServer) agentServer.setSecureContext(tlsServerOptions(settings.listen.tls));
    const before = policy;
    version = next.version;
    preloadDialects(next);
    policy = next;
    log.info('policies reloaded', { version, files: next.files.length });
    // A worker swaps its policies only: the primary runs the lifecycle once, for every worker.
    if (cluster?.role === 'worker') return next;
    await cluster?.onReload?.(next);
    await applyLifecycle(before, next);
    return next;
  }
  /**
   * Joiner, mover, leaver: what a reload does to agents, in force before the reload answers. A
   * leaver's live tokens and client secrets are revoked (a later agent of the same id starts from
   * nothing), a mover's live tokens too (new tokens carry the new role), and a joiner gets nothing
   * until credentials are issued (any secret or token left from an earlier agent of that id is
   * revoked). Calls in flight of leavers and movers are cut. Each is its own admin audit line.
   */
  async function applyLifecycle(before: PolicySnapshot, after: PolicySnapshot): Promise<void> {
    const nowSeconds = Math.floor(clock.now() / 1000);
    for (const change of diffAgents(before, after)) {
      if (change.kind === 'grants') continue;
      const { agent } = change;
      await store.revokeAgent(agent, nowSeconds);
      const credentialsRevoked = change.kind === 'mover' ? 0 : await store.deleteClientSecrets(agent);
      const aborted = change.kind === 'joiner' ? 0 : admission.abortAgent(agent, `policy reload: agent ${change.kind}`);
      metrics.tokenRevoked();
      log.warn(`policy reload: ${change.kind}`, { agent, fromRole: change.fromRole, toRole: change.toRole, credentialsRevoked, aborted });
      await audit.append({
        time: new Date(clock.now()).toISOString(),
        kind: 'admin',
        requestId: `reload-${after.version}-${agent}`,
        decision: 'allow',
        reason: 'none',
        action: `agent.${change.kind}`,
        agent,
        by: 'policy reload',
        policyVersion: after.version,
        fromRole: change.fromRole,
        toRole: change.toRole,
        grantsAdded: change.added,
        grantsRemoved: change.removed,
        tokensRevokedUntil: nowSeconds,
        credentialsRevoked,
        aborted,
      });
    }
  }
  const auditFile = settings.audit.file;
  const audit = cluster?.audit ?? await openAuditLog({
    file: auditFile,
    fsync: settings.audit.fsync,
    checkpointLines: settings.audit.checkpointLines,
    checkpointIntervalMs: settings.audit.checkpointIntervalMs,
    signer: await openAuditSigner(settings.issuer.keys),
    checkpoints: { load: () => store.auditCheckpoint(auditFile), save: (checkpoint) => store.saveAuditCheckpoint(checkpoint) },
    onError: (error) => log.error('audit write failed; retrying', { error }),
    onAvailability: (available, why) =>
      available
        ? log.info('audit trail writable again; serving resumes', { file: auditFile })
        : log.error('audit trail unwritable; refusing requests (503 audit_unavailable) until it recovers', { file: auditFile, why }),
    onWarning: (message, fields) => log.warn(message, fields),
  });
  auditStatus = audit;

  // Known once the agent port is bound when it is derived from the bound address (see start()).
  let issuer = settings.issuer.url;
  const deriveIssuer = settings.issuer.urlFrom === 'listen' || (options.issuerFromBoundAddress === true && settings.issuer.urlFrom !== 'env');
  const verifier = createTokenVerifier({ keys, issuer: () => issuer, clock });
  const credentials = createCredentialManager({ store, clock, policy: () => policy });
  const rotation = createKeyRotation({
    keys,
    clock,
    rotateMs: settings.issuer.rotateSeconds * 1000,
    onRotated: (kid) => {
      log.info('signing key rotated', { kid });
      cluster?.onKeysRotated?.(kid).catch((error: unknown) => log.error('workers did not all read the new signing key', { kid, error }));
    },
    onError: (error) => log.error('signing key rotation failed; the current key stays in use', { error }),
  });
  const broker: Broker = createBroker({
    issuer: () => issuer,
    keys,
    store,
    clock,
    verifier,
    trusted: createTrustedIssuers({ trust: settings.trust, clock }),
    policy: () => policy,
    onIssued: (role, grantType) => metrics.tokenIssued(role, grantType),
    onAnswered: (endpoint, decision, seconds) => metrics.brokerAnswered(endpoint, decision, seconds),
    onRevoked: () => metrics.tokenRevoked(),
    audit: (record) => audit.append({ time: new Date(clock.now()).toISOString(), kind: 'broker', ...record }),
    auditAvailable: () => audit.available,
    onError: (error) => log.error('token broker failed', { error }),
  });
  const forward: ForwardStage = createForward({ metrics, maxBodyBytes: settings.limits.maxBodyBytes, bodyIdleMs: settings.limits.bodyIdleTimeoutMs, mcpSessions });
  const state = admission.view;
  const pipeline: Pipeline = createPipeline({
    stages: [
      createNormalize({ maxBodyBytes: settings.limits.maxBodyBytes }),
      createAuthenticate({ verifier, state }),
      createAdmit({ state, clock }),
      createAuthorize({ maxBodyBytes: settings.limits.maxBodyBytes, bodyIdleMs: settings.limits.bodyIdleTimeoutMs, state, clock, metrics, trustedProxies: settings.trustedProxies, mcpSessions }),
      forward,
    ],
    filters: [createMcpFilter({ maxBytes: settings.limits.maxMaskedBodyBytes }), createMaskFilter({ maxBytes: settings.limits.maxMaskedBodyBytes })],
    publicUrl: () => issuer,
    admission,
    outcome: createOutcomeWriter({ metrics, audit }),
    log,
    clock,
    currentPolicy: () => policy,
    rateLimiter: createRateLimiter({ store, metrics }),
  });
  const upgrades: UpgradeHandler = createUpgradeHandler({ pipeline, metrics, log });
  const startedAt = clock.now();
  let bound: BoundPorts | null = null;
  const adminHandler = createAdminHandler({
    store,
    clock,
    audit,
    policy: () => policy,
    reload,
    admission,
    credentials,
    rotateKeys: () => rotation.rotateNow(),
    onAgentChange: () => undefined,
    status: () => ({
      status: 'serving',
      pid: process.pid,
      uptimeSeconds: Math.round((clock.now() - startedAt) / 1000),
      policyVersion: policy.version,
      policyFiles: policy.files,
      listen: bound === null ? null : `${bound.agent.address}:${bound.agent.port}`,
      issuer,
      metrics: bound === null ? null : `${bound.metrics.address}:${bound.metrics.port}`,
      inFlight: pipeline.inFlight,
      auditLines: audit.written,
      audit: audit.available ? 'ok' : `unavailable: ${audit.unavailableReason ?? ''}`,
      // A cluster primary: how many workers there are and how many serve (its own inFlight is 0).
      ...(cluster?.workersReady?.().detail ?? {}),
    }),
  });
  let adminSocket: AdminSocket | null = null;

  const listenTls = settings.listen.tls;
  const agentOptions: ServerOptions = {
    maxHeaderSize: settings.limits.maxHeaderBytes,
    keepAliveTimeout: 5_000,
    // A request head, and a whole request, must arrive in time (answered 408 below); once the
    // request is in, the response streams for as long as it needs. Checked every second (node's
    // default of 30 s would let a slow client hold a socket well past its deadline).
    headersTimeout: settings.limits.headersTimeoutMs,
    requestTimeout: settings.limits.requestTimeoutMs,
    connectionsCheckingInterval: Math.min(1000, settings.limits.headersTimeoutMs),
    joinDuplicateHeaders: false,
  };
  // listen.tls: the agent port (broker included) speaks only HTTPS; the metrics port and the admin
  // socket stay as they are.
  // A TLS handshake gets the time a request head gets (node's own default is 120 s), so a
  // connection that never finishes it cannot hold a socket longer than a slow plain-HTTP client.
  const agentServer: Server | TlsServer =
    listenTls === undefined ? createServer(agentOptions) : createTlsServer({ ...agentOptions, ...tlsServerOptions(listenTls), handshakeTimeout: settings.limits.headersTimeoutMs });
  // The latest response on each connection: a parser error in the middle of a request body must
  // not write a second answer into a response already under way (its head sent, not finished).
  // Read when the error comes rather than kept up to date with a listener on every response.
  const serving = new WeakMap<Socket, ServerResponse>();
  // The broker's paths (/oauth/*, /.well-known/*) can never be a backend, so they go first.
  agentServer.on('request', (req, res) => {
    serving.set(req.socket, res);
    if (broker.owns(req.url ?? '')) broker.handle(req, res);
    else pipeline.handle(req, res);
  });
  agentServer.on('upgrade', upgrades.handle);
  // Requests node's parser refuses (bad bytes in the target, oversized headers, smuggling
  // attempts) get a problem document too, and are counted and audited like any refusal; a parser
  // error in the middle of a body never writes a second answer into a response under way.
  if (listenTls !== undefined) {
    // node:https hands a failed TLS handshake (untrusted or missing client certificate, an old
    // version, plain HTTP, a handshake not finished in time) to 'clientError' by default. There is
    // no HTTP request to answer or audit and no channel to answer on: close the connection.
    agentServer.removeAllListeners('tlsClientError');
    agentServer.on('tlsClientError', (error: NodeJS.ErrnoException, socket: Socket) => {
      log.debug('TLS handshake failed', { code: error.code, remoteAddress: socket.remoteAddress });
      socket.destroy();
    });
  }
  agentServer.on('clientError', (error: NodeJS.ErrnoException, socket: Socket) => {
    const res = serving.get(socket);
    if (res !== undefined && res.headersSent && !res.writableFinished) socket.destroy();
    else pipeline.clientError(error, socket);
  });

  const metricsServer: Server = createServer(
    createProbeHandler({
      metrics: cluster?.exposition === undefined ? metrics : { ...metrics, exposition: cluster.exposition },
      log,
      // Policies are loaded before the listeners open; state and keys can go missing later.
      readiness() {
        const state = store.status();
        const keyCount = keys.publicJwks().keys.length;
        const auditOk = audit.available;
        const workers = cluster?.workersReady?.() ?? { ready: true, detail: {} };
        return {
          ready: state.healthy && keyCount > 0 && auditOk && workers.ready,
          detail: {
            policyVersion: policy.version,
            state: state.healthy ? 'ok' : 'unavailable',
            ...(state.healthy ? {} : { stateDetail: state.detail }),
            unsharedChanges: state.unshared,
            keys: keyCount,
            audit: auditOk ? 'ok' : 'unavailable',
            ...(auditOk ? {} : { auditReason: audit.unavailableReason }),
            ...workers.detail,
          },
        };
      },
    }),
  );

  const sockets = new Set<Socket>();
  agentServer.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });

  async function listen(server: Server | TlsServer, host: string, port: number): Promise<AddressInfo> {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    return server.address() as AddressInfo;
  }

  return {
    settings,
    keys,
    store,
    metrics,
    audit,
    credentials,
    rotateKeys: () => rotation.rotateNow(),
    policy: () => policy,
    issuer: () => issuer,
    reload,
    abortAgent: (agent, reason) => admission.abortAgent(agent, reason),
    async start() {
      // No request before the store's replay horizon (at most a second away): a client assertion
      // made from now on is then never mistaken for one that may predate a restart.
      for (let i = 0; i < 20 && clock.now() < store.replayHorizon; i++) {
        await new Promise((resolve) => setTimeout(resolve, Math.min(100, store.replayHorizon - clock.now() + 1)));
      }
      if (options.admin !== false && cluster?.role !== 'worker') adminSocket = await openAdminSocket(settings.admin.socket, adminHandler.handle, log);
      shedStartupGarbage();
      // The primary of a cluster does not serve the agent port: its workers do (cluster/primary.ts).
      const agent = cluster?.agentAddress?.() ?? (await listen(agentServer, settings.listen.host, settings.listen.port));
      // Set before any request is read: a connection is handled on a later turn of the event loop.
      if (deriveIssuer) {
        issuer = issuerForAddress(listenTls === undefined ? 'http' : 'https', agent.address, agent.port);
        if (!isLoopbackHost(agent.address)) log.warn('issuer.url is not set, so tokens and the broker metadata name this machine\'s loopback address; set issuer.url (or AGENTGATE_ISSUER_URL) to the URL agents use', { issuer });
      }
      else if (cluster?.role !== 'worker') for (const warning of settingsWarnings(settings)) log.warn(warning);
      if (cluster?.role === 'worker') {
        // A worker's metrics are scraped through the primary; it publishes no keys of its own.
        bound = { agent, metrics: agent };
        log.info('worker listening', { agent: `${agent.address}:${agent.port}`, issuer, policyVersion: policy.version });
        return bound;
      }
      const metricsAddress = await listen(metricsServer, settings.metrics.host, settings.metrics.port);
      bound = { agent, metrics: metricsAddress };
      rotation.start();
      await rotation.tick().catch((error: unknown) => log.error('signing key rotation failed; the current key stays in use', { error }));
      // Again once everything has started: what the start still held at the first collection
      // (the key rotation's first tick, listeners) is garbage now, and old-space pages that the
      // first collection left half full are compacted (with 10,000 agents and 100,000 revocations
      // this gives back about 20 MB of RSS).
      shedStartupGarbage();
      log.info('listening', { agent: `${agent.address}:${agent.port}`, metrics: `${metricsAddress.address}:${metricsAddress.port}`, issuer, policyVersion: policy.version });
      return { agent, metrics: metricsAddress };
    },
    async close(graceMs = 10_000) {
      rotation.stop();
      const closing = new Promise<void>((resolve) => (agentServer.listening ? agentServer.close(() => resolve()) : resolve()));
      agentServer.closeIdleConnections();
      await pipeline.drained(graceMs);
      for (const socket of sockets) socket.destroy();
      await closing;
      await new Promise<void>((resolve) => (metricsServer.listening ? metricsServer.close(() => resolve()) : resolve()));
      metricsServer.closeAllConnections();
      upgrades.close();
      await adminSocket?.close();
      await adminHandler.settle();
      await forward.close();
      await audit.close();
      await store.close();
    },
  };
}

/** The primary's admission: a kill's `aborted` counts the calls its workers cut too. */
function withAbortedElsewhere(admission: Admission, elsewhere: ((agent: string) => number) | undefined): Admission {
  if (elsewhere === undefined) return admission;
  return {
    ...admission,
    abortAgent: (agent, reason) => admission.abortAgent(agent, reason) + elsewhere(agent),
    async kill(record) {
      const { sharing, aborted } = await admission.kill(record);
      return { sharing, aborted: aborted + elsewhere(record.agent) };
    },
    async revokeAgent(agent, reason) {
      const { sharing, aborted } = await admission.revokeAgent(agent, reason);
      return { sharing, aborted: aborted + elsewhere(agent) };
    },
  };
}
