// The import table of the README's "Code layout" section, enforced: every import in gateway/ is
// parsed (static, re-export and dynamic), and an arrow the table does not list fails here.
// A new module or arrow is a design change: add its row to IMPORT_TABLE and to the README together.
import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { join, posix, relative } from 'node:path';
import ts from 'typescript';
import { ROOT } from './helpers/root.js';

const GATEWAY = join(ROOT, 'gateway');

/**
 * Module (a file, or a folder ending in `/`) -> what it may import. `type:x` allows type-only
 * imports of x. The first row whose key matches a file decides; `*` allows everything.
 */
export const IMPORT_TABLE: ReadonlyArray<readonly [string, readonly string[]]> = [
  // Leaves: anybody may import them; they import nothing of ours.
  ['clock.ts', []],
  ['errors.ts', []],
  ['tokens/claims.ts', []],
  ['version.ts', []],
  // A secret in a file of its own (Redis passwords): checked by config at load, read by the state driver at start.
  ['secret-file.ts', []],
  ['problem.ts', ['errors.ts']],
  // Which request headers reach a backend: read by policy (validation), stages and upgrades.
  ['headers.ts', ['errors.ts', 'type:context.ts', 'type:tokens/claims.ts', 'type:policy/types.ts']],
  ['context.ts', ['errors.ts', 'clock.ts', 'tokens/claims.ts', 'type:policy/types.ts', 'type:telemetry/log.ts', 'type:state/view.ts', 'type:mcp/types.ts']],
  // Composition roots build everything.
  ['main.ts', ['*']],
  ['server.ts', ['*']],
  ['cli/', ['*']],
  // The request path.
  ['stages/', ['stages/', 'mcp/', 'headers.ts', 'context.ts', 'errors.ts', 'clock.ts', 'tokens/', 'telemetry/', 'policy/types.ts', 'type:state/store.ts', 'state/view.ts', 'state/breaker.ts', 'state/rules/']],
  // MCP backends: JSON-RPC parsing, tool grants, response filtering, refusals (authorize, the runner and the filters call it).
  ['mcp/', ['mcp/', 'context.ts', 'errors.ts', 'problem.ts', 'policy/types.ts', 'policy/resource.ts', 'stages/strict-json.ts', 'stages/filters/mask.ts', 'telemetry/']],
  ['admission/', ['admission/', 'context.ts', 'errors.ts', 'clock.ts', 'tokens/claims.ts', 'telemetry/', 'policy/types.ts', 'state/store.ts', 'state/view.ts', 'state/breaker.ts', 'state/rules/']],
  ['outcome.ts', ['mcp/outcome.ts', 'context.ts', 'errors.ts', 'clock.ts', 'tokens/claims.ts', 'telemetry/', 'policy/types.ts', 'state/view.ts', 'state/breaker.ts']],
  ['pipeline.ts', ['stages/', 'mcp/', 'admission/', 'outcome.ts', 'context.ts', 'errors.ts', 'problem.ts', 'clock.ts', 'tokens/claims.ts', 'telemetry/', 'policy/types.ts', 'type:state/store.ts', 'state/view.ts']],
  ['upgrade.ts', ['pipeline.ts', 'headers.ts', 'outcome.ts', 'context.ts', 'errors.ts', 'problem.ts', 'clock.ts', 'telemetry/', 'type:policy/types.ts']],
  // Around it.
  ['tokens/', ['tokens/', 'clock.ts', 'errors.ts', 'secret-file.ts', 'type:state/store.ts']],
  ['broker/', ['broker/', 'tokens/', 'state/store.ts', 'state/breaker.ts', 'state/rules/', 'errors.ts', 'problem.ts', 'clock.ts', 'policy/types.ts', 'policy/resource.ts', 'telemetry/']],
  ['policy/', ['policy/', 'headers.ts', 'errors.ts', 'clock.ts']],
  ['config.ts', ['policy/', 'errors.ts', 'clock.ts', 'secret-file.ts']],
  ['state/', ['state/', 'clock.ts', 'secret-file.ts', 'type:policy/types.ts', 'type:config.ts']],
  ['admin/', ['admin/', 'admission/', 'policy/', 'state/', 'tokens/', 'telemetry/', 'errors.ts', 'problem.ts', 'clock.ts']],
  ['telemetry/', ['telemetry/', 'errors.ts', 'clock.ts', 'secret-file.ts']],
  // `workers: N`: the primary and its workers (they build a gateway each, through server.ts).
  ['cluster/', ['cluster/', 'server.ts', 'type:config.ts', 'clock.ts', 'state/', 'telemetry/']],
];

