// Network allowlists on the socket peer (X-Forwarded-For only from trusted proxies, IPv4 and IPv6)
// and shadow mode (enforce: false): refusals counted and audited, calls let through.
import t from 'tap';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import { startGateway, startUpstream } from '../helpers/gateway.js';

const POLICY = (upstream: string) =>
  [
    'backends:',
    '  api:',
    `    upstream: ${upstream}`,
    '    scopes:',
    '      read: ["GET /items"]',
    '      write:',
    '        - { route: POST /items, body: { kind: [small, large] } }',
    '      query:',
    '        - { route: POST /query, query: { field: sql } }',
    'roles:',
    '  office:',
    '    grants: [api:read]',
    '    network: { allow: [10.0.0.0/8, "fd00::/8"] }',
    '  local:',
    '    grants: [api:read]',
    '    network: { allow: [127.0.0.0/8] }',
    '  trial:',
    '    description: a tighter role tried on live traffic',
    '    grants: [api:read, api:write, api:query]',
    '    readOnly: true',
    '    network: { allow: [10.0.0.0/8] }',
    '    query: { tables: [items] }',
    '    enforce: false',
    '    breaker: { violations: 1, window: 1m, cooldown: 1h }',
    'agents:',
    '  office-01: { role: office, owner: test }',
    '  local-01: { role: local, owner: test }',
    '  pinned-01: { role: local, owner: test, network: { allow: [127.0.0.2/32] } }',
    '  trial-01: { role: trial, owner: test }',
    '',
  ].join('\n');

async function policies(t: { testdirName: string }, upstream: string): Promise<string> {
  const dir = join(t.testdirName, 'policies');
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'p.yaml'), POLICY(upstream));
  return dir;
}

t.test('network allowlists', async (t) => {
  const upstream = await startUpstream(t);
  const dir = await policies(t, upstream.url);
  const direct = await startGateway(t, { policies: dir });
  const behindProxy = await startGateway(t, { policies: dir, trustedProxies: ['127.0.0.1/32', '::1/128'] });
  const tokens = async (gw: typeof direct) => ({
    office: await gw.token('office-01'),
    local: await gw.token('local-01'),
    pinned: await gw.token('pinned-01'),
  });
  const d = await tokens(direct);
  const p = await tokens(behindProxy);
  const cases = [
    { name: 'peer inside the role network', gw: direct, token: d.local, xff: undefined, status: 200 },
    { name: 'peer outside the role network', gw: direct, token: d.office, xff: undefined, status: 403 },
    { name: 'spoofed X-Forwarded-For from an untrusted peer', gw: direct, token: d.office, xff: '10.1.2.3', status: 403 },
    { name: 'spoofed IPv6 X-Forwarded-For from an untrusted peer', gw: direct, token: d.office, xff: 'fd00::5', status: 403 },
    { name: 'agent network narrows the role network', gw: direct, token: d.pinned, xff: undefined, status: 403 },
    { name: 'trusted proxy names a caller inside', gw: behindProxy, token: p.office, xff: '10.1.2.3', status: 200 },
    { name: 'trusted proxy names an IPv6 caller inside', gw: behindProxy, token: p.office, xff: 'fd00::5', status: 200 },
    { name: 'trusted proxy, caller outside', gw: behindProxy, token: p.office, xff: '192.0.2.9', status: 403 },
    { name: 'client-prepended entry is not believed (right-most untrusted wins)', gw: behindProxy, token: p.office, xff: '10.1.2.3, 192.0.2.9', status: 403 },
    { name: 'chain of trusted proxies is skipped', gw: behindProxy, token: p.office, xff: '10.1.2.3, 127.0.0.1', status: 200 },
    { name: 'garbage in X-Forwarded-For', gw: behindProxy, token: p.office, xff: '10.1.2.3, not-an-ip', status: 403 },
    { name: 'trusted proxy without X-Forwarded-For: the peer counts', gw: behindProxy, token: p.office, xff: undefined, status: 403 },
  ];
  for (const c of cases) {
    await t.test(c.name, async (t) => {
      const seen = upstream.seen.length;
      const headers: Record<string, string> = { authorization: `Bearer ${c.token}` };
      if (c.xff !== undefined) headers['x-forwarded-for'] = c.xff;
      const res = await request(`${c.gw.url}/api/items`, { headers });
      const body = (await res.body.json()) as Record<string, unknown>;
      t.equal(res.statusCode, c.status);
      if (c.status === 403) {
        t.match(body, { type: 'urn:agentgate:problem:network_denied' });
        t.equal(upstream.seen.length, seen, 'the backend never saw it');
      }
    });
  }
  t.match(await direct.auditLines().then((l) => l.find((x) => x.reason === 'network_denied')), { reasonDetail: /127\.0\.0\.1.*not in 10\.0\.0\.0\/8, fd00::\/8/ });
});

t.test('shadow mode counts and audits, and lets the call through', async (t) => {
  const bodies: string[] = [];
  const upstream = await startUpstream(t, (req, res, body) => {
    bodies.push(body.toString('utf8'));
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"ok":true}');
  });
  const dir = await policies(t, upstream.url);
  const gw = await startGateway(t, { policies: dir });
  const token = await gw.token('trial-01');
  const auth = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
  const calls = [
    { name: 'read from outside the network', method: 'GET', path: '/items', body: undefined, reasons: ['network_denied'] },
    { name: 'write by a read-only role, with a value outside the list', method: 'POST', path: '/items', body: '{"kind":"huge"}', reasons: ['network_denied', 'read_only', 'out_of_scope'] },
    { name: 'raw rows from a role limited to aggregates', method: 'POST', path: '/query', body: '{"sql":"SELECT * FROM items"}', reasons: ['network_denied', 'read_only', 'not_aggregate'] },
  ];
  for (const c of calls) {
    const res = await request(`${gw.url}/api${c.path}`, { method: c.method as 'GET' | 'POST', headers: auth, body: c.body });
    t.equal(res.statusCode, 200, `${c.name}: let through`);
    await res.body.dump();
  }
  t.equal(bodies[1], '{"kind":"huge"}', 'the body forwarded is the body checked');
  t.equal(bodies[2], '{"sql":"SELECT * FROM items"}');
  const shadow = (reason: string) => `agentgate_shadow_refusals_total{agent="trial-01",reason="${reason}"}`;
  const text = await (await request(`${gw.metricsUrl}/metrics`)).body.text();
  const value = (line: string) => Number(text.split('\n').find((l) => l.startsWith(line))?.split(' ').at(-1) ?? 0);
  t.equal(value(shadow('network_denied')), 3);
  t.equal(value(shadow('read_only')), 2);
  t.equal(value(shadow('out_of_scope')), 1);
  t.equal(value(shadow('not_aggregate')), 1);
  t.notMatch(text, /agentgate_violations_total\{agent="trial-01"/, 'shadow refusals are not violations');
  t.equal(gw.gateway.store.breaker('trial-01'), undefined, 'the breaker never moved');
  const lines = (await gw.auditLines()).filter((l) => l.agent === 'trial-01');
  t.equal(lines.length, 3);
  t.same(
    lines.map((l) => [l.decision, (l.shadow as Array<{ reason: string }>).map((s) => s.reason)]),
    calls.map((c) => ['allow', c.reasons]),
  );
  await t.test('an out-of-scope route is still refused: shadow mode covers constraints, not grants', async (t) => {
    const res = await request(`${gw.url}/api/other`, { headers: auth });
    t.equal(res.statusCode, 403);
    t.match(await res.body.json(), { type: 'urn:agentgate:problem:unknown_route' });
  });
});
