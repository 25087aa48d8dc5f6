// The gateway's version, read once from the package.json that ships with it (the source tree, the
// compiled dist/ and the container image all keep package.json above the code).
import { readFileSync } from 'node:fs';

function readVersion(): string {
  let dir = new URL('.', import.meta.url);
  for (let depth = 0; depth < 4; depth++) {
    try {
      const pkg = JSON.parse(readFileSync(new URL('package.json', dir), 'utf8')) as { name?: unknown; version?: unknown };
      if (pkg.name === 'agentgate' && typeof pkg.version === 'string') return pkg.version;
    } catch {
      // not here; look one folder up
    }
    dir = new URL('..', dir);
  }
  return '0.0.0-unknown';
}

/** `version` of package.json, e.g. "0.1.0". */
export const VERSION: string = readVersion();
