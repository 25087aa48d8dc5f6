// Test harness: a real redis-server of the test file's own, on a free loopback port, no
// persistence. `redisServerPath()` is null when redis-server is not installed: the caller skips.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createConnection } from 'node:net';
import { freePort } from './root.js';

export function redisServerPath(): string | null {
  const found = spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' });
  const path = found.stdout.trim();
  return found.status === 0 && path !== '' ? path : null;
}

export interface RedisServer {
  readonly port: number;
  readonly url: string;
  /** SIGKILL the server (an outage); resolves when it is gone. */
  kill(): Promise<void>;
  /** Start it again on the same port (empty: it keeps nothing). */
  restart(): Promise<void>;
  /** Run redis-cli-free commands: FLUSHALL between cases. */
  flush(): Promise<void>;
  /** SIGSTOP the server: it keeps its sockets open and answers nothing (a hung Redis). */
  pause(): void;
  /** SIGCONT it. */
  resume(): void;
  /** Send one inline command; resolves the raw reply (first line). */
  command(text: string): Promise<string>;
}

/**
 * `args` are added to the command line (TLS ports, --replicaof); `bin` and `config` start another
 * program of the family (redis-sentinel with its config file, which it rewrites).
 */
export async function startRedis(t: { teardown(fn: () => unknown): void }, options: { args?: readonly string[]; bin?: string; config?: string; password?: string } = {}): Promise<RedisServer> {
  const auth = options.password ?? null;
  const bin = options.bin ?? redisServerPath();
  if (bin === null) throw new Error('redis-server is not installed');
  let port = await freePort();
  let child: ChildProcess | null = null;
  const launch = async (): Promise<void> => {
    const args = [...(options.config === undefined ? [] : [options.config]), '--port', String(port), '--bind', '127.0.0.1', ...(options.config === undefined ? ['--save', '', '--appendonly', 'no'] : []), ...(options.args ?? [])];
    const proc = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child = proc;
    let out = '';
    proc.stdout?.setEncoding('utf8').on('data', (d: string) => (out += d));
    proc.stderr?.setEncoding('utf8').on('data', (d: string) => (out += d));
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      if (proc.exitCode !== null) throw new Error(`redis-server exited: ${out}`);
      if (await answers(port, 'PING', auth)) return;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error(`redis-server did not start on ${port}: ${out}`);
  };
  const stop = async (): Promise<void> => {
    const proc = child as ChildProcess | null;
    // A stopped server cannot exit until it is continued.
    proc?.kill('SIGCONT');
    child = null;
    if (proc === null || proc.exitCode !== null || proc.signalCode !== null) return;
    const gone = new Promise((resolve) => proc.once('exit', resolve));
    proc.kill('SIGKILL');
    await gone;
  };
  // A port found free can be taken (another test's server, or the source port of an outgoing
  // connection) before redis-server binds it: then it starts again on another, at most thrice.
  for (let attempt = 1; ; attempt++) {
    try {
      await launch();
      break;
    } catch (error) {
      if (attempt === 3 || !/Address already in use/i.test(String(error))) throw error;
      port = await freePort();
    }
  }
  t.teardown(stop);
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    kill: stop,
    restart: launch,
    async flush() {
      if (!(await answers(port, 'FLUSHALL', auth))) throw new Error('FLUSHALL failed');
    },
    pause() {
      (child as ChildProcess | null)?.kill('SIGSTOP');
    },
    resume() {
      (child as ChildProcess | null)?.kill('SIGCONT');
    },
    command: (text) => reply(port, text, auth),
  };
}

/** `AUTH` first when the server asks for a password; its `+OK` is taken off the answer. */
function authenticated(command: string, password: string | null): string {
  return password === null ? `${command}\r\n` : `AUTH ${password}\r\n${command}\r\n`;
}
function afterAuth(raw: string, password: string | null): string {
  if (password === null) return raw;
  if (raw.startsWith('+OK\r\n')) return raw.slice(5);
  // Not yet the whole `+OK` line: wait for more; an AUTH error is itself the answer.
  return '+OK\r\n'.startsWith(raw) ? '' : raw;
}

/** Send one inline command; true when the answer is a simple-string reply. */
function answers(port: number, command: string, password: string | null = null): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    let raw = '';
    let data = '';
    socket.setTimeout(1000, () => socket.destroy());
    socket.on('connect', () => socket.write(authenticated(command, password)));
    socket.on('data', (d) => {
      raw += d.toString();
      data = afterAuth(raw, password);
      if (data.includes('\r\n')) {
        socket.end();
        resolve(data.startsWith('+'));
      }
    });
    socket.on('error', () => resolve(false));
    socket.on('close', () => resolve(data.startsWith('+')));
  });
}

/** Send one inline command; resolves everything the server answered within the first reply line. */
function reply(port: number, command: string, password: string | null = null): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    let raw = '';
    let data = '';
    socket.setTimeout(2000, () => socket.destroy(new Error(`no answer to ${command}`)));
    socket.on('connect', () => socket.write(authenticated(command, password)));
    socket.on('data', (d) => {
      raw += d.toString();
      data = afterAuth(raw, password);
      const end = data.indexOf('\r\n');
      if (end < 0) return;
      // A bulk string ($len) is answered with its value; anything else with its first line.
      const bulk = /^\$(\d+)$/.exec(data.slice(0, end));
      if (bulk !== null && data.length < end + 2 + Number(bulk[1]) + 2) return;
      socket.end();
      resolve(bulk === null ? data.slice(0, end) : data.slice(end + 2, end + 2 + Number(bulk[1])));
    });
    socket.on('error', reject);
  });
}
