// The README's "five-minute tour", run as written: the shipped agentgate.yaml and policies, the
// ports moved (AGENTGATE_LISTEN_PORT=0, the README's advice when ports are busy), the banner read
// from the real `agentgate demo` process, every curl line and table row of the tour parsed from
// README.md and sent, and every status the README prints asserted. OAuth discovery with
// openid-client must find the broker on the moved port. Nothing trips before the finale; the
// finale then trips the marketing agent's breaker on purpose (as the README's loop does) and the
// operator revives it, on the same demo process (it was tour.test.ts, a second demo that replayed
// every call of the tour to get there).
import t from 'tap';
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as client from 'openid-client';
import { decodeJwt } from 'jose';
import { ROOT } from '../helpers/root.js';
import { runCli, spawnAgentgate } from '../helpers/process.js';

// ---- the README, parsed ----------------------------------------------------------------------

const README = readFileSync(join(ROOT, 'README.md'), 'utf8');
const TOUR = README.slice(README.indexOf('## A five-minute tour'), README.indexOf('**The breaker trips.**'));
const FINALE = README.slice(README.indexOf('**The breaker trips.**'), README.indexOf('## How a request is checked'));

/** Shell words of one command line: quotes, and $VARS expanded from `env` outside single quotes. */
function shellWords(line: string, env: Readonly<Record<string, string>>): string[] {
  const words: string[] = [];
  let word: string | null = null;
  let quote: '"' | "'" | null = null;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i] ?? '';
    if (quote === "'") {
      if (ch === "'") quote = null;
      else word += ch;
      continue;
    }
    if (ch === '$' && /[A-Z_]/.test(line[i + 1] ?? '')) {
      const name = /^[A-Z_][A-Z0-9_]*/.exec(line.slice(i + 1))?.[0] ?? '';
      const value = env[name];
      if (value === undefined) throw new Error(`the tour uses $${name}, which the banner does not export`);
      word = (word ?? '') + value;
      i += name.length;
      continue;
    }
    if (quote === '"') {
      if (ch === '"') quote = null;
      else word += ch;
      continue;
    }
    if (ch === '"' || ch === "'") {
      quote = ch;
      word ??= '';
    } else if (ch === ' ' || ch === '\t') {
      if (word !== null) words.push(word);
      word = null;
    } else word = (word ?? '') + ch;
  }
  if (word !== null) words.push(word);
  return words;
}

interface Call {
  readonly method: string;
  readonly url: string;
  readonly headers: Record<string, string>;
  readonly body: string | null;
}

/** A curl command line of the README as an HTTP call (the flags the tour uses). */
function curlCall(line: string, env: Readonly<Record<string, string>>, base: { agent: string; metrics: string }): Call {
  // The README's addresses are the default ports, and `.../` abbreviates the gateway's address.
  const words = shellWords(line.replaceAll('http://127.0.0.1:8080', base.agent).replaceAll('http://127.0.0.1:9464', base.metrics), env).map((w) => (w.startsWith('.../') ? `${base.agent}${w.slice(3)}` : w));
  if (words.shift() !== 'curl') throw new Error(`not a curl line: ${line}`);
  let method: string | null = null;
  const headers: Record<string, string> = {};
  const data: string[] = [];
  let url = '';
  while (words.length > 0) {
    const w = words.shift() ?? '';
    if (w === '-i' || w === '-s' || w === '--path-as-is' || w === '...') continue;
    if (w === '-X') method = words.shift() ?? '';
    else if (w === '-H') {
      const h = words.shift() ?? '';
      const colon = h.indexOf(':');
      headers[h.slice(0, colon).trim().toLowerCase()] = h.slice(colon + 1).trim();
    } else if (w === '-d') data.push(words.shift() ?? '');
    else if (w === '-u') headers.authorization = `Basic ${Buffer.from(words.shift() ?? '').toString('base64')}`;
    else if (w.startsWith('http://')) url = w;
    else throw new Error(`curl flag the tour test does not know: ${w} in ${line}`);
  }
  if (url === '') throw new Error(`no URL in ${line}`);
  if (data.length > 0) headers['content-type'] ??= 'application/x-www-form-urlencoded';
  return { method: method ?? (data.length > 0 ? 'POST' : 'GET'), url, headers, body: data.length > 0 ? data.join('&') : null };
}

