// What every verb of the `agentgate` CLI shares: the verb shape, argument parsing, the one-line
// error, and the ways to reach the running gateway (admin socket) or, without one, its files.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { userInfo } from 'node:os';
import { loadSettings, type Settings } from '../config.js';
import type { Clock } from '../clock.js';
import { loadPolicySnapshot } from '../policy/index.js';
import type { PolicySnapshot } from '../policy/types.js';
import { adminCall, AdminClientError } from '../admin/client.js';

/** A failure the CLI reports as one line and an exit code (1 failure, 2 usage). */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

export type Out = { stdout: (text: string) => void; stderr: (text: string) => void };

/** Where a verb is listed in `agentgate --help`. */
export type Section = 'gateway' | 'operator' | 'audit' | 'other';

/**
 * One verb of the CLI. Adding a verb = one object in a `cli/*.ts` verb list plus its entry in
 * `VERBS` (cli/index.ts); `--help`, `help VERB` and the global usage come from these fields.
 */
export interface Verb {
  readonly name: string;
  readonly section: Section;
  /** Synopsis (without "agentgate ") and a one-line summary; one pair per form of the verb. */
  readonly usage: ReadonlyArray<readonly [synopsis: string, summary: string]>;
  /** The verb's own options (the common ones are added by `verbHelp`). */
  readonly options?: ReadonlyArray<readonly [flag: string, meaning: string]>;
  /** Which common options the verb takes beyond --config and --help. */
  readonly takes?: ReadonlyArray<'json' | 'socket'>;
  /** Free text printed after the options. */
  readonly notes?: string;
  run(args: readonly string[], out: Out): Promise<number>;
}

export const COMMON = {
  config: { type: 'string' },
  json: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
} as const satisfies ParseArgsConfig['options'];

/** parseArgs with the common options, strict (an unknown option is a usage error). */
export function parse<T extends NonNullable<ParseArgsConfig['options']>>(args: readonly string[], options: T, positionals = false) {
  return parseArgs({ args: [...args], options: { ...COMMON, ...options }, allowPositionals: positionals, strict: true });
}

export async function settingsFrom(config: string | undefined): Promise<Settings> {
  return loadSettings(config === undefined ? {} : { configFile: config });
}

/**
 * The policies of `settings` as `serve` loads them (server.ts `loadPolicy`, without the demo's
 * upstream overrides). Verbs read them here rather than import server.ts, which would load every
 * listener's library (undici, prom-client, http-proxy) into a process that only reads files: the
 * CLI starts in about half the time.
 */
export async function readPolicy(settings: Settings, clock: Clock, version = 1): Promise<PolicySnapshot> {
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

export function defaultOut(): Out {
  return {
    stdout: (text) => process.stdout.write(`${text}\n`),
    stderr: (text) => process.stderr.write(`${text}\n`),
  };
}
