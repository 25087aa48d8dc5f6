// Durations and sizes as written in YAML (`30s`, `5m`, `1MiB`), parsed once at load.
// Results, not exceptions, so the validator can collect every problem in one pass.

export type Parsed<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: string };

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const SIZE_UNITS: Record<string, number> = {
  b: 1,
  kb: 1000,
  mb: 1000 ** 2,
  gb: 1000 ** 3,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
};

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/;
const SIZE = /^(\d+(?:\.\d+)?)\s*([a-zA-Z]+)$/;

/** `30s` -> 30000 (milliseconds). A bare number is refused: the unit is never guessed. */
export function parseDuration(input: unknown): Parsed<number> {
  if (typeof input === 'number' || (typeof input === 'string' && /^\d+(\.\d+)?$/.test(input.trim()))) {
    return { ok: false, error: `"${String(input).trim()}" has no unit (use e.g. 30s)` };
  }
  if (typeof input !== 'string') return { ok: false, error: `expected a duration such as 30s, got ${describe(input)}` };
  const m = DURATION.exec(input.trim());
  const unit = m?.[2];
  if (m === null || unit === undefined) {
    return { ok: false, error: `"${input}" is not a duration (use a number and one of ms, s, m, h, d, e.g. 30s)` };
  }
  const value = Number(m[1]) * (DURATION_UNITS[unit] ?? 0);
  if (!Number.isFinite(value)) return { ok: false, error: `"${input}" is too large` };
  return { ok: true, value: Math.round(value) };
}

/** `1048576` or `1MiB` -> bytes. */
export function parseSize(input: unknown): Parsed<number> {
  if (typeof input === 'number') {
    if (Number.isSafeInteger(input) && input >= 0) return { ok: true, value: input };
    return { ok: false, error: `expected a whole number of bytes, got ${input}` };
  }
  if (typeof input !== 'string') return { ok: false, error: `expected a size such as 1048576 or 1MiB, got ${describe(input)}` };
  const text = input.trim();
  if (/^\d+$/.test(text)) return { ok: true, value: Number(text) };
  const m = SIZE.exec(text);
  const factor = m?.[2] === undefined ? undefined : SIZE_UNITS[m[2].toLowerCase()];
  if (m === null || factor === undefined) {
    return { ok: false, error: `"${input}" is not a size (bytes, or a number with B, KB, MB, GB, KiB, MiB, GiB)` };
  }
  const value = Math.floor(Number(m[1]) * factor);
  if (!Number.isSafeInteger(value)) return { ok: false, error: `"${input}" is too large` };
  return { ok: true, value };
}

export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a map';
  if (typeof value === 'string') return `"${value}"`;
  return String(value);
}
