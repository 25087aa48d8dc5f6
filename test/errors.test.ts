// The error catalog, the problem renderers and the README's tables say the same thing, and no
// module answers with a problem type, title or OAuth error of its own.
import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { ADMIN_PROBLEMS, ADMIN_PROBLEM_CODES, GatewayError, OAUTH_ERRORS, OAUTH_ERROR_CODES, REASONS, REASON_CODES, isReasonCode, type ReasonSpec } from '../gateway/errors.js';
import { challengeFor, renderAdminProblem, renderProblem } from '../gateway/problem.js';
import { ROOT } from './helpers/root.js';

const README = readFileSync(join(ROOT, 'README.md'), 'utf8');

/** The rows of the README table whose header line is `header`: each row's cells, trimmed. */
function table(header: string): string[][] {
  const lines = README.split('\n');
  const at = lines.indexOf(header);
  if (at === -1) return [];
  const rows: string[][] = [];
  for (const line of lines.slice(at + 2)) {
    if (!line.startsWith('|')) break;
    rows.push(line.slice(1, -1).split(' | ').map((cell) => cell.trim()));
  }
  return rows;
}

const code = (cell: string | undefined): string => /^`([a-z_]+)`$/.exec(cell ?? '')?.[1] ?? `not a code: ${cell ?? ''}`;
const flag = (violation: boolean): string => (violation ? 'yes' : '—');

t.test('README refusal table: every agent-port reason with its status, challenge, title and violation flag', async (t) => {
  const rows = table('| reason | status | `WWW-Authenticate` | title | violation | when |');
  t.same(rows.map((r) => code(r[0])).sort(), [...REASON_CODES].sort(), 'exactly the catalog');
  for (const [name, status, challenge, title, violation] of rows) {
    const reason = code(name);
    if (!isReasonCode(reason)) continue;
    const spec = REASONS[reason];
    t.equal(Number(status), spec.status, `${reason} status`);
    const expected = spec.bearer === 'none' ? '—' : spec.bearer === 'challenge' ? '`Bearer realm="agentgate"`' : `\`..., error="${spec.bearer}"\``;
    t.equal(challenge, expected, `${reason} challenge`);
    t.equal(title, spec.title, `${reason} title`);
    t.equal(violation, flag(spec.violation), `${reason} violation flag`);
  }
});

t.test('README admin table: every admin problem with its status, title and violation flag', async (t) => {
  const rows = table('| admin code | status | title | violation | when |');
  t.same(rows.map((r) => code(r[0])).sort(), [...ADMIN_PROBLEM_CODES].sort(), 'exactly the catalog');
  for (const [name, status, title, violation] of rows) {
    const spec: ReasonSpec | undefined = (ADMIN_PROBLEMS as Record<string, ReasonSpec>)[code(name)];
    if (spec === undefined) continue;
    t.equal(Number(status), spec.status, `${name} status`);
    t.equal(title, spec.title, `${name} title`);
    t.equal(violation, flag(spec.violation), `${name} violation flag`);
    t.equal(spec.bearer, 'none', `${name}: the admin socket challenges nobody`);
  }
});

t.test('README broker table: every OAuth error with its statuses, challenge, title and violation flag', async (t) => {
  const rows = table('| error | status | challenge | title | violation | when |');
  t.same(rows.map((r) => code(r[0])).sort(), [...OAUTH_ERROR_CODES].sort(), 'exactly the catalog');
  for (const [name, status, challenge, title, violation] of rows) {
    const error = code(name);
    if (!Object.hasOwn(OAUTH_ERRORS, error)) continue;
    const spec = OAUTH_ERRORS[error as keyof typeof OAUTH_ERRORS];
    t.equal(status, spec.statuses.join(', '), `${error} statuses`);
    t.equal(spec.statuses[0], spec.status, `${error}: the default status comes first`);
    t.equal(challenge, spec.challenge === 'basic' ? '`Basic realm="agentgate", charset="UTF-8"` (401)' : '—', `${error} challenge`);
    t.equal(title, spec.title, `${error} title`);
    t.equal(violation, flag(spec.violation), `${error} violation flag`);
  }
});