/** The request-target exactly as written (curl --path-as-is; node sends it untouched). */
function send(call: Call): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  const url = new URL(call.url);
  const path = call.url.slice(call.url.indexOf('/', url.protocol.length + 2));
  return new Promise((resolve, reject) => {
    const req = request({ host: url.hostname, port: url.port, method: call.method, path, headers: { ...call.headers, ...(call.body === null ? {} : { 'content-length': Buffer.byteLength(call.body) }) }, timeout: 15_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`no answer to ${call.method} ${call.url}`)));
    req.on('error', reject);
    req.end(call.body ?? undefined);
  });
}

/** Code blocks of the tour, in order, with their language. */
function codeBlocks(text: string): Array<{ lang: string; body: string }> {
  return [...text.matchAll(/```(\w*)\n([\s\S]*?)```/g)].map((m) => ({ lang: m[1] ?? '', body: m[2] ?? '' }));
}

/** Shell lines of a block, with `\` continuations joined and comment lines dropped. */
function shellLines(body: string): string[] {
  return body.replace(/\\\n\s*/g, ' ').split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
}

// ---- the demo, as `npm start` runs it, with the ports moved ----------------------------------

interface Demo {
  readonly agentUrl: string;
  readonly metricsUrl: string;
  readonly env: Record<string, string>;
  readonly banner: string;
  readonly dir: string;
  readonly stdout: () => string;
}

async function startDemo(t: { teardown(fn: () => unknown): void }): Promise<Demo> {
  // The shipped files in a folder of their own (the socket path must stay under 107 bytes).
  const dir = mkdtempSync(join(tmpdir(), 'ag-tour-'));
  cpSync(join(ROOT, 'agentgate.yaml'), join(dir, 'agentgate.yaml'));
  cpSync(join(ROOT, 'policies'), join(dir, 'policies'), { recursive: true });
  const env: NodeJS.ProcessEnv = { AGENTGATE_LISTEN_PORT: '0', AGENTGATE_METRICS_PORT: '0' };
  for (const name of ['AGENTGATE_CONFIG', 'AGENTGATE_ISSUER_URL', 'AGENTGATE_SOCKET', 'AGENTGATE_ADMIN_SOCKET', 'AGENTGATE_STATE_FILE', 'AGENTGATE_REDIS_URL', 'AGENTGATE_LOG_LEVEL']) env[name] = undefined;
  const child = spawnAgentgate(['demo'], { cwd: dir, env });
  let stderr = '';
  let stdout = '';
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
    rmSync(dir, { recursive: true, force: true });
  });
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the demo did not print its banner in time:\n${stderr}`)), 60_000);
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
      if (stderr.includes('Stop with Ctrl-C.')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the demo exited with ${String(code)}:\n${stderr}`));
    });
  });
  const listening = /agentgate listening on (http:\/\/\S+) \(metrics on (http:\/\/\S+)\/metrics\)/.exec(stderr);
  if (listening === null) throw new Error(`no listening line:\n${stderr}`);
  const exports: Record<string, string> = {};
  for (const m of stderr.matchAll(/^ {2}export ([A-Z_]+)=(\S+)$/gm)) exports[m[1] ?? ''] ??= m[2] ?? '';
  return { agentUrl: listening[1] ?? '', metricsUrl: listening[2] ?? '', env: exports, banner: stderr, dir, stdout: () => stdout };
}

