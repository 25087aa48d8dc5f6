// The `agents:` section: role binding, owner, expiry, network, and the client credentials an
// agent may authenticate with (public JWKs only).
import { createPublicKey, type JsonWebKey } from 'node:crypto';
import { problemAt, type Position, type RawEntry } from '../load.js';
import type { Agent, AgentCredential } from '../types.js';
import { describe, type Parsed } from '../units.js';
import { kindOf, type Checker } from './checker.js';
import { validateNetwork } from './network.js';

const AGENT_ID = /^[a-z0-9][a-z0-9._-]{0,62}$/;

/** JWK members that carry private or symmetric key material (RFC 7517/7518). */
const PRIVATE_JWK_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];

/** `expires: 2027-03-31` (the agent works through that day, UTC) or an RFC 3339 instant. */
const DATE_ONLY = /^(\d{4})-(\d{2})-(\d{2})$/;
const INSTANT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})$/;

/** `expires: 2027-03-31` (refused from the next day, 00:00 UTC) or `2027-03-31T18:00:00Z`. */
function parseExpiry(input: unknown): Parsed<number> {
  const text = input instanceof Date ? input.toISOString() : input;
  if (typeof text !== 'string') return { ok: false, error: `expected a date such as 2027-03-31, got ${describe(input)}` };
  const day = DATE_ONLY.exec(text);
  if (day !== null) {
    const [y, m, d] = [Number(day[1]), Number(day[2]), Number(day[3])];
    const at = Date.UTC(y, m - 1, d);
    const back = new Date(at);
    if (back.getUTCFullYear() !== y || back.getUTCMonth() !== m - 1 || back.getUTCDate() !== d) return { ok: false, error: `"${text}" is not a calendar date` };
    return { ok: true, value: at + 86_400_000 };
  }
  if (INSTANT.test(text)) {
    const at = Date.parse(text);
    if (Number.isFinite(at)) return { ok: true, value: at };
  }
  return { ok: false, error: `"${text}" is not a date (use 2027-03-31, or an RFC 3339 time such as 2027-03-31T18:00:00Z)` };
}

export function validateAgent(c: Checker, id: string, entry: RawEntry, roles: ReadonlyMap<string, RawEntry>, complete: boolean, warnings: string[], now: number): Agent | null {
  const path = `agents.${id}`;
  let ok = true;
  if (!AGENT_ID.test(id)) {
    c.add(entry.at, path, 'agent ids use a-z, 0-9, . _ -, start with a letter or digit, at most 63 characters');
    ok = false;
  }
  const keys = c.map(entry.value, path, ['role', 'owner', 'description', 'credentials', 'network', 'expires']);
  if (keys === null) return null;
  const roleEntry = c.required(keys, 'role', path, entry.at);
  const role = c.string(roleEntry, `${path}.role`);
  if (role !== null && !roles.has(role)) {
    if (complete) c.add(roleEntry?.value.at ?? entry.at, `${path}.role`, `role "${role}" is not defined`);
    ok = false;
  }
  const owner = c.string(c.required(keys, 'owner', path, entry.at), `${path}.owner`);
  const description = c.string(keys.get('description'), `${path}.description`) ?? '';
  const credentials: AgentCredential[] = [];
  const credNodes = c.list(keys.get('credentials'), `${path}.credentials`) ?? [];
  credNodes.forEach((node, i) => {
    const cPath = `${path}.credentials[${i}]`;
    const ck = c.map(node, cPath, ['type', 'jwk']);
    if (ck === null) return;
    const type = c.string(c.required(ck, 'type', cPath, node.at), `${cPath}.type`);
    if (type !== null && type !== 'private_key_jwt') {
      c.add(ck.get('type')?.value.at ?? node.at, `${cPath}.type`, `"${type}" is not a credential type for policies (allowed: private_key_jwt; client secrets live in the state store: agentgate credentials issue)`);
      return;
    }
    const jwkEntry = c.required(ck, 'jwk', cPath, node.at);
    const jwk = jwkEntry === undefined ? null : validateJwk(c, jwkEntry, `${cPath}.jwk`);
    if (jwk !== null) credentials.push(Object.freeze({ type: 'private_key_jwt', jwk }));
  });
  const networkEntry = keys.get('network');
  const network = networkEntry === undefined ? null : validateNetwork(c, networkEntry, `${path}.network`);
  const expiresEntry = keys.get('expires');
  const expiresAt = c.parsed(expiresEntry, `${path}.expires`, parseExpiry);
  if (expiresEntry !== undefined && expiresAt !== null && expiresAt <= now) {
    warnings.push(problemAt(expiresEntry.value.at, `${path}.expires`, `expired on ${new Date(expiresAt).toISOString()}: the agent is refused (agent_expired); remove it or extend the date`));
  }
  if (!ok || role === null || owner === null || (networkEntry !== undefined && network === null) || (expiresEntry !== undefined && expiresAt === null)) return null;
  return Object.freeze({ id, role, owner, description, credentials: Object.freeze(credentials), network, expiresAt });
}

