// Authentication: exactly one `Authorization: Bearer <jwt>` -> Principal. Fails closed: a token that
// cannot be verified, a revoked one or one for an agent the policy does not know is token_invalid;
// when the state store cannot be trusted (revocations unknown) the call is refused (state_unavailable).
// Reads state only: a use to spend and a session to refresh or end are intents for the commit.
import type { RequestContext, Stage } from '../context.js';
import type { Principal } from '../tokens/claims.js';
import { GatewayError } from '../errors.js';
import type { PolicySnapshot } from '../policy/types.js';
import type { StateView } from '../state/view.js';
import { carriesAccessToken } from '../tokens/shape.js';
import { TokenError, exceedsLifetime, type TokenVerifier, type VerifiedClaims } from '../tokens/verify.js';

interface Known {
  readonly digest: Uint32Array;
  policy: PolicySnapshot | null;
  principal: Principal | null;
}

export interface AuthenticateOptions {
  readonly verifier: TokenVerifier;
  readonly state: StateView;
}

/** The one detail an agent sees for any unusable token: which check failed stays in the audit. */
const INVALID = 'the access token is invalid, expired or revoked; request a new one';
/**
 * A token whose signature verified and whose only fault is its age: saying so leaks nothing (the
 * agent holds the token and its exp), and tells the agent the one thing to do.
 */
const EXPIRED = 'the access token has expired; request a new one';
const MISSING = 'send an access token: Authorization: Bearer <token>';
/** RFC 6750 §2.1 b64token. */
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;
const AUTHORIZATION = 'authorization';
/** Idle timeout of a `session: single` role that sets none (the broker's introspection agrees). */
const DEFAULT_SINGLE_IDLE_SECONDS = 900;

