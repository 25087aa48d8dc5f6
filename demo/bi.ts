// The BI backend's report pool: SQLite in wasm (sql.js), loaded once per process, with one seeded,
// read-only in-memory database per backend instance so demos and tests never share state.
import { createRequire } from 'node:module';
import initSqlJs, { type Database, type SqlJsStatic, type SqlValue } from 'sql.js';
import { salesRows, ticketsDailyRows } from './data.js';

/** Rows beyond this are cut off and the answer says `truncated: true`. */
const MAX_ROWS = 10_000;

export interface QueryResult {
  readonly columns: string[];
  readonly rows: Array<Array<string | number | null>>;
  readonly truncated?: true;
}

/** A SQL text the database refused (syntax, unknown table, a write to the read-only pool, ...). */
export class QueryError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'QueryError';
  }
}

export interface ReportPool {
  /** Runs exactly one statement and answers its columns and rows. Throws QueryError. */
  query(sql: string): QueryResult;
  close(): void;
}

let engine: Promise<SqlJsStatic> | null = null;

function loadEngine(): Promise<SqlJsStatic> {
  if (engine === null) {
    // The wasm file sits next to sql.js in node_modules; resolve it from there, not from the cwd.
    const require = createRequire(import.meta.url);
    engine = initSqlJs({ locateFile: (file: string) => require.resolve(`sql.js/dist/${file}`) });
    // A failed load may be retried by the next caller instead of being cached forever.
    engine.catch(() => {
      engine = null;
    });
  }
  return engine;
}

export async function openReportPool(): Promise<ReportPool> {
  const SQL = await loadEngine();
  const db: Database = new SQL.Database();
  db.run('CREATE TABLE sales (day TEXT NOT NULL, region TEXT NOT NULL, product TEXT NOT NULL, amount REAL NOT NULL, customer_email TEXT NOT NULL)');
  db.run('CREATE TABLE tickets_daily (day TEXT NOT NULL, queue TEXT NOT NULL, opened INTEGER NOT NULL, closed INTEGER NOT NULL)');
  db.run('BEGIN');
  const sale = db.prepare('INSERT INTO sales VALUES (?, ?, ?, ?, ?)');
  for (const row of salesRows()) sale.run([...row]);
  sale.free();
  const daily = db.prepare('INSERT INTO tickets_daily VALUES (?, ?, ?, ?)');
  for (const row of ticketsDailyRows()) daily.run([...row]);
  daily.free();
  db.run('COMMIT');
  // A report pool is a read replica: writes fail inside SQLite itself.
  db.run('PRAGMA query_only = ON');

  return {
    query(sql: string): QueryResult {
      return runOne(db, sql);
    },
    close(): void {
      db.close();
    },
  };
}

function runOne(db: Database, sql: string): QueryResult {
  try {
    const statements = db.iterateStatements(sql);
    const first = statements.next();
    if (first.done === true) throw new QueryError('the query is empty');
    const statement = first.value;
    try {
      if (statements.getRemainingSQL().trim() !== '') throw new QueryError('send exactly one SQL statement');
      const columns = statement.getColumnNames();
      const rows: Array<Array<string | number | null>> = [];
      while (statement.step()) {
        if (rows.length === MAX_ROWS) return { columns, rows, truncated: true };
        rows.push(statement.get().map(toJson));
      }
      return { columns, rows };
    } finally {
      statement.free();
    }
  } catch (error) {
    if (error instanceof QueryError) throw error;
    throw new QueryError(error instanceof Error ? error.message : String(error), { cause: error });
  }
}

function toJson(value: SqlValue): string | number | null {
  return value instanceof Uint8Array ? Buffer.from(value).toString('base64') : value;
}
