// Every refusal row of DESIGN §3 over real sockets: status, WWW-Authenticate, problem type, and
// that the backend never saw the call. Allowed calls assert what the backend received.
import t from 'tap';
import { request } from 'undici';
import { decodeJwt } from 'jose';
import { startGateway, startUpstream } from '../helpers/gateway.js';
import { buildRequest, rawRequest } from '../helpers/raw.js';
import { issueAgentToken, planAgentToken } from '../../gateway/broker/issue.js';

const ALL = ['crm', 'content', 'tickets', 'kb', 'bi'];

t.test('refusal table', async (t) => {
  const upstream = await startUpstream(t);
  const gw = await startGateway(t, { upstreams: Object.fromEntries(ALL.map((b) => [b, upstream.url])) });
  const marketing = await gw.token('marketing-agent-03');
  const support = await gw.token('support-agent-01');
  const contentOnly = await gw.token('marketing-agent-03', { scopes: ['content:assets.read'] });
  const policy = gw.gateway.policy();
  const past = { now: () => Date.now() - 2 * 3600_000 };
  const expired = (await issueAgentToken(gw.gateway.keys, gw.gateway.settings.issuer.url, planAgentToken(policy, 'marketing-agent-03', {}), past)).token;
  const revoked = await gw.token('marketing-agent-03');
  const revokedClaims = decodeJwt(revoked);
  await gw.gateway.store.revoke(String(revokedClaims.jti), Number(revokedClaims.exp));
  const killedToken = await gw.token('data-agent-01');
  await gw.gateway.store.kill({ agent: 'data-agent-01', reason: 'test', at: Date.now(), by: 'test' });
  const forged = `${marketing.slice(0, marketing.lastIndexOf('.') + 1)}${'A'.repeat(86)}`;

  const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
  const json = { 'content-type': 'application/json' };
  const cases: Array<{
    name: string;
    method?: string;
    path: string;
    headers?: Record<string, string>;
    body?: string;
    status: number;
    reason: string;
    challenge: string | null;
  }> = [
    { name: 'no token', path: '/crm/contacts', status: 401, reason: 'token_missing', challenge: 'Bearer realm="agentgate"' },
    { name: 'Basic scheme', path: '/crm/contacts', headers: { authorization: 'Basic YWRtaW46YWRtaW4=' }, status: 401, reason: 'token_missing', challenge: 'Bearer realm="agentgate"' },
    { name: 'Bearer without token', path: '/crm/contacts', headers: { authorization: 'Bearer ' }, status: 401, reason: 'token_missing', challenge: 'Bearer realm="agentgate"' },
    { name: 'bad signature', path: '/crm/contacts', headers: bearer(forged), status: 401, reason: 'token_invalid', challenge: 'Bearer realm="agentgate", error="invalid_token"' },
    { name: 'expired', path: '/crm/contacts', headers: bearer(expired), status: 401, reason: 'token_invalid', challenge: 'Bearer realm="agentgate", error="invalid_token"' },
    { name: 'revoked', path: '/crm/contacts', headers: bearer(revoked), status: 401, reason: 'token_invalid', challenge: 'Bearer realm="agentgate", error="invalid_token"' },
    { name: 'token in the query string', path: `/crm/contacts?access_token=${marketing}`, headers: bearer(marketing), status: 400, reason: 'token_misplaced', challenge: 'Bearer realm="agentgate", error="invalid_request"' },
    // An access token anywhere the backend would receive it: the agent's own, or one for another backend.
    { name: 'a token for another backend in a query parameter', path: `/crm/contacts?cursor=${support}`, headers: bearer(marketing), status: 400, reason: 'token_misplaced', challenge: 'Bearer realm="agentgate", error="invalid_request"' },
    { name: 'a token percent-encoded in the query', path: `/crm/contacts?q=%65${marketing.slice(1).replaceAll('.', '%2E')}`, headers: bearer(marketing), status: 400, reason: 'token_misplaced', challenge: 'Bearer realm="agentgate", error="invalid_request"' },
    { name: 'a token as a path segment', path: `/crm/contacts/${support}`, headers: bearer(marketing), status: 400, reason: 'token_misplaced', challenge: 'Bearer realm="agentgate", error="invalid_request"' },
    { name: 'a token in an allowlisted header', path: '/crm/contacts', headers: { ...bearer(marketing), 'accept-language': `en;q=0.9, ${support}` }, status: 400, reason: 'token_misplaced', challenge: 'Bearer realm="agentgate", error="invalid_request"' },
    { name: 'a token in X-Api-Key', path: '/crm/contacts', headers: { ...bearer(marketing), 'x-api-key': `Bearer ${support}` }, status: 400, reason: 'token_misplaced', challenge: 'Bearer realm="agentgate", error="invalid_request"' },
    { name: 'a token in Proxy-Authorization', path: '/crm/contacts', headers: { ...bearer(marketing), 'proxy-authorization': `Bearer ${marketing}` }, status: 400, reason: 'token_misplaced', challenge: 'Bearer realm="agentgate", error="invalid_request"' },
    { name: 'cross-domain: marketing token on tickets', path: '/tickets/tickets', headers: bearer(marketing), status: 403, reason: 'cross_domain', challenge: 'Bearer realm="agentgate", error="insufficient_scope"' },
    { name: 'cross-domain: task token narrowed to content, used on crm', path: '/crm/contacts', headers: bearer(contentOnly), status: 403, reason: 'cross_domain', challenge: 'Bearer realm="agentgate", error="insufficient_scope"' },
    { name: 'out of scope: marketing export', path: '/crm/export', headers: bearer(marketing), status: 403, reason: 'out_of_scope', challenge: 'Bearer realm="agentgate", error="insufficient_scope"' },
    { name: 'out of scope: support config change', method: 'PUT', path: '/tickets/config', headers: { ...bearer(support), ...json }, body: '{"queue":"x"}', status: 403, reason: 'out_of_scope', challenge: 'Bearer realm="agentgate", error="insufficient_scope"' },
    { name: 'out of scope: reply with a non-standard script', method: 'POST', path: '/tickets/tickets/1/replies', headers: { ...bearer(support), ...json }, body: '{"script":"refund-now"}', status: 403, reason: 'out_of_scope', challenge: 'Bearer realm="agentgate", error="insufficient_scope"' },
    { name: 'reply body with a duplicate key', method: 'POST', path: '/tickets/tickets/1/replies', headers: { ...bearer(support), ...json }, body: '{"script":"greeting","script":"refund-now"}', status: 400, reason: 'body_invalid', challenge: null },
    { name: 'reply body that is not JSON', method: 'POST', path: '/tickets/tickets/1/replies', headers: { ...bearer(support), 'content-type': 'text/plain' }, body: 'script=greeting', status: 400, reason: 'body_invalid', challenge: null },
    { name: 'unknown route', path: '/crm/admin/users', headers: bearer(marketing), status: 403, reason: 'unknown_route', challenge: 'Bearer realm="agentgate", error="insufficient_scope"' },
    { name: 'method not on any route', method: 'DELETE', path: '/tickets/tickets/1', headers: bearer(support), status: 403, reason: 'unknown_route', challenge: 'Bearer realm="agentgate", error="insufficient_scope"' },
    { name: 'read-only role writes', method: 'PATCH', path: '/crm/contacts/1', headers: { ...bearer(marketing), ...json }, body: '{"phone":"+1"}', status: 403, reason: 'read_only', challenge: 'Bearer realm="agentgate", error="insufficient_scope"' },
    { name: 'read-only role POSTs to an unknown route', method: 'POST', path: '/crm/contacts', headers: bearer(marketing), status: 403, reason: 'read_only', challenge: 'Bearer realm="agentgate", error="insufficient_scope"' },
    { name: 'killed agent', path: '/bi/reports', headers: bearer(killedToken), status: 403, reason: 'agent_killed', challenge: null },
    { name: 'ambiguous target with a valid token', path: '/crm/contacts/%2e%2e/export', headers: bearer(marketing), status: 400, reason: 'target_invalid', challenge: null },
    { name: 'ambiguous target without a token: 401 first', path: '/crm/contacts/%2e%2e/export', status: 401, reason: 'token_missing', challenge: 'Bearer realm="agentgate"' },
    { name: 'unknown backend', path: '/payroll/employees', headers: bearer(marketing), status: 404, reason: 'backend_unknown', challenge: null },
    { name: 'unknown backend without a token: 401 first', path: '/payroll/employees', status: 401, reason: 'token_missing', challenge: 'Bearer realm="agentgate"' },
    { name: 'declared body above the limit', method: 'POST', path: '/tickets/tickets/1/replies', headers: { ...bearer(support), ...json, 'content-length': String(2 * 1048576) }, status: 413, reason: 'body_too_large', challenge: null },
  ];

  for (const c of cases) {
    await t.test(c.name, async (t) => {
      // The shipped breaker (5 violations a minute) would suspend marketing and support part-way
      // through this table; each row is about its own refusal, so each starts with closed breakers.
      // Tripping is tested in operator.test.ts and readme-tour.test.ts.
      await gw.gateway.store.revive('marketing-agent-03');
      await gw.gateway.store.revive('support-agent-01');
      const before = upstream.seen.length;
      // Raw bytes on the wire: client libraries resolve %2e%2e and fix up lengths before sending.
      const res = await rawRequest(gw.port, buildRequest(c.method ?? 'GET', c.path, c.headers ?? {}, c.body ?? ''));
      const text = res.body;
      t.equal(res.status, c.status, 'status');
      t.equal(res.headers['content-type'], 'application/problem+json');
      t.equal(res.headers['www-authenticate'] ?? null, c.challenge, 'challenge');
      const problem = JSON.parse(text) as Record<string, unknown>;
      t.match(problem, { type: `urn:agentgate:problem:${c.reason}`, status: c.status, title: String, detail: String });
      t.equal(problem.requestId, res.headers['x-request-id'], 'requestId matches the header');
      t.notMatch(text, /127\.0\.0\.1|at .*\.ts:|Error:/, 'no backend address or stack trace');
      t.equal(upstream.seen.length, before, 'the backend never saw it');
    });
  }

  await t.test('the audit holds one deny line per refusal with the same reason', async (t) => {
    const lines = await gw.auditLines();
    t.equal(lines.length, cases.length);
    t.same(
      lines.map((l) => l.reason),
      cases.map((c) => c.reason),
    );
    const text = JSON.stringify(lines);
    for (const token of [marketing, support, expired, revoked, forged]) t.notOk(text.includes(token), 'no token in the audit');
  });
});

