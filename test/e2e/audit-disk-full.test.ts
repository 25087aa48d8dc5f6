// Issue 11: an unwritable audit trail fails closed without corruption. A real gateway process
// writes its audit file on a 2 MiB tmpfs; the tmpfs is filled during load: new requests get 503
// audit_unavailable at once, /readyz, the metrics and the log say why, no answer goes out
// without its line; when the filler is removed serving resumes by itself and the whole file
// verifies (no duplicated, no broken line). Needs root (mount); skipped with a message otherwise.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { mkdir, open, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Pool, request } from 'undici';
import { ADMIN_PROBLEMS, OAUTH_ERRORS } from '../../gateway/errors.js';
import { startUpstream } from '../helpers/gateway.js';
import { runCli, serveCli, writeConfig } from '../helpers/process.js';

const POLICY = (upstream: string): string =>
  ['backends:', '  svc:', `    upstream: ${upstream}`, '    scopes:', '      read: ["GET /items/:id"]', 'roles:', '  reader:', '    grants: [svc:read]', 'agents:', '  reader-01: { role: reader, owner: test }', '  reader-02: { role: reader, owner: test }', ''].join('\n');

interface Answer {
  readonly id: string;
  readonly status: number;
  readonly type: string | null;
}

/** One admin call over the Unix socket. */
function admin(socketPath: string, path: string, body: Record<string, unknown>): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((done, fail) => {
    const req = httpRequest({ socketPath, method: 'POST', path, headers: { 'content-type': 'application/json' } }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (d: string) => (text += d));
      res.on('end', () => done({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown> }));
    });
    req.on('error', fail);
    req.end(JSON.stringify({ ...body, operator: 'disk-full test' }));
  });
}

/** Poll `probe` until it returns true; fails after `ms` (no fixed sleeps before an assertion). */
async function until(probe: () => Promise<boolean>, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await probe()) return true;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return false;
}

/** Why a tmpfs cannot be mounted here (not root, no CAP_SYS_ADMIN), or false when it can. */
function cannotMount(): string | false {
  const probe = mkdtempSync(join(tmpdir(), 'ag-tmpfs-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', probe], { stdio: 'pipe' });
    execFileSync('umount', [probe], { stdio: 'pipe' });
    return false;
  } catch (error) {
    return `cannot mount a tmpfs here (${String((error as { stderr?: unknown }).stderr ?? (error as Error).message).trim()}); run as root to test a full audit disk`;
  } finally {
    rmSync(probe, { recursive: true, force: true });
  }
}

