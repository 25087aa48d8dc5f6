// Aggregate-only SQL: decides whether one SQL text may run for a role with `query: { aggregateOnly,
// tables }`. The text is parsed with node-sql-parser (the only importer of it); anything the parser
// or this checker does not understand is refused, never guessed. Pure: no I/O, no state per call.
import { createRequire } from 'node:module';
import type { QueryConstraint, SqlDialect } from '../policy/types.js';

/** Longest SQL text checked; longer is refused (bounds parser time on hostile input). */
export const MAX_SQL_CHARS = 16_384;

export type SqlVerdict = { readonly ok: true } | { readonly ok: false; readonly problem: string };

/** Aggregates whose result is one number or one value per group. */
const AGGREGATES = new Set(['COUNT', 'SUM', 'AVG', 'MIN', 'MAX', 'TOTAL']);
/**
 * Scalar functions allowed anywhere. Aggregates that rebuild raw rows in one cell
 * (GROUP_CONCAT, STRING_AGG, JSON_GROUP_ARRAY, ARRAY_AGG, ...) are deliberately absent, and so is
 * everything that reaches outside the data (load_extension, readfile, sqlite_version, ...).
 */
const SCALARS = new Set([
  'ROUND', 'ABS', 'COALESCE', 'IFNULL', 'NULLIF', 'IIF', 'LOWER', 'UPPER', 'LENGTH', 'SUBSTR', 'SUBSTRING', 'TRIM',
  'LTRIM', 'RTRIM', 'DATE', 'TIME', 'DATETIME', 'STRFTIME', 'JULIANDAY', 'CEIL', 'CEILING', 'FLOOR', 'MIN', 'MAX',
  'DATE_TRUNC', 'EXTRACT', 'YEAR', 'MONTH', 'DAY', 'SIGN', 'POWER', 'SQRT',
]);
/** Expression node types that are plain constants. */
const LITERALS = new Set(['number', 'bigint', 'single_quote_string', 'string', 'natural_string', 'bool', 'boolean', 'null', 'hex_string', 'full_hex_string', 'bit_string', 'star_count']);
const BINARY_OPERATORS = new Set([
  '+', '-', '*', '/', '%', '||', '=', '==', '!=', '<>', '<', '<=', '>', '>=', 'AND', 'OR', 'IN', 'NOT IN', 'BETWEEN', 'NOT BETWEEN',
  'LIKE', 'NOT LIKE', 'GLOB', 'IS', 'IS NOT', 'ESCAPE',
]);

interface ParserInstance {
  astify(sql: string, options: { database: string }): unknown;
}

const require = createRequire(import.meta.url);
const parsers = new Map<SqlDialect, ParserInstance>();

/** One parser per dialect, loaded on first use (each grammar is a few hundred kB). */
function parserFor(dialect: SqlDialect): ParserInstance {
  let parser = parsers.get(dialect);
  if (parser === undefined) {
    const module = require(`node-sql-parser/build/${dialect}.js`) as { Parser: new () => ParserInstance };
    parser = new module.Parser();
    parsers.set(dialect, parser);
  }
  return parser;
}

/** Load the grammars a policy uses at load time, so the first query pays no loading cost. */
export function preloadSqlDialect(dialect: SqlDialect): void {
  parserFor(dialect);
}

class Refusal extends Error {}

/**
 * Check `sql` against the role's constraint: exactly one read-only SELECT, only listed tables,
 * and (with aggregateOnly) every result row an aggregate. Returns a verdict with the reason.
 */
