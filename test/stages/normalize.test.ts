// normalize on synthetic requests: every hostile target is refused (or names another backend),
// every plain target canonicalises exactly, and declared body sizes are enforced or distrusted.
import t from 'tap';
import { createContext, type InboundRequest, type Target } from '../../gateway/context.js';
import { systemClock } from '../../gateway/clock.js';
import { GatewayError } from '../../gateway/errors.js';
import type { PolicySnapshot } from '../../gateway/policy/types.js';
import { createNormalize } from '../../gateway/stages/normalize.js';
import { createLogger } from '../../gateway/telemetry/log.js';
import { acceptedTargets, hostileTargets } from '../fixtures/hostile-targets.js';

const policy: PolicySnapshot = { version: 1, loadedAt: 0, files: [], backends: new Map(), roles: new Map(), agents: new Map() };
const log = createLogger({ level: 'silent' });
const stage = createNormalize({ maxBodyBytes: 1000 });

interface RequestParts {
  readonly method?: string;
  readonly headers?: InboundRequest['headers'];
  readonly rawHeaders?: readonly string[];
}

/** Runs normalize on a synthetic request; returns what it set, what it returned, what it threw. */
function normalize(url: string, parts: RequestParts = {}): { target: Target | null; returned: unknown; error: unknown } {
  const ctx = createContext({
    requestId: 'req-1',
    clock: systemClock,
    policy,
    request: {
      method: parts.method ?? 'GET',
      url,
      headers: parts.headers ?? {},
      rawHeaders: parts.rawHeaders ?? [],
      remoteAddress: '127.0.0.1',
      remotePort: 40000,
      encrypted: false,
      body: null,
    },
    signal: new AbortController().signal,
    log,
  });
  try {
    const returned = stage.run(ctx);
    return { target: ctx.target, returned, error: null };
  } catch (error) {
    return { target: ctx.target, returned: undefined, error };
  }
}

t.test('the stage', async (t) => {
  t.equal(stage.name, 'normalize');
  t.throws(() => createNormalize({ maxBodyBytes: -1 }), /maxBodyBytes/);
  t.throws(() => createNormalize({ maxBodyBytes: Number.NaN }), /maxBodyBytes/);
  const { returned, target } = normalize('/crm/contacts', { method: 'PATCH' });
  t.equal(returned, undefined, 'runs synchronously');
  t.same(target, { method: 'PATCH', backend: 'crm', path: '/contacts', query: '', segments: ['contacts'], invalid: null, contentLength: null });
});

t.test('hostile targets are refused', async (t) => {
  t.ok(hostileTargets.length >= 70, `${hostileTargets.length} hostile targets`);
  t.equal(new Set(hostileTargets.map((h) => h.target)).size, hostileTargets.length, 'no duplicates');
  for (const h of hostileTargets) {
    t.test(`${h.name}: ${JSON.stringify(h.target)}`, async (t) => {
      const { target, error } = normalize(h.target);
      t.equal(error, null, 'never throws');
      if (target === null) throw new Error('normalize set no target');
      if (h.kind === 'invalid') {
        t.type(target.invalid, 'string', `refused (${h.why})`);
        t.same(target.segments, [], 'no segments to route on');
        t.equal(target.path, '', 'nothing to forward');
      } else {
        t.equal(target.invalid, null, 'parses');
        t.not(target.backend, 'crm', `backend ${JSON.stringify(target.backend)} is not crm (${h.why})`);
      }
    });
  }
});

t.test('accepted targets canonicalise exactly', async (t) => {
  t.ok(acceptedTargets.length >= 10);
  for (const a of acceptedTargets) {
    t.test(a.target, async (t) => {
      const { target } = normalize(a.target);
      t.match(target, { invalid: null, backend: a.backend, path: a.path, query: a.query });
      const segments = a.path === '/' ? [] : a.path.slice(1).split('/');
      t.same(target?.segments, segments, 'segments are the canonical path split on /');
    });
  }
});

