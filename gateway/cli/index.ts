// The `agentgate` CLI: the verb table, the dispatcher, help and version, and the one place that
// turns a failure into one line on stderr and an exit code (0 success, 1 failure, 2 usage).
//
// Adding a verb: describe it with a `Verb` object in the lists below (name, usage, options: the
// help is generated from them) whose `run` imports the verb's cli/ file when the verb runs, and
// write the verb there. Only this file, cli/verb.ts and the leaf error modules load for
// `--version`, `--help` or `VERB --help`; a verb loads its own modules and libraries only (serve:
// the listeners; token: jose; admin verbs: the socket client). Keep it so: no static import of a
// verb's file or of a heavy module here (test/cli-startup.test.ts checks it on the real process).
import { ConfigError } from '../errors.js';
import { ReadOnlyStoreError, StateFileError, StateFileLockedError } from '../state/errors.js';
import { AdminClientError } from '../admin/client.js';
import { AdminSocketInUseError } from '../admin/errors.js';
import { BrokerError } from '../broker/errors.js';
import { CredentialError } from '../broker/credentials.js';
import { VERSION } from '../version.js';
import { CliError, defaultOut, parse, type Out, type Section, type Verb } from './verb.js';

const serveOptions: NonNullable<Verb['options']> = [['--reset-state', 'move an unreadable state file aside and start empty']];

const serveVerbs: readonly Verb[] = [
  {
    name: 'serve',
    section: 'gateway',
    usage: [['serve', 'run the gateway']],
    options: serveOptions,
    notes: 'Runs until SIGINT or SIGTERM; SIGHUP reloads the policies. The JSON log goes to stdout (log.level, AGENTGATE_LOG_LEVEL); the lines for people (where it listens) go to stderr.',
    run: async (args, out) => (await import('./serve.js')).serve(args, out, false),
  },
  {
    name: 'demo',
    section: 'gateway',
    usage: [['demo', 'run the gateway in front of the demo backends, print tokens and curl lines']],
    options: serveOptions,
    notes: 'What `npm start` runs. The demo backends listen on free loopback ports; the issuer is the address the gateway bound (AGENTGATE_ISSUER_URL overrides it). The banner (secrets, tokens, curl lines) goes to stderr, the JSON log to stdout.',
    run: async (args, out) => (await import('./serve.js')).serve(args, out, true),
  },
  {
    name: 'demo-backends',
    section: 'gateway',
    usage: [['demo-backends [--host H]', 'run only the demo backends, on the ports their policies name (docker compose)']],
    options: [['--host H', 'address to listen on (default 127.0.0.1)']],
    run: async (args, out) => (await import('./serve.js')).demoBackends(args, out),
  },
];

const checkVerbs: readonly Verb[] = [
  {
    name: 'check',
    section: 'gateway',
    usage: [
      ['check', 'validate agentgate.yaml and policies, then exit (0 valid, 1 invalid)'],
      ['check --diff OLD_DIR', 'also print what a reload from the policies in OLD_DIR to the current ones does to each agent'],
    ],
    options: [['--diff OLD_DIR', 'a policies folder as it is now in force (e.g. a checkout of the last release): joiners, movers, leavers, grants added and removed per agent']],
    takes: ['json'],
    notes: 'Every problem is listed with file:line, in one run. Warnings (the configuration still loads, exit 0) go to stderr: roles without a breaker (breaker: off), expired agents, an issuer.url naming a loopback address the gateway does not listen on, and a listen.tls certificate that has expired, runs out within 14 days or does not name the issuer host.',
    run: async (args, out) => (await import('./check.js')).check(args, out),
  },
  {
    name: 'explain',
    section: 'gateway',
    usage: [['explain --token T METHOD PATH', 'what would this token be allowed to do with this request, and why']],
    options: [['--token T', 'the access token to judge (nothing is sent; no use of it is spent)']],
    takes: ['json', 'socket'],
    notes: 'Kill switches and breakers are read from the state file (or the shared Redis); body constraints are checked on the live request only.',
    run: async (args, out) => (await import('./explain.js')).explain(args, out),
  },
];