/** Stage files: none may import another (helpers beside them in stages/ may be shared). */
const STAGE_FILES = ['stages/normalize.ts', 'stages/authenticate.ts', 'stages/admit.ts', 'stages/authorize.ts', 'stages/forward.ts'];

/** Each third-party package is imported from one place (STYLE §8): replacing it touches one module. */
const PACKAGES: Readonly<Record<string, readonly string[]>> = {
  undici: ['stages/forward.ts', 'tokens/trusted.ts'],
  'http-proxy': ['upgrade.ts'],
  jose: ['tokens/'],
  'lru-cache': ['state/memory.ts', 'tokens/verify.ts'],
  'prom-client': ['telemetry/metrics.ts'],
  pino: ['telemetry/log.ts'],
  yaml: ['policy/load.ts'],
  redis: ['state/redis.ts'],
  'node-sql-parser': ['stages/aggregate-sql.ts'],
};

interface Edge {
  readonly from: string;
  readonly to: string;
  readonly typeOnly: boolean;
  /** A relative import (one of our modules, or something outside gateway/). */
  readonly local: boolean;
  readonly line: number;
}

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...sources(path));
    else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) out.push(path);
  }
  return out.sort();
}

/** Every import of `file`: static imports, re-exports and `import('x')`, with type-only flags. */
export function importsOf(file: string, text: string): Edge[] {
  const from = relative(GATEWAY, file).split('\\').join('/');
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const edges: Edge[] = [];
  const add = (specifier: string, typeOnly: boolean, node: ts.Node): void => {
    const to = specifier.startsWith('.') ? posix.normalize(posix.join(posix.dirname(from), specifier)).replace(/\.js$/, '.ts') : specifier;
    edges.push({ from, to, typeOnly, local: specifier.startsWith('.'), line: source.getLineAndCharacterOfPosition(node.getStart()).line + 1 });
  };
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node) && ts.isStringLiteral(node.moduleSpecifier)) {
      const clause = node.importClause;
      const allTypes = clause !== undefined && (clause.isTypeOnly || (clause.name === undefined && clause.namedBindings !== undefined && ts.isNamedImports(clause.namedBindings) && clause.namedBindings.elements.length > 0 && clause.namedBindings.elements.every((e) => e.isTypeOnly)));
      add(node.moduleSpecifier.text, allTypes, node);
    } else if (ts.isExportDeclaration(node) && node.moduleSpecifier !== undefined && ts.isStringLiteral(node.moduleSpecifier)) {
      add(node.moduleSpecifier.text, node.isTypeOnly, node);
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const [arg] = node.arguments;
      if (arg !== undefined && ts.isStringLiteralLike(arg)) add(arg.text, false, node);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return edges;
}

function matches(key: string, path: string): boolean {
  return key.endsWith('/') ? path.startsWith(key) : path === key;
}

export function ruleFor(path: string): readonly string[] | undefined {
  return IMPORT_TABLE.find(([key]) => matches(key, path))?.[1];
}

