// Broker test fixtures: a policy folder (the shipped policies plus agents that exercise the
// broker), a real loopback "trusted issuer" serving a JWKS and minting users' tokens, and keys
// for private_key_jwt clients. Nothing of ours is stubbed.
import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import { SHIPPED_POLICIES } from './gateway.js';

export interface ClientKey {
  readonly privateKey: CryptoKey;
  readonly publicJwk: JWK;
}

export async function clientKey(): Promise<ClientKey> {
  const pair = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
  const jwk = await exportJWK(pair.publicKey);
  return { privateKey: pair.privateKey, publicJwk: { kty: jwk.kty, crv: jwk.crv, x: jwk.x } };
}

/**
 * The shipped policies plus: keyed-agent-01 (support role, private_key_jwt with `jwk`),
 * metered-agent-01 (maxUses), single-agent-01 (session single, short idle timeout),
 * delegate-agent-01 (acts for users, delegation depth 2), and a `users:` mapping of groups to scopes.
 */
export async function brokerPolicies(dir: string, jwk: JWK, options: { maxUses?: number; idleTimeout?: string } = {}): Promise<string> {
  const folder = join(dir, 'policies');
  await mkdir(folder, { recursive: true });
  for (const name of ['backends.yaml', 'roles.yaml', 'agents.yaml']) await copyFile(join(SHIPPED_POLICIES, name), join(folder, name));
  await writeFile(
    join(folder, 'zz-broker.yaml'),
    [
      'roles:',
      '  metered:',
      '    grants: [crm:contacts.read]',
      `    token: { ttl: 5m, maxUses: ${options.maxUses ?? 5} }`,
      '  single:',
      '    grants: [crm:contacts.read]',
      `    token: { ttl: 30m, session: single, idleTimeout: ${options.idleTimeout ?? '1m'} }`,
      '  delegate:',
      '    grants: [crm:contacts.read, crm:export, content:assets.read]',
      '    token: { ttl: 10m, maxDelegationDepth: 2 }',
      'agents:',
      '  keyed-agent-01:',
      '    role: support',
      '    owner: qa',
      `    credentials: [{ type: private_key_jwt, jwk: ${JSON.stringify({ kty: jwk.kty, crv: jwk.crv, x: jwk.x })} }]`,
      '  metered-agent-01: { role: metered, owner: qa }',
      '  single-agent-01: { role: single, owner: qa }',
      '  delegate-agent-01: { role: delegate, owner: qa }',
      '  delegate-agent-02: { role: delegate, owner: qa }',
      'users:',
      '  groups:',
      '    sales: [crm:contacts.read, content:assets.read]',
      '    support: [tickets:tickets.read, kb:articles.read]',
      '',
    ].join('\n'),
  );
  return folder;
}

export interface UserIssuer {
  readonly issuer: string;
  readonly jwksUri: string;
  /** JWKS requests served so far. */
  fetches(): number;
  /** A user's token signed with the current key. */
  userToken(sub: string, claims?: Record<string, unknown>, options?: { expiresIn?: string; kid?: string }): Promise<string>;
  /** Replace the signing key (the old one leaves the JWKS). */
  rotate(): Promise<void>;
}

/** A real trusted issuer on loopback: serves its JWKS and signs users' tokens (ES256). */
export async function startUserIssuer(t: { teardown(fn: () => unknown): void }): Promise<UserIssuer> {
  let key = await makeKey(1);
  let fetches = 0;
  const server = createServer((req, res) => {
    if (req.url !== '/jwks.json') {
      res.writeHead(404).end();
      return;
    }
    fetches++;
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [key.jwk] }));
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  t.teardown(() => new Promise<void>((done) => {
    server.closeAllConnections();
    server.close(() => done());
  }));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  let generation = 1;
  return {
    issuer: `${base}/`,
    jwksUri: `${base}/jwks.json`,
    fetches: () => fetches,
    async userToken(sub, claims = {}, options = {}) {
      return new SignJWT(claims)
        .setProtectedHeader({ alg: 'ES256', kid: options.kid ?? key.jwk.kid ?? '' })
        .setIssuer(`${base}/`)
        .setSubject(sub)
        .setIssuedAt()
        .setExpirationTime(options.expiresIn ?? '15m')
        .sign(key.privateKey);
    },
    async rotate() {
      key = await makeKey(++generation);
    },
  };
}

async function makeKey(generation: number): Promise<{ privateKey: CryptoKey; jwk: JWK }> {
  const pair = await generateKeyPair('ES256', { extractable: true });
  const jwk = await exportJWK(pair.publicKey);
  return { privateKey: pair.privateKey, jwk: { ...jwk, kid: `user-key-${generation}`, alg: 'ES256', use: 'sig' } };
}
