// Issue 15 item 11: `listen.tls` makes the agent port (broker included) speak HTTPS. A CA and
// certificates are made here with openssl (no key is committed); a real `agentgate serve` runs
// with them; undici trusting the CA gets through, and every untrusted path is refused: a client
// that does not trust the CA, the wrong name, plain HTTP, a TLS version below the minimum, and
// with `ca` (mutual TLS) a client without a certificate of that CA. `agentgate check` refuses bad
// PEM files with one line each, and a reload picks up a renewed certificate but keeps the old
// pair when the new one is broken.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { loadSettings, settingsWarnings } from '../../gateway/config.js';
import { ConfigError } from '../../gateway/errors.js';
import { startUpstream } from '../helpers/gateway.js';
import { runCli, serveCli, writeConfig } from '../helpers/process.js';

const noOpenssl = spawnSync('openssl', ['version']).error !== undefined;

function openssl(dir: string, args: readonly string[]): void {
  const run = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`openssl ${args.join(' ')}: ${run.stderr}`);
}

/**
 * ca: the server's CA; server (127.0.0.1, localhost) and server2 (its renewal) signed by it;
 * client-ca and a client certificate it signed; other-ca and a client certificate it signed.
 */
function makeCerts(dir: string): void {
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  for (const ca of ['ca', 'client-ca', 'other-ca']) openssl(dir, ['req', '-x509', ...ec, '-keyout', `${ca}.key`, '-out', `${ca}.pem`, '-days', '30', '-subj', `/CN=agentgate test ${ca}`]);
  writeFileSync(join(dir, 'server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  writeFileSync(join(dir, 'client.ext'), 'extendedKeyUsage=clientAuth\n');
  const signed = (name: string, ca: string, ext: string, days = 30): void => {
    openssl(dir, ['req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`]);
    openssl(dir, ['x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.pem`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-out', `${name}.pem`, '-days', String(days), '-extfile', ext]);
  };
  signed('server', 'ca', 'server.ext');
  signed('server2', 'ca', 'server.ext', 2); // a renewal that itself runs out soon: check warns
  signed('client', 'client-ca', 'client.ext');
  signed('rogue-client', 'other-ca', 'client.ext');
  openssl(dir, ['pkcs8', '-topk8', '-in', 'server.key', '-out', 'encrypted.key', '-passout', 'pass:secret', '-v2', 'aes-256-cbc']);
  writeFileSync(join(dir, 'garbage.pem'), '-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n');
}

const POLICY = (upstream: string): string =>
  [
    'backends:',
    '  crm:',
    `    upstream: ${upstream}`,
    '    scopes:',
    '      read: ["GET /contacts"]',
    'roles:',
    '  reader:',
    '    grants: [crm:read]',
    '    breaker: { violations: 5, window: 5m, cooldown: 10m }',
    'agents:',
    '  reader-01: { role: reader, owner: test }',
    '',
  ].join('\n');

/** writeConfig's file, with `listen.tls` and no issuer.url (so the issuer follows the bound address). */
async function tlsConfig(dir: string, policies: string, tls: string, limits?: string): Promise<string> {
  const file = await writeConfig(dir, policies, limits === undefined ? {} : { limits });
  const text = readFileSync(file, 'utf8')
    .replace('listen:   { host: 127.0.0.1, port: 0 }', `listen:   { host: 127.0.0.1, port: 0, tls: ${tls} }`)
    .replace('issuer:   { url: "http://agentgate.test", ', 'issuer:   { ');
  writeFileSync(file, text);
  return file;
}

/** The serial number of the certificate a TLS server presents (trusting `ca`). */
function presentedSerial(url: string, ca: Buffer): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: hostname, port: Number(port), ca, servername: 'localhost' }, () => {
      resolve(socket.getPeerCertificate().serialNumber);
      socket.end();
    });
    socket.once('error', reject);
  });
}

