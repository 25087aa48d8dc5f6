// The secret MCP session ids are sealed with (mcp/session.ts): 32 random bytes in
// `mcp-session.secret` beside the signing keys, made at first start. Instances and workers sharing
// `issuer.keys` read the same one, so they accept each other's session ids, and a restart keeps them.
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { openOrPublish } from '../secret-file.js';

/** The secret's file in the `issuer.keys` folder (not `*.json`: the key store ignores it). */
export const SESSION_SECRET_FILE = 'mcp-session.secret';

/**
 * The session secret of the `issuer.keys` folder `dir`, published on first use (`openOrPublish`:
 * two instances starting at once agree on one secret). Read first, so a read-only folder that
 * already holds it is enough.
 */
export async function openSessionSecret(dir: string): Promise<Buffer> {
  const file = join(dir, SESSION_SECRET_FILE);
  const text = await openOrPublish(dir, SESSION_SECRET_FILE, () => `${randomBytes(32).toString('base64url')}\n`).catch((error: unknown) => {
    throw new Error(`cannot read or write the MCP session secret ${file} (${(error as Error).message}); check that the folder is readable and writable by this user`, { cause: error });
  });
  const secret = Buffer.from(text.trim(), 'base64url');
  if (secret.length < 32) throw new Error(`${file} does not hold an MCP session secret (43 base64url characters); remove it to have a new one made (open MCP sessions then start again)`);
  return secret;
}
