// The access review: the permission matrix (agent x role x grant x backend route) with, from the
// audit trail, every grant's last use, calls and refusals; what it flags (unused grants with the
// policy edit that removes them, agents never seen, expired agents, old credentials, roles
// without a breaker, tokens outliving their role's TTL); and the JSON, CSV and self-contained HTML
// renderings. Audit files are streamed line by line: memory stays constant whatever their size.
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import type { PolicySnapshot } from '../policy/types.js';

export interface GrantUse {
  readonly agent: string;
  readonly role: string;
  readonly grant: string;
  readonly backend: string;
  readonly routes: readonly string[];
  calls: number;
  refusals: number;
  lastUsed: string | null;
}

export interface ReviewFinding {
  readonly kind: 'unused_grant' | 'agent_never_seen' | 'agent_expired' | 'credential_overdue' | 'role_without_breaker' | 'token_outlives_ttl';
  readonly agent: string | null;
  readonly role: string | null;
  readonly grant: string | null;
  readonly detail: string;
  /** The policy edit that removes the finding, when one does. */
  readonly edit: string | null;
}

export interface Review {
  readonly since: string;
  readonly until: string;
  readonly files: readonly string[];
  readonly linesRead: number;
  readonly matrix: readonly GrantUse[];
  readonly findings: readonly ReviewFinding[];
  /** Per agent: violations per UTC day (YYYY-MM-DD -> count). */
  readonly violations: Readonly<Record<string, Readonly<Record<string, number>>>>;
}

export interface CredentialAge {
  readonly agent: string;
  readonly id: string;
  readonly createdAt: number;
}

const VIOLATION_REASONS = new Set(['target_invalid', 'body_invalid', 'cross_domain', 'out_of_scope', 'unknown_route', 'read_only', 'not_aggregate', 'network_denied']);

