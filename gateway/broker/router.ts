// The token broker on the agent port: /.well-known/* and /oauth/*, answered before the proxy path.
// Every request gets an OAuth answer (RFC 6749 §5.2 errors for anything malformed or hostile) and
// one audit line; only a bug becomes a 500, and even that is a JSON `server_error`.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Clock } from '../clock.js';
import type { PolicySnapshot } from '../policy/types.js';
import type { Store } from '../state/store.js';
import type { KeyStore } from '../tokens/keys.js';
import type { TrustedIssuers } from '../tokens/trusted.js';
import type { TokenVerifier } from '../tokens/verify.js';
import { createClientAuthenticator, type AuthenticatedClient, type ClientAuthenticator } from './client-auth.js';
import { tokenExchange } from './exchange.js';
import { readForm, sendJson, sendOAuthError, type FormParams } from './form.js';
import { introspect } from './introspect.js';
import { BrokerError } from './errors.js';
import { authorizationServerMetadata, endpointUrl, PATHS, protectedResourceMetadata, TOKEN_EXCHANGE } from './metadata.js';
import { backendForMetadataPath } from '../policy/resource.js';
import { revoke } from './revoke.js';
import { clientCredentials, type BrokerNote } from './token.js';

export interface BrokerDeps {
  /** Our `iss`; a function when it is known only once the agent port is bound. */
  readonly issuer: string | (() => string);
  readonly keys: KeyStore;
  readonly store: Store;
  readonly clock: Clock;
  readonly verifier: TokenVerifier;
  readonly trusted: TrustedIssuers;
  policy(): PolicySnapshot;
  onIssued(role: string, grantType: string): void;
  /** A POST endpoint's answer sent (after its audit line), `seconds` after the request arrived. */
  onAnswered?(endpoint: Endpoint, decision: 'allow' | 'deny', seconds: number): void;
  onRevoked(): void;
  /**
   * One audit record per broker request (kind broker); `reason` is the OAuth error or `none`.
   * Resolves once the line is written: the answer waits for it, and is not sent when it rejects.
   */
  audit(record: BrokerNote & { requestId: string; decision: 'allow' | 'deny'; reason: string }): Promise<void>;
  /** False while the audit trail cannot be written: every POST is then refused at once. */
  auditAvailable?(): boolean;
  onError(error: unknown): void;
  /** Client authentication failures allowed per client and minute (default 10). */
  readonly maxAuthFailures?: number;
}

export interface Broker {
  /** Whether `url` (a request-target) belongs to the broker. Cheap: called for every request. */
  owns(url: string): boolean;
  handle(req: IncomingMessage, res: ServerResponse): void;
}

type Endpoint = 'token' | 'introspect' | 'revoke';
const POST_ENDPOINTS: ReadonlyMap<string, Endpoint> = new Map([
  [PATHS.token, 'token'],
  [PATHS.introspect, 'introspect'],
  [PATHS.revoke, 'revoke'],
]);

