// The proxy audit line's JSON, written by one template for its fixed fields instead of
// JSON.stringify's generic walk: every proxied request writes one. The text is exactly
// JSON.stringify's for the same record (fields in ProxyRecord's order, an undefined one left
// out); test/telemetry/audit-line.test.ts holds the two equal over hostile values. Other records
// (broker, admin, checkpoints) keep JSON.stringify.
import type { ReasonCode } from '../errors.js';

/**
 * One proxied request's line (`kind: proxy`): what outcome.ts records, in this order. A type
 * alias rather than an interface, so it stays assignable where records are indexed by name.
 */
export type ProxyRecord = {
  readonly time: string;
  readonly kind: 'proxy';
  readonly requestId: string;
  /** `end` on a second line for the same request. */
  readonly phase: 'end' | undefined;
  readonly agent: string | null;
  readonly role: string | null;
  readonly onBehalfOf: string | null;
  readonly jti: string | null;
  readonly backend: string | null;
  readonly method: string;
  readonly path: string | null;
  readonly decision: 'allow' | 'deny';
  readonly reason: ReasonCode | 'none';
  readonly reasonDetail: string | null;
  readonly route: string | null;
  readonly shadow: readonly unknown[] | undefined;
  readonly approvalId: string | undefined;
  readonly rpc: readonly unknown[] | undefined;
  readonly status: number;
  readonly upstreamStatus: number | null;
  readonly durationMs: number;
  readonly remote: string;
};

/** Strings JSON.stringify writes as they are: no quote, backslash, control character or surrogate half. */
const VERBATIM = /^[^"\\\u0000-\u001f\ud800-\udfff]*$/;

/** A string as JSON.stringify writes it. */
function str(value: string): string {
  return VERBATIM.test(value) ? `"${value}"` : JSON.stringify(value);
}

function strOrNull(value: string | null): string {
  return value === null ? 'null' : str(value);
}

/** A number as JSON.stringify writes it (a non-finite one is null). */
function num(value: number | null): string {
  return value !== null && Number.isFinite(value) ? String(value) : 'null';
}

/**
 * JSON text of a proxy line's record (without the chain's `seq` and `prev`): one template for the
 * fields in their order, an absent optional field left out, values escaped only when they need it.
 */
export function writeProxyRecord(r: ProxyRecord): string {
  return `{"time":${str(r.time)},"kind":"proxy","requestId":${str(r.requestId)}${r.phase === undefined ? '' : `,"phase":${str(r.phase)}`},"agent":${strOrNull(r.agent)},"role":${strOrNull(r.role)},"onBehalfOf":${strOrNull(r.onBehalfOf)},"jti":${strOrNull(r.jti)},"backend":${strOrNull(r.backend)},"method":${str(r.method)},"path":${strOrNull(r.path)},"decision":${str(r.decision)},"reason":${str(r.reason)},"reasonDetail":${strOrNull(r.reasonDetail)},"route":${strOrNull(r.route)}${r.shadow === undefined ? '' : `,"shadow":${JSON.stringify(r.shadow)}`}${r.approvalId === undefined ? '' : `,"approvalId":${str(r.approvalId)}`}${r.rpc === undefined ? '' : `,"rpc":${JSON.stringify(r.rpc)}`},"status":${num(r.status)},"upstreamStatus":${num(r.upstreamStatus)},"durationMs":${num(r.durationMs)},"remote":${str(r.remote)}}`;
}
