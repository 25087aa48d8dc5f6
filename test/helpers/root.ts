// Where things are, for tests that need no gateway: the project folder, wherever the tests run
// from (`npm test` runs them compiled, from dist/test/, see test/helpers/compile.mjs, so it is
// the nearest folder up that holds package.json), the shipped policies, and a free port. Kept
// apart from gateway.ts so that a test importing only these does not load the whole server.
import { existsSync } from 'node:fs';
import { connect, createServer } from 'node:net';
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

/**
 * A loopback port nothing listens on, for a backend or store that must refuse connections.
 * Not a port found free (another test's listen(0) may be given it a moment later and answer
 * there): port 1 lies below the ephemeral range, so no test server can get it. Checked here.
 */
export async function closedPort(): Promise<number> {
  const refused = await new Promise<boolean>((resolve) => {
    const socket = connect(1, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code === 'ECONNREFUSED'));
  });
  if (!refused) throw new Error('127.0.0.1:1 accepts connections; these tests need a port that refuses them');
  return 1;
}

/** A loopback port free at the time of the call. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const address = server.address();
  await new Promise<void>((done) => server.close(() => done()));
  if (address === null || typeof address === 'string') throw new Error('no TCP port');
  return address.port;
}
