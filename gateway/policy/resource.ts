// Resource identifiers of backends (RFC 8707, RFC 9728): the URL an agent uses for a backend under
// the gateway's public URL. An MCP backend's is its endpoint (`/tickets-mcp/mcp`), as MCP clients
// name the server they talk to; a REST backend's is its prefix (`/crm`).
import type { Backend, PolicySnapshot } from './types.js';

export const PROTECTED_RESOURCE_PATH = '/.well-known/oauth-protected-resource';

/** The public URL's origin and its path without a trailing slash ('' at the root). */
function base(publicUrl: string): { readonly origin: string; readonly pathname: string } {
  const url = new URL(publicUrl);
  return { origin: url.origin, pathname: url.pathname.replace(/\/+$/, '') };
}

export function resourceOf(publicUrl: string, backend: Backend): string {
  const url = base(publicUrl);
  return `${url.origin}${url.pathname}/${backend.name}${backend.mcp?.path ?? ''}`;
}

/** RFC 9728 §3.1: the well-known segment goes between the host and the resource's path. */
export function resourceMetadataUrl(publicUrl: string, backend: Backend): string {
  const url = base(publicUrl);
  return `${url.origin}${PROTECTED_RESOURCE_PATH}${url.pathname}/${backend.name}${backend.mcp?.path ?? ''}`;
}

/** The backend whose metadata a request path asks for, or undefined. */
export function backendForMetadataPath(policy: PolicySnapshot, publicUrl: string, path: string): Backend | undefined {
  const prefix = `${PROTECTED_RESOURCE_PATH}${base(publicUrl).pathname}/`;
  if (!path.startsWith(prefix)) return undefined;
  const rest = path.slice(prefix.length);
  for (const backend of policy.backends.values()) if (rest === `${backend.name}${backend.mcp?.path ?? ''}`) return backend;
  return undefined;
}

/** The backend a resource indicator names (exact match, no normalisation), or undefined. */
export function backendForResource(policy: PolicySnapshot, publicUrl: string, resource: string): Backend | undefined {
  for (const backend of policy.backends.values()) if (resourceOf(publicUrl, backend) === resource) return backend;
  return undefined;
}
