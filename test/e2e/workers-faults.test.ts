// `workers: 2` under change and fault: a policy reload (admin socket) is in force on both workers
// when it is answered, and the primary killed with SIGKILL takes every worker down with it (they
// never serve without it: fail closed), so the agent port refuses connections.
import t from 'tap';
import { appendFile, readFile, writeFile } from 'node:fs/promises';
import { request as rawRequest } from 'node:http';
import { request } from 'undici';
import { join } from 'node:path';
import { startUpstream } from '../helpers/gateway.js';
import { brokerPolicies, clientKey } from '../helpers/broker.js';
import { runCli, serveCli, writeConfig, type ServedGateway } from '../helpers/process.js';
import { callSeen, until, workerPids } from '../helpers/workers.js';

const linux = process.platform === 'linux';

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

t.test('workers: 2 under reload and a dead primary', { skip: linux ? false : 'reads /proc to see which worker holds a connection' }, async (t) => {
  const key = await clientKey();
  const crm = await startUpstream(t);
  const dir = t.testdir({});
  const policies = await brokerPolicies(dir, key.publicJwk);
  const backends = join(policies, 'backends.yaml');
  await writeFile(backends, (await readFile(backends, 'utf8')).replace('upstream: http://127.0.0.1:9101', `upstream: ${crm.url}`));
  const config = await writeConfig(dir, policies);
  await appendFile(config, 'workers: 2\n');
  const gw = await serveCli(t, ['serve', '--config', config]);
  await until('two workers', () => (workerPids(gw).size === 2 ? true : null));

  await t.test('a reload over the admin socket is in force on both workers when it is answered', async (t) => {
    // A new agent on disk: its token (minted from the files) is refused until the reload.
    const agentsFile = (await runCli(['check', '--json', '--config', config])).stdout;
    t.match(agentsFile, /"valid":true/);
    const files = JSON.parse(agentsFile) as { policies: string[] };
    const target = files.policies.find((f) => f.endsWith('agents.yaml')) ?? files.policies[0] ?? '';
    const text = await readFile(target, 'utf8');
    await writeFile(target, text.replace(/^agents:\n/m, 'agents:\n  newbie-agent-01: { role: marketing, owner: qa }\n'));
    const minted = await runCli(['token', '--agent', 'newbie-agent-01', '--config', config]);
    t.equal(minted.code, 0, minted.stderr);
    const bearer = minted.stdout.trim();
    const before = new Set<number>();
    for (let i = 0; i < 12 && before.size < 2; i++) {
      const res = await callSeen(gw, bearer);
      t.not(res.status, 200, `before the reload, call ${i} is refused (${res.status})`);
      if (res.pid !== null) before.add(res.pid);
    }
    t.equal(before.size, 2, 'refused on both workers before the reload');
    const reloaded = await runCli(['reload', '--config', config]);
    t.equal(reloaded.code, 0, reloaded.stderr);
    // A joiner's tokens issued up to the reload's second are revoked (lifecycle): the one minted
    // before stays refused on both workers; one minted in a later second passes on both.
    const reloadSecond = Math.floor(Date.now() / 1000);
    const stale = new Set<number>();
    for (let i = 0; i < 12 && stale.size < 2; i++) {
      const res = await callSeen(gw, bearer);
      t.equal(res.status, 401, `the token minted before the reload stays refused (${i})`);
      if (res.pid !== null) stale.add(res.pid);
    }
    t.equal(stale.size, 2, 'the joiner revocation holds on both workers');
    await until('the next second', () => (Math.floor(Date.now() / 1000) > reloadSecond ? true : null));
    const fresh = await runCli(['token', '--agent', 'newbie-agent-01', '--config', config]);
    t.equal(fresh.code, 0, fresh.stderr);
    const after = new Set<number>();
    for (let i = 0; i < 12; i++) {
      const res = await callSeen(gw, fresh.stdout.trim());
      t.equal(res.status, 200, `after the reload answered, call ${i} passes: ${res.body}`);
      if (res.pid !== null) after.add(res.pid);
    }
    t.equal(after.size, 2, 'served by both workers after the reload');
  });

  await t.test('session single: a newer session ends the older on every worker, a restarted one too', async (t) => {
    const issued = await runCli(['credentials', 'issue', 'single-agent-01', '--json', '--config', config]);
    t.equal(issued.code, 0, issued.stderr);
    const secret = String((JSON.parse(issued.stdout) as { clientSecret: unknown }).clientSecret);
    const basic = `Basic ${Buffer.from(`single-agent-01:${secret}`).toString('base64')}`;
    const tokenOf = async (): Promise<string> => {
      const res = await request(`${gw.url}/oauth/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basic }, body: 'grant_type=client_credentials' });
      const json = (await res.body.json()) as { access_token?: string };
      t.equal(res.statusCode, 200, JSON.stringify(json));
      return String(json.access_token);
    };
    const first = await tokenOf();
    const live = new Set<number>();
    for (let i = 0; i < 12 && live.size < 2; i++) {
      const res = await callSeen(gw, first);
      t.equal(res.status, 200, res.body);
      if (res.pid !== null) live.add(res.pid);
    }
    t.equal(live.size, 2, 'the first session is live on both workers');
    // A worker restarted now starts from a snapshot that holds no live session.
    const victim = workerPids(gw).get(0) ?? 0;
    process.kill(victim, 'SIGKILL');
    await until('a replacement worker', () => (workerPids(gw).size === 2 && workerPids(gw).get(0) !== victim ? true : null));
    const second = await tokenOf();
    const refusedOn = new Set<number>();
    for (let i = 0; i < 16; i++) {
      const res = await callSeen(gw, first);
      t.equal(res.status, 401, `the older session is ended (${i})`);
      if (res.pid !== null) refusedOn.add(res.pid);
    }
    t.ok(refusedOn.has(workerPids(gw).get(0) ?? -1), 'ended on the restarted worker too');
    t.equal((await callSeen(gw, second)).status, 200, 'the newer session works');
  });

  await t.test('status over the admin socket names the workers', async (t) => {
    const status = await runCli(['status', '--json', '--config', config]);
    t.equal(status.code, 0, status.stderr);
    t.match(JSON.parse(status.stdout), { status: 'serving', pid: gw.child.pid, workers: 2, workersServing: 2 });
  });

  await t.test('a primary killed with SIGKILL takes its workers down', async (t) => {
    const pids = [...workerPids(gw).values()];
    t.equal(pids.length, 2);
    gw.child.kill('SIGKILL');
    await until('every worker to exit', () => (pids.every((pid) => !alive(pid)) ? true : null));
    t.pass('no worker outlives its primary');
    const refused = await new Promise<string>((resolve) => {
      const req = rawRequest(`${gw.url}/crm/contacts`, { agent: false });
      req.on('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? 'error'));
      req.on('response', (res) => resolve(`answered ${res.statusCode}`));
      req.end();
    });
    t.equal(refused, 'ECONNREFUSED', 'nothing serves the agent port');
  });
});
