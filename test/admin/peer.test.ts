// Who called the admin socket (admin/peer.ts): asked of the kernel through `ss`, which a small
// helper shell runs so the gateway never forks itself for a lookup. The helper must give the
// right answer and come back when it dies or stalls.
import t from 'tap';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { getPriority, tmpdir } from 'node:os';
import { join } from 'node:path';
import { peerCredentials, peerLookupHelperPid, preparePeerLookups, stopPeerLookups } from '../../gateway/admin/peer.js';

async function connected(t: { teardown(fn: () => unknown): void }): Promise<Socket> {
  const dir = mkdtempSync(join(tmpdir(), 'ag-peer-'));
  const path = join(dir, 's.sock');
  const server: Server = createServer();
  const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve));
  await new Promise<void>((resolve) => server.listen(path, resolve));
  const client = createConnection(path);
  const socket = await accepted;
  t.teardown(() => {
    client.destroy();
    socket.destroy();
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return socket;
}

t.test('the helper answers, and comes back after it is killed', async (t) => {
  t.teardown(stopPeerLookups);
  preparePeerLookups();
  const first = peerLookupHelperPid();
  t.ok(first !== null && first !== process.pid, 'a helper process runs beside us');
  t.equal(getPriority(first as number), 19, 'at the lowest priority: its `ss` runs take no CPU from the gateway');
  const socket = await connected(t);
  const peer = await peerCredentials(socket);
  t.match(peer, { pid: process.pid, uid: process.getuid?.() }, 'the peer of our own connection is this process');

  process.kill(first as number, 'SIGKILL');
  // Until the helper is noticed gone a lookup may come back empty; it must never hang or be wrong.
  const deadline = Date.now() + 10_000;
  let again = await peerCredentials(socket);
  while (again === null && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    again = await peerCredentials(socket);
  }
  t.match(again, { pid: process.pid }, 'a lookup after the helper died is answered by a new one');
  t.not(peerLookupHelperPid(), first, 'which is another process');
});

t.test('a stalled helper is given up after the timeout and replaced', async (t) => {
  t.teardown(stopPeerLookups);
  preparePeerLookups();
  const pid = peerLookupHelperPid() as number;
  process.kill(pid, 'SIGSTOP');
  t.teardown(() => {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone already
    }
  });
  const socket = await connected(t);
  t.equal(await peerCredentials(socket, 300), null, 'no answer from a stopped helper: null, not a hang');
  t.match(await peerCredentials(socket), { pid: process.pid }, 'the next lookup runs in a fresh helper');
});
