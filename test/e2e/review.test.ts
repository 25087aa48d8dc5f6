// `agentgate review` on a generated, rotated audit set with known usage: the grants it flags as
// privilege creep are exactly those nobody used in the period (with the policy edit that removes
// them), the matrix counts every call, and the other findings are there. The HTML report opens in
// headless Chromium without errors and shows the matrix; the screenshot is saved by the run.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli, writeConfig } from '../helpers/process.js';

const DAY = 86_400_000;
const POLICY = [
  'backends:',
  '  svc:',
  '    upstream: http://127.0.0.1:9',
  '    scopes:',
  '      read: ["GET /items", "GET /items/:id"]',
  '      write: ["POST /items"]',
  '      export: ["GET /export"]',
  'defaults:',
  '  breaker: { violations: 5, window: 1m, cooldown: 5m }',
  'roles:',
  '  reader: { grants: [svc:read, svc:write, svc:export] }',
  '  ops: { grants: [svc:read], breaker: off }',
  'agents:',
  '  a-1: { role: reader, owner: team-a }',
  '  a-2: { role: reader, owner: team-a }',
  '  b-1: { role: ops, owner: team-b, expires: 2026-01-31 }',
  '  idle-1: { role: ops, owner: team-b }',
  '',
].join('\n');

function chromiumPath(): string | null {
  for (const name of ['chromium', 'chromium-browser']) {
    const found = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' });
    if (found.status === 0 && found.stdout.trim() !== '') return found.stdout.trim();
  }
  return null;
}

