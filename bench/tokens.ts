// Group 3: token issuance. Each method gets tokens one after another (warm-up first) and reports
// tokens per second and the latency of each issuance: the broker over HTTP (`POST /oauth/token`,
// client_credentials with a private_key_jwt assertion, and with client_secret_basic) against the
// real `agentgate serve` process, and the in-process minting path of `agentgate token`.
import { randomUUID } from 'node:crypto';
import { SignJWT, type CryptoKey } from 'jose';
import { Pool } from 'undici';
import { issueAgentToken, planAgentToken } from '../gateway/broker/issue.js';
import { systemClock } from '../gateway/clock.js';
import type { PolicySnapshot } from '../gateway/policy/types.js';
import type { KeyStore } from '../gateway/tokens/keys.js';
import { SampleBuffer, latencyPercentiles, type LatencyPercentiles } from './stats.js';

export interface IssuanceMethod {
  readonly name: string;
  /** The gateway's /metrics URL when the method goes through its token endpoint: server-side figures too. */
  readonly metricsUrl?: string;
  /** The client's share, done before the timer starts (a fresh assertion); passed to `issue`. */
  prepare?(): Promise<string>;
  /** Issue one token (the timed part); resolves once it is in hand. */
  issue(prepared?: string): Promise<unknown>;
  /** Work on the client's side only (the bar of ≤ 2 ms server-side does not apply). */
  readonly clientSide?: boolean;
}

export interface IssuanceResult {
  readonly method: string;
  readonly clientSide: boolean;
  readonly tokens: number;
  readonly tokensPerSecond: number;
  /** ms */
  readonly latency: LatencyPercentiles;
  /**
   * The server's own figures, from the gateway's `agentgate_broker_duration_seconds` histogram
   * over the timed requests (arrival to answer, the audit line included): quantiles interpolated
   * within buckets, and the share answered within 2 ms (a bucket bound, so exact). Null when the
   * method does not go through the gateway.
   */
  readonly server: { readonly p50: number; readonly p99: number; readonly within2ms: number; readonly count: number } | null;
  /** The gateway's first issuances after its start, every HTTP method in turn: reported, no bar. */
  readonly startUp?: boolean;
}

export interface IssuanceDeps {
  readonly keys: KeyStore;
  readonly issuer: string;
  readonly policy: PolicySnapshot;
  readonly agent: string;
  /** The broker over HTTP: the gateway's URL, a client with a pinned key and one with a secret. */
  readonly http?: {
    readonly pool: Pool;
    /** The gateway's metrics base URL (`http://host:port`). */
    readonly metricsUrl: string;
    readonly client: string;
    readonly privateKey: CryptoKey;
    readonly clientSecret: string;
  };
}

const FORM = { 'content-type': 'application/x-www-form-urlencoded' } as const;
const JWT_BEARER = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

export function issuanceMethods(deps: IssuanceDeps): IssuanceMethod[] {
  const methods: IssuanceMethod[] = [];
  const http = deps.http;
  if (http !== undefined) {
    const post = async (body: string, headers: Record<string, string>): Promise<void> => {
      const res = await http.pool.request({ method: 'POST', path: '/oauth/token', headers: { ...FORM, ...headers }, body });
      const text = await res.body.text();
      if (res.statusCode !== 200) throw new Error(`token endpoint answered ${res.statusCode}: ${text}`);
    };
    // The client's share, a fresh EdDSA assertion per request as a real client makes, is timed on
    // its own; the request is timed with the assertion already in hand (the server's part plus
    // the loopback round trip).
    const sign = (): Promise<string> =>
      new SignJWT({ jti: randomUUID() })
        .setProtectedHeader({ alg: 'EdDSA' })
        .setIssuer(http.client)
        .setSubject(http.client)
        .setAudience(deps.issuer)
        .setIssuedAt()
        .setExpirationTime('1m')
        .sign(http.privateKey);
    const withAssertion = (assertion: string): Promise<void> =>
      post(`grant_type=client_credentials&client_assertion_type=${encodeURIComponent(JWT_BEARER)}&client_assertion=${assertion}`, {});
    methods.push({
      name: 'HTTP `POST /oauth/token`, client_credentials + private_key_jwt (EdDSA), assertion signed beforehand',
      metricsUrl: http.metricsUrl,
      prepare: sign,
      issue: (assertion) => withAssertion(assertion as string),
    });
    methods.push({ name: 'client side: signing the private_key_jwt assertion (jose, EdDSA)', issue: sign, clientSide: true });
    methods.push({
      name: 'HTTP `POST /oauth/token`, client_credentials + private_key_jwt (EdDSA), signing included',
      metricsUrl: http.metricsUrl,
      issue: async () => withAssertion(await sign()),
    });
    const basic = `Basic ${Buffer.from(`${http.client}:${http.clientSecret}`).toString('base64')}`;
    methods.push({
      name: 'HTTP `POST /oauth/token`, client_credentials + client_secret_basic',
      metricsUrl: http.metricsUrl,
      issue: () => post('grant_type=client_credentials', { authorization: basic }),
    });
  }
  methods.push({
    name: 'in-process, `agentgate token` path (EdDSA)',
    issue: () => issueAgentToken(deps.keys, deps.issuer, planAgentToken(deps.policy, deps.agent), systemClock),
  });
  return methods;
}

