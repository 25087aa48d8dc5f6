// Every problem the admin socket answers with comes from the catalog (errors.ts ADMIN_PROBLEMS):
// a real gateway process, each refusal driven over its Unix socket (HTTP calls and raw bytes the
// parser refuses), status, type, title and media type checked against the catalog entry, and the
// codes driven here plus the ones other files drive cover the whole admin catalog.
import t, { type Test } from 'tap';
import { readFile, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { request } from 'undici';
import { ADMIN_PROBLEMS, ADMIN_PROBLEM_CODES, type AdminProblemCode } from '../../gateway/errors.js';
import { adminParserRefusal } from '../../gateway/admin/socket.js';
import { startUpstream } from '../helpers/gateway.js';
import { runCli, serveCli, writeConfig } from '../helpers/process.js';

interface Answer {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: string;
}

function call(socketPath: string, method: string, path: string, body = ''): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ socketPath, method, path, headers: body === '' ? {} : { 'content-type': 'application/json' } }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
    });
    // A body over the limit is answered before it is all sent: the socket may reset meanwhile.
    req.on('error', reject);
    req.end(body);
  });
}

/** Raw bytes on the admin socket; the answer as node's client would parse it. */
function raw(socketPath: string, bytes: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(socketPath);
    let text = '';
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => (text += d));
    socket.on('error', reject);
    socket.on('end', () => {
      const [head = '', ...rest] = text.split('\r\n\r\n');
      const [statusLine = '', ...fields] = head.split('\r\n');
      const headers: Record<string, string> = {};
      for (const field of fields) headers[field.slice(0, field.indexOf(':')).toLowerCase()] = field.slice(field.indexOf(':') + 1).trim();
      resolve({ status: Number(statusLine.split(' ')[1]), headers, body: rest.join('\r\n\r\n') });
    });
    socket.write(bytes);
  });
}

