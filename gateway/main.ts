// The `agentgate` CLI: serve, demo, check, token, explain. Every command takes --config; data
// commands take --json. Exit 0 on success; on failure one line on stderr and a non-zero code
// (1 failure, 2 usage).
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { loadSettings, type Settings } from './config.js';
import { systemClock } from './clock.js';
import { ConfigError, GatewayError } from './errors.js';
import { runChecks } from './pipeline.js';
import { parseDuration } from './policy/units.js';
import { createGateway, loadPolicy, type Gateway } from './server.js';
import { createAdmit } from './stages/admit.js';
import { createAuthenticate } from './stages/authenticate.js';
import { createAuthorize } from './stages/authorize.js';
import { createNormalize } from './stages/normalize.js';
import { openStore } from './state/index.js';
import { StateFileError } from './state/memory.js';
import { adminCall, AdminClientError } from './admin/client.js';
import { AdminSocketInUseError } from './admin/socket.js';
import { open, stat } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { readAuditLines } from './telemetry/audit-log.js';
import { formatAuditRecord, tailAudit, type TailFilter } from './telemetry/audit-verify.js';
import { auditVerify, VerifyInputError } from './cli/audit-verify.js';
import { createContext } from './context.js';
import { createLogger } from './telemetry/log.js';
import { openKeyStore } from './tokens/keys.js';
import { createTokenVerifier } from './tokens/verify.js';
import { BrokerError, issueAgentToken, planAgentToken } from './broker/issue.js';
import { createCredentialManager, CredentialError, DEFAULT_OVERLAP_MS, type CredentialView, type IssuedSecret } from './broker/credentials.js';

/** A failure the CLI reports as one line and an exit code. */
class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

const USAGE = `usage: agentgate <command> [options]

commands:
  serve                         run the gateway
  demo                          run the gateway in front of the demo backends, print tokens and curl lines
  demo-backends [--host H]      run only the demo backends, on the ports their policies name (docker compose)
  check                         validate agentgate.yaml and policies, then exit (0 valid, 1 invalid)
  token --agent ID [--scope S]... [--ttl D]
                                mint a session token with the local signing key; prints only the token
  explain --token T METHOD PATH what would this token be allowed to do with this request, and why
  credentials issue AGENT       make a client secret (client_secret_basic); printed once, stored hashed
  credentials rotate AGENT [--overlap D]
                                a new secret; the old ones keep working for D (default 1h), then stop
  credentials list [AGENT]      client secrets and pinned keys, with their status
  credentials revoke AGENT [--id ID]
                                remove one secret, or all of the agent's secrets
  keys rotate                   publish a new signing key and sign with it now (old keys stay in the JWKS)
  (credentials and keys act through the running gateway's admin socket, or on the state file and
  key folder when no gateway is running)

operator commands (over the admin socket of a running gateway):
  status                        the gateway's state
  agents [AGENT]                every agent: role, owner, breaker, violations, kill, last seen, live tokens
  kill AGENT --reason R         disable an agent now (aborts its in-flight calls); kill --all --reason R for every agent
  revive AGENT                  lift a kill switch and reset the breaker; revive --all for every agent
  revoke --jti J | --agent A    revoke one token, or every token of an agent
  reload                        validate the policies on disk and swap them in (SIGHUP does the same)
  approvals [ID]                calls waiting for (or given) a person's approval
  approve ID [--reason R]       approve one call; the agent repeats it with X-AgentGate-Approval: ID
  deny ID --reason R            deny one call

audit trail (reads the file; no running gateway needed):
  audit verify [FILE...] [--key PEM]
                                check the hash chain and the signed checkpoints; names every edited, removed,
                                inserted or reordered line, and a trail cut before the state store's last
                                checkpoint (default: audit.file of the config and its rotated files; several
                                files: oldest first, e.g. audit.jsonl.2 audit.jsonl.1 audit.jsonl)
  audit tail [FILE] [--agent A] [--decision allow|deny] [--since 10m] [-n N] [--follow]
                                recent records, one line each (default FILE: audit.file of the config)

common options:
  --config FILE                 agentgate.yaml to use (default: $AGENTGATE_CONFIG, else ./agentgate.yaml)
  --json                        machine-readable output
  --socket PATH                 admin socket (default: $AGENTGATE_SOCKET, else admin.socket of the config)
  --reset-state                 (serve, demo) move an unreadable state file aside and start empty
  -h, --help                    this text`;

