// authenticate against real keys, a real memory store and the shipped policy: the JWT attack table,
// the query-token rule, the synchronous cache hit, revocation on the hot path, and delegation.
import t, { type Test } from 'tap';
import type { RequestContext } from '../../gateway/context.js';
import { GatewayError, type ReasonCode } from '../../gateway/errors.js';
import { openMemoryStore } from '../../gateway/state/memory.js';
import type { Store } from '../../gateway/state/store.js';
import { viewOf } from '../../gateway/state/view.js';
import { createAuthenticate } from '../../gateway/stages/authenticate.js';
import { createNormalize } from '../../gateway/stages/normalize.js';
import { mintAccessToken } from '../../gateway/tokens/mint.js';
import { createTokenVerifier } from '../../gateway/tokens/verify.js';
import { buildJwtAttacks } from '../fixtures/jwt-attacks.js';
import { ISSUER, loadTestPolicy, makeTestKeys, manualClock, mintFor, syntheticContext, type SyntheticRequest } from '../helpers/tokens.js';

const INVALID_DETAIL = 'the access token is invalid, expired or revoked; request a new one';
const EXPIRED_DETAIL = 'the access token has expired; request a new one';
const normalize = createNormalize({ maxBodyBytes: 1 << 20 });

async function setup(t: Test, options: { cacheSize?: number } = {}) {
  const clock = manualClock();
  const keys = await makeTestKeys(t.testdir({}), 'EdDSA', clock);
  const store = await openMemoryStore({ clock, file: null });
  t.teardown(() => store.close());
  const policy = await loadTestPolicy(clock);
  const verifier = createTokenVerifier({ keys, issuer: ISSUER, clock, ...options });
  const stage = createAuthenticate({ verifier, state: viewOf(store) });
  /** normalize then authenticate, as the pipeline runs them; what authenticate returned or threw. */
  const run = (request: Omit<SyntheticRequest, 'policy' | 'clock'>) => {
    const ctx = syntheticContext({ policy, clock, ...request });
    normalize.run(ctx);
    try {
      return { ctx, returned: stage.run(ctx), thrown: null as unknown };
    } catch (thrown) {
      return { ctx, returned: undefined, thrown };
    }
  };
  /** Settle a run: the error it ended with (sync or async), or null. */
  const settle = async (r: ReturnType<typeof run>): Promise<unknown> => r.thrown ?? (await Promise.resolve(r.returned).then(() => null, (e: unknown) => e));
  return { clock, keys, store, policy, verifier, stage, run, settle };
}

function assertRefused(t: Test, error: unknown, reason: ReasonCode, ctx: RequestContext): GatewayError | null {
  t.ok(error instanceof GatewayError, 'refused with a GatewayError');
  if (!(error instanceof GatewayError)) return null;
  t.equal(error.reason, reason);
  t.equal(ctx.principal, null, 'no principal set');
  return error;
}

t.test('the stage', async (t) => {
  const { stage } = await setup(t);
  t.equal(stage.name, 'authenticate');
});

