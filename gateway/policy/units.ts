// Durations and sizes as written in YAML (`30s`, `5m`, `1MiB`), parsed once at load, plus the
// wording shared by every validation message. Results, not exceptions, so the validator can
// collect every problem in one pass.

export type Parsed<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: string };

const DURATION_UNITS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
/** Spelled exactly: `Mb` (megabits) or `mib` would be guesses. */
const SIZE_UNITS: Readonly<Record<string, number>> = {
  B: 1,
  kB: 1000,
  KB: 1000,
  MB: 1000 ** 2,
  GB: 1000 ** 3,
  KiB: 1024,
  MiB: 1024 ** 2,
  GiB: 1024 ** 3,
};

const NUMBER = /^\d+(?:\.\d+)?$/;
const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/;
const SIZE = /^(\d+(?:\.\d+)?) ?([A-Za-z]+)$/;

/**
 * `500ms`, `30s`, `5m`, `24h`, `7d` -> milliseconds (whole). A bare number is refused: the unit
 * is never guessed.
 */
export function parseDuration(input: unknown): Parsed<number> {
  if (typeof input === 'number') return { ok: false, error: `"${input}" has no unit (use e.g. ${input}s)` };
  if (typeof input !== 'string') return { ok: false, error: `expected a duration such as 30s, got ${describe(input)}` };
  const text = input.trim();
  if (NUMBER.test(text)) return { ok: false, error: `"${text}" has no unit (use e.g. ${text}s)` };
  const m = DURATION.exec(text);
  const factor = m?.[2] === undefined ? undefined : DURATION_UNITS[m[2]];
  if (m === null || factor === undefined) {
    return { ok: false, error: `"${input}" is not a duration (a number and one of ms, s, m, h, d, e.g. 30s)` };
  }
  const value = Math.round(Number(m[1]) * factor);
  if (!Number.isSafeInteger(value)) return { ok: false, error: `"${input}" is too large` };
  return { ok: true, value };
}

/** `1048576` (bytes), or a number with B, KB, MB, GB (powers of 1000) or KiB, MiB, GiB (of 1024) -> bytes. */
export function parseSize(input: unknown): Parsed<number> {
  if (typeof input === 'number') {
    if (Number.isSafeInteger(input) && input >= 0) return { ok: true, value: input };
    return { ok: false, error: `expected a whole number of bytes, got ${input}` };
  }
  if (typeof input !== 'string') return { ok: false, error: `expected a size such as 1048576 or 1MiB, got ${describe(input)}` };
  const text = input.trim();
  if (/^\d+$/.test(text)) {
    const value = Number(text);
    return Number.isSafeInteger(value) ? { ok: true, value } : { ok: false, error: `"${input}" is too large` };
  }
  const m = SIZE.exec(text);
  const factor = m?.[2] === undefined ? undefined : (Object.hasOwn(SIZE_UNITS, m[2]) ? SIZE_UNITS[m[2]] : undefined);
  if (m === null || factor === undefined) {
    return { ok: false, error: `"${input}" is not a size (bytes, or a number with B, KB, MB, GB, KiB, MiB, GiB, e.g. 1MiB)` };
  }
  const value = Math.floor(Number(m[1]) * factor);
  if (!Number.isSafeInteger(value)) return { ok: false, error: `"${input}" is too large` };
  return { ok: true, value };
}

/** A value as messages quote it: strings in quotes, containers by kind. */
export function describe(value: unknown): string {
  if (value === null || value === undefined) return 'nothing';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a map';
  if (typeof value === 'string') return `"${value}"`;
  return String(value);
}

/** `unknown key (allowed: a, b); did you mean "b"?` for a key that is not in `allowed`. */
export function unknownKeyMessage(key: string, allowed: readonly string[]): string {
  const near = nearest(key, allowed);
  return `unknown key (allowed: ${allowed.join(', ')})${near === null ? '' : `; did you mean "${near}"?`}`;
}

/** The allowed word a typo most likely meant: same letters ignoring case, or at most 2 edits away. */
export function nearest(word: string, allowed: readonly string[]): string | null {
  let best: string | null = null;
  let bestDistance = Math.min(3, Math.ceil(word.length / 2));
  for (const candidate of allowed) {
    const d = candidate.toLowerCase() === word.toLowerCase() ? 0 : editDistance(word, candidate);
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0] ?? 0;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j] ?? 0;
      row[j] = Math.min(above + 1, (row[j - 1] ?? 0) + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length] ?? 0;
}
