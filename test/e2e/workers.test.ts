// `workers: 2`: a real `agentgate serve` primary with two real worker processes on one agent port.
// Calls spread over both workers (which process holds each connection is read from /proc), a kill
// over the admin socket refuses every later call on every worker and cuts the calls in flight on
// both, a maxUses: 1 token is admitted exactly once under concurrent calls across workers, the one
// audit chain verifies, and a worker killed with SIGKILL is replaced while killed agents stay
// refused. Waits poll with deadlines; nothing is timed.
import t from 'tap';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Client, request } from 'undici';
import { startUpstream } from '../helpers/gateway.js';
import { brokerPolicies, clientKey } from '../helpers/broker.js';
import { runCli, serveCli, writeConfig } from '../helpers/process.js';
import { parseExposition, sumOf } from '../helpers/prom.js';
import { callSeen, ownerOf, until, workerPids } from '../helpers/workers.js';

const linux = process.platform === 'linux';

t.test('workers: 2 share one kill, one use count and one audit chain', { skip: linux ? false : 'reads /proc to see which worker holds a connection' }, async (t) => {
  const key = await clientKey();
  const crm = await startUpstream(t, (req, res) => {
    // Held without an answer: a call in flight until the kill (or the teardown) ends it.
    if ((req.url ?? '').startsWith('/tags')) return;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"ok":true}');
  });
  const dir = t.testdir({});
  const policies = await brokerPolicies(dir, key.publicJwk, { maxUses: 1 });
  const backends = join(policies, 'backends.yaml');
  await writeFile(backends, (await readFile(backends, 'utf8')).replace('upstream: http://127.0.0.1:9101', `upstream: ${crm.url}`));
  const config = await writeConfig(dir, policies);
  await writeFile(config, `${await readFile(config, 'utf8')}workers: 2\n`);

  const checked = await runCli(['check', '--config', config]);
  t.match(checked.stdout, /2 worker processes/, 'check shows the setting');
  const gw = await serveCli(t, ['serve', '--config', config]);
  t.match(gw.output(), /with 2 worker processes/);
  const port = Number(new URL(gw.url).port);
  const pids = await until('two workers', () => (workerPids(gw).size === 2 ? workerPids(gw) : null));
  t.not(pids.get(0), pids.get(1), 'two worker processes');
  t.notOk([...pids.values()].includes(gw.child.pid ?? -1), 'the primary does not serve the agent port');

  const token = async (agent: string): Promise<string> => {
    const res = await runCli(['token', '--agent', agent, '--config', config]);
    t.equal(res.code, 0, res.stderr);
    return res.stdout.trim();
  };
  const support = await token('marketing-agent-03');

  /** One call on its own connection; resolves its status, body and the worker that served it. */
  const call = async (bearer: string, path = '/crm/contacts'): Promise<{ status: number; body: string; pid: number | null }> => {
    const client = new Client(gw.url);
    try {
      const res = await client.request({ method: 'GET', path, headers: { authorization: `Bearer ${bearer}` } });
      return { status: res.statusCode, body: await res.body.text(), pid: null };
    } finally {
      await client.close();
    }
  };


  await t.test('calls spread over both workers', async (t) => {
    const served = new Set<number>();
    for (let i = 0; i < 12 && served.size < 2; i++) {
      const res = await callSeen(gw, support);
      t.equal(res.status, 200, res.body);
      if (res.pid !== null) served.add(res.pid);
    }
    t.equal(served.size, 2, `both workers served calls (${[...served].join(', ')})`);
  });

  await t.test('a maxUses: 1 token is admitted exactly once under concurrent calls', async (t) => {
    for (const round of [1, 2, 3]) {
      const metered = await token('metered-agent-01');
      const results = await Promise.all(Array.from({ length: 8 }, () => call(metered)));
      const ok = results.filter((r) => r.status === 200).length;
      t.equal(ok, 1, `round ${round}: one call of eight passes`);
      for (const r of results.filter((r) => r.status !== 200)) t.match(r, { status: 401, body: /token_invalid/ });
    }
  });

  await t.test('a kill over the admin socket is in force on every worker when it is answered', async (t) => {
    const victim = await token('marketing-agent-03');
    // A call in flight through each worker while the kill is made.
    const { request: rawRequest } = await import('node:http');
    const streams: Array<Promise<number>> = [];
    const streamPids = new Set<number>();
    for (let i = 0; i < 12 && streamPids.size < 2; i++) {
      const seen = crm.seen.length;
      const req = rawRequest(`${gw.url}/crm/tags`, { headers: { authorization: `Bearer ${victim}`, connection: 'keep-alive' }, agent: false });
      streams.push(
        new Promise<number>((done) => {
          req.on('response', (res) => {
            res.resume();
            res.on('close', () => done(res.statusCode ?? 0));
          });
          req.on('error', () => done(0));
        }),
      );
      req.end();
      await until('the call to reach the backend', () => (crm.seen.length > seen ? true : null));
      const pid = await ownerOf(port, req.socket?.localPort ?? 0, [...workerPids(gw).values()]);
      if (pid !== null) streamPids.add(pid);
    }
    t.equal(streamPids.size, 2, 'a call in flight on each worker');
    const killed = await runCli(['kill', 'marketing-agent-03', '--reason', 'workers test', '--json', '--config', config]);
    t.equal(killed.code, 0, killed.stderr);
    t.match(killed.stdout, /"aborted":\s*([2-9]|\d\d)/, 'the answer counts the calls cut on the workers');
    // Every later call, on whichever worker, is refused; the calls below land on both.
    const refusedOn = new Set<number>();
    for (let i = 0; i < 16; i++) {
      const res = await callSeen(gw, support);
      t.equal(res.status, 403, `call ${i} after the kill is refused`);
      t.match(res.body, /agent_killed/);
      if (res.pid !== null) refusedOn.add(res.pid);
    }
    t.equal(refusedOn.size, 2, 'refused on both workers');
    const ended = await Promise.all(streams);
    t.ok(ended.length >= 2, `every call in flight ended: the kill cut them on both workers (${ended.join(', ')})`);
  });

  await t.test('a worker killed with SIGKILL is replaced, and the kill holds on the new one', async (t) => {
    const before = workerPids(gw);
    const victimPid = before.get(0) ?? 0;
    process.kill(victimPid, 'SIGKILL');
    const after = await until('a replacement worker', () => {
      const now = workerPids(gw);
      return now.size === 2 && now.get(0) !== victimPid ? now : null;
    });
    t.not(after.get(0), victimPid, 'slot 0 has a new process');
    t.match(gw.output(), /worker exited; restarting it/, 'the restart is logged');
    const served = new Set<number>();
    for (let i = 0; i < 16; i++) {
      const res = await callSeen(gw, support);
      t.equal(res.status, 403, `call ${i} after the restart is still refused`);
      if (res.pid !== null) served.add(res.pid);
    }
    t.ok(served.has(after.get(0) ?? -1), 'the new worker refused calls too');
    const other = await token('metered-agent-01');
    t.equal((await call(other)).status, 200, 'an agent not killed is still served');
  });

  await t.test('/metrics aggregates the workers; /readyz counts them', async (t) => {
    const scrape = async (): Promise<ReturnType<typeof parseExposition>> => {
      const scraped = await request(`${gw.metricsUrl}/metrics`);
      t.equal(scraped.statusCode, 200);
      return parseExposition(await scraped.body.text());
    };
    const before = await scrape();
    // Six allowed calls on six connections (so on both workers): the sum grows by exactly six.
    for (let i = 0; i < 6; i++) t.equal((await call(await token('metered-agent-01'))).status, 200);
    const exposition = await scrape();
    const allowed = (e: ReturnType<typeof parseExposition>): number => sumOf(e, 'agentgate_requests_total', { decision: 'allow' });
    t.equal(allowed(exposition) - allowed(before), 6, 'allowed calls summed over the workers');
    // The worker killed with SIGKILL took its own counts with it; the 16 refused after it are counted.
    const killedRefusals = sumOf(exposition, 'agentgate_requests_total', { reason: 'agent_killed' });
    t.ok(killedRefusals >= 16, `agent_killed refusals summed over the workers (${killedRefusals})`);
    t.equal(exposition.samples.get('agentgate_agent_killed{agent="marketing-agent-03"}'), 1, 'a state gauge is the primary\'s, not summed');
    t.equal(exposition.samples.get('agentgate_agent_killed{agent="metered-agent-01"}'), 0);
    t.equal(exposition.samples.get('agentgate_state_available'), 1);
    t.ok((exposition.samples.get('agentgate_audit_writable') ?? 0) === 1, 'audit writable, once');
    const ready = await request(`${gw.metricsUrl}/readyz`);
    t.equal(ready.statusCode, 200);
    t.match(await ready.body.json(), { status: 'ready', workers: 2, workersServing: 2 });
  });

  await t.test('the one audit chain verifies', async (t) => {
    await gw.stop();
    const verified = await runCli(['audit', 'verify', '--config', config]);
    t.equal(verified.code, 0, verified.stdout + verified.stderr);
    const lines = (await readFile(join(dir, 'run', 'audit.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { kind?: string; reason?: string; action?: string });
    t.ok(lines.some((l) => l.action === 'kill'), 'the kill is in the chain');
    t.ok(lines.filter((l) => l.reason === 'agent_killed').length >= 32, 'every refused call is in the chain');
  });
});

