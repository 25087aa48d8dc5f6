// The per-request context every stage reads and writes, and the Stage contract.
// Each field has exactly one writer (named on it); every field exists from createContext() on.
import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import type { ReasonCode } from './errors.js';
import type { McpCall } from './mcp/types.js';
import type { MaskPlan, PolicySnapshot } from './policy/types.js';
import type { Logger } from './telemetry/log.js';
import type { Clock } from './clock.js';
import type { Principal } from './tokens/claims.js';
import type { Intent } from './state/view.js';

/**
 * The inbound request as data. A live request wraps node's IncomingMessage; `agentgate explain`
 * builds a synthetic one, so no stage may assume a socket exists.
 */
export interface InboundRequest {
  readonly method: string;
  /** The request-target exactly as received (origin-form expected). */
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  /** Name/value pairs as received, for counting repeated headers that node folds or drops. */
  readonly rawHeaders: readonly string[];
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly encrypted: boolean;
  /** The request body stream; null when there is none to read (synthetic requests). */
  readonly body: Readable | null;
}

/** The checked target. `invalid` is set when the target is ambiguous or malformed. */
export interface Target {
  readonly method: string;
  /** Backend name: the first path segment. Empty when the target was unusable. */
  readonly backend: string;
  /** Canonical path after the backend prefix, leading `/`, exactly what is forwarded. */
  readonly path: string;
  /** `''` or `?query` exactly as received (validated, never rewritten). */
  readonly query: string;
  /** Canonical segments of `path`, for route matching. */
  readonly segments: readonly string[];
  /** Why the target was refused (kept for authorize, which raises `target_invalid`), or null. */
  readonly invalid: string | null;
  /** Declared request body length, or null when chunked/absent. */
  readonly contentLength: number | null;
}

/** What authorize granted. */
export interface Grant {
  readonly backend: string;
  readonly scope: string;
  readonly route: string;
  readonly params: Readonly<Record<string, string>>;
  /** The request body, when authorize had to read it to check a constraint; forwarded verbatim. */
  readonly body: Buffer | null;
  /** Fields the role masks in this backend's responses (the mask filter reads it); null: none. */
  readonly mask: MaskPlan | null;
  /** Constraint refusals a role in shadow mode (`enforce: false`) let through; audited. */
  readonly shadow: readonly ShadowRefusal[];
  /** The human approval this call used, when the route needed one. */
  readonly approvalId: string | null;
}

/** A refusal that shadow mode recorded instead of enforcing. */
export interface ShadowRefusal {
  readonly reason: ReasonCode;
  readonly detail: string;
}

/**
 * An upstream body on the plain path (no response filter applies to the route): undici hands its
 * chunks straight to the client response, with no Readable in between. Forward holds the upstream
 * paused after its head until the runner calls `sendTo` (the answer waits for its audit line).
 */
export interface DirectBody {
  /**
   * Write the body into `sink`, whose head the caller has written, and end it. `done` is called
   * once: with null when the sink has finished, or with the error that cut the stream (the
   * upstream failed, the client left, the request was aborted); the caller then cuts the connection.
   */
  sendTo(sink: ServerResponse, done: (error: Error | null) => void): void;
  /** Drop the body unsent (the answer became a refusal): the upstream exchange is aborted. No-op once sent. */
  discard(): void;
}

/** The upstream answer, as forward received it. */
export interface UpstreamResult {
  readonly status: number;
  /** Response headers to send on, already cleaned of hop-by-hop headers. */
  readonly headers: Record<string, string | string[]>;
  /** The body as a stream, for response filters; null on the plain path and for no body. */
  readonly body: Readable | null;
  /** The body on the plain path (set instead of `body` when no response filter applies), or null. */
  readonly direct: DirectBody | null;
  /** ms from the start of the upstream call to its response headers. */
  readonly latencyMs: number;
}

export type Outcome =
  | { readonly decision: 'allow'; readonly status: number }
  | { readonly decision: 'deny'; readonly reason: ReasonCode; readonly status: number; readonly reasonDetail: string };

/**
 * The state of one request through the pipeline. Stages communicate only through it;
 * per-request state never lives in module-level maps.
 */
