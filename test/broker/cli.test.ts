// `agentgate credentials` and `agentgate keys rotate`, as real processes: offline on the state
// file when no gateway runs, and through the admin socket of a running gateway, whose broker then
// accepts the new secret at once (no restart).
import t from 'tap';
import { join } from 'node:path';
import { request } from 'undici';
import { runCli, serveCli, writeConfig } from '../helpers/process.js';
import { SHIPPED_POLICIES } from '../helpers/root.js';

const dir = t.testdir({});
const config = await writeConfig(dir, SHIPPED_POLICIES);
const cli = (...args: string[]) => runCli([...args, '--config', config], { cwd: dir });

async function tokenStatus(url: string, agent: string, secret: string): Promise<number> {
  const res = await request(`${url}/oauth/token`, {
    method: 'POST',
    headers: { authorization: `Basic ${Buffer.from(`${agent}:${secret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
    body: 'grant_type=client_credentials',
  });
  await res.body.dump();
  return res.statusCode;
}

t.test('offline: issue into the state file, then the gateway accepts it', async (t) => {
  const issued = await cli('credentials', 'issue', 'support-agent-01', '--json');
  t.equal(issued.code, 0, issued.stderr);
  const body = JSON.parse(issued.stdout) as { clientSecret: string; id: string };
  t.match(body.clientSecret, /^ags_[A-Za-z0-9_-]{43}$/);
  const state = await import('node:fs/promises').then((fs) => fs.readFile(join(dir, 'run', 'state.json'), 'utf8'));
  t.notOk(state.includes(body.clientSecret), 'only the hash is stored');
  t.ok(state.includes(body.id));

  const human = await cli('credentials', 'list', 'support-agent-01');
  t.equal(human.code, 0);
  t.match(human.stdout, /support-agent-01\s+client_secret\s+\S+\s+active/);
  t.equal((await cli('credentials', 'issue', 'nobody')).code, 1);
  t.equal((await cli('credentials', 'shred', 'support-agent-01')).code, 2);

  const gw = await serveCli(t, ['serve', '--config', config], { cwd: dir });
  t.equal(await tokenStatus(gw.url, 'support-agent-01', body.clientSecret), 200);
  await gw.stop();
});

t.test('online: issue, rotate, revoke and keys rotate act on the running gateway at once', async (t) => {
  const gw = await serveCli(t, ['serve', '--config', config], { cwd: dir });
  const issued = await cli('credentials', 'issue', 'data-agent-01');
  t.equal(issued.code, 0, issued.stderr);
  const secret = /client_secret: (\S+)/.exec(issued.stdout)?.[1] ?? '';
  t.match(issued.stdout, /shown only now/);
  t.equal(await tokenStatus(gw.url, 'data-agent-01', secret), 200, 'works without a restart');

  const rotated = await cli('credentials', 'rotate', 'data-agent-01', '--overlap', '0s', '--json');
  t.equal(rotated.code, 0, rotated.stderr);
  const next = JSON.parse(rotated.stdout) as { clientSecret: string; retiring: unknown[] };
  t.equal(next.retiring.length, 1);
  t.equal(await tokenStatus(gw.url, 'data-agent-01', secret), 401, 'the old secret ended (no overlap)');
  t.equal(await tokenStatus(gw.url, 'data-agent-01', next.clientSecret), 200);

  const list = JSON.parse((await cli('credentials', 'list', 'data-agent-01', '--json')).stdout) as { credentials: Array<{ status: string }> };
  t.same(list.credentials.map((c) => c.status).sort(), ['active', 'expired']);
  t.equal((await cli('credentials', 'revoke', 'data-agent-01')).code, 0);
  t.equal(await tokenStatus(gw.url, 'data-agent-01', next.clientSecret), 401, 'revoked');

  const before = (await (await fetch(`${gw.url}/.well-known/jwks.json`)).json()) as { keys: Array<{ kid: string }> };
  const keys = await cli('keys', 'rotate', '--json');
  t.equal(keys.code, 0, keys.stderr);
  const kid = (JSON.parse(keys.stdout) as { kid: string }).kid;
  const after = (await (await fetch(`${gw.url}/.well-known/jwks.json`)).json()) as { keys: Array<{ kid: string }> };
  t.equal(after.keys.length, before.keys.length + 1);
  t.ok(after.keys.some((k) => k.kid === kid));
  await gw.stop();
});
