// Hostile traffic over real sockets: ambiguous request targets written byte-for-byte on a raw TCP
// connection (no client library to tidy them up), and forged or misused tokens. None may reach
// a backend.
import t from 'tap';
import { connect } from 'node:net';
import { request } from 'undici';
import { hostileTargets } from '../fixtures/hostile-targets.js';
import { buildJwtAttacks } from '../fixtures/jwt-attacks.js';
import { startGateway, startUpstream } from '../helpers/gateway.js';

const ALL = ['crm', 'content', 'tickets', 'kb', 'bi'];

t.test('hostile request targets never reach a backend', async (t) => {
  const upstream = await startUpstream(t);
  const gw = await startGateway(t, { upstreams: Object.fromEntries(ALL.map((b) => [b, upstream.url])) });
  const token = await gw.token('marketing-agent-03');
  t.ok(hostileTargets.length >= 60, `${hostileTargets.length} hostile targets`);

  for (const h of hostileTargets) {
    await t.test(`${h.name}: ${JSON.stringify(h.target)}`, async (t) => {
      // Each target is its own violation; the shipped breaker would suspend the agent after five.
      await gw.gateway.store.revive('marketing-agent-03');
      const response = await raw(gw.port, `GET ${h.target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${token}\r\nConnection: close\r\n\r\n`);
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(response)?.[1] ?? 0);
      if (h.kind === 'backend') {
        t.equal(status, 404, 'not the crm backend');
        t.match(response, /urn:agentgate:problem:backend_unknown/);
      } else {
        t.equal(status, 400, 'refused as a bad target');
        t.match(response, /urn:agentgate:problem:target_invalid/);
      }
    });
  }
  t.equal(upstream.seen.length, 0, 'no hostile target reached the backend');

  await t.test('the same targets without a token get 401 first (except what the parser refuses)', async (t) => {
    const h = hostileTargets.find((x) => x.target === '/crm/contacts/%2e%2e/export') ?? hostileTargets[0];
    if (h === undefined) throw new Error('empty table');
    const response = await raw(gw.port, `GET ${h.target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
    t.match(response, /^HTTP\/1\.1 401 /);
  });
});

t.test('JWT attacks are refused', async (t) => {
  const upstream = await startUpstream(t);
  const gw = await startGateway(t, { upstreams: Object.fromEntries(ALL.map((b) => [b, upstream.url])) });
  const attacks = await buildJwtAttacks(gw.gateway.keys, gw.gateway.settings.issuer.url, { now: () => Date.now() });
  const revoked = attacks.find((a) => a.name.includes('revoked'));
  for (const a of attacks) {
    await t.test(a.name, async (t) => {
      const headers: string[] = [];
      for (const value of a.authorization ?? []) headers.push('authorization', value);
      const before = upstream.seen.length;
      const res = await request(`${gw.url}/crm/contacts${a.query ?? ''}`, { headers });
      const body = await res.body.text();
      if (a.expect === 'ok') {
        t.equal(res.statusCode, 200, body);
        t.equal(upstream.seen.length, before + 1);
        return;
      }
      const reason = a.expect === 'valid_but_cross_domain' ? 'cross_domain' : a.expect;
      t.match(JSON.parse(body), { type: `urn:agentgate:problem:${reason}` });
      t.equal(upstream.seen.length, before, 'never forwarded');
    });
  }
  t.ok(revoked === undefined || revoked.expect === 'token_invalid');
});

function raw(port: number, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let out = '';
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => (out += d));
    socket.on('error', reject);
    socket.on('close', () => resolve(out));
    socket.setTimeout(5000, () => socket.destroy());
    socket.write(Buffer.from(text, 'latin1'));
  });
}
