// SparkSession over DuckDB: spark.sql, spark.read, spark.table, createDataFrame, and the catalog of
// temporary views. Views are DataFrames, files or running streams; each is loaded into DuckDB when a
// query names it and again only when its data changed, inside the same queued step as the query, so a
// query never sees a view half-replaced.
import * as fs from "node:fs";
import * as path from "node:path";
import { StreamingContext } from "../context.js";
import { SparkContext, type RDD } from "../rdd.js";
import { DuckDB, duckdbApi, type Session, type SqlParam, type SqlParams } from "./duckdb.js";
import { DataFrame, LocalSource, loadRows, schemaOf, type FrameData, type FrameSource } from "./dataframe.js";
import { AnalysisException, FileFormatError } from "./errors.js";
import { quoteIdent, type Row, type StructType } from "./types.js";
import { toRows } from "./rows.js";

let active: SparkSession | undefined;

/** Spark's SparkSession.builder(): appName, master and config are recorded; getOrCreate returns the active session. */
export class SparkSessionBuilder {
  private readonly options: Record<string, string> = {};
  private sc?: SparkContext;

  appName(name: string): this {
    this.options["spark.app.name"] = name;
    return this;
  }

  master(master: string): this {
    this.options["spark.master"] = master;
    return this;
  }

  config(key: string | Record<string, unknown>, value?: string | number | boolean): this {
    if (typeof key === "string") this.options[key] = String(value);
    else for (const [k, v] of Object.entries(key)) this.options[k] = String(v);
    return this;
  }

  /** streambook: the SparkContext the session's RDDs belong to (default: the active StreamingContext's, else a new one). */
  sparkContext(sc: SparkContext): this {
    this.sc = sc;
    return this;
  }

  getOrCreate(): SparkSession {
    if (active && !active.isStopped) {
      for (const [k, v] of Object.entries(this.options)) active.conf.set(k, v);
      return active;
    }
    const sc = this.sc ?? StreamingContext.getActive()?.sparkContext ?? new SparkContext({ appName: this.options["spark.app.name"] });
    active = new SparkSession(sc, this.options);
    return active;
  }
}

/** Spark's RuntimeConfig. */
export class RuntimeConfig {
  private readonly values = new Map<string, string>();

  constructor(initial: Record<string, string>) {
    for (const [k, v] of Object.entries(initial)) this.values.set(k, v);
  }

  get(key: string, defaultValue?: string): string | undefined {
    return this.values.get(key) ?? defaultValue;
  }

  set(key: string, value: string | number | boolean): void {
    this.values.set(key, String(value));
  }

  getAll(): Record<string, string> {
    return Object.fromEntries(this.values);
  }
}

interface ViewEntry {
  name: string;
  source: FrameSource<object>;
  loadedVersion?: unknown;
  table?: string;
}

export interface CsvReadOptions {
  /** The first line names the columns (Spark's default: false, columns _c0, _c1, ...). */
  header?: boolean;
  sep?: string;
  /** DuckDB detects column types; false reads every column as a string (Spark's default without inferSchema). */
  inferSchema?: boolean;
}

/** Spark's DataFrameReader; each method reads now and resolves to a DataFrame that re-reads its files only when they change. */
export class DataFrameReader {
  private readonly options: Record<string, string> = {};

  constructor(private readonly spark: SparkSession) {}

  option(key: string, value: string | boolean | number): this {
    this.options[key] = String(value);
    return this;
  }

  options_(opts: Record<string, string | boolean | number>): this {
    for (const [k, v] of Object.entries(opts)) this.option(k, v);
    return this;
  }

  /** A Parquet file, a folder of them, or a glob ("history/*.parquet"). */
  parquet(p: string): Promise<DataFrame<Row>> {
    return this.spark.readFiles("parquet", p, {});
  }

  csv(p: string, options: CsvReadOptions = {}): Promise<DataFrame<Row>> {
    const header = options.header ?? this.options.header === "true";
    const infer = options.inferSchema ?? this.options.inferSchema !== "false";
    const sep = options.sep ?? this.options.sep ?? this.options.delimiter ?? ",";
    return this.spark.readFiles("csv", p, { header, inferSchema: infer, sep });
  }

  /** Newline-delimited JSON (Spark's default JSON Lines), or a JSON array. */
  json(p: string): Promise<DataFrame<Row>> {
    return this.spark.readFiles("json", p, {});
  }
}

type FileFormat = "parquet" | "csv" | "json";

/** Files read into a DuckDB table; refresh() lists them again and re-reads only when a name, size or mtime changed. */
export class FileSource implements FrameSource<Row> {
  private signature?: string;
  private cached?: FrameData<Row>;
  /** How many times the files were actually read (tests and the README check "not re-read unless changed"). */
  reads = 0;
  readonly table: string;