t.test('review of a generated audit set with known usage', async (t) => {
  const dir = t.testdir({ policies: { 'p.yaml': POLICY }, gw: { run: {} } });
  const config = await writeConfig(join(dir, 'gw'), join(dir, 'policies'));
  const now = Date.now();
  const line = (agoMs: number, fields: Record<string, unknown>) => JSON.stringify({ seq: 0, prev: '', time: new Date(now - agoMs).toISOString(), kind: 'proxy', ...fields });
  const call = (agoMs: number, agent: string, role: string, route: string | null, decision: 'allow' | 'deny', reason = 'none') =>
    line(agoMs, { agent, role, backend: 'svc', method: 'GET', route, decision, reason, status: decision === 'allow' ? 200 : 403 });
  // Oldest file first: audit.jsonl.2, .1, then the live file. Known usage inside 30 days:
  //   a-1 svc:read 12 calls (over two routes) + 1 refusal on a read route, a-2 svc:write 3 calls,
  //   b-1 svc:read 2 calls; svc:export only 40 days ago (outside the period): unused.
  const older = [call(40 * DAY, 'a-1', 'reader', 'GET /export', 'allow'), call(29 * DAY, 'a-1', 'reader', 'GET /items', 'allow'), '{not json', ''];
  const middle = [...Array.from({ length: 6 }, (_, i) => call(20 * DAY + i, 'a-1', 'reader', 'GET /items/:id', 'allow')), call(10 * DAY, 'a-2', 'reader', 'POST /items', 'allow')];
  const live = [
    ...Array.from({ length: 5 }, (_, i) => call(DAY + i, 'a-1', 'reader', 'GET /items', 'allow')),
    call(DAY, 'a-1', 'reader', 'GET /items', 'deny', 'rate_limited'),
    call(2 * DAY, 'a-1', 'reader', null, 'deny', 'out_of_scope'),
    call(2 * DAY + 1, 'a-1', 'reader', null, 'deny', 'cross_domain'),
    call(3 * DAY, 'a-2', 'reader', 'POST /items', 'allow'),
    call(3 * DAY, 'a-2', 'reader', 'POST /items', 'allow'),
    call(5 * DAY, 'b-1', 'ops', 'GET /items', 'allow'),
    call(5 * DAY, 'b-1', 'ops', 'GET /items/:id', 'allow'),
    JSON.stringify({ time: new Date(now - 1000).toISOString(), kind: 'admin', action: 'reload', agent: null }),
  ];
  const run = join(dir, 'gw', 'run');
  writeFileSync(join(run, 'audit.jsonl.2'), `${older.join('\n')}\n`);
  writeFileSync(join(run, 'audit.jsonl.1'), `${middle.join('\n')}\n`);
  writeFileSync(join(run, 'audit.jsonl'), `${live.join('\n')}\n`);

  const res = await runCli(['review', '--since', '30d', '--json', '--config', config], { timeoutMs: 60_000 });
  t.equal(res.code, 0, res.stderr);
  const review = JSON.parse(res.stdout) as {
    files: string[];
    matrix: Array<{ agent: string; grant: string; calls: number; refusals: number; lastUsed: string | null; routes: string[] }>;
    findings: Array<{ kind: string; agent: string | null; role: string | null; grant: string | null; edit: string | null }>;
    violations: Record<string, Record<string, number>>;
  };
  t.same(review.files.map((f) => f.slice(run.length + 1)), ['audit.jsonl.2', 'audit.jsonl.1', 'audit.jsonl'], 'the rotated set, oldest first');
  const cell = (agent: string, grant: string) => review.matrix.find((u) => u.agent === agent && u.grant === grant);
  t.match(cell('a-1', 'svc:read'), { calls: 12, refusals: 1, routes: ['GET /items', 'GET /items/:id'] });
  t.match(cell('a-2', 'svc:write'), { calls: 3, refusals: 0 });
  t.match(cell('a-1', 'svc:export'), { calls: 0, lastUsed: null }, 'the call 40 days ago is outside the period');
  t.match(cell('b-1', 'svc:read'), { calls: 2 });
  t.match(cell('idle-1', 'svc:read'), { calls: 0 });
  t.same(
    review.findings.filter((f) => f.kind === 'unused_grant').map((f) => [f.role, f.grant, f.edit]),
    [['reader', 'svc:export', 'roles.reader.grants: remove "svc:export" (grants: [svc:read, svc:write])']],
    'flagged: exactly the grant nobody used',
  );
  t.same(review.findings.filter((f) => f.kind === 'agent_never_seen').map((f) => f.agent), ['idle-1']);
  t.same(review.findings.filter((f) => f.kind === 'agent_expired').map((f) => f.agent), ['b-1']);
  t.same(review.findings.filter((f) => f.kind === 'role_without_breaker').map((f) => f.role), ['ops']);
  t.same(Object.values(review.violations['a-1'] ?? {}), [2], 'two violations, one day');

  const csv = await runCli(['review', '--csv', '--config', config], { timeoutMs: 60_000 });
  t.equal(csv.code, 0, csv.stderr);
  const rows = csv.stdout.split('\r\n');
  t.equal(rows[0], 'agent,role,grant,backend,routes,calls,refusals,last_used,unused');
  t.match(rows.find((r) => r.startsWith('a-1,reader,svc:export,')), /,0,0,,yes$/);

  const html = join(dir, 'review.html');
  const written = await runCli(['review', '--html', html, '--config', config], { timeoutMs: 60_000 });
  t.equal(written.code, 0, written.stderr);
  t.match(written.stdout, /review\.html: 8 grants of 4 agents, 4 findings, 24 audit lines/);
  const text = (await import('node:fs')).readFileSync(html, 'utf8');
  t.notMatch(text, /<script|https?:\/\//, 'self-contained: no script, no external resource');

  const chromium = chromiumPath();
  await t.test('the HTML report in headless Chromium', { skip: chromium === null ? 'chromium is not installed (apt-get install chromium; .ci/run installs it)' : false }, async (t) => {
  if (chromium === null) return;
  const shots = mkdtempSync(join(tmpdir(), 'agentgate-review-'));
  const screenshot = join(shots, 'review.png');
  const flags = ['--headless', '--no-sandbox', '--disable-gpu', '--hide-scrollbars', '--window-size=1280,900', `--user-data-dir=${join(shots, 'profile')}`];
  const shot = spawnSync(chromium, [...flags, `--screenshot=${screenshot}`, `file://${html}`], { encoding: 'utf8', timeout: 90_000 });
  t.equal(shot.status, 0, `chromium took the screenshot: ${shot.stderr.slice(-500)}`);
  t.ok(statSync(screenshot).size > 10_000, `screenshot saved: ${screenshot}`);
  t.comment(`review screenshot: ${screenshot}`);
  const dom = spawnSync(chromium, [...flags, '--dump-dom', `file://${html}`], { encoding: 'utf8', timeout: 90_000 });
  t.equal(dom.status, 0, dom.stderr.slice(-500));
  t.match(dom.stdout, /<table id="matrix">/, 'the browser parsed the matrix');
  t.match(dom.stdout, /<th>svc:export<\/th>/);
  t.match(dom.stdout, /class="creep"/, 'unused grants marked in the heat map');
  t.notMatch(dom.stderr, /Uncaught|SyntaxError/, 'no page errors');
  });
});