t.test('a code shared by the agent port and the admin socket is one entry', async (t) => {
  for (const code of ADMIN_PROBLEM_CODES) {
    if (isReasonCode(code)) t.equal(ADMIN_PROBLEMS[code], REASONS[code], `${code} is the agent port's entry`);
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
  for (const code of ADMIN_PROBLEM_CODES) {
    const problem = renderAdminProblem(code, 'what to do', { problems: ['a'], type: 'urn:forged', status: 200 });
    t.equal(problem.status, ADMIN_PROBLEMS[code].status);
    t.same(JSON.parse(problem.body), { problems: ['a'], type: `urn:agentgate:problem:${code}`, title: ADMIN_PROBLEMS[code].title, status: ADMIN_PROBLEMS[code].status, detail: 'what to do' }, `${code}: extra members never replace a standard one`);
    t.equal(problem.headers['content-type'], 'application/problem+json');
    t.equal(problem.headers['content-length'], String(Buffer.byteLength(problem.body)));
  }
});

/** Every TypeScript source under gateway/, as [path relative to the root, code without comment lines]. */
function sources(dir = join(ROOT, 'gateway')): Array<[string, string]> {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry): Array<[string, string]> => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sources(path);
    if (!entry.name.endsWith('.ts')) return [];
    const code = readFileSync(path, 'utf8')
      .split('\n')
      .filter((line) => !/^\s*(\/\/|\/\*|\*)/.test(line))
      .join('\n');
    return [[relative(ROOT, path), code]];
  });
}

t.test('no module answers with a problem or an OAuth error of its own', async (t) => {
  const files = sources();
  t.ok(files.length > 50, `${files.length} gateway sources read`);
  const only = (needle: RegExp, allowed: readonly string[], what: string): void => {
    const found = files.filter(([path, text]) => needle.test(text) && !allowed.includes(path)).map(([path]) => path);
    t.same(found, [], `${what} only in ${allowed.join(', ')}`);
  };
  only(/urn:agentgate:problem/, ['gateway/problem.ts'], 'problem types');
  only(/problem\+json/, ['gateway/problem.ts'], 'the problem media type');
  only(/error_description/, ['gateway/broker/form.ts'], 'OAuth error bodies');
  // Each construction names a catalog code (the compiler checks the types; this checks the text).
  const constructions: Array<[RegExp, Record<string, unknown>, string]> = [
    [/new GatewayError\('([a-z_]+)'/g, REASONS, 'GatewayError'],
    [/renderReason\('([a-z_]+)'/g, REASONS, 'renderReason'],
    [/new AdminError\('([a-z_]+)'/g, ADMIN_PROBLEMS, 'AdminError'],
    [/renderAdminProblem\('([a-z_]+)'/g, ADMIN_PROBLEMS, 'renderAdminProblem'],
    [/new BrokerError\('([a-z_]+)'/g, OAUTH_ERRORS, 'BrokerError'],
  ];
  let seen = 0;
  for (const [path, text] of files) {
    for (const [pattern, catalog, what] of constructions) {
      for (const match of text.matchAll(pattern)) {
        seen++;
        t.ok(Object.hasOwn(catalog, match[1] ?? ''), `${path}: ${what} '${match[1] ?? ''}' is in the catalog`);
      }
    }
  }
  t.ok(seen > 100, `${seen} constructions checked`);
  // And no admin entry is dead: each code is raised somewhere in the admin API.
  const admin = files.filter(([path]) => path.startsWith('gateway/admin/')).map(([, text]) => text).join('\n');
  for (const code of ADMIN_PROBLEM_CODES) t.match(admin, new RegExp(`'${code}'`), `admin code ${code} is raised by gateway/admin/`);
  const broker = files.filter(([path]) => path.startsWith('gateway/broker/')).map(([, text]) => text).join('\n');
  for (const code of OAUTH_ERROR_CODES) t.match(broker, new RegExp(`'${code}'`), `OAuth error ${code} is raised by gateway/broker/`);
});
