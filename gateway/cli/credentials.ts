// `agentgate credentials` and `keys`: client secrets and signing keys. Both act through the running
// gateway's admin socket; only when no gateway answers do they load the store driver or the key
// folder's code (jose) and change the state file or key folder themselves.
import { systemClock } from '../clock.js';
import { parseDuration } from '../policy/units.js';
import { adminCall } from '../admin/client.js';
import { createCredentialManager, DEFAULT_OVERLAP_MS, type CredentialView, type IssuedSecret } from '../broker/credentials.js';
import { operatorName, readPolicy, settingsFrom, socketOf, textTable, throughGateway } from './common.js';
import { CliError, parse, type Out } from './verb.js';

export async function credentials(args: readonly string[], out: Out): Promise<number> {
  const { values, positionals } = parse(args, { socket: { type: 'string' }, overlap: { type: 'string' }, id: { type: 'string' } }, true);
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
  const operator = operatorName();
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
    const policy = await readPolicy(settings, systemClock);
    // With state.driver redis the change goes to the shared Redis, and every instance hears of it.
    const { openStore } = await import('../state/index.js');
    const store = await openStore(settings.state, systemClock, { tool: true });
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
    out.stdout(textTable(heads, cells));
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

export async function keysVerb(args: readonly string[], out: Out): Promise<number> {
  const { values, positionals } = parse(args, { socket: { type: 'string' } }, true);
  if (positionals.length !== 1 || positionals[0] !== 'rotate') throw new CliError('keys needs: rotate', 2);
  const socket = await socketOf(values);
  const body: Record<string, unknown> = await throughGateway<Record<string, unknown>>(
    socket,
    async () => {
      const response = await adminCall(socket, 'POST', '/keys/rotate', { operator: operatorName() });
      if (response.status >= 400) throw new CliError(`${String(response.body.title ?? 'error')}: ${String(response.body.detail ?? `status ${response.status}`)}`);
      return { ...response.body, via: 'gateway' };
    },
    async () => {
      const settings = await settingsFrom(values.config);
      const { openKeyStore } = await import('../tokens/keys.js');
      const keys = await openKeyStore({ dir: settings.issuer.keys, alg: settings.issuer.alg, clock: systemClock });
      return { rotated: true, kid: await keys.rotate(), via: 'key folder' };
    },
  );
  out.stdout(values.json ? JSON.stringify(body) : `new signing key ${String(body.kid)} (${String(body.via)}); older keys stay in the JWKS until their tokens expire`);
  return 0;
}
