// agentgate.yaml plus environment overrides -> validated, frozen Settings. Relative paths in the
// file resolve against the file's folder; relative paths in env overrides against the cwd.
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { accessSync, constants, readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { ConfigError } from './errors.js';
import { readSecretFile } from './secret-file.js';
import { loadYamlFile, type RawEntry } from './policy/load.js';
import type { NetworkSet } from './policy/types.js';
import { Checker } from './policy/validate/checker.js';
import { validateCidrs } from './policy/validate/network.js';

export interface Endpoint {
  readonly host: string;
  /** 0 picks a free port; the gateway prints what it bound. */
  readonly port: number;
}

/** The agent port over TLS (`listen.tls`): PEM files checked at load, read again at start. */
export interface ListenTls {
  /** Absolute path of the server certificate (PEM; intermediates may follow the leaf). */
  readonly cert: string;
  /** Absolute path of its unencrypted private key (PEM). */
  readonly key: string;
  /** Absolute path of the CA bundle client certificates must chain to (mutual TLS); null: none asked. */
  readonly ca: string | null;
  readonly minVersion: TlsMinVersion;
}

export const TLS_MIN_VERSIONS = ['TLSv1.2', 'TLSv1.3'] as const;
export type TlsMinVersion = (typeof TLS_MIN_VERSIONS)[number];

/** The agent port: an endpoint, over TLS when `tls` is there. */
export interface ListenEndpoint extends Endpoint {
  readonly tls?: ListenTls;
}

export interface TrustedIssuer {
  readonly issuer: string;
  readonly jwksUri: string;
  readonly audience: string | null;
}

export type StateSettings = { readonly driver: 'memory'; readonly file: string | null } | RedisStateSettings;

/** PEM files for `rediss://` (and Sentinel over TLS), read at start. */
export interface RedisTlsSettings {
  /** Absolute path of the CA bundle the server's certificate must chain to; null: the system's. */
  readonly ca: string | null;
  /** Absolute paths of the client certificate and key (mutual TLS), both or neither. */
  readonly cert: string | null;
  readonly key: string | null;
}

export interface RedisStateSettings {
  readonly driver: 'redis';
  /** redis:// or rediss:// URL; null when Sentinel names the master. */
  readonly url: string | null;
  /** Deadline of every Redis command and health probe (`state.timeout`). */
  readonly timeoutMs: number;
  /** Absolute path of the local snapshot and journal of changes not yet shared (`state.journal`). */
  readonly journal: string;
  /** What happens when Redis lost its data: reseed it from the snapshot at once, or wait for `agentgate state reseed`. */
  readonly reseed: 'auto' | 'manual';
  readonly tls: RedisTlsSettings | null;
  /** Sentinel addresses and the master's name; null: connect to `url` directly. */
  readonly sentinel: { readonly nodes: readonly Endpoint[]; readonly masterName: string } | null;
  /** Credentials for Redis itself (the master and its replicas): `state.username` and `state.passwordFile`; null: none, or the URL's. */
  readonly auth: RedisAuthSettings | null;
  /** Credentials for the sentinels themselves (`state.sentinelUsername`, `state.sentinelPasswordFile`); null: none. */
  readonly sentinelAuth: RedisAuthSettings | null;
}

/** A Redis user and the file holding its password (read at start, never kept in the settings). */
export interface RedisAuthSettings {
  /** ACL user; null: Redis's `default` user (a plain `requirepass`). */
  readonly username: string | null;
  /** Absolute path of the file whose first line is the password. */
  readonly passwordFile: string;
}

export interface Settings {
  /** Absolute path of the config file read (or the path that would have been read). */
  readonly configFile: string;
  /** Folder relative paths were resolved against. */
  readonly baseDir: string;
  readonly listen: ListenEndpoint;
  readonly metrics: Endpoint;
  readonly admin: { readonly socket: string };
  /** Absolute path of the policies folder. */
  readonly policies: string;
  readonly issuer: {
    /**
     * The `iss` of our tokens and the base of the broker's endpoints. With `urlFrom: 'listen'`
     * (no issuer.url, no AGENTGATE_ISSUER_URL) this is `listen` as configured, and the running
     * gateway replaces it with the address it actually bound (port 0, a moved port).
     */
    readonly url: string;
    readonly urlFrom: 'env' | 'config' | 'listen';
    /** Absolute path of the signing key folder. */
    readonly keys: string;
    readonly alg: 'EdDSA' | 'ES256';
    readonly rotateSeconds: number;
  };
  readonly trust: readonly TrustedIssuer[];
  readonly state: StateSettings;
  readonly audit: {
    readonly file: string;
    /** `batch`: each batch of lines synced as it is written (O_DSYNC; power loss); `off`: survives process crashes only. */
    readonly fsync: 'batch' | 'off';
    /** A signed checkpoint every this many lines... */
    readonly checkpointLines: number;
    /** ...or this often while lines arrive, and at shutdown. */
    readonly checkpointIntervalMs: number;
  };
  readonly limits: {
    readonly maxBodyBytes: number;
    readonly upstreamTimeoutMs: number;
    readonly maxHeaderBytes: number;
    /** Largest response body a mask applies to (after decoding); larger is refused. */
    readonly maxMaskedBodyBytes: number;
    /** Longest pause inside a request body the gateway reads itself (checked or chunked); 408 after. */
    readonly bodyIdleTimeoutMs: number;
    /** Longest time to receive a whole request, head and body (node's requestTimeout); 408 after. */
    readonly requestTimeoutMs: number;
    /** Longest time to receive a request head (node's headersTimeout); 408 after. */
    readonly headersTimeoutMs: number;
  };
  /** Proxies whose `X-Forwarded-For` names the caller for network allowlists; null: none. */
  readonly trustedProxies: NetworkSet | null;
  /** The JSON log on stdout: `log.level`, or AGENTGATE_LOG_LEVEL. */
  readonly log: { readonly level: LogLevelSetting };
  /**
   * `workers`: processes serving the agent port. `setting` is what was asked (`auto` is
   * os.availableParallelism()), `count` what runs; 1 is one process with no cluster code at all.
   */
  readonly workers: { readonly setting: 'auto' | number; readonly count: number };
}

/** The most worker processes `workers: N` accepts. */
export const MAX_WORKERS = 256;

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error', 'silent'] as const;
export type LogLevelSetting = (typeof LOG_LEVELS)[number];

const DEFAULT_CONFIG = 'agentgate.yaml';
const HOST = /^[A-Za-z0-9.:[\]-]+$/;
const REDIS_URL = /^rediss?:\/\/\S+$/;
const TOP_KEYS = ['listen', 'metrics', 'admin', 'policies', 'issuer', 'trust', 'state', 'audit', 'limits', 'trustedProxies', 'log', 'workers'];

/** The demo defaults of DESIGN §2, used for every key the file leaves out. */
const DEFAULTS = {
  host: '127.0.0.1',
  listenPort: 8080,
  metricsPort: 9464,
  socket: './run/agentgate.sock',
  policies: './policies',
  keys: './run/keys',
  rotateMs: 24 * 3_600_000,
  stateFile: './run/state.json',
  stateJournal: './run/state-journal.json',
  stateTimeoutMs: 250,
  auditFile: './run/audit.jsonl',
  checkpointLines: 1000,
  checkpointIntervalMs: 1000,
  maxBodyBytes: 1_048_576,
  upstreamTimeoutMs: 30_000,
  maxHeaderBytes: 16_384,
  bodyIdleTimeoutMs: 10_000,
  requestTimeoutMs: 300_000,
  headersTimeoutMs: 15_000,
  maxMaskedBodyBytes: 8 * 1_048_576,
} as const;

export interface LoadSettingsOptions {
  /** Path of the config file (`--config`); relative to `cwd`. */
  readonly configFile?: string;
  /** Environment to read AGENTGATE_* from; defaults to process.env. */
  readonly env?: NodeJS.ProcessEnv;
  /** Folder a relative config path or env path resolves against; defaults to process.cwd(). */
  readonly cwd?: string;
}

/**
 * Read and validate agentgate.yaml plus env overrides (AGENTGATE_CONFIG, AGENTGATE_LISTEN_PORT,
 * AGENTGATE_METRICS_PORT, AGENTGATE_ADMIN_SOCKET, AGENTGATE_STATE_FILE, AGENTGATE_REDIS_URL,
 * AGENTGATE_ISSUER_URL, AGENTGATE_LOG_LEVEL; an
 * empty variable counts as unset). Throws ConfigError with every problem found.
 */
export async function loadSettings(options: LoadSettingsOptions = {}): Promise<Settings> {
  const env = options.env ?? process.env;
  const cwd = options.cwd ?? process.cwd();
  const fromEnv = (name: string): string | null => {
    const value = env[name];
    return value === undefined || value === '' ? null : value;
  };
  const configFile = resolvePath(cwd, options.configFile ?? fromEnv('AGENTGATE_CONFIG') ?? DEFAULT_CONFIG);
  const baseDir = dirname(configFile);
  const problems: string[] = [];
  const loaded = await loadYamlFile(configFile, problems);
  if (loaded.missing) throw new ConfigError([`${loaded.file}: no such file (pass --config or set AGENTGATE_CONFIG)`]);

  const c = new Checker();
  c.problems.push(...problems);
  const top = loaded.root === null ? null : c.map(loaded.root, '', TOP_KEYS);
  const section = (key: string, allowed: readonly string[]): ReadonlyMap<string, RawEntry> | null => c.map(top?.get(key)?.value, key, allowed);

  let tlsOk = true;
  const endpoint = (key: 'listen' | 'metrics', defaultPort: number, envName: string): ListenEndpoint | null => {
    // Only the agent port speaks TLS: the metrics port and the admin socket stay as they are.
    const keys = section(key, key === 'listen' ? ['host', 'port', 'tls'] : ['host', 'port']);
    const host = c.string(keys?.get('host'), `${key}.host`, { pattern: HOST, patternHelp: 'is not a host name or IP address' }) ?? DEFAULTS.host;
    let port = keys?.has('port') ? c.integer(keys.get('port'), `${key}.port`, 0, 65535) : defaultPort;
    const override = fromEnv(envName);
    if (override !== null) {
      port = /^\d{1,5}$/.test(override) && Number(override) <= 65535 ? Number(override) : null;
      if (port === null) c.problems.push(`${envName}: "${override}" is not a port (a whole number from 0 to 65535; 0 picks a free one)`);
    }
    const tlsEntry = keys?.get('tls');
    const tls = tlsEntry === undefined ? undefined : listenTls(c, tlsEntry, baseDir);
    if (tls === null) tlsOk = false;
    if (port === null) return null;
    return Object.freeze(tls === undefined || tls === null ? { host, port } : { host, port, tls });
  };
  const listen = endpoint('listen', DEFAULTS.listenPort, 'AGENTGATE_LISTEN_PORT');
  const metrics = endpoint('metrics', DEFAULTS.metricsPort, 'AGENTGATE_METRICS_PORT');

  const adminKeys = section('admin', ['socket']);
  const socketFromFile = c.string(adminKeys?.get('socket'), 'admin.socket');
  const socketFromEnv = fromEnv('AGENTGATE_ADMIN_SOCKET');
  const socket = socketFromEnv !== null ? resolvePath(cwd, socketFromEnv) : resolvePath(baseDir, socketFromFile ?? DEFAULTS.socket);

  const policies = c.string(top?.get('policies'), 'policies') ?? DEFAULTS.policies;

  const issuerKeys = section('issuer', ['url', 'keys', 'alg', 'rotate']);
  const urlEntry = issuerKeys?.get('url');
  const issuerFromFile = c.string(urlEntry, 'issuer.url');
  if (urlEntry !== undefined && issuerFromFile !== null && !isHttpUrl(issuerFromFile)) {
    c.add(urlEntry.value.at, 'issuer.url', `"${issuerFromFile}" is not an http(s) URL without query, fragment or credentials`);
  }
  const issuerFromEnv = fromEnv('AGENTGATE_ISSUER_URL');
  if (issuerFromEnv !== null && !isHttpUrl(issuerFromEnv)) c.problems.push(`AGENTGATE_ISSUER_URL: "${issuerFromEnv}" is not an http(s) URL without query, fragment or credentials`);
  const urlFrom = issuerFromEnv !== null ? 'env' : issuerFromFile !== null ? 'config' : 'listen';
  const keysDir = c.string(issuerKeys?.get('keys'), 'issuer.keys') ?? DEFAULTS.keys;
  const alg = c.oneOf(issuerKeys?.get('alg'), 'issuer.alg', ['EdDSA', 'ES256'], 'a signing algorithm') ?? 'EdDSA';
  const rotateMs = issuerKeys?.has('rotate') ? c.duration(issuerKeys.get('rotate'), 'issuer.rotate', { minMs: 60_000 }) : DEFAULTS.rotateMs;

  const trust: TrustedIssuer[] = [];
  const seenIssuers = new Map<string, number>();
  for (const [i, node] of (c.list(top?.get('trust'), 'trust') ?? []).entries()) {
    const path = `trust[${i}]`;
    const keys = c.map(node, path, ['issuer', 'jwksUri', 'audience']);
    if (keys === null) continue;
    const issuer = c.string(c.required(keys, 'issuer', path, node.at), `${path}.issuer`);
    const jwksEntry = c.required(keys, 'jwksUri', path, node.at);
    const jwksUri = c.string(jwksEntry, `${path}.jwksUri`);
    if (jwksEntry !== undefined && jwksUri !== null && !isHttpUrl(jwksUri)) c.add(jwksEntry.value.at, `${path}.jwksUri`, `"${jwksUri}" is not an http(s) URL`);
    const audience = c.string(keys.get('audience'), `${path}.audience`);
    if (issuer === null || jwksUri === null) continue;
    const first = seenIssuers.get(issuer);
    if (first !== undefined) c.add(keys.get('issuer')?.value.at ?? node.at, `${path}.issuer`, `"${issuer}" is already trusted by trust[${first}]`);
    seenIssuers.set(issuer, first ?? i);
    trust.push(Object.freeze({ issuer, jwksUri, audience }));
  }

  const state = stateSettings(c, top?.get('state'), baseDir, cwd, fromEnv);

  const auditKeys = section('audit', ['file', 'fsync', 'checkpointLines', 'checkpointInterval']);
  const auditFile = c.string(auditKeys?.get('file'), 'audit.file') ?? DEFAULTS.auditFile;
  const auditFsync = auditKeys?.has('fsync') ? c.oneOf(auditKeys.get('fsync'), 'audit.fsync', ['batch', 'off'], 'an fsync mode') : 'batch';
  const checkpointLines = auditKeys?.has('checkpointLines') ? c.integer(auditKeys.get('checkpointLines'), 'audit.checkpointLines', 1, 1_000_000) : DEFAULTS.checkpointLines;
  const checkpointIntervalMs = auditKeys?.has('checkpointInterval')
    ? c.duration(auditKeys.get('checkpointInterval'), 'audit.checkpointInterval', { minMs: 10, maxMs: 3_600_000 })
    : DEFAULTS.checkpointIntervalMs;

  const limitKeys = section('limits', ['maxBodyBytes', 'upstreamTimeout', 'maxHeaderBytes', 'maxMaskedBodyBytes', 'bodyIdleTimeout', 'requestTimeout', 'headersTimeout']);
  const bodyIdleTimeoutMs = limitKeys?.has('bodyIdleTimeout') ? c.duration(limitKeys.get('bodyIdleTimeout'), 'limits.bodyIdleTimeout', { minMs: 100, maxMs: 600_000 }) : DEFAULTS.bodyIdleTimeoutMs;
  const headersTimeoutMs = limitKeys?.has('headersTimeout') ? c.duration(limitKeys.get('headersTimeout'), 'limits.headersTimeout', { minMs: 1000, maxMs: 600_000 }) : DEFAULTS.headersTimeoutMs;
  const requestTimeoutMs = limitKeys?.has('requestTimeout') ? c.duration(limitKeys.get('requestTimeout'), 'limits.requestTimeout', { minMs: 1000, maxMs: 86_400_000 }) : DEFAULTS.requestTimeoutMs;
  if (headersTimeoutMs !== null && requestTimeoutMs !== null && requestTimeoutMs < headersTimeoutMs) {
    c.add(limitKeys?.get('requestTimeout')?.value.at ?? limitKeys?.get('headersTimeout')?.value.at ?? { file: '', line: 0 }, 'limits.requestTimeout', `must be at least limits.headersTimeout (${headersTimeoutMs / 1000}s): the head is part of the request`);
  }
  const maxBodyBytes = limitKeys?.has('maxBodyBytes') ? c.size(limitKeys.get('maxBodyBytes'), 'limits.maxBodyBytes') : DEFAULTS.maxBodyBytes;
  const upstreamTimeoutMs = limitKeys?.has('upstreamTimeout')
    ? c.duration(limitKeys.get('upstreamTimeout'), 'limits.upstreamTimeout', { minMs: 1, maxMs: 3_600_000 })
    : DEFAULTS.upstreamTimeoutMs;
  const maxHeaderBytes = limitKeys?.has('maxHeaderBytes') ? c.size(limitKeys.get('maxHeaderBytes'), 'limits.maxHeaderBytes', { minBytes: 1024 }) : DEFAULTS.maxHeaderBytes;
  const maxMaskedBodyBytes = limitKeys?.has('maxMaskedBodyBytes') ? c.size(limitKeys.get('maxMaskedBodyBytes'), 'limits.maxMaskedBodyBytes', { minBytes: 1024 }) : DEFAULTS.maxMaskedBodyBytes;
  const proxiesEntry = top?.get('trustedProxies');
  const trustedProxies = proxiesEntry === undefined || (proxiesEntry.value.kind === 'seq' && proxiesEntry.value.items.length === 0) ? null : validateCidrs(c, proxiesEntry, 'trustedProxies');

  const logKeys = section('log', ['level']);
  let logLevel: LogLevelSetting | null = c.oneOf(logKeys?.get('level'), 'log.level', LOG_LEVELS, 'a log level') ?? 'info';
  const levelFromEnv = fromEnv('AGENTGATE_LOG_LEVEL');
  if (levelFromEnv !== null) {
    logLevel = (LOG_LEVELS as readonly string[]).includes(levelFromEnv) ? (levelFromEnv as LogLevelSetting) : null;
    if (logLevel === null) c.problems.push(`AGENTGATE_LOG_LEVEL: "${levelFromEnv}" is not a log level (allowed: ${LOG_LEVELS.join(', ')})`);
  }

  const workers = workersSetting(c, top?.get('workers'), fromEnv('AGENTGATE_WORKERS'));

  c.fail();
  if (!tlsOk || logLevel === null || workers === null || listen === null || metrics === null || state === null || rotateMs === null || maxBodyBytes === null || upstreamTimeoutMs === null || maxHeaderBytes === null || maxMaskedBodyBytes === null || bodyIdleTimeoutMs === null || headersTimeoutMs === null || requestTimeoutMs === null || auditFsync === null || checkpointLines === null || checkpointIntervalMs === null) {
    // Every null above records a problem, so c.fail() has thrown; this keeps the types honest.
    throw new ConfigError([`${loaded.file}: invalid configuration`]);
  }
  return Object.freeze({
    configFile,
    baseDir,
    listen,
    metrics,
    admin: Object.freeze({ socket }),
    policies: resolvePath(baseDir, policies),
    issuer: Object.freeze({ url: issuerFromEnv ?? issuerFromFile ?? issuerForAddress(listen.tls === undefined ? 'http' : 'https', listen.host, listen.port), urlFrom, keys: resolvePath(baseDir, keysDir), alg, rotateSeconds: Math.floor(rotateMs / 1000) }),
    trust: Object.freeze(trust),
    state,
    audit: Object.freeze({ file: resolvePath(baseDir, auditFile), fsync: auditFsync, checkpointLines, checkpointIntervalMs }),
    limits: Object.freeze({ maxBodyBytes, upstreamTimeoutMs, maxHeaderBytes, maxMaskedBodyBytes, bodyIdleTimeoutMs, requestTimeoutMs, headersTimeoutMs }),
    trustedProxies,
    log: Object.freeze({ level: logLevel }),
    workers,
  });
}

/** `workers: auto | N` (AGENTGATE_WORKERS overrides it); 1 when absent. */
function workersSetting(c: Checker, entry: RawEntry | undefined, fromEnv: string | null): Settings['workers'] | null {
  const resolved = (setting: 'auto' | number): Settings['workers'] => Object.freeze({ setting, count: setting === 'auto' ? Math.min(MAX_WORKERS, availableParallelism()) : setting });
  if (fromEnv !== null) {
    if (fromEnv === 'auto') return resolved('auto');
    const n = /^\d{1,4}$/.test(fromEnv) ? Number(fromEnv) : 0;
    if (n >= 1 && n <= MAX_WORKERS) return resolved(n);
    c.problems.push(`AGENTGATE_WORKERS: "${fromEnv}" is not a worker count (auto, or a whole number from 1 to ${MAX_WORKERS})`);
    return null;
  }
  if (entry === undefined) return resolved(1);
  const node = entry.value;
  if (node.kind === 'scalar' && node.value === 'auto') return resolved('auto');
  if (node.kind === 'scalar' && typeof node.value === 'number' && Number.isInteger(node.value) && node.value >= 1 && node.value <= MAX_WORKERS) return resolved(node.value);
  c.add(node.at, 'workers', `expected auto or a whole number from 1 to ${MAX_WORKERS}, got ${node.kind === 'scalar' ? JSON.stringify(node.value) : node.kind}`);
  return null;
}

/**
 * `state`: `{ driver: memory, file }` (file defaults to ./run/state.json; an empty `file:` keeps
 * state in memory only) or `{ driver: redis, url | sentinels + masterName, timeout, journal,
 * reseed, tls }`. AGENTGATE_REDIS_URL switches to redis (and replaces `url`).
 */
function stateSettings(
  c: Checker,
  entry: RawEntry | undefined,
  baseDir: string,
  cwd: string,
  fromEnv: (name: string) => string | null,
): StateSettings | null {
  const keys = c.map(entry?.value, 'state', ['driver', 'file', ...REDIS_KEYS]);
  const driver = keys?.has('driver') ? c.oneOf(keys.get('driver'), 'state.driver', ['memory', 'redis'], 'a state driver') : 'memory';
  const redisFromEnv = fromEnv('AGENTGATE_REDIS_URL');
  if (redisFromEnv !== null && !REDIS_URL.test(redisFromEnv)) {
    c.problems.push(`AGENTGATE_REDIS_URL: "${redisFromEnv}" is not a redis:// or rediss:// URL`);
    return null;
  }
  if (redisFromEnv !== null) return redisSettings(c, keys, entry, baseDir, redisFromEnv);
  if (driver === null) return null;
  if (driver === 'redis') {
    const stray = keys?.get('file');
    if (stray !== undefined) c.add(stray.at, 'state.file', 'is not used by driver redis (redis takes url, or sentinels and masterName)');
    return redisSettings(c, keys, entry, baseDir, null);
  }
  for (const key of REDIS_KEYS) {
    const stray = keys?.get(key);
    if (stray !== undefined) c.add(stray.at, `state.${key}`, 'is not used by driver memory (memory takes file)');
  }
  const fileFromEnv = fromEnv('AGENTGATE_STATE_FILE');
  if (fileFromEnv !== null) return Object.freeze({ driver: 'memory', file: resolvePath(cwd, fileFromEnv) });
  const fileEntry = keys?.get('file');
  if (fileEntry === undefined) return Object.freeze({ driver: 'memory', file: resolvePath(baseDir, DEFAULTS.stateFile) });
  if (fileEntry.value.kind === 'scalar' && fileEntry.value.value === null) return Object.freeze({ driver: 'memory', file: null });
  const file = c.string(fileEntry, 'state.file');
  return file === null ? null : Object.freeze({ driver: 'memory', file: resolvePath(baseDir, file) });
}

/**
 * The issuer URL for a gateway reached at `host:port`: a wildcard address (0.0.0.0, ::) is
 * reached on this machine through loopback, so it becomes 127.0.0.1 or [::1].
 */
export function issuerForAddress(scheme: 'http' | 'https', host: string, port: number): string {
  const reachable = host === '0.0.0.0' || host === '' ? '127.0.0.1' : host === '::' || host === '[::]' ? '::1' : host;
  const bracketed = reachable.includes(':') && !reachable.startsWith('[') ? `[${reachable}]` : reachable;
  const defaultPort = scheme === 'https' ? 443 : 80;
  return `${scheme}://${bracketed}${port === defaultPort ? '' : `:${port}`}`;
}

/** Whether `host` (a URL hostname or listen.host) names this machine's loopback. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/**
 * Problems `agentgate check` reports as warnings (the configuration still loads): an explicit
 * issuer that names a loopback address other than the one the gateway listens on, so every token
 * and the broker's metadata would point at a port nobody answers.
 */
export function settingsWarnings(settings: Settings): string[] {
  const warnings: string[] = [];
  if (settings.issuer.urlFrom !== 'listen' && isLoopbackHost(settings.listen.host)) {
    const url = new URL(settings.issuer.url);
    const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
    const source = settings.issuer.urlFrom === 'env' ? 'AGENTGATE_ISSUER_URL' : 'issuer.url';
    if (isLoopbackHost(url.hostname) && (port !== settings.listen.port || settings.listen.port === 0)) {
      warnings.push(
        `${source} ${settings.issuer.url} does not match listen ${settings.listen.host}:${settings.listen.port}: tokens and the broker's metadata will name an address this gateway does not answer on (leave issuer.url out to derive it from the bound address)`,
      );
    }
  }
  warnings.push(...tlsWarnings(settings));
  return warnings;
}

const REDIS_KEYS = ['url', 'timeout', 'journal', 'reseed', 'tls', 'sentinels', 'masterName', 'username', 'passwordFile', 'sentinelUsername', 'sentinelPasswordFile'] as const;
/** A Redis ACL user name as `AUTH` takes it: printable ASCII, no space. */
const REDIS_USERNAME = /^[\x21-\x7e]{1,128}$/;
const MASTER_NAME = /^[A-Za-z0-9._-]{1,64}$/;
const SENTINEL = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/;

function redisSettings(c: Checker, keys: ReadonlyMap<string, RawEntry> | null, entry: RawEntry | undefined, baseDir: string, urlFromEnv: string | null): RedisStateSettings | null {
  const at = entry?.at ?? { file: '', line: 0 };
  const timeoutMs = keys?.has('timeout') ? c.duration(keys.get('timeout'), 'state.timeout', { minMs: 10, maxMs: 10_000 }) : DEFAULTS.stateTimeoutMs;
  const journal = keys?.has('journal') ? c.string(keys.get('journal'), 'state.journal') : DEFAULTS.stateJournal;
  const reseed = keys?.has('reseed') ? c.oneOf(keys.get('reseed'), 'state.reseed', ['auto', 'manual'], 'a reseed mode') : 'auto';
  const tls = keys?.has('tls') ? tlsSettings(c, keys.get('tls'), baseDir) : null;

  const sentinelsEntry = keys?.get('sentinels');
  const masterEntry = keys?.get('masterName');
  let sentinel: RedisStateSettings['sentinel'] = null;
  let sentinelOk = true;
  if (sentinelsEntry !== undefined || masterEntry !== undefined) {
    const nodes: Endpoint[] = [];
    const items = sentinelsEntry === undefined ? null : c.list(sentinelsEntry, 'state.sentinels');
    if (sentinelsEntry === undefined) {
      c.add(masterEntry?.at ?? at, 'state.sentinels', 'is required with state.masterName (a list of host:port)');
      sentinelOk = false;
    } else if (items !== null && items.length === 0) {
      c.add(sentinelsEntry.at, 'state.sentinels', 'must name at least one sentinel (host:port)');
      sentinelOk = false;
    }
    for (const [i, item] of (items ?? []).entries()) {
      const text = item.kind === 'scalar' && typeof item.value === 'string' ? item.value : null;
      const m = text === null ? null : SENTINEL.exec(text);
      const port = m === null ? NaN : Number(m[3]);
      if (m === null || !(port >= 1 && port <= 65535)) {
        c.add(item.at, `state.sentinels[${i}]`, `${text === null ? 'expected a string' : `"${text}" is not host:port`} (e.g. "sentinel-1:26379")`);
        sentinelOk = false;
      } else nodes.push(Object.freeze({ host: m[1] ?? m[2] ?? '', port }));
    }
    const masterName = masterEntry === undefined ? null : c.string(masterEntry, 'state.masterName', { pattern: MASTER_NAME, patternHelp: 'is not a Sentinel master name (letters, digits, . _ -)' });
    if (masterEntry === undefined) {
      c.add(sentinelsEntry?.at ?? at, 'state.masterName', 'is required with state.sentinels (the name Sentinel monitors)');
      sentinelOk = false;
    }
    if (sentinelOk && masterName !== null) sentinel = Object.freeze({ nodes: Object.freeze(nodes), masterName });
    else sentinelOk = false;
  }
  let url: string | null = null;
  const urlEntry = keys?.get('url');
  if (urlFromEnv !== null) url = urlFromEnv;
  else if (urlEntry !== undefined) url = c.string(urlEntry, 'state.url', { pattern: REDIS_URL, patternHelp: 'is not a redis:// or rediss:// URL' });
  else if (sentinelsEntry === undefined && masterEntry === undefined) {
    c.required(keys, 'url', 'state', at);
    return null;
  }
  if (url !== null && (sentinelsEntry !== undefined || masterEntry !== undefined)) {
    c.add(urlEntry?.at ?? at, urlFromEnv !== null ? 'AGENTGATE_REDIS_URL' : 'state.url', 'cannot be combined with state.sentinels (Sentinel names the master; use state.tls for TLS)');
    return null;
  }
  if (url !== null && tls !== null && url.startsWith('redis://')) {
    c.add(keys?.get('tls')?.at ?? at, 'state.tls', 'is set but state.url is redis:// (use rediss:// for TLS)');
    return null;
  }
  const auth = authSettings(c, keys, 'username', 'passwordFile', baseDir);
  const sentinelAuth = authSettings(c, keys, 'sentinelUsername', 'sentinelPasswordFile', baseDir);
  if (sentinelAuth !== false && sentinelAuth !== null && sentinelsEntry === undefined) {
    c.add(keys?.get('sentinelPasswordFile')?.at ?? at, 'state.sentinelPasswordFile', 'is only used with state.sentinels (the password the sentinels themselves ask for)');
    return null;
  }
  if (url !== null && auth !== false && auth !== null && /^rediss?:\/\/[^/@]*@/.test(url)) {
    c.add(keys?.get('passwordFile')?.at ?? at, 'state.passwordFile', `cannot be combined with credentials in ${urlFromEnv !== null ? 'AGENTGATE_REDIS_URL' : 'state.url'} (keep the password in one place)`);
    return null;
  }
  if (timeoutMs === null || journal === null || reseed === null || !sentinelOk || (url === null && sentinel === null)) return null;
  if (keys?.has('tls') && tls === null) return null;
  if (auth === false || sentinelAuth === false) return null;
  return Object.freeze({ driver: 'redis', url, timeoutMs, journal: resolvePath(baseDir, journal), reseed, tls, sentinel, auth, sentinelAuth });
}

/**
 * `state.username` + `state.passwordFile` (or the sentinel pair): null when neither is set, false
 * when they are wrong (problems added). The password file is read here only to check it holds one
 * line of printable text; the password itself is read again at start and never kept in settings.
 */
function authSettings(c: Checker, keys: ReadonlyMap<string, RawEntry> | null, userKey: 'username' | 'sentinelUsername', fileKey: 'passwordFile' | 'sentinelPasswordFile', baseDir: string): RedisAuthSettings | null | false {
  const userEntry = keys?.get(userKey);
  const fileEntry = keys?.get(fileKey);
  if (userEntry === undefined && fileEntry === undefined) return null;
  const username = userEntry === undefined ? null : c.string(userEntry, `state.${userKey}`, { pattern: REDIS_USERNAME, patternHelp: 'is not a Redis user name (1 to 128 printable characters, no space)' });
  if (fileEntry === undefined) {
    c.add(userEntry?.at ?? { file: '', line: 0 }, `state.${fileKey}`, `is required with state.${userKey} (a file holding the user's password)`);
    return false;
  }
  const text = c.string(fileEntry, `state.${fileKey}`);
  if (text === null || (userEntry !== undefined && username === null)) return false;
  const path = resolvePath(baseDir, text);
  try {
    readSecretFile(path);
  } catch (error) {
    c.add(fileEntry.at, `state.${fileKey}`, (error as Error).message);
    return false;
  }
  return Object.freeze({ username, passwordFile: path });
}

function tlsSettings(c: Checker, entry: RawEntry | undefined, baseDir: string): RedisTlsSettings | null {
  const keys = c.map(entry?.value, 'state.tls', ['ca', 'cert', 'key']);
  if (keys === null) return null;
  let ok = true;
  const file = (key: 'ca' | 'cert' | 'key'): string | null => {
    const item = keys.get(key);
    if (item === undefined) return null;
    const path = readablePem(c, item, `state.tls.${key}`, baseDir, item.at);
    if (path === null) ok = false;
    return path;
  };
  const ca = file('ca');
  const cert = file('cert');
  const key = file('key');
  if ((cert === null) !== (key === null) && ok) {
    c.add(entry?.at ?? { file: '', line: 0 }, 'state.tls', 'cert and key go together (client certificate and its private key)');
    ok = false;
  }
  return ok ? Object.freeze({ ca, cert, key }) : null;
}

/** The path a PEM-file setting names, resolved and readable; null (with the problem added) when not. */
function readablePem(c: Checker, item: RawEntry, where: string, baseDir: string, at: RawEntry['at']): string | null {
  const text = c.string(item, where);
  if (text === null) return null;
  const path = resolvePath(baseDir, text);
  try {
    accessSync(path, constants.R_OK);
  } catch {
    c.add(at, where, `cannot read ${path} (a PEM file)`);
    return null;
  }
  return path;
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** The certificates of a PEM file, leaf first; throws an Error whose message says what is wrong. */
function readCertificates(path: string): X509Certificate[] {
  const text = readFileSync(path, 'utf8');
  const blocks = text.match(PEM_CERTIFICATE) ?? [];
  if (blocks.length === 0) throw new Error(`${path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
  return blocks.map((block, i) => {
    try {
      return new X509Certificate(block);
    } catch {
      throw new Error(`${path}: certificate ${i + 1} of ${blocks.length} is not a valid X.509 certificate`);
    }
  });
}

function readPrivateKey(path: string): KeyObject {
  const text = readFileSync(path, 'utf8');
  if (/-----BEGIN (?:ENCRYPTED PRIVATE KEY|[A-Z ]+PRIVATE KEY-----\r?\nProc-Type: 4,ENCRYPTED)/.test(text)) {
    throw new Error(`${path} is an encrypted private key (the gateway reads an unencrypted PEM key; protect it with file permissions)`);
  }
  try {
    return createPrivateKey({ key: text, format: 'pem' });
  } catch {
    throw new Error(`${path} holds no PEM private key (-----BEGIN PRIVATE KEY-----)`);
  }
}

/**
 * `listen.tls: { cert, key, ca, minVersion }`: each file readable and PEM, the key the
 * certificate's own, and TLS 1.2 at the least. `ca` asks every client for a certificate that
 * chains to it (mutual TLS).
 */
function listenTls(c: Checker, entry: RawEntry, baseDir: string): ListenTls | null {
  const keys = c.map(entry.value, 'listen.tls', ['cert', 'key', 'ca', 'minVersion']);
  if (keys === null) return null;
  let ok = true;
  const file = (name: 'cert' | 'key' | 'ca'): string | null => {
    const item = name === 'ca' ? keys.get(name) : c.required(keys, name, 'listen.tls', entry.value.at);
    if (item === undefined) {
      if (name !== 'ca') ok = false;
      return null;
    }
    const path = readablePem(c, item, `listen.tls.${name}`, baseDir, item.value.at);
    if (path === null) ok = false;
    return path;
  };
  const parsed = <T>(name: 'cert' | 'key' | 'ca', path: string | null, read: (path: string) => T): T | null => {
    if (path === null) return null;
    try {
      return read(path);
    } catch (error) {
      c.add(keys.get(name)?.value.at ?? entry.value.at, `listen.tls.${name}`, (error as Error).message);
      ok = false;
      return null;
    }
  };
  const certPath = file('cert');
  const keyPath = file('key');
  const caPath = file('ca');
  const chain = parsed('cert', certPath, readCertificates);
  const key = parsed('key', keyPath, readPrivateKey);
  parsed('ca', caPath, readCertificates);
  const leaf = chain?.[0];
  if (leaf !== undefined && key !== null && !leaf.checkPrivateKey(key)) {
    c.add(keys.get('key')?.value.at ?? entry.value.at, 'listen.tls.key', `${keyPath ?? ''} is not the private key of the certificate in ${certPath ?? ''}`);
    ok = false;
  }
  const minVersion = keys.has('minVersion') ? c.oneOf(keys.get('minVersion'), 'listen.tls.minVersion', TLS_MIN_VERSIONS, 'a TLS version this gateway accepts') : 'TLSv1.2';
  if (!ok || minVersion === null || certPath === null || keyPath === null) return null;
  return Object.freeze({ cert: certPath, key: keyPath, ca: caPath, minVersion });
}

/** Problems with the files of a `listen.tls` loaded earlier (a reload reads them again). */
export function listenTlsProblems(tls: ListenTls): string[] {
  try {
    const leaf = readCertificates(tls.cert)[0];
    const key = readPrivateKey(tls.key);
    if (tls.ca !== null) readCertificates(tls.ca);
    if (leaf !== undefined && !leaf.checkPrivateKey(key)) return [`listen.tls.key: ${tls.key} is not the private key of the certificate in ${tls.cert}`];
    return [];
  } catch (error) {
    return [`listen.tls: ${(error as Error).message}`];
  }
}

/** node:https options for `listen.tls`, read from disk now (at start, and again on reload). */
export function tlsServerOptions(tls: ListenTls): {
  cert: Buffer;
  key: Buffer;
  ca?: Buffer;
  minVersion: TlsMinVersion;
  requestCert: boolean;
  rejectUnauthorized: boolean;
} {
  const ca = tls.ca === null ? undefined : readFileSync(tls.ca);
  return {
    cert: readFileSync(tls.cert),
    key: readFileSync(tls.key),
    ...(ca === undefined ? {} : { ca }),
    minVersion: tls.minVersion,
    // With a CA, a client without a certificate that chains to it gets no TLS session at all.
    requestCert: ca !== undefined,
    rejectUnauthorized: ca !== undefined,
  };
}

/** What `check` says about a valid `listen.tls`: validity dates, and the issuer's host and scheme. */
function tlsWarnings(settings: Settings): string[] {
  const tls = settings.listen.tls;
  const issuer = new URL(settings.issuer.url);
  if (tls === undefined) {
    const ok = issuer.protocol !== 'https:' || !isLoopbackHost(issuer.hostname) || !isLoopbackHost(settings.listen.host);
    return ok ? [] : [`issuer.url ${settings.issuer.url} is https but the agent port speaks plain HTTP: set listen.tls { cert, key } or put a TLS terminator in front`];
  }
  const warnings: string[] = [];
  if (issuer.protocol === 'http:') {
    warnings.push(`${settings.issuer.urlFrom === 'env' ? 'AGENTGATE_ISSUER_URL' : 'issuer.url'} ${settings.issuer.url} is http but listen.tls is set: tokens and the broker's metadata will name a scheme this gateway does not answer`);
  }
  let leaf: X509Certificate | undefined;
  try {
    leaf = readCertificates(tls.cert)[0];
  } catch (error) {
    return [...warnings, `listen.tls.cert: ${(error as Error).message}`];
  }
  if (leaf === undefined) return warnings;
  const now = Date.now();
  const notAfter = Date.parse(leaf.validTo);
  const notBefore = Date.parse(leaf.validFrom);
  const days = Math.floor((notAfter - now) / 86_400_000);
  if (notAfter <= now) warnings.push(`listen.tls.cert: the certificate expired on ${new Date(notAfter).toISOString()}: clients will refuse it`);
  else if (notBefore > now) warnings.push(`listen.tls.cert: the certificate is not valid before ${new Date(notBefore).toISOString()}: clients will refuse it until then`);
  else if (days < 14) warnings.push(`listen.tls.cert: the certificate expires on ${new Date(notAfter).toISOString()} (in ${days} day${days === 1 ? '' : 's'})`);
  const host = issuer.hostname.replace(/^\[|\]$/g, '');
  const covered = /^[\d.]+$/.test(host) || host.includes(':') ? leaf.checkIP(host) !== undefined : leaf.checkHost(host) !== undefined;
  if (!covered) warnings.push(`listen.tls.cert: the certificate does not name ${host} (the issuer's host): clients that check the name will refuse it`);
  return warnings;
}

function isHttpUrl(text: string): boolean {
  if (text.includes('?') || text.includes('#')) return false;
  try {
    const url = new URL(text);
    return (url.protocol === 'http:' || url.protocol === 'https:') && url.username === '' && url.password === '' && url.hostname !== '';
  } catch {
    return false;
  }
}

function resolvePath(base: string, path: string): string {
  return isAbsolute(path) ? path : resolve(base, path);
}
