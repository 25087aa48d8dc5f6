// Where things are, for tests that need no gateway: the project folder, wherever the tests run
// from (`npm test` runs them compiled, from dist/test/, see test/helpers/compile.mjs, so it is
// the nearest folder up that holds package.json), the shipped policies, and a free port. Kept
// apart from gateway.ts so that a test importing only these does not load the whole server.
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function projectRoot(from: string): string {
  for (let dir = from; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    if (dirname(dir) === dir) throw new Error(`no package.json above ${from}`);
  }
}

export const ROOT = projectRoot(dirname(fileURLToPath(import.meta.url)));
export const SHIPPED_POLICIES = join(ROOT, 'policies');

/** A loopback port free at the time of the call. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const address = server.address();
  await new Promise<void>((done) => server.close(() => done()));
  if (address === null || typeof address === 'string') throw new Error('no TCP port');
  return address.port;
}
