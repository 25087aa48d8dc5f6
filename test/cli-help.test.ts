// The CLI's help, version and usage errors: every verb has its own --help (generated from the verb
// table), `--version` and `version` print the package version, and an unknown verb is one line and
// exit 2. The verb table is walked in-process; the process contract is checked through bin/.
import t from 'tap';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { COMMANDS, main } from '../gateway/main.js';
import { ROOT } from './helpers/root.js';
import { runCli } from './helpers/process.js';

function capture(): { out: { stdout: (s: string) => void; stderr: (s: string) => void }; stdout: string[]; stderr: string[] } {
  const stdout: string[] = [];
  const stderr: string[] = [];
  return { out: { stdout: (s) => stdout.push(s), stderr: (s) => stderr.push(s) }, stdout, stderr };
}

t.test('every verb has its own help', async (t) => {
  const global = capture();
  t.equal(await main(['--help'], global.out), 0);
  const usage = global.stdout.join('\n');
  t.ok(COMMANDS.length >= 19, 'the verb table is complete');
  for (const verb of COMMANDS) {
    t.match(usage, new RegExp(`^  ${verb}\\b`, 'm'), `global usage lists ${verb}`);
    for (const form of [[verb, '--help'], [verb, '-h'], ['help', verb]]) {
      const c = capture();
      t.equal(await main(form, c.out), 0, form.join(' '));
      const text = c.stdout.join('\n');
      t.match(text, new RegExp(`^usage: agentgate ${verb}\\b`), `${form.join(' ')} prints the verb's own help`);
      t.not(text, usage, 'not the global usage');
      t.match(text, /--config FILE/);
      t.same(c.stderr, []);
    }
  }
  // --help anywhere before `--` wins and runs nothing (no socket is dialled, no config read).
  const noRun = capture();
  t.equal(await main(['kill', 'x', '--reason', 'r', '--socket', '/nonexistent/agentgate.sock', '--help'], noRun.out), 0);
  t.match(noRun.stdout.join('\n'), /^usage: agentgate kill AGENT --reason R/);
});

t.test('usage errors are one line and exit 2', async (t) => {
  const failures = [
    { args: ['frobnicate'], line: /^agentgate: unknown command "frobnicate" \(try: agentgate --help\)$/ },
    { args: ['--verison'], line: /^agentgate: unknown command "--verison"/ },
    { args: ['help', 'frobnicate'], line: /^agentgate: unknown command "frobnicate"/ },
    { args: ['audit'], line: /^agentgate: audit needs verify or tail/ },
    { args: ['audit', 'frob'], line: /^agentgate: unknown audit command "frob"/ },
    { args: ['version', 'extra'], line: /^agentgate: unexpected argument "extra"/ },
    { args: ['version', '--bogus'], line: /^agentgate: Unknown option '--bogus'/ },
    { args: ['status', '--', '--help'], line: /^agentgate: unexpected argument "--help" \(status takes none\)$/ },
    { args: ['reload', 'now'], line: /^agentgate: unexpected argument "now"/ },
  ];
  for (const f of failures) {
    const c = capture();
    t.equal(await main(f.args, c.out), 2, f.args.join(' '));
    t.equal(c.stderr.length, 1, 'one line');
    t.match(c.stderr[0], f.line);
    t.same(c.stdout, []);
  }
});

t.test('the process: --version, audit --help, an unknown verb, no verb', async (t) => {
  const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string };
  // One after another, with room for a busy machine: five node processes at once can take long.
  const run = (args: string[]) => runCli(args, { timeoutMs: 60_000 });
  const version = await run(['--version']);
  const versionJson = await run(['version', '--json']);
  const auditHelp = await run(['audit', '--help']);
  const unknown = await run(['frobnicate']);
  const bare = await run([]);
  t.equal(version.code, 0);
  t.equal(version.stdout, `agentgate ${pkg.version} (node ${process.version})\n`);
  t.same(JSON.parse(versionJson.stdout), { version: pkg.version, node: process.version });
  t.equal(auditHelp.code, 0, auditHelp.stderr);
  t.match(auditHelp.stdout, /^usage: agentgate audit verify \[FILE\.\.\.\] \[--key PEM\]\n[\s\S]*agentgate audit tail[\s\S]*--follow/);
  t.equal(unknown.code, 2);
  t.equal(unknown.stderr, 'agentgate: unknown command "frobnicate" (try: agentgate --help)\n');
  t.equal(unknown.stdout, '');
  t.equal(bare.code, 2, 'no verb is a usage error');
  t.match(bare.stderr, /^usage: agentgate <command>/);
  t.equal(bare.stdout, '');
});

t.test('check warns when issuer.url names a loopback address the gateway does not listen on', async (t) => {
  const { SHIPPED_POLICIES } = await import('./helpers/gateway.js');
  const dir = t.testdir({});
  const write = async (name: string, issuer: string): Promise<string> => {
    const { writeFile } = await import('node:fs/promises');
    const file = join(dir, `${name}.yaml`);
    await writeFile(file, `listen: { host: 127.0.0.1, port: 9000 }\npolicies: ${JSON.stringify(SHIPPED_POLICIES)}\n${issuer}\nadmin: { socket: ${JSON.stringify(join(dir, `${name}.sock`))} }\n`);
    return file;
  };
  const mismatch = capture();
  t.equal(await main(['check', '--config', await write('mismatch', 'issuer: { url: "http://127.0.0.1:8080" }')], mismatch.out), 0, 'still valid');
  t.match(mismatch.stderr, [/^warning: issuer\.url http:\/\/127\.0\.0\.1:8080 does not match listen 127\.0\.0\.1:9000/]);
  t.match(mismatch.stdout, [/: ok \(/]);
  const json = capture();
  t.equal(await main(['check', '--json', '--config', await write('mismatch-json', 'issuer: { url: "http://localhost:8080" }')], json.out), 0);
  t.match(JSON.parse(json.stdout[0] ?? ''), { valid: true, warnings: [/does not match listen/] });
  for (const [name, issuer] of [['derived', ''], ['public', 'issuer: { url: "https://gw.example.com" }'], ['same', 'issuer: { url: "http://127.0.0.1:9000" }']] as const) {
    const c = capture();
    t.equal(await main(['check', '--config', await write(name, issuer)], c.out), 0, name);
    t.same(c.stderr, [], `${name}: no warning`);
  }
});
