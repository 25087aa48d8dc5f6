// `agentgate token`, `credentials` and `keys`: the broker's side of the CLI. Token minting uses the
// local signing key; credentials and keys act through the running gateway's admin socket, or on the
// state file and key folder when no gateway is running.
import { systemClock } from '../clock.js';
import { parseDuration } from '../policy/units.js';
import { openStore } from '../state/index.js';
import { adminCall } from '../admin/client.js';
import { openKeyStore } from '../tokens/keys.js';
import { issueAgentToken, planAgentToken } from '../broker/issue.js';
import { createCredentialManager, DEFAULT_OVERLAP_MS, type CredentialView, type IssuedSecret } from '../broker/credentials.js';
import { CliError, issuerOf, operatorName, parse, readPolicy, settingsFrom, socketOf, textTable, throughGateway, type Out, type Verb } from './common.js';

export const tokenVerbs: readonly Verb[] = [
  {
    name: 'token',
    section: 'gateway',
    usage: [['token --agent ID [--scope S]... [--ttl D]', 'mint a session token with the local signing key; prints only the token']],
    options: [
      ['--agent ID', 'the agent (from the policies) the token is for'],
      ['--scope S', 'narrow the token to these scopes (repeat, or space/comma separated); default: every scope of the role'],
      ['--ttl D', "lifetime, e.g. 5m or 1h; at most the role's token.ttl (longer is refused); default: the role's token.ttl"],
    ],
    takes: ['json', 'socket'],
    notes: 'The token names the issuer of the running gateway (asked over its admin socket), else issuer.url, else the configured listen address.',
    run: token,
  },
  {
    name: 'credentials',
    section: 'gateway',
    usage: [
      ['credentials issue AGENT', 'make a client secret (client_secret_basic); printed once, stored hashed'],
      ['credentials rotate AGENT [--overlap D]', 'a new secret; the old ones keep working for D (default 1h), then stop'],
      ['credentials list [AGENT]', 'client secrets and pinned keys, with their status'],
      ['credentials revoke AGENT [--id ID]', "remove one secret, or all of the agent's secrets"],
    ],
    options: [
      ['--overlap D', '(rotate) how long the previous secrets keep working'],
      ['--id ID', '(revoke) the one secret to remove'],
    ],
    takes: ['json', 'socket'],
    notes: 'Acts through the running gateway\'s admin socket, or on the state file when no gateway is running.',
    run: credentials,
  },
  {
    name: 'keys',
    section: 'gateway',
    usage: [['keys rotate', 'publish a new signing key and sign with it now (old keys stay in the JWKS)']],
    takes: ['json', 'socket'],
    notes: 'Acts through the running gateway\'s admin socket, or on the key folder when no gateway is running.',
    run: keysVerb,
  },
];

async function token(args: readonly string[], out: Out): Promise<number> {
  const { values } = parse(args, {
    agent: { type: 'string' },
    scope: { type: 'string', multiple: true },
    ttl: { type: 'string' },
    socket: { type: 'string' },
  });
  if (values.agent === undefined) throw new CliError('token needs --agent ID', 2);
  let ttlSeconds: number | undefined;
  if (values.ttl !== undefined) {
    const parsed = parseDuration(values.ttl);
    if (!parsed.ok) throw new CliError(`--ttl: ${parsed.error}`, 2);
    ttlSeconds = Math.floor(parsed.value / 1000);
  }
  const settings = await settingsFrom(values.config);
  const policy = await readPolicy(settings, systemClock);
  const keys = await openKeyStore({ dir: settings.issuer.keys, alg: settings.issuer.alg, clock: systemClock });
  const scopes = values.scope?.flatMap((s) => s.split(/[\s,]+/)).filter((s) => s !== '');
  // Asking for longer than the role allows is refused, not silently shortened.
  const role = policy.roles.get(policy.agents.get(values.agent)?.role ?? '');
  if (ttlSeconds !== undefined && role !== undefined && ttlSeconds > role.token.ttlSeconds) {
    throw new CliError(`--ttl ${values.ttl ?? ''} is longer than role ${role.name} allows (token.ttl ${formatSeconds(role.token.ttlSeconds)}); ask for ${formatSeconds(role.token.ttlSeconds)} or less`, 2);
  }
  const plan = planAgentToken(policy, values.agent, { scopes, ttlSeconds });
  const issuer = await issuerOf(settings, await socketOf({ socket: values.socket, config: values.config }));
  const minted = await issueAgentToken(keys, issuer, plan, systemClock);
  if (values.json) {
    out.stdout(JSON.stringify({ access_token: minted.token, token_type: 'Bearer', expires_in: minted.expiresAt - minted.issuedAt, scope: plan.scopes.join(' '), jti: minted.jti }));
  } else {
    out.stdout(minted.token);
  }
  return 0;
}

async function credentials(args: readonly string[], out: Out): Promise<number> {
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

async function keysVerb(args: readonly string[], out: Out): Promise<number> {
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
      const keys = await openKeyStore({ dir: settings.issuer.keys, alg: settings.issuer.alg, clock: systemClock });
      return { rotated: true, kid: await keys.rotate(), via: 'key folder' };
    },
  );
  out.stdout(values.json ? JSON.stringify(body) : `new signing key ${String(body.kid)} (${String(body.via)}); older keys stay in the JWKS until their tokens expire`);
  return 0;
}

/** 600 -> "10m", 5400 -> "1h30m", 45 -> "45s". */
export function formatSeconds(seconds: number): string {
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const sec = seconds % 60;
  return `${h > 0 ? `${h}h` : ''}${m > 0 ? `${m}m` : ''}${sec > 0 || seconds === 0 ? `${sec}s` : ''}`;
}
