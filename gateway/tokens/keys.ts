// Signing keys: one JSON file per key under `issuer.keys` (folder 0700, files 0600, ours alone),
// the first created at first start. Keys are kept oldest-first by createdAt; the newest signs and
// all of them verify, so rotation (later) only has to add a file and, after an overlap, remove one.
import { createPrivateKey, sign, type JsonWebKey, type KeyObject } from 'node:crypto';
import { constants } from 'node:fs';
import { mkdir, open, readdir, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
// jose by subpath: its index loads every algorithm and format (~180 modules) into each process.
import { calculateJwkThumbprint } from 'jose/jwk/thumbprint';
import { compactVerify } from 'jose/jws/compact/verify';
import { exportJWK } from 'jose/key/export';
import { generateKeyPair } from 'jose/key/generate/keypair';
import { importJWK } from 'jose/key/import';
import type { CryptoKey, JWK } from 'jose';
import type { Clock } from '../clock.js';
import { publishFile } from '../secret-file.js';

export type SigningAlg = 'EdDSA' | 'ES256';

/** A key as verification sees it: no private part. */
export interface VerificationKey {
  /** RFC 7638 thumbprint of the public key. */
  readonly kid: string;
  readonly alg: SigningAlg;
  /** ms since the epoch. */
  readonly createdAt: number;
  /** ms since the epoch from which the key signs (published in the JWKS before, so verifiers know it first). */
  readonly activatesAt: number;
  readonly publicKey: CryptoKey;
  /** Public JWK with kid, alg and `use: sig`, as published at `/.well-known/jwks.json`. */
  readonly publicJwk: Readonly<JWK>;
}

export interface SigningKey extends VerificationKey {
  readonly privateKey: CryptoKey;
  /** The same private key for node:crypto: tokens are signed with it on the calling thread (mint.ts). */
  readonly signingKey: KeyObject;
}

export interface KeyStore {
  /** The algorithm new tokens are signed with (`issuer.alg`). */
  readonly alg: SigningAlg;
  /** The newest active key of `alg`: the one new tokens are signed with. */
  current(): SigningKey;
  /** The verification key for `kid`, or undefined when it is not one of ours. */
  resolve(kid: string): VerificationKey | undefined;
  /** Public parts only, for `/.well-known/jwks.json`. A fresh object on every call. */
  publicJwks(): { keys: JWK[] };
  /** Every key, oldest first. */
  all(): readonly VerificationKey[];
  /** Re-read the folder: picks up keys another process (or `agentgate keys rotate`) added or removed. */
  refresh(): Promise<void>;
  /**
   * Generate a new key of `alg` and publish it; it signs from `activateInMs` on (default at once),
   * so verifiers that cache the JWKS see it before any token it signed. Resolves its kid.
   */
  rotate(options?: { activateInMs?: number }): Promise<string>;
  /**
   * Remove keys superseded by a newer key more than `keepMs` ago (every token they signed has
   * expired by then). Never removes the current key. Resolves the kids removed.
   */
  retire(keepMs: number): Promise<string[]>;
}

export interface OpenKeyStoreOptions {
  readonly dir: string;
  readonly alg: SigningAlg;
  readonly clock: Clock;
}

/** A loaded key and the file it came from. */
interface LoadedKey extends SigningKey {
  readonly file: string;
}

/** On-disk shape of one key file. */
interface KeyFile {
  readonly kid: string;
  readonly alg: SigningAlg;
  readonly createdAt: number;
  /** Absent in keys written before pre-published rotation: active from createdAt. */
  readonly activatesAt?: number;
  readonly jwk: JWK;
}

const KEY_FILE = /^key-(\d{1,9})\.json$/;
const CURVES: Record<SigningAlg, { kty: string; crv: string }> = {
  EdDSA: { kty: 'OKP', crv: 'Ed25519' },
  ES256: { kty: 'EC', crv: 'P-256' },
};
/** Concurrent starts that each lose a creation race re-read; more losses than this is a bug. */
const CREATE_ATTEMPTS = 5;

/** Load every key of `dir`, creating the first one of `alg` when there is none. */
export async function openKeyStore(options: OpenKeyStoreOptions): Promise<KeyStore> {
  const { dir, alg, clock } = options;
  if (alg !== 'EdDSA' && alg !== 'ES256') throw new TypeError(`issuer.alg must be EdDSA or ES256, got ${String(alg)}`);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await checkDir(dir);
  let view = storeOf(alg, await loadOrCreate(dir, alg, clock));
  const store: KeyStore = {
    alg,
    current: () => view.current(clock.now()),
    resolve: (kid) => view.resolve(kid),
    publicJwks: () => view.publicJwks(),
    all: () => view.all(),
    async refresh() {
      view = storeOf(alg, await loadOrCreate(dir, alg, clock));
    },
    async rotate(rotateOptions = {}) {
      const activatesAt = clock.now() + Math.max(0, rotateOptions.activateInMs ?? 0);
      for (let attempt = 0; attempt < CREATE_ATTEMPTS; attempt++) {
        const kid = await createKey(dir, alg, clock, activatesAt);
        if (kid !== null) {
          await store.refresh();
          return kid;
        }
      }
      throw new Error(`signing keys in ${dir}: could not publish a new key after ${CREATE_ATTEMPTS} attempts; check the folder`);
    },
    async retire(keepMs) {
      const now = clock.now();
      const removed: string[] = [];
      const keys = view.loaded;
      for (let i = 0; i < keys.length; i++) {
        const key = keys[i];
        // A key is superseded when a newer key of the same algorithm exists; it stays until every
        // token it signed has expired.
        const successor = keys.slice(i + 1).find((k) => k.alg === key?.alg);
        if (key === undefined || successor === undefined || key.kid === view.current(now).kid) continue;
        if (now - successor.activatesAt < keepMs) continue;
        await unlink(key.file).catch((error: NodeJS.ErrnoException) => {
          if (error.code !== 'ENOENT') throw error;
        });
        removed.push(key.kid);
      }
      if (removed.length > 0) await store.refresh();
      return removed;
    },
  };
  return store;
}

async function loadOrCreate(dir: string, alg: SigningAlg, clock: Clock): Promise<LoadedKey[]> {
  for (let attempt = 0; attempt < CREATE_ATTEMPTS; attempt++) {
    const names = await readdir(dir);
    const keys = await loadKeys(dir, names);
    if (keys.some((k) => k.alg === alg)) return keys;
    // The file name comes from the same listing that found no key: a process that published it
    // meanwhile makes ours fail with EEXIST, and the next pass loads its key instead.
    await publishKey(dir, alg, clock, nextSequence(names));
  }
  throw new Error(`signing keys in ${dir}: could not create a ${alg} key after ${CREATE_ATTEMPTS} attempts; check the folder`);
}

/** Generate a key and publish it as the next `key-N.json` (rotation). Returns its kid, or null when another process took that name first. */
export async function createKey(dir: string, alg: SigningAlg, clock: Clock, activatesAt?: number): Promise<string | null> {
  return publishKey(dir, alg, clock, nextSequence(await readdir(dir)), activatesAt);
}

/** Write a new key as `key-<sequence>.json` (`publishFile`). Returns the new kid, or null when the name was taken. */
async function publishKey(dir: string, alg: SigningAlg, clock: Clock, sequence: number, activatesAt?: number): Promise<string | null> {
  const pair = await generateKeyPair(alg, alg === 'EdDSA' ? { crv: 'Ed25519', extractable: true } : { extractable: true });
  const jwk = await exportJWK(pair.privateKey);
  const kid = await calculateJwkThumbprint(publicPart(jwk));
  const body: KeyFile = activatesAt === undefined ? { kid, alg, createdAt: clock.now(), jwk } : { kid, alg, createdAt: clock.now(), activatesAt, jwk };
  const name = `key-${String(sequence).padStart(4, '0')}.json`;
  try {
    return (await publishFile(dir, name, `${JSON.stringify(body, null, 2)}\n`)) ? kid : null;
  } catch (error) {
    throw new Error(`cannot write signing key ${join(dir, name)} (${(error as Error).message}); check that the folder is writable by this user`, { cause: error });
  }
}

function nextSequence(names: readonly string[]): number {
  return names.reduce((max, name) => Math.max(max, Number(KEY_FILE.exec(name)?.[1] ?? 0)), 0) + 1;
}

interface KeyView {
  readonly loaded: readonly LoadedKey[];
  current(now: number): SigningKey;
  resolve(kid: string): VerificationKey | undefined;
  publicJwks(): { keys: JWK[] };
  all(): readonly VerificationKey[];
}

function storeOf(alg: SigningAlg, keys: readonly LoadedKey[]): KeyView {
  const signing = keys.filter((k) => k.alg === alg).map(signingView);
  const newest = signing[signing.length - 1];
  if (newest === undefined) throw new Error(`no ${alg} signing key available`);
  // Newest first; a handful of keys at most, so a scan per mint is cheap.
  const byRecency = [...signing].reverse();
  const byKid = new Map<string, VerificationKey>(keys.map((k) => [k.kid, publicView(k)]));
  const all = Object.freeze([...byKid.values()]);
  return {
    loaded: keys,
    current: (now) => byRecency.find((k) => k.activatesAt <= now) ?? newest,
    resolve: (kid) => byKid.get(kid),
    publicJwks: () => ({ keys: all.map((k) => ({ ...k.publicJwk })) }),
    all: () => all,
  };
}

function signingView(key: SigningKey): SigningKey {
  return Object.freeze({ ...publicView(key), privateKey: key.privateKey, signingKey: key.signingKey });
}

function publicView(key: SigningKey): VerificationKey {
  return Object.freeze({ kid: key.kid, alg: key.alg, createdAt: key.createdAt, activatesAt: key.activatesAt, publicKey: key.publicKey, publicJwk: key.publicJwk });
}

async function checkDir(dir: string): Promise<void> {
  const info = await stat(dir);
  if (!info.isDirectory()) throw new Error(`signing key folder ${dir} is not a directory; point issuer.keys at a folder`);
  // Anyone who can write here can plant a key the gateway would trust.
  if ((info.mode & 0o022) !== 0) {
    throw new Error(`signing key folder ${dir} is writable by other users (mode ${octal(info.mode)}); run: chmod 700 ${dir}`);
  }
}

async function loadKeys(dir: string, names: readonly string[]): Promise<LoadedKey[]> {
  const keys: LoadedKey[] = [];
  for (const name of names.filter((n) => n.endsWith('.json') && !n.startsWith('.')).sort()) keys.push(await loadKey(join(dir, name)));
  const seen = new Set<string>();
  for (const key of keys) {
    if (seen.has(key.kid)) throw new Error(`signing keys in ${dir}: kid ${key.kid} appears in two files; remove the duplicate`);
    seen.add(key.kid);
  }
  keys.sort((a, b) => a.createdAt - b.createdAt || (a.kid < b.kid ? -1 : 1));
  return keys;
}

async function loadKey(file: string): Promise<LoadedKey> {
  const fix = 'remove or restore it (a missing key is created at the next start)';
  let text: string;
  try {
    // O_NOFOLLOW: a symlink planted in the folder must not point us at someone else's key.
    const handle = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      const info = await handle.stat();
      if (!info.isFile()) throw new Error(`signing key ${file} is not a regular file; ${fix}`);
      if ((info.mode & 0o077) !== 0) {
        throw new Error(`signing key ${file} is readable or writable by other users (mode ${octal(info.mode)}); run: chmod 600 ${file}`);
      }
      const uid = process.getuid?.();
      if (uid !== undefined && info.uid !== uid) {
        throw new Error(`signing key ${file} belongs to uid ${info.uid}, not to this user (uid ${uid}); run: chown ${uid} ${file}`);
      }
      text = await handle.readFile('utf8');
    } finally {
      await handle.close();
    }
  } catch (error) {
    if (error instanceof Error && error.message.startsWith('signing key ')) throw error;
    throw new Error(`signing key ${file} cannot be read (${(error as Error).message}); check its owner and mode (600), or ${fix}`, { cause: error });
  }

  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new Error(`signing key ${file} is not valid JSON (${(error as Error).message}); ${fix}`, { cause: error });
  }
  const body = asKeyFile(parsed);
  if (body === null) {
    throw new Error(`signing key ${file} is malformed (expected {kid, alg: EdDSA|ES256, createdAt, jwk} with a private OKP Ed25519 or EC P-256 JWK); ${fix}`);
  }
  const publicJwk = publicPart(body.jwk);
  if ((await calculateJwkThumbprint(publicJwk)) !== body.kid) {
    throw new Error(`signing key ${file}: kid ${body.kid} is not the thumbprint of its key (edited or mixed up?); ${fix}`);
  }
  let privateKey: CryptoKey;
  let publicKey: CryptoKey;
  let signingKey: KeyObject;
  try {
    privateKey = (await importJWK(body.jwk, body.alg)) as CryptoKey;
    publicKey = (await importJWK(publicJwk, body.alg)) as CryptoKey;
    signingKey = createPrivateKey({ key: body.jwk as JsonWebKey, format: 'jwk' });
    // The private and public halves must belong together, or we would sign what we cannot verify:
    // a probe signed as tokens are (node:crypto) must verify with jose against the public half.
    await compactVerify(compactJws(body.alg, signingKey, { alg: body.alg }, body.kid), publicKey, { algorithms: [body.alg] });
  } catch (error) {
    throw new Error(`signing key ${file} cannot be used (${(error as Error).message}); ${fix}`, { cause: error });
  }
  return {
    file,
    kid: body.kid,
    alg: body.alg,
    createdAt: body.createdAt,
    activatesAt: body.activatesAt ?? body.createdAt,
    privateKey,
    signingKey,
    publicKey,
    publicJwk: Object.freeze({ ...publicJwk, kid: body.kid, alg: body.alg, use: 'sig' }),
  };
}

