// Database sinks, idempotent per batch time as saveAsTextFiles and saveToRedis are: each batch is one
// transaction that deletes the rows an earlier run of the same batch wrote (the table's `batch_time`
// column) and inserts this run's, or, with `key`, upserts by key. A batch replayed after a crash
// therefore replaces its own rows and never adds to them. Rows reach the database as values (DuckDB's
// appender, PostgreSQL's COPY), never as SQL text.
import type { DStream } from "../dstream.js";
import { DuckDB } from "./duckdb.js";
import { schemaOf } from "./dataframe.js";
import { SqlSinkError } from "./errors.js";
import { toRows } from "./rows.js";
import { quoteIdent, sparkType, StructField, StructType, type DataTypeName, type Row } from "./types.js";

export interface SinkOptions {
  table: string;
  /** Upsert by these columns (the table's primary key) instead of replacing the batch's rows. */
  key?: string | string[];
  /** The column that records each row's batch time in ms (default "batch_time"). */
  timeColumn?: string;
}

export interface DuckDBSinkOptions extends SinkOptions {
  /** The database file (created if missing). */
  path: string;
}

/** Connection settings for PostgreSQL (or a `postgres://user@host:port/db` URL). */
export interface PostgresConnectionConfig {
  host?: string;
  port?: number;
  user?: string;
  password?: string;
  database?: string;
  connectionString?: string;
}

export interface PostgresSinkOptions extends SinkOptions {
  connection: string | PostgresConnectionConfig;
}

function keysOf(options: SinkOptions): string[] {
  return options.key === undefined ? [] : Array.isArray(options.key) ? options.key : [options.key];
}

/**
 * The batch's rows (as toDF makes them, not copied) and their schema with the time column last. The
 * column types are inferred only while the table does not exist yet (`withTypes`); afterwards only the
 * names matter, and the table's own types convert the values.
 */
function batchRows(records: readonly unknown[], timeColumn: string, withTypes: boolean): { rows: Row[]; schema: StructType } {
  const rows = toRows(records as unknown[]) as Row[];
  const sample = withTypes ? rows : rows.slice(0, 100);
  const fields = schemaOf(sample).fields.filter((f) => f.name !== timeColumn);
  return { rows, schema: new StructType([...fields, new StructField(timeColumn, "bigint", false)]) };
}

/** One column's values for the table's column `name`: the batch time for the time column. */
function columnOf(rows: readonly Row[], name: string, timeColumn: string, time: number): unknown[] {
  const out = new Array(rows.length);
  if (name === timeColumn) out.fill(time);
  else for (let i = 0; i < rows.length; i++) out[i] = (rows[i] as Row)[name];
  return out;
}

function checkColumns(table: string, tableColumns: readonly string[], schema: StructType): void {
  const missing = schema.fieldNames.filter((c) => !tableColumns.includes(c));
  if (missing.length > 0) {
    throw new SqlSinkError(`table ${table} has no column ${missing.join(", ")} (it has ${tableColumns.join(", ")}); add the column or map the records to the table's columns`);
  }
}

// ---- DuckDB ---------------------------------------------------------------------------------