/** Every verb the CLI accepts (the compose file and docs are checked against this list). */
export const COMMANDS = ['serve', 'demo', 'demo-backends', 'check', 'token', 'explain', 'credentials', 'keys', 'status', 'agents', 'kill', 'revive', 'revoke', 'reload', 'approvals', 'approve', 'deny', 'audit', 'help'] as const;

const COMMON = {
  config: { type: 'string' },
  json: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
} as const satisfies ParseArgsConfig['options'];

type Out = { stdout: (text: string) => void; stderr: (text: string) => void };

export async function main(argv: readonly string[], out: Out = defaultOut()): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'serve':
        return await serve(rest, out, false);
      case 'demo':
        return await serve(rest, out, true);
      case 'demo-backends':
        return await demoBackends(rest, out);
      case 'check':
        return await check(rest, out);
      case 'token':
        return await token(rest, out);
      case 'explain':
        return await explain(rest, out);
      case 'credentials':
        return await credentials(rest, out);
      case 'keys':
        return await keysVerb(rest, out);
      case 'status':
      case 'agents':
      case 'kill':
      case 'revive':
      case 'revoke':
      case 'reload':
      case 'approvals':
      case 'approve':
      case 'deny':
        return await adminVerb(command, rest, out);
      case 'audit':
        return await auditCommand(rest, out);
      case undefined:
      case 'help':
      case '-h':
      case '--help':
        out.stdout(USAGE);
        return command === undefined ? 2 : 0;
      default:
        throw new CliError(`unknown command "${command}" (try: agentgate --help)`, 2);
    }
  } catch (error) {
    return report(error, out);
  }
}

function report(error: unknown, out: Out): number {
  if (error instanceof ConfigError) {
    for (const problem of error.problems) out.stderr(problem);
    out.stderr(`agentgate: configuration invalid (${error.problems.length} problem${error.problems.length === 1 ? '' : 's'})`);
    return 1;
  }
  if (error instanceof CliError || error instanceof AdminClientError || error instanceof StateFileError || error instanceof AdminSocketInUseError) {
    if (!(error instanceof CliError)) {
      out.stderr(`agentgate: ${error.message}`);
      return 1;
    }
    out.stderr(`agentgate: ${error.message}`);
    return error.exitCode;
  }
  if (error instanceof CredentialError) {
    out.stderr(`agentgate: ${error.message}`);
    return 1;
  }
  if (error instanceof BrokerError) {
    out.stderr(`agentgate: ${error.error}: ${error.description}`);
    return 1;
  }
  if (error instanceof Error && (error as { code?: unknown }).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
    out.stderr(`agentgate: ${error.message.split('\n')[0] ?? error.message}`);
    return 2;
  }
  if (error instanceof Error && typeof (error as { code?: unknown }).code === 'string' && String((error as { code?: unknown }).code).startsWith('ERR_PARSE_ARGS')) {
    out.stderr(`agentgate: ${error.message.split('\n')[0] ?? error.message}`);
    return 2;
  }
  out.stderr(`agentgate: ${error instanceof Error ? error.message : String(error)}`);
  return 1;
}

function parse<T extends NonNullable<ParseArgsConfig['options']>>(args: readonly string[], options: T, positionals = false) {
  return parseArgs({ args: [...args], options: { ...COMMON, ...options }, allowPositionals: positionals, strict: true });
}

async function settingsFrom(config: string | undefined): Promise<Settings> {
  return loadSettings(config === undefined ? {} : { configFile: config });
}

async function check(args: readonly string[], out: Out): Promise<number> {
  const { values } = parse(args, {});
  if (values.help) return usage(out);
  const settings = await settingsFrom(values.config);
  const policy = await loadPolicy(settings, { clock: systemClock, version: 1 });
  const summary = {
    config: settings.configFile,
    policies: policy.files,
    backends: policy.backends.size,
    roles: policy.roles.size,
    agents: policy.agents.size,
  };
  if (values.json) out.stdout(JSON.stringify({ valid: true, ...summary }));
  else out.stdout(`${settings.configFile}: ok (${summary.backends} backends, ${summary.roles} roles, ${summary.agents} agents from ${summary.policies.length} policy files)`);
  return 0;
}

