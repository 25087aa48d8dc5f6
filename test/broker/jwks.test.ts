// Scheduled key rotation with a hand-driven clock: the next key is published before it signs, the
// switch happens on schedule, and a superseded key leaves once its tokens can no longer be valid.
import t from 'tap';
import { join } from 'node:path';
import { createKeyRotation, PREPUBLISH_MS, RETAIN_SUPERSEDED_MS } from '../../gateway/broker/jwks.js';
import { openKeyStore } from '../../gateway/tokens/keys.js';
import { manualClock } from '../helpers/tokens.js';

t.test('publish ahead, switch on time, retire after the retention', async (t) => {
  const clock = manualClock();
  const keys = await openKeyStore({ dir: join(t.testdir({}), 'keys'), alg: 'EdDSA', clock });
  const rotated: string[] = [];
  const rotation = createKeyRotation({ keys, clock, rotateMs: 24 * 3_600_000, onRotated: (kid) => rotated.push(kid) });
  const first = keys.current().kid;

  await rotation.tick();
  t.same(rotated, [], 'nothing due yet');
  clock.advance(24 * 3_600_000 - PREPUBLISH_MS);
  await rotation.tick();
  t.equal(rotated.length, 1, 'the successor is published ahead');
  t.equal(keys.current().kid, first, 'but the current key still signs');
  t.equal(keys.publicJwks().keys.length, 2);
  await rotation.tick();
  t.equal(rotated.length, 1, 'one pending successor at a time');

  clock.advance(PREPUBLISH_MS);
  t.equal(keys.current().kid, rotated[0], 'the successor signs on schedule');
  clock.advance(RETAIN_SUPERSEDED_MS - 1000);
  await rotation.tick();
  t.ok(keys.publicJwks().keys.some((k) => k.kid === first), 'the old key stays while its tokens may be valid');
  clock.advance(2000);
  await rotation.tick();
  const left = keys.publicJwks().keys.map((k) => k.kid);
  t.notOk(left.includes(first), 'then it is removed');
  t.ok(left.includes(rotated[0] ?? ''), 'the signing key stays');
});