  constructor(
    readonly format: FileFormat,
    readonly pathSpec: string,
    private readonly options: { header?: boolean; inferSchema?: boolean; sep?: string },
    id: number,
  ) {
    this.table = `_sb_files_${id}`;
  }

  data(): FrameData<Row> {
    if (!this.cached) throw new AnalysisException(`${this.describe()} has not been read yet`);
    return this.cached;
  }

  version(): unknown {
    return this.signature;
  }

  describe(): string {
    return `${this.format} ${this.pathSpec}`;
  }

  async refresh(s: Session): Promise<void> {
    const files = await listFiles(s, this.pathSpec, this.format);
    const signature = files.map((f) => {
      const st = fs.statSync(f);
      return `${f}\0${st.size}\0${st.mtimeMs}`;
    }).join("\n");
    if (signature === this.signature && this.cached) return;
    const list = duckdbApi().listValue(files);
    const reader = this.readerSql();
    try {
      await s.run(`CREATE OR REPLACE TEMP TABLE ${quoteIdent(this.table)} AS SELECT * FROM ${reader}`, [list as unknown as SqlParam]);
    } catch (e) {
      throw new FileFormatError(
        `cannot read ${this.pathSpec} as ${this.format} (${files.length} file${files.length === 1 ? "" : "s"}): ${firstLine(e)}; check that the files are complete ${this.format} files`,
        this.pathSpec,
        { cause: e },
      );
    }
    if (this.format === "csv" && !this.options.header) {
      // DuckDB names headerless columns column0, column1, ...; Spark names them _c0, _c1, ...
      const cols = await s.query(`SELECT column_name FROM duckdb_columns() WHERE table_name = $1 ORDER BY column_index`, [this.table]);
      for (const r of cols.rows) {
        const name = String(r.column_name);
        const m = /^column(\d+)$/.exec(name);
        if (m) await s.run(`ALTER TABLE ${quoteIdent(this.table)} RENAME COLUMN ${quoteIdent(name)} TO ${quoteIdent(`_c${Number(m[1])}`)}`);
      }
    }
    this.cached = await s.query(`SELECT * FROM ${quoteIdent(this.table)}`);
    this.signature = signature;
    this.reads++;
  }

  async load(s: Session, table: string): Promise<void> {
    await s.run(`CREATE OR REPLACE TABLE ${quoteIdent(table)} AS SELECT * FROM ${quoteIdent(this.table)}`);
  }

  private readerSql(): string {
    switch (this.format) {
      case "parquet":
        return "read_parquet($1)";
      case "json":
        return "read_json($1)";
      case "csv": {
        const sep = this.options.sep ?? ",";
        if (sep.length !== 1 || sep === "'") throw new AnalysisException(`read.csv: sep must be one character other than a quote, got ${JSON.stringify(sep)}`);
        return `read_csv($1, header = ${this.options.header ? "true" : "false"}, delim = '${sep}'${this.options.inferSchema === false ? ", all_varchar = true" : ""})`;
      }
    }
  }
}

function firstLine(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.split("\n")[0] as string;
}

const HIDDEN = /^[._]/;

/** The files a path names: a file, every visible file under a folder, or a glob (DuckDB's glob()). */
async function listFiles(s: Session, spec: string, format: FileFormat): Promise<string[]> {
  if (/[*?[]/.test(spec)) {
    const r = await s.query("SELECT file FROM glob($1) ORDER BY file", [spec]);
    const files = r.rows.map((x) => String(x.file)).filter((f) => !HIDDEN.test(path.basename(f)));
    if (files.length === 0) throw new AnalysisException(`[PATH_NOT_FOUND] Path does not exist: ${spec} (no file matches); check the path and the current directory (${process.cwd()})`);
    return files;
  }
  let st: fs.Stats;
  try {
    st = fs.statSync(spec);
  } catch {
    throw new AnalysisException(`[PATH_NOT_FOUND] Path does not exist: ${spec}; check the path and the current directory (${process.cwd()})`);
  }
  if (!st.isDirectory()) return [path.resolve(spec)];
  const out: string[] = [];
  const walk = (dir: string): void => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      if (HIDDEN.test(e.name)) continue;
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile() && (format !== "parquet" || p.endsWith(".parquet"))) out.push(path.resolve(p));
    }
  };
  walk(spec);
  if (out.length === 0) throw new AnalysisException(`[PATH_NOT_FOUND] ${spec} holds no ${format} files`);
  return out;
}

let nextId = 0;