/** Why `edge` breaks the table, or null when it is allowed. */
export function violation(edge: Edge): string | null {
  const at = `gateway/${edge.from}:${edge.line}`;
  if (edge.to.startsWith('node:')) return null;
  if (edge.local) {
    const rule = ruleFor(edge.from);
    if (rule === undefined) return `${at}: gateway/${edge.from} has no row in the import table`;
    // Only the composition roots reach outside gateway/ (the CLI starts the demo backends).
    if (edge.to.startsWith('..')) return rule.includes('*') ? null : `${at}: imports ${edge.to}, outside gateway/`;
    if (STAGE_FILES.includes(edge.from) && STAGE_FILES.includes(edge.to) && edge.from !== edge.to) return `${at}: stage ${edge.from} imports another stage (${edge.to})`;
    // Helpers beside the stages (constraints/, request-rules.ts, ...) serve them and never call one.
    if (edge.from.startsWith('stages/') && !STAGE_FILES.includes(edge.from) && STAGE_FILES.includes(edge.to)) return `${at}: stage helper ${edge.from} imports a stage (${edge.to})`;
    if (edge.from === edge.to) return null;
    for (const allowed of rule) {
      if (allowed === '*') return null;
      const typeOnly = allowed.startsWith('type:');
      const key = typeOnly ? allowed.slice(5) : allowed;
      if (matches(key, edge.to) && (!typeOnly || edge.typeOnly)) return null;
    }
    const typeAllowed = rule.some((a) => a.startsWith('type:') && matches(a.slice(5), edge.to));
    return `${at}: ${edge.from} must not import ${edge.to}${typeAllowed ? ' (only types from it)' : ''}`;
  }
  const name = edge.to.startsWith('@') ? edge.to.split('/').slice(0, 2).join('/') : (edge.to.split('/')[0] ?? edge.to);
  const places = PACKAGES[name];
  if (places === undefined) return `${at}: package ${name} is not in the package table (one importing module per package)`;
  if (!places.some((p) => matches(p, edge.from))) return `${at}: package ${name} is imported only from ${places.join(', ')}`;
  return null;
}

t.test('every import in gateway/ follows the import table', async (t) => {
  const problems: string[] = [];
  let count = 0;
  for (const file of sources(GATEWAY)) {
    for (const edge of importsOf(file, readFileSync(file, 'utf8'))) {
      count++;
      const problem = violation(edge);
      if (problem !== null) problems.push(problem);
    }
  }
  t.ok(count > 100, `checked ${count} imports`);
  t.same(problems, [], 'no forbidden import');
});

