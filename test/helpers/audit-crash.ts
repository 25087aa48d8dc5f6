// Issue 11's crash drill, shared by test/e2e/audit-crash-*.test.ts (four files of five kills each,
// so each file stays well inside tap's time on a busy machine while the suite still kills 20 times).
import type { Test } from 'tap';
import { cp, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Pool } from 'undici';
import { startUpstream } from './gateway.js';
import { runCli, serveCli, writeConfig } from './process.js';
import { verifyAuditFiles } from '../../gateway/telemetry/audit-verify.js';
import { loadAuditKeys } from '../../gateway/telemetry/audit-key.js';

const POLICY = (upstream: string): string =>
  ['backends:', '  svc:', `    upstream: ${upstream}`, '    scopes:', '      read: ["GET /items/:id"]', 'roles:', '  reader:', '    grants: [svc:read]', 'agents:', '  reader-01: { role: reader, owner: test }', ''].join('\n');

/** One gateway's folder: rounds of start, load, SIGKILL, check. */
async function lane(t: Test, dir: string, config: string, token: string, rounds: number, name: string): Promise<{ answered: number; missing: number }> {
  const auditFile = join(dir, 'run', 'audit.jsonl');
  let answeredAll = 0;
  let missingAll = 0;
  for (let round = 1; round <= rounds; round++) {
    // Gateways start beside other loads on two cores: give a start more than the usual 20 s.
    const gw = await serveCli(t, ['serve', '--config', config], { timeoutMs: 60_000 });
    const pool = new Pool(gw.url, { connections: 64, pipelining: 1 });
    const answered: string[] = [];
    let stopped = false;
    let first: () => void = () => undefined;
    const firstAnswer = new Promise<void>((resolve) => (first = resolve));
    const worker = async (w: number): Promise<void> => {
      for (let i = 0; !stopped; i++) {
        try {
          // Allowed and refused calls alike: both are answers and both are owed a line.
          const path = (w + i) % 4 === 0 ? `/svc/other/${i}` : `/svc/items/${i}`;
          const res = await pool.request({ method: 'GET', path, headers: { authorization: `Bearer ${token}` } });
          // The head is here: from now on the request counts as answered.
          answered.push(String(res.headers['x-request-id']));
          first();
          await res.body.dump().catch(() => undefined);
        } catch {
          if (stopped) return;
        }
      }
    };
    const workers = Promise.all(Array.from({ length: 64 }, (_, w) => worker(w)));
    await firstAnswer;
    // A random moment in the load: mid-batch, mid-write, mid-sync or between them.
    await new Promise((resolve) => setTimeout(resolve, Math.floor(Math.random() * 250)));
    await gw.stop('SIGKILL');
    stopped = true;
    await workers;
    await pool.destroy();

    const lines = (await readFile(auditFile, 'utf8')).split('\n').filter((l) => l !== '');
    const ids = new Set<string>();
    for (const l of lines) ids.add(String((JSON.parse(l) as { requestId?: unknown }).requestId));
    const missing = answered.filter((id) => !ids.has(id));
    answeredAll += answered.length;
    missingAll += missing.length;
    const keys = await loadAuditKeys([join(dir, 'run', 'keys', 'audit-key.pub.pem')]);
    const verified = await verifyAuditFiles([auditFile], { keys });
    t.equal(verified.problemCount, 0, `${name} kill ${round}: ${answered.length} answered, ${missing.length} without a line; chain ${verified.problemCount === 0 ? 'intact' : JSON.stringify(verified.problems.slice(0, 3))}`);
  }
  return { answered: answeredAll, missing: missingAll };
}

/**
 * `kills` rounds over `lanes` gateway processes (each its own folder and audit file, one shared key
 * folder): start, 64-connection load, SIGKILL at a random moment, then every answered request
 * id must be in the file and the chain must verify.
 */
export async function crashDrill(t: Test, kills: number, lanes: number): Promise<void> {
  const upstream = await startUpstream(t);
  const names = ['a', 'b', 'c', 'd'].slice(0, lanes);
  const root = t.testdir({ policies: { 'p.yaml': POLICY(upstream.url) }, ...Object.fromEntries(names.map((n) => [n, {}])) });
  // Several gateways, each killed kills/lanes times: the start of one (the slow part of a round)
  // overlaps the load of the others. They share one
  // key folder's contents, so one token serves all.
  const configs = await Promise.all(names.map((n) => writeConfig(join(root, n), join(root, 'policies'))));
  const configA = configs[0] ?? '';
  const token = (await runCli(['token', '--agent', 'reader-01', '--config', configA])).stdout.trim();
  t.match(token, /^eyJ/);
  for (const n of names.slice(1)) await cp(join(root, 'a', 'run', 'keys'), join(root, n, 'run', 'keys'), { recursive: true });
  const results = await Promise.all(names.map((n, i) => lane(t, join(root, n), configs[i] ?? '', token, kills / names.length, n.toUpperCase())));
  const answered = results.reduce((n, r) => n + r.answered, 0);
  const missing = results.reduce((n, r) => n + r.missing, 0);
  t.equal(missing, 0, `${answered} answered over ${kills} kills, none without its audit line`);
  t.ok(answered > kills, `${answered} answers: the kills came under load`);
  // The real CLI agrees on the whole file (and the state store's checkpoint is not past its end).
  const verify = await runCli(['audit', 'verify', '--config', configA, '--json']);
  t.equal(verify.code, 0, verify.stdout);
  t.match(JSON.parse(verify.stdout), { valid: true, problemCount: 0, signaturesChecked: true });
}