/** Read the audit files (oldest first) and build the review of `policy` for [sinceMs, nowMs]. */
export async function buildReview(options: {
  readonly policy: PolicySnapshot;
  readonly files: readonly string[];
  readonly sinceMs: number;
  readonly nowMs: number;
  readonly credentials: readonly CredentialAge[];
}): Promise<Review> {
  const { policy, sinceMs, nowMs } = options;
  // agent -> backend -> route template -> the grants of its role that hold that route.
  const matrix: GrantUse[] = [];
  const byAgentRoute = new Map<string, GrantUse[]>();
  for (const [id, agent] of policy.agents) {
    const role = policy.roles.get(agent.role);
    if (role === undefined) continue;
    for (const grant of [...role.grants].sort()) {
      const colon = grant.indexOf(':');
      const backendName = grant.slice(0, colon);
      const scope = policy.backends.get(backendName)?.scopes.get(grant.slice(colon + 1));
      const routes = scope?.routes.map((r) => r.template) ?? [];
      const use: GrantUse = { agent: id, role: role.name, grant, backend: backendName, routes, calls: 0, refusals: 0, lastUsed: null };
      matrix.push(use);
      for (const route of routes) {
        const key = `${id}\u0000${backendName}\u0000${route}`;
        const list = byAgentRoute.get(key) ?? [];
        list.push(use);
        byAgentRoute.set(key, list);
      }
    }
  }
  const seen = new Set<string>();
  const violations: Record<string, Record<string, number>> = {};
  // Per agent, the longest lifetime of a token issued in the period that is still live now.
  const liveLifetime = new Map<string, { role: string; seconds: number }>();
  let linesRead = 0;
  for (const file of options.files) {
    const lines = createInterface({ input: createReadStream(file, { encoding: 'utf8' }), crlfDelay: Infinity });
    for await (const line of lines) {
      linesRead++;
      // Cheap prefilter: only proxy and broker lines matter, and only inside the period.
      const timeAt = line.indexOf('"time":"');
      if (timeAt === -1) continue;
      const time = Date.parse(line.slice(timeAt + 8, timeAt + 32));
      if (!(time >= sinceMs && time <= nowMs)) continue;
      let record: Record<string, unknown>;
      try {
        record = JSON.parse(line) as Record<string, unknown>;
      } catch {
        continue;
      }
      const agent = typeof record.agent === 'string' ? record.agent : null;
      if (agent === null) continue;
      if (record.kind === 'broker') {
        if (typeof record.expiresAt === 'number' && typeof record.role === 'string' && record.expiresAt * 1000 > nowMs) {
          const seconds = Math.round(record.expiresAt - time / 1000);
          if (seconds > (liveLifetime.get(agent)?.seconds ?? 0)) liveLifetime.set(agent, { role: record.role, seconds });
        }
        continue;
      }
      if (record.kind !== 'proxy') continue;
      seen.add(agent);
      const reason = typeof record.reason === 'string' ? record.reason : '';
      if (VIOLATION_REASONS.has(reason)) {
        const day = new Date(time).toISOString().slice(0, 10);
        const perDay = (violations[agent] ??= {});
        perDay[day] = (perDay[day] ?? 0) + 1;
      }
      if (typeof record.route !== 'string' || typeof record.backend !== 'string') continue;
      const uses = byAgentRoute.get(`${agent}\u0000${record.backend}\u0000${record.route}`);
      if (uses === undefined) continue;
      const allowed = record.decision === 'allow';
      const iso = new Date(time).toISOString();
      for (const use of uses) {
        if (allowed) {
          use.calls++;
          if (use.lastUsed === null || use.lastUsed < iso) use.lastUsed = iso;
        } else use.refusals++;
      }
    }
  }
  const findings: ReviewFinding[] = [];
  // Unused grants: per role, the grants no agent of the role used; the edit removes them.
  for (const role of policy.roles.values()) {
    const uses = matrix.filter((u) => u.role === role.name);
    if (uses.length === 0) continue;
    const unused = [...role.grants].filter((g) => uses.filter((u) => u.grant === g).every((u) => u.calls === 0)).sort();
    for (const grant of unused) {
      const keep = [...role.grants].filter((g) => !unused.includes(g));
      findings.push({
        kind: 'unused_grant',
        agent: null,
        role: role.name,
        grant,
        detail: `no agent of role ${role.name} (${uses.filter((u) => u.grant === grant).map((u) => u.agent).join(', ')}) used ${grant} in the period: privilege creep`,
        edit: `roles.${role.name}.grants: remove "${grant}" (grants: [${keep.join(', ')}])`,
      });
    }
  }
  for (const [id, agent] of policy.agents) {
    if (!seen.has(id)) findings.push({ kind: 'agent_never_seen', agent: id, role: agent.role, grant: null, detail: `${id} (owner ${agent.owner}) made no call in the period`, edit: `agents.${id}: remove the agent if it is no longer used` });
    if (agent.expiresAt !== null && agent.expiresAt <= nowMs) {
      findings.push({ kind: 'agent_expired', agent: id, role: agent.role, grant: null, detail: `${id} expired at ${new Date(agent.expiresAt).toISOString()} and is refused`, edit: `agents.${id}: remove it, or extend agents.${id}.expires` });
    }
  }
  for (const credential of options.credentials) {
    const agent = policy.agents.get(credential.agent);
    const rotate = agent === undefined ? null : (policy.roles.get(agent.role)?.token.rotateSeconds ?? null);
    if (rotate === null || nowMs - credential.createdAt <= rotate * 1000) continue;
    findings.push({
      kind: 'credential_overdue',
      agent: credential.agent,
      role: agent?.role ?? null,
      grant: null,
      detail: `client secret ${credential.id} is ${Math.floor((nowMs - credential.createdAt) / 86_400_000)} d old; role ${agent?.role ?? ''} rotates every ${Math.round(rotate / 3600)} h`,
      edit: `agentgate credentials rotate ${credential.agent}`,
    });
  }
  for (const role of policy.roles.values()) {
    if (role.breaker === null) findings.push({ kind: 'role_without_breaker', agent: null, role: role.name, grant: null, detail: `role ${role.name} has no breaker: its agents are never suspended for calls outside their grant`, edit: `roles.${role.name}.breaker: remove "off" (inherit defaults.breaker) or set { violations, window, cooldown }` });
  }
  for (const [agent, live] of liveLifetime) {
    const known = policy.agents.get(agent);
    const ttl = known === undefined ? null : (policy.roles.get(known.role)?.token.ttlSeconds ?? null);
    if (ttl === null || live.seconds <= ttl + 1) continue;
    findings.push({ kind: 'token_outlives_ttl', agent, role: live.role, grant: null, detail: `${agent} holds a live token issued for ${live.seconds} s; its role's TTL is now ${ttl} s`, edit: `agentgate revoke --agent ${agent}` });
  }
  return {
    since: new Date(sinceMs).toISOString(),
    until: new Date(nowMs).toISOString(),
    files: options.files,
    linesRead,
    matrix,
    findings,
    violations,
  };
}

/** One row per (agent, grant): the matrix as CSV (RFC 4180), routes joined by `; `. */
export function reviewCsv(review: Review): string {
  const cell = (v: string | number | null): string => {
    const text = v === null ? '' : String(v);
    return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
  };
  const unused = new Set(review.findings.filter((f) => f.kind === 'unused_grant').map((f) => `${f.role ?? ''}\u0000${f.grant ?? ''}`));
  const rows = [['agent', 'role', 'grant', 'backend', 'routes', 'calls', 'refusals', 'last_used', 'unused'].join(',')];
  for (const u of review.matrix) rows.push([u.agent, u.role, u.grant, u.backend, u.routes.join('; '), u.calls, u.refusals, u.lastUsed, unused.has(`${u.role}\u0000${u.grant}`) ? 'yes' : 'no'].map(cell).join(','));
  return `${rows.join('\r\n')}\r\n`;
}

