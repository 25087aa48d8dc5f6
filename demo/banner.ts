// What `agentgate demo` prints once it is up: each demo agent gets a fresh client secret and then
// its session token from the broker's own /oauth/token (exactly what an agent does), followed by
// curl lines for an allowed, an out-of-scope and a cross-domain call, ready to paste (each line at
// most 100 columns but the secrets and tokens themselves), and how long each token lives.
import type { Gateway } from '../gateway/server.js';

export interface BannerOptions {
  readonly gateway: Gateway;
  readonly agentUrl: string;
  readonly metricsUrl: string;
  readonly backends: Readonly<Record<string, string>>;
}

const AGENTS = ['marketing-agent-03', 'support-agent-01', 'data-agent-01'] as const;

/** Lines of a shell command, continued with `\` so that none is wider than this. */
const WIDTH = 100;

export async function demoBanner(options: BannerOptions): Promise<string> {
  const { gateway, agentUrl } = options;
  const policy = gateway.policy();
  const env = (agent: string): string => agent.split('-')[0]?.toUpperCase() ?? agent;
  const secrets: Record<string, string> = {};
  const tokens: Record<string, { token: string; expiresIn: number }> = {};
  for (const agent of AGENTS) {
    if (!policy.agents.has(agent)) continue;
    // A new secret per run; the previous run's secrets stop working at once (overlap 0).
    const issued = await gateway.credentials.rotate(agent, 0);
    secrets[agent] = issued.clientSecret;
    tokens[agent] = await tokenFromBroker(agentUrl, agent, issued.clientSecret);
  }
  const curl = (comment: string, ...parts: string[]): string[] => [`  # ${comment}`, ...shellLines(parts)];
  const lines = [
    '',
    'AgentGate demo is up. Demo backends:',
    ...Object.entries(options.backends).map(([name, url]) => `  ${name.padEnd(8)} ${url}`),
    '',
    'Client secrets (made for this run, stored only as hashes; `npx agentgate credentials rotate AGENT` makes new ones):',
    ...Object.entries(secrets).map(([agent, secret]) => `  export ${env(agent)}_SECRET=${secret}`),
    '',
    'Each agent gets its session token from the broker (OAuth 2.0 client_credentials):',
    ...curl('support, narrowed to one scope', 'curl -s -u "support-agent-01:$SUPPORT_SECRET"', '-d grant_type=client_credentials', '-d scope=kb:articles.read', `${agentUrl}/oauth/token`),
    ...curl('marketing has session: single, so a new token ends the one below', 'curl -s -u "marketing-agent-03:$MARKETING_SECRET"', '-d grant_type=client_credentials', `${agentUrl}/oauth/token`),
    '',
    'Session tokens the broker just issued that way (paste these into your shell):',
    ...Object.entries(tokens).flatMap(([agent, t]) => [
      `  # ${agent}: lives ${lifetime(t.expiresIn)} (until ${new Date(Date.now() + t.expiresIn * 1000).toISOString().slice(0, 19)}Z)`,
      `  export ${env(agent)}_TOKEN=${t.token}`,
    ]),
    '',
    'A token past its lifetime is refused with 401 token_invalid, "the access token has expired".',
    'A fresh one, from a second shell in this folder (the gateway\'s own signing key):',
    ...Object.keys(tokens).map((agent) => `  export ${env(agent)}_TOKEN=$(npx agentgate token --agent ${agent})`),
    '',
    'Try:',
    ...curl('allowed: marketing reads CRM contacts', 'curl -i -H "Authorization: Bearer $MARKETING_TOKEN"', `${agentUrl}/crm/contacts/1`),
    ...curl('out of scope (403 out_of_scope): marketing has no export grant', 'curl -i -H "Authorization: Bearer $MARKETING_TOKEN"', `${agentUrl}/crm/export`),
    ...curl('cross-domain (403 cross_domain): a marketing token on the ticketing system', 'curl -i -H "Authorization: Bearer $MARKETING_TOKEN"', `${agentUrl}/tickets/tickets`),
    ...curl('read-only (403 read_only): marketing may not change a contact', 'curl -i -X PATCH -H "Authorization: Bearer $MARKETING_TOKEN"', '-H "content-type: application/json"', `-d '{"phone":"+1"}'`, `${agentUrl}/crm/contacts/1`),
    ...curl('support replies only with a standard script (201, then 403 out_of_scope)', 'curl -i -X POST -H "Authorization: Bearer $SUPPORT_TOKEN"', '-H "content-type: application/json"', `-d '{"script":"greeting"}'`, `${agentUrl}/tickets/tickets/1/replies`),
    ...shellLines(['curl -i -X POST -H "Authorization: Bearer $SUPPORT_TOKEN"', '-H "content-type: application/json"', `-d '{"script":"refund-now"}'`, `${agentUrl}/tickets/tickets/1/replies`]),
    ...curl('data reaches only the BI report pool, and only aggregates', 'curl -i -X POST -H "Authorization: Bearer $DATA_TOKEN"', '-H "content-type: application/json"', `-d '{"sql":"SELECT region, SUM(amount) FROM sales GROUP BY region"}'`, `${agentUrl}/bi/query`),
    ...curl('no token (401 token_missing)', `curl -i ${agentUrl}/crm/contacts`),
    ...curl('introspect, then revoke: the next call with the token is 401', 'curl -s -u "data-agent-01:$DATA_SECRET" -d "token=$DATA_TOKEN"', `${agentUrl}/oauth/introspect`),
    ...shellLines(['curl -s -u "data-agent-01:$DATA_SECRET" -d "token=$DATA_TOKEN"', `${agentUrl}/oauth/revoke`]),
    ...shellLines(['curl -i -H "Authorization: Bearer $DATA_TOKEN"', `${agentUrl}/bi/reports`]),
    ...curl('the breaker: 5 violations within a minute suspend the agent (403 agent_suspended, Retry-After)', 'for i in 1 2 3 4 5 6; do', 'curl -s -H "Authorization: Bearer $MARKETING_TOKEN"', `${agentUrl}/crm/export | grep -o 'problem:[a-z_]*'; done`),
    '  npx agentgate agents; npx agentgate revive marketing-agent-03',
    '',
    `Metrics: ${options.metricsUrl}/metrics   Audit: ${gateway.settings.audit.file}`,
    'Stop with Ctrl-C.',
  ];
  return lines.join('\n');
}