const demo = await startDemo(t);
const base = { agent: demo.agentUrl, metrics: demo.metricsUrl };
const cli = (...args: string[]) => runCli(args, { cwd: demo.dir, env: { AGENTGATE_CONFIG: '', AGENTGATE_SOCKET: '', AGENTGATE_ISSUER_URL: '' }, timeoutMs: 60_000 });

t.test('the banner: moved ports, every secret and token, how long each token lives', async (t) => {
  t.notMatch(demo.agentUrl, /:8080$/, 'the agent port moved');
  t.notMatch(demo.metricsUrl, /:9464$/, 'the metrics port moved');
  t.same(Object.keys(demo.env).sort(), ['DATA_SECRET', 'DATA_TOKEN', 'MARKETING_SECRET', 'MARKETING_TOKEN', 'SUPPORT_SECRET', 'SUPPORT_TOKEN']);
  for (const [agent, life] of [['marketing-agent-03', '30m'], ['support-agent-01', '1h'], ['data-agent-01', '10m']] as const) {
    t.match(demo.banner, new RegExp(`# ${agent}: lives ${life} \\(until \\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ\\)`), `${agent}'s lifetime is printed`);
    t.match(demo.banner, `export ${agent.split('-')[0]?.toUpperCase() ?? ''}_TOKEN=$(npx agentgate token --agent ${agent})`, `and the command for a fresh one`);
  }
  for (const token of [demo.env.MARKETING_TOKEN, demo.env.SUPPORT_TOKEN, demo.env.DATA_TOKEN]) t.equal(decodeJwt(token ?? '').iss, demo.agentUrl, 'tokens name the bound address');
  // Lines for people go to stderr; stdout is the JSON log only (`agentgate serve | jq` works).
  const logLines = demo.stdout().split('\n').filter((l) => l !== '');
  t.ok(logLines.length > 0, 'the JSON log is on stdout');
  for (const line of logLines) t.doesNotThrow(() => JSON.parse(line), `stdout is JSON: ${line.slice(0, 60)}`);
  t.notMatch(demo.stdout(), /export |listening on/);
  // Every command of the banner fits 100 columns; only the secrets and tokens are longer.
  for (const line of demo.banner.split('\n')) if (!/^ {2}export [A-Z_]+=\S+$/.test(line) && !line.startsWith('Client secrets')) t.ok(line.length <= 100, `short enough: ${line.slice(0, 50)}`);
});

t.test('openid-client discovery finds the broker on the moved port', async (t) => {
  const config = await client.discovery(new URL(demo.agentUrl), 'support-agent-01', undefined, client.ClientSecretBasic(demo.env.SUPPORT_SECRET ?? ''), {
    algorithm: 'oauth2',
    execute: [client.allowInsecureRequests],
  });
  const meta = config.serverMetadata();
  t.equal(meta.issuer, demo.agentUrl);
  t.equal(meta.token_endpoint, `${demo.agentUrl}/oauth/token`);
  const { access_token } = await client.clientCredentialsGrant(config, { scope: 'kb:articles.read' });
  t.equal(decodeJwt(access_token).iss, demo.agentUrl);
  const used = await send({ method: 'GET', url: `${demo.agentUrl}/kb/articles`, headers: { authorization: `Bearer ${access_token}` }, body: null });
  t.equal(used.status, 200, 'the token works on the proxy');
  t.match(await client.tokenIntrospection(config, access_token), { active: true, scope: 'kb:articles.read' });
  await client.tokenRevocation(config, access_token);
  const revoked = await send({ method: 'GET', url: `${demo.agentUrl}/kb/articles`, headers: { authorization: `Bearer ${access_token}` }, body: null });
  t.equal(revoked.status, 401, 'revoked: the next call is 401');
});

