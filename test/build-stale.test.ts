// `npm start` compiles only when a source is newer than the last good build (issue 15 item 2):
// bin/build-if-stale.js against a folder laid out like the project, with mtimes set by hand.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './helpers/root.js';

const check = (root: string): string => spawnSync(process.execPath, [join(root, 'bin', 'build-if-stale.js'), '--check'], { encoding: 'utf8' }).stdout.trim();

t.test('stale or fresh, by modification time', async (t) => {
  const dir = t.testdir({ bin: {}, gateway: { stages: { 'a.ts': 'x' } }, demo: { 'b.ts': 'y' }, dist: {}, 'tsconfig.json': '{}', 'README.md': 'r' });
  copyFileSync(join(ROOT, 'bin', 'build-if-stale.js'), join(dir, 'bin', 'build-if-stale.js'));
  const at = (path: string, seconds: number): void => utimesSync(join(dir, path), seconds, seconds);
  const now = Math.floor(Date.now() / 1000);
  for (const f of ['gateway/stages/a.ts', 'demo/b.ts', 'tsconfig.json', 'README.md']) at(f, now - 100);
  t.equal(check(dir), 'stale', 'never built');
  writeFileSync(join(dir, 'dist', '.build-stamp'), 'built');
  at('dist/.build-stamp', now - 50);
  t.equal(check(dir), 'fresh', 'built after the last edit');
  at('README.md', now);
  t.equal(check(dir), 'fresh', 'a file the build does not read changes nothing');
  at('gateway/stages/a.ts', now);
  t.equal(check(dir), 'stale', 'an edited source, deep in gateway/');
  at('gateway/stages/a.ts', now - 100);
  at('tsconfig.json', now);
  t.equal(check(dir), 'stale', 'an edited tsconfig');
  at('tsconfig.json', now - 100);
  mkdirSync(join(dir, 'bench'));
  writeFileSync(join(dir, 'bench', 'new.ts'), 'z');
  t.equal(check(dir), 'stale', 'a new source file');
});

t.test('the project itself is fresh after npm test\'s build, and npm start uses the check', async (t) => {
  t.equal(check(ROOT), 'fresh');
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
  t.equal(pkg.scripts.prestart, 'node bin/build-if-stale.js');
  t.match(pkg.scripts.build, /dist\/\.build-stamp/, 'a good build leaves the stamp');
});