t.test('JWT attack table', async (t) => {
  const { clock, keys, store, run, settle } = await setup(t);
  const attacks = await buildJwtAttacks(keys, ISSUER, clock, { store });
  const names = attacks.map((a) => a.name);
  t.ok(attacks.length >= 40, `${attacks.length} cases`);
  t.equal(new Set(names).size, names.length, 'names are unique');
  t.ok(names.includes('revoked jti'), 'the revoked case is present');
  t.ok(attacks.filter((a) => a.expect !== 'ok').length > attacks.filter((a) => a.expect === 'ok').length * 5, 'refusals outnumber controls');

  for (const a of attacks) {
    await t.test(a.name, async (t) => {
      const r = run({ url: `/crm/contacts${a.query ?? ''}`, authorization: a.authorization });
      const error = await settle(r);
      if (a.expect === 'ok' || a.expect === 'valid_but_cross_domain') {
        t.equal(error, null, 'authenticated');
        t.match(r.ctx.principal, { agent: 'marketing-agent-03', role: 'marketing', subject: 'marketing-agent-03', onBehalfOf: null });
        // Authorize turns this one into cross_domain: the string aud is one value, not a substring list.
        if (a.expect === 'valid_but_cross_domain') t.notOk(r.ctx.principal?.audience.has('crm'), 'crm is not in aud');
        return;
      }
      const refused = assertRefused(t, error, a.expect, r.ctx);
      if (refused === null) return;
      if (a.expect === 'token_invalid') {
        // Only a genuine token past its exp is told so; every other cause reads the same.
        t.equal(refused.detail, refused.reasonDetail === 'expired' ? EXPIRED_DETAIL : INVALID_DETAIL, 'the agent is not told which check failed');
        t.not(refused.reasonDetail, refused.detail, `audit keeps the precise cause (${refused.reasonDetail})`);
      }
      t.notMatch(JSON.stringify({ detail: refused.detail, reasonDetail: refused.reasonDetail }), /eyJ/, 'no token in the error');
    });
  }
});

t.test('precise causes reach the audit only', async (t) => {
  const { clock, keys, store, run, settle } = await setup(t);
  const attacks = await buildJwtAttacks(keys, ISSUER, clock, { store });
  const expected: Record<string, string> = {
    'revoked jti': 'revoked',
    'agent not in the policy': 'agent_unknown',
    'sub names another agent than client_id': 'subject_mismatch',
    'act names another agent than client_id': 'subject_mismatch',
    'alg none (unsigned)': 'alg',
    'jku header pointing at a local URL': 'header_forbidden',
    'expired past the skew (31 s)': 'expired',
    'expired and signed by an attacker key under our kid': 'signature',
    'expired and unsigned (alg none)': 'alg',
    'token over 8 KiB': 'too_large',
    'two Authorization headers': '2 Authorization headers',
  };
  for (const [name, reasonDetail] of Object.entries(expected)) {
    const a = attacks.find((x) => x.name === name);
    if (a === undefined) {
      t.fail(`no case named ${name}`);
      continue;
    }
    const error = await settle(run({ authorization: a.authorization }));
    t.match(error, { reasonDetail }, name);
  }
});

t.test('Authorization header shapes', async (t) => {
  const { keys, policy, clock, run, settle } = await setup(t);
  const token = await mintFor(keys, ISSUER, policy, 'marketing-agent-03', { clock });
  const cases: Array<{ name: string; authorization: string[] | null; reason: ReasonCode | null; detail?: RegExp }> = [
    { name: 'Bearer', authorization: [`Bearer ${token}`], reason: null },
    { name: 'BEARER', authorization: [`BEARER ${token}`], reason: null },
    { name: 'none', authorization: null, reason: 'token_missing', detail: /Authorization: Bearer/ },
    { name: 'two', authorization: [`Bearer ${token}`, `Bearer ${token}`], reason: 'token_missing', detail: /exactly one Authorization header/ },
    { name: 'a valid one and an empty one', authorization: [`Bearer ${token}`, ''], reason: 'token_missing', detail: /exactly one/ },
    { name: 'empty', authorization: [''], reason: 'token_missing' },
    { name: 'Bearer without a token', authorization: ['Bearer'], reason: 'token_missing' },
    { name: 'Bearer and a space', authorization: ['Bearer '], reason: 'token_missing' },
    { name: 'tab instead of space', authorization: [`Bearer\t${token}`], reason: 'token_missing' },
    { name: 'Bearer glued to the token', authorization: [`Bearer${token}`], reason: 'token_missing' },
    { name: 'Basic', authorization: ['Basic YTpi'], reason: 'token_missing' },
    { name: 'DPoP scheme', authorization: [`DPoP ${token}`], reason: 'token_missing' },
    { name: 'quoted token', authorization: [`Bearer "${token}"`], reason: 'token_missing' },
    { name: 'two tokens in one header', authorization: [`Bearer ${token} ${token}`], reason: 'token_missing' },
    { name: 'a b64token that is no JWT', authorization: ['Bearer abc=='], reason: 'token_invalid' },
  ];
  for (const c of cases) {
    await t.test(c.name, async (t) => {
      const r = run({ authorization: c.authorization });
      const error = await settle(r);
      if (c.reason === null) {
        t.equal(error, null);
        t.equal(r.ctx.principal?.agent, 'marketing-agent-03');
        return;
      }
      const refused = assertRefused(t, error, c.reason, r.ctx);
      if (refused !== null && c.detail !== undefined) t.match(refused.detail, c.detail);
    });
  }
});

