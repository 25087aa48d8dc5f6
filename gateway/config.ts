// agentgate.yaml plus environment overrides -> validated, frozen Settings.
// Relative paths resolve against the config file's folder.
import { dirname, isAbsolute, resolve } from 'node:path';
import { ConfigError } from './errors.js';
import { loadYamlFile, type Position } from './policy/load.js';
import { Checker } from './policy/validate.js';
import { describe } from './policy/units.js';

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
    readonly url: string;
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
  };
}

const DEFAULT_CONFIG = 'agentgate.yaml';
const HOST = /^[A-Za-z0-9.:[\]-]+$/;

export interface LoadSettingsOptions {
  readonly configFile?: string;
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
}

/** Read and validate agentgate.yaml plus env overrides. Throws ConfigError with every problem. */
export async function loadSettings(options: LoadSettingsOptions = {}): Promise<Settings> {
  const env = options.env ?? process.env;
  const cwd = options.cwd ?? process.cwd();
  const configFile = resolvePath(cwd, options.configFile ?? env.AGENTGATE_CONFIG ?? DEFAULT_CONFIG);
  const baseDir = dirname(configFile);
  const problems: string[] = [];
  const loaded = await loadYamlFile(configFile, problems);
  if (problems.length > 0 && loaded.root === null && problems[0]?.endsWith('no such file')) {
    throw new ConfigError([`${problems[0]} (pass --config or set AGENTGATE_CONFIG)`]);
  }
  const c = new Checker();
  c.problems.push(...problems);
  const at: Position = loaded.root?.at ?? { file: loaded.file, line: 1 };
  const root = loaded.root ?? { kind: 'map' as const, at, entries: new Map() };
  const top = c.map(root, '(top level)', ['listen', 'metrics', 'admin', 'policies', 'issuer', 'trust', 'state', 'audit', 'limits']);

  const endpoint = (key: 'listen' | 'metrics', fallbackPort: number, envName: string): Endpoint | null => {
    const keys = c.map(top?.get(key)?.value, key, ['host', 'port']);
    const host = c.string(keys?.get('host'), `${key}.host`, { pattern: HOST, patternHelp: 'is not a host name or address' }) ?? '127.0.0.1';
    let port = keys?.has('port') ? c.integer(keys.get('port'), `${key}.port`, 0, 65535) : fallbackPort;
    const fromEnv = env[envName];
    if (fromEnv !== undefined && fromEnv !== '') {
      const n = Number(fromEnv);
      if (!/^\d+$/.test(fromEnv) || n > 65535) {
        c.problems.push(`${envName}: "${fromEnv}" is not a port (0-65535; 0 picks a free one)`);
        port = null;
      } else {
        port = n;
      }
    }
    return port === null ? null : Object.freeze({ host, port });
  };
  const listen = endpoint('listen', 8080, 'AGENTGATE_LISTEN_PORT');
  const metrics = endpoint('metrics', 9464, 'AGENTGATE_METRICS_PORT');

  const adminKeys = c.map(top?.get('admin')?.value, 'admin', ['socket']);
  const socket = env.AGENTGATE_ADMIN_SOCKET || (c.string(adminKeys?.get('socket'), 'admin.socket') ?? './run/agentgate.sock');
  const policies = c.string(top?.get('policies'), 'policies') ?? './policies';

  const issuerKeys = c.map(top?.get('issuer')?.value, 'issuer', ['url', 'keys', 'alg', 'rotate']);
  const issuerUrl = c.string(issuerKeys?.get('url'), 'issuer.url') ?? 'http://127.0.0.1:8080';
  if (!/^https?:\/\/[^\s/?#]+(\/[^\s?#]*)?$/.test(issuerUrl)) c.add(issuerKeys?.get('url')?.value.at ?? at, 'issuer.url', `"${issuerUrl}" is not an http(s) URL`);
  const keysDir = c.string(issuerKeys?.get('keys'), 'issuer.keys') ?? './run/keys';
  const algEntry = issuerKeys?.get('alg');
  let alg: 'EdDSA' | 'ES256' = 'EdDSA';
  if (algEntry !== undefined) {
    const value = algEntry.value.kind === 'scalar' ? algEntry.value.value : null;
    if (value === 'EdDSA' || value === 'ES256') alg = value;
    else c.add(algEntry.value.at, 'issuer.alg', `${describe(value)} is not a signing algorithm (allowed: EdDSA, ES256)`);
  }
  const rotateMs = issuerKeys?.has('rotate') ? c.duration(issuerKeys.get('rotate'), 'issuer.rotate', { minMs: 60_000 }) : 86_400_000;

  const trust: TrustedIssuer[] = [];
  const trustEntry = top?.get('trust');
  for (const [i, node] of (c.list(trustEntry, 'trust') ?? []).entries()) {
    const path = `trust[${i}]`;
    const keys = c.map(node, path, ['issuer', 'jwksUri', 'audience']);
    const issuer = c.string(c.required(keys, 'issuer', path, node.at), `${path}.issuer`);
    const jwksUri = c.string(c.required(keys, 'jwksUri', path, node.at), `${path}.jwksUri`, { pattern: /^https?:\/\/\S+$/, patternHelp: 'is not an http(s) URL' });
    const audience = c.string(keys?.get('audience'), `${path}.audience`);
    if (issuer !== null && jwksUri !== null) trust.push(Object.freeze({ issuer, jwksUri, audience }));
  }

  const stateKeys = c.map(top?.get('state')?.value, 'state', ['driver', 'file', 'url']);
  const driverEntry = stateKeys?.get('driver');
  const driverValue = driverEntry === undefined ? 'memory' : driverEntry.value.kind === 'scalar' ? driverEntry.value.value : null;
  let state: StateSettings | null = null;
  if (env.AGENTGATE_REDIS_URL) {
    state = { driver: 'redis', url: env.AGENTGATE_REDIS_URL };
  } else if (driverValue === 'memory') {
    const file = env.AGENTGATE_STATE_FILE || c.string(stateKeys?.get('file'), 'state.file');
    state = { driver: 'memory', file: file === null || file === undefined ? null : resolvePath(baseDir, file) };
  } else if (driverValue === 'redis') {
    const url = c.string(c.required(stateKeys ?? null, 'url', 'state', driverEntry?.at ?? at), 'state.url', { pattern: /^rediss?:\/\/\S+$/, patternHelp: 'is not a redis:// URL' });
    if (url !== null) state = { driver: 'redis', url };
  } else {
    c.add(driverEntry?.value.at ?? at, 'state.driver', `${describe(driverValue)} is not a state driver (allowed: memory, redis)`);
  }

  const auditKeys = c.map(top?.get('audit')?.value, 'audit', ['file']);
  const auditFile = c.string(auditKeys?.get('file'), 'audit.file') ?? './run/audit.jsonl';

  const limitKeys = c.map(top?.get('limits')?.value, 'limits', ['maxBodyBytes', 'upstreamTimeout', 'maxHeaderBytes']);
  const maxBodyBytes = limitKeys?.has('maxBodyBytes') ? c.size(limitKeys.get('maxBodyBytes'), 'limits.maxBodyBytes') : 1_048_576;
  const upstreamTimeoutMs = limitKeys?.has('upstreamTimeout') ? c.duration(limitKeys.get('upstreamTimeout'), 'limits.upstreamTimeout', { minMs: 1, maxMs: 3_600_000 }) : 30_000;
  const maxHeaderBytes = limitKeys?.has('maxHeaderBytes') ? c.size(limitKeys.get('maxHeaderBytes'), 'limits.maxHeaderBytes') : 16_384;

  c.fail();
  if (listen === null || metrics === null || state === null || rotateMs === null || maxBodyBytes === null || upstreamTimeoutMs === null || maxHeaderBytes === null) {
    throw new ConfigError(['invalid configuration']);
  }
  return Object.freeze({
    configFile,
    baseDir,
    listen,
    metrics,
    admin: Object.freeze({ socket: resolvePath(baseDir, socket) }),
    policies: resolvePath(baseDir, policies),
    issuer: Object.freeze({ url: issuerUrl, keys: resolvePath(baseDir, keysDir), alg, rotateSeconds: Math.floor(rotateMs / 1000) }),
    trust: Object.freeze(trust),
    state: Object.freeze(state),
    audit: Object.freeze({ file: resolvePath(baseDir, auditFile) }),
    limits: Object.freeze({ maxBodyBytes, upstreamTimeoutMs, maxHeaderBytes }),
  });
}

function resolvePath(base: string, path: string): string {
  return isAbsolute(path) ? path : resolve(base, path);
}
