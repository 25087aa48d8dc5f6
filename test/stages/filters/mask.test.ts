// The masking transform alone: the same output however the input is cut into chunks (keys and
// masked values split across chunks), strict JSON, and the path rules.
import t from 'tap';
import { JsonMasker, MaskError } from '../../../gateway/stages/filters/mask.js';
import { parseMaskPath } from '../../../gateway/policy/compile.js';
import type { MaskPlan, MaskRule } from '../../../gateway/policy/types.js';

function plan(...paths: string[]): MaskPlan {
  return { paths, rules: paths.map((p) => parseMaskPath(p) as MaskRule) };
}

function run(p: MaskPlan, text: string, chunk: number): string {
  const m = new JsonMasker(p);
  const bytes = Buffer.from(text);
  const out: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += chunk) out.push(...m.write(bytes.subarray(i, i + chunk)));
  out.push(...m.end());
  return Buffer.concat(out).toString();
}

const doc = '{ "id": 12345678901234567890, "email": "a@b.example", "naïve": "é", "em\\u0061il": {"x": [1, 2]}, "list": [{"email": null, "keep": true}, {"phone": -1.5e3}], "deep": {"a": {"phone": ["x"]}}, "m.n": {"phone": 1} }';

t.test('chunking never changes the output', async (t) => {
  const p = plan('email', 'deep.a.phone', '["m.n"].phone', '$.id');
  const whole = run(p, doc, doc.length);
  t.same(JSON.parse(whole), {
    id: '[masked]',
    email: '[masked]',
    naïve: 'é',
    list: [{ email: '[masked]', keep: true }, { phone: -1.5e3 }],
    deep: { a: { phone: '[masked]' } },
    'm.n': { phone: '[masked]' },
  });
  t.match(whole, /"naïve": "é"/, 'unmasked bytes pass unchanged');
  for (const size of [1, 2, 3, 5, 7, 16]) t.equal(run(p, doc, size), whole, `chunks of ${size}`);
});

t.test('anchored paths only match from the root', async (t) => {
  t.same(JSON.parse(run(plan('$.email'), '{"email":1,"inner":{"email":2}}', 3)), { email: '[masked]', inner: { email: 2 } });
  t.same(JSON.parse(run(plan('inner.*'), '{"a":1,"inner":{"b":2,"c":[3]}}', 4)), { a: 1, inner: { b: '[masked]', c: '[masked]' } });
});

const invalid = ['', '{', '{"a":1,}', '{"a" 1}', '[1 2]', '{"a":tru}', '{"a":01}', '{"a":"\u0001"}', '{"a":"\\x"}', '{"a":1}]', '{"a":1} x', "{'a':1}", '{"a":1e}', '[' .repeat(300) + ']'.repeat(300)];
for (const text of invalid) {
  t.test(`refused: ${JSON.stringify(text).slice(0, 40)}`, async (t) => {
    let caught: unknown = null;
    try {
      run(plan('a'), text, 2);
    } catch (error) {
      caught = error;
    }
    t.ok(caught instanceof MaskError, String(caught));
  });
}