export function checkSql(sql: string, constraint: QueryConstraint, dialect: SqlDialect): SqlVerdict {
  try {
    lexicalCheck(sql);
    let ast: unknown;
    try {
      ast = parserFor(dialect).astify(sql, { database: dialect });
    } catch (error) {
      // Syntax errors, and stack overflows on pathological nesting: unparseable is refused.
      throw new Refusal(`the SQL cannot be parsed (${error instanceof Error ? error.message.slice(0, 120) : 'parser failure'})`);
    }
    const statements = Array.isArray(ast) ? ast : [ast];
    if (statements.length !== 1) throw new Refusal('send exactly one SQL statement');
    const checker = new ShapeChecker(constraint);
    checker.select(statements[0], new Set());
    return { ok: true };
  } catch (error) {
    if (error instanceof Refusal) return { ok: false, problem: error.message };
    if (error instanceof RangeError) return { ok: false, problem: 'the SQL is nested too deeply to check' };
    throw error;
  }
}

/**
 * What the parser and the database could disagree on is refused before parsing: comments (a `#`
 * is a comment to the parser and not to SQLite; MySQL runs `/*!` comments as code), a `;` followed by
 * anything, control characters.
 */
function lexicalCheck(sql: string): void {
  if (sql.length > MAX_SQL_CHARS) throw new Refusal(`the SQL is longer than ${MAX_SQL_CHARS} characters`);
  let quote: string | null = null;
  for (let i = 0; i < sql.length; i++) {
    const c = sql[i] ?? '';
    const code = sql.charCodeAt(i);
    if (code < 0x20 && c !== '\t' && c !== '\n' && c !== '\r') throw new Refusal('the SQL contains control characters');
    if (quote !== null) {
      if (c === quote) {
        if (sql[i + 1] === quote) i++;
        else quote = null;
      }
      continue;
    }
    if (c === "'" || c === '"' || c === '`') quote = c;
    else if (c === '[') quote = ']';
    else if ((c === '-' && sql[i + 1] === '-') || (c === '/' && sql[i + 1] === '*') || c === '#') throw new Refusal('comments are not allowed in checked SQL');
    else if (c === ';' && sql.slice(i + 1).trim() !== '') throw new Refusal('send exactly one SQL statement (text after ";")');
    else if (c === '\\') throw new Refusal('backslashes outside string literals are not allowed');
  }
  if (quote !== null) throw new Refusal('the SQL has an unterminated quote');
}

type SourceKind = 'raw' | 'aggregate';
/** Tables in scope in one SELECT: alias (or name) -> whether its rows are raw or already aggregated. */
type Sources = Map<string, SourceKind>;

interface SelectScope {
  readonly sources: Sources;
  readonly allAggregated: boolean;
  readonly groupKeys: ReadonlySet<string>;
  readonly aliases: ReadonlySet<string>;
}

/** Walks one AST; every node type it does not know is refused. */
class ShapeChecker {
  readonly #constraint: QueryConstraint;

  constructor(constraint: QueryConstraint) {
    this.#constraint = constraint;
  }

