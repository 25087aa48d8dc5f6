// BrokerError, the broker's refusal in OAuth terms. A leaf beside the catalog: the broker's
// modules throw it, and the CLI dispatcher (cli/index.ts) reports it without loading jose.
import { OAUTH_ERRORS, type OAuthErrorCode, type OAuthStatus } from '../errors.js';

/** RFC 6749 §5.2 error codes: the catalog's OAUTH_ERRORS. */
export type { OAuthErrorCode };

export interface BrokerErrorOptions<C extends OAuthErrorCode = OAuthErrorCode> {
  /** HTTP status; default the catalog's (401 for invalid_client, else 400: RFC 6749 §5.2). */
  readonly status?: OAuthStatus<C>;
  /** Precise internal cause for the audit line; never sent. */
  readonly reasonDetail?: string;
  readonly retryAfterSeconds?: number;
  readonly cause?: unknown;
}

/** A refusal in OAuth terms; the token endpoint renders it as `{ error, error_description }`. */
export class BrokerError<C extends OAuthErrorCode = OAuthErrorCode> extends Error {
  readonly error: C;
  readonly description: string;
  readonly status: number;
  readonly reasonDetail: string;
  readonly retryAfterSeconds: number | undefined;

  constructor(error: C, description: string, options: BrokerErrorOptions<C> = {}) {
    super(`${error}: ${description}`, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'BrokerError';
    this.error = error;
    this.description = description;
    this.status = options.status ?? OAUTH_ERRORS[error].status;
    this.reasonDetail = options.reasonDetail ?? description;
    this.retryAfterSeconds = options.retryAfterSeconds;
  }
}
