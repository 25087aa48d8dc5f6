// The error catalog: every refusal the gateway answers with, in one place. Three surfaces, one
// list each, every entry with its HTTP status, challenge, title and whether it counts as a
// violation against the agent's grant:
// - REASONS: the agent port's problem documents (proxy, upgrades, parser refusals);
// - ADMIN_PROBLEMS: the admin socket's problem documents (shared codes are the same entry);
// - OAUTH_ERRORS: the token broker's RFC 6749 §5.2 error answers.
// `problem.ts` renders the problems and `broker/form.ts` the OAuth errors; the README's tables
// are checked against these lists by test/errors.test.ts, and no module writes a problem type,
// title or OAuth error code of its own (the same test reads the sources).

/** How a refusal challenges the client (RFC 6750 §3). */
export type BearerChallenge = 'none' | 'challenge' | 'invalid_token' | 'insufficient_scope' | 'invalid_request';

export interface ReasonSpec {
  readonly status: number;
  readonly title: string;
  readonly bearer: BearerChallenge;
  /** Counts against the agent (breaker, violations metric) when made with a valid token. */
  readonly violation: boolean;
  /** The request target may carry a credential: its path is not written to the audit line. */
  readonly secretInTarget?: true;
}

/**
 * Stable reason codes. The same string is the problem `type` suffix, the audit `reason`
 * and the `reason` metric label; renaming one is a breaking change.
 */
export const REASONS = {
  target_invalid: { status: 400, title: 'Ambiguous or malformed request target', bearer: 'none', violation: true },
  header_forbidden: { status: 400, title: 'Request header not accepted', bearer: 'none', violation: true },
  method_override: { status: 400, title: 'Method override not accepted', bearer: 'none', violation: true },
  body_unexpected: { status: 400, title: 'Request body not accepted on this route', bearer: 'none', violation: true },
  token_misplaced: { status: 400, title: 'Token sent outside the Authorization header', bearer: 'invalid_request', violation: false, secretInTarget: true },
  token_missing: { status: 401, title: 'Bearer token required', bearer: 'challenge', violation: false },
  token_invalid: { status: 401, title: 'Token not accepted', bearer: 'invalid_token', violation: false },
  agent_killed: { status: 403, title: 'Agent disabled by an operator', bearer: 'none', violation: false },
  agent_suspended: { status: 403, title: 'Agent suspended by its circuit breaker', bearer: 'none', violation: false },
  agent_expired: { status: 403, title: 'Agent expired', bearer: 'none', violation: false },
  rate_limited: { status: 429, title: 'Too many calls', bearer: 'none', violation: false },
  cross_domain: { status: 403, title: 'Token not issued for this backend', bearer: 'insufficient_scope', violation: true },
  out_of_scope: { status: 403, title: 'Route not granted to this token', bearer: 'insufficient_scope', violation: true },
  unknown_route: { status: 403, title: 'Route not defined for this backend', bearer: 'insufficient_scope', violation: true },
  read_only: { status: 403, title: 'Role is read-only', bearer: 'insufficient_scope', violation: true },
  query_refused: { status: 403, title: 'Query parameters not allowed by the route', bearer: 'insufficient_scope', violation: true },
  body_refused: { status: 403, title: 'JSON body not allowed by the route', bearer: 'insufficient_scope', violation: true },
  not_aggregate: { status: 403, title: 'Query is not aggregate-only', bearer: 'insufficient_scope', violation: true },
  method_denied: { status: 403, title: 'JSON-RPC method not allowed', bearer: 'insufficient_scope', violation: true },
  transport_unsupported: { status: 400, title: 'MCP transport not supported', bearer: 'none', violation: false },
  mcp_session_unknown: { status: 404, title: 'MCP session not found', bearer: 'none', violation: false },
  network_denied: { status: 403, title: 'Caller network not allowed', bearer: 'none', violation: true },
  approval_required: { status: 403, title: 'Human approval required', bearer: 'none', violation: false },
  approval_invalid: { status: 403, title: 'Approval does not cover this request', bearer: 'none', violation: false },
  backend_unknown: { status: 404, title: 'No such backend', bearer: 'none', violation: false },
  request_timeout: { status: 408, title: 'Request not received in time', bearer: 'none', violation: false },
  headers_too_large: { status: 431, title: 'Request header fields too large', bearer: 'none', violation: false },
  body_too_large: { status: 413, title: 'Request body too large', bearer: 'none', violation: false },
  body_invalid: { status: 400, title: 'Request body cannot be checked', bearer: 'none', violation: true },
  upstream_unavailable: { status: 502, title: 'Backend unavailable', bearer: 'none', violation: false },
  upstream_redirect: { status: 502, title: 'Backend redirected outside its origin', bearer: 'none', violation: false },
  upstream_invalid: { status: 502, title: 'Backend answer refused', bearer: 'none', violation: false },
  response_unmaskable: { status: 502, title: 'Response cannot be masked', bearer: 'none', violation: false },
  upstream_timeout: { status: 504, title: 'Backend timed out', bearer: 'none', violation: false },
  audit_unavailable: { status: 503, title: 'Audit trail unavailable', bearer: 'none', violation: false },
  state_unavailable: { status: 503, title: 'Gateway state unavailable', bearer: 'none', violation: false },
  client_closed: { status: 499, title: 'Client closed the request', bearer: 'none', violation: false },
  internal: { status: 500, title: 'Internal error', bearer: 'none', violation: false },
} as const satisfies Record<string, ReasonSpec>;