t.test('a token in the query string is misplaced, matched as a real parameter name', async (t) => {
  const { keys, policy, clock, run, settle } = await setup(t);
  const token = await mintFor(keys, ISSUER, policy, 'marketing-agent-03', { clock });
  const cases: Array<{ query: string; misplaced: boolean }> = [
    { query: '?access_token=abc', misplaced: true },
    { query: '?limit=5&access_token=abc', misplaced: true },
    { query: '?access_token', misplaced: true },
    { query: '?access_token=', misplaced: true },
    { query: '?a=1;access_token=abc', misplaced: true },
    { query: '?access%5Ftoken=abc', misplaced: true },
    { query: '?access%5ftoken=abc', misplaced: true },
    { query: '?ACCESS_TOKEN=abc', misplaced: false },
    { query: '?my_access_token=abc', misplaced: false },
    { query: '?access_tokens=abc', misplaced: false },
    { query: '?note=access_token', misplaced: false },
    { query: '?q=access_token%3Dabc', misplaced: false },
    { query: '', misplaced: false },
  ];
  for (const c of cases) {
    await t.test(JSON.stringify(c.query), async (t) => {
      const r = run({ url: `/crm/contacts${c.query}`, authorization: [`Bearer ${token}`] });
      const error = await settle(r);
      if (c.misplaced) {
        const refused = assertRefused(t, error, 'token_misplaced', r.ctx);
        t.equal(refused?.status, 400);
        t.equal(r.thrown, error, 'refused before any verification (synchronously)');
      } else {
        t.equal(error, null, 'authenticated');
      }
    });
  }
  await t.test('also when the header is missing, and when normalize refused the target', async (t) => {
    t.match(await settle(run({ url: `/crm/contacts?access_token=${token}`, authorization: null })), { reason: 'token_misplaced' });
    const r = run({ url: `/crm/../export?access_token=${token}`, authorization: [`Bearer ${token}`] });
    t.ok(r.ctx.target?.invalid, 'normalize marked the target invalid');
    t.match(await settle(r), { reason: 'token_misplaced' });
  });
});