export function createAuthenticate(options: AuthenticateOptions): Stage {
  const { verifier, state } = options;

  // What a verified-token cache hit reuses, per verified claims (the verifier's cached object):
  // the jti's revocation digest, and the principal built under the policy snapshot in force then.
  // Every check below still runs on every request; only the hashing and the object are kept.
  const known = new WeakMap<VerifiedClaims, Known>();

  /** Everything after verification; synchronous, so a cache hit never waits (nor allocates). */
  function establish(ctx: RequestContext, claims: VerifiedClaims): void {
    let memo = known.get(claims);
    if (memo === undefined) {
      memo = { digest: state.revocationKey(claims.jti), policy: null, principal: null };
      known.set(claims, memo);
    }
    let revoked: boolean;
    try {
      if (!state.isHealthy()) throw new Error(`store ${state.driver} unhealthy`);
      revoked = state.isRevoked(claims.jti, claims.agent, claims.issuedAt, memo.digest);
    } catch (error) {
      throw new GatewayError('state_unavailable', 'the gateway cannot check token revocation right now; retry shortly', {
        reasonDetail: `revocation check failed: ${(error as Error).message}`,
        cause: error,
      });
    }
    if (revoked) throw new GatewayError('token_invalid', INVALID, { reasonDetail: 'revoked' });

    // The role comes from the policy in force, never from the token.
    const agent = ctx.policy.agents.get(claims.agent);
    if (agent === undefined || !ctx.policy.roles.has(agent.role)) {
      throw new GatewayError('token_invalid', INVALID, { reasonDetail: 'agent_unknown' });
    }
    // RFC 8693 §4.1: in a delegated token `sub` is the user and `act.sub` the agent acting now;
    // otherwise the agent is its own subject. Anything else is a token we never issue.
    const delegated = claims.act !== null;
    if (delegated ? claims.act?.sub !== claims.agent : claims.subject !== claims.agent) {
      throw new GatewayError('token_invalid', INVALID, { reasonDetail: 'subject_mismatch' });
    }
    // Role token policy, from the policy in force: session (single, idle timeout), then usage
    // limit. The use is spent by the commit, and only for a call every check admitted.
    const tokenPolicy = ctx.policy.roles.get(agent.role)?.token;
    // A token that outlives its role's TTL was not minted under the policy in force: refused.
    if (tokenPolicy !== undefined && exceedsLifetime(claims, tokenPolicy.ttlSeconds)) {
      throw new GatewayError('token_invalid', INVALID, { reasonDetail: 'lifetime' });
    }
    if (tokenPolicy !== undefined) {
      const idleSeconds = tokenPolicy.idleTimeoutSeconds ?? (tokenPolicy.session === 'single' ? DEFAULT_SINGLE_IDLE_SECONDS : null);
      const tracked = tokenPolicy.session === 'single' || idleSeconds !== null;
      const session = state.sessionState(claims.sid, agent.id, claims.expiresAt, idleSeconds === null ? null : idleSeconds * 1000);
      if (session === 'idle') ctx.intents.push({ kind: 'end_session', when: 'always', sid: claims.sid, expiresAt: claims.expiresAt });
      if (session !== 'live') throw new GatewayError('token_invalid', INVALID, { reasonDetail: session === 'idle' ? 'session_idle' : 'session_ended' });
      if (tracked) ctx.intents.push({ kind: 'touch_session', when: 'always', sid: claims.sid, agent: agent.id, expiresAt: claims.expiresAt });
      if (tokenPolicy.maxUses !== null) {
        if (state.usesOf(claims.jti) >= tokenPolicy.maxUses) throw new GatewayError('token_invalid', INVALID, { reasonDetail: 'spent' });
        ctx.intents.push({ kind: 'spend_use', when: 'admitted', jti: claims.jti, maxUses: tokenPolicy.maxUses, expiresAt: claims.expiresAt });
      }
    }
    if (memo.policy === ctx.policy && memo.principal !== null) {
      ctx.principal = memo.principal;
      return;
    }
    const principal: Principal = {
      agent: agent.id,
      role: agent.role,
      subject: claims.subject,
      onBehalfOf: delegated ? claims.subject : null,
      act: claims.act,
      jti: claims.jti,
      sid: claims.sid,
      scopes: claims.scopes,
      audience: claims.audience,
      issuedAt: claims.issuedAt,
      expiresAt: claims.expiresAt,
    };
    memo.policy = ctx.policy;
    memo.principal = principal;
    ctx.principal = principal;
  }

  return {
    name: 'authenticate',
    run(ctx: RequestContext): void | Promise<void> {
      // RFC 6750 §2.3 (URI query parameter) is refused on purpose, even beside a header: a token in
      // a URL lands in logs and history, and would be forwarded to the backend with the query.
      if (hasParam(queryOf(ctx), 'access_token')) {
        throw new GatewayError('token_misplaced', 'send the access token only in the Authorization header, never in the URL', {
          reasonDetail: 'access_token in the query string',
        });
      }
      // Any access token elsewhere would reach the backend: in the target under another name (or
      // in a path segment), or in a header the backend may be sent. Cookies are filtered apart
      // (headers.ts never forwards a token-shaped cookie).
      const misplaced = misplacedToken(ctx.request.url, ctx.request.rawHeaders);
      if (misplaced !== null) {
        throw new GatewayError('token_misplaced', 'send the access token only in the Authorization header, never in the URL or another header', {
          reasonDetail: misplaced,
        });
      }
      // Cached under the whole header value: a hit needs no substring of it. The same value
      // passed every syntax check below (and everything else) when it was first verified.
      const credential = bearerCredential(ctx.request.rawHeaders);
      const hit = verifier.cached(credential, ctx.receivedAt);
      if (hit !== undefined) return establish(ctx, hit);
      const token = credential.slice(BEARER_PREFIX);
      if (!B64TOKEN.test(token)) throw new GatewayError('token_missing', MISSING, { reasonDetail: 'Bearer credential is not a b64token' });
      return verifier.verify(token, credential).then(
        (claims) => establish(ctx, claims),
        (error: unknown) => {
          if (error instanceof TokenError) throw new GatewayError('token_invalid', error.code === 'expired' ? EXPIRED : INVALID, { reasonDetail: error.code, cause: error });
          throw error;
        },
      );
    },
  };
}

