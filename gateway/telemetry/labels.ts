// Label values shared by the metrics and the modules that describe a request's outcome. A leaf
// apart from metrics.ts, so that the request path's modules (which `agentgate explain` also loads)
// do not load prom-client for two strings.

/** The label value for a backend, agent or role name that is not in the policy. */
export const UNKNOWN_LABEL = 'unknown';
/** The `reason` label of an allowed request. */
export const NO_REASON = 'none';