t.test('the checker refuses what the table forbids', async (t) => {
  // Each case is a file that would be written into gateway/ with one import.
  const cases: Array<{ name: string; file: string; source: string; expect: RegExp | null }> = [
    { name: 'a stage importing the request context', file: 'stages/admit.ts', source: "import type { RequestContext } from '../context.js';", expect: null },
    { name: 'a clock from the clock leaf', file: 'broker/jwks.ts', source: "import type { Clock } from '../clock.js';", expect: null },
    { name: 'the broker importing the request context for a type', file: 'broker/jwks.ts', source: "import type { Clock } from '../context.js';", expect: /broker\/jwks\.ts must not import context\.ts/ },
    { name: 'tokens importing the request context', file: 'tokens/mint.ts', source: "import type { Actor } from '../context.js';", expect: /must not import context\.ts/ },
    { name: 'state importing the request context', file: 'state/memory.ts', source: "import type { Clock } from '../context.js';", expect: /must not import context\.ts/ },
    { name: 'a stage importing another stage', file: 'stages/authorize.ts', source: "import { createAdmit } from './admit.js';", expect: /imports another stage/ },
    { name: 'the authorize stage running its constraints', file: 'stages/authorize.ts', source: "import { checkNetwork } from './constraints/network.js';", expect: null },
    { name: 'a constraint importing the stage that runs it', file: 'stages/constraints/approval.ts', source: "import { createAuthorize } from '../authorize.js';", expect: /stage helper stages\/constraints\/approval\.ts imports a stage/ },
    { name: 'a stage importing the pipeline', file: 'stages/forward.ts', source: "import { STAGE_ORDER } from '../pipeline.js';", expect: /must not import pipeline\.ts/ },
    { name: 'a stage importing the broker', file: 'stages/authenticate.ts', source: "import { DEFAULT_SINGLE_IDLE_SECONDS } from '../broker/introspect.js';", expect: /must not import broker\/introspect\.ts/ },
    { name: 'a stage importing a store value (a driver)', file: 'stages/admit.ts', source: "import { createMemoryStore } from '../state/memory.js';", expect: /must not import state\/memory\.ts/ },
    { name: 'a stage importing state/store for a value', file: 'stages/admit.ts', source: "import { CLOSED } from '../state/store.js';", expect: /only types from it/ },
    { name: 'a stage re-exporting admin', file: 'stages/admit.ts', source: "export { createAdminHandler } from '../admin/routes.js';", expect: /must not import admin\/routes\.ts/ },
    { name: 'a dynamic import of the server from a stage', file: 'stages/normalize.ts', source: "const m = await import('../server.js');", expect: /must not import server\.ts/ },
    { name: 'the pipeline importing the admin API', file: 'pipeline.ts', source: "import { createAdminHandler } from './admin/routes.js';", expect: /must not import admin\/routes\.ts/ },
    { name: 'the pipeline loading policy files', file: 'pipeline.ts', source: "import { loadPolicyFiles } from './policy/load.js';", expect: /must not import policy\/load\.ts/ },
    { name: 'the broker importing a stage', file: 'broker/router.ts', source: "import { createAuthorize } from '../stages/authorize.js';", expect: /must not import stages\/authorize\.ts/ },
    { name: 'the admin API importing the pipeline', file: 'admin/routes.ts', source: "import type { Pipeline } from '../pipeline.js';", expect: /must not import pipeline\.ts/ },
    { name: 'policy importing state', file: 'policy/compile.ts', source: "import type { Store } from '../state/store.js';", expect: /must not import state\/store\.ts/ },
    { name: 'state importing telemetry', file: 'state/redis.ts', source: "import type { Metrics } from '../telemetry/metrics.js';", expect: /must not import telemetry\/metrics\.ts/ },
    { name: 'the clock leaf importing anything', file: 'clock.ts', source: "import type { ReasonCode } from './errors.js';", expect: /clock\.ts must not import errors\.ts/ },
    { name: 'the claims leaf importing the context', file: 'tokens/claims.ts', source: "import type { RequestContext } from '../context.js';", expect: /must not import context\.ts/ },
    { name: 'jose outside tokens/', file: 'broker/issue.ts', source: "import { SignJWT } from 'jose';", expect: /package jose is imported only from tokens\// },
    { name: 'undici in the admin API', file: 'admin/client.ts', source: "import { request } from 'undici';", expect: /package undici/ },
    { name: 'an unlisted package', file: 'stages/forward.ts', source: "import express from 'express';", expect: /package express is not in the package table/ },
    { name: 'a module with no row', file: 'gadgets/thing.ts', source: "import type { Clock } from '../clock.js';", expect: /has no row in the import table/ },
  ];
  for (const c of cases) {
    const found = importsOf(join(GATEWAY, c.file), c.source).map(violation).filter((v): v is string => v !== null);
    if (c.expect === null) t.same(found, [], c.name);
    else t.match(found.join('\n'), c.expect, c.name);
  }
});

t.test('the README Code layout section lists every row of the table', async (t) => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const start = readme.indexOf('## Code layout');
  t.ok(start !== -1, 'README has a Code layout section');
  const section = readme.slice(start, readme.indexOf('\n## ', start + 1));
  for (const [key] of IMPORT_TABLE) t.match(section, `\`${key}\``, `Code layout names ${key}`);
});