t.test('every call of the tour answers what the README prints', async (t) => {
  const blocks = codeBlocks(TOUR);
  let calls = 0;
  // ```sh curl ...``` followed by ```HTTP/1.1 NNN ...``` (status, headers, body as printed).
  for (const [i, block] of blocks.entries()) {
    const next = blocks[i + 1];
    if (block.lang !== 'sh' || next === undefined || !next.body.startsWith('HTTP/1.1 ')) continue;
    const [line] = shellLines(block.body);
    const res = await send(curlCall(line ?? '', demo.env, base));
    calls++;
    const printed = next.body.split('\n\n');
    const head = (printed[0] ?? '').split('\n');
    t.equal(`HTTP/1.1 ${res.status}`, (head[0] ?? '').split(' ').slice(0, 2).join(' '), line ?? '');
    for (const h of head.slice(1)) {
      const [name, ...value] = h.split(': ');
      if (name === 'x-request-id') t.match(res.headers['x-request-id'], /^[0-9a-f-]{36}$/);
      else t.equal(res.headers[(name ?? '').toLowerCase()], value.join(': '), `${name ?? ''} as printed`);
    }
    const printedBody = (printed[1] ?? '').replace(/\n\s*/g, '');
    if (printedBody.includes('"requestId":"..."')) {
      const expected = JSON.parse(printedBody.replace('"requestId":"..."', '"requestId":"x"')) as Record<string, unknown>;
      t.same({ ...(JSON.parse(res.body) as Record<string, unknown>), requestId: 'x' }, expected, `${line}: the problem document as printed`);
    } else if (printedBody !== '') t.same(JSON.parse(res.body), JSON.parse(printedBody), `${line}: the body as printed`);
  }

  // The "More to try" table: | `curl ...` | NNN `reason` |, and "same with `{...}`" rows.
  let previous: string | null = null;
  for (const m of TOUR.matchAll(/^\| (`curl .+`|same with `(\{.+\})`)(?: \(no token\))? \| (\d{3})(?: `(\w+)`)?.* \|$/gm)) {
    let line = m[1] ?? '';
    if (m[2] !== undefined) {
      if (previous === null) throw new Error('"same with" before any curl row');
      line = previous.replace(/-d '[^']*'/, `-d '${m[2]}'`);
    } else line = line.slice(1, -1).replaceAll('\\|', '|');
    previous = line;
    const res = await send(curlCall(line, demo.env, base));
    calls++;
    t.equal(res.status, Number(m[3]), line);
    if (m[4] !== undefined) t.match(JSON.parse(res.body), { type: `urn:agentgate:problem:${m[4]}`, status: Number(m[3]) }, `${line}: ${m[4]}`);
  }
  t.ok(calls >= 13, `the tour's calls were all found (${calls})`);
});


/** agentgate_violations_total of one agent, summed over its reasons (monotonic, no window). */
async function violationsOf(agent: string): Promise<number> {
  const metrics = await send({ method: 'GET', url: `${demo.metricsUrl}/metrics`, headers: {}, body: null });
  let total = 0;
  for (const m of metrics.body.matchAll(/^agentgate_violations_total\{([^}]*)\} (\d+)$/gm)) if ((m[1] ?? '').includes(`agent="${agent}"`)) total += Number(m[2]);
  return total;
}

t.test('the tour does not trip a breaker by accident', async (t) => {
  // "The marketing agent has made four in this tour": the README's count, checked.
  const words: Record<string, number> = { one: 1, two: 2, three: 3, four: 4, five: 5 };
  const said = /marketing agent has made (\w+) in this tour/.exec(FINALE)?.[1] ?? '';
  const threshold = Number(/suspend an agent at (\d+) violations/.exec(FINALE)?.[1]);
  t.ok(words[said] !== undefined && threshold > 0, `the README states the count (${said}) and the threshold (${threshold})`);
  t.equal(await violationsOf('marketing-agent-03'), words[said], 'the tour made exactly the violations the README counts');
  t.ok((words[said] ?? 0) < threshold, 'fewer than the breaker needs');
  const agents = await cli('agents', '--json');
  t.equal(agents.code, 0, agents.stderr);
  const rows = (JSON.parse(agents.stdout) as { agents: Array<{ id: string; breaker: string; violationsInWindow: number }> }).agents;
  t.equal(rows.length, 3);
  for (const row of rows) t.equal(row.breaker, 'closed', `${row.id}'s breaker is closed after the tour (${row.violationsInWindow} violations in the window)`);
});

