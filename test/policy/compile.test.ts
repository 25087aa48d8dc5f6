// Route templates and the compiled matcher: every template refusal, and the most-specific match
// with backtracking over a policy whose routes overlap across scopes.
import t from 'tap';
import { join } from 'node:path';
import { parseRoute } from '../../gateway/policy/compile.js';
import { loadPolicySnapshot } from '../../gateway/policy/index.js';
import { ROOT } from '../helpers/root.js';

const OVERLAP = join(ROOT, 'test', 'fixtures', 'policies', 'overlap');
const clock = { now: () => 1_700_000_000_000 };

const templates: ReadonlyArray<{ name: string; input: string; expect: string | { method: string; segments: unknown[] } }> = [
  { name: 'root', input: 'GET /', expect: { method: 'GET', segments: [] } },
  {
    name: 'every segment kind',
    input: 'ANY /a/:id/:fmt(csv|json)/*',
    expect: {
      method: 'ANY',
      segments: [
        { kind: 'literal', value: 'a' },
        { kind: 'param', name: 'id' },
        { kind: 'enum', name: 'fmt', values: new Set(['csv', 'json']) },
        { kind: 'wild' },
      ],
    },
  },
  { name: 'unreserved characters in a literal', input: 'GET /v1.2/a_b~c-d', expect: { method: 'GET', segments: [{ kind: 'literal', value: 'v1.2' }, { kind: 'literal', value: 'a_b~c-d' }] } },
  { name: 'no path', input: 'GET', expect: '"GET" is not a route (use "METHOD /path", e.g. "GET /contacts/:id")' },
  { name: 'no space', input: 'GET/contacts', expect: '"GET/contacts" is not a route (use "METHOD /path", e.g. "GET /contacts/:id")' },
  { name: 'space in the path', input: 'GET /a b', expect: '"GET /a b" is not a route (use "METHOD /path", e.g. "GET /contacts/:id")' },
  { name: 'unknown method', input: 'FETCH /a', expect: 'route "FETCH /a": unknown method "FETCH" (allowed: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, ANY)' },
  { name: 'lower-case method', input: 'get /a', expect: 'route "get /a": write the method in capitals ("GET")' },
  { name: 'relative path', input: 'GET contacts', expect: 'route "GET contacts": the path must start with "/"' },
  { name: 'query', input: 'GET /a?b=1', expect: 'route "GET /a?b=1": a route has no query or fragment' },
  { name: 'fragment', input: 'GET /a#b', expect: 'route "GET /a#b": a route has no query or fragment' },
  { name: 'trailing slash', input: 'GET /contacts/', expect: 'route "GET /contacts/": no trailing "/" (only the root route is "/")' },
  { name: 'empty segment', input: 'GET /a//b', expect: 'route "GET /a//b": empty segment ("//")' },
  { name: '* not last', input: 'GET /a/*/b', expect: 'route "GET /a/*/b": "*" may only be the last segment' },
  { name: 'dot segment', input: 'GET /a/./b', expect: 'route "GET /a/./b": segment "." is not allowed' },
  { name: 'dot-dot segment', input: 'GET /a/../b', expect: 'route "GET /a/../b": segment ".." is not allowed' },
  { name: 'percent in a literal', input: 'GET /a%20b', expect: 'route "GET /a%20b": segment "a%20b" may use only A-Z a-z 0-9 . _ ~ - (parameters start with ":")' },
  { name: 'star inside a segment', input: 'GET /files*', expect: 'route "GET /files*": segment "files*" may use only A-Z a-z 0-9 . _ ~ - (parameters start with ":")' },
  { name: 'parameter without a name', input: 'GET /a/:', expect: 'route "GET /a/:": ":": a parameter name is a letter or _ followed by letters, digits or _' },
  { name: 'parameter name with a dash', input: 'GET /a/:my-id', expect: 'route "GET /a/:my-id": ":my-id": a parameter name is a letter or _ followed by letters, digits or _' },
  { name: 'parameter name starting with a digit', input: 'GET /a/:1', expect: 'route "GET /a/:1": ":1": a parameter name is a letter or _ followed by letters, digits or _' },
  { name: 'parameter twice', input: 'GET /a/:id/b/:id', expect: 'route "GET /a/:id/b/:id": parameter ":id" appears twice' },
  { name: 'unclosed value list', input: 'GET /a/:f(csv', expect: 'route "GET /a/:f(csv": ":f(csv" is not a parameter (use :name or :name(a|b))' },
  { name: 'empty value list', input: 'GET /a/:f()', expect: 'route "GET /a/:f()": ":f" lists an empty value' },
  { name: 'empty listed value', input: 'GET /a/:f(csv||json)', expect: 'route "GET /a/:f(csv||json)": ":f" lists an empty value' },
  { name: 'listed value with a slash', input: 'GET /a/:f(a/b)', expect: 'route "GET /a/:f(a/b)": ":f(a" is not a parameter (use :name or :name(a|b))' },
  { name: 'listed value with a space', input: 'GET /a/:f(a|b%20c)', expect: 'route "GET /a/:f(a|b%20c)": ":f" lists "b%20c"; listed values use only A-Z a-z 0-9 . _ ~ - and are not . or ..' },
  { name: 'listed dot-dot', input: 'GET /a/:f(x|..)', expect: 'route "GET /a/:f(x|..)": ":f" lists ".."; listed values use only A-Z a-z 0-9 . _ ~ - and are not . or ..' },
];