export type ReasonCode = keyof typeof REASONS;

export const REASON_CODES = Object.keys(REASONS) as ReasonCode[];

export function isReasonCode(value: string): value is ReasonCode {
  return Object.hasOwn(REASONS, value);
}

/**
 * The admin API's problem codes (`urn:agentgate:problem:<code>` on the admin socket). A code the
 * agent port uses too is the same entry, so one code never has two statuses or titles.
 */
export const ADMIN_PROBLEMS = {
  invalid_request: { status: 400, title: 'Admin request not valid', bearer: 'none', violation: false },
  not_found: { status: 404, title: 'Nothing to act on', bearer: 'none', violation: false },
  agent_unknown: { status: 404, title: 'No such agent', bearer: 'none', violation: false },
  credential_unknown: { status: 404, title: 'No such client credential', bearer: 'none', violation: false },
  approval_unknown: { status: 404, title: 'No such approval', bearer: 'none', violation: false },
  method_not_allowed: { status: 405, title: 'Method not allowed on this endpoint', bearer: 'none', violation: false },
  approval_not_pending: { status: 409, title: 'Approval already decided or expired', bearer: 'none', violation: false },
  request_timeout: REASONS.request_timeout,
  body_too_large: REASONS.body_too_large,
  headers_too_large: REASONS.headers_too_large,
  policy_invalid: { status: 422, title: 'Policies not valid', bearer: 'none', violation: false },
  audit_unavailable: REASONS.audit_unavailable,
  state_unavailable: REASONS.state_unavailable,
  internal: REASONS.internal,
} as const satisfies Record<string, ReasonSpec>;

export type AdminProblemCode = keyof typeof ADMIN_PROBLEMS;

export const ADMIN_PROBLEM_CODES = Object.keys(ADMIN_PROBLEMS) as AdminProblemCode[];

/** How a broker error challenges the client: `basic` is HTTP Basic on a 401 (RFC 6749 §5.2). */
export type OAuthChallenge = 'none' | 'basic';

export interface OAuthErrorSpec {
  /** The status it answers with unless a refusal names another of `statuses`. */
  readonly status: number;
  /** Every status a refusal with this code may carry (the first is `status`). */
  readonly statuses: readonly number[];
  readonly title: string;
  readonly challenge: OAuthChallenge;
  /** Broker refusals never count against an agent's breaker (failed logins have their own limit). */
  readonly violation: false;
}

/**
 * The token broker's error codes (RFC 6749 §5.2, RFC 8707 `invalid_target`; RFC 6749 §4.1.2.1's
 * `temporarily_unavailable` and `server_error` for an unwritable audit trail and a bug). The
 * answer is `{ error, error_description }`; the title is what the code means, for the README and
 * the CLI.
 */
export const OAUTH_ERRORS = {
  invalid_request: { status: 400, statuses: [400, 404, 405, 413], title: 'Malformed token request', challenge: 'none', violation: false },
  invalid_client: { status: 401, statuses: [401, 429], title: 'Client authentication failed', challenge: 'basic', violation: false },
  invalid_grant: { status: 400, statuses: [400], title: 'Grant not valid', challenge: 'none', violation: false },
  unauthorized_client: { status: 400, statuses: [400], title: 'Client may not use this grant', challenge: 'none', violation: false },
  unsupported_grant_type: { status: 400, statuses: [400], title: 'Grant type not supported', challenge: 'none', violation: false },
  invalid_scope: { status: 400, statuses: [400], title: 'Scope not granted', challenge: 'none', violation: false },
  invalid_target: { status: 400, statuses: [400], title: 'Resource not served by this broker', challenge: 'none', violation: false },
  temporarily_unavailable: { status: 503, statuses: [503], title: 'Broker cannot record requests', challenge: 'none', violation: false },
  server_error: { status: 500, statuses: [500], title: 'Broker failure', challenge: 'none', violation: false },
} as const satisfies Record<string, OAuthErrorSpec>;