async function token(args: readonly string[], out: Out): Promise<number> {
  const { values } = parse(args, {
    agent: { type: 'string' },
    scope: { type: 'string', multiple: true },
    ttl: { type: 'string' },
  });
  if (values.help) return usage(out);
  if (values.agent === undefined) throw new CliError('token needs --agent ID', 2);
  let ttlSeconds: number | undefined;
  if (values.ttl !== undefined) {
    const parsed = parseDuration(values.ttl);
    if (!parsed.ok) throw new CliError(`--ttl: ${parsed.error}`, 2);
    ttlSeconds = Math.floor(parsed.value / 1000);
  }
  const settings = await settingsFrom(values.config);
  const policy = await loadPolicy(settings, { clock: systemClock, version: 1 });
  const keys = await openKeyStore({ dir: settings.issuer.keys, alg: settings.issuer.alg, clock: systemClock });
  const scopes = values.scope?.flatMap((s) => s.split(/[\s,]+/)).filter((s) => s !== '');
  const plan = planAgentToken(policy, values.agent, { scopes, ttlSeconds });
  const minted = await issueAgentToken(keys, settings.issuer.url, plan, systemClock);
  if (values.json) {
    out.stdout(JSON.stringify({ access_token: minted.token, token_type: 'Bearer', expires_in: minted.expiresAt - minted.issuedAt, scope: plan.scopes.join(' '), jti: minted.jti }));
  } else {
    out.stdout(minted.token);
  }
  return 0;
}

/**
 * Run `viaSocket` against the running gateway (so it sees the change at once); when no gateway
 * answers on the admin socket, run `offline` on the state file and key folder instead.
 */
async function throughGateway<T>(socket: string, viaSocket: () => Promise<T>, offline: () => Promise<T>): Promise<T> {
  try {
    return await viaSocket();
  } catch (error) {
    if (error instanceof AdminClientError && error.code === 'not_running') return offline();
    throw error;
  }
}

async function socketOf(values: { socket?: string | undefined; config?: string | undefined }): Promise<string> {
  const socket = values.socket ?? process.env.AGENTGATE_SOCKET;
  return socket === undefined || socket === '' ? (await settingsFrom(values.config)).admin.socket : socket;
}

