// The project folder, wherever the tests run from: `npm test` runs them compiled, from
// dist/test/ (see test/helpers/compile.mjs), so it is the nearest folder up that holds
// package.json rather than a fixed number of levels up.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function projectRoot(from: string): string {
  for (let dir = from; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    if (dirname(dir) === dir) throw new Error(`no package.json above ${from}`);
  }
}

export const ROOT = projectRoot(dirname(fileURLToPath(import.meta.url)));
