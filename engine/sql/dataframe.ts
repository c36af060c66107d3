// DataFrame: a table of rows with a schema, Spark's names. Its rows live in this process (like an RDD),
// so collect(), count(), show(), columns, schema and rdd answer at once; SQL sees it once it is
// registered as a view (loaded into DuckDB when a query first names it, again only when it changed).
import * as fs from "node:fs";
import * as path from "node:path";
import { JUPYTER_DISPLAY, type MimeBundle, type RDD } from "../rdd.js";
import { runSync } from "../slicing.js";
import type { Session } from "./duckdb.js";
import { AnalysisException } from "./errors.js";
import { duckType, inferType, quoteIdent, StructField, StructType, type Row } from "./types.js";
import type { SparkSession } from "./session.js";

/** The rows and schema of a DataFrame at one moment. */
export interface FrameData<R> {
  schema: StructType;
  rows: R[];
}

/**
 * Where a DataFrame's rows come from. `version()` changes whenever the data does (a view is reloaded
 * into DuckDB only then); `refresh` brings a source that reads files up to date (async, inside the queue).
 */
export interface FrameSource<R> {
  data(): FrameData<R>;
  version(): unknown;
  refresh?(s: Session): Promise<void>;
  /** Creates `table` in DuckDB holding the data (default: from data(), through the appender). */
  load?(s: Session, table: string): Promise<void>;
  describe(): string;
}

/** Rows computed once from a function (toDF of an RDD, createDataFrame, a query's result). */
export class LocalSource<R extends object> implements FrameSource<R> {
  private cached?: FrameData<R>;

  constructor(
    private readonly compute: () => FrameData<R>,
    private readonly what: string,
  ) {}

  data(): FrameData<R> {
    return (this.cached ??= this.compute());
  }

  version(): unknown {
    return this;
  }

  describe(): string {
    return this.what;
  }
}

/** Rows whose fields name the columns (Spark infers a schema from the first rows too: samplingRatio). */
const SCHEMA_SAMPLE = 100;

/**
 * The schema of plain-object rows: the columns are the fields of the first 100 rows, in order of first
 * appearance; each column's type is inferred from all its values (a later 1.5 makes an integer column double).
 */
export function schemaOf(rows: readonly object[], names?: readonly string[]): StructType {
  const cols = names ? [...names] : columnNames(rows);
  return new StructType(
    cols.map((c) => {
      const { type, nullable } = inferType(columnValues(rows, c));
      return new StructField(c, type, nullable);
    }),
  );
}

function* columnValues(rows: readonly object[], name: string): Generator<unknown> {
  for (let i = 0; i < rows.length; i++) yield (rows[i] as Record<string, unknown>)[name];
}

function columnNames(rows: readonly object[]): string[] {
  const seen = new Set<string>();
  const n = Math.min(rows.length, SCHEMA_SAMPLE);
  for (let i = 0; i < n; i++) for (const k of Object.keys(rows[i] as object)) seen.add(k);
  return [...seen];
}

/** Creates `table` with `schema` and appends `rows` (parameters never carry SQL: the appender takes values). */
export async function loadRows(s: Session, table: string, data: FrameData<object>): Promise<void> {
  const fields = data.schema.fields;
  if (fields.length === 0) {
    await s.run(`CREATE OR REPLACE TABLE ${quoteIdent(table)} AS SELECT 1 AS _empty WHERE false`);
    return;
  }
  await s.run(`CREATE OR REPLACE TABLE ${quoteIdent(table)} (${fields.map((f) => `${quoteIdent(f.name)} ${duckType(f.dataType)}`).join(", ")})`);
  const columns = fields.map((f) => data.rows.map((r) => (r as Record<string, unknown>)[f.name]));
  if (data.rows.length > 0) await s.append(table, data.schema, columns);
}

export type SaveMode = "error" | "errorifexists" | "overwrite" | "append" | "ignore";

/** Spark's DataFrameWriter: `df.write.mode("overwrite").parquet(path)`; each call writes a folder of part files. */
export class DataFrameWriter {
  private saveMode: SaveMode = "error";
  private readonly options: Record<string, string | boolean | number> = {};

  constructor(private readonly df: DataFrame<object>) {}

