// The key store on a real folder: created private, reloaded identically, one key when two processes
// start at once, and a clear refusal for every key file it must not trust.
import t from 'tap';
import { chmod, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { calculateJwkThumbprint, exportJWK, generateKeyPair } from 'jose';
import { createKey, openKeyStore, type SigningAlg } from '../../gateway/tokens/keys.js';
import { manualClock } from '../helpers/tokens.js';

const mode = async (path: string): Promise<number> => (await stat(path)).mode & 0o777;
const jsonFiles = async (dir: string): Promise<string[]> => (await readdir(dir)).filter((n) => n.endsWith('.json')).sort();

for (const alg of ['EdDSA', 'ES256'] as const satisfies readonly SigningAlg[]) {
  t.test(`${alg}: first start creates one private key`, async (t) => {
    const clock = manualClock();
    const dir = join(t.testdir({}), 'run', 'keys');
    const keys = await openKeyStore({ dir, alg, clock });

    t.equal(await mode(dir), 0o700, 'folder 0700, created recursively');
    const files = await jsonFiles(dir);
    t.same(files, ['key-0001.json']);
    const file = join(dir, files[0] ?? '');
    t.equal(await mode(file), 0o600, 'key file 0600');
    t.same((await readdir(dir)).filter((n) => n.endsWith('.tmp')), [], 'no temporary file left');

    const body = JSON.parse(await readFile(file, 'utf8')) as { kid: string; alg: string; createdAt: number; jwk: Record<string, unknown> };
    t.equal(body.alg, alg);
    t.equal(body.createdAt, clock.now());
    t.type(body.jwk.d, 'string', 'the private JWK is stored');
    const current = keys.current();
    t.equal(current.kid, body.kid);
    t.equal(current.alg, alg);
    t.equal(keys.alg, alg);
    const { d: _d, ...pub } = body.jwk;
    t.equal(await calculateJwkThumbprint(pub), current.kid, 'kid is the RFC 7638 thumbprint');

    const jwks = keys.publicJwks();
    t.equal(jwks.keys.length, 1);
    t.match(jwks.keys[0], { kid: current.kid, alg, use: 'sig', kty: alg === 'EdDSA' ? 'OKP' : 'EC' });
    t.notOk(jwks.keys.some((k) => 'd' in k), 'public parts only');
    t.equal(keys.resolve(current.kid)?.kid, current.kid);
    t.notOk(keys.resolve(current.kid) !== undefined && 'privateKey' in (keys.resolve(current.kid) ?? {}), 'resolve hands out no private key');
    t.equal(keys.resolve('nope'), undefined);
  });

  t.test(`${alg}: a restart reloads the same key`, async (t) => {
    const dir = t.testdir({});
    const first = await openKeyStore({ dir, alg, clock: manualClock() });
    const second = await openKeyStore({ dir, alg, clock: manualClock(Date.UTC(2027, 0, 1)) });
    t.equal(second.current().kid, first.current().kid);
    t.same(second.publicJwks(), first.publicJwks());
    t.equal((await jsonFiles(dir)).length, 1, 'no second key');
  });
}

t.test('concurrent first starts end with one key', async (t) => {
  const dir = t.testdir({});
  const stores = await Promise.all(Array.from({ length: 6 }, () => openKeyStore({ dir, alg: 'EdDSA', clock: manualClock() })));
  t.equal(new Set(stores.map((s) => s.current().kid)).size, 1, 'every process signs with the same key');
  t.same(await jsonFiles(dir), ['key-0001.json']);
  t.same((await readdir(dir)).filter((n) => n.endsWith('.tmp')), [], 'losers cleaned up');
});

t.test('keys are ordered by createdAt; the newest signs, all verify', async (t) => {
  const dir = t.testdir({});
  const clock = manualClock();
  const old = await openKeyStore({ dir, alg: 'EdDSA', clock });
  clock.advance(3_600_000);
  const kid = await createKey(dir, 'EdDSA', clock);
  const keys = await openKeyStore({ dir, alg: 'EdDSA', clock });
  t.equal(keys.current().kid, kid);
  t.same(keys.all().map((k) => k.kid), [old.current().kid, kid]);
  t.equal(keys.resolve(old.current().kid)?.kid, old.current().kid, 'the older key still verifies');
  t.equal(keys.publicJwks().keys.length, 2);
  t.same(await jsonFiles(dir), ['key-0001.json', 'key-0002.json']);
});

t.test('switching issuer.alg adds a key of the new alg and keeps the old one for verification', async (t) => {
  const dir = t.testdir({});
  const ed = await openKeyStore({ dir, alg: 'EdDSA', clock: manualClock() });
  const es = await openKeyStore({ dir, alg: 'ES256', clock: manualClock() });
  t.equal(es.current().alg, 'ES256');
  t.equal(es.resolve(ed.current().kid)?.alg, 'EdDSA');
});

t.test('key files that must not be trusted are refused with a clear error', async (t) => {
  const valid = async (dir: string): Promise<string> => {
    await openKeyStore({ dir, alg: 'EdDSA', clock: manualClock() });
    return join(dir, 'key-0001.json');
  };
  const otherKey = async (): Promise<Record<string, unknown>> => {
    const pair = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
    return { ...(await exportJWK(pair.privateKey)) };
  };

  const cases: Array<{ name: string; spoil: (file: string, dir: string) => Promise<void>; message: RegExp }> = [
    { name: 'group-readable', spoil: (file) => chmod(file, 0o640), message: /readable or writable by other users \(mode 640\); run: chmod 600 .*key-0001\.json/ },
    { name: 'world-readable', spoil: (file) => chmod(file, 0o604), message: /mode 604.*chmod 600/ },
    { name: 'not JSON', spoil: (file) => writeFile(file, '{"kid":'), message: /key-0001\.json is not valid JSON/ },
    { name: 'truncated to nothing', spoil: (file) => writeFile(file, ''), message: /key-0001\.json is not valid JSON/ },
    {
      name: 'no private part',
      spoil: async (file) => {
        const body = JSON.parse(await readFile(file, 'utf8')) as { jwk: Record<string, unknown> };
        delete body.jwk.d;
        await writeFile(file, JSON.stringify(body));
      },
      message: /key-0001\.json is malformed/,
    },
    {
      name: 'an alg we do not sign with',
      spoil: async (file) => {
        const body = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
        await writeFile(file, JSON.stringify({ ...body, alg: 'HS256' }));
      },
      message: /malformed/,
    },
    {
      name: 'kid that is not the thumbprint',
      spoil: async (file) => {
        const body = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
        await writeFile(file, JSON.stringify({ ...body, kid: 'my-key' }));
      },
      message: /kid my-key is not the thumbprint/,
    },
    {
      name: 'private half of another key',
      spoil: async (file) => {
        const body = JSON.parse(await readFile(file, 'utf8')) as { jwk: Record<string, unknown> };
        await writeFile(file, JSON.stringify({ ...body, jwk: { ...body.jwk, d: (await otherKey()).d } }));
      },
      message: /key-0001\.json cannot be used/,
    },
    {
      name: 'folder writable by others',
      spoil: async (_file, dir) => {
        await chmod(dir, 0o777);
      },
      message: /folder .* is writable by other users \(mode 777\); run: chmod 700/,
    },
  ];
  for (const c of cases) {
    await t.test(c.name, async (t) => {
      const dir = t.testdir({});
      const file = await valid(dir);
      await c.spoil(file, dir);
      await t.rejects(openKeyStore({ dir, alg: 'EdDSA', clock: manualClock() }), { message: c.message });
    });
  }
});
