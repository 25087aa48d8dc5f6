// `workers: 2` on the Redis driver: each worker is an instance on the same real redis-server, and
// a kill made on the primary's admin socket is refused on both workers right after its answer
// (handed to each worker and acknowledged, not left to Redis's pub/sub).
import t from 'tap';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startUpstream } from '../helpers/gateway.js';
import { brokerPolicies, clientKey } from '../helpers/broker.js';
import { runCli, serveCli, writeConfig } from '../helpers/process.js';
import { redisServerPath, startRedis } from '../helpers/redis.js';
import { callSeen, until, workerPids } from '../helpers/workers.js';

const linux = process.platform === 'linux';

t.test('workers: 2 on Redis: a kill is in force on both workers when it is answered', { skip: !linux ? 'reads /proc' : redisServerPath() === null ? 'redis-server is not installed (apt-get install redis-server)' : false }, async (t) => {
  const redis = await startRedis(t);
  const key = await clientKey();
  const crm = await startUpstream(t);
  const dir = t.testdir({});
  const policies = await brokerPolicies(dir, key.publicJwk);
  const backends = join(policies, 'backends.yaml');
  await writeFile(backends, (await readFile(backends, 'utf8')).replace('upstream: http://127.0.0.1:9101', `upstream: ${crm.url}`));
  const config = await writeConfig(dir, policies, { state: `{ driver: redis, url: "${redis.url}" }` });
  await writeFile(config, `${await readFile(config, 'utf8')}workers: 2\n`);
  const gw = await serveCli(t, ['serve', '--config', config]);
  await until('two workers', () => (workerPids(gw).size === 2 ? true : null));
  const bearer = (await runCli(['token', '--agent', 'marketing-agent-03', '--config', config])).stdout.trim();

  const allowedOn = new Set<number>();
  for (let i = 0; i < 12 && allowedOn.size < 2; i++) {
    const res = await callSeen(gw, bearer);
    t.equal(res.status, 200, res.body);
    if (res.pid !== null) allowedOn.add(res.pid);
  }
  t.equal(allowedOn.size, 2, 'both workers serve');
  const killed = await runCli(['kill', 'marketing-agent-03', '--reason', 'workers on redis', '--config', config]);
  t.equal(killed.code, 0, killed.stderr);
  // Right after the answer: no wait for Redis's pub/sub, every call refused on both workers.
  const refusedOn = new Set<number>();
  for (let i = 0; i < 12; i++) {
    const res = await callSeen(gw, bearer);
    t.equal(res.status, 403, `call ${i} after the kill is refused`);
    t.match(res.body, /agent_killed/);
    if (res.pid !== null) refusedOn.add(res.pid);
  }
  t.equal(refusedOn.size, 2, 'refused on both workers');
});