export class SparkSession {
  readonly conf: RuntimeConfig;
  private db?: Promise<DuckDB>;
  private readonly views = new Map<string, ViewEntry>();
  private readonly fileSources = new Set<FileSource>();
  private readonly watchedContexts = new WeakSet<StreamingContext>();
  private stopped = false;

  constructor(
    readonly sparkContext: SparkContext,
    options: Record<string, string> = {},
  ) {
    this.conf = new RuntimeConfig(options);
  }

  static builder(): SparkSessionBuilder {
    return new SparkSessionBuilder();
  }

  static getActiveSession(): SparkSession | undefined {
    return active && !active.isStopped ? active : undefined;
  }

  /** Spark 3.5's SparkSession.active(): the active session, created if there is none. */
  static active(): SparkSession {
    return SparkSession.builder().getOrCreate();
  }

  get isStopped(): boolean {
    return this.stopped;
  }

  /** The session's DuckDB database (in memory), opened on first use. */
  database(): Promise<DuckDB> {
    if (this.stopped) return Promise.reject(new AnalysisException("this SparkSession is stopped; get a new one with SparkSession.builder().getOrCreate()"));
    if (!this.db) {
      this.db = DuckDB.open(":memory:");
      this.db.catch(() => (this.db = undefined));
    }
    return this.db;
  }

  /**
   * Runs a query (DuckDB's SQL dialect) and resolves to its result. `args` are bound as parameters:
   * `$1, $2, ...` for an array, `$name` for an object; never splice values into the query text.
   */
  async sql(query: string, args?: SqlParams): Promise<DataFrame<Row>> {
    const db = await this.database();
    const result = await db.exclusive(async (s) => {
      await this.prepareViews(s, s.tableNames(query), query);
      return s.query(query, args);
    });
    return new DataFrame<Row>(this, new LocalSource(() => result, "query result"));
  }

  get read(): DataFrameReader {
    return new DataFrameReader(this);
  }

  /** A snapshot of a view or table: `spark.table("counts")` is `spark.sql("select * from counts")`. */
  table(name: string): Promise<DataFrame<Row>> {
    return this.sql(`SELECT * FROM ${quoteIdent(name)}`);
  }

  /** A DataFrame from local rows or an RDD (pairs become key/value columns, objects keep their fields). */
  createDataFrame<T>(data: readonly T[] | RDD<T>, columns?: readonly string[]): DataFrame<Row> {
    const records = (): T[] => (Array.isArray(data) ? (data as T[]).slice() : (data as RDD<T>).collect());
    return new DataFrame<Row>(
      this,
      new LocalSource(() => {
        const rows = toRows(records(), columns) as Row[];
        return { schema: schemaOf(rows, columnsFor(rows, columns)), rows };
      }, "local rows"),
    );
  }

  /** Spark's catalog, for temporary views. */
  get catalog(): { listTables(): string[]; dropTempView(name: string): boolean; tableExists(name: string): boolean } {
    return {
      listTables: () => [...this.views.values()].map((v) => v.name),
      dropTempView: (name) => this.dropView(name),
      tableExists: (name) => this.views.has(name.toLowerCase()),
    };
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (active === this) active = undefined;
    void this.db?.then((d) => d.close()).catch(() => {});
  }

  // ---- internal: views, files, writing -------------------------------------------------------