export async function measureIssuance(method: IssuanceMethod, count: number): Promise<IssuanceResult> {
  const warm = Math.min(500, Math.max(50, count >> 3));
  for (let i = 0; i < warm; i++) await method.issue(await method.prepare?.());
  return { method: method.name, clientSide: method.clientSide === true, ...(await timeIssuance([method], count)) };
}

/**
 * The gateway's first `count` issuances after its start, the HTTP methods in turn, reported
 * without a bar. A fresh process answers its first few thousand more slowly (V8 still compiling
 * the path on the same core), so the methods measured after this are measured warm, whichever
 * comes first; what the start costs is this row.
 */
export async function measureStartUp(methods: readonly IssuanceMethod[], count: number): Promise<IssuanceResult | null> {
  const http = methods.filter((m) => m.metricsUrl !== undefined && m.clientSide !== true);
  if (http.length === 0 || count <= 0) return null;
  const figures = await timeIssuance(http, count);
  return { method: `the first ${count} HTTP issuances after the gateway's start, the methods below in turn`, clientSide: false, startUp: true, ...figures };
}

/** Issue `count` tokens, the methods in turn, timed at the client and (through the gateway) at the server. */
async function timeIssuance(methods: readonly IssuanceMethod[], count: number): Promise<Omit<IssuanceResult, 'method' | 'clientSide'>> {
  const samples = new SampleBuffer(count);
  const metricsUrl = methods[0]?.metricsUrl;
  const before = metricsUrl === undefined ? null : await tokenBuckets(metricsUrl);
  let timed = 0;
  for (let i = 0; i < count; i++) {
    const method = methods[i % methods.length] as IssuanceMethod;
    const prepared = await method.prepare?.();
    const t0 = performance.now();
    await method.issue(prepared);
    const ms = performance.now() - t0;
    timed += ms;
    samples.push(ms);
  }
  const server = before === null || metricsUrl === undefined ? null : serverFigures(before, await tokenBuckets(metricsUrl));
  if (server !== null && server.count !== count) throw new Error(`the gateway timed ${server.count} token answers for ${count} requests`);
  return { tokens: count, tokensPerSecond: count / (timed / 1000), latency: latencyPercentiles(samples), server };
}

const TOKEN_BUCKET = /^agentgate_broker_duration_seconds_bucket\{le="([^"]+)",endpoint="token",decision="allow"\} (\d+)$/;

/** Cumulative counts of the token endpoint's allowed answers by upper bound (seconds; +Inf last). */
async function tokenBuckets(metricsUrl: string): Promise<Array<[number, number]>> {
  const text = await (await fetch(`${metricsUrl}/metrics`)).text();
  const buckets: Array<[number, number]> = [];
  for (const line of text.split('\n')) {
    const m = TOKEN_BUCKET.exec(line);
    if (m !== null) buckets.push([m[1] === '+Inf' ? Number.POSITIVE_INFINITY : Number(m[1]), Number(m[2])]);
  }
  return buckets.sort((a, b) => a[0] - b[0]);
}

/** p50 and p99 (ms, linear within a bucket) and the share within 2 ms of the answers between two scrapes. */
export function serverFigures(before: ReadonlyArray<readonly [number, number]>, after: ReadonlyArray<readonly [number, number]>): { p50: number; p99: number; within2ms: number; count: number } {
  const counts = after.map(([le, n]): [number, number] => [le, n - (before.find(([b]) => b === le)?.[1] ?? 0)]);
  const total = counts.at(-1)?.[1] ?? 0;
  const quantile = (q: number): number => {
    const rank = q * total;
    let lower = 0;
    let below = 0;
    for (const [le, n] of counts) {
      if (n >= rank) return le === Number.POSITIVE_INFINITY ? Number.POSITIVE_INFINITY : (lower + ((rank - below) / Math.max(1, n - below)) * (le - lower)) * 1000;
      lower = le;
      below = n;
    }
    return Number.NaN;
  };
  const within = counts.find(([le]) => le === 0.002)?.[1] ?? Number.NaN;
  return { p50: quantile(0.5), p99: quantile(0.99), within2ms: total === 0 ? Number.NaN : within / total, count: total };
}