t.test('refusal reasons and what survives a refusal', async (t) => {
  const cases = [
    { name: 'dot segment', input: '/crm/a/%2E%2e/b', invalid: 'dot segment', backend: 'crm' },
    { name: 'encoded slash', input: '/crm/a%2fb', invalid: 'encoded slash', backend: 'crm' },
    { name: 'encoded backslash', input: '/crm/a%5cb', invalid: 'encoded backslash', backend: 'crm' },
    { name: 'double encoding', input: '/crm/%252e', invalid: 'encoded percent (double encoding)', backend: 'crm' },
    { name: 'encoded NUL', input: '/crm/a%00', invalid: 'encoded NUL', backend: 'crm' },
    { name: 'encoded CR', input: '/crm/a%0d', invalid: 'encoded control byte', backend: 'crm' },
    { name: 'overlong', input: '/crm/%C0%AE', invalid: 'escapes are not valid UTF-8', backend: 'crm' },
    { name: 'lookalike', input: '/crm/%EF%BC%8F', invalid: 'escaped character folds to a delimiter', backend: 'crm' },
    { name: 'malformed escape', input: '/crm/%G1', invalid: 'malformed percent escape', backend: 'crm' },
    { name: 'path parameter', input: '/crm/a;b', invalid: 'path parameter (;)', backend: 'crm' },
    { name: 'empty segment', input: '/crm//a', invalid: 'empty segment', backend: 'crm' },
    { name: 'leading //', input: '//crm/a', invalid: 'empty segment', backend: '' },
    { name: 'fragment', input: '/crm/a#b', invalid: 'fragment in target', backend: 'crm' },
    { name: 'backslash', input: '/crm\\a', invalid: 'backslash in path', backend: '' },
    { name: 'non-ASCII', input: '/crm/\u00ff', invalid: 'non-ASCII byte in path', backend: 'crm' },
    { name: 'query control', input: '/crm/a?x=%1f', invalid: 'encoded control byte in query', backend: 'crm' },
    { name: 'query malformed', input: '/crm/a?x=%2', invalid: 'malformed percent escape in query', backend: 'crm' },
    { name: 'query fragment', input: '/crm/a?x#y', invalid: 'fragment in target', backend: 'crm' },
    { name: 'absolute-form', input: 'http://evil.example/crm', invalid: 'absolute-form target', backend: '' },
    { name: 'authority-form', input: 'evil.example:443', invalid: 'authority-form target', backend: '' },
    { name: 'asterisk-form', input: '*', invalid: 'asterisk-form target', backend: '' },
    { name: 'no leading slash', input: 'crm/a', invalid: 'target is not origin-form', backend: '' },
    { name: 'empty target', input: '', invalid: 'target is not origin-form', backend: '' },
    { name: 'no backend', input: '/', invalid: 'no backend in target', backend: '' },
  ];
  for (const c of cases) {
    t.test(c.name, async (t) => {
      const { target } = normalize(c.input);
      t.match(target, { invalid: c.invalid, backend: c.backend, path: '', query: '', segments: [] });
    });
  }
});

t.test('the forwarded path keeps the bytes as sent when nothing was decoded', async (t) => {
  const url = '/crm/contacts/a:b@c/';
  const { target } = normalize(`${url}?q=1`);
  t.equal(target?.path, '/contacts/a:b@c/');
  t.same(target?.segments, ['contacts', 'a:b@c', ''], 'a trailing slash is an empty last segment');
  t.equal(normalize('/CRM/contacts').target?.backend, 'CRM', 'no case folding');
  t.equal(normalize('/crm/x/%41%2d').target?.path, '/x/A-', 'unreserved escapes are decoded');
  t.equal(normalize('/crm/x/%3a%5b%5D').target?.path, '/x/%3A%5B%5D', 'other escapes keep upper-case hex');
  t.equal(normalize('/crm/%c3%a9%e2%82%ac%f0%9f%98%80').target?.path, '/%C3%A9%E2%82%AC%F0%9F%98%80', 'multi-byte runs');
  const long = `/crm/${'%C3%A9'.repeat(400)}`;
  t.equal(normalize(long).target?.path, `/${'%C3%A9'.repeat(400)}`, 'a run longer than the scratch buffer');
});