  mode(m: SaveMode): this {
    if (!["error", "errorifexists", "overwrite", "append", "ignore"].includes(m)) {
      throw new AnalysisException(`write.mode(${JSON.stringify(m)}): use "error", "overwrite", "append" or "ignore"`);
    }
    this.saveMode = m;
    return this;
  }

  option(key: string, value: string | boolean | number): this {
    this.options[key] = value;
    return this;
  }

  /** Writes `path/part-00000.parquet` and `path/_SUCCESS`. */
  parquet(target: string, mode?: SaveMode): Promise<void> {
    if (mode) this.mode(mode);
    return this.save(target, "parquet", "(FORMAT parquet)");
  }

  /** Writes `path/part-00000.csv` (with a header line when `header` is true). */
  csv(target: string, options: { header?: boolean; sep?: string; mode?: SaveMode } = {}): Promise<void> {
    if (options.mode) this.mode(options.mode);
    const header = options.header ?? (this.options.header === true || this.options.header === "true");
    const sep = options.sep ?? (typeof this.options.sep === "string" ? this.options.sep : ",");
    if (sep.length !== 1 || sep === "'") throw new AnalysisException(`write.csv: sep must be one character other than a quote, got ${JSON.stringify(sep)}`);
    return this.save(target, "csv", `(FORMAT csv, HEADER ${header ? "true" : "false"}, DELIMITER '${sep}')`);
  }

  json(target: string, mode?: SaveMode): Promise<void> {
    if (mode) this.mode(mode);
    return this.save(target, "json", "(FORMAT json)");
  }

  private async save(target: string, ext: string, copyOptions: string): Promise<void> {
    const exists = fs.existsSync(target);
    if (exists && (this.saveMode === "error" || this.saveMode === "errorifexists")) {
      throw new AnalysisException(`[PATH_ALREADY_EXISTS] Path ${target} already exists; use write.mode("overwrite") or write.mode("append")`);
    }
    if (exists && this.saveMode === "ignore") return;
    const dir = path.dirname(path.resolve(target));
    await fs.promises.mkdir(dir, { recursive: true });
    const spark = this.df.sparkSession;
    if (this.saveMode === "append" && exists) {
      const n = (await fs.promises.readdir(target)).filter((f) => f.startsWith("part-")).length;
      await spark.writeFile(this.df, path.join(target, `part-${String(n).padStart(5, "0")}.${ext}`), copyOptions);
      return;
    }
    // Written beside the target and renamed over it, so a reader never sees half a folder.
    const tmp = path.join(dir, `.${path.basename(target)}.tmp-${process.pid}-${Date.now()}`);
    await fs.promises.mkdir(tmp, { recursive: true });
    try {
      await spark.writeFile(this.df, path.join(tmp, `part-00000.${ext}`), copyOptions);
      await fs.promises.writeFile(path.join(tmp, "_SUCCESS"), "");
      await fs.promises.rm(target, { recursive: true, force: true });
      await fs.promises.rename(tmp, target);
    } catch (e) {
      await fs.promises.rm(tmp, { recursive: true, force: true });
      throw e;
    }
  }
}

export class DataFrame<R extends object = Row> {
  constructor(
    readonly sparkSession: SparkSession,
    /** Internal: where the rows come from. */
    readonly source: FrameSource<R>,
  ) {}

  get schema(): StructType {
    return this.source.data().schema;
  }

  get columns(): string[] {
    return this.schema.fieldNames;
  }

  /** Column name and Spark type name pairs. */
  get dtypes(): [string, string][] {
    return this.schema.fields.map((f) => [f.name, f.dataType]);
  }

  /** The rows as plain objects (a fresh array; the row objects are shared, treat them as immutable). */
  collect(): R[] {
    return this.source.data().rows.slice();
  }

  count(): number {
    return this.source.data().rows.length;
  }

  take(n: number): R[] {
    return this.source.data().rows.slice(0, Math.max(0, n));
  }

  head(n = 1): R[] {
    return this.take(n);
  }

  first(): R | undefined {
    return this.source.data().rows[0];
  }

  isEmpty(): boolean {
    return this.count() === 0;
  }

  /** Prints the first n rows as Spark does (strings longer than 20 characters cut unless truncate is false). */
  show(n = 20, truncate: boolean | number = true): void {
    console.log(this.showString(n, truncate));
  }

