#!/usr/bin/env node
// `npm start`'s prestart: compile the TypeScript only when a source is newer than the last good
// build (dist/.build-stamp, written after tsc succeeds). A fresh clone or an edit builds (about
// 25 s on 2 cores); a second `npm start` with nothing changed starts at once.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const stamp = join(root, 'dist', '.build-stamp');
const SOURCES = ['gateway', 'demo', 'bench'];
const FILES = ['tsconfig.json', 'tsconfig.build.json', 'package.json', 'package-lock.json'];

/** Newest modification time (ms) of the TypeScript sources and the build's configuration. */
function newestSource() {
  let newest = 0;
  const visit = (path) => {
    const info = statSync(path, { throwIfNoEntry: false });
    if (info === undefined) return;
    if (info.isDirectory()) {
      for (const entry of readdirSync(path)) visit(join(path, entry));
    } else if (path.endsWith('.ts') || FILES.some((f) => path === join(root, f))) {
      newest = Math.max(newest, info.mtimeMs);
    }
  };
  for (const dir of SOURCES) visit(join(root, dir));
  for (const file of FILES) visit(join(root, file));
  return newest;
}

export function isStale() {
  const built = statSync(stamp, { throwIfNoEntry: false });
  return built === undefined || newestSource() > built.mtimeMs;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  if (process.argv.includes('--check')) {
    process.stdout.write(isStale() ? 'stale\n' : 'fresh\n');
  } else if (isStale()) {
    process.stderr.write('agentgate: sources changed since the last build; compiling (npm run build)\n');
    const result = spawnSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(root, 'tsconfig.build.json')], { stdio: 'inherit', cwd: root });
    if (result.status !== 0) process.exit(result.status ?? 1);
    writeFileSync(stamp, `${new Date().toISOString()}\n`);
  }
}
