import t from 'tap';
import { REASONS, GatewayError } from '../gateway/errors.js';
t.test('catalog', async (t) => {
  const e = new GatewayError('out_of_scope', 'x');
  t.equal(e.status, REASONS.out_of_scope.status);
});