  /** A SELECT (with its UNION arms) whose result rows must all be aggregates. */
  select(node: unknown, ctes: ReadonlySet<string>): void {
    const s = record(node);
    const type = s.type;
    if (type !== 'select') throw new Refusal(`only SELECT is allowed, not ${typeof type === 'string' ? type.toUpperCase() : 'this statement'}`);
    for (const key of ['into', 'for_update', 'locking_read', 'window']) {
      const value = s[key];
      if (value !== undefined && value !== null && !(typeof value === 'object' && isEmptyInto(value))) throw new Refusal(`${key.toUpperCase().replace('_', ' ')} is not allowed`);
    }
    const visible = new Set(ctes);
    if (s.with !== null && s.with !== undefined) {
      for (const cte of list(s.with, 'WITH')) {
        const c = record(cte);
        if (c.recursive === true) throw new Refusal('recursive CTEs are not allowed');
        const name = identifier(record(c.name).value, 'CTE name');
        this.select(record(c.stmt).ast ?? c.stmt, visible);
        visible.add(name);
      }
    }
    const sources: Sources = new Map();
    for (const item of s.from === null || s.from === undefined ? [] : list(s.from, 'FROM')) this.fromItem(item, visible, sources);
    if (s.where !== null && s.where !== undefined) this.filter(s.where, visible);

    const allAggregated = sources.size > 0 && [...sources.values()].every((k) => k === 'aggregate');
    const columns = s.columns === '*' ? [{ expr: { type: 'column_ref', column: '*' } }] : list(s.columns, 'select list');
    const groupKeys = new Set<string>();
    const groupBy = s.groupby === null || s.groupby === undefined ? [] : list(record(s.groupby).columns ?? s.groupby, 'GROUP BY');
    for (const g of groupBy) {
      this.filter(g, visible);
      const gr = record(g);
      if (gr.type === 'number' && typeof gr.value === 'number') {
        const target = columns[gr.value - 1];
        if (target === undefined) throw new Refusal(`GROUP BY ${gr.value} names no column`);
        groupKeys.add(canonical(record(target).expr));
      } else {
        groupKeys.add(canonical(g));
      }
    }
    const aliases = new Set<string>();
    for (const column of columns) {
      const as = record(column).as;
      if (typeof as === 'string') {
        aliases.add(as.toLowerCase());
        if (groupKeys.has(`c:${as.toLowerCase()}`)) groupKeys.add(canonical(record(column).expr));
      }
    }
    const scope: SelectScope = { sources, allAggregated, groupKeys, aliases };
    let aggregated = groupBy.length > 0 || allAggregated;
    for (const column of columns) {
      const expr = record(column).expr;
      if (this.output(expr, scope, visible, false)) aggregated = true;
    }
    if (s.having !== null && s.having !== undefined && this.output(s.having, scope, visible, false)) aggregated = true;
    for (const order of s.orderby === null || s.orderby === undefined ? [] : list(s.orderby, 'ORDER BY')) {
      const expr = record(order).expr;
      const r = record(expr);
      if (r.type === 'number') continue;
      this.output(expr, scope, visible, false);
    }
    if (s.limit !== null && s.limit !== undefined) {
      for (const v of list(record(s.limit).value ?? [], 'LIMIT')) if (!LITERALS.has(String(record(v).type))) throw new Refusal('LIMIT and OFFSET take numbers');
    }
    if (this.#constraint.aggregateOnly && sources.size > 0 && !aggregated) {
      throw new Refusal('the query returns raw rows: use aggregate functions (COUNT, SUM, AVG, MIN, MAX), or GROUP BY');
    }
    if (s._next !== null && s._next !== undefined) this.select(s._next, ctes);
  }

