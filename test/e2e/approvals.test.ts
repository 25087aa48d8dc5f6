// Human approval, the whole cycle with real processes: the gateway (`agentgate serve`), the CLI
// (`approvals`, `approve`, `deny`) over the admin socket, an agent repeating the exact request with
// X-AgentGate-Approval. Every misuse is refused, and approvals survive a restart like kills do.
import t from 'tap';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import { startUpstream } from '../helpers/gateway.js';
import { runCli, serveCli, writeConfig } from '../helpers/process.js';

t.test('approval cycle through the CLI and the admin socket', async (t) => {
  const top = t;
  const received: string[] = [];
  const upstream = await startUpstream(t, (req, res, body) => {
    received.push(`${req.method ?? ''} ${req.url ?? ''} ${body.toString('utf8')}`);
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"ok":true}');
  });
  const dir = t.testdir({
    policies: {
      'p.yaml': [
        'backends:',
        '  tickets:',
        `    upstream: ${upstream.url}`,
        '    scopes:',
        '      read: ["GET /tickets"]',
        '      config.write:',
        '        routes: ["PUT /config"]',
        '        approval: required',
        'roles:',
        '  ops:',
        '    grants: [tickets:read, tickets:config.write]',
        'agents:',
        '  ops-01: { role: ops, owner: test }',
        '  ops-02: { role: ops, owner: test }',
        '',
      ].join('\n'),
    },
  });
  const config = await writeConfig(dir, join(dir, 'policies'));
  let gw = await serveCli(top, ['serve', '--config', config]);
  const cli = (...args: string[]) => runCli([...args, '--config', config]);
  const token = (await cli('token', '--agent', 'ops-01')).stdout.trim();
  const other = (await cli('token', '--agent', 'ops-02')).stdout.trim();
  const put = (body: string, headers: Record<string, string> = {}, tok = token, path = '/config') =>
    request(`${gw.url}/tickets${path}`, { method: 'PUT', headers: { authorization: `Bearer ${tok}`, 'content-type': 'application/json', ...headers }, body });
  const answer = async (res: Awaited<ReturnType<typeof put>>) => ({ status: res.statusCode, body: (await res.body.json()) as Record<string, unknown> });

  const change = '{"autoCloseDays":3}';
  const first = await answer(await put(change));
  t.equal(first.status, 403);
  t.match(first.body, { type: 'urn:agentgate:problem:approval_required', approvalId: /^apr_/ });
  const id = String(first.body.approvalId);
  t.equal(received.length, 0, 'nothing reached the backend');

  await t.test('asking again for the same request returns the same pending approval', async (t) => {
    const again = await answer(await put(change));
    t.equal(again.body.approvalId, id);
  });

  await t.test('the operator lists it', async (t) => {
    const listed = await cli('approvals');
    t.equal(listed.code, 0, listed.stderr);
    t.match(listed.stdout, new RegExp(`${id}\\s+pending\\s+ops-01\\s+PUT /tickets/config`));
    const json = JSON.parse((await cli('approvals', id, '--json')).stdout) as Record<string, unknown>;
    t.match(json, { id, status: 'pending', agent: 'ops-01', method: 'PUT', path: '/config', digest: /^[0-9a-f]{64}$/, bodySha256: /^[0-9a-f]{64}$/ });
  });

  const misuse = [
    { name: 'the header on a still-pending approval', body: change, header: id, reason: 'approval_invalid', detail: /still waiting/ },
    { name: 'an unknown approval id', body: change, header: 'apr_00000000-0000-0000-0000-000000000000', reason: 'approval_invalid', detail: /no approval/ },
    { name: 'a malformed approval id', body: change, header: '../../etc', reason: 'approval_invalid', detail: /no approval/ },
  ];
  for (const m of misuse) {
    await t.test(`refused before approval: ${m.name}`, async (t) => {
      const res = await answer(await put(m.body, { 'x-agentgate-approval': m.header }));
      t.equal(res.status, 403);
      t.match(res.body, { type: `urn:agentgate:problem:${m.reason}`, detail: m.detail });
    });
  }

  await t.test('deny needs a reason; approve records the approver', async (t) => {
    const noReason = await cli('deny', id);
    t.equal(noReason.code, 2);
    const approved = await cli('approve', id, '--reason', 'change ticket 4711');
    t.equal(approved.code, 0, approved.stderr);
    t.match(approved.stdout, new RegExp(`approved ${id}: ops-01 PUT /config`));
    const twice = await cli('approve', id);
    t.equal(twice.code, 1, 'a decided approval cannot be decided again');
    t.match(twice.stderr, /already approved/);
  });

  await t.test('restart: the approval survives in the state file', async (t) => {
    t.equal(await gw.stop(), 0);
    gw = await serveCli(top, ['serve', '--config', config]);
    t.match(JSON.parse((await cli('approvals', id, '--json')).stdout), { status: 'approved' });
  });

  const afterApproval = [
    { name: 'a different body', tok: token, body: '{"autoCloseDays":30}', path: '/config', detail: /different request/ },
    { name: 'another agent presenting it', tok: other, body: change, path: '/config', detail: /different request/ },
    { name: 'the same body with different whitespace', tok: token, body: '{"autoCloseDays": 3}', path: '/config', detail: /different request/ },
  ];
  for (const m of afterApproval) {
    await t.test(`refused after approval: ${m.name}`, async (t) => {
      const res = await answer(await put(m.body, { 'x-agentgate-approval': id }, m.tok, m.path));
      t.equal(res.status, 403);
      t.match(res.body, { type: 'urn:agentgate:problem:approval_invalid', detail: m.detail });
    });
  }

  await t.test('the exact request passes once', async (t) => {
    const ok = await put(change, { 'x-agentgate-approval': id });
    t.equal(ok.statusCode, 200);
    await ok.body.dump();
    t.same(received, [`PUT /config ${change}`], 'the backend got exactly the approved body, once');
    const replay = await answer(await put(change, { 'x-agentgate-approval': id }));
    t.equal(replay.status, 403);
    t.match(replay.body, { type: 'urn:agentgate:problem:approval_invalid', detail: /already used/ });
    t.equal(received.length, 1);
  });

  await t.test('a denied approval is refused', async (t) => {
    const pending = await answer(await put('{"autoCloseDays":1}'));
    const next = String(pending.body.approvalId);
    t.not(next, id);
    const denied = await cli('deny', next, '--reason', 'not during the freeze');
    t.equal(denied.code, 0, denied.stderr);
    const res = await answer(await put('{"autoCloseDays":1}', { 'x-agentgate-approval': next }));
    t.match(res.body, { type: 'urn:agentgate:problem:approval_invalid', detail: /denied/ });
  });

  await t.test('approver and decision are in the audit trail', async (t) => {
    await gw.stop();
    const lines = (await readFile(join(dir, 'run', 'audit.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    t.match(lines.find((l) => l.action === 'approve'), { kind: 'admin', approvalId: id, decision: 'allow', reason: 'none', approval: 'approved', agent: 'ops-01', by: /\(pid \d+\)$/, detail: 'change ticket 4711', peer: { uid: Number, pid: Number } });
    t.match(lines.find((l) => l.action === 'deny'), { approval: 'denied', detail: 'not during the freeze' });
    t.match(lines.find((l) => l.approvalId === id && l.kind === 'proxy'), { decision: 'allow', status: 200, path: '/config' });
  });
});

t.test('an approval expires', async (t) => {
  const upstream = await startUpstream(t);
  const dir = t.testdir({
    policies: {
      'p.yaml': [
        'backends:',
        '  svc:',
        `    upstream: ${upstream.url}`,
        '    scopes:',
        '      act:',
        '        - { route: POST /act, approval: { ttl: 10s } }',
        'roles:',
        '  r: { grants: [svc:act] }',
        'agents:',
        '  r-01: { role: r, owner: test }',
        '',
      ].join('\n'),
    },
  });
  // An injected clock stands in for the ten seconds.
  const { startGateway } = await import('../helpers/gateway.js');
  let now = Date.now();
  const gw = await startGateway(t, { policies: join(dir, 'policies'), clock: { now: () => now } });
  const token = await gw.token('r-01');
  const call = (headers: Record<string, string> = {}) => request(`${gw.url}/svc/act`, { method: 'POST', headers: { authorization: `Bearer ${token}`, ...headers }, body: 'x' });
  const first = (await (await call()).body.json()) as { approvalId: string };
  const decided = await gw.gateway.store.decideApproval(first.approvalId, 'approved', 'test', null);
  t.equal(decided?.status, 'approved');
  now += 11_000;
  const res = await call({ 'x-agentgate-approval': first.approvalId });
  t.equal(res.statusCode, 403);
  t.match(await res.body.json(), { type: 'urn:agentgate:problem:approval_invalid', detail: /expired/ });
  t.equal(upstream.seen.length, 0);
});
