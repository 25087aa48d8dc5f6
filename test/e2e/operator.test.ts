// The operator's contract, with real processes: the gateway, the CLI, the admin socket.
// Breaker trips at exactly N, forged tokens never count, a kill from the CLI refuses the next call
// and cuts a stream in progress, nothing is forgotten across kill -9, reloads keep a good policy.
import t from 'tap';
import { readFile, stat, writeFile, rm } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { request } from 'undici';
import { decodeJwt } from 'jose';
import { startUpstream } from '../helpers/gateway.js';
import { runCli, serveCli, writeConfig } from '../helpers/process.js';

function policyYaml(upstream: string, extraRole = ''): string {
  return [
    'backends:',
    '  svc:',
    `    upstream: ${upstream}`,
    '    scopes:',
    '      read: ["GET /items", "GET /items/:id", "GET /stream"]',
    '      admin: ["GET /admin"]',
    'roles:',
    '  probe:',
    '    grants: [svc:read]',
    '    breaker: { violations: 3, window: 1m, cooldown: 10m }',
    '  steady:',
    '    grants: [svc:read]',
    '    breaker: { violations: 2, window: 1m, cooldown: manual }',
    extraRole,
    'agents:',
    '  probe-01: { role: probe, owner: test }',
    '  probe-02: { role: probe, owner: test }',
    '  steady-01: { role: steady, owner: test }',
    '',
  ].join('\n');
}