/** Writes each batch into a DuckDB table (created from the first batch's rows if missing). */
export function saveToDuckDB<T>(stream: DStream<T>, options: DuckDBSinkOptions): void {
  const timeColumn = options.timeColumn ?? "batch_time";
  const keys = keysOf(options);
  let db: DuckDB | undefined;
  let columns: StructType | undefined;
  stream.ssc.addStreamingListener({
    onStreamingStopped: () => {
      db?.close();
      db = undefined;
      columns = undefined;
    },
  });
  stream.foreachRDD(
    async (rdd, time) => {
      db ??= await DuckDB.open(options.path);
      const { rows, schema } = batchRows(rdd.collect(), timeColumn, columns === undefined);
      const table = quoteIdent(options.table);
      await db.exclusive(async (s) => {
        if (!columns) {
          if (rows.length > 0) {
            const defs = schema.fields.map((f) => `${quoteIdent(f.name)} ${duckTypeOf(f.dataType)}`);
            if (keys.length > 0) defs.push(`PRIMARY KEY (${keys.map(quoteIdent).join(", ")})`);
            await s.run(`CREATE TABLE IF NOT EXISTS ${table} (${defs.join(", ")})`);
          }
          const r = await s.query("SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = $1 AND schema_name = 'main' ORDER BY column_index", [options.table]);
          if (r.rows.length === 0) return; // no table yet and nothing to write
          columns = new StructType(r.rows.map((c) => new StructField(String(c.column_name), sparkType(String(c.data_type)))));
        }
        const tableSchema = columns;
        checkColumns(options.table, tableSchema.fieldNames, schema);
        const values = tableSchema.fields.map((f) => columnOf(rows, f.name, timeColumn, time));
        await s.run("BEGIN TRANSACTION");
        try {
          if (keys.length === 0) {
            await s.run(`DELETE FROM ${table} WHERE ${quoteIdent(timeColumn)} = $1`, [time]);
            if (rows.length > 0) await s.append(options.table, tableSchema, values);
          } else if (rows.length > 0) {
            const staging = `_sb_stage_${options.table}`;
            await s.run(`CREATE OR REPLACE TEMP TABLE ${quoteIdent(staging)} AS SELECT * FROM ${table} LIMIT 0`);
            await s.append(staging, tableSchema, values);
            await s.run(`INSERT OR REPLACE INTO ${table} BY NAME SELECT * FROM ${quoteIdent(staging)}`);
            await s.run(`DROP TABLE ${quoteIdent(staging)}`);
          }
          await s.run("COMMIT");
        } catch (e) {
          await s.run("ROLLBACK").catch(() => {});
          throw new SqlSinkError(`saveToDuckDB(${options.table}) could not write batch ${time}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
        }
      });
    },
    { name: `saveToDuckDB(${options.table})` },
  );
}

function duckTypeOf(t: DataTypeName): string {
  return t === "bigint" ? "BIGINT" : t === "double" ? "DOUBLE" : t === "boolean" ? "BOOLEAN" : t === "timestamp" ? "TIMESTAMP" : "VARCHAR";
}

// ---- PostgreSQL -----------------------------------------------------------------------------

interface PgClient {
  connect(): Promise<void>;
  query(text: string, values?: unknown[]): Promise<{ rows: Record<string, unknown>[] }>;
  query<S>(stream: S): S;
  end(): Promise<void>;
  on(event: "error", listener: (e: Error) => void): void;
}

/** pg and pg-copy-streams, loaded on first use. */
function pgModules(): { Client: new (config: PostgresConnectionConfig | string) => PgClient; copyFrom: (sql: string) => NodeJS.WritableStream } {
  const pg = require("pg") as { Client: new (config: PostgresConnectionConfig | string) => PgClient };
  const copy = require("pg-copy-streams") as { from: (sql: string) => NodeJS.WritableStream };
  return { Client: pg.Client, copyFrom: copy.from };
}

function pgTypeOf(t: DataTypeName): string {
  return t === "bigint" ? "bigint" : t === "double" ? "double precision" : t === "boolean" ? "boolean" : t === "timestamp" ? "timestamptz" : "text";
}

/** One value in COPY's CSV format: NULL is an unquoted empty field, everything else is quoted. */
function csvField(v: unknown): string {
  if (v === null || v === undefined) return "";
  let s: string;
  if (typeof v === "string") s = v;
  else if (v instanceof Date) s = v.toISOString();
  else if (typeof v === "object") s = JSON.stringify(v);
  else s = String(v);
  return `"${s.replace(/"/g, '""')}"`;
}

/** Streams rows into `COPY table (columns) FROM STDIN` in CSV, in pieces of about 64 kB. */
export async function copyRows(
  client: PgClient,
  copyFrom: (sql: string) => NodeJS.WritableStream,
  table: string,
  columns: readonly string[],
  rows: readonly Row[],
  time?: { column: string; value: number },
): Promise<void> {
  const { pipeline } = await import("node:stream/promises");
  const { Readable } = await import("node:stream");
  const sql = `COPY ${table} (${columns.map(quoteIdent).join(", ")}) FROM STDIN WITH (FORMAT csv)`;
  const stream = client.query(copyFrom(sql));
  function* pieces(): Generator<string> {
    let buf = "";
    const timeAt = time ? columns.indexOf(time.column) : -1;
    const timeText = time ? `"${time.value}"` : "";
    for (const r of rows) {
      let line = "";
      for (let i = 0; i < columns.length; i++) line += (i ? "," : "") + (i === timeAt ? timeText : csvField(r[columns[i] as string]));
      buf += line + "\n";
      if (buf.length > 65536) {
        yield buf;
        buf = "";
      }
    }
    if (buf) yield buf;
  }
  await pipeline(Readable.from(pieces()), stream as unknown as NodeJS.WritableStream);
}

/**
 * Writes each batch into a PostgreSQL table (created from the first batch's rows if missing): one
 * transaction per batch that deletes the batch's earlier rows and COPYs its rows, or upserts by key.
 */
export function saveToPostgres<T>(stream: DStream<T>, options: PostgresSinkOptions): void {
  const timeColumn = options.timeColumn ?? "batch_time";
  const keys = keysOf(options);
  let client: PgClient | undefined;
  let columns: string[] | undefined;
  const close = (): void => {
    const c = client;
    client = undefined;
    columns = undefined;
    void c?.end().catch(() => {});
  };
  stream.ssc.addStreamingListener({ onStreamingStopped: close });
  const table = quoteIdent(options.table);
  stream.foreachRDD(
    async (rdd, time) => {
      const { Client, copyFrom } = pgModules();
      if (!client) {
        const c = new Client(options.connection);
        c.on("error", () => close()); // a dropped connection: the next batch connects again
        await c.connect();
        client = c;
      }
      const c = client;
      const { rows, schema } = batchRows(rdd.collect(), timeColumn, columns === undefined);
      if (!columns) {
        if (rows.length > 0) {
          const defs = schema.fields.map((f) => `${quoteIdent(f.name)} ${pgTypeOf(f.dataType)}`);
          if (keys.length > 0) defs.push(`PRIMARY KEY (${keys.map(quoteIdent).join(", ")})`);
          await c.query(`CREATE TABLE IF NOT EXISTS ${table} (${defs.join(", ")})`);
        }
        const r = await c.query("SELECT column_name FROM information_schema.columns WHERE table_name = $1 AND table_schema = current_schema() ORDER BY ordinal_position", [options.table]);
        if (r.rows.length === 0) return;
        columns = r.rows.map((x) => String(x.column_name));
      }
      checkColumns(options.table, columns, schema);
      const cols = schema.fieldNames;
      try {
        await c.query("BEGIN");
        if (keys.length === 0) {
          await c.query(`DELETE FROM ${table} WHERE ${quoteIdent(timeColumn)} = $1`, [time]);
          if (rows.length > 0) await copyRows(c, copyFrom, table, cols, rows, { column: timeColumn, value: time });
        } else if (rows.length > 0) {
          const staging = quoteIdent(`_sb_stage_${options.table}`);
          await c.query(`CREATE TEMP TABLE ${staging} (LIKE ${table}) ON COMMIT DROP`);
          await copyRows(c, copyFrom, staging, cols, rows, { column: timeColumn, value: time });
          const updates = cols.filter((x) => !keys.includes(x)).map((x) => `${quoteIdent(x)} = EXCLUDED.${quoteIdent(x)}`);
          const list = cols.map(quoteIdent).join(", ");
          await c.query(
            `INSERT INTO ${table} (${list}) SELECT ${list} FROM ${staging} ON CONFLICT (${keys.map(quoteIdent).join(", ")}) ${updates.length ? `DO UPDATE SET ${updates.join(", ")}` : "DO NOTHING"}`,
          );
        }
        await c.query("COMMIT");
      } catch (e) {
        await c.query("ROLLBACK").catch(() => {});
        throw new SqlSinkError(`saveToPostgres(${options.table}) could not write batch ${time}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
      }
    },
    { name: `saveToPostgres(${options.table})` },
  );
}
