// Durations and sizes as written in YAML: what parses, to how much, and the exact refusals.
import t from 'tap';
import { nearest, parseDuration, parseSize, unknownKeyMessage } from '../../gateway/policy/units.js';

const durations: ReadonlyArray<{ name: string; input: unknown; expect: number | string }> = [
  { name: 'milliseconds', input: '500ms', expect: 500 },
  { name: 'seconds', input: '30s', expect: 30_000 },
  { name: 'minutes', input: '5m', expect: 300_000 },
  { name: 'hours', input: '24h', expect: 86_400_000 },
  { name: 'days', input: '7d', expect: 604_800_000 },
  { name: 'fraction', input: '1.5h', expect: 5_400_000 },
  { name: 'zero', input: '0s', expect: 0 },
  { name: 'surrounding space', input: ' 10s ', expect: 10_000 },
  { name: 'YAML number', input: 30, expect: '"30" has no unit (use e.g. 30s)' },
  { name: 'digits in a string', input: '30', expect: '"30" has no unit (use e.g. 30s)' },
  { name: 'unknown unit', input: '30 sec', expect: '"30 sec" is not a duration (a number and one of ms, s, m, h, d, e.g. 30s)' },
  { name: 'upper-case unit', input: '30S', expect: '"30S" is not a duration (a number and one of ms, s, m, h, d, e.g. 30s)' },
  { name: 'negative', input: '-5s', expect: '"-5s" is not a duration (a number and one of ms, s, m, h, d, e.g. 30s)' },
  { name: 'two units', input: '1h30m', expect: '"1h30m" is not a duration (a number and one of ms, s, m, h, d, e.g. 30s)' },
  { name: 'empty', input: '', expect: '"" is not a duration (a number and one of ms, s, m, h, d, e.g. 30s)' },
  { name: 'boolean', input: true, expect: 'expected a duration such as 30s, got true' },
  { name: 'nothing', input: null, expect: 'expected a duration such as 30s, got nothing' },
  { name: 'list', input: [], expect: 'expected a duration such as 30s, got a list' },
  { name: 'too large', input: `${'9'.repeat(20)}d`, expect: `"${'9'.repeat(20)}d" is too large` },
];

for (const c of durations) {
  t.test(`duration: ${c.name}`, async (t) => {
    const parsed = parseDuration(c.input);
    t.same(parsed, typeof c.expect === 'number' ? { ok: true, value: c.expect } : { ok: false, error: c.expect });
  });
}

const sizes: ReadonlyArray<{ name: string; input: unknown; expect: number | string }> = [
  { name: 'plain bytes (YAML number)', input: 1048576, expect: 1_048_576 },
  { name: 'plain bytes (string)', input: '2048', expect: 2048 },
  { name: 'KiB', input: '64KiB', expect: 65_536 },
  { name: 'MiB', input: '1MiB', expect: 1_048_576 },
  { name: 'GiB', input: '1GiB', expect: 1_073_741_824 },
  { name: 'MB (decimal)', input: '10MB', expect: 10_000_000 },
  { name: 'KB (decimal)', input: '64KB', expect: 64_000 },
  { name: 'B', input: '512B', expect: 512 },
  { name: 'kB', input: '2kB', expect: 2000 },
  { name: 'unit in lower case', input: '1mib', expect: '"1mib" is not a size (bytes, or a number with B, KB, MB, GB, KiB, MiB, GiB, e.g. 1MiB)' },
  { name: 'one space before the unit', input: '200 MiB', expect: 209_715_200 },
  { name: 'fraction rounds down', input: '1.5KiB', expect: 1536 },
  { name: 'zero', input: 0, expect: 0 },
  { name: 'negative number', input: -1, expect: 'expected a whole number of bytes, got -1' },
  { name: 'fractional number', input: 1.5, expect: 'expected a whole number of bytes, got 1.5' },
  { name: 'unknown unit', input: '10 parsecs', expect: '"10 parsecs" is not a size (bytes, or a number with B, KB, MB, GB, KiB, MiB, GiB, e.g. 1MiB)' },
  { name: 'bits are not bytes', input: '10Mb', expect: '"10Mb" is not a size (bytes, or a number with B, KB, MB, GB, KiB, MiB, GiB, e.g. 1MiB)' },
  { name: 'no number', input: 'MiB', expect: '"MiB" is not a size (bytes, or a number with B, KB, MB, GB, KiB, MiB, GiB, e.g. 1MiB)' },
  { name: 'boolean', input: false, expect: 'expected a size such as 1048576 or 1MiB, got false' },
  { name: 'map', input: {}, expect: 'expected a size such as 1048576 or 1MiB, got a map' },
  { name: 'too large', input: '99999999999GiB', expect: '"99999999999GiB" is too large' },
];

for (const c of sizes) {
  t.test(`size: ${c.name}`, async (t) => {
    const parsed = parseSize(c.input);
    t.same(parsed, typeof c.expect === 'number' ? { ok: true, value: c.expect } : { ok: false, error: c.expect });
  });
}

t.test('did you mean', async (t) => {
  const allowed = ['description', 'grants', 'readOnly', 'token'];
  t.equal(nearest('readonly', allowed), 'readOnly', 'case only');
  t.equal(nearest('grant', allowed), 'grants', 'one edit');
  t.equal(nearest('tokn', allowed), 'token', 'one deletion');
  t.equal(nearest('colour', allowed), null, 'nothing close');
  t.equal(nearest('x', ['y', 'ttl']), null, 'short words need a close match');
  t.equal(unknownKeyMessage('readonly', allowed), 'unknown key (allowed: description, grants, readOnly, token); did you mean "readOnly"?');
  t.equal(unknownKeyMessage('colour', allowed), 'unknown key (allowed: description, grants, readOnly, token)');
});
