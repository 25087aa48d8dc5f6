// Bodies stream through the real gateway process in both directions without buffering:
// 100 MB up and 100 MB down, with the gateway's peak RSS growth measured from /proc.
import t from 'tap';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { request } from 'undici';
import { startUpstream } from '../helpers/gateway.js';
import { runCli, serveCli, writeConfig } from '../helpers/process.js';

const SIZE = 100 * 1024 * 1024;
const CHUNK = Buffer.alloc(64 * 1024, 0x61);
const LIMIT_BYTES = 64 * 1024 * 1024;
const WARM = 16 * 1024 * 1024;

t.test('100 MB up and down with bounded memory', async (t) => {
  const upstream = await startUpstream(t, (req, res) => {
    if (req.url?.startsWith('/download')) {
      const size = Number(new URL(req.url, 'http://x').searchParams.get('bytes') ?? SIZE);
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(size) });
      let sent = 0;
      const pump = (): void => {
        while (sent < size) {
          sent += CHUNK.length;
          if (!res.write(CHUNK)) {
            res.once('drain', pump);
            return;
          }
        }
        res.end();
      };
      pump();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ received: 0 }));
  });
  const dir = t.testdir({
    policies: {
      'bulk.yaml': [
        'backends:',
        '  bulk:',
        `    upstream: ${upstream.url}`,
        '    scopes:',
        '      files: ["POST /upload", "GET /download"]',
        'roles:',
        '  bulk:',
        '    grants: [bulk:files]',
        'agents:',
        '  bulk-agent: { role: bulk, owner: test }',
        '',
      ].join('\n'),
    },
  });
  const config = await writeConfig(dir, join(dir, 'policies'), { limits: '{ maxBodyBytes: 200MiB, upstreamTimeout: 60s }' });
  const gw = await serveCli(t, ['serve', '--config', config]);
  const minted = await runCli(['token', '--agent', 'bulk-agent', '--config', config]);
  t.equal(minted.code, 0, minted.stderr);
  const auth = { authorization: `Bearer ${minted.stdout.trim()}` };
  const pid = gw.child.pid ?? 0;

  // Warm up both directions (pools, JIT, buffers) so the baseline is the steady state.
  const warm = await request(`${gw.url}/bulk/upload`, { method: 'POST', headers: { ...auth, 'content-length': String(WARM) }, body: Readable.from(chunks(WARM)) });
  t.equal(warm.statusCode, 200);
  await warm.body.dump();
  const warmDown = await request(`${gw.url}/bulk/download?bytes=${WARM}`, { headers: auth });
  for await (const _ of warmDown.body) void _;
  const baseline = await rss(pid);
  await resetPeak(pid);

  const upload = await request(`${gw.url}/bulk/upload`, {
    method: 'POST',
    headers: { ...auth, 'content-type': 'application/octet-stream', 'content-length': String(SIZE) },
    body: Readable.from(chunks(SIZE)),
  });
  t.equal(upload.statusCode, 200);
  await upload.body.dump();
  t.equal(upstream.seen.at(-1)?.bodyBytes, SIZE, 'the backend received every byte');
  const afterUpload = await peak(pid);
  t.ok(afterUpload - baseline < LIMIT_BYTES, `upload RSS growth ${mb(afterUpload - baseline)} MB < 64 MB`);

  await resetPeak(pid);
  const download = await request(`${gw.url}/bulk/download`, { headers: auth });
  t.equal(download.statusCode, 200);
  let received = 0;
  for await (const chunk of download.body) received += (chunk as Buffer).length;
  t.equal(received, SIZE, 'the agent received every byte');
  const afterDownload = await peak(pid);
  t.ok(afterDownload - baseline < LIMIT_BYTES, `download RSS growth ${mb(afterDownload - baseline)} MB < 64 MB`);

  t.equal(await gw.stop(), 0, 'SIGTERM exits 0');
});

function* chunks(total: number): Generator<Buffer> {
  for (let sent = 0; sent < total; sent += CHUNK.length) yield CHUNK;
}

async function status(pid: number, field: string): Promise<number> {
  const text = await readFile(`/proc/${pid}/status`, 'utf8');
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text);
  return Number(m?.[1] ?? 0) * 1024;
}

const rss = (pid: number) => status(pid, 'VmRSS');
const peak = (pid: number) => status(pid, 'VmHWM');

/** Reset the kernel's peak-RSS mark (Linux clear_refs "5") so VmHWM measures this phase only. */
async function resetPeak(pid: number): Promise<void> {
  await writeFile(`/proc/${pid}/clear_refs`, '5');
}

function mb(bytes: number): string {
  return (bytes / 1024 / 1024).toFixed(1);
}
