// The shipped policies/ (the demo fixture the README, examples and tests rely on) and the reusable
// test fixtures load cleanly and say what DESIGN §2 says.
import t from 'tap';
import { loadPolicySnapshot } from '../../gateway/policy/index.js';
import { join } from 'node:path';
import { ROOT } from '../helpers/root.js';

const clock = { now: () => 0 };
const options = { version: 1, clock, defaultTimeoutMs: 30_000 };

t.test('shipped policies/ load cleanly and hold the demo fixture', async (t) => {
  const snapshot = await loadPolicySnapshot(join(ROOT, 'policies'), options);
  const routes = (backend: string) =>
    Object.fromEntries([...(snapshot.backends.get(backend)?.scopes.values() ?? [])].map((s) => [s.name, s.routes.map((r) => r.template)]));
  t.same(
    [...snapshot.backends.values()].map((b) => [b.name, b.upstream.href, b.timeoutMs]),
    [
      ['crm', 'http://127.0.0.1:9101/', 30_000],
      ['content', 'http://127.0.0.1:9102/', 30_000],
      ['tickets', 'http://127.0.0.1:9103/', 30_000],
      ['tickets-mcp', 'http://127.0.0.1:9106/', 30_000],
      ['kb', 'http://127.0.0.1:9104/', 30_000],
      ['bi', 'http://127.0.0.1:9105/', 30_000],
    ],
  );
  t.same(routes('crm'), {
    'contacts.read': ['GET /contacts', 'GET /contacts/:id', 'GET /tags'],
    'contacts.write': ['PATCH /contacts/:id'],
    export: ['GET /export'],
  });
  t.same(routes('content'), { 'assets.read': ['GET /assets', 'GET /assets/:id'] });
  t.same(routes('tickets'), {
    'tickets.read': ['GET /tickets', 'GET /tickets/:id'],
    'tickets.reply': ['POST /tickets/:id/replies'],
    'config.write': ['PUT /config'],
  });
  t.same(routes('tickets-mcp'), {
    'tickets.read': ['tools/call search_tickets', 'tools/call get_ticket'],
    'tickets.reply': ['tools/call reply_with_script'],
    'config.write': ['tools/call change_config'],
  });
  const mcp = snapshot.backends.get('tickets-mcp')?.mcp;
  t.equal(mcp?.path, '/mcp');
  t.same([...(mcp?.tools.get('reply_with_script')?.[0]?.body?.fields.get('script') ?? [])], ['greeting', 'refund-status', 'escalate']);
  t.same(mcp?.tools.get('change_config')?.[0]?.approval, { ttlMs: 900_000 });
  t.same(mcp?.resources.map((r) => [r.template.text, r.scope]), [['tickets://{id}', 'tickets-mcp:tickets.read'], ['config://tickets/queues', 'tickets-mcp:config.write']]);
  t.same(routes('kb'), { 'articles.read': ['GET /articles', 'GET /articles/:id'] });
  t.same(routes('bi'), { 'reports.read': ['GET /reports', 'GET /reports/:id'], 'query.aggregate': ['POST /query'] });
  const reply = snapshot.backends.get('tickets')?.routes.match('POST', ['tickets', '42', 'replies']);
  t.same(reply?.params, { id: '42' });
  t.same([...(reply?.routes[0]?.body?.fields.get('script') ?? [])], ['greeting', 'refund-status', 'escalate']);

  const role = (name: string) => {
    const r = snapshot.roles.get(name);
    const rate = r?.rateLimit ?? null;
    return {
      grants: [...(r?.grants ?? [])],
      backends: [...(r?.backends ?? [])],
      readOnly: r?.readOnly,
      token: r?.token,
      breaker: r?.breaker,
      rateLimit: rate === null ? null : { rps: rate.rps, burst: rate.burst, violation: rate.violation, scopes: Object.fromEntries(rate.scopes) },
    };
  };
  // DESIGN §2 secure defaults: every demo role inherits the breaker (5 violations in 1 min, cooldown
  // 5 min doubling to 1 h) and the rate limit; support adds a stricter limit on replies.
  const breaker = { violations: 5, windowMs: 60_000, cooldownMs: 300_000, maxCooldownMs: 3_600_000, revokeTokens: false };
  const rateLimit = { rps: 20, burst: 40, violation: false, scopes: {} };
  t.same(role('marketing'), {
    grants: ['crm:contacts.read', 'content:assets.read'],
    backends: ['crm', 'content'],
    readOnly: true,
    token: { ttlSeconds: 1800, session: 'single', idleTimeoutSeconds: null, maxUses: null, rotateSeconds: null, maxDelegationDepth: 1 },
    breaker,
    rateLimit,
  });
  t.same(role('support'), {
    grants: ['tickets:tickets.read', 'tickets:tickets.reply', 'kb:articles.read', 'tickets-mcp:tickets.read', 'tickets-mcp:tickets.reply'],
    backends: ['tickets', 'kb', 'tickets-mcp'],
    readOnly: false,
    token: { ttlSeconds: 3600, session: 'multi', idleTimeoutSeconds: null, maxUses: null, rotateSeconds: 86_400, maxDelegationDepth: 1 },
    breaker,
    rateLimit: { ...rateLimit, scopes: { 'tickets:tickets.reply': { rps: 0.5, burst: 5 } } },
  });
  t.same(role('data'), {
    grants: ['bi:reports.read', 'bi:query.aggregate'],
    backends: ['bi'],
    readOnly: false,
    token: { ttlSeconds: 600, session: 'multi', idleTimeoutSeconds: null, maxUses: null, rotateSeconds: null, maxDelegationDepth: 1 },
    breaker,
    rateLimit,
  });
  // DESIGN §2: the constraints of the three roles of the problem statement.
  const constraints = (name: string) => {
    const r = snapshot.roles.get(name);
    return {
      mask: Object.fromEntries([...(r?.mask ?? new Map())].map(([b, plan]) => [b, [...plan.paths]])),
      query: r?.query === null || r?.query === undefined ? null : { aggregateOnly: r.query.aggregateOnly, tables: [...r.query.tables] },
      network: r?.network ?? null,
      approval: [...(r?.approval ?? [])],
      enforce: r?.enforce,
    };
  };
  t.same(constraints('marketing'), { mask: { crm: ['email', 'phone', 'tags'] }, query: null, network: null, approval: [], enforce: true });
  t.same(constraints('support'), { mask: {}, query: null, network: null, approval: [], enforce: true });
  t.same(constraints('data'), { mask: {}, query: { aggregateOnly: true, tables: ['sales', 'tickets_daily'] }, network: null, approval: [], enforce: true });
  t.same(snapshot.backends.get('bi')?.scopes.get('query.aggregate')?.routes[0]?.query, { field: 'sql', dialect: 'sqlite' });
  t.same(snapshot.backends.get('tickets')?.scopes.get('config.write')?.routes[0]?.approval, { ttlMs: 900_000 }, 'configuration changes need a person');

  t.same(
    [...snapshot.agents.values()].map((a) => [a.id, a.role, a.owner, a.credentials.length]),
    [
      ['marketing-agent-03', 'marketing', 'growth-team', 0],
      ['support-agent-01', 'support', 'support-ops', 0],
      ['data-agent-01', 'data', 'analytics', 0],
    ],
  );
  t.same(snapshot.warnings, [], 'no role of the demo runs without a breaker');
});

for (const name of ['minimal', 'overlap']) {
  t.test(`test/fixtures/policies/${name} loads cleanly`, async (t) => {
    const snapshot = await loadPolicySnapshot(join(ROOT, 'test', 'fixtures', 'policies', name), options);
    t.ok(snapshot.agents.size > 0);
  });
}
