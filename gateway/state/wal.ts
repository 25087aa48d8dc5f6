// The memory driver's write-ahead journal. The state file is a snapshot; every change after it is
// one JSON line appended to `<state file>.wal.<generation>` and made durable with fdatasync before
// the call that made it resolves. Changes made while a sync is running share the next one (group
// commit), so a kill, a revocation or an ended session costs one small append and one data sync,
// not a rewrite of the whole state (100,000 revocations are some 3 MB) with two fsyncs.
//
// Generations: the snapshot names the journal generation it is followed by (`journal: N`).
// Compaction opens generation N+1, switches new appends to it, writes a new snapshot naming N+1
// (temp file, fsync, rename, fsync of the folder), then deletes the older journals. A crash at any
// step leaves a snapshot and every journal from its generation on, so a start replays the
// snapshot and then each journal `>= N` in order and loses nothing that was acknowledged.
//
// A last line cut by a crash (no newline, or not JSON) was never acknowledged: it is dropped with
// a warning, like a torn audit line. A bad line with lines after it is corruption and stops the
// start, like an unreadable state file.
import { open, readdir, readFile, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/** Path of journal generation `gen` of state file `file`. */
export function walPath(file: string, gen: number): string {
  return `${file}.wal.${gen}`;
}

export interface WalFileName {
  readonly gen: number;
  readonly path: string;
}

/** The journals of `file` on disk, oldest generation first. */
export async function listWals(file: string): Promise<WalFileName[]> {
  const dir = dirname(file);
  const prefix = `${basename(file)}.wal.`;
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  const found: WalFileName[] = [];
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const rest = name.slice(prefix.length);
    if (!/^(0|[1-9][0-9]{0,14})$/.test(rest)) continue;
    found.push({ gen: Number(rest), path: join(dir, name) });
  }
  return found.sort((a, b) => a.gen - b.gen);
}

export interface ParsedWal {
  /** One parsed JSON value per complete line, in order. */
  readonly records: unknown[];
  /** The cut last line that was dropped, when there was one. */
  readonly torn: string | null;
}

/** Why a journal cannot be replayed (a bad line with lines after it). */
export class WalCorruptError extends Error {
  constructor(
    readonly path: string,
    readonly line: number,
  ) {
    super(`journal ${path} line ${line} is not a journal record`);
    this.name = 'WalCorruptError';
  }
}

/**
 * The lines of one journal. Only the last line may be cut (no newline, or not JSON: a write the
 * crash interrupted, never acknowledged); any other bad line throws WalCorruptError.
 */
export function parseWal(text: string, path: string): ParsedWal {
  const records: unknown[] = [];
  const lines = text.split('\n');
  // After the last newline: empty when the file ends cleanly, else a line without its newline.
  const tail = lines.pop() as string;
  let torn: string | null = tail.length > 0 ? tail : null;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] as string;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      // The last complete line may hold what a power cut left (e.g. zeros) when nothing follows it.
      if (i === lines.length - 1 && torn === null) {
        torn = line;
        break;
      }
      throw new WalCorruptError(path, i + 1);
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new WalCorruptError(path, i + 1);
    records.push(value);
  }
  return { records, torn };
}

/** Read one journal; null when it is gone (a compaction removed it meanwhile). */
export async function readWal(path: string): Promise<ParsedWal | null> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
  return parseWal(text, path);
}

interface Waiter {
  readonly resolve: () => void;
  readonly reject: (error: unknown) => void;
}

/**
 * Appends lines to one open journal. Lines handed over while a write and sync run are written
 * together after it, with one fdatasync for all of them. Once a write fails the journal is
 * `broken` (it may end in part of a line): nothing more is appended to it, and the store starts a
 * new generation with a full snapshot instead.
 */
export class WalWriter {
  #pending: string[] = [];
  #waiters: Waiter[] = [];
  #running: Promise<void> | null = null;
  #bytes: number;
  #broken: unknown = null;

  constructor(
    private readonly handle: FileHandle,
    readonly gen: number,
    bytes = 0,
  ) {
    this.#bytes = bytes;
  }

  /** Open (creating) generation `gen` of `file` for appending. */
  static async open(file: string, gen: number): Promise<WalWriter> {
    const handle = await open(walPath(file, gen), 'a', 0o600);
    try {
      const { size } = await handle.stat();
      return new WalWriter(handle, gen, size);
    } catch (error) {
      await handle.close();
      throw error;
    }
  }

  /** Bytes written (and handed over) so far. */
  get bytes(): number {
    return this.#bytes;
  }

  get broken(): boolean {
    return this.#broken !== null;
  }

  /** Append `text` (whole lines); resolves once it is on disk. */
  append(text: string): Promise<void> {
    if (this.#broken !== null) return Promise.reject(this.#broken);
    this.#bytes += Buffer.byteLength(text);
    this.#pending.push(text);
    const done = new Promise<void>((resolve, reject) => this.#waiters.push({ resolve, reject }));
    this.#running ??= this.#drain();
    return done;
  }

  async #drain(): Promise<void> {
    try {
      while (this.#pending.length > 0) {
        const text = this.#pending.join('');
        const waiters = this.#waiters;
        this.#pending = [];
        this.#waiters = [];
        try {
          const data = Buffer.from(text);
          let written = 0;
          while (written < data.length) written += (await this.handle.write(data, written, data.length - written)).bytesWritten;
          await this.handle.datasync();
        } catch (error) {
          this.#broken = error;
          for (const w of [...waiters, ...this.#waiters]) w.reject(error);
          this.#pending = [];
          this.#waiters = [];
          return;
        }
        for (const w of waiters) w.resolve();
      }
    } finally {
      this.#running = null;
    }
  }

  /** Resolves once every line handed over is written (or failed). */
  async settled(): Promise<void> {
    while (this.#running !== null) await this.#running;
  }

  async close(): Promise<void> {
    await this.settled();
    await this.handle.close();
  }
}
