// Joiner, mover, leaver on reload, against the real process and its admin socket: `check --diff`
// says what the reload will do, `agentgate reload` does it before it answers (the leaver's and
// the mover's live tokens are refused at once, the leaver's client secret is gone, the joiner has
// nothing), each change is its own admin audit line; and an agent past its `expires` is refused.
import t from 'tap';
import { cp, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import { startGateway, startUpstream } from '../helpers/gateway.js';
import { runCli, serveCli, writeConfig } from '../helpers/process.js';

const BACKEND = (upstream: string) => ['backends:', '  svc:', `    upstream: ${upstream}`, '    scopes:', '      read: ["GET /items"]', '      write: ["POST /items"]'];
const ROLES = ['roles:', '  reader: { grants: [svc:read] }', '  writer: { grants: [svc:read, svc:write] }'];
const V1 = ['agents:', '  leaver-01: { role: reader, owner: test }', '  mover-01: { role: reader, owner: test }', '  stay-01: { role: reader, owner: test }'];
const V2 = ['agents:', '  mover-01: { role: writer, owner: test }', '  stay-01: { role: reader, owner: test }', '  joiner-01: { role: reader, owner: test }'];

t.test('a reload revokes leavers and movers at once, and joiners start with nothing', async (t) => {
  const upstream = await startUpstream(t);
  const dir = t.testdir({ policies: {}, old: {}, gw: {} });
  const write = (lines: string[]) => writeFile(join(dir, 'policies', 'p.yaml'), [...BACKEND(upstream.url), ...ROLES, ...lines, ''].join('\n'));
  await write(V1);
  const config = await writeConfig(join(dir, 'gw'), join(dir, 'policies'));
  const gw = await serveCli(t, ['serve', '--config', config]);
  t.teardown(() => gw.stop());
  const cli = (...args: string[]) => runCli([...args, '--config', config], { timeoutMs: 60_000 });
  const token = async (agent: string): Promise<string> => {
    const res = await cli('token', '--agent', agent);
    t.equal(res.code, 0, res.stderr);
    return res.stdout.trim();
  };
  const call = async (tok: string, method: 'GET' | 'POST' = 'GET') => {
    const res = await request(`${gw.url}/svc/items`, { method, headers: { authorization: `Bearer ${tok}` } });
    const text = await res.body.text();
    return res.statusCode >= 400 ? `${res.statusCode} ${String((JSON.parse(text) as { type: string }).type).replace('urn:agentgate:problem:', '')}` : String(res.statusCode);
  };
  const secretLogin = async (agent: string, secret: string) => {
    const res = await request(`${gw.url}/oauth/token`, {
      method: 'POST',
      headers: { authorization: `Basic ${Buffer.from(`${agent}:${secret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: 'grant_type=client_credentials',
    });
    return { status: res.statusCode, body: (await res.body.json()) as Record<string, unknown> };
  };

  const issued = await cli('credentials', 'issue', 'leaver-01', '--json');
  t.equal(issued.code, 0, issued.stderr);
  const leaverSecret = String((JSON.parse(issued.stdout) as { clientSecret: string }).clientSecret);
  t.equal((await secretLogin('leaver-01', leaverSecret)).status, 200, 'the leaver can log in before the reload');
  const leaver = await token('leaver-01');
  const mover = await token('mover-01');
  const stay = await token('stay-01');
  t.same(await Promise.all([call(leaver), call(mover), call(stay)]), ['200', '200', '200']);
  t.equal(await call(mover, 'POST'), '403 out_of_scope', 'the mover cannot write yet');

  // The next policy, checked against the one in force before anyone applies it.
  await cp(join(dir, 'policies'), join(dir, 'old'), { recursive: true });
  await write(V2);
  const diff = await cli('check', '--diff', join(dir, 'old'));
  t.equal(diff.code, 0, diff.stderr);
  t.same(diff.stdout.trim().split('\n'), [
    '+ joiner-01: joiner (role reader); gets nothing until credentials are issued',
    '    + svc:read',
    '- leaver-01: leaver (role reader); its live tokens and credentials are revoked at the reload',
    '    - svc:read',
    '~ mover-01: mover (role reader -> writer); its live tokens are revoked at the reload',
    '    + svc:write',
  ]);
  const diffJson = JSON.parse((await cli('check', '--diff', join(dir, 'old'), '--json')).stdout) as { changes: Array<{ agent: string; kind: string }> };
  t.same(diffJson.changes.map((c) => [c.agent, c.kind]), [['joiner-01', 'joiner'], ['leaver-01', 'leaver'], ['mover-01', 'mover']]);
  t.same(await Promise.all([call(leaver), call(mover)]), ['200', '200'], 'check changed nothing');

  const reloaded = await cli('reload');
  t.equal(reloaded.code, 0, reloaded.stderr);
  // Right after the reload answered: no waiting.
  t.same(await Promise.all([call(leaver), call(mover), call(stay)]), ['401 token_invalid', '401 token_invalid', '200'], 'leaver and mover refused, the others untouched');
  const login = await secretLogin('leaver-01', leaverSecret);
  t.match(login, { status: 401, body: { error: 'invalid_client' } }, 'the leaver\'s secret is gone');
  const joinerCreds = await cli('credentials', 'list', 'joiner-01', '--json');
  t.equal(joinerCreds.code, 0, joinerCreds.stderr);
  t.same((JSON.parse(joinerCreds.stdout) as { credentials: unknown[] }).credentials, [], 'the joiner has no credentials');
  t.match(await secretLogin('joiner-01', leaverSecret), { status: 401, body: { error: 'invalid_client' } });

  // A new token of the mover carries its new role (tokens revoked are those issued up to the
  // reload's second: wait for the next one before minting).
  const revokedUntil = Math.floor(Date.now() / 1000);
  while (Math.floor(Date.now() / 1000) <= revokedUntil) await new Promise((r) => setTimeout(r, 50));
  const moved = await token('mover-01');
  t.same([await call(moved, 'POST'), await call(moved)], ['200', '200'], 'the mover writes with a new token');

  await gw.stop();
  const lines = (await readFile(join(dir, 'gw', 'run', 'audit.jsonl'), 'utf8'))
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l.kind === 'admin' && String(l.action).startsWith('agent.'));
  t.match(lines, [
    { action: 'agent.joiner', agent: 'joiner-01', by: 'policy reload', fromRole: null, toRole: 'reader', grantsAdded: ['svc:read'], credentialsRevoked: 0, aborted: 0 },
    { action: 'agent.leaver', agent: 'leaver-01', by: 'policy reload', fromRole: 'reader', toRole: null, grantsRemoved: ['svc:read'], credentialsRevoked: 1 },
    { action: 'agent.mover', agent: 'mover-01', by: 'policy reload', fromRole: 'reader', toRole: 'writer', grantsAdded: ['svc:write'], tokensRevokedUntil: Number },
  ]);
  t.equal(lines.length, 3, 'one admin line per change, none for stay-01');
});

t.test('check --diff with an invalid old folder says which side is wrong', async (t) => {
  const dir = t.testdir({ policies: { 'p.yaml': [...BACKEND('http://127.0.0.1:9'), ...ROLES, ...V1, ''].join('\n') }, old: { 'p.yaml': 'roles: [\n' }, gw: {} });
  const config = await writeConfig(join(dir, 'gw'), join(dir, 'policies'));
  const res = await runCli(['check', '--diff', join(dir, 'old'), '--config', config]);
  t.equal(res.code, 1);
  t.match(res.stderr, /\(--diff\) .*old\/p\.yaml:\d+/);
});

t.test('an agent past its expires is refused, and gets no token', async (t) => {
  const upstream = await startUpstream(t);
  const dir = t.testdir({
    policies: { 'p.yaml': [...BACKEND(upstream.url), ...ROLES, 'agents:', '  old-01: { role: reader, owner: test, expires: 2026-01-31 }', '  new-01: { role: reader, owner: test, expires: 2027-03-31 }', ''].join('\n') },
  });
  let now = Date.UTC(2026, 0, 31, 23, 59, 0);
  const gw = await startGateway(t, { policies: join(dir, 'policies'), clock: { now: () => now } });
  const token = await gw.token('old-01', { ttlSeconds: 3600 });
  const claims = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString()) as { exp: number; iat: number };
  t.equal(claims.exp - claims.iat, 60, 'no token outlives its agent');
  const call = async (tok: string) => {
    const res = await request(`${gw.url}/svc/items`, { headers: { authorization: `Bearer ${tok}` } });
    return { status: res.statusCode, body: await res.body.text() };
  };
  t.equal((await call(token)).status, 200, 'still valid on its last day');
  now = Date.UTC(2026, 1, 1, 0, 0, 0);
  const refused = await call(token);
  t.equal(refused.status, 403);
  t.match(JSON.parse(refused.body), { type: 'urn:agentgate:problem:agent_expired', title: 'Agent expired' });
  await t.rejects(gw.token('old-01'), { message: /^unauthorized_client: agent "old-01" expired/ }, 'the broker issues nothing to an expired agent');
  t.equal((await call(await gw.token('new-01'))).status, 200);
  const lines = await gw.auditLines();
  t.match(lines.find((l) => l.reason === 'agent_expired'), { agent: 'old-01', status: 403, reasonDetail: 'agent expired at 2026-02-01T00:00:00.000Z' });
});