t.test('every admin refusal is a catalog problem', async (t) => {
  const upstream = await startUpstream(t);
  const policy = [
    'backends:',
    '  tickets:',
    `    upstream: ${upstream.url}`,
    '    scopes:',
    '      read: ["GET /tickets"]',
    '      config.write:',
    '        routes: ["PUT /config"]',
    '        approval: required',
    'roles:',
    '  ops:',
    '    grants: [tickets:read, tickets:config.write]',
    'agents:',
    '  ops-01: { role: ops, owner: test }',
    '',
  ].join('\n');
  const dir = t.testdir({ policies: { 'p.yaml': policy } });
  const config = await writeConfig(dir, join(dir, 'policies'));
  const socket = /admin:\s+\{ socket: "([^"]+)"/.exec(await readFile(config, 'utf8'))?.[1] ?? '';
  const gw = await serveCli(t, ['serve', '--config', config]);
  const token = (await runCli(['token', '--agent', 'ops-01', '--config', config])).stdout.trim();
  const asked = await request(`${gw.url}/tickets/config`, { method: 'PUT', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: '{"a":1}' });
  const approvalId = String(((await asked.body.json()) as { approvalId?: string }).approvalId);
  t.match(approvalId, /^apr_/, 'a pending approval to decide twice');
  t.equal((await call(socket, 'POST', `/approvals/${approvalId}/deny`, '{"reason":"not now"}')).status, 200, 'denied once');

  const driven = new Set<AdminProblemCode>();
  const cases: Array<{ name: string; code: AdminProblemCode; send: () => Promise<Answer>; check?: (t: Test, answer: Answer, body: Record<string, unknown>) => void }> = [
    { name: 'malformed JSON', code: 'invalid_request', send: () => call(socket, 'POST', '/agents/ops-01/kill', '{not json') },
    { name: 'a kill without a reason', code: 'invalid_request', send: () => call(socket, 'POST', '/agents/ops-01/kill', '{}') },
    { name: 'an overlap out of range', code: 'invalid_request', send: () => call(socket, 'POST', '/agents/ops-01/credentials/rotate', '{"overlapMs":-1}') },
    { name: 'bytes that are not HTTP/1.1', code: 'invalid_request', send: () => raw(socket, 'GET /status HTTP/1.1\r\nHost: admin\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n') },
    { name: 'a control byte in the target', code: 'invalid_request', send: () => raw(socket, 'GET /sta\x01tus HTTP/1.1\r\nHost: admin\r\n\r\n') },
    { name: 'an unknown endpoint', code: 'not_found', send: () => call(socket, 'GET', '/nope') },
    { name: 'a jti this gateway never issues', code: 'not_found', send: () => call(socket, 'POST', '/tokens/revoke', '{"jti":"not-a-uuid"}') },
    { name: 'an unknown agent', code: 'agent_unknown', send: () => call(socket, 'POST', '/agents/ghost/kill', '{"reason":"x"}') },
    { name: 'an unknown client secret', code: 'credential_unknown', send: () => call(socket, 'POST', '/agents/ops-01/credentials/revoke', '{"id":"nope"}') },
    { name: 'an unknown approval', code: 'approval_unknown', send: () => call(socket, 'GET', '/approvals/apr_nope') },
    {
      name: 'GET where POST is due',
      code: 'method_not_allowed',
      send: () => call(socket, 'GET', '/kill'),
      check: (t, answer) => t.equal(answer.headers.allow, 'POST', 'Allow names the method'),
    },
    {
      name: 'DELETE on a credential list',
      code: 'method_not_allowed',
      send: () => call(socket, 'DELETE', '/agents/ops-01/credentials'),
      check: (t, answer) => t.equal(answer.headers.allow, 'GET, POST', 'Allow names both methods'),
    },
    { name: 'deciding a denied approval', code: 'approval_not_pending', send: () => call(socket, 'POST', `/approvals/${approvalId}/approve`, '{}') },
    { name: 'a body over 64 KiB', code: 'body_too_large', send: () => call(socket, 'POST', '/kill', JSON.stringify({ reason: 'x'.repeat(70_000) })) },
    { name: 'a head over 16 KiB', code: 'headers_too_large', send: () => raw(socket, `GET /status HTTP/1.1\r\nHost: admin\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`) },
    {
      name: 'a reload of broken policies',
      code: 'policy_invalid',
      send: async () => {
        await writeFile(join(dir, 'policies', 'broken.yaml'), 'roles:\n  bad:\n    grants: [tickets:nothing]\n');
        return call(socket, 'POST', '/policies/reload', '{}');
      },
      check: (t, _answer, body) => t.match(body.problems, [/broken\.yaml:3 {2}roles\.bad\.grants\[0\]: unknown scope/], 'the problems are listed'),
    },
  ];
  for (const c of cases) {
    await t.test(c.name, async (t) => {
      const answer = await c.send();
      const spec = ADMIN_PROBLEMS[c.code];
      t.equal(answer.status, spec.status, 'the catalog status');
      t.equal(answer.headers['content-type'], 'application/problem+json');
      const body = JSON.parse(answer.body) as Record<string, unknown>;
      t.match(body, { type: `urn:agentgate:problem:${c.code}`, title: spec.title, status: spec.status, detail: String }, 'the catalog type and title');
      c.check?.(t, answer, body);
      driven.add(c.code);
    });
  }

  await t.test('the CLI prints the catalog title', async (t) => {
    const res = await runCli(['kill', 'ghost', '--reason', 'x', '--config', config]);
    t.equal(res.code, 1);
    t.match(res.stderr, `agentgate: ${ADMIN_PROBLEMS.agent_unknown.title}: no agent "ghost" in the policies`);
  });

  await t.test('the gateway kept serving', async (t) => {
    const res = await request(`${gw.url}/tickets/tickets`, { headers: { authorization: `Bearer ${token}` } });
    await res.body.text();
    t.equal(res.statusCode, 200);
  });

  await t.test('the codes driven here and elsewhere are the whole admin catalog', async (t) => {
    // A head that never completes waits node's headersTimeout (a minute): its mapping is checked here.
    t.same(adminParserRefusal(Object.assign(new Error('timeout'), { code: 'ERR_HTTP_REQUEST_TIMEOUT' }))[0], 'request_timeout');
    driven.add('request_timeout');
    const elsewhere: Partial<Record<AdminProblemCode, string>> = {
      audit_unavailable: 'test/e2e/audit-disk-full.test.ts (a full disk)',
      state_unavailable: 'test/e2e/redis-faults.test.ts (Redis away)',
      internal: 'a bug, by definition not drivable',
    };
    t.same([...driven, ...Object.keys(elsewhere)].sort(), [...ADMIN_PROBLEM_CODES].sort());
  });
});
