// DuckDB, loaded on first use (a program that never runs SQL never loads its native binary). One
// connection per database, with its statements run one at a time through a queue, so a group of
// statements (load a view, then query it) is never interleaved with another cell's or batch's.
import type * as DuckDBApi from "@duckdb/node-api";
import { DuckDBUnavailableError, sqlError } from "./errors.js";
import { fromDuck, sparkType, StructField, StructType, toColumnValue, type DataTypeName, type Row } from "./types.js";

type Api = typeof DuckDBApi;
let api: Api | undefined;

/** The @duckdb/node-api module (loaded once, on first use). */
export function duckdbApi(): Api {
  if (!api) {
    try {
      api = require("@duckdb/node-api") as Api;
    } catch (e) {
      throw new DuckDBUnavailableError(e);
    }
  }
  return api;
}

/** A value DuckDB binds as a parameter ($1, $2 ... or $name). */
export type SqlParam = string | number | bigint | boolean | Date | null;

/** Parameters: positional ($1, $2, ...) or named ($name). */
export type SqlParams = readonly SqlParam[] | Readonly<Record<string, SqlParam>>;

export interface QueryResult {
  schema: StructType;
  rows: Row[];
}

/** What a queued group of statements can do; valid only inside `exclusive`. */
export interface Session {
  run(sql: string, params?: SqlParams): Promise<void>;
  query(sql: string, params?: SqlParams): Promise<QueryResult>;
  /** Appends rows given as columns (one array per field) to an existing table, in DuckDB's data chunks. */
  append(table: string, schema: StructType, columns: readonly (readonly unknown[])[]): Promise<void>;
  /** Tables and views a query names (DuckDB's own parser), lower-cased. */
  tableNames(sql: string): string[];
}

const CHUNK_ROWS = 2048;

export class DuckDB {
  private queue: Promise<unknown> = Promise.resolve();
  private closed = false;

  private constructor(
    private readonly instance: DuckDBApi.DuckDBInstance,
    private readonly connection: DuckDBApi.DuckDBConnection,
    readonly path: string,
  ) {}

  /** Opens a database (":memory:" by default); a file database is shared by everyone in this process who opens the same path. */
  static async open(path = ":memory:"): Promise<DuckDB> {
    const d = duckdbApi();
    const instance = path === ":memory:" ? await d.DuckDBInstance.create(path) : await d.DuckDBInstance.fromCache(path);
    const connection = await instance.connect();
    return new DuckDB(instance, connection, path);
  }

  /** Runs fn with the connection to itself: no other statement of this database runs until it settles. */
  exclusive<T>(fn: (s: Session) => Promise<T>): Promise<T> {
    const next = this.queue.then(() => {
      if (this.closed) throw new Error(`the DuckDB database ${this.path} is closed (spark.stop() was called); create a new session`);
      return fn(this.session);
    });
    this.queue = next.catch(() => {});
    return next;
  }

  /** One query, queued. */
  query(sql: string, params?: SqlParams): Promise<QueryResult> {
    return this.exclusive((s) => s.query(sql, params));
  }

  run(sql: string, params?: SqlParams): Promise<void> {
    return this.exclusive((s) => s.run(sql, params));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.connection.closeSync();
    if (this.path === ":memory:") this.instance.closeSync();
  }

  private readonly session: Session = {
    run: async (sql, params) => {
      try {
        await this.connection.run(sql, params as DuckDBApi.DuckDBValue[] | Record<string, DuckDBApi.DuckDBValue> | undefined);
      } catch (e) {
        throw sqlError(e, sql);
      }
    },
    query: async (sql, params) => {
      let reader: DuckDBApi.DuckDBResultReader;
      try {
        reader = await this.connection.runAndReadAll(sql, params as DuckDBApi.DuckDBValue[] | Record<string, DuckDBApi.DuckDBValue> | undefined);
      } catch (e) {
        throw sqlError(e, sql);
      }
      const names = reader.columnNames();
      const types = reader.columnTypes();
      const schema = new StructType(names.map((n, i) => new StructField(n, sparkType(String(types[i])), true)));
      const raw = reader.getRowObjectsJS();
      const rows: Row[] = new Array(raw.length);
      for (let i = 0; i < raw.length; i++) {
        const r = raw[i] as Record<string, unknown>;
        const o: Row = {};
        for (const n of names) o[n] = fromDuck(r[n]);
        rows[i] = o;
      }
      return { schema, rows };
    },
    append: async (table, schema, columns) => {
      const d = duckdbApi();
      const types = schema.fields.map((f) => logicalType(d, f.dataType));
      const n = columns[0]?.length ?? 0;
      const converters = schema.fields.map((f) => converterFor(d, f.dataType));
      const appender = await this.connection.createAppender(table);
      try {
        for (let from = 0; from < n; from += CHUNK_ROWS) {
          const to = Math.min(n, from + CHUNK_ROWS);
          const chunk = d.DuckDBDataChunk.create(types, to - from);
          chunk.setColumns(
            columns.map((col, c) => {
              const convert = converters[c] as (v: unknown) => unknown;
              const out = new Array(to - from);
              for (let i = from; i < to; i++) out[i - from] = convert(col[i]);
              return out;
            }),
          );
          appender.appendDataChunk(chunk);
        }
        appender.flushSync();
      } finally {
        appender.closeSync();
      }
    },
    tableNames: (sql) => {
      try {
        return this.connection.getTableNames(sql, false).map((t) => t.toLowerCase());
      } catch {
        // DuckDB cannot list them for some queries (JOIN ... USING a table not created yet): the caller
        // also matches the names it knows as words of the query.
        return [];
      }
    },
  };
}

function logicalType(d: Api, t: DataTypeName): DuckDBApi.DuckDBType {
  switch (t) {
    case "bigint":
      return d.BIGINT;
    case "double":
      return d.DOUBLE;
    case "boolean":
      return d.BOOLEAN;
    case "timestamp":
      return d.TIMESTAMP;
    case "int":
      return d.INTEGER;
    case "float":
      return d.FLOAT;
    default:
      return d.VARCHAR;
  }
}

/** Turns a JavaScript value into the appender's input for a column of type t (chosen once per column). */
function converterFor(d: Api, t: DataTypeName): (v: unknown) => unknown {
  switch (t) {
    case "bigint":
      return (v) => (typeof v === "bigint" ? v : v === null || v === undefined ? null : BigInt(v as number));
    case "double":
      return (v) => (typeof v === "number" ? v : toColumnValue(v, t));
    case "string":
      return (v) => (typeof v === "string" ? v : toColumnValue(v, t));
    case "timestamp":
      return (v) => (v instanceof Date ? d.timestampValue(BigInt(v.getTime()) * 1000n) : null);
    default:
      return (v) => toColumnValue(v, t);
  }
}