const escape = (text: string): string => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** One self-contained HTML file (no script, no external resource): the heat map, findings, timelines. */
export function reviewHtml(review: Review): string {
  const agents = [...new Set(review.matrix.map((u) => u.agent))];
  const grants = [...new Set(review.matrix.map((u) => u.grant))].sort();
  const max = Math.max(1, ...review.matrix.map((u) => u.calls));
  const unused = new Set(review.findings.filter((f) => f.kind === 'unused_grant').map((f) => `${f.role ?? ''}\u0000${f.grant ?? ''}`));
  const cell = (agent: string, grant: string): string => {
    const u = review.matrix.find((m) => m.agent === agent && m.grant === grant);
    if (u === undefined) return '<td class="none">-</td>';
    const heat = u.calls === 0 ? 0 : 0.15 + (0.85 * Math.log(1 + u.calls)) / Math.log(1 + max);
    const creep = unused.has(`${u.role}\u0000${u.grant}`);
    const title = `${u.agent} ${u.grant}: ${u.calls} calls, ${u.refusals} refusals, last used ${u.lastUsed ?? 'never'}; routes ${u.routes.join(', ')}`;
    return `<td class="${creep ? 'creep' : 'used'}" style="background: rgba(220, 60, 30, ${heat.toFixed(3)})" title="${escape(title)}">${u.calls}${u.refusals > 0 ? ` <small>(${u.refusals} refused)</small>` : ''}${creep ? '<br><small>unused</small>' : ''}</td>`;
  };
  const days: string[] = [];
  for (let t = Date.parse(review.since.slice(0, 10)); t <= Date.parse(review.until); t += 86_400_000) days.push(new Date(t).toISOString().slice(0, 10));
  const peak = Math.max(1, ...Object.values(review.violations).flatMap((d) => Object.values(d)));
  const timeline = (agent: string): string => {
    const perDay = review.violations[agent] ?? {};
    const width = Math.max(1, days.length) * 8;
    const bars = days
      .map((d, i) => {
        const n = perDay[d] ?? 0;
        const h = n === 0 ? 0 : Math.max(2, Math.round((n / peak) * 40));
        return n === 0 ? '' : `<rect x="${i * 8}" y="${40 - h}" width="6" height="${h}"><title>${d}: ${n} violations</title></rect>`;
      })
      .join('');
    const total = Object.values(perDay).reduce((a, b) => a + b, 0);
    return `<tr><th>${escape(agent)}</th><td><svg width="${width}" height="42" viewBox="0 0 ${width} 42" role="img" aria-label="${escape(agent)} violations per day"><line x1="0" y1="41" x2="${width}" y2="41" stroke="#999"/>${bars}</svg></td><td>${total}</td></tr>`;
  };
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>AgentGate access review ${escape(review.since.slice(0, 10))} to ${escape(review.until.slice(0, 10))}</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }
table { border-collapse: collapse; margin: 12px 0 24px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: center; }
th { background: #f3f3f3; } td.none { color: #bbb; } td.creep { outline: 2px dashed #c00; outline-offset: -3px; }
td small { color: #555; } svg rect { fill: #c0392b; } .findings td { text-align: left; } code { font-size: 12px; }
</style></head><body>
<h1>AgentGate access review</h1>
<p>Period ${escape(review.since)} to ${escape(review.until)}; ${review.linesRead} audit lines from ${review.files.length} file(s).</p>
<h2>Permission matrix (calls per agent and grant)</h2>
<table id="matrix"><thead><tr><th>agent</th><th>role</th>${grants.map((g) => `<th>${escape(g)}</th>`).join('')}</tr></thead><tbody>
${agents.map((a) => `<tr><th>${escape(a)}</th><td>${escape(review.matrix.find((u) => u.agent === a)?.role ?? '')}</td>${grants.map((g) => cell(a, g)).join('')}</tr>`).join('\n')}
</tbody></table>
<h2>Findings (${review.findings.length})</h2>
<table class="findings" id="findings"><thead><tr><th>finding</th><th>detail</th><th>edit</th></tr></thead><tbody>
${review.findings.map((f) => `<tr><td>${escape(f.kind)}</td><td>${escape(f.detail)}</td><td><code>${escape(f.edit ?? '')}</code></td></tr>`).join('\n')}
</tbody></table>
<h2>Violations per agent and day</h2>
<table id="timeline"><tbody>
${agents.map(timeline).join('\n')}
</tbody></table>
</body></html>
`;
}