  /** Internal: registers a view. Replacing keeps nothing of the previous view's data. */
  registerView(name: string, source: FrameSource<object>, replace: boolean): void {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
      throw new AnalysisException(`createOrReplaceTempView(${JSON.stringify(name)}): a view name is letters, digits and _ (not starting with a digit)`);
    }
    const key = name.toLowerCase();
    const old = this.views.get(key);
    if (old && !replace) throw new AnalysisException(`[TEMP_TABLE_OR_VIEW_ALREADY_EXISTS] Temporary view '${name}' already exists; use createOrReplaceTempView`);
    // The old view's table is replaced at the next query that names it (its version no longer matches).
    this.views.set(key, { name, source, table: old?.table });
  }

  private dropView(name: string): boolean {
    const key = name.toLowerCase();
    const entry = this.views.get(key);
    if (!entry) return false;
    this.views.delete(key);
    if (this.db && entry.table) {
      const table = entry.table;
      void this.db
        .then((d) => d.exclusive((s) => s.run(`DROP TABLE IF EXISTS ${quoteIdent(table)}`)))
        .catch(() => {});
    }
    return true;
  }

  /** Internal: loads the views among `names` whose data changed since they were last loaded. */
  async prepareViews(s: Session, names: readonly string[], query?: string): Promise<void> {
    const wanted = new Set(names);
    if (query !== undefined) {
      const words = new Set(query.toLowerCase().match(/[a-z_][a-z0-9_]*/g) ?? []);
      for (const name of this.views.keys()) if (words.has(name)) wanted.add(name);
    }
    for (const name of wanted) {
      const entry = this.views.get(name);
      if (!entry) continue;
      await entry.source.refresh?.(s);
      const version = entry.source.version();
      if (entry.table !== undefined && entry.loadedVersion === version) continue;
      // Loaded beside, then renamed into place: a table, not a DuckDB view, because DuckDB reports the
      // tables behind a view as the names a query uses, and those names decide what to load.
      const staging = `_sb_load_${nextId++}`;
      if (entry.source.load) await entry.source.load(s, staging);
      else await loadRows(s, staging, entry.source.data());
      await s.run(`DROP TABLE IF EXISTS ${quoteIdent(name)}`);
      await s.run(`ALTER TABLE ${quoteIdent(staging)} RENAME TO ${quoteIdent(name)}`);
      entry.table = name;
      entry.loadedVersion = version;
    }
  }

  /** Internal: spark.read.*: reads now, and again later only when the files change. */
  async readFiles(format: FileFormat, p: string, options: { header?: boolean; inferSchema?: boolean; sep?: string }): Promise<DataFrame<Row>> {
    const source = new FileSource(format, p, options, nextId++);
    const db = await this.database();
    await db.exclusive((s) => source.refresh(s));
    this.fileSources.add(source);
    return new DataFrame<Row>(this, source);
  }

  /** Re-lists every file-backed DataFrame and re-reads those whose files changed. */
  async refreshFiles(): Promise<void> {
    if (this.fileSources.size === 0) return;
    const db = await this.database();
    await db.exclusive(async (s) => {
      for (const f of this.fileSources) await f.refresh(s);
    });
  }

  /**
   * Internal: a DataFrame over files used inside a running stream (its `rdd`) is brought up to date
   * before each batch's jobs, so a batch joins with the files as they are when it runs.
   */
  watchFilesFor(df: DataFrame<object>): void {
    if (!(df.source instanceof FileSource)) return;
    const ssc = StreamingContext.getActive();
    if (!ssc || this.watchedContexts.has(ssc)) return;
    this.watchedContexts.add(ssc);
    ssc.addBatchGenerationHook((time) => ssc.graph.addBatchPreparation(time, () => this.refreshFiles()));
  }

  /** Internal: writes a DataFrame to one file with COPY (the path is bound as a parameter). */
  async writeFile(df: DataFrame<object>, file: string, copyOptions: string): Promise<void> {
    const db = await this.database();
    const table = `_sb_write_${nextId++}`;
    await db.exclusive(async (s) => {
      try {
        if (df.source.load) await df.source.load(s, table);
        else await loadRows(s, table, df.source.data());
        await s.run(`COPY (SELECT * FROM ${quoteIdent(table)}) TO $1 ${copyOptions}`, [file]);
      } finally {
        await s.run(`DROP TABLE IF EXISTS ${quoteIdent(table)}`);
      }
    });
  }

  /**
   * Internal (stream.sql): runs `query` over one batch's rows, visible to it as the view `batch`. The
   * load, the query and the clean-up are one queued step, so another query never sees this `batch`.
   */
  async queryBatch(records: readonly unknown[], query: string, emptySchema?: StructType): Promise<FrameData<Row>> {
    const db = await this.database();
    const rows = toRows(records as unknown[]) as Row[];
    const data = { schema: rows.length === 0 && emptySchema ? emptySchema : schemaOf(rows), rows };
    const table = `_sb_batch_${nextId++}`;
    return db.exclusive(async (s) => {
      try {
        await loadRows(s, table, data);
        await s.run(`CREATE OR REPLACE TEMP VIEW batch AS SELECT * FROM ${quoteIdent(table)}`);
        await this.prepareViews(s, s.tableNames(query).filter((n) => n !== "batch"), query);
        return await s.query(query);
      } finally {
        await s.run("DROP VIEW IF EXISTS batch");
        await s.run(`DROP TABLE IF EXISTS ${quoteIdent(table)}`);
      }
    });
  }

  toString(): string {
    return `SparkSession(${this.conf.get("spark.app.name", this.sparkContext.appName)}, DuckDB${this.db ? "" : " not loaded yet"})`;
  }
}

/** Column names for toRows' output: the given names, or those of the rows. */
export function columnsFor(rows: readonly object[], columns?: readonly string[]): string[] | undefined {
  if (columns && columns.length > 0 && rows.length === 0) return [...columns];
  return undefined;
}