/**
 * A compact JWS (RFC 7515 §7.1) of `header` and `payload` (the payload's bytes, e.g. JSON text),
 * signed on this thread with node:crypto. WebCrypto (what jose's `sign` uses) queues every
 * signature on libuv's thread pool: two thread switches for a ~50 µs operation, behind any audit
 * write in the same pool. ES256 is in JOSE's raw r||s form (RFC 7518 §3.4), not DER.
 */
export function compactJws(alg: SigningAlg, signingKey: KeyObject, header: Readonly<Record<string, string>>, payload: string): string {
  const signingInput = `${Buffer.from(JSON.stringify(header)).toString('base64url')}.${Buffer.from(payload).toString('base64url')}`;
  const data = Buffer.from(signingInput);
  const signature = alg === 'EdDSA' ? sign(null, data, signingKey) : sign('sha256', data, { key: signingKey, dsaEncoding: 'ieee-p1363' });
  return `${signingInput}.${signature.toString('base64url')}`;
}

function asKeyFile(value: unknown): KeyFile | null {
  if (typeof value !== 'object' || value === null) return null;
  const { kid, alg, createdAt, activatesAt, jwk } = value as Record<string, unknown>;
  if (activatesAt !== undefined && (typeof activatesAt !== 'number' || !Number.isFinite(activatesAt))) return null;
  if (alg !== 'EdDSA' && alg !== 'ES256') return null;
  if (typeof kid !== 'string' || kid === '' || typeof createdAt !== 'number' || !Number.isFinite(createdAt)) return null;
  if (typeof jwk !== 'object' || jwk === null) return null;
  const key = jwk as JWK;
  const curve = CURVES[alg];
  if (key.kty !== curve.kty || key.crv !== curve.crv || typeof key.d !== 'string' || typeof key.x !== 'string') return null;
  if (alg === 'ES256' && typeof key.y !== 'string') return null;
  return activatesAt === undefined ? { kid, alg, createdAt, jwk: key } : { kid, alg, createdAt, activatesAt: activatesAt as number, jwk: key };
}

/** The public members of an OKP or EC JWK (RFC 7638 required members), nothing else. */
function publicPart(jwk: JWK): JWK {
  return jwk.kty === 'EC' ? { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y } : { kty: jwk.kty, crv: jwk.crv, x: jwk.x };
}

function octal(mode: number): string {
  return (mode & 0o777).toString(8).padStart(3, '0');
}
