// `agentgate demo-backends` (the compose file's backends service): the real CLI process serves
// each demo backend on the port its policy names, answers realistic data, and stops on SIGTERM.
import t, { type Test } from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';
import { freePort, ROOT } from '../helpers/root.js';
import { runCli, spawnAgentgate, writeConfig } from '../helpers/process.js';

interface Started {
  readonly ports: Map<string, number>;
  readonly child: ReturnType<typeof spawnAgentgate>;
  readonly exited: Promise<number | null>;
  readonly out: string;
}

/**
 * The shipped policies with a free port per backend, and `demo-backends` started on them. A port
 * found free can be taken by another test's process before the backends bind it (tap runs files
 * side by side): on EADDRINUSE it tries again with new ports, at most three times.
 */
async function startBackends(t: Test): Promise<Started> {
  for (let attempt = 1; ; attempt++) {
    // One free port per backend, found by name: the shipped policy's backend order is not this test's business.
    const ports = new Map<string, number>();
    let backend = '';
    const lines: string[] = [];
    for (const line of readFileSync(join(ROOT, 'policies', 'backends.yaml'), 'utf8').split('\n')) {
      const key = /^ {2}([\w-]+):\s*$/.exec(line);
      if (key?.[1] !== undefined) backend = key[1];
      if (/^\s+upstream: http:\/\/127\.0\.0\.1:\d+/.test(line)) {
        const port = await freePort();
        ports.set(backend, port);
        lines.push(line.replace(/127\.0\.0\.1:\d+/, `127.0.0.1:${port}`));
      } else lines.push(line);
    }
    const dir = t.testdir({
      policies: {
        'backends.yaml': lines.join('\n'),
        'roles.yaml': readFileSync(join(ROOT, 'policies', 'roles.yaml'), 'utf8'),
        'agents.yaml': readFileSync(join(ROOT, 'policies', 'agents.yaml'), 'utf8'),
      },
    });
    const config = await writeConfig(dir, join(dir, 'policies'));
    const child = spawnAgentgate(['demo-backends', '--config', config]);
    const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
    t.teardown(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
    let out = '';
    const listening = await new Promise<boolean>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no listening line:\n${out}`)), 20_000);
      const onData = (d: Buffer): void => {
        out += d.toString('utf8');
        if (out.includes('demo backends listening')) {
          clearTimeout(timer);
          resolve(true);
        }
      };
      child.stdout.on('data', onData);
      child.stderr.on('data', onData);
      // 'close', not 'exit': by then everything it wrote has been read.
      child.once('close', () => {
        clearTimeout(timer);
        resolve(false);
      });
    });
    if (listening) return { ports, child, exited, out };
    if (!out.includes('EADDRINUSE') || attempt === 3) throw new Error(`demo-backends exited before listening:\n${out}`);
    t.comment(`a port was taken before the backends bound it; again with new ports (${out.trim()})`);
  }
}

t.test('demo-backends serves the ports its policies name', async (t) => {
  const { ports, child, exited, out } = await startBackends(t);
  t.ok(ports.has('crm') && ports.has('bi'), `every backend got a port: ${[...ports.keys()].join(', ')}`);
  t.match(out, new RegExp(`crm http://127\\.0\\.0\\.1:${ports.get('crm')}`));
  const contacts = await request(`http://127.0.0.1:${ports.get('crm')}/contacts`);
  t.equal(contacts.statusCode, 200);
  const body = (await contacts.body.json()) as { contacts?: Array<Record<string, unknown>> } | Array<Record<string, unknown>>;
  t.match(JSON.stringify(body), /"email":/, 'contacts carry email');
  const reports = await request(`http://127.0.0.1:${ports.get('bi')}/reports`);
  t.equal(reports.statusCode, 200);
  await reports.body.dump();
  child.kill('SIGTERM');
  t.equal(await exited, 0, 'stops cleanly on SIGTERM');

  const missing = t.testdir({ policies: { 'p.yaml': 'backends:\n  crm:\n    upstream: http://127.0.0.1:1\n    scopes: { r: ["GET /x"] }\nroles: {}\nagents: {}\n' } });
  const res = await runCli(['demo-backends', '--config', await writeConfig(missing, join(missing, 'policies'))]);
  t.equal(res.code, 1);
  t.match(res.stderr, /^agentgate: the policies define no backend "content"/);
});
