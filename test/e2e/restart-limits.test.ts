// One-time things stay one-time across `kill -9`: a token's maxUses count, and a client
// assertion's jti (the memory driver keeps used jtis in memory only, so an assertion that could
// predate the restart is refused instead of risking a replay).
import t from 'tap';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { SignJWT } from 'jose';
import { request } from 'undici';
import { startUpstream } from '../helpers/gateway.js';
import { brokerPolicies, clientKey } from '../helpers/broker.js';
import { runCli, serveCli, writeConfig } from '../helpers/process.js';

t.test('maxUses and assertion replay survive kill -9', async (t) => {
  const top = t;
  const key = await clientKey();
  const crm = await startUpstream(t);
  const dir = t.testdir({});
  const policies = await brokerPolicies(dir, key.publicJwk, { maxUses: 3 });
  // The shipped backends point at fixed demo ports; send crm to the recorder.
  const { readFile, writeFile } = await import('node:fs/promises');
  const backends = join(policies, 'backends.yaml');
  await writeFile(backends, (await readFile(backends, 'utf8')).replace('upstream: http://127.0.0.1:9101', `upstream: ${crm.url}`));
  const config = await writeConfig(dir, policies);
  let gw = await serveCli(top, ['serve', '--config', config]);
  const token = (await runCli(['token', '--agent', 'metered-agent-01', '--config', config])).stdout.trim();
  const call = async (): Promise<number> => {
    const res = await request(`${gw.url}/crm/contacts`, { headers: { authorization: `Bearer ${token}` } });
    await res.body.dump();
    return res.statusCode;
  };
  const assertion = (): Promise<string> =>
    new SignJWT({ jti: randomUUID() })
      .setProtectedHeader({ alg: 'EdDSA' })
      .setIssuer('keyed-agent-01')
      .setSubject('keyed-agent-01')
      .setAudience('http://agentgate.test')
      .setIssuedAt()
      .setExpirationTime('2m')
      .sign(key.privateKey);
  const tokenRequest = async (jwt: string): Promise<{ status: number; body: Record<string, unknown> }> => {
    const res = await request(`${gw.url}/oauth/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'client_credentials', client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: jwt }).toString(),
    });
    return { status: res.statusCode, body: (await res.body.json()) as Record<string, unknown> };
  };

  t.equal(await call(), 200, 'use 1');
  t.equal(await call(), 200, 'use 2');
  const used = await assertion();
  t.equal((await tokenRequest(used)).status, 200, 'the assertion is accepted once');
  t.match(await tokenRequest(used), { status: 401, body: { error: 'invalid_client' } }, 'and refused as a replay');

  await gw.stop('SIGKILL');
  gw = await serveCli(top, ['serve', '--config', config]);

  t.equal(await call(), 200, 'use 3, after kill -9');
  t.equal(await call(), 401, 'use 4 is refused: the count survived');
  t.match(await tokenRequest(used), { status: 401, body: { error: 'invalid_client' } }, 'the used assertion is still refused after the restart');
  // A fresh assertion made right after the restart works: the gateway opens its port only once
  // the replay horizon (the next whole second) has passed.
  t.equal((await tokenRequest(await assertion())).status, 200, 'a fresh assertion is accepted');
  t.equal(crm.seen.length, 3, 'the backend saw exactly maxUses calls');
});
