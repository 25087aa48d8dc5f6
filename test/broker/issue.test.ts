// Token planning and issuance against the shipped policy: scopes within the role, aud from the
// scopes, TTL never above the role's, OAuth error codes for every refusal.
import t from 'tap';
import { BrokerError } from '../../gateway/broker/errors.js';
import { issueAgentToken, planAgentToken, type TokenRequest } from '../../gateway/broker/issue.js';
import { createTokenVerifier } from '../../gateway/tokens/verify.js';
import { ISSUER, loadTestPolicy, makeTestKeys, manualClock } from '../helpers/tokens.js';

t.test('plans', async (t) => {
  const policy = await loadTestPolicy();
  const cases: Array<{ name: string; agent: string; request: TokenRequest; expect: { scopes: string[]; audience: string[]; ttlSeconds: number; role: string } }> = [
    {
      name: 'default: every grant of the role, the role TTL',
      agent: 'marketing-agent-03',
      request: {},
      expect: { role: 'marketing', scopes: ['content:assets.read', 'crm:contacts.read'], audience: ['content', 'crm'], ttlSeconds: 1800 },
    },
    {
      name: 'an empty scope list means the default',
      agent: 'support-agent-01',
      request: { scopes: [] },
      expect: { role: 'support', scopes: ['kb:articles.read', 'tickets-mcp:tickets.read', 'tickets-mcp:tickets.reply', 'tickets:tickets.read', 'tickets:tickets.reply'], audience: ['kb', 'tickets', 'tickets-mcp'], ttlSeconds: 3600 },
    },
    {
      name: 'narrowed scopes narrow aud',
      agent: 'support-agent-01',
      request: { scopes: ['tickets:tickets.reply', 'tickets:tickets.read', 'tickets:tickets.read'] },
      expect: { role: 'support', scopes: ['tickets:tickets.read', 'tickets:tickets.reply'], audience: ['tickets'], ttlSeconds: 3600 },
    },
    { name: 'a shorter TTL is honoured', agent: 'data-agent-01', request: { ttlSeconds: 60 }, expect: { role: 'data', scopes: ['bi:query.aggregate', 'bi:reports.read'], audience: ['bi'], ttlSeconds: 60 } },
    { name: 'a longer TTL is capped at the role', agent: 'data-agent-01', request: { ttlSeconds: 86_400 }, expect: { role: 'data', scopes: ['bi:query.aggregate', 'bi:reports.read'], audience: ['bi'], ttlSeconds: 600 } },
    { name: 'a fractional TTL is rounded down', agent: 'data-agent-01', request: { ttlSeconds: 1.9 }, expect: { role: 'data', scopes: ['bi:query.aggregate', 'bi:reports.read'], audience: ['bi'], ttlSeconds: 1 } },
  ];
  for (const c of cases) {
    await t.test(c.name, async (t) => {
      const plan = planAgentToken(policy, c.agent, c.request);
      t.match(plan, { agent: c.agent, subject: c.agent, ...c.expect });
      t.same(plan.scopes, c.expect.scopes);
      t.same(plan.audience, c.expect.audience);
      t.match(plan.sid, /^[0-9a-f-]{36}$/);
      t.equal(plan.act, null, 'not delegated');
    });
  }
  t.not(planAgentToken(policy, 'data-agent-01').sid, planAgentToken(policy, 'data-agent-01').sid, 'a new session per plan');
});

t.test('refusals are OAuth errors', async (t) => {
  const policy = await loadTestPolicy();
  const cases: Array<{ name: string; agent: string; request: TokenRequest; error: string; description: RegExp }> = [
    { name: 'unknown agent', agent: 'ghost-agent', request: {}, error: 'invalid_client', description: /unknown agent "ghost-agent"/ },
    { name: 'a scope of another role', agent: 'marketing-agent-03', request: { scopes: ['crm:contacts.read', 'crm:export'] }, error: 'invalid_scope', description: /does not grant "crm:export"/ },
    { name: 'a scope that does not exist', agent: 'data-agent-01', request: { scopes: ['bi:raw'] }, error: 'invalid_scope', description: /"bi:raw"/ },
    { name: 'two scopes', agent: 'data-agent-01', request: { scopes: ['bi:raw', 'crm:export'] }, error: 'invalid_scope', description: /"bi:raw", "crm:export"/ },
    { name: 'a space-joined scope list', agent: 'data-agent-01', request: { scopes: ['bi:reports.read bi:query.aggregate'] }, error: 'invalid_scope', description: /does not grant/ },
    { name: 'zero TTL', agent: 'data-agent-01', request: { ttlSeconds: 0 }, error: 'invalid_request', description: /at least 1 second/ },
    { name: 'negative TTL', agent: 'data-agent-01', request: { ttlSeconds: -5 }, error: 'invalid_request', description: /at least 1 second/ },
    { name: 'NaN TTL', agent: 'data-agent-01', request: { ttlSeconds: Number.NaN }, error: 'invalid_request', description: /at least 1 second/ },
  ];
  for (const c of cases) {
    await t.test(c.name, async (t) => {
      let thrown: unknown = null;
      try {
        planAgentToken(policy, c.agent, c.request);
      } catch (error) {
        thrown = error;
      }
      t.ok(thrown instanceof BrokerError, 'a BrokerError');
      t.match(thrown, { name: 'BrokerError', error: c.error, description: c.description });
    });
  }
});

t.test('issue mints exactly the plan, and the token verifies', async (t) => {
  const clock = manualClock();
  const keys = await makeTestKeys(t.testdir({}), 'EdDSA', clock);
  const policy = await loadTestPolicy(clock);
  const verifier = createTokenVerifier({ keys, issuer: ISSUER, clock });
  const plan = planAgentToken(policy, 'support-agent-01', { scopes: ['kb:articles.read'], ttlSeconds: 120 });
  const minted = await issueAgentToken(keys, ISSUER, plan, clock);
  t.equal(minted.expiresAt - minted.issuedAt, 120);
  t.equal(minted.issuedAt, Math.floor(clock.now() / 1000));
  t.equal(minted.sid, plan.sid);
  const claims = await verifier.verify(minted.token);
  t.same(claims, {
    agent: 'support-agent-01', subject: 'support-agent-01', audience: new Set(['kb']), scopes: new Set(['kb:articles.read']),
    jti: minted.jti, sid: plan.sid, issuedAt: minted.issuedAt, expiresAt: minted.expiresAt, act: null, kid: keys.current().kid,
  });
});