async function credentials(args: readonly string[], out: Out): Promise<number> {
  const { values, positionals } = parse(args, { socket: { type: 'string' }, overlap: { type: 'string' }, id: { type: 'string' } }, true);
  if (values.help) return usage(out);
  const [action, agent, ...extra] = positionals;
  if (extra.length > 0) throw new CliError(`unexpected argument "${extra[0] ?? ''}"`, 2);
  if (action !== 'issue' && action !== 'rotate' && action !== 'list' && action !== 'revoke') throw new CliError('credentials needs issue|rotate|list|revoke AGENT', 2);
  if (agent === undefined && action !== 'list') throw new CliError(`credentials ${action} needs AGENT`, 2);
  let overlapMs: number | undefined;
  if (values.overlap !== undefined) {
    if (action !== 'rotate') throw new CliError('--overlap goes with credentials rotate', 2);
    const parsed = parseDuration(values.overlap);
    if (!parsed.ok) throw new CliError(`--overlap: ${parsed.error}`, 2);
    overlapMs = parsed.value;
  }
  if (values.id !== undefined && action !== 'revoke') throw new CliError('--id goes with credentials revoke', 2);
  const operator = `${userInfo().username} (pid ${process.pid})`;
  const socket = await socketOf(values);
  const path = agent === undefined ? '/credentials' : `/agents/${encodeURIComponent(agent)}/credentials`;

  const viaSocket = async (): Promise<Record<string, unknown>> => {
    const call: [method: 'GET' | 'POST', path: string, body?: Record<string, unknown>] =
      action === 'list' ? ['GET', path]
        : action === 'issue' ? ['POST', path, { operator }]
        : action === 'rotate' ? ['POST', `${path}/rotate`, overlapMs === undefined ? { operator } : { operator, overlapMs }]
        : ['POST', `${path}/revoke`, values.id === undefined ? { operator } : { operator, id: values.id }];
    const response = await adminCall(socket, call[0], call[1], call[2]);
    if (response.status >= 400) throw new CliError(`${String(response.body.title ?? 'error')}: ${String(response.body.detail ?? `status ${response.status}`)}`);
    return response.body;
  };
  const offline = async (): Promise<Record<string, unknown>> => {
    const settings = await settingsFrom(values.config);
    if (settings.state.driver === 'memory' && settings.state.file === null) throw new CliError('no gateway is running and there is no state file to change: start the gateway, or set state.file');
    const policy = await loadPolicy(settings, { clock: systemClock, version: 1 });
    // With state.driver redis the change goes to the shared Redis, and every instance hears of it.
    const store = await openStore(settings.state, systemClock);
    try {
      const manager = createCredentialManager({ store, clock: systemClock, policy: () => policy });
      if (action === 'list') return { credentials: manager.list(agent) };
      if (action === 'issue') return { ...(await manager.issue(agent ?? '')) };
      if (action === 'rotate') return { ...(await manager.rotate(agent ?? '', overlapMs ?? DEFAULT_OVERLAP_MS)) };
      return { agent, revoked: await manager.revoke(agent ?? '', values.id) };
    } finally {
      await store.close();
    }
  };
  const body = await throughGateway(socket, viaSocket, offline);
  if (values.json) {
    out.stdout(JSON.stringify(body));
    return 0;
  }
  if (action === 'list') {
    const rows = (body.credentials as CredentialView[]) ?? [];
    const heads = ['AGENT', 'TYPE', 'ID', 'STATUS', 'CREATED', 'NOT AFTER'];
    const cells = rows.map((r) => [r.agent, r.type, r.id, r.status, r.createdAt ?? '-', r.notAfter ?? '-']);
    const widths = heads.map((h, i) => Math.max(h.length, ...cells.map((c) => (c[i] ?? '').length)));
    const line = (v: readonly string[]): string => v.map((x, i) => x.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
    out.stdout([line(heads), ...cells.map(line)].join('\n'));
    return 0;
  }
  if (action === 'revoke') {
    out.stdout(`revoked ${String(body.revoked)} client secret(s) of ${agent ?? ''}`);
    return 0;
  }
  const issued = body as unknown as IssuedSecret;
  const lines = [
    `client_id:     ${issued.clientId}`,
    `client_secret: ${issued.clientSecret}`,
    `id:            ${issued.id}`,
    'The secret is shown only now; store it where the agent reads it.',
    ...issued.retiring.map((r) => `previous secret ${r.id} keeps working until ${r.notAfter}`),
  ];
  out.stdout(lines.join('\n'));
  return 0;
}

async function keysVerb(args: readonly string[], out: Out): Promise<number> {
  const { values, positionals } = parse(args, { socket: { type: 'string' } }, true);
  if (values.help) return usage(out);
  if (positionals.length !== 1 || positionals[0] !== 'rotate') throw new CliError('keys needs: rotate', 2);
  const socket = await socketOf(values);
  const body: Record<string, unknown> = await throughGateway<Record<string, unknown>>(
    socket,
    async () => {
      const response = await adminCall(socket, 'POST', '/keys/rotate', { operator: `${userInfo().username} (pid ${process.pid})` });
      if (response.status >= 400) throw new CliError(`${String(response.body.title ?? 'error')}: ${String(response.body.detail ?? `status ${response.status}`)}`);
      return { ...response.body, via: 'gateway' };
    },
    async () => {
      const settings = await settingsFrom(values.config);
      const keys = await openKeyStore({ dir: settings.issuer.keys, alg: settings.issuer.alg, clock: systemClock });
      return { rotated: true, kid: await keys.rotate(), via: 'key folder' };
    },
  );
  out.stdout(values.json ? JSON.stringify(body) : `new signing key ${String(body.kid)} (${String(body.via)}); older keys stay in the JWKS until their tokens expire`);
  return 0;
}

async function explain(args: readonly string[], out: Out): Promise<number> {
  const { values, positionals } = parse(args, { token: { type: 'string' } }, true);
  if (values.help) return usage(out);
  if (values.token === undefined) throw new CliError('explain needs --token T', 2);
  const [method, path, ...extra] = positionals;
  if (method === undefined || path === undefined || extra.length > 0) throw new CliError('explain needs METHOD PATH, e.g. explain --token T GET /crm/contacts', 2);
  const settings = await settingsFrom(values.config);
  const clock = systemClock;
  const policy = await loadPolicy(settings, { clock, version: 1 });
  const keys = await openKeyStore({ dir: settings.issuer.keys, alg: settings.issuer.alg, clock });
  // Read-only use of the gateway's state (file, or the shared Redis): kills and open breakers count.
  const store = await openStore(settings.state, clock);
  const verifier = createTokenVerifier({ keys, issuer: settings.issuer.url, clock });
  const checks = [
    createNormalize({ maxBodyBytes: settings.limits.maxBodyBytes }),
    createAuthenticate({ verifier, store }),
    createAdmit({ store, clock }),
    createAuthorize({ maxBodyBytes: settings.limits.maxBodyBytes, trustedProxies: settings.trustedProxies, dryRun: true }),
  ];
  const upperMethod = method.toUpperCase();
  const ctx = createContext({
    requestId: 'explain',
    clock,
    policy,
    request: {
      method: upperMethod,
      url: path,
      headers: { host: `${settings.listen.host}:${settings.listen.port}`, authorization: `Bearer ${values.token}` },
      rawHeaders: ['Authorization', `Bearer ${values.token}`],
      remoteAddress: '127.0.0.1',
      remotePort: 0,
      encrypted: false,
      body: null,
    },
    signal: new AbortController().signal,
    log: createLogger({ level: 'silent' }),
  });
  let refusal: GatewayError | null = null;
  try {
    await runChecks(checks, ctx);
  } catch (error) {
    if (!(error instanceof GatewayError)) throw error;
    refusal = error;
  } finally {
    await store.close();
  }
  const principal = ctx.principal;
  const result = {
    decision: refusal === null ? 'allow' : 'deny',
    status: refusal?.status ?? null,
    reason: refusal?.reason ?? null,
    detail: refusal?.detail ?? null,
    why: refusal?.reasonDetail ?? null,
    agent: principal?.agent ?? null,
    role: principal?.role ?? null,
    onBehalfOf: principal?.onBehalfOf ?? null,
    scopes: principal === null ? [] : [...principal.scopes],
    audience: principal === null ? [] : [...principal.audience],
    expiresAt: principal === null ? null : new Date(principal.expiresAt * 1000).toISOString(),
    backend: ctx.target?.backend || null,
    path: ctx.target?.invalid === null ? ctx.target.path : null,
    route: ctx.grant?.route ?? null,
    scope: ctx.grant?.scope ?? null,
    note: `kill switches and breakers come from ${settings.state.driver === 'redis' ? 'the shared Redis' : 'the state file'}; body constraints are checked on the live request`,
  };
  if (values.json) {
    out.stdout(JSON.stringify(result));
    return 0;
  }
  const lines: string[] = [];
  if (refusal === null) {
    lines.push(`ALLOW  ${upperMethod} ${path}`);
    lines.push(`  rule:   route "${result.route}" of scope ${result.scope}`);
  } else {
    lines.push(`DENY   ${upperMethod} ${path}  -> ${refusal.status} ${refusal.reason}`);
    lines.push(`  answer: ${refusal.detail}`);
    if (refusal.reasonDetail !== refusal.detail) lines.push(`  why:    ${refusal.reasonDetail}`);
  }
  if (principal !== null) {
    lines.push(`  agent:  ${principal.agent} (role ${principal.role})${principal.onBehalfOf === null ? '' : ` on behalf of ${principal.onBehalfOf}`}`);
    lines.push(`  token:  scopes ${[...principal.scopes].join(' ')}; aud ${[...principal.audience].join(' ')}; expires ${result.expiresAt}`);
  }
  out.stdout(lines.join('\n'));
  return 0;
}

async function serve(args: readonly string[], out: Out, demo: boolean): Promise<number> {
  const { values } = parse(args, { 'reset-state': { type: 'boolean', default: false } });
  if (values.help) return usage(out);
  const settings = await settingsFrom(values.config);
  const log = createLogger();
  let backends: { urls: Record<string, string>; close(): Promise<void> } | null = null;
  if (demo) {
    const { startDemoBackends } = await import('../demo/backends.js');
    backends = await startDemoBackends({ host: '127.0.0.1' });
  }
  let gateway: Gateway;
  try {
    gateway = await createGateway(settings, { log, upstreams: backends?.urls, resetState: values['reset-state'] });
  } catch (error) {
    await backends?.close();
    throw error;
  }
  const ports = await gateway.start().catch(async (error: unknown) => {
    await gateway.close(0);
    await backends?.close();
    const code = (error as { code?: unknown }).code;
    if (code === 'EADDRINUSE') throw new CliError(`${describeEndpoint(error)} is already in use (set AGENTGATE_LISTEN_PORT / AGENTGATE_METRICS_PORT, 0 picks a free port)`);
    throw error;
  });
  out.stdout(`agentgate listening on http://${hostFor(ports.agent.address)}:${ports.agent.port} (metrics on http://${hostFor(ports.metrics.address)}:${ports.metrics.port}/metrics)`);
  if (demo && backends !== null) {
    const { demoBanner } = await import('../demo/banner.js');
    out.stdout(await demoBanner({ gateway, agentUrl: `http://${hostFor(ports.agent.address)}:${ports.agent.port}`, metricsUrl: `http://${hostFor(ports.metrics.address)}:${ports.metrics.port}`, backends: backends.urls }));
  }
  await new Promise<void>((resolve) => {
    const stop = (signal: string): void => {
      log.info('shutting down', { signal });
      resolve();
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
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
  });
  await gateway.close();
  await backends?.close();
  return 0;
}

async function demoBackends(args: readonly string[], out: Out): Promise<number> {
  const { values } = parse(args, { host: { type: 'string', default: '127.0.0.1' } });
  if (values.help) return usage(out);
  const settings = await settingsFrom(values.config);
  const policy = await loadPolicy(settings, { clock: systemClock, version: 1 });
  const { DEMO_BACKENDS, startDemoBackends } = await import('../demo/backends.js');
  // Each demo backend listens on the port its policy's upstream URL names.
  const ports: Partial<Record<(typeof DEMO_BACKENDS)[number], number>> = {};
  for (const name of DEMO_BACKENDS) {
    const upstream = policy.backends.get(name)?.upstream;
    if (upstream === undefined) throw new CliError(`the policies define no backend "${name}"; demo-backends serves ${DEMO_BACKENDS.join(', ')}`);
    ports[name] = Number(upstream.port || (upstream.protocol === 'https:' ? 443 : 80));
  }
  const backends = await startDemoBackends({ host: values.host, ports });
  out.stdout(`demo backends listening: ${DEMO_BACKENDS.map((n) => `${n} ${backends.urls[n]}`).join(', ')}`);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
  await backends.close();
  return 0;
}

async function adminVerb(command: string, args: readonly string[], out: Out): Promise<number> {
  const { values, positionals } = parse(
    args,
    {
      socket: { type: 'string' },
      reason: { type: 'string' },
      all: { type: 'boolean', default: false },
      jti: { type: 'string' },
      agent: { type: 'string' },
    },
    true,
  );
  if (values.help) return usage(out);
  let socket = values.socket ?? process.env.AGENTGATE_SOCKET;
  if (socket === undefined || socket === '') socket = (await settingsFrom(values.config)).admin.socket;
  const operator = `${userInfo().username} (pid ${process.pid})`;
  const [agent, ...extra] = positionals;
  if (extra.length > 0) throw new CliError(`unexpected argument "${extra[0] ?? ''}"`, 2);
  let call: [method: 'GET' | 'POST', path: string, body?: Record<string, unknown>];
  switch (command) {
    case 'status':
      call = ['GET', '/status'];
      break;
    case 'agents':
      call = agent === undefined ? ['GET', '/agents'] : ['GET', `/agents/${encodeURIComponent(agent)}`];
      break;
    case 'kill':
      if (values.reason === undefined || values.reason.trim() === '') throw new CliError('kill needs --reason R (it is recorded with the kill)', 2);
      if (values.all === (agent !== undefined)) throw new CliError('kill needs AGENT, or --all for every agent', 2);
      call = values.all ? ['POST', '/kill', { reason: values.reason, operator }] : ['POST', `/agents/${encodeURIComponent(agent ?? '')}/kill`, { reason: values.reason, operator }];
      break;
    case 'revive':
      if (values.all === (agent !== undefined)) throw new CliError('revive needs AGENT, or --all for every agent', 2);
      call = values.all ? ['POST', '/revive', { operator }] : ['POST', `/agents/${encodeURIComponent(agent ?? '')}/revive`, { operator }];
      break;
    case 'revoke':
      if ((values.jti === undefined) === (values.agent === undefined)) throw new CliError('revoke needs --jti J or --agent A', 2);
      call = ['POST', '/tokens/revoke', values.jti === undefined ? { agent: values.agent, operator } : { jti: values.jti, operator }];
      break;
    case 'approvals':
      call = agent === undefined ? ['GET', '/approvals'] : ['GET', `/approvals/${encodeURIComponent(agent)}`];
      break;
    case 'approve':
      if (agent === undefined) throw new CliError('approve needs the approval ID', 2);
      call = ['POST', `/approvals/${encodeURIComponent(agent)}/approve`, values.reason === undefined ? { operator } : { operator, reason: values.reason }];
      break;
    case 'deny':
      if (agent === undefined) throw new CliError('deny needs the approval ID', 2);
      if (values.reason === undefined || values.reason.trim() === '') throw new CliError('deny needs --reason R (it is recorded with the decision)', 2);
      call = ['POST', `/approvals/${encodeURIComponent(agent)}/deny`, { operator, reason: values.reason }];
      break;
    default:
      call = ['POST', '/policies/reload', { operator }];
  }
  const response = await adminCall(socket, call[0], call[1], call[2]);
  if (response.status >= 400) {
    const problems = Array.isArray(response.body.problems) ? (response.body.problems as unknown[]).map(String) : [];
    if (values.json) out.stdout(JSON.stringify(response.body));
    else for (const p of problems) out.stderr(p);
    out.stderr(`agentgate: ${String(response.body.title ?? 'error')}: ${String(response.body.detail ?? `status ${response.status}`)}`);
    return 1;
  }
  out.stdout(values.json ? JSON.stringify(response.body) : humanize(command, response.body));
  return 0;
}

async function auditCommand(args: readonly string[], out: Out): Promise<number> {
  const [sub, ...rest] = args;
  const { values, positionals } = parse(
    rest,
    {
      agent: { type: 'string' },
      decision: { type: 'string' },
      since: { type: 'string' },
      lines: { type: 'string', short: 'n' },
      follow: { type: 'boolean', short: 'f', default: false },
      key: { type: 'string', multiple: true },
    },
    true,
  );
  if (values.help || sub === undefined) return usage(out);
  if (sub !== 'verify' && values.key !== undefined) throw new CliError('--key is an option of audit verify', 2);
  const files = sub === 'verify' ? [] : positionals.length > 0 ? positionals : [(await settingsFrom(values.config)).audit.file];
  const readLines = async (file: string): Promise<string[]> => {
    try {
      return await readAuditLines(file);
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      throw new CliError(code === 'ENOENT' ? `no audit file at ${file}` : `cannot read ${file}: ${error instanceof Error ? error.message : String(error)}`);
    }
  };
  if (sub === 'verify') {
    // Several files are one trail, oldest first: the chain is checked across their boundaries.
    let settings: Settings | null = null;
    try {
      settings = await settingsFrom(values.config);
    } catch (error) {
      // Files named explicitly can be checked without a config (an auditor's copy).
      if (positionals.length === 0 || values.config !== undefined) throw error;
    }
    try {
      return await auditVerify({
        files: positionals,
        settings,
        keyFiles: values.key ?? [],
        json: values.json === true,
        stdout: out.stdout,
        progress: process.stderr.isTTY === true && values.json !== true ? (text) => process.stderr.write(text) : null,
      });
    } catch (error) {
      if (error instanceof VerifyInputError) throw new CliError(error.message);
      throw error;
    }
  }
  if (sub !== 'tail') throw new CliError(`unknown audit command "${sub}" (audit verify | audit tail)`, 2);
  if (files.length > 1) throw new CliError('audit tail reads one file', 2);
  const file = files[0] ?? '';
  const decision = values.decision;
  if (decision !== undefined && decision !== 'allow' && decision !== 'deny') throw new CliError('--decision is allow or deny', 2);
  let since: number | undefined;
  if (values.since !== undefined) {
    const parsed = parseDuration(values.since);
    if (!parsed.ok) throw new CliError(`--since: ${parsed.error}`, 2);
    since = Date.now() - parsed.value;
  }
  const limit = values.lines === undefined ? 20 : Number(values.lines);
  if (!Number.isInteger(limit) || limit < 1) throw new CliError('-n needs a positive whole number', 2);
  const filter: TailFilter = { agent: values.agent, decision, since, limit };
  const show = (records: Array<Record<string, unknown>>): void => {
    for (const r of records) out.stdout(values.json ? JSON.stringify(r) : formatAuditRecord(r));
  };
  show(tailAudit(await readLines(file), filter));
  if (!values.follow) return 0;
  await followAudit(file, (lines) => show(tailAudit(lines, { ...filter, limit: Number.MAX_SAFE_INTEGER })));
  return 0;
}

/** Print lines appended to the file until SIGINT/SIGTERM; starts over when the file rotates. */
async function followAudit(file: string, onLines: (lines: string[]) => void): Promise<void> {
  let offset = (await stat(file)).size;
  let partial = '';
  let stopped = false;
  const stop = (): void => {
    stopped = true;
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  while (!stopped) {
    await new Promise((resolve) => setTimeout(resolve, 200));
    let size: number;
    try {
      size = (await stat(file)).size;
    } catch {
      continue; // between rotation's rename and the next write
    }
    if (size < offset) {
      offset = 0; // rotated: the new file starts over
      partial = '';
    }
    if (size === offset) continue;
    const handle = await open(file, 'r');
    try {
      const buffer = Buffer.alloc(size - offset);
      await handle.read(buffer, 0, buffer.length, offset);
      offset = size;
      const text = partial + buffer.toString('utf8');
      const lines = text.split('\n');
      partial = lines.pop() ?? '';
      onLines(lines.filter((l) => l !== ''));
    } finally {
      await handle.close();
    }
  }
}

function humanize(command: string, body: Record<string, unknown>): string {
  if (command === 'agents' && Array.isArray(body.agents)) return table(body.agents as Array<Record<string, unknown>>);
  if (command === 'agents') return table([body]);
  if (command === 'status') return Object.entries(body).map(([k, v]) => `${k.padEnd(15)} ${typeof v === 'object' ? JSON.stringify(v) : String(v)}`).join('\n');
  if (command === 'kill') return body.agent === undefined ? `killed ${String(body.killed)} agents (${String(body.aborted)} in-flight calls aborted)` : `killed ${String(body.agent)} (${String(body.aborted)} in-flight calls aborted)`;
  if (command === 'revive') return body.agent === undefined ? `revived ${String(body.revived)} agents` : body.revived === true ? `revived ${String(body.agent)}` : `${String(body.agent)} was neither killed nor suspended`;
  if (command === 'approvals' && Array.isArray(body.approvals)) return approvalTable(body.approvals as Array<Record<string, unknown>>);
  if (command === 'approvals') return approvalTable([body]);
  if (command === 'approve' || command === 'deny') return `${String(body.status)} ${String(body.id)}: ${String(body.agent)} ${String(body.method)} ${String(body.path)} (until ${String(body.expiresAt)})`;
  if (command === 'revoke') return body.revoked === 'jti' ? `revoked token ${String(body.jti)}` : `revoked every token of ${String(body.agent)} issued until now`;
  return `policies reloaded (version ${String(body.version)}, ${Array.isArray(body.files) ? body.files.length : 0} files)`;
}

function approvalTable(rows: ReadonlyArray<Record<string, unknown>>): string {
  if (rows.length === 0) return 'no approvals';
  const heads = ['ID', 'STATUS', 'AGENT', 'REQUEST', 'EXPIRES', 'DECIDED BY'];
  const cells = rows.map((r) => [String(r.id), String(r.status), String(r.agent), `${String(r.method)} /${String(r.backend)}${String(r.path)}`, String(r.expiresAt), r.decidedBy === null ? '-' : String(r.decidedBy)]);
  const widths = heads.map((h, i) => Math.max(h.length, ...cells.map((c) => (c[i] ?? '').length)));
  const line = (values: readonly string[]): string => values.map((v, i) => v.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
  return [line(heads), ...cells.map(line)].join('\n');
}

function table(rows: ReadonlyArray<Record<string, unknown>>): string {
  const columns = ['id', 'role', 'owner', 'breaker', 'violationsInWindow', 'killed', 'lastSeen', 'liveTokens'];
  const heads = ['AGENT', 'ROLE', 'OWNER', 'BREAKER', 'VIOLATIONS', 'KILLED', 'LAST SEEN', 'TOKENS'];
  const cell = (row: Record<string, unknown>, column: string): string => {
    const value = row[column];
    if (column === 'killed') return value === null || value === undefined ? '-' : `${String((value as Record<string, unknown>).at)} (${String((value as Record<string, unknown>).reason)})`;
    if (column === 'breaker' && typeof row.retryAfterSeconds === 'number') return `${String(value)} (${row.retryAfterSeconds}s)`;
    return value === null || value === undefined ? '-' : String(value);
  };
  const cells = rows.map((r) => columns.map((c) => cell(r, c)));
  const widths = heads.map((h, i) => Math.max(h.length, ...cells.map((r) => (r[i] ?? '').length)));
  const line = (values: readonly string[]): string => values.map((v, i) => v.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
  return [line(heads), ...cells.map(line)].join('\n');
}

function describeEndpoint(error: unknown): string {
  const e = error as { address?: unknown; port?: unknown };
  return typeof e.address === 'string' ? `${e.address}:${String(e.port)}` : 'the address';
}

function hostFor(address: string): string {
  return address.includes(':') ? `[${address}]` : address;
}

function usage(out: Out): number {
  out.stdout(USAGE);
  return 0;
}

function defaultOut(): Out {
  return {
    stdout: (text) => process.stdout.write(`${text}\n`),
    stderr: (text) => process.stderr.write(`${text}\n`),
  };
}