t.test('a full audit disk under load: 503 at once, no line lost or broken, serving resumes', { skip: cannotMount() }, async (t) => {
  const upstream = await startUpstream(t);
  const dir = t.testdir({ policies: { 'p.yaml': POLICY(upstream.url) } });
  const disk = join(dir, 'audit-disk');
  await mkdir(disk);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m,mode=0700', 'tmpfs', disk], { stdio: 'pipe' });
  t.teardown(() => {
    execFileSync('umount', ['-l', disk], { stdio: 'ignore' });
  });
  const config = await writeConfig(dir, join(dir, 'policies'));
  const auditFile = join(disk, 'audit.jsonl');
  await writeFile(config, (await readFile(config, 'utf8')).replace('audit:    { file: ./run/audit.jsonl }', `audit:    { file: ${JSON.stringify(auditFile)} }`));
  const token = (await runCli(['token', '--agent', 'reader-01', '--config', config])).stdout.trim();
  const gw = await serveCli(t, ['serve', '--config', config]);
  const headers = { authorization: `Bearer ${token}` };

  const answers: Answer[] = [];
  let stopped = false;
  const pool = new Pool(gw.url, { connections: 32, pipelining: 1, headersTimeout: 10_000, bodyTimeout: 10_000 });
  const worker = async (w: number): Promise<void> => {
    for (let i = 0; !stopped; i++) {
      try {
        const res = await pool.request({ method: 'GET', path: `/svc/items/${w}-${i}`, headers });
        const text = await res.body.text();
        answers.push({ id: String(res.headers['x-request-id']), status: res.statusCode, type: res.statusCode === 503 ? String((JSON.parse(text) as { type?: unknown }).type) : null });
        if (res.statusCode === 503) await new Promise((resolve) => setTimeout(resolve, 5));
      } catch {
        // A connection closed without an answer: its line could not be written.
      }
    }
  };
  const workers = Promise.all(Array.from({ length: 32 }, (_, w) => worker(w)));
  t.ok(await until(async () => answers.length >= 200, 60_000), 'load is being served');

  // Fill the disk while the load runs.
  const filler = join(disk, 'filler');
  const handle = await open(filler, 'w');
  const block = Buffer.alloc(64 * 1024, 1);
  try {
    for (;;) await handle.write(block);
  } catch (error) {
    t.equal((error as { code?: unknown }).code, 'ENOSPC', 'the tmpfs is full');
  }
  await handle.close();
  const fullAt = answers.length;

  t.ok(
    await until(async () => (await request(`${gw.metricsUrl.replace(/\/metrics$/, '')}/readyz`).then((r) => r.statusCode)) === 503, 30_000),
    '/readyz turns not ready',
  );
  const ready = await request(`${gw.metricsUrl}/readyz`);
  t.equal(ready.statusCode, 503);
  t.match(await ready.body.json(), { status: 'not_ready', audit: 'unavailable', auditReason: /^ENOSPC/ });
  const refused = await request(`${gw.url}/svc/items/after-full`, { headers, headersTimeout: 5_000 });
  t.equal(refused.statusCode, 503, 'a new request is refused at once, not held');
  t.match(await refused.body.json(), { type: 'urn:agentgate:problem:audit_unavailable', status: 503 });
  // The token broker issues nothing it cannot record: the catalog's temporarily_unavailable.
  const issued = await request(`${gw.url}/oauth/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'grant_type=client_credentials', headersTimeout: 5_000 });
  t.equal(issued.statusCode, OAUTH_ERRORS.temporarily_unavailable.status, 'the broker refuses at once');
  t.equal(issued.headers['retry-after'], '1');
  t.match(await issued.body.json(), { error: 'temporarily_unavailable', error_description: String });
  const metrics = await (await request(`${gw.metricsUrl}/metrics`)).body.text();
  t.match(metrics, /^agentgate_audit_writable 0$/m);
  t.match(metrics, /^agentgate_audit_write_errors_total [1-9]\d*$/m);
  t.match(metrics, /agentgate_requests_total\{backend="unknown",decision="deny",reason="audit_unavailable"\} [1-9]/);
  t.match(gw.output(), /^(?=.*"why":"ENOSPC: no space left on device)(?=.*audit trail unwritable; refusing requests).*$/m, 'the log says so, with the cause');
  // Admin changes: one that only takes power away is applied and says its line is pending; one
  // that gives power back is refused, because it could not be audited.
  const socket = /admin:\s+\{ socket: "([^"]+)" \}/.exec(await readFile(config, 'utf8'))?.[1] ?? '';
  const revive = await admin(socket, '/agents/reader-02/revive', {});
  t.equal(revive.status, 503, 'revive refused while the audit is unwritable');
  t.match(revive.body, { type: 'urn:agentgate:problem:audit_unavailable', title: ADMIN_PROBLEMS.audit_unavailable.title, detail: /ENOSPC/ });
  const kill = await admin(socket, '/agents/reader-02/kill', { reason: 'disk full drill' });
  t.equal(kill.status, 200, 'a kill still takes effect');
  t.match(kill.body, { agent: 'reader-02', auditPending: /ENOSPC.*the change is in force/ });
  // Keep the load on the full disk for a while: nothing may be answered with a 200 now.
  const during = answers.length;
  t.ok(await until(async () => answers.length >= during + 100, 60_000), 'the outage is answered (503), not hung');

  await rm(filler);
  t.ok(
    await until(async () => (await request(`${gw.metricsUrl}/readyz`).then((r) => r.statusCode)) === 200, 30_000),
    '/readyz ready again once space returns',
  );
  const resumed = answers.length;
  t.ok(await until(async () => answers.slice(resumed).filter((a) => a.status === 200).length >= 100, 60_000), 'serving resumes by itself');
  stopped = true;
  await workers;
  await pool.close();
  t.match(gw.output(), /audit trail writable again; serving resumes/);
  t.equal(await gw.stop('SIGTERM'), 0);

  const text = await readFile(auditFile, 'utf8');
  t.ok(text.endsWith('\n'), 'the file ends with a whole line');
  const lines = text.split('\n').filter((l) => l !== '');
  const records = lines.map((l) => JSON.parse(l) as { seq: number; requestId?: string; phase?: string; kind: string });
  t.same(
    records.map((r) => r.seq),
    records.map((_, i) => i + 1),
    'every seq once, in order: no duplicated or lost line',
  );
  const first = records.filter((r) => r.phase === undefined && r.kind === 'proxy').map((r) => r.requestId);
  t.equal(new Set(first).size, first.length, 'no request audited twice');
  const ids = new Set(first);
  const owed = answers.filter((a) => a.type !== 'urn:agentgate:problem:audit_unavailable');
  t.same(owed.filter((a) => !ids.has(a.id)), [], `${owed.length} answers, each with its line`);
  t.ok(answers.slice(fullAt).some((a) => a.type === 'urn:agentgate:problem:audit_unavailable'), 'requests were refused with audit_unavailable during the outage');
  t.ok(records.some((r) => r.kind === 'admin' && (r as { action?: unknown }).action === 'kill'), 'the kill made during the outage reached the file once it recovered');
  const verify = await runCli(['audit', 'verify', '--config', config]);
  t.equal(verify.code, 0, verify.stdout);
  t.match(verify.stdout, /: ok \(\d+ lines, seq 1\.\.\d+, chain intact/);
});
