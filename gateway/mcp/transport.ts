// Streamable HTTP (MCP 2025-11-25, also 2025-06-18 and 2025-03-26 clients): one endpoint, POST for
// JSON-RPC messages, GET for the server's stream, DELETE to end a session. The deprecated HTTP+SSE
// transport (2024-11-05: GET /sse, POST /messages?sessionId=) and stream resumption are refused
// with a problem that says what to use instead.
import type { IncomingHttpHeaders } from 'node:http';
import type { Target } from '../context.js';
import { GatewayError } from '../errors.js';
import type { McpBackend } from '../policy/types.js';
import type { McpCall } from './types.js';

export function transportKind(target: Target, headers: IncomingHttpHeaders, backend: string, mcp: McpBackend): McpCall['kind'] {
  const endpoint = `/${backend}${mcp.path}`;
  if (target.path !== mcp.path || target.query !== '') {
    throw new GatewayError('transport_unsupported', `this MCP backend speaks Streamable HTTP at ${endpoint} only (no other path, no query); the deprecated HTTP+SSE transport is not supported`, {
      reasonDetail: `${target.method} ${target.path.slice(0, 128)}${target.query === '' ? '' : ' with a query'}`,
    });
  }
  if (headers.upgrade !== undefined) {
    // A WebSocket would bypass the per-message checks and the response filter.
    throw new GatewayError('transport_unsupported', `WebSocket is not an MCP transport; use Streamable HTTP at ${endpoint}`, { reasonDetail: 'upgrade' });
  }
  if (headers['last-event-id'] !== undefined) {
    // A replayed message could answer a request this gateway never checked (an unfiltered list).
    throw new GatewayError('transport_unsupported', 'resuming a stream (Last-Event-ID) is not supported through the gateway; send the request again', { reasonDetail: 'last-event-id' });
  }
  switch (target.method) {
    case 'POST':
      return 'messages';
    case 'GET':
      return 'stream';
    case 'DELETE':
      return 'end';
    default:
      throw new GatewayError('transport_unsupported', `${endpoint} takes POST (messages), GET (the server's stream) or DELETE (end the session)`, { reasonDetail: `method ${target.method}` });
  }
}
