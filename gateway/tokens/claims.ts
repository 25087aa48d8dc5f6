// The claims of an access token (DESIGN §4), as one family of types every module shares: what the
// broker plans to sign, what verification reads back, and who the caller is once authenticated.
// A leaf module: types only, no imports, so importing a claim never pulls in the request context.

/** Delegation chain entry (RFC 8693 `act`). */
export interface Actor {
  readonly sub: string;
  readonly act?: Actor;
}

/**
 * The claims of one of our access tokens, named as the gateway reads them:
 * `agent` is `client_id`, `subject` is `sub`, `audience` is `aud`, `issuedAt`/`expiresAt` are
 * `iat`/`exp` (seconds since the epoch).
 */
export interface TokenClaims {
  /** The agent: `client_id`. */
  readonly agent: string;
  /** `sub`: the agent itself, or the user it acts for (then `act` names the agent). */
  readonly subject: string;
  readonly act: Actor | null;
  readonly audience: ReadonlySet<string>;
  readonly scopes: ReadonlySet<string>;
  readonly jti: string;
  readonly sid: string;
  /** Seconds since the epoch. */
  readonly issuedAt: number;
  readonly expiresAt: number;
}

/** A token that passed signature and claim checks: its claims and the key that signed it. */
export interface VerifiedClaims extends TokenClaims {
  readonly kid: string;
}

/** Who is calling, established by authenticate from a verified token. No raw token here. */
export interface Principal extends TokenClaims {
  /** From the policy in force, never from the token. */
  readonly role: string;
  /** The user the agent acts for, when the token is delegated; else null. */
  readonly onBehalfOf: string | null;
}

/**
 * What the broker decided to sign, before minting fills `jti`, `iat` and `exp`. The same claims
 * as TokenClaims, as sorted lists (the order they are written in), plus the lifetime.
 */
export interface TokenPlan {
  readonly agent: string;
  /** The agent's role when planned (not a claim; metrics and audit). */
  readonly role: string;
  readonly subject: string;
  readonly act: Actor | null;
  /** Backend names, sorted: the token's `aud`. */
  readonly audience: readonly string[];
  /** Scope ids (`backend:name`), sorted; written space-separated (RFC 9068 §2.2.3). */
  readonly scopes: readonly string[];
  /** The session this token opens. */
  readonly sid: string;
  readonly ttlSeconds: number;
}
