// The Checker: collects every problem (`file:line  path: message`) and checks the shape of raw
// nodes. Shared by the policy sections and the configuration (config.ts).
import { ConfigError } from '../../errors.js';
import { problemAt, type Position, type RawEntry, type RawNode } from '../load.js';
import { describe, parseDuration, parseSize, unknownKeyMessage, type Parsed } from '../units.js';

/** Collects problems and checks the shape of raw nodes. Shared by policy and config validation. */
export class Checker {
  readonly problems: string[] = [];

  add(at: Position, path: string, message: string): void {
    this.problems.push(problemAt(at, path, message));
  }

  /**
   * A map whose keys must come from `allowed`. `reserved` keys are recognised but refused with
   * their own message (features not built yet, renamed keys). `path` '' is the top level.
   */
  map(node: RawNode | undefined, path: string, allowed: readonly string[], reserved: Readonly<Record<string, string>> = {}): ReadonlyMap<string, RawEntry> | null {
    if (node === undefined) return null;
    if (node.kind !== 'map') {
      this.add(node.at, path === '' ? '(top level)' : path, `expected a map with keys ${allowed.join(', ')}, got ${kindOf(node)}`);
      return null;
    }
    for (const [key, entry] of node.entries) {
      if (allowed.includes(key)) continue;
      const keyPath = path === '' ? key : `${path}.${key}`;
      const why = Object.hasOwn(reserved, key) ? reserved[key] : undefined;
      this.add(entry.at, keyPath, why ?? unknownKeyMessage(key, allowed));
    }
    return node.entries;
  }

  /** A map of user-chosen names (backends, roles, agents, scopes). */
  names(node: RawNode | undefined, path: string, what: string): ReadonlyMap<string, RawEntry> | null {
    if (node === undefined) return null;
    if (node.kind !== 'map') {
      this.add(node.at, path, `expected a map of ${what}, got ${kindOf(node)}`);
      return null;
    }
    return node.entries;
  }

  required(entries: ReadonlyMap<string, RawEntry> | null, key: string, path: string, at: Position): RawEntry | undefined {
    const entry = entries?.get(key);
    if (entry === undefined && entries !== null) this.add(at, `${path}.${key}`, 'is required');
    return entry;
  }

  string(entry: RawEntry | undefined, path: string, options: { pattern?: RegExp; patternHelp?: string } = {}): string | null {
    if (entry === undefined) return null;
    const node = entry.value;
    if (node.kind !== 'scalar' || typeof node.value !== 'string' || node.value === '') {
      this.add(node.at, path, `expected a non-empty string, got ${node.kind === 'scalar' ? describe(node.value) : kindOf(node)}`);
      return null;
    }
    if (options.pattern !== undefined && !options.pattern.test(node.value)) {
      this.add(node.at, path, `"${node.value}" ${options.patternHelp ?? `must match ${String(options.pattern)}`}`);
      return null;
    }
    return node.value;
  }

  /** A value from a closed set; the message lists the allowed values. */
  oneOf<T extends string>(entry: RawEntry | undefined, path: string, allowed: readonly T[], what: string): T | null {
    if (entry === undefined) return null;
    const node = entry.value;
    const value = node.kind === 'scalar' ? node.value : null;
    const found = allowed.find((a) => a === value);
    if (found === undefined) {
      this.add(node.at, path, `${node.kind === 'scalar' ? describe(value) : kindOf(node)} is not ${what} (allowed: ${allowed.join(', ')})`);
      return null;
    }
    return found;
  }

  boolean(entry: RawEntry | undefined, path: string): boolean | null {
    if (entry === undefined) return null;
    const node = entry.value;
    if (node.kind !== 'scalar' || typeof node.value !== 'boolean') {
      this.add(node.at, path, `expected true or false, got ${node.kind === 'scalar' ? describe(node.value) : kindOf(node)}`);
      return null;
    }
    return node.value;
  }

  integer(entry: RawEntry | undefined, path: string, min: number, max: number): number | null {
    if (entry === undefined) return null;
    const node = entry.value;
    if (node.kind !== 'scalar' || typeof node.value !== 'number' || !Number.isInteger(node.value) || node.value < min || node.value > max) {
      this.add(node.at, path, `expected a whole number from ${min} to ${max}, got ${node.kind === 'scalar' ? describe(node.value) : kindOf(node)}`);
      return null;
    }
    return node.value;
  }

  parsed<T>(entry: RawEntry | undefined, path: string, parse: (input: unknown) => Parsed<T>): T | null {
    if (entry === undefined) return null;
    const node = entry.value;
    const result = parse(node.kind === 'scalar' ? node.value : node.kind === 'map' ? {} : []);
    if (!result.ok) {
      this.add(node.at, path, result.error);
      return null;
    }
    return result.value;
  }

  duration(entry: RawEntry | undefined, path: string, limits: { minMs?: number; maxMs?: number } = {}): number | null {
    const value = this.parsed(entry, path, parseDuration);
    if (value === null || entry === undefined) return value;
    if (limits.minMs !== undefined && value < limits.minMs) {
      this.add(entry.value.at, path, `must be at least ${formatMs(limits.minMs)}`);
      return null;
    }
    if (limits.maxMs !== undefined && value > limits.maxMs) {
      this.add(entry.value.at, path, `must be at most ${formatMs(limits.maxMs)}`);
      return null;
    }
    return value;
  }

  size(entry: RawEntry | undefined, path: string, limits: { minBytes?: number } = {}): number | null {
    const value = this.parsed(entry, path, parseSize);
    if (value === null || entry === undefined) return value;
    if (limits.minBytes !== undefined && value < limits.minBytes) {
      this.add(entry.value.at, path, `must be at least ${limits.minBytes} bytes`);
      return null;
    }
    return value;
  }

  list(entry: RawEntry | undefined, path: string): readonly RawNode[] | null {
    if (entry === undefined) return null;
    const node = entry.value;
    if (node.kind !== 'seq') {
      this.add(node.at, path, `expected a list, got ${kindOf(node)}`);
      return null;
    }
    return node.items;
  }

  /** Throw every problem collected, ordered by file and line (problems without a line first). */
  fail(): void {
    if (this.problems.length === 0) return;
    const key = (p: string): [string, number] => {
      const m = /^(.*?):(\d+) {2}/.exec(p);
      return m === null ? ['', 0] : [m[1] ?? '', Number(m[2])];
    };
    const sorted = this.problems
      .map((p, i) => ({ p, i, k: key(p) }))
      .sort((a, b) => (a.k[0] < b.k[0] ? -1 : a.k[0] > b.k[0] ? 1 : 0) || a.k[1] - b.k[1] || a.i - b.i)
      .map((x) => x.p);
    throw new ConfigError(sorted);
  }
}

export function kindOf(node: RawNode): string {
  if (node.kind === 'map') return 'a map';
  if (node.kind === 'seq') return 'a list';
  return describe(node.value);
}

function formatMs(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}
