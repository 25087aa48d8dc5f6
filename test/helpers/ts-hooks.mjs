// Module hooks for the test processes (registered by ts-loader.mjs): a `.ts` file is compiled to
// an ES module by swc (types stripped, nothing else changed, an inline source map so stack traces
// and coverage point at the TypeScript lines), and an import of `./x.js` that has no `.js` file
// beside it resolves to `./x.ts`, as TypeScript's NodeNext resolution does. Plain JavaScript: it
// runs before any TypeScript can.
import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import swc from '@swc/core';

export async function resolve(specifier, context, next) {
  try {
    return await next(specifier, context);
  } catch (error) {
    const parent = context.parentURL ?? '';
    if (error?.code !== 'ERR_MODULE_NOT_FOUND' || !specifier.endsWith('.js') || !parent.startsWith('file:')) throw error;
    const ts = new URL(`${specifier.slice(0, -3)}.ts`, parent);
    if (ts.protocol !== 'file:' || !existsSync(fileURLToPath(ts))) throw error;
    return { url: ts.href, format: 'module', shortCircuit: true };
  }
}

export async function load(url, context, next) {
  if (!url.startsWith('file:') || !url.endsWith('.ts')) return next(url, context);
  const filename = fileURLToPath(url);
  const source = await readFile(filename, 'utf8');
  const { code } = await swc.transform(source, {
    filename,
    sourceMaps: 'inline',
    jsc: { parser: { syntax: 'typescript' }, target: 'es2022' },
    module: { type: 'es6' },
  });
  return { format: 'module', source: code, shortCircuit: true };
}
