// `agentgate explain`: what a token may do with one request, and why. Runs the gateway's checks
// (normalize .. authorize) on a synthetic request; reads files (or the shared Redis) only, spends
// nothing and needs no running gateway.
import { GatewayError } from '../errors.js';
import { systemClock } from '../clock.js';
import { createContext } from '../context.js';
import { assertChecks, runChecks } from '../pipeline.js';
import { viewOf } from '../state/view.js';
import type { PolicySnapshot } from '../policy/types.js';
import { createAdmit } from '../stages/admit.js';
import { createAuthenticate } from '../stages/authenticate.js';
import { createAuthorize } from '../stages/authorize.js';
import { createNormalize } from '../stages/normalize.js';
import { openStore } from '../state/index.js';
import { createLogger } from '../telemetry/log.js';
import { openKeyStore } from '../tokens/keys.js';
import { createTokenVerifier } from '../tokens/verify.js';
import { issuerOf, readPolicy, settingsFrom, socketOf } from './common.js';
import { CliError, parse, type Out } from './verb.js';

export async function explain(args: readonly string[], out: Out): Promise<number> {
  const { values, positionals } = parse(args, { token: { type: 'string' }, socket: { type: 'string' } }, true);
  if (values.token === undefined) throw new CliError('explain needs --token T', 2);
  const [method, path, ...extra] = positionals;
  if (method === undefined || path === undefined || extra.length > 0) throw new CliError('explain needs METHOD PATH, e.g. explain --token T GET /crm/contacts', 2);
  const settings = await settingsFrom(values.config);
  const clock = systemClock;
  const policy = await readPolicy(settings, clock);
  const keys = await openKeyStore({ dir: settings.issuer.keys, alg: settings.issuer.alg, clock });
  // Read-only use of the gateway's state (file, or the shared Redis): kills, open breakers, spent
  // tokens count. The checks get only a view and nothing is ever committed: explain spends no use,
  // ends no session, requests no approval and never rewrites the state file.
  const store = await openStore(settings.state, clock, { readOnly: true });
  const state = viewOf(store);
  const issuer = await issuerOf(settings, await socketOf({ socket: values.socket, config: values.config }));
  const verifier = createTokenVerifier({ keys, issuer, clock });
  const checks = [
    createNormalize({ maxBodyBytes: settings.limits.maxBodyBytes }),
    createAuthenticate({ verifier, state }),
    createAdmit({ state, clock }),
    // No state for approvals: explain says a route needs one, and never files a request.
    createAuthorize({ maxBodyBytes: settings.limits.maxBodyBytes, trustedProxies: settings.trustedProxies }),
  ];
  assertChecks(checks);
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
    rules: grantedRules(policy, ctx.grant),
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
    for (const rule of result.rules) lines.push(`  ${rule}`);
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


/** The request rules the granted route applied (query) or will apply (json), with their source. */
function grantedRules(policy: PolicySnapshot, grant: { readonly scope: string; readonly route: string } | null): string[] {
  if (grant === null) return [];
  const colon = grant.scope.indexOf(':');
  const route = policy.backends.get(grant.scope.slice(0, colon))?.scopes.get(grant.scope.slice(colon + 1))?.routes.find((r) => r.template === grant.route);
  if (route === undefined) return [];
  const out: string[] = [];
  if (route.queryRules !== null) {
    for (const rule of route.queryRules.fields.values()) out.push(`query:  ${rule.name}: ${rule.text}${rule.required ? ', required' : ''} (${rule.source}) - passed`);
    out.push(`query:  other parameters ${route.queryRules.additional ? 'allowed (additionalQuery: true)' : 'refused'}`);
  }
  if (route.json !== null) {
    for (const rule of route.json.fields.values()) out.push(`json:   ${rule.name}: ${rule.text}${rule.required ? ', required' : ''} (${rule.source}) - checked on the live request`);
  }
  return out;
}

/** How `workers` reads in the check line: `1 worker process`, `4 worker processes (auto)`. */
