// RFC 8414 authorization server metadata: what a standard OAuth client discovers about us.
import { resourceOf } from '../policy/resource.js';
import type { Backend, PolicySnapshot } from '../policy/types.js';

export const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const PATHS = {
  metadata: '/.well-known/oauth-authorization-server',
  jwks: '/.well-known/jwks.json',
  token: '/oauth/token',
  introspect: '/oauth/introspect',
  revoke: '/oauth/revoke',
} as const;

/** `issuer` without a trailing slash, joined with one of our paths. */
export function endpointUrl(issuer: string, path: string): string {
  return `${issuer.replace(/\/+$/, '')}${path}`;
}

export function authorizationServerMetadata(issuer: string, policy: PolicySnapshot): Record<string, unknown> {
  const scopes: string[] = [];
  for (const backend of policy.backends.values()) for (const scope of backend.scopes.values()) scopes.push(scope.id);
  const authMethods = ['client_secret_basic', 'private_key_jwt'];
  const authAlgs = ['EdDSA', 'ES256'];
  return {
    issuer,
    token_endpoint: endpointUrl(issuer, PATHS.token),
    jwks_uri: endpointUrl(issuer, PATHS.jwks),
    introspection_endpoint: endpointUrl(issuer, PATHS.introspect),
    revocation_endpoint: endpointUrl(issuer, PATHS.revoke),
    grant_types_supported: ['client_credentials', TOKEN_EXCHANGE],
    // No authorization endpoint: agents are clients of their own, there is no browser flow.
    response_types_supported: [],
    scopes_supported: scopes.sort(),
    token_endpoint_auth_methods_supported: authMethods,
    token_endpoint_auth_signing_alg_values_supported: authAlgs,
    introspection_endpoint_auth_methods_supported: authMethods,
    introspection_endpoint_auth_signing_alg_values_supported: authAlgs,
    revocation_endpoint_auth_methods_supported: authMethods,
    revocation_endpoint_auth_signing_alg_values_supported: authAlgs,
    token_exchange_subject_token_types_supported: ['urn:ietf:params:oauth:token-type:jwt', 'urn:ietf:params:oauth:token-type:access_token'],
  };
}

/**
 * RFC 9728 OAuth Protected Resource Metadata for one backend, served at
 * /.well-known/oauth-protected-resource/{backend}{path}: what an MCP client discovers after a 401
 * names it. Tokens for it come from this broker, asked with `resource` set to `resource` (RFC 8707).
 */
export function protectedResourceMetadata(issuer: string, backend: Backend): Record<string, unknown> {
  return {
    resource: resourceOf(issuer, backend),
    authorization_servers: [issuer],
    scopes_supported: [...backend.scopes.values()].map((s) => s.id).sort(),
    bearer_methods_supported: ['header'],
    resource_name: backend.name,
  };
}
