// A strict reader of the Prometheus text exposition format (version 0.0.4), so tests can assert
// that /metrics parses and read exact sample values. It throws on anything a scraper would refuse.

export interface Exposition {
  /** Sample value by series key, e.g. `agentgate_requests_total{backend="crm",decision="allow",reason="none"}`. */
  readonly samples: ReadonlyMap<string, number>;
  /** Metric family name -> type (counter, gauge, histogram, summary, untyped). */
  readonly types: ReadonlyMap<string, string>;
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

export function parseExposition(text: string): Exposition {
  if (!text.endsWith('\n')) throw new Error('exposition must end with a newline');
  const samples = new Map<string, number>();
  const types = new Map<string, string>();
  const helps = new Set<string>();
  const lines = text.split('\n');
  lines.pop();
  lines.forEach((line, i) => {
    const where = `line ${i + 1}: ${line}`;
    if (line === '') return;
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line);
      if (m === null) return; // a plain comment
      const [, kind, name = '', rest = ''] = m;
      if (!NAME.test(name)) throw new Error(`bad metric name in ${where}`);
      if (kind === 'TYPE') {
        if (!TYPES.has(rest)) throw new Error(`unknown type in ${where}`);
        if (types.has(name)) throw new Error(`second TYPE for ${name} at ${where}`);
        types.set(name, rest);
      } else {
        if (helps.has(name)) throw new Error(`second HELP for ${name} at ${where}`);
        helps.add(name);
      }
      return;
    }
    const { name, labels, value } = parseSample(line, where);
    const family = familyOf(name, types);
    if (family === null) throw new Error(`sample before its TYPE (or of no family) at ${where}`);
    const type = types.get(family);
    if (type === 'histogram' && name.endsWith('_bucket') && !labels.has('le')) throw new Error(`bucket without le at ${where}`);
    const key = seriesKey(name, labels);
    if (samples.has(key)) throw new Error(`duplicate series ${key} at ${where}`);
    samples.set(key, value);
  });
  return { samples, types };
}

/** The canonical key of a series: labels sorted by name. */
export function seriesKey(name: string, labels: ReadonlyMap<string, string> | Record<string, string> = new Map()): string {
  const entries = labels instanceof Map ? [...labels.entries()] : Object.entries(labels);
  if (entries.length === 0) return name;
  entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `${name}{${entries.map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(',')}}`;
}

/** Sum of every sample of `name` whose labels include `match`. */
export function sumOf(exposition: Exposition, name: string, match: Record<string, string> = {}): number {
  let total = 0;
  for (const [key, value] of exposition.samples) {
    if (key !== name && !key.startsWith(`${name}{`)) continue;
    if (Object.entries(match).every(([k, v]) => key.includes(`${k}=${JSON.stringify(v)}`))) total += value;
  }
  return total;
}

function familyOf(sample: string, types: ReadonlyMap<string, string>): string | null {
  if (types.has(sample)) return sample;
  for (const suffix of ['_bucket', '_sum', '_count', '_total', '_created']) {
    if (sample.endsWith(suffix)) {
      const base = sample.slice(0, -suffix.length);
      if (types.has(base)) return base;
    }
  }
  return null;
}

function parseSample(line: string, where: string): { name: string; labels: Map<string, string>; value: number } {
  let i = 0;
  while (i < line.length && line[i] !== '{' && line[i] !== ' ') i++;
  const name = line.slice(0, i);
  if (!NAME.test(name)) throw new Error(`bad metric name in ${where}`);
  const labels = new Map<string, string>();
  if (line[i] === '{') {
    i++;
    while (line[i] !== '}') {
      const eq = line.indexOf('=', i);
      if (eq === -1) throw new Error(`unterminated labels in ${where}`);
      const label = line.slice(i, eq);
      if (!LABEL.test(label)) throw new Error(`bad label name "${label}" in ${where}`);
      if (line[eq + 1] !== '"') throw new Error(`label value not quoted in ${where}`);
      let j = eq + 2;
      let value = '';
      for (;;) {
        const c = line[j];
        if (c === undefined) throw new Error(`unterminated label value in ${where}`);
        if (c === '"') break;
        if (c === '\\') {
          const next = line[j + 1];
          if (next === 'n') value += '\n';
          else if (next === '\\' || next === '"') value += next;
          else throw new Error(`bad escape in ${where}`);
          j += 2;
          continue;
        }
        value += c;
        j++;
      }
      if (labels.has(label)) throw new Error(`label ${label} twice in ${where}`);
      labels.set(label, value);
      i = j + 1;
      if (line[i] === ',') i++;
      else if (line[i] !== '}') throw new Error(`expected , or } in ${where}`);
    }
    i++;
  }
  if (line[i] !== ' ') throw new Error(`expected a space before the value in ${where}`);
  const parts = line.slice(i + 1).split(' ');
  if (parts.length > 2) throw new Error(`trailing text in ${where}`);
  const raw = parts[0] ?? '';
  const value = raw === '+Inf' ? Infinity : raw === '-Inf' ? -Infinity : raw === 'NaN' ? NaN : Number(raw);
  if (raw === '' || (Number.isNaN(value) && raw !== 'NaN')) throw new Error(`bad value in ${where}`);
  if (parts[1] !== undefined && !/^-?\d+$/.test(parts[1])) throw new Error(`bad timestamp in ${where}`);
  return { name, labels, value };
}
