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
}

export interface IssuanceDeps {
  readonly keys: KeyStore;
  readonly issuer: string;
  readonly policy: PolicySnapshot;
  readonly agent: string;
  /** The broker over HTTP: the gateway's URL, a client with a pinned key and one with a secret. */
  readonly http?: {
    readonly pool: Pool;
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
      prepare: sign,
      issue: (assertion) => withAssertion(assertion as string),
    });
    methods.push({ name: 'client side: signing the private_key_jwt assertion (jose, EdDSA)', issue: sign, clientSide: true });
    methods.push({
      name: 'HTTP `POST /oauth/token`, client_credentials + private_key_jwt (EdDSA), signing included',
      issue: async () => withAssertion(await sign()),
    });
    const basic = `Basic ${Buffer.from(`${http.client}:${http.clientSecret}`).toString('base64')}`;
    methods.push({
      name: 'HTTP `POST /oauth/token`, client_credentials + client_secret_basic',
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
  const samples = new SampleBuffer(count);
  let timed = 0;
  for (let i = 0; i < count; i++) {
    const prepared = await method.prepare?.();
    const t0 = performance.now();
    await method.issue(prepared);
    const ms = performance.now() - t0;
    timed += ms;
    samples.push(ms);
  }
  return { method: method.name, clientSide: method.clientSide === true, tokens: count, tokensPerSecond: count / (timed / 1000), latency: latencyPercentiles(samples) };
}