t.test('a cache hit completes synchronously; revocation still applies on the hot path', async (t) => {
  const { keys, policy, clock, store, run, settle, verifier, stage } = await setup(t);
  const minted = await mintAccessToken(keys, {
    issuer: ISSUER, agent: 'support-agent-01', subject: 'support-agent-01', audience: ['kb', 'tickets'],
    scopes: ['kb:articles.read', 'tickets:tickets.read'], ttlSeconds: 3600, sid: 'sid-1',
  }, clock);
  const authorization = [`Bearer ${minted.token}`];

  const first = run({ url: '/tickets/tickets', authorization });
  t.type(first.returned, Promise, 'a miss verifies asynchronously');
  t.equal(await settle(first), null);
  t.ok(verifier.cached(authorization[0] ?? ''), 'now cached, under the Authorization value it came in');

  const second = run({ url: '/tickets/tickets', authorization });
  t.equal(second.returned, undefined, 'a hit returns undefined: no promise, no await');
  t.equal(second.thrown, null);
  t.same(second.ctx.principal, {
    agent: 'support-agent-01', role: 'support', subject: 'support-agent-01', onBehalfOf: null, act: null,
    jti: minted.jti, sid: 'sid-1', scopes: new Set(['kb:articles.read', 'tickets:tickets.read']), audience: new Set(['kb', 'tickets']),
    issuedAt: minted.issuedAt, expiresAt: minted.expiresAt,
  });
  t.equal(run({ url: '/tickets/tickets', authorization }).ctx.principal, second.ctx.principal, 'a hit under the same policy reuses the principal: nothing is built per request');
  // A reload that moves the agent to another role: the next hit says so (the principal is rebuilt).
  const agent = policy.agents.get('support-agent-01');
  if (agent === undefined) throw new Error('shipped policy lost support-agent-01');
  const role = policy.roles.get('support');
  if (role === undefined) throw new Error('shipped policy lost the support role');
  const moved = { ...policy, roles: new Map(policy.roles).set('support-moved', role), agents: new Map(policy.agents).set(agent.id, { ...agent, role: 'support-moved' }) };
  const underMoved = syntheticContext({ policy: moved, clock, url: '/tickets/tickets', authorization });
  normalize.run(underMoved);
  t.equal(stage.run(underMoved), undefined, 'still a cache hit');
  t.equal(underMoved.principal?.role, 'support-moved', 'the role comes from the policy in force');
  t.equal(run({ url: '/tickets/tickets', authorization }).ctx.principal?.role, 'support', 'and back under the first one');
  const { request: _request, log: _log, signal: _signal, startedAt: _startedAt, ...rest } = second.ctx;
  const serialized = JSON.stringify(rest, (_k, v: unknown) => (v instanceof Set || v instanceof Map ? [...v] : v));
  t.notOk(serialized.includes(minted.token.split('.')[2] ?? 'x'), 'no part of the token is kept outside the request');

  await store.revoke(minted.jti, minted.expiresAt);
  const revoked = run({ url: '/tickets/tickets', authorization });
  t.match(revoked.thrown, { reason: 'token_invalid', reasonDetail: 'revoked' }, 'a revoked cached token is refused synchronously');

  const other = await mintFor(keys, ISSUER, policy, 'support-agent-01', { clock });
  t.equal(await settle(run({ url: '/kb/articles', authorization: [`Bearer ${other}`] })), null);
  await store.revokeAgent('support-agent-01', Math.floor(clock.now() / 1000));
  t.match(run({ url: '/kb/articles', authorization: [`Bearer ${other}`] }).thrown, { reason: 'token_invalid', reasonDetail: 'revoked' }, 'agent-wide revocation too');
  clock.advance(1000);
  const after = await mintFor(keys, ISSUER, policy, 'support-agent-01', { clock });
  t.equal(await settle(run({ url: '/kb/articles', authorization: [`Bearer ${after}`] })), null, 'tokens issued after the agent revocation pass');
});

t.test('the cache is keyed by the exact Authorization value: a variant of a cached one gets no hit', async (t) => {
  // The attack: once `Bearer <token>` is cached, send the same token in a form the syntax checks
  // refuse (they run only on a miss) or with bytes a lenient backend would drop, hoping for a hit.
  const { keys, policy, clock, run, settle } = await setup(t);
  const token = await mintFor(keys, ISSUER, policy, 'data-agent-01', { clock });
  t.equal(await settle(run({ url: '/bi/reports', authorization: [`Bearer ${token}`] })), null);
  t.equal(run({ url: '/bi/reports', authorization: [`Bearer ${token}`] }).returned, undefined, 'cached');
  const cases: Array<{ name: string; value: string; reason: ReasonCode | null }> = [
    { name: 'two spaces after the scheme', value: `Bearer  ${token}`, reason: 'token_missing' },
    { name: 'a tab for the space', value: `Bearer\t${token}`, reason: 'token_missing' },
    { name: 'a trailing space', value: `Bearer ${token} `, reason: 'token_missing' },
    { name: 'a trailing comma and a second credential', value: `Bearer ${token}, Basic eDp5`, reason: 'token_missing' },
    { name: 'a character appended to the signature', value: `Bearer ${token}A`, reason: 'token_invalid' },
    { name: 'the scheme in lower case (allowed: verified afresh, not served from the cache)', value: `bearer ${token}`, reason: null },
  ];
  for (const c of cases) {
    const r = run({ url: '/bi/reports', authorization: [c.value] });
    if (c.reason === null) {
      t.type(r.returned, Promise, `${c.name}: a miss, verified in full`);
      t.equal(await settle(r), null, `${c.name}: allowed`);
    } else {
      t.match(await settle(r), { reason: c.reason }, `${c.name}: ${c.reason}`);
    }
  }
});

