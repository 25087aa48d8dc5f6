// The reason catalog, the problem renderer and the README's refusal table say the same thing.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { GatewayError, REASONS, REASON_CODES, isReasonCode } from '../gateway/errors.js';
import { challengeFor, renderProblem } from '../gateway/problem.js';
import { ROOT } from './helpers/gateway.js';

t.test('README refusal table lists exactly the catalog, with the same status and challenge', async (t) => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Refusals'), readme.indexOf('## Configuration'));
  const rows = [...section.matchAll(/^\| `([a-z_]+)` \| (\d{3}) \| ([^|]+) \|/gm)];
  t.same(rows.map((r) => r[1]).sort(), [...REASON_CODES].sort());
  for (const [, reason, status, challenge] of rows) {
    if (reason === undefined || !isReasonCode(reason)) continue;
    t.equal(Number(status), REASONS[reason].status, `${reason} status`);
    const bearer = REASONS[reason].bearer;
    const expected = bearer === 'none' ? '—' : bearer === 'challenge' ? '`Bearer realm="agentgate"`' : `\`..., error="${bearer}"\``;
    t.equal((challenge ?? '').trim(), expected, `${reason} challenge`);
  }
});

t.test('rendered problems', async (t) => {
  for (const reason of REASON_CODES) {
    const problem = renderProblem(new GatewayError(reason, 'what to fix', { reasonDetail: 'secret internal cause' }), 'req-1');
    const body = JSON.parse(problem.body) as Record<string, unknown>;
    t.same(body, { type: `urn:agentgate:problem:${reason}`, title: REASONS[reason].title, status: REASONS[reason].status, detail: 'what to fix', requestId: 'req-1' }, reason);
    t.equal(problem.headers['content-type'], 'application/problem+json');
    t.notMatch(problem.body, /secret internal cause/, 'reasonDetail never leaves the gateway');
    t.equal(problem.headers['www-authenticate'], challengeFor(reason) ?? undefined);
  }
  const suspended = renderProblem(new GatewayError('agent_killed', 'x', { retryAfterSeconds: 12.2 }), 'r');
  t.equal(suspended.headers['retry-after'], '13', 'Retry-After rounds up to whole seconds');
});