const tokenVerbs: readonly Verb[] = [
  {
    name: 'token',
    section: 'gateway',
    usage: [['token --agent ID [--scope S]... [--ttl D]', 'mint a session token with the local signing key; prints only the token']],
    options: [
      ['--agent ID', 'the agent (from the policies) the token is for'],
      ['--scope S', 'narrow the token to these scopes (repeat, or space/comma separated); default: every scope of the role'],
      ['--ttl D', "lifetime, e.g. 5m or 1h; at most the role's token.ttl (longer is refused); default: the role's token.ttl"],
    ],
    takes: ['json', 'socket'],
    notes: 'The token names the issuer of the running gateway (asked over its admin socket), else issuer.url, else the configured listen address.',
    run: async (args, out) => (await import('./token.js')).token(args, out),
  },
  {
    name: 'credentials',
    section: 'gateway',
    usage: [
      ['credentials issue AGENT', 'make a client secret (client_secret_basic); printed once, stored hashed'],
      ['credentials rotate AGENT [--overlap D]', 'a new secret; the old ones keep working for D (default 1h), then stop'],
      ['credentials list [AGENT]', 'client secrets and pinned keys, with their status'],
      ['credentials revoke AGENT [--id ID]', "remove one secret, or all of the agent's secrets"],
    ],
    options: [
      ['--overlap D', '(rotate) how long the previous secrets keep working'],
      ['--id ID', '(revoke) the one secret to remove'],
    ],
    takes: ['json', 'socket'],
    notes: 'Acts through the running gateway\'s admin socket, or on the state file when no gateway is running.',
    run: async (args, out) => (await import('./credentials.js')).credentials(args, out),
  },
  {
    name: 'keys',
    section: 'gateway',
    usage: [['keys rotate', 'publish a new signing key and sign with it now (old keys stay in the JWKS)']],
    takes: ['json', 'socket'],
    notes: 'Acts through the running gateway\'s admin socket, or on the key folder when no gateway is running.',
    run: async (args, out) => (await import('./credentials.js')).keysVerb(args, out),
  },
];

const operator = (name: string, usage: Verb['usage'], options?: Verb['options'], notes?: string): Verb => ({
  name,
  section: 'operator',
  usage,
  ...(options === undefined ? {} : { options }),
  takes: ['json', 'socket'],
  ...(notes === undefined ? {} : { notes }),
  run: async (args, out) => (await import('./admin.js')).adminVerb(name, args, out),
});

const adminVerbs: readonly Verb[] = [
  operator('status', [['status', "the gateway's state"]]),
  operator('agents', [['agents [AGENT]', 'every agent: role, owner, breaker, violations, kill, last seen, live tokens']]),
  operator(
    'kill',
    [
      ['kill AGENT --reason R', 'disable an agent now (aborts its in-flight calls)'],
      ['kill --all --reason R', 'disable every agent'],
    ],
    [
      ['--reason R', 'why (required; recorded with the kill)'],
      ['--all', 'every agent of the policies'],
    ],
  ),
  operator(
    'revive',
    [
      ['revive AGENT', 'lift a kill switch and reset the breaker'],
      ['revive --all', 'the same for every agent'],
    ],
    [['--all', 'every agent']],
  ),
  operator(
    'revoke',
    [
      ['revoke --token T', 'revoke one token (its jti, expiry and agent are read from it)'],
      ['revoke --jti J', 'revoke one token by its jti claim'],
      ['revoke --agent A', 'revoke every token of an agent issued until now'],
    ],
    [
      ['--token T', 'the token itself'],
      ['--jti J', "the token's jti claim (a UUID; anything else is refused as unknown)"],
      ['--agent A', 'the agent'],
    ],
  ),
  operator('reload', [['reload', 'validate the policies on disk and swap them in (SIGHUP does the same)']]),
  operator('approvals', [['approvals [ID]', 'calls waiting for (or given) a person\'s approval']]),
  operator('approve', [['approve ID [--reason R]', 'approve one call; the agent repeats it with X-AgentGate-Approval: ID']], [['--reason R', 'recorded with the decision']]),
  operator('deny', [['deny ID --reason R', 'deny one call']], [['--reason R', 'why (required; recorded with the decision)']]),
  operator(
    'state',
    [['state reseed', 'write this instance\'s snapshot back into a Redis that lost its data (state.reseed: manual)']],
    undefined,
    'Redis driver only. A Redis that lost its data (generation marker missing or older) is an outage: every instance refuses with 503 until it is reseeded. With state.reseed: auto that happens at once; with manual, run this on any instance. Kills, revocations and open breakers are written back by union (nothing in Redis is overwritten); the other instances merge their own snapshots.',
  ),
];

