// Client authentication at the broker's endpoints: client_secret_basic (RFC 6749 §2.3.1) or
// private_key_jwt (RFC 7523 §2.2), exactly one of them. Failed attempts are counted per client and
// a client past the limit is refused for the rest of the window, whatever it sends.
import type { Clock } from '../clock.js';
import type { Agent, PolicySnapshot } from '../policy/types.js';
import type { Store } from '../state/store.js';
import { AssertionError, readAssertion, verifyClientAssertion, type VerifiedAssertion } from '../tokens/assertion.js';
import { hashSecret, secretMatches } from './credentials.js';
import type { FormParams } from './form.js';
import { BrokerError } from './errors.js';

export type ClientAuthMethod = 'client_secret_basic' | 'private_key_jwt';

export interface AuthenticatedClient {
  readonly agent: Agent;
  readonly method: ClientAuthMethod;
}

export interface ClientAuthOptions {
  readonly store: Store;
  readonly clock: Clock;
  /** Our `iss` (an accepted `aud` of client assertions); a function when known only once bound. */
  readonly issuer: string | (() => string);
  /** Failed authentications allowed per client and window (default 10 per minute). */
  readonly maxFailures?: number;
  readonly windowMs?: number;
}

export interface ClientAuthenticator {
  /**
   * Authenticate the client of a broker request. Resolves null when the request carries no client
   * authentication at all; throws BrokerError for anything presented and not accepted.
   */
  authenticate(rawHeaders: readonly string[], params: FormParams, endpointUrl: string, policy: PolicySnapshot): Promise<AuthenticatedClient | null>;
}

const JWT_BEARER = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
/** The same answer for an unknown client, a wrong secret and a bad assertion. */
const FAILED = 'client authentication failed';
/** Compared against when the agent is unknown, so timing does not tell which agents exist. */
const DUMMY_HASH = hashSecret('agentgate-no-such-client');

