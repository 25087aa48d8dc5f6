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
  /** Issue one token; resolves once it is in hand. */
  issue(): Promise<unknown>;
}

export interface IssuanceResult {
  readonly method: string;
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
    methods.push({
      // The client signs a fresh assertion per request, as a real one does (EdDSA, ~0.1 ms).
      name: 'HTTP `POST /oauth/token`, client_credentials + private_key_jwt (EdDSA)',
      issue: async () => {
        const assertion = await new SignJWT({ jti: randomUUID() })
          .setProtectedHeader({ alg: 'EdDSA' })
          .setIssuer(http.client)
          .setSubject(http.client)
          .setAudience(deps.issuer)
          .setIssuedAt()
          .setExpirationTime('1m')
          .sign(http.privateKey);
        await post(`grant_type=client_credentials&client_assertion_type=${encodeURIComponent(JWT_BEARER)}&client_assertion=${assertion}`, {});
      },
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
  for (let i = 0; i < warm; i++) await method.issue();
  const samples = new SampleBuffer(count);
  const started = performance.now();
  for (let i = 0; i < count; i++) {
    const t0 = performance.now();
    await method.issue();
    samples.push(performance.now() - t0);
  }
  const seconds = (performance.now() - started) / 1000;
  return { method: method.name, tokens: count, tokensPerSecond: count / seconds, latency: latencyPercentiles(samples) };
}