t.test('Retry-After and dead/hung backends', async (t) => {
  const hung = await startUpstream(t, () => {
    /* never answers */
  });
  const ok = await startUpstream(t);
  const gw = await startGateway(t, {
    upstreams: { crm: 'http://127.0.0.1:9', content: ok.url, tickets: hung.url, kb: ok.url, bi: ok.url },
    limits: { upstreamTimeout: '400ms' },
  });
  const marketing = await gw.token('marketing-agent-03');
  const support = await gw.token('support-agent-01');

  const dead = await request(`${gw.url}/crm/contacts`, { headers: { authorization: `Bearer ${marketing}` } });
  t.equal(dead.statusCode, 502);
  t.match(await dead.body.json(), { type: 'urn:agentgate:problem:upstream_unavailable' });

  const started = Date.now();
  const slow = await request(`${gw.url}/tickets/tickets`, { headers: { authorization: `Bearer ${support}` } });
  const elapsed = Date.now() - started;
  t.equal(slow.statusCode, 504);
  t.match(await slow.body.json(), { type: 'urn:agentgate:problem:upstream_timeout' });
  // The hung upstream never answers, so a 504 at all is the timeout; the lower bound shows it did not
  // fire early. No tight upper bound: a busy machine may take long to deliver the answer.
  t.ok(elapsed >= 350 && elapsed < 30_000, `504 after the 400 ms deadline (${elapsed} ms)`);

  const fine = await request(`${gw.url}/content/assets`, { headers: { authorization: `Bearer ${marketing}` } });
  t.equal(fine.statusCode, 200, 'other backends keep being served');
  await fine.body.dump();
  const metrics = await (await request(`${gw.metricsUrl}/metrics`)).body.text();
  t.match(metrics, /agentgate_upstream_errors_total\{backend="crm",kind="connect"\} 1/);
  t.match(metrics, /agentgate_upstream_errors_total\{backend="tickets",kind="timeout"\} 1/);
});

t.test('a client that goes away is audited as client_closed', async (t) => {
  const hung = await startUpstream(t, () => undefined);
  const gw = await startGateway(t, { upstreams: { crm: hung.url } });
  const marketing = await gw.token('marketing-agent-03');
  const controller = new AbortController();
  const pending = request(`${gw.url}/crm/contacts`, { headers: { authorization: `Bearer ${marketing}` }, signal: controller.signal });
  while (hung.server.listenerCount('request') > 0 && (await connections(hung.server)) === 0) await new Promise((r) => setImmediate(r));
  controller.abort();
  await t.rejects(pending);
  let lines: Array<Record<string, unknown>> = [];
  const deadline = Date.now() + 15_000;
  while (lines.length === 0 && Date.now() < deadline) {
    lines = await gw.auditLines();
    if (lines.length === 0) await new Promise((r) => setTimeout(r, 10));
  }
  t.match(lines, [{ decision: 'deny', reason: 'client_closed', agent: 'marketing-agent-03' }]);
});

function connections(server: import('node:http').Server): Promise<number> {
  return new Promise((resolve) => server.getConnections((_e, n) => resolve(n)));
}