  /** show()'s text. */
  showString(n = 20, truncate: boolean | number = true): string {
    const { schema, rows } = this.source.data();
    return formatTable(schema.fieldNames, rows.slice(0, n) as object[], rows.length > n ? n : undefined, truncate === true ? 20 : truncate === false ? 0 : truncate);
  }

  printSchema(): void {
    console.log(this.schema.treeString());
  }

  /** The rows as an RDD (read when the RDD is computed, so a DataFrame over files gives its latest rows). */
  get rdd(): RDD<R> {
    const source = this.source;
    this.sparkSession.watchFilesFor(this);
    return this.sparkSession.sparkContext.deferred<R>(function* () {
      return [source.data().rows.slice()];
    });
  }

  /** Registers this DataFrame under `name` for spark.sql (replacing any view of that name). */
  createOrReplaceTempView(name: string): void {
    this.sparkSession.registerView(name, this.source as FrameSource<object>, true);
  }

  /** As createOrReplaceTempView, but fails if the name is taken (Spark's TempTableAlreadyExistsException). */
  createTempView(name: string): void {
    this.sparkSession.registerView(name, this.source as FrameSource<object>, false);
  }

  get write(): DataFrameWriter {
    return new DataFrameWriter(this as DataFrame<object>);
  }

  /** Spark's repr: DataFrame[word: string, total: bigint]. */
  toString(): string {
    return `DataFrame[${this.schema.fields.map((f) => `${f.name}: ${f.dataType}`).join(", ")}]`;
  }

  /** Rich display: an HTML table of the first 20 rows, and show()'s text. */
  [JUPYTER_DISPLAY](): MimeBundle {
    const { schema, rows } = this.source.data();
    const shown = rows.slice(0, 20) as object[];
    const head = schema.fields.map((f) => `<th title="${escapeHtml(f.dataType)}">${escapeHtml(f.name)}</th>`).join("");
    const body = shown
      .map((r) => `<tr>${schema.fieldNames.map((c) => `<td>${escapeHtml(cellText((r as Record<string, unknown>)[c]))}</td>`).join("")}</tr>`)
      .join("");
    const more = rows.length > shown.length ? `<div>only showing top ${shown.length} of ${rows.length} rows</div>` : "";
    const html = `<div><table class="dataframe"><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>${more}</div>`;
    return { "text/plain": this.showString(20, true), "text/html": html };
  }
}

/** Spark's rendering of one value in show(). */
export function cellText(v: unknown): string {
  if (v === null || v === undefined) return "null";
  if (v instanceof Date) return v.toISOString().replace("T", " ").replace(/\.000Z$/, "").replace("Z", "");
  if (Array.isArray(v)) return `[${v.map(cellText).join(", ")}]`;
  if (typeof v === "object") return `{${Object.values(v as object).map(cellText).join(", ")}}`;
  return String(v);
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c] as string);
}

/** Spark's show() table: +---+ rules, cells right-aligned when truncating, "only showing top N rows". */
export function formatTable(names: readonly string[], rows: readonly object[], shownOf: number | undefined, truncate: number): string {
  const cut = (s: string) => (truncate > 0 && s.length > truncate ? (truncate < 4 ? s.slice(0, truncate) : s.slice(0, truncate - 3) + "...") : s);
  const cells = rows.map((r) => names.map((c) => cut(cellText((r as Record<string, unknown>)[c]))));
  const heads = names.map(cut);
  const widths = heads.map((h, i) => Math.max(3, h.length, ...cells.map((row) => (row[i] as string).length)));
  const pad = (s: string, w: number) => (truncate > 0 ? s.padStart(w) : s.padEnd(w));
  const rule = "+" + widths.map((w) => "-".repeat(w)).join("+") + "+";
  const line = (row: string[]) => "|" + row.map((s, i) => pad(s, widths[i] as number)).join("|") + "|";
  const out = [rule, line(heads), rule, ...cells.map(line), rule];
  if (shownOf !== undefined) out.push(`only showing top ${shownOf} row${shownOf === 1 ? "" : "s"}`);
  return out.join("\n") + "\n";
}


/** Internal: the rows of an RDD computed now (synchronously), for toDF. */
export function rddRows<T>(rdd: RDD<T>): T[] {
  runSync(rdd.computeGen());
  return rdd.collect();
}
