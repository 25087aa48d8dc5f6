// `agentgate token`: mint a session token with the local signing key (the broker's side of the CLI;
// `credentials` and `keys` are in credentials.ts).
import { systemClock } from '../clock.js';
import { parseDuration } from '../policy/units.js';
import { openKeyStore } from '../tokens/keys.js';
import { issueAgentToken, planAgentToken } from '../broker/issue.js';
import { issuerOf, readPolicy, settingsFrom, socketOf } from './common.js';
import { CliError, parse, type Out } from './verb.js';

export async function token(args: readonly string[], out: Out): Promise<number> {
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

/** 600 -> "10m", 5400 -> "1h30m", 45 -> "45s". */
export function formatSeconds(seconds: number): string {
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const sec = seconds % 60;
  return `${h > 0 ? `${h}h` : ''}${m > 0 ? `${m}m` : ''}${sec > 0 || seconds === 0 ? `${sec}s` : ''}`;
}
