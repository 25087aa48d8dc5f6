// Typed, compiled policy: what `validate.ts` produces and what the hot path reads. Everything here
// is built once per load and frozen; a reload swaps a whole new PolicySnapshot in.

/** An HTTP method a route names, or `ANY`. */
export type RouteMethod = 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE' | 'OPTIONS' | 'ANY';

/** Limits a JSON body field of a route to listed values (`body: { script: [a, b] }`). */
export interface BodyConstraint {
  readonly fields: ReadonlyMap<string, ReadonlySet<string>>;
}

/** One compiled route of a scope. */
export interface Route {
  readonly method: RouteMethod;
  /** The template as written in policy, e.g. `GET /contacts/:id`. */
  readonly template: string;
  /** Full scope id, `backend:name`. */
  readonly scope: string;
  readonly body: BodyConstraint | null;
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

export interface Backend {
  readonly name: string;
  /** Upstream base URL; its path (without trailing slash) prefixes every forwarded path. */
  readonly upstream: URL;
  readonly origin: string;
  readonly basePath: string;
  readonly timeoutMs: number;
  readonly scopes: ReadonlyMap<string, Scope>;
  readonly routes: RouteTable;
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

export interface Role {
  readonly name: string;
  readonly description: string;
  /** Scope ids (`backend:name`) this role may be granted. */
  readonly grants: ReadonlySet<string>;
  /** Backends reachable through `grants`. */
  readonly backends: ReadonlySet<string>;
  readonly readOnly: boolean;
  readonly token: TokenPolicy;
  /** null: the role has no breaker. */
  readonly breaker: BreakerPolicy | null;
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
}

/** Methods that do not change state; a `readOnly` role may use only these. */
export const SAFE_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS']);
