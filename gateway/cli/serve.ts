// `agentgate serve`, `demo` and `demo-backends`: the long-running verbs. They start listeners,
// print where they listen, and run until SIGINT/SIGTERM (SIGHUP reloads the policies).
import { ConfigError } from '../errors.js';
import { systemClock } from '../clock.js';
import type { Settings } from '../config.js';
import type { Gateway } from '../server.js';
import { createLogger, type Logger } from '../telemetry/log.js';
import { hostFor, readPolicy, settingsFrom } from './common.js';
import { CliError, parse, type Out } from './verb.js';

export async function serve(args: readonly string[], out: Out, demo: boolean): Promise<number> {
  const { values } = parse(args, { 'reset-state': { type: 'boolean', default: false } });
  const settings = await settingsFrom(values.config);
  // `workers: N`: this process is the primary, or one of the workers it forked (gateway/cluster/).
  // With one worker (the default) none of that code is loaded.
  if (process.env.AGENTGATE_CLUSTER_WORKER === '1') {
    const { serveWorker } = await import('../cluster/worker.js');
    return serveWorker(settings, createLogger({ level: settings.log.level, bindings: { worker: Number(process.env.AGENTGATE_WORKER_SLOT ?? 0) } }));
  }
  const log = createLogger({ level: settings.log.level });
  if (!demo && settings.workers.count > 1) return servePrimary(settings, log, out, values['reset-state']);
  if (demo && settings.workers.count > 1) log.warn('the demo runs in one process; workers is ignored', { workers: settings.workers.count });
  let backends: { urls: Record<string, string>; close(): Promise<void> } | null = null;
  if (demo) {
    const { startDemoBackends } = await import('../../demo/backends.js');
    backends = await startDemoBackends({ host: '127.0.0.1' });
  }
  // Loaded here, not at the top: the other verbs never need the listeners' libraries.
  const { createGateway } = await import('../server.js');
  let gateway: Gateway;
  try {
    gateway = await createGateway(settings, { log, upstreams: backends?.urls, resetState: values['reset-state'], issuerFromBoundAddress: demo });
  } catch (error) {
    await backends?.close();
    throw error;
  }
  const stopped = untilStopped(log);
  onReload(gateway, log);
  const ports = await gateway.start().catch(async (error: unknown) => {
    await gateway.close(0);
    await backends?.close();
    const code = (error as { code?: unknown }).code;
    if (code === 'EADDRINUSE') throw new CliError(`${describeEndpoint(error)} is already in use (set AGENTGATE_LISTEN_PORT / AGENTGATE_METRICS_PORT, 0 picks a free port)`);
    throw error;
  });
  // People read stderr; stdout carries only the JSON log, so `agentgate serve | jq` works.
  const scheme = settings.listen.tls === undefined ? 'http' : 'https';
  out.stderr(`agentgate listening on ${scheme}://${hostFor(ports.agent.address)}:${ports.agent.port} (metrics on http://${hostFor(ports.metrics.address)}:${ports.metrics.port}/metrics)`);
  if (demo && backends !== null) {
    const { demoBanner } = await import('../../demo/banner.js');
    out.stderr(await demoBanner({ gateway, agentUrl: `${scheme}://${hostFor(ports.agent.address)}:${ports.agent.port}`, metricsUrl: `http://${hostFor(ports.metrics.address)}:${ports.metrics.port}`, backends: backends.urls }));
  }
  await stopped;
  await gateway.close();
  await backends?.close();
  return 0;
}

async function servePrimary(settings: Settings, log: Logger, out: Out, resetState: boolean): Promise<number> {
  const { servePrimary: run } = await import('../cluster/primary.js');
  const scheme = settings.listen.tls === undefined ? 'http' : 'https';
  return run(settings, log, {
    resetState,
    say: (line) => out.stderr(line),
    stopped: untilStopped(log),
    started(gateway, ports) {
      onReload(gateway, log);
      out.stderr(`agentgate listening on ${scheme}://${hostFor(ports.agent.address)}:${ports.agent.port} (metrics on http://${hostFor(ports.metrics.address)}:${ports.metrics.port}/metrics) with ${settings.workers.count} worker processes`);
    },
  }).catch((error: unknown) => {
    const code = (error as { code?: unknown }).code;
    if (code === 'EADDRINUSE') throw new CliError(`${describeEndpoint(error)} is already in use (set AGENTGATE_LISTEN_PORT / AGENTGATE_METRICS_PORT, 0 picks a free port)`);
    throw error;
  });
}

/**
 * Resolves on SIGINT or SIGTERM. Installed before the gateway says it listens: a supervisor that
 * stops it right after that line gets a clean shutdown (audit closed, state lock released), not
 * the default action of the signal.
 */
function untilStopped(log: Logger): Promise<void> {
  return new Promise<void>((resolve) => {
    const stop = (signal: string): void => {
      log.info('shutting down', { signal });
      resolve();
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
}

/** SIGHUP reloads the policies; the outcome is an admin audit line either way. */
function onReload(gateway: Gateway, log: Logger): void {
  process.on('SIGHUP', () => {
    if (!gateway.audit.available) {
      log.error('reload refused: the audit trail cannot be written, so the change could not be recorded', { why: gateway.audit.unavailableReason });
      return;
    }
    const record = (decision: 'allow' | 'deny', fields: Record<string, unknown>): void => {
      gateway.audit.write({ time: new Date().toISOString(), kind: 'admin', requestId: `sighup-${Date.now()}`, decision, reason: decision === 'allow' ? 'none' : 'policy_invalid', action: 'reload', agent: null, by: 'SIGHUP', ...fields });
    };
    gateway.reload().then(
      (snapshot) => record('allow', { version: snapshot.version, files: snapshot.files }),
      (error: unknown) => {
        const problems = error instanceof ConfigError ? error.problems : [String(error)];
        record('deny', { problems: problems.length });
        log.error('reload refused; the current policies stay in force', { problems });
      },
    );
  });
}

export async function demoBackends(args: readonly string[], out: Out): Promise<number> {
  const { values } = parse(args, { host: { type: 'string', default: '127.0.0.1' } });
  const settings = await settingsFrom(values.config);
  const policy = await readPolicy(settings, systemClock);
  const { DEMO_BACKENDS, startDemoBackends } = await import('../../demo/backends.js');
  // Each demo backend listens on the port its policy's upstream URL names.
  const ports: Partial<Record<(typeof DEMO_BACKENDS)[number], number>> = {};
  for (const name of DEMO_BACKENDS) {
    const upstream = policy.backends.get(name)?.upstream;
    if (upstream === undefined) throw new CliError(`the policies define no backend "${name}"; demo-backends serves ${DEMO_BACKENDS.join(', ')}`);
    ports[name] = Number(upstream.port || (upstream.protocol === 'https:' ? 443 : 80));
  }
  const stopped = new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
  const backends = await startDemoBackends({ host: values.host, ports });
  out.stdout(`demo backends listening: ${DEMO_BACKENDS.map((n) => `${n} ${backends.urls[n]}`).join(', ')}`);
  await stopped;
  await backends.close();
  return 0;
}

function describeEndpoint(error: unknown): string {
  const e = error as { address?: unknown; port?: unknown };
  return typeof e.address === 'string' ? `${e.address}:${String(e.port)}` : 'the address';
}
