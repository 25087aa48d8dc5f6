// The operator verbs: status, agents, kill, revive, revoke, reload, approvals, approve, deny, state. Each
// is one call to the running gateway's admin socket (HTTP over a Unix socket, peer-checked), printed
// as a table or line, or as the JSON body with --json.
import { adminCall } from '../admin/client.js';
import { operatorName, socketOf, textTable } from './common.js';
import { CliError, parse, type Out } from './verb.js';

export async function adminVerb(command: string, args: readonly string[], out: Out): Promise<number> {
  const { values, positionals } = parse(
    args,
    {
      socket: { type: 'string' },
      reason: { type: 'string' },
      all: { type: 'boolean', default: false },
      jti: { type: 'string' },
      token: { type: 'string' },
      agent: { type: 'string' },
    },
    true,
  );
  const socket = await socketOf(values);
  const operator = operatorName();
  const [agent, ...extra] = positionals;
  if (extra.length > 0) throw new CliError(`unexpected argument "${extra[0] ?? ''}"`, 2);
  if ((command === 'status' || command === 'reload') && agent !== undefined) throw new CliError(`unexpected argument "${agent}" (${command} takes none)`, 2);
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
      if ([values.jti, values.token, values.agent].filter((v) => v !== undefined).length !== 1) throw new CliError('revoke needs one of --token T, --jti J or --agent A', 2);
      if (values.token !== undefined) {
        const claims = tokenClaims(values.token);
        call = ['POST', '/tokens/revoke', { jti: claims.jti, ...(claims.exp === undefined ? {} : { exp: claims.exp }), operator }];
      } else call = ['POST', '/tokens/revoke', values.jti === undefined ? { agent: values.agent, operator } : { jti: values.jti, operator }];
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
    case 'state':
      if (agent !== 'reseed') throw new CliError('state needs a subcommand: state reseed', 2);
      call = ['POST', '/state/reseed', { operator }];
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

function humanize(command: string, body: Record<string, unknown>): string {
  if (command === 'agents' && Array.isArray(body.agents)) return table(body.agents as Array<Record<string, unknown>>);
  if (command === 'agents') return table([body]);
  if (command === 'status') return Object.entries(body).map(([k, v]) => `${k.padEnd(15)} ${typeof v === 'object' ? JSON.stringify(v) : String(v)}`).join('\n');
  if (command === 'kill') return (body.agent === undefined ? `killed ${String(body.killed)} agents (${String(body.aborted)} in-flight calls aborted)` : `killed ${String(body.agent)} (${String(body.aborted)} in-flight calls aborted)`) + sharingLine(body);
  if (command === 'revive') return body.agent === undefined ? `revived ${String(body.revived)} agents` : body.revived === true ? `revived ${String(body.agent)}` : `${String(body.agent)} was neither killed nor suspended`;
  if (command === 'approvals' && Array.isArray(body.approvals)) return approvalTable(body.approvals as Array<Record<string, unknown>>);
  if (command === 'approvals') return approvalTable([body]);
  if (command === 'approve' || command === 'deny') return `${String(body.status)} ${String(body.id)}: ${String(body.agent)} ${String(body.method)} ${String(body.path)} (until ${String(body.expiresAt)})`;
  if (command === 'revoke') return (body.revoked === 'jti' ? `revoked token ${String(body.jti)}${typeof body.agent === 'string' ? ` of ${body.agent}` : ''}` : `revoked every token of ${String(body.agent)} issued until now`) + sharingLine(body);
  if (command === 'state') return body.reseeded === true ? `Redis reseeded: ${String(body.kills)} kills, ${String(body.revocations)} revocations, ${String(body.breakers)} open breakers written back (union)` : `not reseeded: ${String(body.detail)}`;
  return `policies reloaded (version ${String(body.version)}, ${Array.isArray(body.files) ? body.files.length : 0} files)`;
}

/** A kill or revocation Redis could not take: say plainly that only this instance has it yet. */
function sharingLine(body: Record<string, unknown>): string {
  if (body.shared !== false) return '';
  return `\nAPPLIED HERE, NOT YET SHARED: ${typeof body.note === 'string' ? body.note : 'Redis is unreachable; it is pushed when Redis answers'}`;
}

function approvalTable(rows: ReadonlyArray<Record<string, unknown>>): string {
  if (rows.length === 0) return 'no approvals';
  const heads = ['ID', 'STATUS', 'AGENT', 'REQUEST', 'EXPIRES', 'DECIDED BY'];
  const cells = rows.map((r) => [String(r.id), String(r.status), String(r.agent), `${String(r.method)} /${String(r.backend)}${String(r.path)}`, String(r.expiresAt), r.decidedBy === null ? '-' : String(r.decidedBy)]);
  return textTable(heads, cells);
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
  return textTable(heads, cells);
}


/**
 * jti and exp of a token given to `revoke --token`, read without verifying it: revoking the jti of
 * a forged token does no harm, and the gateway refuses a jti it cannot have issued.
 */
function tokenClaims(token: string): { jti: string; exp: number | undefined } {
  const payload = token.split('.')[1];
  let claims: unknown;
  try {
    claims = JSON.parse(Buffer.from(payload ?? '', 'base64url').toString('utf8'));
  } catch {
    claims = null;
  }
  const jti = (claims as { jti?: unknown } | null)?.jti;
  const exp = (claims as { exp?: unknown } | null)?.exp;
  if (token.split('.').length !== 3 || typeof jti !== 'string' || jti === '') throw new CliError('--token: not an access token (a JWT with a jti claim)', 2);
  return { jti, exp: typeof exp === 'number' && Number.isSafeInteger(exp) ? exp : undefined };
}