const auditVerbs: readonly Verb[] = [
  {
    name: 'audit',
    section: 'audit',
    usage: [
      ['audit verify [FILE...] [--key PEM]', 'check the hash chain and signed checkpoints (streaming); names every edited, removed, inserted or reordered line, and a trail cut before the last checkpoint'],
      ['audit tail [FILE] [--agent A] [--decision allow|deny] [--since 10m] [-n N] [--follow]', 'recent records, one line each'],
    ],
    options: [
      ['FILE', 'default: audit.file of the config (verify: with its rotated files); verify takes several files, oldest first (audit.jsonl.2 audit.jsonl.1 audit.jsonl)'],
      ['--key PEM', '(verify) audit public key for checkpoint signatures (default: audit-key.pub.pem in issuer.keys)'],
      ['--agent A', '(tail) only this agent'],
      ['--decision D', '(tail) allow or deny'],
      ['--since D', '(tail) only records newer than D, e.g. 10m'],
      ['-n, --lines N', '(tail) how many records (default 20)'],
      ['-f, --follow', '(tail) keep printing records as they are appended, across rotation'],
    ],
    takes: ['json'],
    notes: 'verify exits 0 when the chain is intact, 1 when a line was edited, removed, inserted or reordered, a checkpoint signature does not match, or the trail ends before the state store\'s last checkpoint (TRUNCATED). Progress goes to stderr on a terminal.',
    run: async (args, out) => (await import('./audit.js')).auditCommand(args, out),
  },
];

const reviewVerbs: readonly Verb[] = [
  {
    name: 'review',
    section: 'audit',
    usage: [['review [--since 30d] [--json | --csv | --html FILE]', 'the access review: permission matrix with use per grant, unused grants and the edit that removes them, and more']],
    options: [
      ['--since D', 'the period to review, back from now (default 30d)'],
      ['--csv', 'the matrix as CSV (one row per agent and grant)'],
      ['--html FILE', 'write a self-contained HTML report (heat map, findings, violation timelines) to FILE'],
    ],
    takes: ['json'],
    notes: 'Reads audit.file of the config and its rotated files (audit.jsonl.N ... audit.jsonl.1, audit.jsonl), streamed in constant memory, and the client secrets in the state store.',
    run: async (args, out) => (await import('./review.js')).review(args, out),
  },
];

const metaVerbs: readonly Verb[] = [
  {
    name: 'version',
    section: 'other',
    usage: [['version', 'the version of agentgate and of Node.js (also: agentgate --version)']],
    takes: ['json'],
    run: async (args, out) => {
      const { values, positionals } = parse(args, {}, true);
      if (positionals.length > 0) throw new CliError(`unexpected argument "${positionals[0] ?? ''}"`, 2);
      out.stdout(values.json ? JSON.stringify({ version: VERSION, node: process.version }) : `agentgate ${VERSION} (node ${process.version})`);
      return 0;
    },
  },
  {
    name: 'help',
    section: 'other',
    usage: [['help [COMMAND]', 'this text, or the help of one command (also: agentgate COMMAND --help)']],
    run: async (args, out) => {
      const [name, ...extra] = args;
      if (extra.length > 0) throw new CliError(`unexpected argument "${extra[0] ?? ''}"`, 2);
      if (name === undefined) {
        out.stdout(globalUsage());
        return 0;
      }
      out.stdout(verbHelp(verbNamed(name)));
      return 0;
    },
  },
];

/** Every verb, in the order `agentgate --help` lists them within a section. */
export const VERBS: readonly Verb[] = [...serveVerbs, ...checkVerbs, ...tokenVerbs, ...adminVerbs, ...auditVerbs, ...reviewVerbs, ...metaVerbs];

/** Every verb the CLI accepts (the compose file and docs are checked against this list). */
export const COMMANDS: readonly string[] = VERBS.map((v) => v.name);

const BY_NAME = new Map(VERBS.map((v) => [v.name, v]));

const SECTIONS: ReadonlyArray<readonly [Section, string]> = [
  ['gateway', 'commands:'],
  ['operator', 'operator commands (over the admin socket of a running gateway):'],
  ['audit', 'audit trail (reads the file; no running gateway needed):'],
  ['other', 'other:'],
];

