// The forward stage imports undici's Pool and errors from their own modules, not from the
// package's index (gateway/undici-parts.d.ts says why): they must be the very classes the index
// exports, and loading the gateway (every CLI command's modules, the server) must load no undici
// index. A new `import ... from 'undici'` in a gateway module fails the second test.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import * as undici from 'undici';
import Pool from 'undici/lib/dispatcher/pool.js';
import undiciErrors from 'undici/lib/core/errors.js';
import undiciRequest from 'undici/lib/api/api-request.js';
import { ROOT } from './helpers/root.js';

t.test('the modules imported directly are the index\'s own classes', async (t) => {
  t.equal(Pool, undici.Pool, 'Pool');
  t.equal(undiciRequest, (undici.Dispatcher.prototype as unknown as { request: unknown }).request, 'request, the method the index puts on every dispatcher');
  const names = Object.keys(undici.errors);
  t.ok(names.length >= 10, `${names.length} error classes`);
  for (const name of names) t.equal((undiciErrors as Record<string, unknown>)[name], (undici.errors as Record<string, unknown>)[name], name);
});

t.test('the gateway loads undici\'s Pool, not its index', async (t) => {
  const modules = ['dist/gateway/main.js', 'dist/gateway/server.js'].map((m) => pathToFileURL(join(ROOT, m)).href);
  const script = `for (const m of ${JSON.stringify(modules)}) await import(m);
const { createRequire } = await import('node:module');
const cache = createRequire(import.meta.url).cache;
console.log(JSON.stringify(Object.keys(cache).filter((k) => k.includes('/node_modules/undici/'))));`;
  const loaded = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT, encoding: 'utf8' })) as string[];
  t.ok(loaded.some((f) => f.endsWith('/undici/lib/dispatcher/pool.js')), 'the Pool module is loaded');
  t.ok(loaded.some((f) => f.endsWith('/undici/lib/api/api-request.js')), 'and request');
  t.same(loaded.filter((f) => f.endsWith('/undici/index.js') || f.includes('/undici/lib/web/')), [], 'neither the index nor fetch, WebSocket and the rest');
});
