// The `agentgate` CLI as a process: check, token, explain, exit codes and one-line errors.
import t from 'tap';
import { stat } from 'node:fs/promises';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { SHIPPED_POLICIES } from './helpers/root.js';
import { runCli, writeConfig } from './helpers/process.js';

t.test('check', async (t) => {
  const dir = t.testdir({
    broken: {
      'a.yaml': [
        'backends:',
        '  crm:',
        '    upstream: http://127.0.0.1:9101',
        '    scopes:',
        '      contacts.read: ["GET /contacts"]',
        'roles:',
        '  marketing:',
        '    grants: [crm:contacts.raed]',
        '    readonly: true',
        'agents:',
        '  m-01: { role: helpdesk, owner: x }',
        '',
      ].join('\n'),
    },
  });
  const good = await writeConfig(join(dir, 'good'), SHIPPED_POLICIES);
  const ok = await runCli(['check', '--config', good]);
  t.equal(ok.code, 0, ok.stderr);
  t.match(ok.stdout, /ok \(6 backends, 3 roles, 3 agents/);
  const okJson = await runCli(['check', '--config', good, '--json']);
  t.match(JSON.parse(okJson.stdout), { valid: true, backends: 6, roles: 3, agents: 3 });

  const bad = await writeConfig(join(dir, 'bad'), join(dir, 'broken'));
  const res = await runCli(['check', '--config', bad]);
  t.equal(res.code, 1);
  const lines = res.stderr.trim().split('\n');
  t.match(lines, [/a\.yaml:8 {2}roles\.marketing\.grants\[0\]: unknown scope "crm:contacts\.raed"/, /a\.yaml:9 {2}roles\.marketing\.readonly: unknown key/, /a\.yaml:11 {2}agents\.m-01\.role: role "helpdesk" is not defined/, /configuration invalid \(3 problems\)/], 'every problem, with file:line, in one run');
  t.equal(res.stdout, '');
});

t.test('token and explain', async (t) => {
  const dir = t.testdir({});
  const config = await writeConfig(dir, SHIPPED_POLICIES);

  const data = await runCli(['token', '--agent', 'data-agent-01', '--ttl', '10m', '--config', config]);
  t.equal(data.code, 0, data.stderr);
  const token = data.stdout.trim();
  t.equal(data.stdout, `${token}\n`, 'prints only the token');
  t.match(decodeProtectedHeader(token), { alg: 'EdDSA', typ: 'at+jwt', kid: String });
  const claims = decodeJwt(token);
  t.match(claims, { iss: 'http://agentgate.test', sub: 'data-agent-01', client_id: 'data-agent-01', aud: ['bi'], scope: 'bi:query.aggregate bi:reports.read' });
  t.equal(Number(claims.exp) - Number(claims.iat), 600, 'TTL as asked, at the role\'s 10m cap');
  const keyFiles = readdirSync(join(dir, 'run', 'keys'));
  t.equal(keyFiles.length, 1, 'one signing key made at first use');
  const mode = (await stat(join(dir, 'run', 'keys', keyFiles[0] ?? ''))).mode & 0o777;
  t.equal(mode, 0o600, 'signing key is 0600');

  const narrowed = await runCli(['token', '--agent', 'marketing-agent-03', '--scope', 'content:assets.read', '--config', config]);
  t.equal(narrowed.code, 0);
  t.match(decodeJwt(narrowed.stdout.trim()), { aud: ['content'], scope: 'content:assets.read' });

  const failures = [
    { args: ['token', '--agent', 'nobody'], code: 1, line: /^agentgate: invalid_client: / },
    { args: ['token', '--agent', 'marketing-agent-03', '--scope', 'tickets:tickets.read'], code: 1, line: /^agentgate: invalid_scope: .*tickets:tickets\.read/ },
    { args: ['token'], code: 2, line: /^agentgate: token needs --agent ID\n$/ },
    { args: ['token', '--agent', 'data-agent-01', '--ttl', '10'], code: 2, line: /^agentgate: --ttl: / },
    { args: ['token', '--agent', 'data-agent-01', '--ttl', '2h'], code: 2, line: /^agentgate: --ttl 2h is longer than role data allows \(token\.ttl 10m\)/ },
    { args: ['token', '--bogus'], code: 2, line: /^agentgate: Unknown option '--bogus'/ },
    { args: ['frobnicate'], code: 2, line: /^agentgate: unknown command "frobnicate"/ },
  ];
  for (const f of failures) {
    const res = await runCli([...f.args, '--config', config]);
    t.equal(res.code, f.code, f.args.join(' '));
    t.match(res.stderr, f.line);
    t.equal(res.stderr.trim().split('\n').length, 1, 'one line');
    t.equal(res.stdout, '');
  }

  const missing = await runCli(['check', '--config', join(dir, 'nope.yaml')]);
  t.equal(missing.code, 1);
  t.match(missing.stderr, /nope\.yaml: no such file/);

  const allow = await runCli(['explain', '--token', token, 'GET', '/bi/reports/7', '--config', config]);
  t.equal(allow.code, 0, allow.stderr);
  t.match(allow.stdout, /^ALLOW {2}GET \/bi\/reports\/7\n {2}rule: {3}route "GET \/reports\/:id" of scope bi:reports\.read/);

  const deny = await runCli(['explain', '--token', token, 'GET', '/crm/contacts', '--config', config, '--json']);
  t.equal(deny.code, 0);
  t.match(JSON.parse(deny.stdout), { decision: 'deny', status: 403, reason: 'cross_domain', agent: 'data-agent-01', role: 'data' });

  const bad = await runCli(['explain', '--token', 'not-a-token', 'GET', '/bi/reports', '--config', config, '--json']);
  t.match(JSON.parse(bad.stdout), { decision: 'deny', status: 401, reason: 'token_invalid' });
});
