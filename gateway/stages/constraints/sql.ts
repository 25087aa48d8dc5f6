// The aggregate-only SQL constraint: on a route marked `query`, the SQL in the body field (or the
// tool argument) must be one read-only aggregate statement over the role's tables.
import { GatewayError } from '../../errors.js';
import type { Role, Route } from '../../policy/types.js';
import { checkSql } from '../aggregate-sql.js';
import { refuse, type Refusals } from './refusals.js';

export function checkAggregateSql(label: string, route: Route, role: Role, fields: Readonly<Record<string, unknown>>, refusals: Refusals): void {
  const query = route.query;
  const constraint = role.query;
  if (query === null || constraint === null) return;
  const sql = Object.hasOwn(fields, query.field) ? fields[query.field] : undefined;
  const verdict = typeof sql === 'string' ? checkSql(sql, constraint, query.dialect) : { ok: false as const, problem: `${label} needs the SQL as a string in "${query.field}"` };
  if (!verdict.ok) {
    refuse(refusals, new GatewayError('not_aggregate', `${verdict.problem}; role "${role.name}" may run ${constraint.aggregateOnly ? 'aggregate queries only, ' : ''}over ${[...constraint.tables].join(', ')}`, {
      reasonDetail: `${verdict.problem}: ${typeof sql === 'string' ? JSON.stringify(sql.slice(0, 200)) : typeof sql}`,
    }));
  }
}
