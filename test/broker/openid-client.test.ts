// openid-client v6, the reference OAuth client (not our code), against the broker unchanged:
// discovery, client_credentials with client_secret_basic and private_key_jwt, token exchange,
// introspection and revocation.
import t from 'tap';
import * as client from 'openid-client';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { startGateway } from '../helpers/gateway.js';
import { brokerPolicies, clientKey, startUserIssuer } from '../helpers/broker.js';

const key = await clientKey();
const users = await startUserIssuer(t);
const policies = await brokerPolicies(t.testdirName, key.publicJwk);
const gw = await startGateway(t, { policies, selfIssuer: true, trust: [{ issuer: users.issuer, jwksUri: users.jwksUri }] });
const server = new URL(gw.url);

async function discover(clientId: string, auth: client.ClientAuth): Promise<client.Configuration> {
  return client.discovery(server, clientId, undefined, auth, { algorithm: 'oauth2', execute: [client.allowInsecureRequests] });
}

t.test('discovery finds every endpoint of the broker', async (t) => {
  const { secret } = { secret: (await gw.gateway.credentials.issue('support-agent-01')).clientSecret };
  const config = await discover('support-agent-01', client.ClientSecretBasic(secret));
  const meta = config.serverMetadata();
  t.equal(meta.issuer, gw.url);
  t.equal(meta.token_endpoint, `${gw.url}/oauth/token`);
  t.equal(meta.jwks_uri, `${gw.url}/.well-known/jwks.json`);
  t.equal(meta.introspection_endpoint, `${gw.url}/oauth/introspect`);
  t.equal(meta.revocation_endpoint, `${gw.url}/oauth/revoke`);
  t.same(meta.token_endpoint_auth_methods_supported, ['client_secret_basic', 'private_key_jwt']);
  t.ok(meta.grant_types_supported?.includes('urn:ietf:params:oauth:grant-type:token-exchange'));
});

t.test('client_credentials with client_secret_basic, narrowed by scope', async (t) => {
  const issued = await gw.gateway.credentials.issue('support-agent-01');
  const config = await discover('support-agent-01', client.ClientSecretBasic(issued.clientSecret));
  const all = await client.clientCredentialsGrant(config);
  t.equal(all.token_type, 'bearer');
  t.equal(all.expires_in, 3600);
  t.equal(all.scope, 'kb:articles.read tickets-mcp:tickets.read tickets-mcp:tickets.reply tickets:tickets.read tickets:tickets.reply');
  const claims = decodeJwt(all.access_token);
  t.equal(decodeProtectedHeader(all.access_token).typ, 'at+jwt');
  t.match(claims, { iss: gw.url, sub: 'support-agent-01', client_id: 'support-agent-01', aud: ['kb', 'tickets', 'tickets-mcp'] });
  t.type(claims.sid, 'string');

  const narrow = await client.clientCredentialsGrant(config, { scope: 'kb:articles.read' });
  t.equal(narrow.scope, 'kb:articles.read');
  t.same(decodeJwt(narrow.access_token).aud, ['kb']);

  // The token works on the proxy path straight away.
  const res = await fetch(`${gw.url}/kb/articles`, { headers: { authorization: `Bearer ${narrow.access_token}` } });
  t.not(res.status, 401);
  await res.arrayBuffer();
});

t.test('client_credentials with private_key_jwt', async (t) => {
  const config = await discover('keyed-agent-01', client.PrivateKeyJwt(key.privateKey));
  const tokens = await client.clientCredentialsGrant(config, { scope: 'tickets:tickets.read' });
  t.equal(tokens.scope, 'tickets:tickets.read');
  t.match(decodeJwt(tokens.access_token), { sub: 'keyed-agent-01', client_id: 'keyed-agent-01', aud: ['tickets'] });
  // A second request signs a fresh assertion (new jti): accepted.
  const again = await client.clientCredentialsGrant(config);
  t.ok(again.access_token);
});

t.test('token exchange: on behalf of a user, never wider than the user', async (t) => {
  const issued = await gw.gateway.credentials.issue('delegate-agent-01');
  const config = await discover('delegate-agent-01', client.ClientSecretBasic(issued.clientSecret));
  const userToken = await users.userToken('alice@example.com', { groups: ['sales'] });
  const tokens = await client.genericGrantRequest(config, 'urn:ietf:params:oauth:grant-type:token-exchange', {
    subject_token: userToken,
    subject_token_type: 'urn:ietf:params:oauth:token-type:jwt',
  });
  t.equal(tokens.issued_token_type, 'urn:ietf:params:oauth:token-type:access_token');
  // The role grants crm:export too, but alice (sales) may not export.
  t.equal(tokens.scope, 'content:assets.read crm:contacts.read');
  t.match(decodeJwt(tokens.access_token), { sub: 'alice@example.com', client_id: 'delegate-agent-01', act: { sub: 'delegate-agent-01' }, aud: ['content', 'crm'] });
});

t.test('introspection and revocation', async (t) => {
  const issued = await gw.gateway.credentials.issue('support-agent-01');
  const config = await discover('support-agent-01', client.ClientSecretBasic(issued.clientSecret));
  const { access_token: token } = await client.clientCredentialsGrant(config);
  const active = await client.tokenIntrospection(config, token);
  t.match(active, { active: true, client_id: 'support-agent-01', sub: 'support-agent-01', token_type: 'Bearer', iss: gw.url });
  t.equal(active.scope, 'kb:articles.read tickets-mcp:tickets.read tickets-mcp:tickets.reply tickets:tickets.read tickets:tickets.reply');

  // Another agent learns nothing about it.
  const other = await gw.gateway.credentials.issue('data-agent-01');
  const otherConfig = await discover('data-agent-01', client.ClientSecretBasic(other.clientSecret));
  t.same(await client.tokenIntrospection(otherConfig, token), { active: false });

  await client.tokenRevocation(config, token);
  t.same(await client.tokenIntrospection(config, token), { active: false });
  const res = await fetch(`${gw.url}/kb/articles`, { headers: { authorization: `Bearer ${token}` } });
  t.equal(res.status, 401);
  t.match(res.headers.get('www-authenticate'), /error="invalid_token"/);
  await res.arrayBuffer();
  // Revoking something unknown is fine (RFC 7009 §2.2).
  await client.tokenRevocation(config, 'not-a-token');

  const lines = await gw.auditLines();
  const broker = lines.filter((l) => l.kind === 'broker');
  t.ok(broker.some((l) => l.endpoint === 'revoke' && l.revoked === true && l.agent === 'support-agent-01'));
  t.ok(broker.some((l) => l.endpoint === 'introspect' && l.active === true));
  t.ok(broker.some((l) => l.endpoint === 'token' && l.grantType === 'client_credentials' && l.decision === 'allow'));
  // No secret or token ever reaches the audit trail.
  const text = JSON.stringify(lines);
  t.notOk(text.includes(issued.clientSecret));
  t.notOk(text.includes(token));
});