/** The checked query, or the raw one when normalize refused the target (the token is still misplaced). */
function queryOf(ctx: RequestContext): string {
  const target = ctx.target;
  if (target !== null && target.invalid === null) return target.query;
  const url = ctx.request.url;
  const start = url.indexOf('?');
  if (start === -1) return '';
  const hash = url.indexOf('#', start);
  return hash === -1 ? url.slice(start) : url.slice(start, hash);
}

/** Where an access token sits outside the Authorization header (the audit's detail), or null. */
function misplacedToken(url: string, rawHeaders: readonly string[]): string | null {
  if (carriesAccessToken(url)) return 'access token in the request target';
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i] ?? '';
    const value = rawHeaders[i + 1] ?? '';
    if (value.length < 3 || isNamed(name, AUTHORIZATION) || isNamed(name, COOKIE)) continue;
    if (carriesAccessToken(value)) return `access token in header ${JSON.stringify(name.slice(0, 64))}`;
  }
  return null;
}

const COOKIE = 'cookie';

/** Whether header `name` is `lower` (a lowercase name of letters) in any case. */
function isNamed(name: string, lower: string): boolean {
  return name.length === lower.length && startsWithLower(name, lower);
}

/** Length of `Bearer ` (any case), where the token starts in the header value. */
const BEARER_PREFIX = 7;

/**
 * The value of the single `Authorization: Bearer` header (the token starts at BEARER_PREFIX), or
 * token_missing. Names compare case-insensitively.
 */
function bearerCredential(rawHeaders: readonly string[]): string {
  let value: string | undefined;
  let count = 0;
  // rawHeaders, not headers: node folds repeated Authorization headers and would hide the second.
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i];
    if (name !== undefined && isNamed(name, AUTHORIZATION)) {
      count++;
      value = rawHeaders[i + 1];
    }
  }
  if (count === 0 || value === undefined) throw new GatewayError('token_missing', MISSING, { reasonDetail: 'no Authorization header' });
  if (count > 1) {
    throw new GatewayError('token_missing', 'send exactly one Authorization header with one Bearer token', { reasonDetail: `${count} Authorization headers` });
  }
  // RFC 6750 §2.1: "Bearer" (case-insensitive), exactly one space, a b64token.
  if (value.length < 8 || value.charCodeAt(6) !== 0x20 || !startsWithLower(value, 'bearer')) {
    throw new GatewayError('token_missing', MISSING, { reasonDetail: value === '' ? 'empty Authorization header' : 'not a Bearer credential' });
  }
  // Its b64token syntax is checked by the caller, after the verified-token cache (a hit passed it).
  return value;
}

/**
 * Whether `text` starts with `lower` (lowercase ASCII letters) in any case, without a lowered
 * copy: `c | 0x20` is a lowercase letter's code only for that letter in either case.
 */
function startsWithLower(text: string, lower: string): boolean {
  for (let i = 0; i < lower.length; i++) if ((text.charCodeAt(i) | 0x20) !== lower.charCodeAt(i)) return false;
  return true;
}

/**
 * Whether `query` ('' or '?...') has a parameter named exactly `name` (case-sensitive), as a
 * backend would decode it: `&` or `;` separated, with or without a value, percent-decoded name.
 */
function hasParam(query: string, name: string): boolean {
  if (query.length <= 1) return false;
  for (const part of query.slice(1).split(/[&;]/)) {
    const eq = part.indexOf('=');
    const key = eq === -1 ? part : part.slice(0, eq);
    if (key === name) return true;
    if (key.includes('%') && decode(key) === name) return true;
  }
  return false;
}

function decode(text: string): string | null {
  try {
    return decodeURIComponent(text);
  } catch {
    return null;
  }
}
