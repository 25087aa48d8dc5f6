// agentgate.yaml plus environment overrides -> validated, frozen Settings. Relative paths in the
// file resolve against the file's folder; relative paths in env overrides against the cwd.
import { dirname, isAbsolute, resolve } from 'node:path';
import { ConfigError } from './errors.js';
import { loadYamlFile, type RawEntry } from './policy/load.js';
import type { NetworkSet } from './policy/types.js';
import { Checker, validateCidrs } from './policy/validate.js';

export interface Endpoint {
  readonly host: string;
  /** 0 picks a free port; the gateway prints what it bound. */
  readonly port: number;
}

export interface TrustedIssuer {
  readonly issuer: string;
  readonly jwksUri: string;
  readonly audience: string | null;
}

export type StateSettings =
  | { readonly driver: 'memory'; readonly file: string | null }
  | { readonly driver: 'redis'; readonly url: string };

export interface Settings {
  /** Absolute path of the config file read (or the path that would have been read). */
  readonly configFile: string;
  /** Folder relative paths were resolved against. */
  readonly baseDir: string;
  readonly listen: Endpoint;
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
  readonly audit: { readonly file: string };
  readonly limits: {
    readonly maxBodyBytes: number;
    readonly upstreamTimeoutMs: number;
    readonly maxHeaderBytes: number;
    /** Largest response body a mask applies to (after decoding); larger is refused. */
    readonly maxMaskedBodyBytes: number;
  };
  /** Proxies whose `X-Forwarded-For` names the caller for network allowlists; null: none. */
  readonly trustedProxies: NetworkSet | null;
  /** The JSON log on stdout: `log.level`, or AGENTGATE_LOG_LEVEL. */
  readonly log: { readonly level: LogLevelSetting };
}

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error', 'silent'] as const;
export type LogLevelSetting = (typeof LOG_LEVELS)[number];

const DEFAULT_CONFIG = 'agentgate.yaml';
const HOST = /^[A-Za-z0-9.:[\]-]+$/;
const REDIS_URL = /^rediss?:\/\/\S+$/;
const TOP_KEYS = ['listen', 'metrics', 'admin', 'policies', 'issuer', 'trust', 'state', 'audit', 'limits', 'trustedProxies', 'log'];

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
  auditFile: './run/audit.jsonl',
  maxBodyBytes: 1_048_576,
  upstreamTimeoutMs: 30_000,
  maxHeaderBytes: 16_384,
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

  const endpoint = (key: 'listen' | 'metrics', defaultPort: number, envName: string): Endpoint | null => {
    const keys = section(key, ['host', 'port']);
    const host = c.string(keys?.get('host'), `${key}.host`, { pattern: HOST, patternHelp: 'is not a host name or IP address' }) ?? DEFAULTS.host;
    let port = keys?.has('port') ? c.integer(keys.get('port'), `${key}.port`, 0, 65535) : defaultPort;
    const override = fromEnv(envName);
    if (override !== null) {
      port = /^\d{1,5}$/.test(override) && Number(override) <= 65535 ? Number(override) : null;
      if (port === null) c.problems.push(`${envName}: "${override}" is not a port (a whole number from 0 to 65535; 0 picks a free one)`);
    }
    return port === null ? null : Object.freeze({ host, port });
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

  const auditKeys = section('audit', ['file']);
  const auditFile = c.string(auditKeys?.get('file'), 'audit.file') ?? DEFAULTS.auditFile;

  const limitKeys = section('limits', ['maxBodyBytes', 'upstreamTimeout', 'maxHeaderBytes', 'maxMaskedBodyBytes']);
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

  c.fail();
  if (logLevel === null || listen === null || metrics === null || state === null || rotateMs === null || maxBodyBytes === null || upstreamTimeoutMs === null || maxHeaderBytes === null || maxMaskedBodyBytes === null) {
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
    issuer: Object.freeze({ url: issuerFromEnv ?? issuerFromFile ?? issuerForAddress('http', listen.host, listen.port), urlFrom, keys: resolvePath(baseDir, keysDir), alg, rotateSeconds: Math.floor(rotateMs / 1000) }),
    trust: Object.freeze(trust),
    state,
    audit: Object.freeze({ file: resolvePath(baseDir, auditFile) }),
    limits: Object.freeze({ maxBodyBytes, upstreamTimeoutMs, maxHeaderBytes, maxMaskedBodyBytes }),
    trustedProxies,
    log: Object.freeze({ level: logLevel }),
  });
}

/**
 * `state`: `{ driver: memory, file }` (file defaults to ./run/state.json; an empty `file:` keeps
 * state in memory only) or `{ driver: redis, url }`. AGENTGATE_REDIS_URL switches to redis.
 */
function stateSettings(
  c: Checker,
  entry: RawEntry | undefined,
  baseDir: string,
  cwd: string,
  fromEnv: (name: string) => string | null,
): StateSettings | null {
  const keys = c.map(entry?.value, 'state', ['driver', 'file', 'url']);
  const driver = keys?.has('driver') ? c.oneOf(keys.get('driver'), 'state.driver', ['memory', 'redis'], 'a state driver') : 'memory';
  const redisFromEnv = fromEnv('AGENTGATE_REDIS_URL');
  if (redisFromEnv !== null) {
    if (!REDIS_URL.test(redisFromEnv)) {
      c.problems.push(`AGENTGATE_REDIS_URL: "${redisFromEnv}" is not a redis:// or rediss:// URL`);
      return null;
    }
    return Object.freeze({ driver: 'redis', url: redisFromEnv });
  }
  if (driver === null) return null;
  const misplaced = driver === 'memory' ? 'url' : 'file';
  const stray = keys?.get(misplaced);
  if (stray !== undefined) c.add(stray.at, `state.${misplaced}`, `is not used by driver ${driver} (${driver} takes ${driver === 'memory' ? 'file' : 'url'})`);
  if (driver === 'redis') {
    const url = c.string(keys === null || entry === undefined ? undefined : c.required(keys, 'url', 'state', entry.at), 'state.url', { pattern: REDIS_URL, patternHelp: 'is not a redis:// or rediss:// URL' });
    return url === null ? null : Object.freeze({ driver: 'redis', url });
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
