// Secrets kept in files of their own. Reading one (a Redis password, a mounted container secret):
// the file's first line, without its newline, read by config.ts at load (to check it) and by the
// state driver at start (to use it); the secret itself is never kept in the settings. Publishing
// one (a signing key, the MCP session secret, the audit key): whole or not at all, first one wins.
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { link, readFile, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** The secret in `path`; throws an Error saying what is wrong (unreadable, empty, not one line). */
export function readSecretFile(path: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    throw new Error(`cannot read ${path} (a file holding the password)`);
  }
  const secret = text.replace(/\r?\n$/, '');
  if (secret === '') throw new Error(`${path} is empty (it must hold the password)`);
  if (secret.length > 1024 || !/^[\x20-\x7e\u0080-\uffff]+$/.test(secret)) throw new Error(`${path} must hold the password alone, on one line of at most 1024 characters`);
  return secret;
}

/**
 * Publish `content` as `dir/name` unless that name exists. The content goes to a temporary file
 * first (exclusive create, `wx`, `mode`: private unless said) and is then hard-linked into place, which
 * fails with EEXIST when another process published that name first: a reader never sees a
 * half-written file and nobody's file is overwritten. Resolves false when the name was taken.
 */
export async function publishFile(dir: string, name: string, content: string, mode = 0o600): Promise<boolean> {
  const temp = join(dir, `.${randomUUID()}.tmp`);
  try {
    await writeFile(temp, content, { mode, flag: 'wx' });
    await link(temp, join(dir, name));
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  } finally {
    await unlink(temp).catch(() => undefined);
  }
}

/**
 * The text of `dir/name`, published first from `make()` when the file does not exist
 * (`publishFile`): of two processes opening it at once, both read the one that was published.
 * A file that cannot be read for another reason throws.
 */
export async function openOrPublish(dir: string, name: string, make: () => string, mode = 0o600): Promise<string> {
  const file = join(dir, name);
  const existing = await readFile(file, 'utf8').catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return null;
    throw error;
  });
  if (existing !== null) return existing;
  await publishFile(dir, name, make(), mode);
  return readFile(file, 'utf8');
}
