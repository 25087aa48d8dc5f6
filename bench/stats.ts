// Pure number work for the benchmark: percentiles of latency samples, median and spread of
// per-round figures, and the markdown tables RESULTS.md is made of. No I/O, no clock: tested alone.

/** The value at quantile `q` (0..1) of ascending `sorted`, nearest-rank; NaN when empty. */
export function quantileSorted(sorted: ArrayLike<number>, q: number): number {
  const n = sorted.length;
  if (n === 0) return Number.NaN;
  if (!(q >= 0 && q <= 1)) throw new RangeError(`quantile must be within 0..1, got ${String(q)}`);
  const rank = Math.max(1, Math.ceil(q * n));
  return sorted[rank - 1] as number;
}

/** A sorted copy of `values` as a Float64Array (numeric order, never string order). */
export function sortedCopy(values: ArrayLike<number>): Float64Array {
  const copy = Float64Array.from(values as ArrayLike<number>);
  copy.sort();
  return copy;
}

/** Median; the mean of the two middle values for an even count; NaN when empty. */
export function median(values: ArrayLike<number>): number {
  const sorted = sortedCopy(values);
  const n = sorted.length;
  if (n === 0) return Number.NaN;
  const mid = n >> 1;
  return n % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

/** Median of per-round figures with their range, and the range as a share of the median. */
export interface Summary {
  readonly median: number;
  readonly min: number;
  readonly max: number;
  readonly rounds: number;
  /** (max - min) / median, 0 for a single round; NaN when the median is 0 or NaN. */
  readonly spread: number;
}

export function summarize(values: readonly number[]): Summary {
  const finite = values.filter((v) => Number.isFinite(v));
  if (finite.length === 0) return { median: Number.NaN, min: Number.NaN, max: Number.NaN, rounds: 0, spread: Number.NaN };
  const m = median(finite);
  const min = Math.min(...finite);
  const max = Math.max(...finite);
  return { median: m, min, max, rounds: finite.length, spread: m === 0 ? Number.NaN : (max - min) / m };
}

/** Latency samples (ms) grown in place, without an array of boxed numbers per response. */
export class SampleBuffer {
  #data: Float64Array;
  #length = 0;

  constructor(initialCapacity = 1 << 16) {
    this.#data = new Float64Array(Math.max(16, initialCapacity));
  }

  push(value: number): void {
    if (this.#length === this.#data.length) {
      const grown = new Float64Array(this.#data.length * 2);
      grown.set(this.#data);
      this.#data = grown;
    }
    this.#data[this.#length++] = value;
  }

  get length(): number {
    return this.#length;
  }

  /** The samples sorted ascending (a copy). */
  sorted(): Float64Array {
    const view = this.#data.slice(0, this.#length);
    view.sort();
    return view;
  }
}

/** p50/p90/p99/max of latency samples in ms. */
export interface LatencyPercentiles {
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly max: number;
  readonly count: number;
}

export function latencyPercentiles(samples: SampleBuffer | ArrayLike<number>): LatencyPercentiles {
  const sorted = samples instanceof SampleBuffer ? samples.sorted() : sortedCopy(samples);
  return {
    p50: quantileSorted(sorted, 0.5),
    p90: quantileSorted(sorted, 0.9),
    p99: quantileSorted(sorted, 0.99),
    max: sorted.length === 0 ? Number.NaN : (sorted[sorted.length - 1] as number),
    count: sorted.length,
  };
}

// ---- formatting -------------------------------------------------------------------------------

const DASH = '–';

/** Requests per second, grouped by thousands: `12 345`. */
export function formatRps(value: number): string {
  if (!Number.isFinite(value)) return DASH;
  return Math.round(value).toLocaleString('en-US').replaceAll(',', ' ');
}

/** A duration given in ms, shown in µs below 1 ms and in ms above. */
export function formatMs(ms: number): string {
  if (!Number.isFinite(ms)) return DASH;
  if (ms < 0) return `−${formatMs(-ms)}`;
  if (ms < 1) return `${Math.round(ms * 1000)} µs`;
  if (ms < 10) return `${ms.toFixed(2)} ms`;
  if (ms < 100) return `${ms.toFixed(1)} ms`;
  return `${Math.round(ms)} ms`;
}

/** Microseconds, whole. */
export function formatUs(us: number): string {
  return Number.isFinite(us) ? `${Math.round(us)} µs` : DASH;
}

/** A ratio such as `0.87×`. */
export function formatRatio(ratio: number): string {
  return Number.isFinite(ratio) ? `${ratio.toFixed(2)}×` : DASH;
}

/** Spread as `±12%` (half the range over the median). */
export function formatSpread(summary: Summary): string {
  if (!Number.isFinite(summary.spread) || summary.rounds < 2) return DASH;
  return `±${Math.round((summary.spread / 2) * 100)}%`;
}

/** Bytes in MiB with one decimal. */
export function formatMiB(bytes: number): string {
  return Number.isFinite(bytes) ? `${(bytes / 1024 / 1024).toFixed(1)} MiB` : DASH;
}

/** A figure against a bar: `met`, `MISSED`, or `–` when it could not be measured. */
export function verdict(met: boolean | null): string {
  if (met === null) return DASH;
  return met ? 'met' : 'MISSED';
}

export type Align = 'left' | 'right';

/** A GitHub-flavoured markdown table; `|` inside cells is escaped. */
export function markdownTable(headers: readonly string[], rows: ReadonlyArray<readonly string[]>, align: readonly Align[] = []): string {
  const escape = (cell: string): string => cell.replaceAll('|', '\\|').replaceAll('\n', ' ');
  const width = headers.length;
  for (const [i, row] of rows.entries()) {
    if (row.length !== width) throw new RangeError(`row ${i} has ${row.length} cells, the header ${width}`);
  }
  const rule = headers.map((_, i) => (align[i] === 'right' ? '---:' : '---'));
  const line = (cells: readonly string[]): string => `| ${cells.map(escape).join(' | ')} |`;
  return [line(headers), `|${rule.map((r) => ` ${r} `).join('|')}|`, ...rows.map(line)].join('\n');
}
