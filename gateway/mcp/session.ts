// MCP session ids bound to the agent that opened the session. A Streamable HTTP server keys its
// session state (the GET stream, subscriptions, the requests it sends the client) by the
// `Mcp-Session-Id` it hands out; forwarded unchecked, that id would let any agent holding a grant
// on the backend read another agent's stream or end its session. So the agent never sees the
// server's id: the gateway hands out `ag1.<mac>.<server id>`, where the MAC (HMAC-SHA256 under a
// secret kept beside the signing keys) covers the session's owner (the agent, and the user it acts
// for with a delegated token), the backend and the server's id, and forwards the server's id only
// when the MAC holds for the owner and backend of the request.
// Stateless: the secret (tokens/session-secret.ts) is the same for every instance and worker sharing
// `issuer.keys`, and survives a restart.
import { createHmac, timingSafeEqual } from 'node:crypto';

/** Who a session belongs to: the agent, and the user it acts for (null: the agent itself). */
export interface SessionOwner {
  readonly agent: string;
  readonly onBehalfOf: string | null;
}

export interface McpSessions {
  /** The id the agent is given for the server's session `serverId`. */
  seal(owner: SessionOwner, backend: string, serverId: string): string;
  /** The server's id inside `presented`, or null when it was not handed to this owner for this backend. */
  open(owner: SessionOwner, backend: string, presented: string): string | null;
}

const PREFIX = 'ag1.';
/** base64url of a SHA-256 MAC. */
const MAC_LENGTH = 43;
/** Longest server id taken (the spec asks only for visible ASCII; real ids are UUIDs or tokens). */
const MAX_SERVER_ID = 512;
const VISIBLE_ASCII = /^[\x21-\x7e]+$/;

/** Whether `id` can be a server's session id (MCP: visible ASCII only); refused as upstream_invalid otherwise. */
export function isServerSessionId(id: unknown): id is string {
  return typeof id === 'string' && id.length <= MAX_SERVER_ID && VISIBLE_ASCII.test(id);
}

export function createMcpSessions(secret: Buffer): McpSessions {
  if (secret.length < 32) throw new Error('the MCP session secret must be at least 32 bytes');
  const mac = (owner: SessionOwner, backend: string, serverId: string): Buffer =>
    // Length-prefixed fields: no agent, user, backend or id can run into the next one. A user is
    // `u` and its name, the agent acting for itself `-`.
    createHmac('sha256', secret)
      .update(field(owner.agent) + (owner.onBehalfOf === null ? '-' : `u${field(owner.onBehalfOf)}`) + field(backend) + field(serverId))
      .digest();
  return {
    seal(owner, backend, serverId) {
      return `${PREFIX}${mac(owner, backend, serverId).toString('base64url')}.${serverId}`;
    },
    open(owner, backend, presented) {
      if (!presented.startsWith(PREFIX) || presented.charCodeAt(PREFIX.length + MAC_LENGTH) !== 0x2e) return null;
      const serverId = presented.slice(PREFIX.length + MAC_LENGTH + 1);
      if (!isServerSessionId(serverId)) return null;
      const given = Buffer.from(presented.slice(PREFIX.length, PREFIX.length + MAC_LENGTH), 'base64url');
      const expected = mac(owner, backend, serverId);
      return given.length === expected.length && timingSafeEqual(given, expected) ? serverId : null;
    },
  };
}

function field(value: string): string {
  return `${value.length}:${value}`;
}
