// Typed, compiled policy: what `validate.ts` produces and what the hot path reads. Everything here
// is built once per load and frozen; a reload swaps a whole new PolicySnapshot in.
import type { BlockList } from 'node:net';

/** An HTTP method a route names, or `ANY`. */
export type RouteMethod = 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE' | 'OPTIONS' | 'ANY';

/** Limits a JSON body field of a route to listed values (`body: { script: [a, b] }`). */
export interface BodyConstraint {
  readonly fields: ReadonlyMap<string, ReadonlySet<string>>;
}

/** SQL dialects the query checker parses (node-sql-parser grammars). */
export type SqlDialect = 'sqlite' | 'postgresql' | 'mysql' | 'mariadb' | 'bigquery' | 'transactsql';

/** Marks a route whose JSON body carries SQL (`query: { field: sql, dialect: sqlite }`). */
export interface QueryRoute {
  /** The JSON body field holding the SQL text. */
  readonly field: string;
  readonly dialect: SqlDialect;
}

/**
 * A rule for one query parameter or JSON field value. Query values are checked as sent (strict
 * text forms), JSON values by their JSON type.
 */
export type ValueRule =
  | { readonly kind: 'int'; readonly min: number; readonly max: number }
  | { readonly kind: 'number'; readonly min: number; readonly max: number }
  | { readonly kind: 'enum'; readonly values: ReadonlySet<string> }
  | { readonly kind: 'string'; readonly min: number; readonly max: number; readonly pattern: RegExp | null }
  | { readonly kind: 'bool' }
  | { readonly kind: 'object'; readonly rules: FieldRules }
  | { readonly kind: 'array'; readonly items: FieldRule; readonly max: number };

/** One named rule as the policy wrote it. */
export interface FieldRule {
  readonly name: string;
  readonly rule: ValueRule;
  readonly required: boolean;
  /** `file:line` of the rule, for refusals and `agentgate explain`. */
  readonly source: string;
  /** The rule in words (`int 1..100`), for refusals and `explain`. */
  readonly text: string;
}

/** `query: {...}` or `json: { fields, additional }` of a route. */
export interface FieldRules {
  /** Query rules: by normalised name (lower-case, `-` and `.` read as `_`); JSON: by exact key. */
  readonly fields: ReadonlyMap<string, FieldRule>;
  /** Names or keys the rules do not list are allowed (default false). */
  readonly additional: boolean;
}

/** A human must approve each call (`approval: required`); the approval lives this long. */
export interface ApprovalPolicy {
  readonly ttlMs: number;
}

/** One compiled route of a scope. */
export interface Route {
  readonly method: RouteMethod;
  /** The template as written in policy, e.g. `GET /contacts/:id`. */
  readonly template: string;
  /** Full scope id, `backend:name`. */
  readonly scope: string;
  readonly body: BodyConstraint | null;
  /**
   * The route takes a request body even with GET, HEAD, DELETE, OPTIONS or TRACE (`body: true`,
   * or a body it checks). Without it such a request with a body is refused (body_unexpected).
   */
  readonly acceptsBody: boolean;
  /** Set when the route's body is SQL that roles with a `query` constraint must have checked. */
  readonly query: QueryRoute | null;
  /** Rules for the query string (`query:` with parameter rules); null: any query is forwarded. */
  readonly queryRules: FieldRules | null;
  /** Rules for a JSON body (`json: { fields, additional }`); null: none. */
  readonly json: FieldRules | null;
  /** Set when each call needs a human's approval (from the route or its scope). */
  readonly approval: ApprovalPolicy | null;
}

/**
 * The most specific route shape that matches a request. The same `METHOD /template` may be listed
 * in several scopes; `routes` holds each of them (one per scope), and a token needs any one.
 */
export interface RouteMatch {
  readonly routes: readonly Route[];
  /** Parameter values by the names of the first route. */
  readonly params: Readonly<Record<string, string>>;
}

/**
 * Route lookup for one backend, compiled at load. Among matching routes the most specific wins
 * (literal segment > parameter with listed values > parameter > trailing `*`, then an exact
 * method over `ANY`), so a broad route of one scope can never shadow a narrow route of another.
 */
export interface RouteTable {
  /** `segments` are the canonical path segments after the backend prefix. */
  match(method: string, segments: readonly string[]): RouteMatch | null;
}