export interface RequestContext {
  /** x-request-id, problem body, audit line. */
  readonly requestId: string;
  /** ms, from the injected clock. */
  readonly receivedAt: number;
  /** High-resolution start, for durations. */
  readonly startedAt: bigint;
  /** Pinned at arrival; a reload never changes a request mid-flight. */
  readonly policy: PolicySnapshot;
  readonly request: InboundRequest;
  /** Aborts when the client goes away or the agent is killed (a RequestAbort; explain passes any AbortSignal). */
  readonly signal: RequestSignal;
  readonly log: Logger;
  /** Set by normalize. */
  target: Target | null;
  /** Set by authenticate. */
  principal: Principal | null;
  /** Set by authorize. */
  grant: Grant | null;
  /** Set by authorize for an MCP backend (before it decides, so refusals are audited per message). */
  mcp: McpCall | null;
  /** Set by forward; replaced by response filters. */
  upstream: UpstreamResult | null;
  /** Set by the runner. */
  outcome: Outcome | null;
  /**
   * What the decision changes in shared state, appended by the checks (and the outcome writer)
   * and applied once by the commit step (admission/); `explain` never applies them.
   */
  readonly intents: Intent[];
}

export interface ContextInit {
  readonly requestId: string;
  readonly clock: Clock;
  readonly policy: PolicySnapshot;
  readonly request: InboundRequest;
  readonly signal: RequestSignal;
  readonly log: Logger;
}

/** What a request's stages read of its abort: a client gone, an agent killed. An AbortSignal fits too. */
export interface RequestSignal {
  readonly aborted: boolean;
  readonly reason: unknown;
  addEventListener(type: 'abort', listener: AbortListener, options?: { readonly once?: boolean }): void;
  removeEventListener(type: 'abort', listener: AbortListener): void;
}

/** Called once when the request aborts; an object with `handleEvent` saves a closure. */
export type AbortListener = (() => void) | { handleEvent(): void };

/**
 * The runner's abort for one request: what an AbortController does for it, without one. A
 * controller costs every request an EventTarget (a Map, an AbortSignal, a DOMException path) that
 * showed at about 2 % of the gateway's CPU, and almost no request is ever aborted. Listeners run
 * once, in order, on the first `abort`; added after it, they never run (like AbortSignal's).
 * The kill registry holds the object itself (admission `track`), so no closure is made either.
 */
export class RequestAbort implements RequestSignal {
  #aborted = false;
  #reason: unknown = undefined;
  #listeners: AbortListener[] | null = null;

  get aborted(): boolean {
    return this.#aborted;
  }

  get reason(): unknown {
    return this.#reason;
  }

  abort(reason: unknown): void {
    if (this.#aborted) return;
    this.#aborted = true;
    this.#reason = reason;
    const listeners = this.#listeners;
    this.#listeners = null;
    if (listeners === null) return;
    for (const listener of listeners) {
      try {
        if (typeof listener === 'function') listener();
        else listener.handleEvent();
      } catch (error) {
        // As an EventTarget does: a failing listener neither stops the others nor the aborter.
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }

  addEventListener(_type: 'abort', listener: AbortListener): void {
    if (this.#aborted) return;
    const listeners = (this.#listeners ??= []);
    if (!listeners.includes(listener)) listeners.push(listener);
  }

  removeEventListener(_type: 'abort', listener: AbortListener): void {
    const listeners = this.#listeners;
    if (listeners === null) return;
    const at = listeners.indexOf(listener);
    if (at !== -1) listeners.splice(at, 1);
  }
}

/**
 * A standard AbortSignal that aborts with `signal` (for APIs that need one, such as undici's
 * `request` on the filtered path); `signal` itself when it already is one.
 */
export function abortSignalOf(signal: RequestSignal): AbortSignal {
  if (signal instanceof AbortSignal) return signal;
  const controller = new AbortController();
  if (signal.aborted) controller.abort(signal.reason);
  else signal.addEventListener('abort', () => controller.abort(signal.reason));
  return controller.signal;
}

export function createContext(init: ContextInit): RequestContext {
  return {
    requestId: init.requestId,
    receivedAt: init.clock.now(),
    startedAt: process.hrtime.bigint(),
    policy: init.policy,
    request: init.request,
    signal: init.signal,
    log: init.log,
    target: null,
    principal: null,
    grant: null,
    mcp: null,
    upstream: null,
    outcome: null,
    intents: [],
  };
}

export type StageName = 'normalize' | 'authenticate' | 'admit' | 'authorize' | 'forward';

/**
 * One step of the request path. `run` returns to continue or throws a GatewayError to stop;
 * only the runner writes to the client. A stage may return synchronously (no promise) when it
 * has nothing to wait for, which spares the hot path a microtask per stage.
 */
export interface Stage {
  readonly name: StageName;
  run(ctx: RequestContext): void | Promise<void>;
}