const COMMON_HELP: Record<'config' | 'json' | 'socket' | 'help', readonly [string, string]> = {
  config: ['--config FILE', 'agentgate.yaml to use (default: $AGENTGATE_CONFIG, else ./agentgate.yaml)'],
  json: ['--json', 'machine-readable output'],
  socket: ['--socket PATH', 'admin socket (default: $AGENTGATE_SOCKET, else admin.socket of the config)'],
  help: ['-h, --help', 'this text'],
};

/** Two columns: the left one padded to 30, or the right one on its own line when the left is long. */
function columns(rows: ReadonlyArray<readonly [string, string]>): string[] {
  return rows.map(([left, right]) => (left.length <= 28 ? `  ${left.padEnd(30)}${right}` : `  ${left}\n  ${' '.repeat(30)}${right}`));
}

export function globalUsage(): string {
  const lines = ['usage: agentgate <command> [options]'];
  for (const [section, title] of SECTIONS) {
    lines.push('', title, ...columns(VERBS.filter((v) => v.section === section).flatMap((v) => v.usage)));
  }
  lines.push('', 'common options:', ...columns([COMMON_HELP.config, COMMON_HELP.json, COMMON_HELP.socket, COMMON_HELP.help]));
  lines.push('', 'agentgate COMMAND --help shows the options of one command.');
  return lines.join('\n');
}

export function verbHelp(verb: Verb): string {
  const lines: string[] = [];
  verb.usage.forEach(([synopsis, summary], i) => lines.push(`${i === 0 ? 'usage: ' : '       '}agentgate ${synopsis}`, `         ${summary}`));
  const options = [...(verb.options ?? []), COMMON_HELP.config, ...(verb.takes ?? []).map((k) => COMMON_HELP[k]), COMMON_HELP.help];
  lines.push('', 'options:', ...columns(options));
  if (verb.notes !== undefined) lines.push('', verb.notes);
  return lines.join('\n');
}

function verbNamed(name: string): Verb {
  const verb = BY_NAME.get(name);
  if (verb === undefined) throw new CliError(`unknown command "${name}" (try: agentgate --help)`, 2);
  return verb;
}

/** -h or --help anywhere before a `--` asks for the verb's help instead of running it. */
function asksForHelp(args: readonly string[]): boolean {
  for (const arg of args) {
    if (arg === '--') return false;
    if (arg === '-h' || arg === '--help') return true;
  }
  return false;
}

export async function main(argv: readonly string[], out: Out = defaultOut()): Promise<number> {
  const [first, ...rest] = argv;
  try {
    if (first === undefined) {
      out.stderr(globalUsage());
      return 2;
    }
    if (first === '-h' || first === '--help') return await verbNamed('help').run(rest, out);
    if (first === '--version' || first === '-V') return await verbNamed('version').run(rest, out);
    const verb = verbNamed(first);
    if (asksForHelp(rest)) {
      out.stdout(verbHelp(verb));
      return 0;
    }
    return await verb.run(rest, out);
  } catch (error) {
    return report(error, out);
  }
}

function report(error: unknown, out: Out): number {
  if (error instanceof ConfigError) {
    for (const problem of error.problems) out.stderr(problem);
    out.stderr(`agentgate: configuration invalid (${error.problems.length} problem${error.problems.length === 1 ? '' : 's'})`);
    return 1;
  }
  if (error instanceof CliError) {
    out.stderr(`agentgate: ${error.message}`);
    return error.exitCode;
  }
  if (error instanceof AdminClientError || error instanceof StateFileError || error instanceof StateFileLockedError || error instanceof ReadOnlyStoreError || error instanceof AdminSocketInUseError || error instanceof CredentialError) {
    out.stderr(`agentgate: ${error.message}`);
    return 1;
  }
  if (error instanceof BrokerError) {
    out.stderr(`agentgate: ${error.error}: ${error.description}`);
    return 1;
  }
  const code = (error as { code?: unknown } | null)?.code;
  if (error instanceof Error && typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS')) {
    out.stderr(`agentgate: ${error.message.split('\n')[0] ?? error.message}`);
    return 2;
  }
  out.stderr(`agentgate: ${error instanceof Error ? error.message : String(error)}`);
  return 1;
}
