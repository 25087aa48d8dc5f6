// The `agentgate` CLI: the verb table, the dispatcher, help and version, and the one place that
// turns a failure into one line on stderr and an exit code (0 success, 1 failure, 2 usage).
//
// Adding a verb: write `run(args, out)` in the cli/ file of its group (or a new one), describe it
// with a `Verb` object in that file's list, and make sure the list is spread into VERBS below.
// `agentgate --help`, `agentgate VERB --help` and `agentgate help VERB` are generated from it.
import { ConfigError } from '../errors.js';
import { ReadOnlyStoreError, StateFileError } from '../state/memory.js';
import { StateFileLockedError } from '../state/lock.js';
import { AdminClientError } from '../admin/client.js';
import { AdminSocketInUseError } from '../admin/socket.js';
import { BrokerError } from '../broker/issue.js';
import { CredentialError } from '../broker/credentials.js';
import { VERSION } from '../version.js';
import { CliError, defaultOut, parse, type Out, type Section, type Verb } from './common.js';
import { adminVerbs } from './admin.js';
import { auditVerbs } from './audit.js';
import { checkVerbs } from './check.js';
import { serveVerbs } from './serve.js';
import { tokenVerbs } from './token.js';
import { reviewVerbs } from './review.js';

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