export function createBroker(deps: BrokerDeps): Broker {
  const { clock } = deps;
  const fixedIssuer = deps.issuer;
  const issuerNow = typeof fixedIssuer === 'function' ? fixedIssuer : (): string => fixedIssuer;
  const clients: ClientAuthenticator = createClientAuthenticator({
    store: deps.store,
    clock,
    issuer: issuerNow,
    ...(deps.maxAuthFailures === undefined ? {} : { maxFailures: deps.maxAuthFailures }),
  });

  /** Handle a POST; resolves the answer, which is sent once its audit line is written. */
  async function post(endpoint: Endpoint, req: IncomingMessage, note: BrokerNote): Promise<{ status: number; body: unknown }> {
    const policy = deps.policy();
    const issuer = issuerNow();
    const live = { ...deps, issuer };
    const params: FormParams = await readForm(req);
    const grantType = endpoint === 'token' ? params.get('grant_type') : undefined;
    if (endpoint === 'token') {
      note.grantType = grantType ?? null;
      if (grantType === undefined) throw new BrokerError('invalid_request', 'grant_type is required', { reasonDetail: 'grant_type_missing' });
      if (grantType !== 'client_credentials' && grantType !== TOKEN_EXCHANGE) {
        throw new BrokerError('unsupported_grant_type', `grant_type must be client_credentials or ${TOKEN_EXCHANGE}`, { reasonDetail: 'grant_type' });
      }
    }
    const client: AuthenticatedClient | null = await clients.authenticate(req.rawHeaders, params, endpointUrl(issuer, pathOf(req.url ?? '')), policy);
    if (client !== null) {
      note.agent = client.agent.id;
      note.role = client.agent.role;
      note.clientAuth = client.method;
    }
    // Token exchange may name its agent by actor_token alone; everything else needs the client.
    const exchangeByActor = grantType === TOKEN_EXCHANGE && params.has('actor_token');
    if (client === null && !exchangeByActor) {
      throw new BrokerError('invalid_client', 'authenticate the client: HTTP Basic (client_secret_basic) or a client assertion (private_key_jwt)', { reasonDetail: 'no_client_auth' });
    }
    if (endpoint === 'token') {
      const body = grantType === TOKEN_EXCHANGE ? await tokenExchange(params, client, live, note, policy) : await clientCredentials(params, client as AuthenticatedClient, live, note, policy);
      return { status: 200, body };
    }
    if (client === null) throw new BrokerError('invalid_client', 'client authentication failed', { reasonDetail: 'no_client_auth' });
    if (endpoint === 'introspect') return { status: 200, body: await introspect(params, client, live, note, policy) };
    await revoke(params, client, live, note, policy);
    return { status: 200, body: {} };
  }

  function get(path: string, res: ServerResponse): boolean {
    if (path === PATHS.metadata) {
      sendJson(res, 200, authorizationServerMetadata(issuerNow(), deps.policy()), { 'cache-control': 'public, max-age=300' });
      return true;
    }
    const resource = backendForMetadataPath(deps.policy(), issuerNow(), path);
    if (resource !== undefined) {
      sendJson(res, 200, protectedResourceMetadata(issuerNow(), resource), { 'cache-control': 'public, max-age=300' });
      return true;
    }
    if (path === PATHS.jwks) {
      // Short cache: a rotated key must reach verifiers before tokens signed with it do.
      res.writeHead(200, { 'content-type': 'application/jwk-set+json', 'cache-control': 'public, max-age=60' });
      res.end(JSON.stringify(deps.keys.publicJwks()));
      return true;
    }
    return false;
  }

  return {
    owns(url) {
      return url.startsWith('/oauth/') || url.startsWith('/.well-known/');
    },
    handle(req, res) {
      const requestId = randomUUID();
      res.setHeader('x-request-id', requestId);
      const started = process.hrtime.bigint();
      const path = pathOf(req.url ?? '');
      const endpoint = POST_ENDPOINTS.get(path);
      const note: BrokerNote = { endpoint: endpoint ?? path.slice(0, 64) };
      const method = req.method ?? '';

      // Write-ahead: each answer below is sent only once its line is written; when it cannot be,
      // the connection is closed without an answer.
      const finish = (error: BrokerError | null): Promise<void> => {
        if (endpoint === undefined) return Promise.resolve();
        return deps.audit({
          ...note,
          requestId,
          decision: error === null ? 'allow' : 'deny',
          reason: error === null ? 'none' : error.error,
          ...(error === null ? {} : { reasonDetail: error.reasonDetail, status: error.status }),
          durationMs: Number(process.hrtime.bigint() - started) / 1e6,
        });
      };
      // The answer's time, from arrival to the answer handed to the socket (after its line).
      const answered = (decision: 'allow' | 'deny'): void => {
        if (endpoint !== undefined) deps.onAnswered?.(endpoint, decision, Number(process.hrtime.bigint() - started) / 1e9);
      };
      const refuse = (error: BrokerError, headers: Record<string, string> = {}): void => {
        finish(error).then(
          () => {
            if (res.headersSent) return;
            sendOAuthError(res, error, headers);
            answered('deny');
          },
          () => res.destroy(),
        );
      };

      if (endpoint === undefined) {
        if ((method === 'GET' || method === 'HEAD') && req.url === path && get(path, res)) return;
        if (method !== 'GET' && method !== 'HEAD' && (path === PATHS.metadata || path === PATHS.jwks)) {
          sendOAuthError(res, new BrokerError('invalid_request', 'use GET', { status: 405 }), { allow: 'GET, HEAD' });
          return;
        }
        sendOAuthError(res, new BrokerError('invalid_request', 'no such endpoint', { status: 404 }));
        return;
      }
      if (method !== 'POST') {
        req.resume();
        refuse(new BrokerError('invalid_request', 'use POST', { status: 405, reasonDetail: 'method' }), { allow: 'POST' });
        return;
      }
      // Parameters belong in the body (RFC 6749 §3.2); a query string would land in logs.
      if (req.url !== path) {
        req.resume();
        refuse(new BrokerError('invalid_request', 'send parameters in the form body, not in the URL', { reasonDetail: 'query_string' }));
        return;
      }
      if (deps.auditAvailable?.() === false) {
        // Nothing the broker does may go unrecorded: refused at once, before any token is minted.
        req.resume();
        sendOAuthError(res, new BrokerError('temporarily_unavailable', 'the gateway cannot record requests right now; retry later', { retryAfterSeconds: 1 }));
        return;
      }
      post(endpoint, req, note).then(
        (reply) =>
          finish(null).then(
            () => {
              sendJson(res, reply.status, reply.body);
              answered('allow');
            },
            () => res.destroy(),
          ),
        (error: unknown) => {
          if (error instanceof BrokerError) {
            if (error.status === 413) res.once('finish', () => req.socket.destroySoon());
            else req.resume();
            refuse(error);
            return;
          }
          deps.onError(error);
          req.resume();
          deps.audit({ ...note, requestId, decision: 'deny', reason: 'server_error', durationMs: Number(process.hrtime.bigint() - started) / 1e6 }).then(
            () => {
              if (!res.headersSent) sendOAuthError(res, new BrokerError('server_error', 'the broker failed; see the gateway log'));
            },
            () => res.destroy(),
          );
        },
      );
    },
  };
}

function pathOf(url: string): string {
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}
