// Test harness: a real gateway on loopback port 0, built from a config file written into the
// test's own folder, in front of real upstream servers. No module of ours is stubbed.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadSettings } from '../../gateway/config.js';
import { createGateway, type Gateway } from '../../gateway/server.js';
import { createLogger } from '../../gateway/telemetry/log.js';
import type { Clock } from '../../gateway/clock.js';
import type { Test } from 'tap';
import { issueAgentToken, planAgentToken } from '../../gateway/broker/issue.js';
import { freePort, ROOT, SHIPPED_POLICIES } from './root.js';

export { freePort, ROOT, SHIPPED_POLICIES };

type Teardown = Pick<Test, 'teardown' | 'testdirName'>;
let started = 0;

export interface StartedGateway {
  readonly gateway: Gateway;
  readonly url: string;
  readonly port: number;
  readonly metricsUrl: string;
  readonly dir: string;
  /** Mint a token for a policy agent with the gateway's own keys; `onBehalfOf`: delegated (sub the user, act the agent), as token exchange mints it. */
  token(agent: string, request?: { scopes?: string[]; ttlSeconds?: number; onBehalfOf?: string }): Promise<string>;
  /** Audit lines written so far (flushes first). */
  /** The audit file's records; signed checkpoint lines only with `checkpoints: true`. */
  auditLines(options?: { checkpoints?: boolean }): Promise<Array<Record<string, unknown>>>;
}

export interface GatewayFixture {
  readonly policies?: string;
  readonly upstreams?: Record<string, string>;
  /** Extra YAML lines for agentgate.yaml (e.g. a `limits:` block). */
  readonly limits?: { maxBodyBytes?: number | string; upstreamTimeout?: string; maxMaskedBodyBytes?: number; bodyIdleTimeout?: string; headersTimeout?: string; requestTimeout?: string };
  /** `trustedProxies` of agentgate.yaml. */
  readonly trustedProxies?: readonly string[];
  readonly clock?: Clock;
  /**
   * Make the issuer URL the gateway's own address (`http://127.0.0.1:PORT`), as a standard OAuth
   * client discovering the broker expects. A free port is found first, then bound.
   */
  readonly selfIssuer?: boolean;
  /** Trusted issuers for token exchange (agentgate.yaml `trust:`). */
  readonly trust?: ReadonlyArray<{ issuer: string; jwksUri: string; audience?: string }>;
}

/** A port free right now on 127.0.0.1 (the gateway binds it a moment later). */
export async function startGateway(t: Teardown, fixture: GatewayFixture = {}): Promise<StartedGateway> {
  // A folder of its own under the test's folder, leaving files the test wrote there alone.
  const dir = join(t.testdirName, `gateway-${++started}`);
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const limits = fixture.limits ?? {};
  const listenPort = fixture.selfIssuer === true ? await freePort() : 0;
  const issuerUrl = fixture.selfIssuer === true ? `http://127.0.0.1:${listenPort}` : 'http://agentgate.test';
  const trust = (fixture.trust ?? []).map((t) => JSON.stringify(t.audience === undefined ? { issuer: t.issuer, jwksUri: t.jwksUri } : t));
  const yaml = [
    `listen:   { host: 127.0.0.1, port: ${listenPort} }`,
    'metrics:  { host: 127.0.0.1, port: 0 }',
    'admin:    { socket: ./run/agentgate.sock }',
    `policies: ${JSON.stringify(fixture.policies ?? SHIPPED_POLICIES)}`,
    `issuer:   { url: ${JSON.stringify(issuerUrl)}, keys: ./run/keys, alg: EdDSA, rotate: 24h }`,
    `trust:    [${trust.join(', ')}]`,
    'state:    { driver: memory, file: ./run/state.json }',
    'audit:    { file: ./run/audit.jsonl }',
    `limits:   { maxBodyBytes: ${JSON.stringify(limits.maxBodyBytes ?? 1048576)}, upstreamTimeout: ${limits.upstreamTimeout ?? '5s'}${limits.maxMaskedBodyBytes === undefined ? '' : `, maxMaskedBodyBytes: ${limits.maxMaskedBodyBytes}`}${(['bodyIdleTimeout', 'headersTimeout', 'requestTimeout'] as const).map((k) => (limits[k] === undefined ? '' : `, ${k}: ${limits[k]}`)).join('')} }`,
    ...(fixture.trustedProxies === undefined ? [] : [`trustedProxies: ${JSON.stringify(fixture.trustedProxies)}`]),
    '',
  ].join('\n');
  const configFile = join(dir, 'agentgate.yaml');
  await writeFile(configFile, yaml);
  const settings = await loadSettings({ configFile, env: {} });
  const gateway = await createGateway(settings, {
    log: createLogger({ level: 'silent' }),
    upstreams: fixture.upstreams,
    defaultMetrics: false,
    // In-process gateways skip the admin socket; the operator tests run the real process.
    admin: false,
    ...(fixture.clock === undefined ? {} : { clock: fixture.clock }),
  });
  t.teardown(() => gateway.close(1000));
  const ports = await gateway.start();
  const url = `http://127.0.0.1:${ports.agent.port}`;
  return {
    gateway,
    url,
    port: ports.agent.port,
    metricsUrl: `http://127.0.0.1:${ports.metrics.port}`,
    dir,
    async token(agent, request = {}) {
      const { onBehalfOf, ...asked } = request;
      const planned = planAgentToken(gateway.policy(), agent, asked, fixture.clock?.now() ?? Date.now());
      const plan = onBehalfOf === undefined ? planned : { ...planned, subject: onBehalfOf, act: { sub: agent } };
      const minted = await issueAgentToken(gateway.keys, settings.issuer.url, plan, fixture.clock ?? { now: () => Date.now() });
      return minted.token;
    },
    async auditLines(options = {}) {
      await gateway.audit.flush();
      const text = await readFile(settings.audit.file, 'utf8');
      return text
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .filter((l) => options.checkpoints === true || l.kind !== 'checkpoint');
    },
  };
}

export interface SeenRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingMessage['headers'];
  readonly rawHeaders: readonly string[];
  readonly bodyBytes: number;
}

export interface RecordingUpstream {
  readonly url: string;
  readonly seen: SeenRequest[];
  readonly server: Server;
}

/**
 * A real upstream that records what it received. The default handler answers 200 JSON with the
 * request it saw; pass `handler` to answer differently (it is called after the body is read).
 */
export async function startUpstream(
  t: Teardown,
  handler?: (req: IncomingMessage, res: ServerResponse, body: Buffer) => void,
): Promise<RecordingUpstream> {
  const seen: SeenRequest[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    let bytes = 0;
    req.on('data', (c: Buffer) => {
      bytes += c.length;
      if (bytes <= 1 << 20) chunks.push(c);
    });
    req.on('end', () => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders, bodyBytes: bytes });
      const body = Buffer.concat(chunks);
      if (handler !== undefined) {
        handler(req, res, body);
        return;
      }
      const payload = JSON.stringify({ method: req.method, url: req.url, bodyBytes: bytes });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) });
      res.end(payload);
    });
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  t.teardown(
    () =>
      new Promise<void>((done) => {
        server.closeAllConnections();
        server.close(() => done());
      }),
  );
  const port = (server.address() as AddressInfo).port;
  return { url: `http://127.0.0.1:${port}`, seen, server };
}
