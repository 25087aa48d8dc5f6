// Issue 12: checks only read, one commit writes. `agentgate explain` next to a live gateway spends
// no use and never rewrites the state file; a refused call spends no use; requests node's parser
// refuses answer with a problem whose status is the HTTP status, and are audited.
import t from 'tap';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import { startUpstream } from '../helpers/gateway.js';
import { brokerPolicies, clientKey } from '../helpers/broker.js';
import { runCli, serveCli, writeConfig } from '../helpers/process.js';
import { buildRequest, rawRequest } from '../helpers/raw.js';

t.test('explain never commits: a maxUses 1 token is still whole after two explains', async (t) => {
  const key = await clientKey();
  const crm = await startUpstream(t);
  const dir = t.testdir({});
  const policies = await brokerPolicies(dir, key.publicJwk, { maxUses: 1 });
  const backends = join(policies, 'backends.yaml');
  await writeFile(backends, (await readFile(backends, 'utf8')).replace('upstream: http://127.0.0.1:9101', `upstream: ${crm.url}`));
  const config = await writeConfig(dir, policies);
  let gw = await serveCli(t, ['serve', '--config', config]);
  const stateFile = join(dir, 'run', 'state.json');
  // A kill written by the live gateway: explain must neither spend nor overwrite it.
  const killed = await runCli(['kill', 'keyed-agent-01', '--reason', 'issue 12', '--config', config]);
  t.equal(killed.code, 0, killed.stderr);
  const token = (await runCli(['token', '--agent', 'metered-agent-01', '--config', config])).stdout.trim();
  // The gateway itself keeps writing the file (audit checkpoints); stopped, only explain could.
  await gw.stop();
  const before = await readFile(stateFile);

  for (const attempt of [1, 2]) {
    const explained = await runCli(['explain', '--token', token, '--json', 'GET', '/crm/contacts', '--config', config]);
    t.equal(explained.code, 0, explained.stderr);
    t.match(JSON.parse(explained.stdout), { decision: 'allow', agent: 'metered-agent-01', route: 'GET /contacts' }, `explain ${attempt} allows`);
    t.same(await readFile(stateFile), before, `the state file is byte-identical after explain ${attempt}`);
  }
  gw = await serveCli(t, ['serve', '--config', config]);
  const call = async (path: string): Promise<{ status: number; body: string }> => {
    const res = await request(`${gw.url}${path}`, { headers: { authorization: `Bearer ${token}` } });
    return { status: res.statusCode, body: await res.body.text() };
  };
  t.match(await call('/crm/export'), { status: 403, body: /out_of_scope/ }, 'a refused call');
  t.equal((await call('/crm/contacts')).status, 200, 'the one use is still there: neither explain nor the refusal spent it');
  t.match(await call('/crm/contacts'), { status: 401, body: /token_invalid/ }, 'and it is spent once');
  t.equal(crm.seen.length, 1, 'the backend saw exactly one call');
  const status = await runCli(['agents', '--json', '--config', config]);
  t.match(status.stdout, /keyed-agent-01/, 'the kill written before the explains is still in force');
  const again = await runCli(['explain', '--token', token, '--json', 'GET', '/crm/contacts', '--config', config]);
  t.match(JSON.parse(again.stdout), { decision: 'deny', reason: 'token_invalid', why: 'spent' }, 'explain sees the spent token');
});

t.test('parser refusals: the problem status is the HTTP status, and each is audited', async (t) => {
  const key = await clientKey();
  const dir = t.testdir({});
  const policies = await brokerPolicies(dir, key.publicJwk);
  const config = await writeConfig(dir, policies);
  const gw = await serveCli(t, ['serve', '--config', config]);
  const port = Number(new URL(gw.url).port);
  const cases = [
    { name: 'headers past the limit', raw: buildRequest('GET', '/crm/contacts', { 'x-big': 'a'.repeat(70_000) }), status: 431, reason: 'headers_too_large' },
    { name: 'a control byte in the target', raw: 'GET /crm/\x01 HTTP/1.1\r\nHost: x\r\n\r\n', status: 400, reason: 'target_invalid' },
    { name: 'Content-Length and Transfer-Encoding both', raw: 'POST /crm/contacts HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', status: 400, reason: 'target_invalid' },
    { name: 'not HTTP at all', raw: '\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n', status: 400, reason: 'target_invalid' },
  ];
  for (const c of cases) {
    await t.test(c.name, async (t) => {
      const res = await rawRequest(port, c.raw);
      t.equal(res.status, c.status);
      t.equal(res.headers['content-type'], 'application/problem+json');
      t.match(JSON.parse(res.body), { type: `urn:agentgate:problem:${c.reason}`, status: c.status });
    });
  }
  // Audited through the same outcome writer as any request (the audit log batches writes).
  const audit = join(dir, 'run', 'audit.jsonl');
  const deadline = Date.now() + 10_000;
  let reasons: string[] = [];
  while (Date.now() < deadline) {
    const text = await readFile(audit, 'utf8').catch(() => '');
    reasons = text.split('\n').filter((l) => l !== '').map((l) => (JSON.parse(l) as { reason: string }).reason);
    if (reasons.length >= cases.length) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  t.same(reasons.sort(), cases.map((c) => c.reason).sort(), 'one audit line per refusal, with its reason');
});
