// Authentication: exactly one `Authorization: Bearer <jwt>` -> Principal. Any doubt refuses:
// a token that cannot be verified, a revoked jti or an agent the policy does not know is
// token_invalid. A cached token completes synchronously (the hot path).
import type { Principal, RequestContext, Stage } from '../context.js';
import { GatewayError } from '../errors.js';
import type { Store } from '../state/store.js';
import { TokenError, type TokenVerifier, type VerifiedClaims } from '../tokens/verify.js';

export interface AuthenticateOptions {
  readonly verifier: TokenVerifier;
  readonly store: Store;
}

const INVALID = 'the access token is invalid, expired or revoked; request a new one';
/** RFC 6750 §2.1 b64token. */
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;

export function createAuthenticate(options: AuthenticateOptions): Stage {
  const { verifier, store } = options;

  function admit(ctx: RequestContext, claims: VerifiedClaims): void {
    if (store.isRevoked(claims.jti)) throw new GatewayError('token_invalid', INVALID, { reasonDetail: 'revoked' });
    const agent = ctx.policy.agents.get(claims.clientId);
    if (agent === undefined || !ctx.policy.roles.has(agent.role)) {
      throw new GatewayError('token_invalid', INVALID, { reasonDetail: 'agent_unknown' });
    }
    const delegated = claims.act !== null;
    if (delegated ? claims.act?.sub !== claims.clientId : claims.sub !== claims.clientId) {
      throw new GatewayError('token_invalid', INVALID, { reasonDetail: 'subject_mismatch' });
    }
    const principal: Principal = {
      agent: agent.id,
      role: agent.role,
      subject: claims.sub,
      onBehalfOf: delegated ? claims.sub : null,
      actor: claims.act,
      jti: claims.jti,
      sid: claims.sid,
      scopes: claims.scopes,
      audience: claims.aud,
      issuedAt: claims.iat,
      expiresAt: claims.exp,
    };
    ctx.principal = principal;
  }

  return {
    name: 'authenticate',
    run(ctx: RequestContext): void | Promise<void> {
      const query = ctx.target?.query ?? '';
      if (query !== '' && hasParam(query, 'access_token')) {
        // RFC 6750 §2.3 is not supported on purpose: a token in a URL leaks into logs and would
        // be forwarded to the backend with the query.
        throw new GatewayError('token_misplaced', 'send the access token only in the Authorization header');
      }
      const token = bearerToken(ctx.request.rawHeaders);
      const hit = verifier.cached(token);
      if (hit !== undefined) {
        admit(ctx, hit);
        return;
      }
      return verifier.verify(token).then(
        (claims) => admit(ctx, claims),
        (error: unknown) => {
          if (error instanceof TokenError) throw new GatewayError('token_invalid', INVALID, { reasonDetail: error.code, cause: error });
          throw error;
        },
      );
    },
  };
}

/** The token of the one Authorization header, or token_missing. */
function bearerToken(rawHeaders: readonly string[]): string {
  let value: string | undefined;
  let count = 0;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i];
    if (name !== undefined && name.length === 13 && name.toLowerCase() === 'authorization') {
      count++;
      value = rawHeaders[i + 1];
    }
  }
  if (count === 0 || value === undefined) throw new GatewayError('token_missing', 'send an access token: Authorization: Bearer <token>');
  if (count > 1) throw new GatewayError('token_missing', 'send exactly one Authorization header', { reasonDetail: `${count} Authorization headers` });
  if (value.length < 8 || value.charCodeAt(6) !== 0x20 || value.slice(0, 6).toLowerCase() !== 'bearer') {
    throw new GatewayError('token_missing', 'the Authorization header must use the Bearer scheme', { reasonDetail: 'not a Bearer credential' });
  }
  const token = value.slice(7);
  if (!B64TOKEN.test(token)) throw new GatewayError('token_missing', 'the Bearer credential is malformed', { reasonDetail: 'not a b64token' });
  return token;
}

function hasParam(query: string, name: string): boolean {
  // query starts with '?'; parameters are separated by '&' (and ';' by some servers).
  let start = 1;
  while (start < query.length) {
    let end = start;
    while (end < query.length && query.charCodeAt(end) !== 0x26 && query.charCodeAt(end) !== 0x3b) end++;
    const eq = query.indexOf('=', start);
    const keyEnd = eq === -1 || eq > end ? end : eq;
    if (keyEnd - start === name.length && query.startsWith(name, start)) return true;
    start = end + 1;
  }
  return false;
}
