// The shape of a CLI verb, its argument parsing and its one-line failure: what the dispatcher
// (cli/index.ts) needs before it knows which verb runs. Only node: built-ins here, so that
// `agentgate --version` and `--help` load nothing else.
import { parseArgs, type ParseArgsConfig } from 'node:util';

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
 * One verb of the CLI: one object in the verb table (cli/index.ts); `--help`, `help VERB` and the
 * global usage come from these fields. `run` imports the verb's own cli/ file when it is called.
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

export function defaultOut(): Out {
  return {
    stdout: (text) => process.stdout.write(`${text}\n`),
    stderr: (text) => process.stderr.write(`${text}\n`),
  };
}