export type OAuthErrorCode = keyof typeof OAUTH_ERRORS;

/** The statuses a refusal with `code` may answer with. */
export type OAuthStatus<C extends OAuthErrorCode> = (typeof OAUTH_ERRORS)[C]['statuses'][number];

export const OAUTH_ERROR_CODES = Object.keys(OAUTH_ERRORS) as OAuthErrorCode[];

export interface GatewayErrorOptions {
  /** Precise internal cause (which token check failed, which byte was bad). Audit only; never sent. */
  readonly reasonDetail?: string;
  readonly retryAfterSeconds?: number;
  readonly cause?: unknown;
  /** Extra problem members the agent needs (RFC 9457 §3.2), e.g. `approvalId`. Never secrets. */
  readonly extensions?: Readonly<Record<string, string>>;
  /**
   * Close the client connection after the answer: the request's framing cannot be trusted, or
   * its body was not read, so no byte after this head may be parsed as a next request.
   */
  readonly closeConnection?: boolean;
  /** Response header fields the refusal carries besides the standard ones (e.g. `RateLimit`). */
  readonly headers?: Readonly<Record<string, string>>;
  /** Count this refusal as a violation although its reason is not one (a role's `rateLimit.violation`). */
  readonly violation?: boolean;
}

/**
 * A refusal or failure that is part of the gateway's job. Stages throw it to stop the pipeline;
 * the runner renders it with `problem.ts`. `detail` is safe to show the agent: it says what the
 * agent can fix and never which internal check failed.
 */
export class GatewayError extends Error {
  readonly reason: ReasonCode;
  readonly status: number;
  readonly detail: string;
  readonly reasonDetail: string;
  readonly retryAfterSeconds: number | undefined;
  readonly extensions: Readonly<Record<string, string>> | undefined;
  readonly headers: Readonly<Record<string, string>> | undefined;
  /** Counts against the agent (breaker, violations metric) when made with a valid token. */
  readonly violation: boolean;
  readonly closeConnection: boolean;

  constructor(reason: ReasonCode, detail: string, options: GatewayErrorOptions = {}) {
    // A refusal is control flow: its stack is never rendered or logged, and capturing one cost
    // more than the check that raised it (benchmark profile of a refusal flood).
    const stackTraceLimit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super(`${reason}: ${detail}`, options.cause === undefined ? undefined : { cause: options.cause });
    Error.stackTraceLimit = stackTraceLimit;
    this.name = 'GatewayError';
    this.reason = reason;
    this.status = REASONS[reason].status;
    this.detail = detail;
    this.reasonDetail = options.reasonDetail ?? detail;
    this.retryAfterSeconds = options.retryAfterSeconds;
    this.extensions = options.extensions;
    this.headers = options.headers;
    this.violation = options.violation ?? REASONS[reason].violation;
    this.closeConnection = options.closeConnection === true;
  }

  get spec(): ReasonSpec {
    return REASONS[this.reason];
  }
}

/** The refusal naming the approval a person must give before the exact request is repeated. */
export function approvalRequiredError(approval: { readonly id: string; readonly route: string; readonly expiresAt: number }): GatewayError {
  const until = new Date(approval.expiresAt).toISOString();
  return new GatewayError('approval_required', `${approval.route} needs a person's approval: ask an operator to approve ${approval.id}, then repeat this exact request with the header X-AgentGate-Approval: ${approval.id} before ${until}`, {
    reasonDetail: `approval ${approval.id} requested`,
    extensions: { approvalId: approval.id, approvalExpiresAt: until },
  });
}

/**
 * Invalid configuration or policy: carries every problem found, each formatted
 * `file:line  path: message`, so an operator fixes them all in one pass.
 */
export class ConfigError extends Error {
  readonly problems: readonly string[];

  constructor(problems: readonly string[]) {
    super(problems.length === 1 ? (problems[0] ?? 'invalid configuration') : `${problems.length} problems in configuration`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}
