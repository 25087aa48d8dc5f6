// What the verbs of the `agentgate` CLI share once one runs: the ways to reach the running gateway
// (admin socket) or, without one, its files, and the text helpers. (The verb shape, argument
// parsing and CliError are in verb.ts, which the dispatcher loads before any verb.)
import { userInfo } from 'node:os';
import type { Settings } from '../config.js';
import type { Clock } from '../clock.js';
import type { PolicySnapshot } from '../policy/types.js';
import { adminCall, AdminClientError } from '../admin/client.js';
import { CliError } from './verb.js';

/**
 * agentgate.yaml as `serve` reads it. The settings' and policies' modules (and the YAML parser) are
 * loaded here, on first use: an admin verb given --socket or $AGENTGATE_SOCKET never needs them.
 */
export async function settingsFrom(config: string | undefined): Promise<Settings> {
  const { loadSettings } = await import('../config.js');
  return loadSettings(config === undefined ? {} : { configFile: config });
}

/**
 * The policies of `settings` as `serve` loads them (server.ts `loadPolicy`, without the demo's
 * upstream overrides). Verbs read them here rather than import server.ts, which would load every
 * listener's library (undici, prom-client, http-proxy) into a process that only reads files: the
 * CLI starts in about half the time.
 */
export async function readPolicy(settings: Settings, clock: Clock, version = 1): Promise<PolicySnapshot> {
  const { loadPolicySnapshot } = await import('../policy/index.js');
  return loadPolicySnapshot(settings.policies, { version, clock, defaultTimeoutMs: settings.limits.upstreamTimeoutMs });
}

/** --socket, else $AGENTGATE_SOCKET, else admin.socket of the config. */
export async function socketOf(values: { socket?: string | undefined; config?: string | undefined }): Promise<string> {
  const socket = values.socket ?? process.env.AGENTGATE_SOCKET;
  return socket === undefined || socket === '' ? (await settingsFrom(values.config)).admin.socket : socket;
}

/**
 * Run `viaSocket` against the running gateway (so it sees the change at once); when no gateway
 * answers on the admin socket, run `offline` on the state file and key folder instead.
 */
export async function throughGateway<T>(socket: string, viaSocket: () => Promise<T>, offline: () => Promise<T>): Promise<T> {
  try {
    return await viaSocket();
  } catch (error) {
    if (error instanceof AdminClientError && error.code === 'not_running') return offline();
    throw error;
  }
}

/**
 * The issuer our tokens carry. AGENTGATE_ISSUER_URL is final; otherwise the running gateway is
 * asked (it may have derived its issuer from the port it bound: port 0, the demo), and without a
 * running gateway issuer.url or the configured listen address is used.
 */
export async function issuerOf(settings: Settings, socket: string): Promise<string> {
  if (settings.issuer.urlFrom === 'env') return settings.issuer.url;
  try {
    const response = await adminCall(socket, 'GET', '/status', undefined, 5_000);
    if (response.status === 200 && typeof response.body.issuer === 'string' && response.body.issuer !== '') return response.body.issuer;
  } catch (error) {
    if (!(error instanceof AdminClientError && error.code === 'not_running')) throw error;
  }
  if (settings.issuer.urlFrom === 'listen' && settings.listen.port === 0) {
    throw new CliError('no gateway is running to ask for its issuer, and listen.port is 0 (the issuer is the bound address): start the gateway first, or set issuer.url or AGENTGATE_ISSUER_URL');
  }
  return settings.issuer.url;
}

/** Who is acting, as recorded in the audit trail by admin calls. */
export function operatorName(): string {
  return `${userInfo().username} (pid ${process.pid})`;
}

/** A plain text table: padded columns, two spaces apart, no trailing blanks. */
export function textTable(heads: readonly string[], cells: ReadonlyArray<readonly string[]>): string {
  const widths = heads.map((h, i) => Math.max(h.length, ...cells.map((c) => (c[i] ?? '').length)));
  const line = (values: readonly string[]): string => values.map((v, i) => v.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
  return [line(heads), ...cells.map(line)].join('\n');
}

export function hostFor(address: string): string {
  return address.includes(':') ? `[${address}]` : address;
}
