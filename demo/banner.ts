// What `agentgate demo` prints once it is up: one fresh token per demo agent and curl lines for an
// allowed, an out-of-scope and a cross-domain call, ready to paste.
import type { Gateway } from '../gateway/server.js';
import { issueAgentToken, planAgentToken } from '../gateway/broker/issue.js';
import { systemClock } from '../gateway/context.js';

export interface BannerOptions {
  readonly gateway: Gateway;
  readonly agentUrl: string;
  readonly metricsUrl: string;
  readonly backends: Readonly<Record<string, string>>;
}

const AGENTS = ['marketing-agent-03', 'support-agent-01', 'data-agent-01'] as const;

export async function demoBanner(options: BannerOptions): Promise<string> {
  const { gateway, agentUrl } = options;
  const policy = gateway.policy();
  const tokens: Record<string, string> = {};
  for (const agent of AGENTS) {
    if (!policy.agents.has(agent)) continue;
    const plan = planAgentToken(policy, agent, {});
    const minted = await issueAgentToken(gateway.keys, gateway.settings.issuer.url, plan, systemClock);
    gateway.metrics.tokenIssued(plan.role, 'cli');
    tokens[agent] = minted.token;
  }
  const env = (agent: string): string => agent.split('-')[0]?.toUpperCase() ?? agent;
  const lines = [
    '',
    'AgentGate demo is up. Demo backends:',
    ...Object.entries(options.backends).map(([name, url]) => `  ${name.padEnd(8)} ${url}`),
    '',
    'Session tokens (fresh for this run; paste these into your shell):',
    ...Object.entries(tokens).map(([agent, token]) => `  export ${env(agent)}_TOKEN=${token}`),
    '',
    'Try:',
    '  # allowed: marketing reads CRM contacts',
    `  curl -i -H "Authorization: Bearer $MARKETING_TOKEN" ${agentUrl}/crm/contacts/1`,
    '  # out of scope (403 out_of_scope): marketing has no export grant',
    `  curl -i -H "Authorization: Bearer $MARKETING_TOKEN" ${agentUrl}/crm/export`,
    '  # cross-domain (403 cross_domain): a marketing token on the ticketing system',
    `  curl -i -H "Authorization: Bearer $MARKETING_TOKEN" ${agentUrl}/tickets/tickets`,
    '  # read-only (403 read_only): marketing may not change a contact',
    `  curl -i -X PATCH -H "Authorization: Bearer $MARKETING_TOKEN" -H "content-type: application/json" -d '{"phone":"+1"}' ${agentUrl}/crm/contacts/1`,
    '  # support replies only with a standard script',
    `  curl -i -X POST -H "Authorization: Bearer $SUPPORT_TOKEN" -H "content-type: application/json" -d '{"script":"greeting"}' ${agentUrl}/tickets/tickets/1/replies`,
    `  curl -i -X POST -H "Authorization: Bearer $SUPPORT_TOKEN" -H "content-type: application/json" -d '{"script":"refund-now"}' ${agentUrl}/tickets/tickets/1/replies`,
    '  # data reaches only the BI report pool',
    `  curl -i -X POST -H "Authorization: Bearer $DATA_TOKEN" -H "content-type: application/json" -d '{"sql":"SELECT region, SUM(amount) FROM sales GROUP BY region"}' ${agentUrl}/bi/query`,
    '  # no token (401 token_missing)',
    `  curl -i ${agentUrl}/crm/contacts`,
    '',
    `Metrics: ${options.metricsUrl}/metrics   Audit: ${gateway.settings.audit.file}`,
    'Stop with Ctrl-C.',
  ];
  return lines.join('\n');
}