  fromItem(item: unknown, ctes: ReadonlySet<string>, sources: Sources): void {
    const f = record(item);
    let kind: SourceKind;
    let name: string;
    if (typeof f.table === 'string' && f.expr === undefined) {
      if (f.db !== null && f.db !== undefined) throw new Refusal(`schema-qualified tables are not allowed ("${String(f.db)}.${f.table}")`);
      if (f.schema !== null && f.schema !== undefined) throw new Refusal(`schema-qualified tables are not allowed ("${f.table}")`);
      const table = f.table.toLowerCase();
      if (ctes.has(table)) kind = 'aggregate';
      else if (this.#constraint.tables.has(table)) kind = 'raw';
      else throw new Refusal(`table "${f.table}" is not one this role may query (allowed: ${[...this.#constraint.tables].join(', ')})`);
      name = typeof f.as === 'string' ? f.as.toLowerCase() : table;
    } else if (f.expr !== undefined && f.expr !== null && record(f.expr).ast !== undefined) {
      this.select(record(f.expr).ast, ctes);
      kind = 'aggregate';
      name = typeof f.as === 'string' ? f.as.toLowerCase() : `#${sources.size}`;
    } else {
      throw new Refusal('only tables and subqueries may appear in FROM (no table functions, VALUES or other sources)');
    }
    if (f.on !== null && f.on !== undefined) this.filter(f.on, ctes);
    if (f.using !== null && f.using !== undefined) for (const u of list(f.using, 'USING')) identifier(typeof u === 'string' ? u : record(u).value, 'USING column');
    sources.set(name, kind);
  }

  /** WHERE, ON, GROUP BY: columns may be raw; subqueries must themselves be aggregate. */
  filter(node: unknown, ctes: ReadonlySet<string>): void {
    this.expression(node, ctes, (column) => column, false);
  }

  /**
   * A select-list, HAVING or ORDER BY expression: raw columns only inside aggregates or as group
   * keys. Returns true when it contains an aggregate.
   */
  output(node: unknown, scope: SelectScope, ctes: ReadonlySet<string>, insideAggregate: boolean): boolean {
    let found = false;
    this.expression(
      node,
      ctes,
      (column, inAggregate) => {
        const c = record(column);
        const name = typeof c.column === 'string' ? c.column : String(c.value);
        if (name === '*') throw new Refusal('SELECT * is not allowed; name aggregates or grouped columns');
        if (inAggregate || insideAggregate || !this.#constraint.aggregateOnly) return column;
        if (scope.groupKeys.has(canonical(column))) return column;
        const table = typeof c.table === 'string' ? c.table.toLowerCase() : null;
        if (table !== null && scope.sources.get(table) === 'aggregate') return column;
        if (table === null && scope.allAggregated) return column;
        if (table === null && scope.aliases.has(name.toLowerCase())) return column;
        throw new Refusal(`column "${name}" is returned raw: wrap it in an aggregate or GROUP BY it`);
      },
      insideAggregate,
      (key) => {
        if (scope.groupKeys.has(key)) return true;
        return false;
      },
      () => {
        found = true;
      },
    );
    return found;
  }

  /**
   * The one expression walker. `onColumn` decides about column references; `isGroupKey` lets a
   * whole grouped expression pass; `onAggregate` notes aggregates. Unknown node types are refused.
   */
  expression(
    node: unknown,
    ctes: ReadonlySet<string>,
    onColumn: (column: unknown, inAggregate: boolean) => unknown,
    inAggregate: boolean,
    isGroupKey: (key: string) => boolean = () => false,
    onAggregate: () => void = () => undefined,
  ): void {
    const walk = (n: unknown, inAgg: boolean): void => {
      const r = record(n);
      if (r.ast !== undefined) {
        // A subquery anywhere must itself be an aggregate query over allowed tables.
        this.select(r.ast, ctes);
        return;
      }
      if (!inAgg && isGroupKey(canonical(n))) return;
      const type = r.type;
      switch (type) {
        case 'column_ref':
        case 'double_quote_string':
          // SQLite reads "x" as the column x when one exists: treat it as a column, never a string.
          if (r.type === 'column_ref' && typeof r.column !== 'string' && r.column !== undefined) {
            const inner = record(r.column);
            if (inner.expr === undefined) throw new Refusal('unsupported column reference');
            walk({ type: 'column_ref', table: r.table, column: String(record(inner.expr).value ?? '') }, inAgg);
            return;
          }
          onColumn(n, inAgg);
          return;
        case 'aggr_func': {
          const name = String(r.name).toUpperCase();
          if (!AGGREGATES.has(name)) throw new Refusal(`aggregate ${name} is not allowed (allowed: ${[...AGGREGATES].join(', ')})`);
          if (r.over !== null && r.over !== undefined) throw new Refusal('window functions (OVER) are not allowed');
          if (inAgg) throw new Refusal('nested aggregates are not allowed');
          onAggregate();
          const args = record(r.args);
          const expr = record(args.expr);
          if (expr.type === 'star') {
            if (name !== 'COUNT') throw new Refusal(`${name}(*) is not allowed`);
          } else {
            walk(args.expr, true);
          }
          if (args.orderby !== null && args.orderby !== undefined) throw new Refusal('ORDER BY inside an aggregate is not allowed');
          if (args.separator !== undefined && args.separator !== null) throw new Refusal('aggregate separators are not allowed');
          return;
        }
        case 'function': {
          const name = functionName(r.name);
          if (r.over !== null && r.over !== undefined) throw new Refusal('window functions (OVER) are not allowed');
          if (name === 'EXISTS' || name === 'NOT EXISTS') {
            for (const a of list(record(r.args).value ?? [], 'EXISTS')) walk(a, inAgg);
            return;
          }
          const args = r.args === null || r.args === undefined ? [] : list(record(r.args).value ?? [], name);
          // Some grammars read TOTAL(x), or MIN(x) and MAX(x), as plain functions: with one
          // argument they are aggregates, and are checked as such.
          if (AGGREGATES.has(name) && args.length === 1) {
            if (inAgg) throw new Refusal('nested aggregates are not allowed');
            onAggregate();
            walk(args[0], true);
            return;
          }
          if (!SCALARS.has(name)) throw new Refusal(`function ${name} is not allowed`);
          for (const a of args) walk(a, inAgg);
          return;
        }
        case 'binary_expr': {
          const op = String(r.operator).toUpperCase();
          if (!BINARY_OPERATORS.has(op)) throw new Refusal(`operator ${op} is not allowed`);
          walk(r.left, inAgg);
          walk(r.right, inAgg);
          return;
        }
        case 'unary_expr': {
          const op = String(r.operator).toUpperCase();
          if (op !== '-' && op !== '+' && op !== 'NOT' && op !== '!') throw new Refusal(`operator ${op} is not allowed`);
          walk(r.expr, inAgg);
          return;
        }
        case 'expr_list':
          for (const v of list(r.value ?? [], 'list')) walk(v, inAgg);
          return;
        case 'case':
          if (r.expr !== null && r.expr !== undefined) walk(r.expr, inAgg);
          for (const arm of list(r.args, 'CASE')) {
            const a = record(arm);
            if (a.cond !== undefined && a.cond !== null) walk(a.cond, inAgg);
            walk(a.result, inAgg);
          }
          return;
        case 'cast':
          walk(r.expr, inAgg);
          return;
        case 'interval':
          walk(r.expr, inAgg);
          return;
        default:
          if (typeof type === 'string' && LITERALS.has(type)) return;
          throw new Refusal(`unsupported SQL expression (${typeof type === 'string' ? type : 'unknown'})`);
      }
    };
    walk(node, inAggregate);
  }
}

/** A comparable key for an expression: column references by lower-cased name, without qualifier. */
function canonical(node: unknown): string {
  const r = record(node);
  if (r.type === 'column_ref' && typeof r.column === 'string') return `c:${r.column.toLowerCase()}`;
  if (r.type === 'double_quote_string' && typeof r.value === 'string') return `c:${r.value.toLowerCase()}`;
  return JSON.stringify(node, (key, value: unknown) => {
    if (key === 'table' || key === 'collate' || key === 'parentheses' || key === 'loc') return undefined;
    const v = value as { type?: unknown; column?: unknown; value?: unknown } | null;
    if (v !== null && typeof v === 'object' && (v.type === 'column_ref' || v.type === 'double_quote_string')) {
      return { c: String(v.type === 'column_ref' ? v.column : v.value).toLowerCase() };
    }
    return value;
  });
}

function functionName(name: unknown): string {
  if (typeof name === 'string') return name.toUpperCase();
  const parts = record(name).name;
  if (!Array.isArray(parts)) throw new Refusal('unsupported function name');
  if (parts.length !== 1) throw new Refusal('schema-qualified functions are not allowed');
  return String(record(parts[0]).value).toUpperCase();
}

function identifier(value: unknown, what: string): string {
  if (typeof value !== 'string' || value === '') throw new Refusal(`unsupported ${what}`);
  return value.toLowerCase();
}

function isEmptyInto(value: object): boolean {
  const v = value as { expr?: unknown; type?: unknown };
  return v.expr === undefined && v.type === undefined && Object.values(value).every((x) => x === null || x === undefined);
}

function record(value: unknown): Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Refusal('unsupported SQL construct');
  return value as Record<string, unknown>;
}

function list(value: unknown, what: string): readonly unknown[] {
  if (!Array.isArray(value)) throw new Refusal(`unsupported ${what}`);
  return value;
}
