// What test/e2e/audit.test.ts and audit-load.test.ts share: a policy with one backend and two
// readers, and a load generator that records which requests were answered and how.
import { Pool } from 'undici';

export const POLICY = (upstream: string): string =>
  [
    'backends:',
    '  svc:',
    `    upstream: ${upstream}`,
    '    scopes:',
    '      read: ["GET /items", "GET /items/:id"]',
    '      write: ["POST /items"]',
    'roles:',
    '  reader:',
    '    grants: [svc:read]',
    'agents:',
    '  reader-01: { role: reader, owner: test }',
    '  reader-02: { role: reader, owner: test }',
    '',
  ].join('\n');

export interface Answered {
  readonly id: string;
  readonly status: number;
}

/** Fire `count` requests over `connections` keep-alive connections; collect what was answered. */
export async function load(url: string, count: number, connections: number, token: (i: number) => string, stopAfter?: { n: number; then: () => void }): Promise<Answered[]> {
  const pool = new Pool(url, { connections, pipelining: 1 });
  const answered: Answered[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      const i = next++;
      try {
        const res = await pool.request({ method: 'GET', path: i % 5 === 0 ? `/svc/admin/${i}` : `/svc/items/${i}`, headers: { authorization: `Bearer ${token(i)}` } });
        await res.body.dump();
        answered.push({ id: String(res.headers['x-request-id']), status: res.statusCode });
        if (stopAfter !== undefined && answered.length === stopAfter.n) stopAfter.then();
      } catch {
        // Refused connections after shutdown began: not answered, so not owed an audit line.
      }
    }
  };
  await Promise.all(Array.from({ length: connections }, worker));
  await pool.close().catch(() => undefined);
  return answered;
}
