// A secret kept in a file of its own (a Redis password, a mounted container secret): the file's
// first line, without its newline. Read by config.ts at load (to check it) and by the state driver
// at start (to use it); the secret itself is never kept in the settings.
import { readFileSync } from 'node:fs';

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
