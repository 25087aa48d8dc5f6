// Masking streams (issue 13): a masked JSON body longer than the hold threshold (64 KiB of output)
// reaches the agent while the upstream is still sending, masked, as long as it is valid JSON so
// far; a body that turns invalid after streaming began is cut (no final chunk) and audited as
// response_unmaskable. Shorter bodies are still validated whole before the answer (constraints.test.ts).
import t from 'tap';
import { connect } from 'node:net';
import type { ServerResponse } from 'node:http';
import { startGateway, startUpstream } from '../helpers/gateway.js';

const AGENT = 'marketing-agent-03'; // masks email, phone and tags on crm
const contact = (i: number): string => JSON.stringify({ id: String(i), name: `Contact ${i}`, email: `c${i}@example.com`, phone: '+1-555-0100', city: 'London' });
/** About 200 KiB of contacts: past the hold threshold. */
const FIRST = Array.from({ length: 2000 }, (_, i) => contact(i)).join(',');

async function until(fn: () => boolean, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > deadline) throw new Error('condition not reached in time');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

t.test('a long masked body streams while it is valid JSON, and is cut when it stops being', async (t) => {
  const held: ServerResponse[] = [];
  const upstream = await startUpstream(t, (_req, res) => {
    held.push(res);
    res.writeHead(200, { 'content-type': 'application/json' });
    res.write(`[${FIRST}`);
  });
  const gw = await startGateway(t, { upstreams: { crm: upstream.url } });
  const token = await gw.token(AGENT);
  const request = `GET /crm/contacts HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${token}\r\n\r\n`;

  const cases = [
    { name: 'valid to the end: the agent gets it whole, masked', ending: `,${contact(9999)}]`, complete: true },
    { name: 'invalid after streaming began: the connection is cut', ending: ',{"id": nope}]', complete: false },
    { name: 'upstream ends mid-document: the connection is cut', ending: ',{"id":"1"', complete: false },
  ];
  for (const [index, c] of cases.entries()) {
    await t.test(c.name, async (t) => {
      const socket = connect(gw.port, '127.0.0.1');
      let seen = '';
      let closed = false;
      socket.on('data', (d: Buffer) => (seen += d.toString('latin1')));
      socket.on('close', () => (closed = true));
      socket.write(request);
      await until(() => held.length === index + 1 && seen.includes('[masked]'));
      // The upstream has not ended its body, yet the agent has the head and masked contacts.
      t.match(seen, /^HTTP\/1\.1 200 /, 'the head went out before the upstream body ended');
      t.match(seen, /transfer-encoding: chunked/i);
      t.notMatch(seen, /content-length/i, 'no length: the masked length is not known yet');
      t.notMatch(seen, /@example\.com/, 'no email went out unmasked');
      const res = held[index] as ServerResponse;
      res.end(c.ending);
      if (c.complete) {
        await until(() => seen.endsWith('\r\n0\r\n\r\n'));
        socket.destroy();
        const body = dechunk(seen.slice(seen.indexOf('\r\n\r\n') + 4));
        const parsed = JSON.parse(body) as Array<Record<string, unknown>>;
        t.equal(parsed.length, 2001);
        t.ok(parsed.every((p) => p.email === '[masked]' && p.phone === '[masked]' && p.city === 'London'), 'every contact masked, the rest intact');
      } else {
        await until(() => closed);
        t.notOk(seen.endsWith('\r\n0\r\n\r\n'), 'no final chunk: the agent sees a cut, not an end');
        t.notMatch(seen, /@example\.com/);
      }
    });
  }

  await t.test('each cut is audited as response_unmaskable after its allow line', async (t) => {
    let lines: Array<Record<string, unknown>> = [];
    const deadline = Date.now() + 10_000;
    while ((lines = (await gw.auditLines()).filter((l) => l.path === '/contacts')).length < 5 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    t.equal(lines.filter((l) => l.phase === undefined).length, 3, 'one line per request, written before its head');
    t.ok(lines.filter((l) => l.phase === undefined).every((l) => l.decision === 'allow' && l.status === 200));
    const ends = lines.filter((l) => l.phase === 'end');
    t.equal(ends.length, 2);
    t.ok(ends.every((l) => l.reason === 'response_unmaskable' && l.decision === 'deny'), 'the cut ones say why');
  });
});

/** Decode a chunked body. */
function dechunk(text: string): string {
  let out = '';
  let at = 0;
  for (;;) {
    const eol = text.indexOf('\r\n', at);
    const size = Number.parseInt(text.slice(at, eol), 16);
    if (size === 0) return out;
    out += text.slice(eol + 2, eol + 2 + size);
    at = eol + 2 + size + 2;
  }
}