t.test('the finale: the breaker trips, the operator revives the agent', async (t) => {
  const token = demo.env.MARKETING_TOKEN ?? '';
  const call = (path: string) => send({ method: 'GET', url: `${demo.agentUrl}${path}`, headers: { authorization: `Bearer ${token}` }, body: null });
  const problem = (body: string): string => ((JSON.parse(body) as { type?: string }).type ?? '').replace('urn:agentgate:problem:', '');
  const marketingRow = async (): Promise<Record<string, unknown>> => {
    const res = await cli('agents', '--json');
    t.equal(res.code, 0, `agents: ${res.stderr}`);
    return (JSON.parse(res.stdout) as { agents: Array<Record<string, unknown>> }).agents.find((r) => r.id === 'marketing-agent-03') ?? {};
  };
  const counted = await send({ method: 'GET', url: `${demo.metricsUrl}/metrics`, headers: {}, body: null });
  t.match(counted.body, /agentgate_violations_total\{agent="marketing-agent-03",role="marketing",reason="out_of_scope"\} 1/);
  // The inventory counts the tour's four violations (the CLI runs are independent: at once, so the
  // violations stay inside the breaker's one-minute window even on a busy machine).
  const [first, table] = await Promise.all([marketingRow(), cli('agents')]);
  t.match(first, { breaker: 'closed', violationsInWindow: 4 }, 'the inventory shows the true count');
  t.match(table.stdout, /^marketing-agent-03 +marketing +growth-team +closed +4 /m);
  const loop: string[] = [];
  for (let i = 0; i < 6; i++) loop.push(problem((await call('/crm/export')).body));
  // The fifth violation inside the minute opens it: one more out_of_scope, then suspended.
  t.same(loop, ['out_of_scope', 'agent_suspended', 'agent_suspended', 'agent_suspended', 'agent_suspended', 'agent_suspended']);
  const suspended = await call('/crm/contacts/1');
  t.same([suspended.status, problem(suspended.body)], [403, 'agent_suspended'], 'even an allowed call');
  const retryAfter = Number(suspended.headers['retry-after']);
  t.ok(retryAfter > 0 && retryAfter <= 300, `Retry-After within the 5 minute cooldown (${String(suspended.headers['retry-after'])})`);
  const [row, openTable, metrics] = await Promise.all([marketingRow(), cli('agents'), send({ method: 'GET', url: `${demo.metricsUrl}/metrics`, headers: {}, body: null })]);
  t.match(row, { breaker: 'open', violationsInWindow: 5, trips: 1 });
  t.match(openTable.stdout, /^marketing-agent-03 +marketing +growth-team +open \(\d+s\) +5 /m);
  t.match(metrics.body, /agentgate_breaker_state\{agent="marketing-agent-03"\} 2/);
  t.match(metrics.body, /agentgate_breaker_trips_total\{agent="marketing-agent-03"\} 1/);

  // The operator revives it.
  const revived = await cli('revive', 'marketing-agent-03');
  t.same([revived.code, revived.stdout.trim()], [0, 'revived marketing-agent-03']);
  t.equal((await call('/crm/contacts/1')).status, 200, 'back in');
  t.match(await marketingRow(), { breaker: 'closed', violationsInWindow: 0 });
});

