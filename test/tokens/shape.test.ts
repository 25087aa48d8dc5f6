// carriesAccessToken: an access token (a JWS whose header says typ at+jwt) anywhere in a text, as
// plain text or percent-encoded, whatever surrounds it; never a JWT of another type or base64url
// JSON that is not a JWS (a pagination cursor). The gateway's own minted token is the real case.
import t from 'tap';
import { carriesAccessToken } from '../../gateway/tokens/shape.js';
import { mintAccessToken } from '../../gateway/tokens/mint.js';
import { makeTestKeys } from '../helpers/tokens.js';

const b64 = (value: unknown): string => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
const jws = (header: unknown): string => `${b64(header)}.${b64({ sub: 'x', exp: 1 })}.${'s'.repeat(43)}`;
const pct = (text: string): string => [...text].map((c) => `%${c.charCodeAt(0).toString(16).padStart(2, '0').toUpperCase()}`).join('');

t.test('what holds an access token and what does not', async (t) => {
  const keys = await makeTestKeys(t.testdir());
  const minted = await mintAccessToken(keys, {
    issuer: 'http://agentgate.test', agent: 'a', subject: 'a', audience: ['crm'], scopes: ['crm:contacts.read'], ttlSeconds: 60, sid: 's',
  }, { now: () => Date.now() });
  const token = minted.token;
  const other = jws({ alg: 'ES256', typ: 'at+jwt', kid: 'someone-else' });
  const cases: ReadonlyArray<{ name: string; text: string; carries: boolean }> = [
    { name: 'the gateway\'s token alone', text: token, carries: true },
    { name: 'another issuer\'s access token', text: other, carries: true },
    { name: 'typ in capitals', text: jws({ alg: 'EdDSA', typ: 'AT+JWT' }), carries: true },
    { name: 'typ as a media type', text: jws({ alg: 'EdDSA', typ: 'application/at+jwt' }), carries: true },
    { name: 'in a query parameter', text: `/crm/contacts?limit=5&cursor=${token}&x=1`, carries: true },
    { name: 'as a path segment', text: `/crm/contacts/${token}/notes`, carries: true },
    { name: 'after Bearer in another header', text: `Bearer ${token}`, carries: true },
    { name: 'inside a list value', text: `en;q=0.9, ${token}`, carries: true },
    { name: 'its dots percent-encoded', text: `?q=${token.replaceAll('.', '%2E')}`, carries: true },
    { name: 'its dots percent-encoded, lower case', text: `?q=${token.replaceAll('.', '%2e')}`, carries: true },
    { name: 'its first letter percent-encoded', text: `?q=%65${token.slice(1)}`, carries: true },
    { name: 'wholly percent-encoded', text: `?q=${pct(token)}`, carries: true },
    { name: 'percent-encoded twice (a backend that decodes twice)', text: `?q=%2565${token.slice(1).replaceAll('.', '%252E')}`, carries: true },
    { name: 'percent-encoded three times', text: `?q=${pct(pct(pct(token)))}`, carries: true },
    { name: 'after many decoys', text: `${'eyJxxxxxxxxxxxxxxxxxxxxxxxxxx.&'.repeat(200)}${token}`, carries: true },
    { name: 'a JWT of another type (an ID token)', text: jws({ alg: 'RS256', typ: 'JWT', kid: 'k' }), carries: false },
    { name: 'a JWT without typ', text: jws({ alg: 'RS256', kid: 'k', cty: 'at+jwt' }), carries: false },
    { name: 'typ not a string', text: jws({ alg: 'RS256', typ: ['at+jwt'] }), carries: false },
    { name: 'a base64url JSON cursor', text: `?cursor=${b64({ id: 123, after: '2026-01-01' })}`, carries: false },
    { name: 'a base64url JSON cursor followed by a dot', text: `?cursor=${b64({ id: 123, after: '2026-01-01', typ: 'page' })}.v2`, carries: false },
    { name: 'eyJ that is not JSON, then a dot', text: `eyJ${'A'.repeat(40)}.x`, carries: false },
    { name: 'a header too long to be one', text: `${b64({ typ: 'at+jwt', pad: 'x'.repeat(2000) })}.x.y`, carries: false },
    { name: 'plain text', text: 'application/json;q=0.9, text/plain', carries: false },
    { name: 'an empty value', text: '', carries: false },
    { name: 'broken escapes', text: '%zz%E0%A4%A%', carries: false },
  ];
  for (const c of cases) t.equal(carriesAccessToken(c.text), c.carries, c.name);
});
