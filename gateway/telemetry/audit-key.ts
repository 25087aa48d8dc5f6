// The audit trail's own signing key (Ed25519), kept apart from the token keys: made at first start
// as `audit-key.pem` (0600) in the issuer key folder, with `audit-key.pub.pem` beside it so an
// auditor can check checkpoint signatures without the private key. It signs checkpoint lines only.
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { openOrPublish } from '../secret-file.js';
import type { AuditSigner } from './audit-log.js';

export const AUDIT_KEY_FILE = 'audit-key.pem';
export const AUDIT_PUBLIC_KEY_FILE = 'audit-key.pub.pem';

/** The kid of an audit key: `audit-` and the first 16 base64url characters of SHA-256(SPKI). */
export function auditKid(publicKey: KeyObject): string {
  const der = publicKey.export({ type: 'spki', format: 'der' });
  return `audit-${createHash('sha256').update(der).digest('base64url').slice(0, 16)}`;
}

/** Load the audit key from `dir`, making it on first start. */
export async function openAuditSigner(dir: string): Promise<AuditSigner> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const file = join(dir, AUDIT_KEY_FILE);
  let privateKey: KeyObject;
  try {
    // Published whole (a temporary file, then a link): a gateway starting beside this one reads
    // either no key or the whole key, one killed mid-write leaves no empty key file behind, and
    // of two gateways making a key at once the first to publish wins and both use its key.
    const pem = await openOrPublish(dir, AUDIT_KEY_FILE, () => generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString());
    privateKey = createPrivateKey(pem);
  } catch (error) {
    throw new Error(`audit key ${file} cannot be read or made: ${(error as Error).message}`, { cause: error });
  }
  if (privateKey.asymmetricKeyType !== 'ed25519') throw new Error(`audit key ${file} is not an Ed25519 key`);
  await chmod(file, 0o600);
  const publicKey = createPublicKey(privateKey);
  const publicPem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
  const publicFile = join(dir, AUDIT_PUBLIC_KEY_FILE);
  // Made with the key; rewritten should it not match the key in use.
  if ((await openOrPublish(dir, AUDIT_PUBLIC_KEY_FILE, () => publicPem, 0o644)) !== publicPem) await writeFile(publicFile, publicPem, { mode: 0o644 });
  const kid = auditKid(publicKey);
  return {
    kid,
    sign: (payload) => sign(null, Buffer.from(payload), privateKey).toString('base64url'),
  };
}

/** Public audit keys by kid, read from PEM files (a public key, or the private key it belongs to). */
export async function loadAuditKeys(files: readonly string[]): Promise<Map<string, KeyObject>> {
  const keys = new Map<string, KeyObject>();
  for (const file of files) {
    const text = await readFile(file, 'utf8');
    // createPublicKey takes a private PEM too and derives its public half.
    const key = createPublicKey(text);
    if (key.asymmetricKeyType !== 'ed25519') throw new Error(`${file} is not an Ed25519 key`);
    keys.set(auditKid(key), key);
  }
  return keys;
}

export function verifyCheckpointSignature(key: KeyObject, payload: string, signature: string): boolean {
  try {
    return verify(null, Buffer.from(payload), key, Buffer.from(signature, 'base64url'));
  } catch {
    return false;
  }
}