t.test('explain, new tokens, metrics and the audit trail, as the tour runs them', async (t) => {
  const blocks = codeBlocks(TOUR).filter((b) => b.lang === 'sh');
  const explain = blocks.find((b) => b.body.includes('agentgate explain'));
  const [explainLine] = shellLines(explain?.body ?? '');
  const expected = (explain?.body ?? '').split('\n').filter((l) => l.startsWith('# ')).map((l) => l.slice(2));
  const words = shellWords(explainLine ?? '', demo.env);
  t.same(words.slice(0, 3), ['npx', 'agentgate', 'explain']);
  const explained = await cli(...words.slice(2));
  t.equal(explained.code, 0, explained.stderr);
  t.same(explained.stdout.trimEnd().split('\n').slice(0, expected.length), expected, 'explain prints what the README shows');

  const fresh = blocks.find((b) => b.body.includes('/oauth/token') && b.body.includes('agentgate token'));
  const lines = shellLines(fresh?.body ?? '');
  t.equal(lines.length, 3);
  const brokered = await send(curlCall(lines[0] ?? '', demo.env, base));
  t.equal(brokered.status, 200, lines[0] ?? '');
  const brokeredToken = (JSON.parse(brokered.body) as { access_token: string }).access_token;
  // `TOKEN=$(npx agentgate token ...)`: the CLI asks the running gateway for its issuer.
  const minted: string[] = [];
  for (const line of lines.slice(1)) {
    const inner = /^TOKEN=\$\((.*)\)$/.exec(line)?.[1] ?? '';
    const res = await cli(...shellWords(inner, demo.env).slice(2));
    t.equal(res.code, 0, `${line ?? ''}: ${res.stderr}`);
    minted.push(res.stdout.trim());
  }
  const uses: Array<[string, string]> = [
    [brokeredToken, '/bi/reports'],
    [minted[0] ?? '', '/bi/reports'],
    [minted[1] ?? '', '/content/assets'],
  ];
  for (const [token, path] of uses) {
    t.equal(decodeJwt(token).iss, demo.agentUrl);
    const res = await send({ method: 'GET', url: `${demo.agentUrl}${path}`, headers: { authorization: `Bearer ${token}` }, body: null });
    t.equal(res.status, 200, `a new token works on ${path}`);
  }
  t.equal(decodeJwt(minted[1] ?? '').exp ?? 0, (decodeJwt(minted[1] ?? '').iat ?? 0) + 300, '--ttl 5m');

  const metrics = await send({ method: 'GET', url: `${demo.metricsUrl}/metrics`, headers: {}, body: null });
  t.equal(metrics.status, 200);
  for (const reason of ['none', 'out_of_scope', 'cross_domain', 'read_only', 'not_aggregate', 'token_missing', 'target_invalid']) {
    t.match(metrics.body, new RegExp(`^agentgate_requests_total\\{[^}]*reason="${reason}"[^}]*\\} [1-9]`, 'm'), `decisions with reason ${reason} are counted`);
  }
  const tail = await cli('audit', 'tail');
  t.equal(tail.code, 0, tail.stderr);
  t.match(tail.stdout, /marketing-agent-03/);
  const verify = await cli('audit', 'verify', 'run/audit.jsonl');
  t.equal(verify.code, 0, verify.stdout + verify.stderr);
  t.match(verify.stdout, /chain intact/);

});

t.test('_whoami through the gateway would count as a violation', async (t) => {
  // The paragraph that says why the tour does not send /crm/_whoami through the gateway.
  const inline = [...TOUR.matchAll(/`(curl [^`]+)` is (\d{3}) `(\w+)`/g)];
  t.equal(inline.length, 1, 'the _whoami sentence');
  for (const m of inline) {
    const before = await violationsOf('marketing-agent-03');
    const res = await send(curlCall((m[1] ?? '').replace(/\s*\n\s*/g, ' '), demo.env, base));
    t.equal(res.status, Number(m[2]), m[1] ?? '');
    t.match(JSON.parse(res.body), { type: `urn:agentgate:problem:${m[3] ?? ''}` });
    t.equal(await violationsOf('marketing-agent-03'), before + 1, 'and it counts as a violation');
  }
});