t.test('declared body sizes', async (t) => {
  const cases: Array<{ name: string; headers?: InboundRequest['headers']; rawHeaders?: string[]; expect: 'ok' | 'body_too_large' | string; length?: number | null }> = [
    { name: 'no body', expect: 'ok', length: null },
    { name: 'within the limit', headers: { 'content-length': '1000' }, expect: 'ok', length: 1000 },
    { name: 'zero', headers: { 'content-length': '0' }, expect: 'ok', length: 0 },
    { name: 'leading zeros', headers: { 'content-length': '0010' }, expect: 'ok', length: 10 },
    { name: 'chunked without a length', headers: { 'transfer-encoding': 'chunked' }, expect: 'ok', length: null },
    { name: 'the same value twice', rawHeaders: ['Content-Length', '10', 'content-length', '10'], expect: 'ok', length: 10 },
    { name: 'a list of the same value', headers: { 'content-length': '10, 10' }, expect: 'ok', length: 10 },
    { name: 'above the limit', headers: { 'content-length': '1001' }, expect: 'body_too_large' },
    { name: 'absurdly large', headers: { 'content-length': '99999999999999999999999' }, expect: 'body_too_large' },
    { name: 'not a number', headers: { 'content-length': '12abc' }, expect: 'malformed Content-Length' },
    { name: 'negative', headers: { 'content-length': '-1' }, expect: 'malformed Content-Length' },
    { name: 'plus sign', headers: { 'content-length': '+1' }, expect: 'malformed Content-Length' },
    { name: 'decimal', headers: { 'content-length': '1.0' }, expect: 'malformed Content-Length' },
    { name: 'hex', headers: { 'content-length': '0x10' }, expect: 'malformed Content-Length' },
    { name: 'empty', headers: { 'content-length': '' }, expect: 'malformed Content-Length' },
    { name: 'a list of differing values', headers: { 'content-length': '10, 20' }, expect: 'malformed Content-Length' },
    { name: 'differing repeated headers', rawHeaders: ['Content-Length', '10', 'Content-Length', '20'], expect: 'differing Content-Length values' },
    { name: 'repeated header hidden by node', headers: { 'content-length': '10' }, rawHeaders: ['Content-Length', '10', 'content-length', '5'], expect: 'differing Content-Length values' },
    { name: 'with Transfer-Encoding (smuggling)', headers: { 'content-length': '10', 'transfer-encoding': 'chunked' }, expect: 'both Content-Length and Transfer-Encoding' },
    { name: 'Transfer-Encoding only in rawHeaders', rawHeaders: ['Content-Length', '10', 'TRANSFER-ENCODING', 'chunked'], expect: 'both Content-Length and Transfer-Encoding' },
  ];
  for (const c of cases) {
    t.test(c.name, async (t) => {
      const { target, error } = normalize('/crm/contacts', { headers: c.headers ?? {}, rawHeaders: c.rawHeaders ?? [] });
      if (c.expect === 'body_too_large') {
        t.ok(error instanceof GatewayError, 'throws a GatewayError');
        t.match(error, { reason: 'body_too_large', status: 413 });
        t.equal(target, null, 'no target set');
      } else if (c.expect === 'ok') {
        t.equal(error, null);
        t.match(target, { invalid: null, contentLength: c.length ?? null });
      } else {
        t.equal(error, null, 'never throws for a length it cannot trust');
        t.match(target, { invalid: c.expect, backend: 'crm', segments: [], contentLength: null });
      }
    });
  }
});