for (const c of templates) {
  t.test(`template: ${c.name}`, async (t) => {
    const parsed = parseRoute(c.input);
    if (typeof c.expect === 'string') t.equal(parsed, c.expect);
    else t.match(parsed, c.expect);
  });
}

t.test('matcher: most specific route wins, with backtracking', async (t) => {
  const snapshot = await loadPolicySnapshot(OVERLAP, { version: 1, clock, defaultTimeoutMs: 5000 });
  const table = snapshot.backends.get('files')?.routes;
  if (table === undefined) throw new Error('files backend missing');
  const cases: ReadonlyArray<{ method: string; path: string; expect: string | null; params?: Record<string, string>; scopes?: string[] }> = [
    { method: 'GET', path: '/', expect: 'GET /', params: {} },
    { method: 'GET', path: '/items/7', expect: 'GET /items/:id', params: { id: '7' }, scopes: ['files:read', 'files:shared'] },
    { method: 'GET', path: '/items/export', expect: 'GET /items/export', params: {}, scopes: ['files:admin'] },
    { method: 'HEAD', path: '/items/export', expect: 'GET /items/export' },
    { method: 'POST', path: '/items/export', expect: null },
    { method: 'DELETE', path: '/items/export', expect: 'DELETE /items/:id', params: { id: 'export' } },
    { method: 'HEAD', path: '/items/special', expect: 'HEAD /items/special' },
    { method: 'GET', path: '/items/special', expect: 'GET /items/:id', params: { id: 'special' } },
    { method: 'GET', path: '/items/7/raw', expect: 'GET /items/:id/raw' },
    { method: 'HEAD', path: '/items/7/raw', expect: 'GET /items/:id/raw' },
    { method: 'PUT', path: '/items/7/raw', expect: 'ANY /items/:id/raw', params: { id: '7' } },
    { method: 'TRACE', path: '/items/7/raw', expect: 'ANY /items/:id/raw' },
    { method: 'GET', path: '/items/7/meta', expect: 'GET /items/:id/:part(meta|body)', params: { id: '7', part: 'meta' } },
    { method: 'GET', path: '/items/7/body', expect: 'GET /items/:id/:part(meta|body)', params: { id: '7', part: 'body' } },
    { method: 'GET', path: '/items/7/META', expect: null },
    { method: 'GET', path: '/items/7/other', expect: null },
    { method: 'GET', path: '/reports/csv', expect: 'GET /reports/:format(csv|json)', params: { format: 'csv' } },
    { method: 'GET', path: '/reports/CSV', expect: 'GET /reports/:id', params: { id: 'CSV' } },
    { method: 'GET', path: '/reports/42', expect: 'GET /reports/:id', params: { id: '42' } },
    { method: 'GET', path: '/docs', expect: null },
    { method: 'GET', path: '/docs/a', expect: 'GET /docs/*', params: { '*': 'a' } },
    { method: 'GET', path: '/docs/a/b/c', expect: 'GET /docs/*', params: { '*': 'a/b/c' } },
    { method: 'GET', path: '/docs/index', expect: 'GET /docs/*', params: { '*': 'index' } },
    { method: 'GET', path: '/docs/index/x/y', expect: 'GET /docs/index/*', params: { '*': 'x/y' } },
    { method: 'POST', path: '/docs/a', expect: null },
    { method: 'GET', path: '/a/b/c', expect: 'GET /a/b/c' },
    { method: 'GET', path: '/a/b/d', expect: 'GET /a/:x/d', params: { x: 'b' } },
    { method: 'POST', path: '/a/b/c', expect: 'POST /a/b/:y', params: { y: 'c' } },
    { method: 'GET', path: '/a/z/d', expect: 'GET /a/:x/d', params: { x: 'z' } },
    { method: 'GET', path: '/a/b', expect: null },
    { method: 'GET', path: '/items', expect: null },
    { method: 'OPTIONS', path: '/items/7', expect: null },
    { method: 'get', path: '/items/7', expect: null },
    { method: 'GET', path: '/items/7/', expect: null },
    { method: 'GET', path: '/docs/a//b', expect: null },
    { method: 'GET', path: '/nothing/here', expect: null },
  ];
  for (const c of cases) {
    const segments = c.path === '/' ? [] : c.path.slice(1).split('/');
    const match = table.match(c.method, segments);
    const label = `${c.method} ${c.path}`;
    if (c.expect === null) {
      t.equal(match, null, `${label} -> no route`);
      continue;
    }
    t.equal(match?.routes[0]?.template, c.expect, `${label} -> ${c.expect}`);
    if (c.params !== undefined) t.same(match?.params, c.params, `${label} params`);
    if (c.scopes !== undefined) t.same(match?.routes.map((r) => r.scope), c.scopes, `${label} scopes`);
  }
});

t.test('compiled policy is frozen', async (t) => {
  const snapshot = await loadPolicySnapshot(OVERLAP, { version: 3, clock, defaultTimeoutMs: 5000 });
  const backend = snapshot.backends.get('files');
  t.ok(Object.isFrozen(snapshot));
  t.ok(Object.isFrozen(backend));
  t.ok(Object.isFrozen(backend?.routes));
  const match = backend?.routes.match('GET', ['items', '1']);
  t.ok(Object.isFrozen(match?.routes), 'routes of a match cannot be changed');
  t.ok(Object.isFrozen(match?.routes[0]));
  t.ok(Object.isFrozen(backend?.scopes.get('read')?.routes));
  t.equal(snapshot.version, 3);
  t.equal(snapshot.loadedAt, 1_700_000_000_000);
  t.equal(backend?.timeoutMs, 5000, 'default timeout from the caller');
});
