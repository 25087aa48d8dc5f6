// `npm test`'s pretest, after the build: compiles the tests (test/**/*.ts) into dist/test/ with
// swc, which only strips the types (`npm run lint` checks them), each file with its source map.
// The tests then run as plain JavaScript against the same dist/gateway/ modules the spawned
// `agentgate` processes run, and no TypeScript loader sits in the test processes: a module loader
// hook costs every test process its own thread and a round trip per imported module (about 1 s
// of CPU per test file on Node 20 and 24). The whole tree takes well under a second.
// Plain JavaScript: it runs before any TypeScript is compiled.
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import swc from '@swc/core';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const source = join(root, 'test');
const target = join(root, 'dist', 'test');

async function sources(dir) {
  const out = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await sources(path)));
    else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) out.push(path);
  }
  return out;
}

async function compile(file) {
  const js = join(target, relative(source, file)).replace(/\.ts$/, '.js');
  const { code, map } = await swc.transform(await readFile(file, 'utf8'), {
    filename: file,
    sourceFileName: relative(dirname(js), file),
    sourceMaps: true,
    jsc: { parser: { syntax: 'typescript' }, target: 'es2022' },
    module: { type: 'es6' },
  });
  await mkdir(dirname(js), { recursive: true });
  await writeFile(js, `${code}\n//# sourceMappingURL=${basename(js)}.map\n`);
  await writeFile(`${js}.map`, map);
}

// A test deleted or renamed in test/ must not keep running from an old copy.
await rm(target, { recursive: true, force: true });
await Promise.all((await sources(source)).map(compile));
