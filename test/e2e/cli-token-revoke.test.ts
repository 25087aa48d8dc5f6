// `agentgate token --ttl` beyond the role's token.ttl is refused with the cap in the message (it
// was silently shortened), and `agentgate revoke` says when a jti cannot be ours and takes the
// token itself (--token T), against a running gateway over its admin socket.
import t from 'tap';
import { join } from 'node:path';
import { decodeJwt } from 'jose';
import { SHIPPED_POLICIES } from '../helpers/root.js';
import { runCli, serveCli, writeConfig } from '../helpers/process.js';

const dir = t.testdir({});
const config = await writeConfig(join(dir, 'gw'), SHIPPED_POLICIES);
const cli = (...args: string[]) => runCli([...args, '--config', config], { timeoutMs: 60_000 });

t.test('token --ttl', async (t) => {
  const refusals = [
    { args: ['--agent', 'data-agent-01', '--ttl', '48h'], line: /^agentgate: --ttl 48h is longer than role data allows \(token\.ttl 10m\); ask for 10m or less\n$/ },
    { args: ['--agent', 'data-agent-01', '--ttl', '11m'], line: /token\.ttl 10m/ },
    { args: ['--agent', 'marketing-agent-03', '--ttl', '31m'], line: /role marketing allows \(token\.ttl 30m\)/ },
  ];
  for (const r of refusals) {
    const res = await cli('token', ...r.args);
    t.equal(res.code, 2, r.args.join(' '));
    t.match(res.stderr, r.line);
    t.equal(res.stdout, '', 'no token printed');
  }
  const exact = await cli('token', '--agent', 'data-agent-01', '--ttl', '10m');
  t.equal(exact.code, 0, exact.stderr);
  const claims = decodeJwt(exact.stdout.trim());
  t.equal(Number(claims.exp) - Number(claims.iat), 600, 'the cap itself is allowed');
});

t.test('revoke --jti and --token', async (t) => {
  const gw = await serveCli(t, ['serve', '--config', config], { timeoutMs: 60_000 });
  t.teardown(() => gw.stop());
  const minted = await cli('token', '--agent', 'data-agent-01');
  t.equal(minted.code, 0, minted.stderr);
  const token = minted.stdout.trim();
  const call = async (): Promise<number> => (await fetch(`${gw.url}/bi/reports`, { headers: { authorization: `Bearer ${token}` } })).status;
  t.not(await call(), 401, 'the token works');

  for (const jti of ['nope', "' OR 1=1", 'A'.repeat(200), '00000000-0000-0000-0000-00000000000Z']) {
    const res = await cli('revoke', '--jti', jti);
    t.equal(res.code, 1, `revoke --jti ${jti.slice(0, 20)}`);
    t.match(res.stderr, /^agentgate: .*no token of this gateway has jti .*nothing was revoked\n$/);
    t.notMatch(res.stdout, /revoked/);
  }
  for (const bad of ['garbage', 'a.b.c', `${token.split('.')[0] ?? ''}.e30.x`]) {
    const res = await cli('revoke', '--token', bad);
    t.equal(res.code, 2, `revoke --token ${bad.slice(0, 20)}`);
    t.match(res.stderr, /^agentgate: --token: not an access token/);
  }
  const both = await cli('revoke', '--token', token, '--jti', String(decodeJwt(token).jti));
  t.equal(both.code, 2);
  t.match(both.stderr, /revoke needs one of --token T, --jti J or --agent A/);

  const revoked = await cli('revoke', '--token', token);
  t.equal(revoked.code, 0, revoked.stderr);
  t.match(revoked.stdout, new RegExp(`^revoked token ${String(decodeJwt(token).jti)}`));
  t.equal(await call(), 401, 'the next call with it is 401');
});