function validateJwk(c: Checker, entry: RawEntry, path: string): Readonly<Record<string, unknown>> | null {
  const node = entry.value;
  if (node.kind !== 'map') {
    c.add(node.at, path, `expected a public JWK map, got ${kindOf(node)}`);
    return null;
  }
  const jwk: Record<string, unknown> = {};
  for (const [key, member] of node.entries) {
    const value = member.value;
    if (value.kind === 'scalar') jwk[key] = value.value;
    else if (value.kind === 'seq' && value.items.every((i) => i.kind === 'scalar')) jwk[key] = Object.freeze(value.items.map((i) => (i.kind === 'scalar' ? i.value : null)));
    else {
      c.add(value.at, `${path}.${key}`, 'JWK members are plain values or lists of them');
      return null;
    }
  }
  const secret = PRIVATE_JWK_MEMBERS.filter((m) => Object.hasOwn(jwk, m));
  if (secret.length > 0) {
    // A private key in a policy file is a leaked key: refuse it rather than strip it.
    c.add(node.at, path, `contains private key material (${secret.map((m) => `"${m}"`).join(', ')}); a policy holds only the public key`);
    return null;
  }
  const memberAt = (member: string): Position => node.entries.get(member)?.value.at ?? node.at;
  const curve = jwk.kty === 'OKP' ? 'Ed25519' : jwk.kty === 'EC' ? 'P-256' : null;
  if (curve === null) {
    c.add(memberAt('kty'), `${path}.kty`, `${describe(jwk.kty)} is not a supported key type (allowed: OKP with crv Ed25519, EC with crv P-256)`);
    return null;
  }
  if (jwk.crv !== curve) {
    c.add(memberAt('crv'), `${path}.crv`, `${describe(jwk.crv)} is not supported with kty ${String(jwk.kty)} (allowed: ${curve})`);
    return null;
  }
  const coordinates = curve === 'Ed25519' ? ['x'] : ['x', 'y'];
  let ok = true;
  for (const member of coordinates) {
    const value = jwk[member];
    const at = memberAt(member);
    // 32 bytes, base64url without padding (RFC 8037 §2, RFC 7518 §6.2.1.2).
    if (value === undefined) c.add(at, `${path}.${member}`, 'is required (32 bytes in base64url)');
    else if (typeof value !== 'string' || !/^[A-Za-z0-9_-]{43}$/.test(value)) c.add(at, `${path}.${member}`, `${describe(value)} is not 32 bytes in base64url`);
    else continue;
    ok = false;
  }
  if (!ok) return null;
  try {
    // Well formed is not enough: an EC x, y off the curve is refused here, not at the first assertion.
    createPublicKey({ key: jwk as JsonWebKey, format: 'jwk' });
  } catch {
    c.add(node.at, path, `is not a usable ${curve} public key (the point is not on the curve)`);
    return null;
  }
  return Object.freeze(jwk);
}
