// MCP authorization per the spec: a 401 on an MCP backend names its Protected Resource Metadata
// (RFC 9728), the metadata names the broker, and the broker honours RFC 8707 resource indicators so
// a token is minted for exactly that one backend; used anywhere else it is cross_domain.
import t from 'tap';
import { decodeJwt } from 'jose';
import { request } from 'undici';
import { startGateway } from '../helpers/gateway.js';
import { connectClient, MCP_POLICY, startToolUpstream, writeMcpPolicy } from '../helpers/mcp.js';

const POLICY = MCP_POLICY.replace('roles:\n  support:\n    grants: [tools:read, tools:reply, tools:sql]', 'roles:\n  support:\n    grants: [tools:read, tools:reply, tools:sql, crm:contacts.read]').replace(
  'backends:\n',
  'backends:\n  crm:\n    upstream: http://127.0.0.1:9\n    scopes:\n      contacts.read: ["GET /contacts"]\n',
);

t.test('discovery, resource indicators and audience', async (t) => {
  const upstream = await startToolUpstream(t);
  const gw = await startGateway(t, { selfIssuer: true, policies: await writeMcpPolicy(t, POLICY), upstreams: { tools: upstream.url, crm: upstream.url } });
  const endpoint = `${gw.url}/tools/mcp`;
  const metadataUrl = `${gw.url}/.well-known/oauth-protected-resource/tools/mcp`;

  await t.test('401 names the protected resource metadata', async (t) => {
    const cases = [
      { name: 'no token', headers: {}, challenge: `Bearer realm="agentgate", resource_metadata="${metadataUrl}"` },
      { name: 'a forged token', headers: { authorization: 'Bearer eyJhbGciOiJub25lIn0.e30.' }, challenge: `Bearer realm="agentgate", error="invalid_token", resource_metadata="${metadataUrl}"` },
    ];
    for (const c of cases) {
      const res = await request(endpoint, { method: 'POST', headers: { 'content-type': 'application/json', ...c.headers }, body: '{"jsonrpc":"2.0","id":1,"method":"ping"}' });
      t.equal(res.statusCode, 401, c.name);
      t.equal(res.headers['www-authenticate'], c.challenge, c.name);
      await res.body.text();
    }
    const rest = await request(`${gw.url}/crm/contacts`);
    t.equal(rest.headers['www-authenticate'], 'Bearer realm="agentgate"', 'a REST backend keeps the plain challenge');
    await rest.body.text();
    t.equal(upstream.posts.length, 0);
  });

  await t.test('the metadata document (RFC 9728)', async (t) => {
    const res = await request(metadataUrl);
    t.equal(res.statusCode, 200);
    t.same(await res.body.json(), {
      resource: endpoint,
      authorization_servers: [gw.url],
      scopes_supported: ['tools:admin', 'tools:read', 'tools:reply', 'tools:sql'],
      bearer_methods_supported: ['header'],
      resource_name: 'tools',
    });
    for (const path of ['/.well-known/oauth-protected-resource', '/.well-known/oauth-protected-resource/tools', '/.well-known/oauth-protected-resource/tools/mcp/x', '/.well-known/oauth-protected-resource/nope/mcp']) {
      const missing = await request(`${gw.url}${path}`);
      t.equal(missing.statusCode, 404, path);
      await missing.body.text();
    }
  });

  const secret = (await gw.gateway.credentials.issue('support-agent-01')).clientSecret;
  const token = async (form: Record<string, string>) => {
    const res = await request(`${gw.url}/oauth/token`, {
      method: 'POST',
      headers: { authorization: `Basic ${Buffer.from(`support-agent-01:${secret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'client_credentials', ...form }).toString(),
    });
    return { status: res.statusCode, body: (await res.body.json()) as Record<string, string> };
  };

  await t.test('a resource indicator mints a token for that backend alone', async (t) => {
    const narrowed = await token({ resource: endpoint });
    t.equal(narrowed.status, 200);
    const claims = decodeJwt(narrowed.body.access_token ?? '');
    t.same(claims.aud, ['tools']);
    t.equal(claims.scope, 'tools:read tools:reply tools:sql');
    const wide = decodeJwt((await token({})).body.access_token ?? '');
    t.same(wide.aud, ['crm', 'tools'], 'without a resource: every backend of the grants');

    const { client } = await connectClient(t, endpoint, narrowed.body.access_token ?? '');
    t.same((await client.listTools()).tools.map((x) => x.name).sort(), ['get_contact', 'reply_with_script', 'run_query', 'search_tickets'], 'the narrowed token works on its backend');
    const crm = await request(`${gw.url}/crm/contacts`, { headers: { authorization: `Bearer ${narrowed.body.access_token ?? ''}` } });
    t.equal(crm.statusCode, 403);
    t.match(await crm.body.json(), { type: 'urn:agentgate:problem:cross_domain' }, 'used on another backend: cross_domain');

    const crmOnly = (await token({ resource: `${gw.url}/crm` })).body.access_token ?? '';
    t.same(decodeJwt(crmOnly).aud, ['crm']);
    const res = await request(endpoint, { method: 'POST', headers: { authorization: `Bearer ${crmOnly}`, 'content-type': 'application/json' }, body: '{"jsonrpc":"2.0","id":1,"method":"ping"}' });
    t.equal(res.statusCode, 403);
    t.match(await res.body.json(), { type: 'urn:agentgate:problem:cross_domain' });
    t.match(res.headers['www-authenticate'], /resource_metadata=/);
  });

  await t.test('resource indicators the broker refuses', async (t) => {
    const cases: Array<{ name: string; form: Record<string, string>; error: string }> = [
      { name: 'another host', form: { resource: 'http://evil.example/tools/mcp' }, error: 'invalid_target' },
      { name: 'a trailing slash', form: { resource: `${endpoint}/` }, error: 'invalid_target' },
      { name: 'the backend prefix of an MCP backend', form: { resource: `${gw.url}/tools` }, error: 'invalid_target' },
      { name: 'a scope on another backend', form: { resource: endpoint, scope: 'crm:contacts.read' }, error: 'invalid_target' },
      { name: 'a scope outside the role', form: { resource: endpoint, scope: 'tools:admin' }, error: 'invalid_scope' },
      { name: 'a dot segment (no normalisation)', form: { resource: `${gw.url}/../tools/mcp` }, error: 'invalid_target' },
    ];
    for (const c of cases) {
      const answer = await token(c.form);
      t.equal(answer.status, 400, c.name);
      t.equal(answer.body.error, c.error, c.name);
    }
    const repeated = await request(`${gw.url}/oauth/token`, {
      method: 'POST',
      headers: { authorization: `Basic ${Buffer.from(`support-agent-01:${secret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: `grant_type=client_credentials&resource=${encodeURIComponent(endpoint)}&resource=${encodeURIComponent(`${gw.url}/crm`)}`,
    });
    t.equal(repeated.statusCode, 400, 'one resource per token');
    t.match(await repeated.body.json(), { error: 'invalid_request' });
  });
});
