// WebSocket upgrades pass the same checks as any call and are proxied with identity headers set
// and the agent's credential stripped. Real ws client, real ws backend.
import t from 'tap';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';
import { startGateway } from '../helpers/gateway.js';

t.test('websocket upgrades', async (t) => {
  const seen: IncomingMessage[] = [];
  const server = createServer();
  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req, socket, head) => {
    seen.push(req);
    wss.handleUpgrade(req, socket, head, (ws) => ws.on('message', (data) => ws.send(`echo:${String(data)}`)));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    for (const c of wss.clients) c.terminate();
    wss.close();
    server.closeAllConnections();
    server.close();
  });
  const port = (server.address() as AddressInfo).port;
  const dir = t.testdir({
    'live.yaml': [
      'backends:',
      '  live:',
      `    upstream: http://127.0.0.1:${port}`,
      '    scopes:',
      '      events: ["GET /events"]',
      '      admin: ["GET /admin"]',
      '  gone:',
      '    upstream: http://127.0.0.1:9',
      '    scopes:',
      '      events: ["GET /events"]',
      'roles:',
      '  watcher:',
      '    grants: [live:events, gone:events]',
      '  masked:',
      '    grants: [live:events]',
      '    mask: { live: [email] }',
      'agents:',
      '  watcher-01: { role: watcher, owner: test }',
      '  masked-01: { role: masked, owner: test }',
      '',
    ].join('\n'),
  });
  const gw = await startGateway(t, { policies: dir });
  const token = await gw.token('watcher-01');
  const masked = await gw.token('masked-01');
  const wsUrl = gw.url.replace('http:', 'ws:');

  await t.test('allowed: proxied, identity set, credential stripped', async (t) => {
    const ws = new WebSocket(`${wsUrl}/live/events`, { headers: { authorization: `Bearer ${token}`, 'x-agentgate-agent': 'admin' } });
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    ws.send('hello');
    const reply = await new Promise<string>((resolve) => ws.once('message', (d) => resolve(String(d))));
    t.equal(reply, 'echo:hello');
    ws.close();
    const req = seen.at(-1);
    t.equal(req?.url, '/events');
    t.equal(req?.headers.authorization, undefined);
    t.equal(req?.headers['x-agentgate-agent'], 'watcher-01');
    t.equal(req?.headers['x-agentgate-role'], 'watcher');
  });

  const refusals = [
    { name: 'no token', path: '/live/events', headers: {}, status: 401 },
    { name: 'out of scope', path: '/live/admin', headers: { authorization: `Bearer ${token}` }, status: 403 },
    { name: 'path parameter (;)', path: '/live/events;x=1', headers: { authorization: `Bearer ${token}` }, status: 400 },
    { name: 'backend down', path: '/gone/events', headers: { authorization: `Bearer ${token}` }, status: 502 },
    { name: 'a role with masked fields on the backend (frames cannot be masked)', path: '/live/events', headers: { authorization: `Bearer ${masked}` }, status: 502 },
  ];
  for (const c of refusals) {
    await t.test(c.name, async (t) => {
      const before = seen.length;
      const ws = new WebSocket(`${wsUrl}${c.path}`, { headers: c.headers });
      const status = await new Promise<number>((resolve) => {
        ws.once('unexpected-response', (_req, res) => {
          resolve(res.statusCode ?? 0);
          res.resume();
        });
        ws.once('error', () => resolve(-1));
        ws.once('open', () => resolve(101));
      });
      ws.terminate();
      t.equal(status, c.status);
      t.equal(seen.length, before, 'the backend saw no upgrade');
    });
  }
});