/** One shell command from its parts: on one line when it fits, else continued with `\`. */
export function shellLines(parts: readonly string[]): string[] {
  const single = `  ${parts.join(' ')}`;
  if (single.length <= WIDTH) return [single];
  const lines: string[] = [];
  let current = `  ${parts[0] ?? ''}`;
  for (const part of parts.slice(1)) {
    if (current.length + 1 + part.length + 2 <= WIDTH) current += ` ${part}`;
    else {
      lines.push(`${current} \\`);
      current = `    ${part}`;
    }
  }
  lines.push(current);
  return lines;
}

/** 600 -> "10m", 5400 -> "1h30m", 45 -> "45s". */
function lifetime(seconds: number): string {
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  return `${h > 0 ? `${h}h` : ''}${m > 0 ? `${m}m` : ''}${s > 0 || seconds === 0 ? `${s}s` : ''}`;
}

/** POST /oauth/token with client_secret_basic, as any agent would. */
async function tokenFromBroker(agentUrl: string, agent: string, secret: string): Promise<{ token: string; expiresIn: number }> {
  const response = await fetch(`${agentUrl}/oauth/token`, {
    method: 'POST',
    headers: {
      authorization: `Basic ${Buffer.from(`${encodeURIComponent(agent)}:${encodeURIComponent(secret)}`).toString('base64')}`,
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: 'grant_type=client_credentials',
    signal: AbortSignal.timeout(5000),
  });
  const body = (await response.json()) as { access_token?: unknown; expires_in?: unknown; error?: unknown; error_description?: unknown };
  if (response.status !== 200 || typeof body.access_token !== 'string' || typeof body.expires_in !== 'number') {
    throw new Error(`the broker refused a demo token for ${agent}: ${String(body.error)} ${String(body.error_description)}`);
  }
  return { token: body.access_token, expiresIn: body.expires_in };
}
