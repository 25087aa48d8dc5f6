// Aggregate-only SQL, table-driven: what a data agent may run over the report pool and the attacks
// the rule exists to stop. The same tables run end to end in test/e2e/constraints-query.test.ts.
import t from 'tap';
import { checkSql } from '../../gateway/stages/aggregate-sql.js';
import { ACCEPTED_QUERIES, REFUSED_QUERIES } from '../fixtures/sql-queries.js';

const constraint = { aggregateOnly: true, tables: new Set(['sales', 'tickets_daily']) };

t.test('accepted aggregate queries', async (t) => {
  t.ok(ACCEPTED_QUERIES.length >= 15);
  for (const c of ACCEPTED_QUERIES) {
    t.same(checkSql(c.sql, constraint, 'sqlite'), { ok: true }, c.name);
  }
});

t.test('refused queries', async (t) => {
  t.ok(REFUSED_QUERIES.length >= 30);
  for (const c of REFUSED_QUERIES) {
    const verdict = checkSql(c.sql, constraint, 'sqlite');
    t.equal(verdict.ok, false, c.name);
    if (!verdict.ok) t.match(verdict.problem, c.why, `${c.name}: ${verdict.problem}`);
  }
});

t.test('aggregateOnly: false still limits tables and statements', async (t) => {
  const loose = { aggregateOnly: false, tables: new Set(['sales']) };
  t.same(checkSql('SELECT region, amount FROM sales WHERE amount > 10', loose, 'sqlite'), { ok: true });
  t.match(checkSql('SELECT day FROM tickets_daily', loose, 'sqlite'), { ok: false, problem: /table "tickets_daily"/ });
  t.match(checkSql('DELETE FROM sales', loose, 'sqlite'), { ok: false, problem: /only SELECT/ });
});

t.test('other dialects load their own grammar', async (t) => {
  t.same(checkSql('SELECT region, SUM(amount) FROM sales GROUP BY region', constraint, 'postgresql'), { ok: true });
  t.match(checkSql('SELECT * FROM sales', constraint, 'mysql'), { ok: false });
});

t.test('hostile sizes and nesting are refused, not crashed on', async (t) => {
  t.match(checkSql(`SELECT COUNT(*) FROM sales WHERE region = '${'x'.repeat(20_000)}'`, constraint, 'sqlite'), { ok: false, problem: /longer than/ });
  const deep = `SELECT COUNT(*) FROM sales WHERE ${'('.repeat(2000)}1${')'.repeat(2000)} = 1`;
  t.equal(checkSql(deep, constraint, 'sqlite').ok, false);
});
