// Signing keys: one JSON file per key under `issuer.keys` (folder 0700, files 0600), created at
// first start. Keys are kept newest-last; the newest signs, all of them verify (rotation keeps
// older ones until their tokens have expired).
import { chmod, mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, type CryptoKey, type JWK } from 'jose';
import type { Clock } from '../context.js';

export type SigningAlg = 'EdDSA' | 'ES256';

export interface SigningKey {
  readonly kid: string;
  readonly alg: SigningAlg;
  /** ms since the epoch. */
  readonly createdAt: number;
  readonly privateKey: CryptoKey;
  readonly publicKey: CryptoKey;
  readonly publicJwk: JWK;
}

export interface KeyStore {
  readonly alg: SigningAlg;
  /** The key new tokens are signed with. */
  current(): SigningKey;
  /** The verification key for `kid`, or undefined when it is not ours. */
  resolve(kid: string): SigningKey | undefined;
  /** Public keys for `/.well-known/jwks.json`. */
  publicJwks(): { keys: JWK[] };
  all(): readonly SigningKey[];
}

interface KeyFile {
  readonly kid: string;
  readonly alg: SigningAlg;
  readonly createdAt: number;
  readonly jwk: JWK;
}

export interface OpenKeyStoreOptions {
  readonly dir: string;
  readonly alg: SigningAlg;
  readonly clock: Clock;
}

/** Load every key of `dir`, creating the first one when there is none. */
export async function openKeyStore(options: OpenKeyStoreOptions): Promise<KeyStore> {
  const { dir, alg, clock } = options;
  await mkdir(dir, { recursive: true, mode: 0o700 });
  let keys = await loadKeys(dir);
  if (!keys.some((k) => k.alg === alg)) {
    await createKey(dir, alg, clock);
    keys = await loadKeys(dir);
  }
  return storeOf(alg, keys);
}

function storeOf(alg: SigningAlg, keys: readonly SigningKey[]): KeyStore {
  const signing = keys.filter((k) => k.alg === alg);
  const current = signing[signing.length - 1];
  if (current === undefined) throw new Error(`no ${alg} signing key available`);
  const byKid = new Map(keys.map((k) => [k.kid, k]));
  const jwks = { keys: keys.map((k) => k.publicJwk) };
  return {
    alg,
    current: () => current,
    resolve: (kid) => byKid.get(kid),
    publicJwks: () => jwks,
    all: () => keys,
  };
}

async function loadKeys(dir: string): Promise<SigningKey[]> {
  const names = (await readdir(dir)).filter((n) => n.endsWith('.json')).sort();
  const keys: SigningKey[] = [];
  for (const name of names) {
    const file = join(dir, name);
    const info = await stat(file);
    if ((info.mode & 0o077) !== 0) {
      throw new Error(`signing key ${file} is readable by other users (mode ${(info.mode & 0o777).toString(8)}); run: chmod 600 ${file}`);
    }
    let parsed: KeyFile;
    try {
      parsed = JSON.parse(await readFile(file, 'utf8')) as KeyFile;
    } catch (error) {
      throw new Error(`signing key ${file} is not valid JSON (${(error as Error).message}); remove it to create a new key`);
    }
    if ((parsed.alg !== 'EdDSA' && parsed.alg !== 'ES256') || typeof parsed.kid !== 'string' || typeof parsed.jwk !== 'object' || parsed.jwk === null || typeof parsed.jwk.d !== 'string') {
      throw new Error(`signing key ${file} is malformed (expected kid, alg EdDSA|ES256, createdAt and a private jwk); remove it to create a new key`);
    }
    try {
      const { d: _d, ...publicPart } = parsed.jwk;
      const privateKey = (await importJWK(parsed.jwk, parsed.alg)) as CryptoKey;
      const publicKey = (await importJWK(publicPart, parsed.alg)) as CryptoKey;
      keys.push({
        kid: parsed.kid,
        alg: parsed.alg,
        createdAt: Number(parsed.createdAt) || 0,
        privateKey,
        publicKey,
        publicJwk: Object.freeze({ ...publicPart, kid: parsed.kid, alg: parsed.alg, use: 'sig' }),
      });
    } catch (error) {
      throw new Error(`signing key ${file} cannot be imported (${(error as Error).message}); remove it to create a new key`);
    }
  }
  keys.sort((a, b) => a.createdAt - b.createdAt || a.kid.localeCompare(b.kid));
  return keys;
}

/** Generate a key and write it with exclusive create, so concurrent starts cannot clobber a key. */
export async function createKey(dir: string, alg: SigningAlg, clock: Clock): Promise<string> {
  const pair = await generateKeyPair(alg, alg === 'EdDSA' ? { crv: 'Ed25519', extractable: true } : { extractable: true });
  const jwk = await exportJWK(pair.privateKey);
  const { d: _d, ...publicPart } = jwk;
  const kid = await calculateJwkThumbprint(publicPart);
  const body: KeyFile = { kid, alg, createdAt: clock.now(), jwk };
  const file = join(dir, `${String(body.createdAt).padStart(15, '0')}-${kid}.json`);
  await writeFile(file, `${JSON.stringify(body)}\n`, { mode: 0o600, flag: 'wx' });
  await chmod(file, 0o600);
  return kid;
}