/** Open a TLS session with `options` against `url` and send one request; resolves the status line or rejects. */
function rawTls(url: string, options: ConnectionOptions): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: hostname, port: Number(port), ...options });
    let data = '';
    socket.setEncoding('utf8');
    socket.once('secureConnect', () => socket.write('GET /.well-known/oauth-authorization-server HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n'));
    socket.on('data', (d: string) => (data += d));
    socket.once('end', () => (data === '' ? reject(new Error('closed without an answer')) : resolve(data.split('\r\n')[0] ?? '')));
    socket.once('error', reject);
    socket.setTimeout(10_000, () => socket.destroy(new Error('timed out')));
  });
}

t.test('listen.tls', { skip: noOpenssl ? 'openssl is not installed (it makes the test CA; .ci/run installs it)' : false }, async (t) => {
  const dir = t.testdir({});
  makeCerts(dir);
  const pem = (name: string): Buffer => readFileSync(join(dir, name));
  const crm = await startUpstream(t);
  writeFileSync(join(dir, 'p.yaml'), POLICY(crm.url));
  const policies = join(dir, 'policies');
  spawnSync('mkdir', ['-p', policies]);
  copyFileSync(join(dir, 'p.yaml'), join(policies, 'p.yaml'));

  await t.test('a gateway with a certificate from a test CA', async (t) => {
    const live = join(dir, 'live');
    spawnSync('mkdir', ['-p', live]);
    copyFileSync(join(dir, 'server.pem'), join(live, 'cert.pem'));
    copyFileSync(join(dir, 'server.key'), join(live, 'key.pem'));
    const config = await tlsConfig(join(dir, 'gw'), policies, `{ cert: ${join(live, 'cert.pem')}, key: ${join(live, 'key.pem')} }`);
    const gw = await serveCli(t, ['serve', '--config', config], { timeoutMs: 60_000 });
    t.teardown(() => gw.stop());
    t.match(gw.url, /^https:\/\/127\.0\.0\.1:\d+$/, 'the banner names an https URL');
    const trusting = new Agent({ connect: { ca: pem('ca.pem') } });
    t.teardown(() => trusting.close());

    const metadata = await request(`${gw.url}/.well-known/oauth-authorization-server`, { dispatcher: trusting });
    t.equal(metadata.statusCode, 200);
    const meta = (await metadata.body.json()) as { issuer: string; token_endpoint: string };
    t.equal(meta.issuer, gw.url, 'the issuer is derived as https from the bound address');
    t.equal(meta.token_endpoint, `${gw.url}/oauth/token`);

    const minted = await runCli(['token', '--agent', 'reader-01', '--config', config], { timeoutMs: 60_000 });
    t.equal(minted.code, 0, minted.stderr);
    const headers = { authorization: `Bearer ${minted.stdout.trim()}` };
    const call = async (): Promise<number> => {
      const res = await request(`${gw.url}/crm/contacts`, { headers, dispatcher: trusting });
      await res.body.dump();
      return res.statusCode;
    };
    t.equal(await call(), 200, 'a client trusting the CA gets through');
    const seen = crm.seen.at(-1);
    t.equal(seen?.headers['x-forwarded-proto'], 'https', 'the backend is told the agent came over https');
    t.equal(seen?.headers.authorization, undefined, 'and never sees the token');
    t.equal(await rawTls(gw.url, { ca: pem('ca.pem'), servername: 'localhost', maxVersion: 'TLSv1.2' }), 'HTTP/1.1 200 OK', 'TLS 1.2 is accepted');

    const refusals: Array<{ name: string; attempt: () => Promise<unknown>; error: RegExp }> = [
      { name: 'a client that does not trust the CA', attempt: () => request(`${gw.url}/crm/contacts`, { headers, dispatcher: new Agent() }), error: /self.signed|unable to (get|verify)|certificate/i },
      { name: 'a client trusting another CA', attempt: () => request(`${gw.url}/crm/contacts`, { headers, dispatcher: new Agent({ connect: { ca: pem('other-ca.pem') } }) }), error: /self.signed|unable to (get|verify)|certificate/i },
      { name: 'the right CA, another name', attempt: () => rawTls(gw.url, { ca: pem('ca.pem'), servername: 'gateway.example' }), error: /altnames|does not match|ERR_TLS_CERT_ALTNAME_INVALID/i },
      { name: 'plain HTTP on the TLS port', attempt: () => request(gw.url.replace('https:', 'http:') + '/crm/contacts', { headers }), error: /./ },
      {
        name: 'TLS 1.1, below the minimum',
        attempt: () => rawTls(gw.url, { ca: pem('ca.pem'), servername: 'localhost', minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' }),
        error: /alert protocol version/i, // the gateway's alert: this client can speak TLS 1.1
      },
    ];
    for (const r of refusals) {
      await t.test(r.name, async (t) => {
        await t.rejects(r.attempt(), r.error);
      });
    }
    t.equal(await call(), 200, 'the gateway keeps serving after every refused handshake');
    // A refused handshake is not an HTTP request: no audit line, no 400 written into the raw socket.
    const audit = readFileSync(join(dir, 'gw', 'run', 'audit.jsonl'), 'utf8');
    t.notMatch(audit, /target_invalid/, 'no refused handshake is audited as a malformed request');

    await t.test('a reload picks up a renewed certificate, and keeps the old pair when the new one is broken', async (t) => {
      const ca = pem('ca.pem');
      const first = await presentedSerial(gw.url, ca);
      copyFileSync(join(dir, 'server2.pem'), join(live, 'cert.pem'));
      copyFileSync(join(dir, 'server.key'), join(live, 'key.pem')); // server2's key is another one
      const refused = await runCli(['reload', '--config', config], { timeoutMs: 30_000 });
      t.equal(refused.code, 1, 'a certificate and a key that do not match are refused');
      t.match(refused.stderr, /listen\.tls\.key: .*key\.pem is not the private key of the certificate in .*cert\.pem/);
      t.equal(await presentedSerial(gw.url, ca), first, 'the old pair is still served');
      t.equal(await call(), 200);
      copyFileSync(join(dir, 'server2.key'), join(live, 'key.pem'));
      const reloaded = await runCli(['reload', '--config', config], { timeoutMs: 30_000 });
      t.equal(reloaded.code, 0, reloaded.stderr);
      const renewed = await presentedSerial(gw.url, ca);
      t.not(renewed, first, 'the renewed certificate is served');
      t.equal(renewed, new (await import('node:crypto')).X509Certificate(pem('server2.pem')).serialNumber);
      t.equal(await call(), 200);
    });
  });

  await t.test('mutual TLS (ca) with TLS 1.3 as the minimum', async (t) => {
    const config = await tlsConfig(join(dir, 'mtls'), policies, `{ cert: ${join(dir, 'server.pem')}, key: ${join(dir, 'server.key')}, ca: ${join(dir, 'client-ca.pem')}, minVersion: TLSv1.3 }`, '{ headersTimeout: 1s, requestTimeout: 1s }');
    const gw = await serveCli(t, ['serve', '--config', config], { timeoutMs: 60_000 });
    t.teardown(() => gw.stop());
    const base = { ca: pem('ca.pem'), servername: 'localhost' };
    const withClient = { ...base, cert: pem('client.pem'), key: pem('client.key') };
    t.equal(await rawTls(gw.url, withClient), 'HTTP/1.1 200 OK', 'a client certificate from the CA gets an HTTP answer');
    const refusals: Array<{ name: string; options: ConnectionOptions }> = [
      { name: 'no client certificate', options: base },
      { name: 'a client certificate from another CA', options: { ...base, cert: pem('rogue-client.pem'), key: pem('rogue-client.key') } },
      { name: 'the server certificate used as a client certificate', options: { ...base, cert: pem('server.pem'), key: pem('server.key') } },
      { name: 'TLS 1.2 when the minimum is 1.3', options: { ...withClient, maxVersion: 'TLSv1.2' } },
    ];
    for (const r of refusals) {
      await t.test(r.name, async (t) => {
        await t.rejects(rawTls(gw.url, r.options), /./, 'no HTTP answer');
      });
    }
    t.equal(await rawTls(gw.url, withClient), 'HTTP/1.1 200 OK', 'still serving');

    await t.test('a connection that never starts the handshake is closed after limits.headersTimeout', async (t) => {
      const { hostname, port } = new URL(gw.url);
      const socket = netConnect({ host: hostname, port: Number(port) });
      const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
      socket.on('error', () => undefined);
      // Bounded: node's own default would keep it for 120 s; the test's own deadline is 30 s.
      const deadline = new Promise<'open'>((resolve) => {
        const timer = setTimeout(() => resolve('open'), 30_000);
        void closed.then(() => clearTimeout(timer));
      });
      t.equal(await Promise.race([closed.then(() => 'closed' as const), deadline]), 'closed', 'the gateway closed it');
      socket.destroy();
    });
  });

  await t.test('agentgate check', async (t) => {
    const p = (name: string): string => join(dir, name);
    // The validator `check` runs (loadSettings), in process for the table; the CLI below.
    const problemsOf = async (tls: string): Promise<string[]> => {
      const config = await tlsConfig(join(dir, 'check'), policies, tls);
      try {
        await loadSettings({ configFile: config, env: {} });
        return [];
      } catch (error) {
        if (!(error instanceof ConfigError)) throw error;
        return [...error.problems];
      }
    };
    const refusals = [
      { name: 'no key', tls: `{ cert: ${p('server.pem')} }`, line: /:1 {2}listen\.tls\.key: is required$/ },
      { name: 'no cert', tls: `{ key: ${p('server.key')} }`, line: /:1 {2}listen\.tls\.cert: is required$/ },
      { name: 'a file that is not there', tls: `{ cert: ${p('nope.pem')}, key: ${p('server.key')} }`, line: /:1 {2}listen\.tls\.cert: cannot read \/.*\/nope\.pem \(a PEM file\)$/ },
      { name: 'a key given as the certificate', tls: `{ cert: ${p('server.key')}, key: ${p('server.key')} }`, line: /listen\.tls\.cert: \/.*\/server\.key holds no PEM certificate \(-----BEGIN CERTIFICATE-----\)$/ },
      { name: 'a certificate given as the key', tls: `{ cert: ${p('server.pem')}, key: ${p('server.pem')} }`, line: /listen\.tls\.key: \/.*\/server\.pem holds no PEM private key \(-----BEGIN PRIVATE KEY-----\)$/ },
      { name: 'a PEM block that is not a certificate', tls: `{ cert: ${p('garbage.pem')}, key: ${p('server.key')} }`, line: /listen\.tls\.cert: \/.*\/garbage\.pem: certificate 1 of 1 is not a valid X\.509 certificate$/ },
      { name: 'the key of another certificate', tls: `{ cert: ${p('server.pem')}, key: ${p('server2.key')} }`, line: /listen\.tls\.key: \/.*\/server2\.key is not the private key of the certificate in \/.*\/server\.pem$/ },
      { name: 'an encrypted key', tls: `{ cert: ${p('server.pem')}, key: ${p('encrypted.key')} }`, line: /listen\.tls\.key: \/.*\/encrypted\.key is an encrypted private key \(the gateway reads an unencrypted PEM key; protect it with file permissions\)$/ },
      { name: 'a client CA that is not PEM', tls: `{ cert: ${p('server.pem')}, key: ${p('server.key')}, ca: ${p('client.key')} }`, line: /listen\.tls\.ca: \/.*\/client\.key holds no PEM certificate/ },
      { name: 'TLS 1.1', tls: `{ cert: ${p('server.pem')}, key: ${p('server.key')}, minVersion: TLSv1.1 }`, line: /listen\.tls\.minVersion: "TLSv1\.1" is not a TLS version this gateway accepts \(allowed: TLSv1\.2, TLSv1\.3\)$/ },
      { name: 'TLS 1.0 as a number', tls: `{ cert: ${p('server.pem')}, key: ${p('server.key')}, minVersion: 1.0 }`, line: /listen\.tls\.minVersion: 1 is not a TLS version this gateway accepts/ },
      { name: 'an unknown key', tls: `{ cert: ${p('server.pem')}, key: ${p('server.key')}, ciphers: ALL }`, line: /listen\.tls\.ciphers: unknown key/ },
      { name: 'not a map', tls: 'yes', line: /listen\.tls: expected a map with keys cert, key, ca, minVersion, got/ },
      { name: 'paths that are not strings', tls: '{ cert: [a], key: 7 }', line: /listen\.tls\.cert: / },
    ];
    for (const r of refusals) {
      await t.test(r.name, async (t) => {
        const problems = await problemsOf(r.tls);
        t.ok(problems.length > 0, 'refused');
        t.ok(problems.some((line) => r.line.test(line)), `${String(r.line)} in:\n${problems.join('\n')}`);
      });
    }
    await t.test('tls on the metrics port is an unknown key', async (t) => {
      const config = await tlsConfig(join(dir, 'check-metrics'), policies, `{ cert: ${p('server.pem')}, key: ${p('server.key')} }`);
      writeFileSync(config, readFileSync(config, 'utf8').replace('metrics:  { host: 127.0.0.1, port: 0 }', `metrics:  { host: 127.0.0.1, port: 0, tls: { cert: ${p('server.pem')}, key: ${p('server.key')} } }`));
      const res = await runCli(['check', '--config', config], { timeoutMs: 30_000 });
      t.equal(res.code, 1, 'the CLI exits 1');
      t.match(res.stderr, /metrics\.tls: unknown key/);
      t.equal(res.stdout, '');
    });
    await t.test('a valid pair passes; an issuer over http or a name the certificate lacks is a warning', async (t) => {
      const ok = await runCli(['check', '--config', await tlsConfig(join(dir, 'check-ok'), policies, `{ cert: ${p('server.pem')}, key: ${p('server.key')}, ca: ${p('client-ca.pem')} }`)], { timeoutMs: 30_000 });
      t.equal(ok.code, 0, ok.stderr);
      t.match(ok.stdout, /: ok \(1 backends/);
      t.equal(ok.stderr, '', 'no warning: the derived issuer https://127.0.0.1:0 is named by the certificate');
      const warningsOf = async (tls: string, issuer: string): Promise<string[]> => {
        const config = await tlsConfig(join(dir, 'check-warn'), policies, tls);
        writeFileSync(config, readFileSync(config, 'utf8').replace('issuer:   { ', `issuer:   { url: "${issuer}", `));
        // listen.port is 0 here, so the loopback port warning is there too; it is not this test's.
        return settingsWarnings(await loadSettings({ configFile: config, env: {} })).filter((w) => !w.includes('does not match listen'));
      };
      const pair = `{ cert: ${p('server.pem')}, key: ${p('server.key')} }`;
      t.match(await warningsOf(pair, 'http://127.0.0.1:0'), [/^issuer\.url http:\/\/127\.0\.0\.1:0 is http but listen\.tls is set/]);
      t.match(await warningsOf(pair, 'https://gw.example.com'), [/^listen\.tls\.cert: the certificate does not name gw\.example\.com \(the issuer's host\)/]);
      t.same(await warningsOf(pair, 'https://localhost'), [], 'localhost is named');
      t.match(await warningsOf(`{ cert: ${p('server2.pem')}, key: ${p('server2.key')} }`, 'https://127.0.0.1'), [/^listen\.tls\.cert: the certificate expires on \S+ \(in 1 day\)$/]);
    });
  });
});