export function createClientAuthenticator(options: ClientAuthOptions): ClientAuthenticator {
  const { store, clock, issuer } = options;
  const issuerNow = typeof issuer === 'function' ? issuer : (): string => issuer;
  const maxFailures = options.maxFailures ?? 10;
  const windowMs = options.windowMs ?? 60_000;
  const failures = new Map<string, { start: number; count: number }>();

  function checkLimit(agent: string): void {
    const entry = failures.get(agent);
    if (entry === undefined) return;
    const now = clock.now();
    if (now - entry.start >= windowMs) {
      failures.delete(agent);
      return;
    }
    if (entry.count >= maxFailures) {
      throw new BrokerError('invalid_client', 'too many failed client authentications; retry later', {
        status: 429,
        reasonDetail: 'rate_limited',
        retryAfterSeconds: (entry.start + windowMs - now) / 1000,
      });
    }
  }

  function fail(agent: Agent | undefined, reasonDetail: string): never {
    // Only clients the policy knows are tracked, so made-up ids cannot grow the table.
    if (agent !== undefined) {
      const now = clock.now();
      const entry = failures.get(agent.id);
      if (entry === undefined || now - entry.start >= windowMs) failures.set(agent.id, { start: now, count: 1 });
      else entry.count++;
    }
    throw new BrokerError('invalid_client', FAILED, { reasonDetail });
  }

  function checkRotation(agent: Agent, createdAt: number, policy: PolicySnapshot): void {
    const rotateSeconds = policy.roles.get(agent.role)?.token.rotateSeconds ?? null;
    if (rotateSeconds === null || clock.now() - createdAt <= rotateSeconds * 1000) return;
    throw new BrokerError('invalid_client', `this client secret is older than the rotation period of role ${agent.role} (${formatSeconds(rotateSeconds)}); rotate it: agentgate credentials rotate ${agent.id}`, {
      reasonDetail: 'credential_rotation_due',
    });
  }

  async function basic(value: string, params: FormParams, policy: PolicySnapshot): Promise<AuthenticatedClient> {
    // RFC 7617: "Basic" SP base64(urlencode(id) ":" urlencode(secret)) (RFC 6749 §2.3.1).
    if (!/^Basic [A-Za-z0-9+/]+={0,2}$/i.test(value)) throw new BrokerError('invalid_client', 'malformed Basic credentials', { reasonDetail: 'basic_malformed' });
    const decoded = Buffer.from(value.slice(6), 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon === -1) throw new BrokerError('invalid_client', 'malformed Basic credentials', { reasonDetail: 'basic_malformed' });
    let clientId: string;
    let secret: string;
    try {
      clientId = decodeURIComponent(decoded.slice(0, colon).replaceAll('+', ' '));
      secret = decodeURIComponent(decoded.slice(colon + 1).replaceAll('+', ' '));
    } catch {
      throw new BrokerError('invalid_client', 'malformed Basic credentials', { reasonDetail: 'basic_encoding' });
    }
    const bodyClientId = params.get('client_id');
    if (bodyClientId !== undefined && bodyClientId !== clientId) throw new BrokerError('invalid_request', 'client_id in the body differs from the authenticated client', { reasonDetail: 'client_id_mismatch' });
    const agent = policy.agents.get(clientId);
    if (agent !== undefined) checkLimit(agent.id);
    const now = clock.now();
    let matched: { createdAt: number } | null = null;
    const records = agent === undefined ? [] : store.clientSecrets(agent.id);
    if (records.length === 0) secretMatches(secret, DUMMY_HASH);
    for (const record of records) {
      // Every record is compared, matched or not: the time taken does not depend on which one matched.
      const ok = secretMatches(secret, record.hash);
      if (ok && (record.notAfter === null || record.notAfter > now)) matched = record;
      else if (ok) matched ??= { createdAt: Number.NaN };
    }
    if (agent === undefined || matched === null) fail(agent, agent === undefined ? 'client_unknown' : 'secret_mismatch');
    if (Number.isNaN(matched.createdAt)) fail(agent, 'secret_retired');
    checkRotation(agent, matched.createdAt, policy);
    return { agent, method: 'client_secret_basic' };
  }

  async function assertion(params: FormParams, endpointUrl: string, policy: PolicySnapshot): Promise<AuthenticatedClient> {
    if (params.get('client_assertion_type') !== JWT_BEARER) {
      throw new BrokerError('invalid_request', `client_assertion_type must be ${JWT_BEARER}`, { reasonDetail: 'assertion_type' });
    }
    const jwt = params.get('client_assertion') ?? '';
    const read = readAssertion(jwt);
    const claimed = read.subject;
    const bodyClientId = params.get('client_id');
    if (bodyClientId !== undefined && claimed !== null && bodyClientId !== claimed) {
      throw new BrokerError('invalid_request', 'client_id differs from the client assertion subject', { reasonDetail: 'client_id_mismatch' });
    }
    const agent = claimed === null ? undefined : policy.agents.get(claimed);
    if (agent !== undefined) checkLimit(agent.id);
    const jwks = (agent?.credentials ?? []).flatMap((c) => (c.type === 'private_key_jwt' ? [c.jwk] : []));
    if (agent === undefined || jwks.length === 0) fail(agent, claimed === null ? 'assertion_malformed' : agent === undefined ? 'client_unknown' : 'no_key_pinned');
    let verified: VerifiedAssertion;
    try {
      verified = verifyClientAssertion(read, { clientId: agent.id, jwks, audiences: [issuerNow(), endpointUrl], clock });
    } catch (error) {
      if (error instanceof AssertionError) fail(agent, `assertion_${error.code}`);
      throw error;
    }
    // RFC 7523 §3 item 7: a jti is accepted once, until the assertion expires. An assertion that
    // may predate what the store remembers (a restart of the memory driver) could be a replay.
    if (verified.madeNoEarlierThan * 1000 < store.replayHorizon) fail(agent, 'assertion_predates_restart');
    if (!(await store.useOnce(`assertion:${agent.id}:${verified.jti}`, verified.exp))) fail(agent, 'assertion_replayed');
    return { agent, method: 'private_key_jwt' };
  }

  return {
    async authenticate(rawHeaders, params, endpointUrl, policy) {
      let authorization: string | undefined;
      let count = 0;
      for (let i = 0; i < rawHeaders.length; i += 2) {
        if (rawHeaders[i]?.toLowerCase() === 'authorization') {
          count++;
          authorization = rawHeaders[i + 1];
        }
      }
      if (count > 1) throw new BrokerError('invalid_request', 'send exactly one Authorization header', { reasonDetail: 'authorization_repeated' });
      if (params.has('client_secret')) {
        throw new BrokerError('invalid_client', 'client_secret_post is not supported: send the secret with HTTP Basic (client_secret_basic) or use private_key_jwt', { reasonDetail: 'client_secret_post' });
      }
      const hasAssertion = params.has('client_assertion') || params.has('client_assertion_type');
      if (authorization !== undefined && hasAssertion) {
        // RFC 6749 §2.3: a client MUST NOT use more than one authentication method per request.
        throw new BrokerError('invalid_request', 'use one client authentication method, not two', { reasonDetail: 'two_methods' });
      }
      const policyNow = policy;
      if (authorization !== undefined) {
        if (!/^basic /i.test(authorization)) throw new BrokerError('invalid_client', 'authenticate with HTTP Basic or a client assertion', { reasonDetail: 'auth_scheme' });
        return basic(authorization, params, policyNow);
      }
      if (hasAssertion) return assertion(params, endpointUrl, policyNow);
      return null;
    },
  };
}

function formatSeconds(seconds: number): string {
  if (seconds % 86_400 === 0) return `${seconds / 86_400}d`;
  if (seconds % 3600 === 0) return `${seconds / 3600}h`;
  if (seconds % 60 === 0) return `${seconds / 60}m`;
  return `${seconds}s`;
}