export interface Scope {
  /** `backend:name`, as tokens and grants spell it. */
  readonly id: string;
  readonly backend: string;
  readonly name: string;
  readonly routes: readonly Route[];
}

/**
 * An RFC 6570 level-1 URI template of an MCP resource grant (`tickets://{id}`): literal text and
 * `{name}` variables, each matching one or more characters other than `/`, `?` and `#`.
 */
export interface UriTemplate {
  /** The template as written in policy (list filtering keeps resource templates equal to it). */
  readonly text: string;
  readonly pattern: RegExp;
}

/**
 * What an MCP backend (`kind: mcp`) publishes, compiled at load. Every tool is a Route (method
 * POST, template `tools/call NAME`) so the REST constraints apply to its `params.arguments`.
 */
export interface McpBackend {
  /** The Streamable HTTP endpoint, at the gateway (`/{backend}{path}`) and at the upstream. */
  readonly path: string;
  /** Tool name -> one Route per scope that lists it. */
  readonly tools: ReadonlyMap<string, readonly Route[]>;
  /** Prompt name -> the scopes that list it. */
  readonly prompts: ReadonlyMap<string, readonly string[]>;
  readonly resources: ReadonlyArray<{ readonly template: UriTemplate; readonly scope: string }>;
}

export interface Backend {
  readonly name: string;
  /** `rest` (routes) or `mcp` (Model Context Protocol over Streamable HTTP; then `mcp` is set). */
  readonly kind: 'rest' | 'mcp';
  readonly mcp: McpBackend | null;
  /** Upstream base URL; its path (without trailing slash) prefixes every forwarded path. */
  readonly upstream: URL;
  readonly origin: string;
  readonly basePath: string;
  readonly timeoutMs: number;
  readonly scopes: ReadonlyMap<string, Scope>;
  readonly routes: RouteTable;
  /**
   * Request headers forwarded to this backend (lower-case, exact): the gateway's safe defaults
   * plus the backend's `forwardHeaders`. Anything else the agent sends is not forwarded.
   */
  readonly forwardHeaders: ReadonlySet<string>;
  /**
   * Cookie names forwarded (`forwardCookies`); empty: no Cookie header at all. The same names are
   * the only cookies the backend may set on the agent (`Set-Cookie` in its answers).
   */
  readonly forwardCookies: ReadonlySet<string>;
  /**
   * Answer headers passed back to the agent (lower-case, exact): the gateway's defaults plus the
   * backend's `responseHeaders`. Anything else the backend answers with stays behind.
   */
  readonly responseHeaders: ReadonlySet<string>;
}

export interface TokenPolicy {
  readonly ttlSeconds: number;
  readonly session: 'single' | 'multi';
  readonly idleTimeoutSeconds: number | null;
  readonly maxUses: number | null;
  readonly rotateSeconds: number | null;
  /**
   * Longest `act` chain a token of this role may carry when it acts for a user (RFC 8693 token
   * exchange): 1 lets the agent act for a user directly; 2 also for a user's token that another
   * agent already holds; 0 forbids delegation.
   */
  readonly maxDelegationDepth: number;
}

/** Per-role over-privilege circuit breaker (see state/breaker.ts for the rules). */
export interface BreakerPolicy {
  readonly violations: number;
  readonly windowMs: number;
  /** null: `cooldown: manual`, open until an operator revives the agent. */
  readonly cooldownMs: number | null;
  readonly maxCooldownMs: number;
  /** End the agent's live tokens when the breaker trips. */
  readonly revokeTokens: boolean;
}

/** One rate: `rps` calls per second sustained, `burst` at once (GCRA; see admission/rate-limit.ts). */
export interface RateLimitRule {
  /** Sustained calls per second (may be fractional: 0.5 is one call every 2 s). */
  readonly rps: number;
  /** Calls admitted at once after a quiet spell (the bucket's capacity), at least 1. */
  readonly burst: number;
}

/** Per-agent rate limit of a role (`rateLimit: { rps, burst, scopes, violation }`). */
export interface RateLimitPolicy extends RateLimitRule {
  /** Stricter limits for calls granted by one scope (`backend:scope`), on top of the agent's. */
  readonly scopes: ReadonlyMap<string, RateLimitRule>;
  /** true: a `rate_limited` refusal counts as a violation (breaker). Default false. */
  readonly violation: boolean;
}

/**
 * A compiled masking plan for one backend: field paths whose values are replaced by the fixed
 * marker in JSON responses. Built once at load; see stages/filters/mask.ts for the matching rules.
 */
