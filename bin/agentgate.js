#!/usr/bin/env node
// Entry point of the `agentgate` command: runs the compiled CLI from dist/ (built by `npm install`
// through the `prepare` script, or by `npm run build`).
import module from 'node:module';
import { homedir } from 'node:os';
import { join } from 'node:path';

// Node >= 22.1: keep V8's compiled code of our modules and libraries on disk, so that the next
// `agentgate` process skips most of the parsing and compiling of its ~100-400 modules. The folder
// is the user's cache ($XDG_CACHE_HOME or ~/.cache, then agentgate/compile-cache), never the
// project or the shared temp folder. Node's own variables apply: NODE_DISABLE_COMPILE_CACHE=1
// turns it off, and NODE_COMPILE_CACHE=DIR picks another folder. Node checks every entry against
// its source, so a stale entry is recompiled, not run; a folder that cannot be written only means
// no cache.
const cacheDir = process.env.NODE_COMPILE_CACHE || compileCacheDir();
if (typeof module.enableCompileCache === 'function' && cacheDir !== null) module.enableCompileCache(cacheDir);

function compileCacheDir() {
  const xdg = process.env.XDG_CACHE_HOME;
  if (xdg !== undefined && xdg.startsWith('/')) return join(xdg, 'agentgate', 'compile-cache');
  // Without a home folder, no cache: a folder in the shared temp folder could be made by another
  // user beforehand, and its entries would then be code we run.
  const home = homedir();
  return home !== '' && home !== '/' ? join(home, '.cache', 'agentgate', 'compile-cache') : null;
}

let cli;
try {
  cli = await import('../dist/gateway/main.js');
} catch (error) {
  if (error && error.code === 'ERR_MODULE_NOT_FOUND' && String(error.message).includes('dist/gateway/main.js')) {
    process.stderr.write('agentgate: not built yet; run `npm install` (or `npm run build`) in the project folder\n');
    process.exit(1);
  }
  throw error;
}
process.exitCode = await cli.main(process.argv.slice(2));
