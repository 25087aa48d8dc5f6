// The audit trail as a security reviewer checks it (one line per request under 20,000 concurrent
// requests is in audit-load.test.ts, a file of its own to stay far from tap's timeout): none
// lost to a SIGTERM mid-load, tampering named by the real `agentgate audit verify`, the operator
// of an admin call identified by the kernel, and no token anywhere in audit or log output.
import t from 'tap';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startUpstream } from '../helpers/gateway.js';
import { load, POLICY } from '../helpers/audit-load.js';
import { runCli, serveCli, writeConfig } from '../helpers/process.js';

t.test('the gateway process: SIGTERM mid-load, admin peer, verify, tail, no tokens', async (t) => {
  const upstream = await startUpstream(t, (_req, res) => {
    // Slow enough that SIGTERM lands while requests are in flight.
    setTimeout(() => res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}'), 5);
  });
  const dir = t.testdir({ policies: { 'p.yaml': POLICY(upstream.url) } });
  const config = await writeConfig(dir, join(dir, 'policies'));
  const auditFile = join(dir, 'run', 'audit.jsonl');
  const cli = (...args: string[]) => runCli([...args, '--config', config]);
  const gw = await serveCli(t, ['serve', '--config', config]);
  const tokens = [(await cli('token', '--agent', 'reader-01')).stdout.trim(), (await cli('token', '--agent', 'reader-02')).stdout.trim()];
  t.match(tokens[0], /^eyJ/, 'a real token');

  await t.test('an admin call records the kernel-reported peer', async (t) => {
    const kill = await cli('kill', 'reader-02', '--reason', 'audit test');
    t.equal(kill.code, 0, kill.stderr);
    const revive = await cli('revive', 'reader-02');
    t.equal(revive.code, 0, revive.stderr);
    const refused = await cli('kill', 'nobody', '--reason', 'x');
    t.equal(refused.code, 1);
    // The line is written once the peer lookup returns: poll for it (with a deadline).
    let admin: Array<Record<string, unknown>> = [];
    const deadline = Date.now() + 15_000;
    while (admin.length < 3 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      admin = (await readFile(auditFile, 'utf8').catch(() => ''))
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .filter((l) => l.kind === 'admin');
    }
    t.match(admin, [
      { action: 'kill', agent: 'reader-02', reason: 'none', detail: 'audit test', by: /\(pid \d+\)$/, peer: { uid: process.getuid?.(), pid: Number, command: 'node' } },
      { action: 'revive', agent: 'reader-02', peer: { uid: process.getuid?.(), command: 'node' } },
      { action: 'refused', decision: 'deny', reason: 'agent_unknown', peer: { uid: process.getuid?.() } },
    ]);
    const peerPid = (admin[0]?.peer as { pid?: number } | undefined)?.pid;
    t.not(peerPid, gw.child.pid, 'the peer is the CLI process, not the gateway');
    t.equal(String(admin[0]?.by), `${String(admin[0]?.by).split(' (pid')[0]} (pid ${peerPid})`, 'the pid the CLI claims is the pid the kernel reports');
  });

  await t.test('SIGTERM in the middle of load loses no answered request', async (t) => {
    let exit: Promise<number | null> | null = null;
    const answered = await load(gw.url, 3_000, 32, (i) => tokens[i % 2] ?? '', { n: 1_000, then: () => (exit = gw.stop('SIGTERM')) });
    t.ok(exit !== null, 'SIGTERM was sent');
    t.equal(await exit, 0, 'the gateway exits 0');
    t.ok(answered.length >= 1_000, `${answered.length} requests answered before and during shutdown`);
    const lines = (await readFile(auditFile, 'utf8'))
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const ids = new Set(lines.map((l) => String(l.requestId)));
    const lost = answered.filter((a) => !ids.has(a.id));
    t.equal(lost.length, 0, 'every answered request has its audit line');
    t.match(gw.output(), /^\{[^\n]*"signal":"SIGTERM"[^\n]*"msg":"shutting down"/m, 'the shutdown is logged');
  });

  await t.test('audit verify passes on the real file and names each kind of tampering', async (t) => {
    const clean = await cli('audit', 'verify', auditFile);
    t.equal(clean.code, 0, clean.stdout + clean.stderr);
    t.match(clean.stdout, /: ok \(\d+ lines, seq 1\.\.\d+, chain intact, \d+ checkpoint\(s\)/);
    const lines = (await readFile(auditFile, 'utf8')).split('\n').filter((l) => l !== '');
    t.ok(lines.length > 100);
    // A request line to edit: from line 42 on (a checkpoint line, which has no status, may sit there).
    const edit = lines.findIndex((x, i) => i >= 41 && /"status":\d+/.test(x));
    const cases: Array<[string, (l: string[]) => string[], RegExp]> = [
      ['edited', (l) => l.map((x, i) => (i === edit ? x.replace(/"status":\d+/, '"status":299') : x)), new RegExp(`:${edit + 1}: edited`)],
      ['removed', (l) => l.filter((_, i) => i !== 60), /:61: 1 line\(s\) removed/],
      ['inserted', (l) => [...l.slice(0, 70), l[70] ?? '', ...l.slice(70)], /:72: out of order or duplicated/],
      ['reordered', (l) => [...l.slice(0, 80), l[81] ?? '', l[80] ?? '', ...l.slice(82)], /:81: 1 line\(s\) removed|:82: out of order/],
      ['truncated', (l) => [...l.slice(0, 90), (l[90] ?? '').slice(0, 30), ...l.slice(91)], /:91: not valid JSON/],
      ['forged line without chain', (l) => [...l.slice(0, 95), '{"kind":"proxy","decision":"allow"}', ...l.slice(95)], /:96: no seq\/prev chain fields/],
    ];
    for (const [name, tamper, expected] of cases) {
      const copy = join(dir, `tampered-${name.replaceAll(' ', '-')}.jsonl`);
      await writeFile(copy, `${tamper(lines).join('\n')}\n`);
      const res = await cli('audit', 'verify', copy);
      t.equal(res.code, 1, `${name}: exit 1`);
      t.match(res.stdout, expected, `${name}: names the line`);
      t.match(res.stdout, /TAMPERED/);
    }
    const json = await cli('audit', 'verify', auditFile, '--json');
    t.match(JSON.parse(json.stdout), { valid: true, problems: [], firstSeq: 1 });
    const missing = await cli('audit', 'verify', join(dir, 'nope.jsonl'));
    t.equal(missing.code, 1);
    t.match(missing.stderr, /^agentgate: no audit file at .*nope\.jsonl/);
  });

  await t.test('audit tail filters for people', async (t) => {
    const all = await cli('audit', 'tail', '-n', '5');
    t.equal(all.code, 0, all.stderr);
    t.equal(all.stdout.trim().split('\n').length, 5, 'default file from the config, five lines');
    const denies = await cli('audit', 'tail', '--decision', 'deny', '--agent', 'reader-01', '-n', '50', '--json');
    const records = denies.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    t.equal(records.length, 50);
    t.ok(records.every((r) => r.decision === 'deny' && r.agent === 'reader-01' && r.reason === 'unknown_route'));
    const recent = await cli('audit', 'tail', '--since', '10m', '-n', '1000000', '--json');
    const old = await cli('audit', 'tail', '--since', '1ms', '--json');
    t.ok(recent.stdout.trim().split('\n').length > 1000, 'everything is within ten minutes');
    t.equal(old.stdout.trim(), '', 'nothing within the last millisecond');
    const human = await cli('audit', 'tail', '-n', '1', '--decision', 'deny');
    t.match(human.stdout, /^\d{4}-\d\d-\d\dT\S+Z\s+proxy\s+deny\s+unknown_route\s+reader-0[12]\s+GET \/svc\/admin\/\d+\s+403$/m);
    const bad = await cli('audit', 'tail', '--decision', 'maybe');
    t.equal(bad.code, 2);
    t.match(bad.stderr, /--decision is allow or deny/);
  });

  await t.test('no raw token in the audit or the logs', async (t) => {
    const audit = await readFile(auditFile, 'utf8');
    const output = gw.output();
    for (const token of tokens) {
      const signature = token.split('.')[2] ?? '';
      t.notOk(audit.includes(signature), 'token not in the audit');
      t.notOk(output.includes(signature), 'token not in the log');
    }
    t.notMatch(audit, /eyJ[A-Za-z0-9_-]{10,}\.eyJ/, 'nothing JWT-shaped in the audit');
    t.notMatch(output, /eyJ[A-Za-z0-9_-]{10,}\.eyJ/, 'nothing JWT-shaped in the log');
    t.notMatch(audit, /Bearer/i);
  });
});