t.test('breaker, kill switch, admin socket, restart, reload', async (t) => {
  // Gateways restarted inside subtests must outlive them: their teardown belongs to this test.
  const top = t;
  const upstream = await startUpstream(t, (req, res) => {
    if (req.url === '/stream') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('first chunk\n');
      // Never ends on its own: only a kill (or the teardown) stops it.
      const timer = setInterval(() => res.write('tick\n'), 50);
      res.on('close', () => clearInterval(timer));
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"ok":true}');
  });
  const dir = t.testdir({ policies: { 'svc.yaml': policyYaml(upstream.url) } });
  const config = await writeConfig(dir, join(dir, 'policies'));
  const socket = /admin:\s+\{ socket: "([^"]+)"/.exec(await readFile(config, 'utf8'))?.[1] ?? '';
  let gw = await serveCli(t, ['serve', '--config', config]);
  const cli = (...args: string[]) => runCli([...args, '--config', config]);
  const token = async (agent: string) => (await cli('token', '--agent', agent)).stdout.trim();
  const call = (tok: string, path: string) => request(`${gw.url}/svc${path}`, { headers: { authorization: `Bearer ${tok}` } });
  const status = async (tok: string, path: string) => {
    const res = await call(tok, path);
    const body = await res.body.text();
    return { status: res.statusCode, body, retryAfter: res.headers['retry-after'] };
  };

  await t.test('the admin socket is mode 0600', async (t) => {
    t.equal((await stat(socket)).mode & 0o777, 0o600);
  });

  const probe = await token('probe-01');
  await t.test('forged tokens naming the agent never count', async (t) => {
    const forged = `${probe.slice(0, probe.lastIndexOf('.') + 1)}${'A'.repeat(86)}`;
    for (let i = 0; i < 5; i++) t.equal((await status(forged, '/admin')).status, 401);
    t.equal((await status(probe, '/items')).status, 200, 'still admitted');
  });

  await t.test('trips at exactly N violations, not N-1', async (t) => {
    t.equal((await status(probe, '/admin')).status, 403);
    t.equal((await status(probe, '/nope')).status, 403);
    t.equal((await status(probe, '/items')).status, 200, 'N-1 violations: still closed');
    t.equal((await status(probe, '/admin')).status, 403);
    const suspended = await status(probe, '/items');
    t.equal(suspended.status, 403);
    t.match(JSON.parse(suspended.body), { type: 'urn:agentgate:problem:agent_suspended' });
    t.ok(Number(suspended.retryAfter) > 590 && Number(suspended.retryAfter) <= 600, `Retry-After ${suspended.retryAfter}`);
    t.equal((await status(await token('probe-02'), '/items')).status, 200, 'other agents of the role are unaffected');
  });

  const steady = await token('steady-01');
  await t.test('manual cooldown: open without Retry-After', async (t) => {
    await status(steady, '/admin');
    await status(steady, '/admin');
    const res = await status(steady, '/items');
    t.equal(res.status, 403);
    t.equal(res.retryAfter, undefined);
  });

  const victim = await token('probe-02');
  await t.test('a kill from the CLI refuses the next call and cuts a stream in progress', async (t) => {
    const stream = await call(victim, '/stream');
    t.equal(stream.statusCode, 200);
    const reader = stream.body[Symbol.asyncIterator]();
    const first = await reader.next();
    t.match(String(first.value), /first chunk/);
    const killed = await cli('kill', 'probe-02', '--reason', 'prompt injection suspected', '--socket', socket);
    t.equal(killed.code, 0, killed.stderr);
    t.match(killed.stdout, /killed probe-02 \(1 in-flight calls aborted\)/);
    await t.rejects(
      (async () => {
        for (;;) if ((await reader.next()).done) throw new Error('stream ended cleanly instead of being cut');
      })(),
      'the stream is cut, not finished',
    );
    const next = await status(victim, '/items');
    t.equal(next.status, 403);
    t.match(JSON.parse(next.body), { type: 'urn:agentgate:problem:agent_killed' });
  });

  await t.test('inventory', async (t) => {
    const res = await cli('agents', '--json', '--socket', socket);
    t.equal(res.code, 0, res.stderr);
    const agents = (JSON.parse(res.stdout) as { agents: Array<Record<string, unknown>> }).agents;
    t.match(agents, [
      { id: 'probe-01', role: 'probe', owner: 'test', breaker: 'open', killed: null, liveTokens: 1, lastSeen: String },
      { id: 'probe-02', killed: { reason: 'prompt injection suspected' } },
      { id: 'steady-01', breaker: 'open' },
    ]);
    const human = await cli('agents', '--socket', socket);
    t.match(human.stdout, /^AGENT\s+ROLE\s+OWNER\s+BREAKER/);
  });

  const revokedToken = await token('probe-01');
  await t.test('revoke by jti through the CLI', async (t) => {
    const jti = String(decodeJwt(revokedToken).jti);
    const res = await cli('revoke', '--jti', jti, '--socket', socket);
    t.equal(res.code, 0, res.stderr);
  });

  await t.test('kill -9 and restart: kills, revocations and open breakers survive', async (t) => {
    await gw.stop('SIGKILL');
    gw = await serveCli(top, ['serve', '--config', config]);
    t.match(JSON.parse((await status(victim, '/items')).body), { type: 'urn:agentgate:problem:agent_killed' });
    t.match(JSON.parse((await status(probe, '/items')).body), { type: 'urn:agentgate:problem:agent_suspended' });
    t.match(JSON.parse((await status(steady, '/items')).body), { type: 'urn:agentgate:problem:agent_suspended' });
    t.match(JSON.parse((await status(revokedToken, '/items')).body), { type: 'urn:agentgate:problem:token_invalid' });
  });

  await t.test('revive restores access', async (t) => {
    t.equal((await cli('revive', 'probe-02', '--socket', socket)).code, 0);
    t.equal((await status(victim, '/items')).status, 200);
    t.equal((await cli('revive', 'steady-01', '--socket', socket)).code, 0);
    t.equal((await status(steady, '/items')).status, 200, 'a manual breaker opens only by revive');
  });

  await t.test('break glass: kill and revive every agent', async (t) => {
    t.equal((await cli('kill', '--all', '--reason', 'incident', '--socket', socket)).code, 0);
    t.equal((await status(steady, '/items')).status, 403);
    t.equal((await cli('revive', '--all', '--socket', socket)).code, 0);
    t.equal((await status(steady, '/items')).status, 200);
  });

  await t.test('a broken policy is refused on reload and the old one keeps serving', async (t) => {
    await writeFile(join(dir, 'policies', 'broken.yaml'), 'roles:\n  probe2:\n    grants: [svc:nothing]\n    readonly: true\n');
    const res = await cli('reload', '--socket', socket);
    t.equal(res.code, 1);
    t.match(res.stderr, /broken\.yaml:3 {2}roles\.probe2\.grants\[0\]: unknown scope "svc:nothing"/);
    t.match(res.stderr, /broken\.yaml:4 {2}roles\.probe2\.readonly: unknown key/);
    t.equal((await status(steady, '/items')).status, 200);
    await rm(join(dir, 'policies', 'broken.yaml'));
    await writeFile(join(dir, 'policies', 'svc.yaml'), policyYaml(upstream.url).replace('read: ["GET /items", "GET /items/:id", "GET /stream"]', 'read: ["GET /items/:id"]'));
    const ok = await cli('reload', '--socket', socket);
    t.equal(ok.code, 0, ok.stderr);
    t.match(ok.stdout, /policies reloaded \(version 2/);
    t.equal((await status(steady, '/items')).status, 403, 'the narrowed policy is in force');
    t.equal((await status(steady, '/items/1')).status, 200);
  });

  await t.test('SIGHUP reloads too', async (t) => {
    await writeFile(join(dir, 'policies', 'svc.yaml'), policyYaml(upstream.url));
    gw.child.kill('SIGHUP');
    // Poll the admin socket, not the agent port: failed calls there would count as violations.
    // Raw calls (a CLI process per poll would cost a node start each); the CLI reads it once after.
    let version = 0;
    const deadline = Date.now() + 30_000;
    while (version < 3 && Date.now() < deadline) {
      version = Number((JSON.parse((await adminRaw(socket, 'GET', '/status', '')).body) as { policyVersion: number }).policyVersion);
      if (version < 3) await new Promise((resolve) => setTimeout(resolve, 20));
    }
    t.equal(version, 3, 'policy version 3 after SIGHUP');
    const shown = await cli('status', '--json', '--socket', socket);
    t.equal(shown.code, 0, shown.stderr);
    t.match(JSON.parse(shown.stdout), { policyVersion: 3 }, 'agentgate status says so too');
    t.equal((await status(victim, '/items')).status, 200, 'the wider policy is in force');
  });

  await t.test('malformed admin input gets problem documents', async (t) => {
    const cases = [
      { name: 'malformed JSON', method: 'POST', path: '/agents/probe-01/kill', body: '{not json', status: 400, type: 'invalid_request' },
      { name: 'missing reason', method: 'POST', path: '/agents/probe-01/kill', body: '{}', status: 400, type: 'invalid_request' },
      { name: 'blank reason', method: 'POST', path: '/agents/probe-01/kill', body: '{"reason":"  "}', status: 400, type: 'invalid_request' },
      { name: 'body not an object', method: 'POST', path: '/kill', body: '["x"]', status: 400, type: 'invalid_request' },
      { name: 'unknown agent', method: 'POST', path: '/agents/ghost/kill', body: '{"reason":"x"}', status: 404, type: 'agent_unknown' },
      { name: 'unknown endpoint', method: 'GET', path: '/nope', body: '', status: 404, type: 'not_found' },
      { name: 'wrong method', method: 'GET', path: '/kill', body: '', status: 405, type: 'method_not_allowed' },
      { name: 'revoke with nothing', method: 'POST', path: '/tokens/revoke', body: '{}', status: 400, type: 'invalid_request' },
    ];
    for (const c of cases) {
      const res = await adminRaw(socket, c.method, c.path, c.body);
      t.equal(res.status, c.status, c.name);
      t.equal(res.type, 'application/problem+json', c.name);
      t.match(JSON.parse(res.body), { type: `urn:agentgate:problem:${c.type}`, status: c.status, detail: String }, c.name);
    }
    t.equal((await status(victim, '/items')).status, 200, 'the gateway kept serving');
  });

  await t.test('a corrupt state file stops the start; --reset-state is the way out', async (t) => {
    await gw.stop('SIGTERM');
    await writeFile(join(dir, 'run', 'state.json'), '{"version": 1, "kills": [');
    await t.rejects(serveCli(top, ['serve', '--config', config]), /state file .* is unreadable/);
    gw = await serveCli(top, ['serve', '--config', config, '--reset-state']);
    t.equal((await status(probe, '/items')).status, 200, 'empty state after the explicit reset');
  });

  await t.test('CLI errors on a missing socket', async (t) => {
    const res = await cli('status', '--socket', join(dir, 'missing.sock'));
    t.equal(res.code, 1);
    t.match(res.stderr, /^agentgate: no admin socket at .*missing\.sock: is the gateway running\?/);
  });
});

function adminRaw(socketPath: string, method: string, path: string, body: string): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ socketPath, method, path, headers: body === '' ? {} : { 'content-type': 'application/json' } }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}