export interface MaskPlan {
  /** The paths as written in policy, for messages and the README. */
  readonly paths: readonly string[];
  /** Each path as its key segments (dots inside brackets kept); `anchored` ones start at the root. */
  readonly rules: readonly MaskRule[];
}

export interface MaskRule {
  readonly keys: readonly string[];
  /** True for `$.a.b` (from the document root); false matches the path at any depth. */
  readonly anchored: boolean;
}

/** `query: { aggregateOnly, tables }`: what SQL a role may send on query routes. */
export interface QueryConstraint {
  readonly aggregateOnly: boolean;
  /** Lower-cased table names the SQL may touch. */
  readonly tables: ReadonlySet<string>;
}

/** Networks (IPv4 and IPv6 CIDRs) compiled at load into node's BlockList for matching. */
export interface NetworkSet {
  /** The CIDRs as written, for messages. */
  readonly cidrs: readonly string[];
  /** `check(address, family)`; IPv4-mapped IPv6 addresses match IPv4 networks. */
  readonly list: BlockList;
}

/** `network: { allow: [cidr...] }`: callers must come from one of these networks. */
export interface NetworkPolicy {
  readonly allow: NetworkSet;
}

export interface Role {
  readonly name: string;
  readonly description: string;
  /** Scope ids (`backend:name`) this role may be granted. */
  readonly grants: ReadonlySet<string>;
  /** Backends reachable through `grants`. */
  readonly backends: ReadonlySet<string>;
  readonly readOnly: boolean;
  readonly token: TokenPolicy;
  /** null: the role has no breaker (`breaker: off`, or no breaker in the role or `defaults`). */
  readonly breaker: BreakerPolicy | null;
  /** null: calls are not rate limited (`rateLimit: off`, or none in the role or `defaults`). */
  readonly rateLimit: RateLimitPolicy | null;
  /** Backend name -> fields masked in that backend's JSON responses. */
  readonly mask: ReadonlyMap<string, MaskPlan>;
  /** Checked on routes marked `query`; null: no query constraint. */
  readonly query: QueryConstraint | null;
  /** null: any network. */
  readonly network: NetworkPolicy | null;
  /** Grants (`backend:scope`) that need a human's approval for this role, beyond the routes marked so. */
  readonly approval: ReadonlySet<string>;
  /** false: shadow mode, constraint refusals are counted and audited but not enforced. */
  readonly enforce: boolean;
}

export type AgentCredential =
  | { readonly type: 'private_key_jwt'; readonly jwk: Readonly<Record<string, unknown>> }
  | { readonly type: 'client_secret'; readonly hash: string };

export interface Agent {
  readonly id: string;
  readonly role: string;
  readonly owner: string;
  readonly description: string;
  readonly credentials: readonly AgentCredential[];
  /** Narrows the role's network further; null: the role's alone. */
  readonly network: NetworkPolicy | null;
  /** ms since the epoch from which the agent is refused (`agent_expired`); null: no expiry. */
  readonly expiresAt: number | null;
}

/**
 * What a user may do, from the claims of the user's token (the `users:` policy section): claim
 * name -> claim value -> scope ids. A delegated token never carries a scope outside this.
 */
export type UserRights = ReadonlyMap<string, ReadonlyMap<string, ReadonlySet<string>>>;

/** One loaded, validated and compiled policy set. Pinned per request at arrival. */
export interface PolicySnapshot {
  readonly version: number;
  readonly loadedAt: number;
  /** Files the snapshot was built from, for `status` and error messages. */
  readonly files: readonly string[];
  readonly backends: ReadonlyMap<string, Backend>;
  readonly roles: ReadonlyMap<string, Role>;
  readonly agents: ReadonlyMap<string, Agent>;
  /** Absent in snapshots built by hand (tests); empty when the policies have no `users:` section. */
  readonly users?: UserRights;
  /**
   * What the policy files do that is valid but weakens a control (a role with its breaker off),
   * formatted like problems (`file:line  path: message`). `agentgate check` prints them.
   */
  readonly warnings?: readonly string[];
}

/** How long an approval waits and stays usable when a policy names no `ttl`. */
export const DEFAULT_APPROVAL_TTL_MS = 15 * 60_000;

/** Methods that do not change state; a `readOnly` role may use only these. */
export const SAFE_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS']);
