// What an `agentgate` process loads, and the compile cache of bin/agentgate.js. The verb table
// (cli/index.ts) imports a verb's file only when the verb runs, and heavy libraries are imported
// where they are used: help and version load no library at all, an admin verb only the socket
// client, `check` the YAML parser, `token` jose too, never the listeners. Checked on the real
// process: a module hook records every module it resolves (no timings).
import t from 'tap';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { SHIPPED_POLICIES } from './helpers/root.js';
import { runCli, serveCli, writeConfig, type CliResult } from './helpers/process.js';

const HOOK = `
import { register } from 'node:module';
register('data:text/javascript,' + encodeURIComponent(\`
import { appendFileSync } from 'node:fs';
export async function resolve(specifier, context, next) {
  const result = await next(specifier, context);
  if (!result.url.startsWith('node:')) appendFileSync(process.env.AGENTGATE_TEST_LOADED, result.url + '\\\\n');
  return result;
}\`));
`;

/** The environment that preloads the trace hook, which lists every module loaded in `list`. */
async function tracing(dir: string, list: string): Promise<NodeJS.ProcessEnv> {
  const hook = join(dir, 'hook.mjs');
  if (!existsSync(hook)) await writeFile(hook, HOOK);
  await writeFile(list, '');
  // The trace hook goes after whatever the test runner preloads (runCli swaps tap's own hook for
  // a coverage recorder that imports only node: built-ins).
  const nodeOptions = `${process.env.NODE_OPTIONS ?? ''} --import=${hook}`.trim();
  return { NODE_OPTIONS: nodeOptions, AGENTGATE_TEST_LOADED: list, NODE_DISABLE_COMPILE_CACHE: '1' };
}

/** Our modules (relative to dist/gateway/) and the packages in a trace list. */
function loaded(list: string): { ours: Set<string>; packages: Set<string> } {
  const urls = readFileSync(list, 'utf8').split('\n').filter((u) => u !== '');
  const ours = new Set(urls.filter((u) => u.includes('/dist/gateway/')).map((u) => u.slice(u.indexOf('/dist/gateway/') + '/dist/gateway/'.length)));
  const packages = new Set(urls.filter((u) => u.includes('/node_modules/')).map((u) => {
    const [first = '', second = ''] = u.slice(u.lastIndexOf('/node_modules/') + '/node_modules/'.length).split('/');
    return first.startsWith('@') ? `${first}/${second}` : first;
  }));
  return { ours, packages };
}

/** Run the CLI with the hook; what it printed, and the modules it loaded. */
async function traced(dir: string, name: string, args: readonly string[]): Promise<CliResult & { ours: Set<string>; packages: Set<string> }> {
  const list = join(dir, `${name}.loaded`);
  const result = await runCli(args, { env: await tracing(dir, list) });
  return { ...result, ...loaded(list) };
}

/** What `--version` and every form of help may load: the dispatcher and the error leaves. */
const DISPATCHER = ['main.js', 'cli/index.js', 'cli/verb.js', 'errors.js', 'version.js', 'state/errors.js', 'admin/errors.js', 'admin/client.js', 'broker/errors.js', 'broker/credentials.js'];

t.test('help and version load the verb table only: no verb file, no library', async (t) => {
  const dir = t.testdir();
  const forms = [['--version'], ['version', '--json'], ['--help'], ['help', 'audit'], ['serve', '--help'], ['token', '-h'], ['explain', '--help'], ['kill', 'x', '--reason', 'r', '--socket', '/nonexistent/a.sock', '--help']];
  for (const [i, args] of forms.entries()) {
    const run = await traced(dir, `help-${i}`, args);
    t.equal(run.code, 0, args.join(' '));
    t.ok(run.ours.has('cli/index.js'), `${args.join(' ')}: the trace sees our modules`);
    t.same([...run.ours].filter((m) => !DISPATCHER.includes(m)), [], `${args.join(' ')}: only the dispatcher and the error leaves`);
    t.same([...run.packages], [], `${args.join(' ')}: no package`);
  }
});