t.test('the stage never authenticates with a token past its exp', async (t) => {
  const { keys, policy, clock, run, settle } = await setup(t);
  const token = await mintFor(keys, ISSUER, policy, 'data-agent-01', { clock, ttlSeconds: 60 });
  const authorization = [`Bearer ${token}`];
  t.equal(await settle(run({ url: '/bi/reports', authorization })), null);
  clock.advance(59_000);
  t.equal(run({ url: '/bi/reports', authorization }).returned, undefined, 'a hit while valid');
  clock.advance(1_000);
  const atExp = run({ url: '/bi/reports', authorization });
  t.type(atExp.returned, Promise, 'at exp the cache no longer answers');
  t.equal(await settle(atExp), null, 'full verification still allows the 30 s skew');
  clock.advance(31_000);
  t.match(await settle(run({ url: '/bi/reports', authorization })), { reason: 'token_invalid', reasonDetail: 'expired' });
});

t.test('the role comes from the policy in force, never from the token', async (t) => {
  const { keys, clock, run, settle, policy } = await setup(t);
  const minted = await mintAccessToken(keys, {
    issuer: ISSUER, agent: 'data-agent-01', subject: 'data-agent-01', audience: ['crm'], scopes: ['crm:export'], ttlSeconds: 60, sid: 's',
  }, clock);
  const r = run({ url: '/crm/export', authorization: [`Bearer ${minted.token}`] });
  t.equal(await settle(r), null, 'authenticated (authorize refuses the grant later)');
  t.equal(r.ctx.principal?.role, policy.agents.get('data-agent-01')?.role);
});

t.test('delegated tokens: sub is the user, act.sub the agent', async (t) => {
  const { keys, clock, run, settle } = await setup(t);
  const base = { issuer: ISSUER, agent: 'marketing-agent-03', audience: ['crm'], scopes: ['crm:contacts.read'], ttlSeconds: 60, sid: 's' };
  const good = await mintAccessToken(keys, { ...base, subject: 'alice@example.com', act: { sub: 'marketing-agent-03', act: { sub: 'orchestrator' } } }, clock);
  const r = run({ authorization: [`Bearer ${good.token}`] });
  t.equal(await settle(r), null);
  t.match(r.ctx.principal, { agent: 'marketing-agent-03', role: 'marketing', subject: 'alice@example.com', onBehalfOf: 'alice@example.com' });
  t.same(r.ctx.principal?.act, { sub: 'marketing-agent-03', act: { sub: 'orchestrator' } });

  const wrongActor = await mintAccessToken(keys, { ...base, subject: 'alice@example.com', act: { sub: 'support-agent-01' } }, clock);
  t.match(await settle(run({ authorization: [`Bearer ${wrongActor.token}`] })), { reason: 'token_invalid', reasonDetail: 'subject_mismatch' });
});

t.test('fails closed when the store cannot be trusted', async (t) => {
  const { keys, policy, clock, verifier, store } = await setup(t);
  // The Store contract's own health signal, as a Redis store reports it when Redis is unreachable.
  const unhealthy: Store = { ...store, isHealthy: () => false };
  const stage = createAuthenticate({ verifier, state: viewOf(unhealthy) });
  const token = await mintFor(keys, ISSUER, policy, 'marketing-agent-03', { clock });
  const ctx = syntheticContext({ policy, clock, authorization: [`Bearer ${token}`] });
  normalize.run(ctx);
  const error = await Promise.resolve(stage.run(ctx)).then(() => null, (e: unknown) => e);
  t.match(error, { reason: 'state_unavailable', status: 503 });
  t.equal(ctx.principal, null);
});
