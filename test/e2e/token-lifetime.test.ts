// Issue 10, item 4: a token signed with the gateway's own key is still refused when it lives
// longer than its role's TTL (or 24 h), whatever minted it. Real keys, real gateway, real upstream.
import t from 'tap';
import { request } from 'undici';
import { randomUUID } from 'node:crypto';
import { mintAccessToken } from '../../gateway/tokens/mint.js';
import { startGateway, startUpstream } from '../helpers/gateway.js';

t.test('token lifetime is capped at verification', async (t) => {
  const upstream = await startUpstream(t);
  const gw = await startGateway(t, { upstreams: { crm: upstream.url, content: upstream.url } });
  // marketing: token ttl 30m in the shipped policy.
  const ttl = gw.gateway.policy().roles.get('marketing')?.token.ttlSeconds ?? 0;
  t.equal(ttl, 1800);
  const mint = (ttlSeconds: number): Promise<string> =>
    mintAccessToken(
      gw.gateway.keys,
      {
        issuer: gw.gateway.settings.issuer.url,
        agent: 'marketing-agent-03',
        subject: 'marketing-agent-03',
        audience: ['crm'],
        scopes: ['crm:contacts.read'],
        ttlSeconds,
        sid: randomUUID(),
      },
      { now: () => Date.now() },
    ).then((m) => m.token);

  const cases = [
    { name: 'exactly the role TTL: accepted', ttlSeconds: ttl, status: 200, detail: null },
    { name: 'a shorter one: accepted', ttlSeconds: 60, status: 200, detail: null },
    { name: 'one second over the role TTL: refused', ttlSeconds: ttl + 1, status: 401, detail: 'lifetime' },
    { name: 'a day: refused for this role', ttlSeconds: 86_400, status: 401, detail: 'lifetime' },
    { name: 'over 24 h: refused by the verifier whatever the role', ttlSeconds: 86_401, status: 401, detail: 'lifetime' },
    { name: 'a year: refused', ttlSeconds: 365 * 86_400, status: 401, detail: 'lifetime' },
  ];
  for (const c of cases) {
    await t.test(c.name, async (t) => {
      const token = await mint(c.ttlSeconds);
      const res = await request(`${gw.url}/crm/contacts`, { headers: { authorization: `Bearer ${token}` } });
      t.equal(res.statusCode, c.status);
      const body = await res.body.text();
      if (c.status === 401) {
        t.match(JSON.parse(body), { type: 'urn:agentgate:problem:token_invalid' });
        t.match(res.headers['www-authenticate'], /error="invalid_token"/);
        const line = (await gw.auditLines()).at(-1);
        t.equal(line?.reasonDetail, c.detail, 'the audit names the cause');
      }
    });
  }
});