t.test('each verb loads its own modules, and never the listeners', async (t) => {
  const dir = t.testdir();
  const config = await writeConfig(join(dir, 'cfg'), SHIPPED_POLICIES);
  const nowhere = join(dir, 'none.sock');
  const minted = await runCli(['token', '--agent', 'marketing-agent-03', '--config', config, '--socket', nowhere]);
  t.equal(minted.code, 0, 'a token to explain');
  const token = minted.stdout.trim();
  // The listeners' modules and libraries: only `serve` and `demo` load them.
  const SERVE_ONLY = ['server.js', 'upgrade.js', 'telemetry/metrics.js', 'stages/forward.js', 'broker/router.js', 'admin/routes.js', 'admin/socket.js'];
  const cases: Array<{ args: string[]; code: number; out: RegExp; loads: string[]; packages: string[] }> = [
    // An admin verb given its socket: the socket client, no config, no policy, no library.
    { args: ['status', '--socket', nowhere], code: 1, out: /no admin socket/, loads: ['cli/admin.js'], packages: [] },
    { args: ['kill', 'a', '--reason', 'r', '--socket', nowhere], code: 1, out: /no admin socket/, loads: ['cli/admin.js'], packages: [] },
    { args: ['agents', '--socket', nowhere, '--json'], code: 1, out: /no admin socket/, loads: ['cli/admin.js'], packages: [] },
    // check: the settings and the policies (YAML), nothing of tokens or state.
    { args: ['check', '--config', config], code: 0, out: /ok \(/, loads: ['cli/check.js', 'config.js', 'policy/index.js'], packages: ['yaml'] },
    // token: the policies and the signing key (jose); no store, no listener.
    { args: ['token', '--agent', 'data-agent-01', '--config', config, '--socket', nowhere], code: 0, out: /^ey/, loads: ['cli/token.js', 'tokens/keys.js'], packages: ['yaml', 'jose'] },
    // explain: the checks of the request path and a logger, not the metrics (prom-client) or forwarding (undici).
    { args: ['explain', '--token', token, 'GET', '/crm/contacts', '--config', config, '--socket', nowhere], code: 0, out: /^ALLOW  GET \/crm\/contacts/, loads: ['cli/explain.js', 'pipeline.js', 'stages/authorize.js'], packages: ['yaml', 'jose', 'pino', 'lru-cache'] },
    // credentials with no gateway running: the store driver, loaded only for the offline change.
    { args: ['credentials', 'list', '--config', config, '--socket', nowhere], code: 0, out: /AGENT/, loads: ['cli/credentials.js', 'state/memory.js'], packages: ['yaml', 'lru-cache'] },
    // audit verify of a trail that is not there: the verifier and the settings (keys, state).
    { args: ['audit', 'verify', join(dir, 'missing.jsonl'), '--config', config], code: 1, out: /missing\.jsonl/, loads: ['cli/audit.js', 'telemetry/audit-verify.js'], packages: ['yaml'] },
  ];
  for (const [i, c] of cases.entries()) {
    const name = c.args.slice(0, 2).join(' ');
    const run = await traced(dir, `verb-${i}`, c.args);
    t.equal(run.code, c.code, `${name}: exit ${c.code}`);
    t.match(`${run.stdout}${run.stderr}`, c.out, `${name}: it ran`);
    for (const module of c.loads) t.ok(run.ours.has(module), `${name} loads ${module}`);
    t.same([...run.ours].filter((m) => SERVE_ONLY.includes(m)), [], `${name} loads none of the listeners' modules`);
    t.same([...run.packages].filter((p) => !c.packages.includes(p)).sort(), [], `${name} loads only ${c.packages.join(', ') || 'no package'}`);
  }
});

t.test('serve loads the listeners, and what no request has needed yet stays unloaded', async (t) => {
  const dir = t.testdir();
  const config = await writeConfig(join(dir, 'cfg'), SHIPPED_POLICIES);
  const list = join(dir, 'serve.loaded');
  const gateway = await serveCli(t, ['serve', '--config', config], { env: await tracing(dir, list) });
  const { ours, packages } = loaded(list);
  for (const module of ['cli/serve.js', 'server.js', 'pipeline.js', 'stages/forward.js', 'telemetry/metrics.js', 'admin/socket.js']) t.ok(ours.has(module), `serve loads ${module}`);
  for (const name of ['undici', 'prom-client', 'pino', 'yaml', 'jose']) t.ok(packages.has(name), `serve loads ${name}`);
  // http-proxy comes with the first WebSocket upgrade (test/e2e/websocket.test.ts), the Redis
  // client with state.driver: redis, the cluster with workers > 1.
  t.notOk(packages.has('http-proxy'), 'no WebSocket yet: http-proxy is not loaded');
  t.notOk(packages.has('redis') || packages.has('@redis/client'), 'memory driver: the Redis client is not loaded');
  t.same([...ours].filter((m) => m.startsWith('cluster/')), [], 'one worker: the cluster code is not loaded');
  const health = await fetch(`${gateway.metricsUrl}/healthz`);
  t.equal(health.status, 200, 'and it serves');
  t.equal(await gateway.stop(), 0, 'a clean stop');
});

t.test('the compile cache: in the user cache folder on Node >= 22.1, off with NODE_DISABLE_COMPILE_CACHE=1', async (t) => {
  const dir = t.testdir();
  const supported = Number(process.versions.node.split('.')[0]) > 22 || (process.versions.node.startsWith('22.') && Number(process.versions.node.split('.')[1]) >= 1);
  const entries = (cache: string): string[] => (existsSync(cache) ? readdirSync(cache, { recursive: true, encoding: 'utf8' }) : []);

  const off = join(dir, 'off');
  const disabled = await runCli(['--version'], { env: { XDG_CACHE_HOME: off, NODE_DISABLE_COMPILE_CACHE: '1', NODE_COMPILE_CACHE: undefined } });
  t.equal(disabled.code, 0);
  t.same(entries(join(off, 'agentgate')), [], 'NODE_DISABLE_COMPILE_CACHE=1: nothing is written');

  const on = join(dir, 'on');
  const enabled = await runCli(['--version'], { env: { XDG_CACHE_HOME: on, NODE_DISABLE_COMPILE_CACHE: undefined, NODE_COMPILE_CACHE: undefined } });
  t.equal(enabled.code, 0);
  t.match(enabled.stdout, /^agentgate \d/);
  if (supported) t.ok(entries(join(on, 'agentgate', 'compile-cache')).length > 1, `node ${process.version}: compiled code cached under $XDG_CACHE_HOME/agentgate/compile-cache`);
  else t.same(entries(join(on, 'agentgate')), [], `node ${process.version} has no compile cache: nothing is written`);

  // No home folder: no cache, rather than a folder in the shared temp folder (another user could
  // have made it beforehand, and its entries would be code the CLI runs).
  const temp = join(dir, 'tmp');
  await mkdir(temp);
  const homeless = await runCli(['--version'], { env: { HOME: '/', XDG_CACHE_HOME: undefined, TMPDIR: temp, NODE_DISABLE_COMPILE_CACHE: undefined, NODE_COMPILE_CACHE: undefined } });
  t.equal(homeless.code, 0, 'no home folder: the CLI runs');
  t.same(entries(temp).filter((e) => !e.startsWith('tap-') && !e.startsWith('ag-')), [], 'and writes no cache into the temp folder');

  // A cache that cannot be written (a file where the folder would be) only means no cache.
  const blocked = join(dir, 'blocked');
  await writeFile(blocked, 'not a folder');
  const still = await runCli(['--version'], { env: { XDG_CACHE_HOME: blocked, NODE_DISABLE_COMPILE_CACHE: undefined, NODE_COMPILE_CACHE: undefined } });
  t.equal(still.code, 0, 'an unwritable cache folder does not stop the CLI');
  t.match(still.stdout, /^agentgate \d/);
});
