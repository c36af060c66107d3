// What SQL adds to RDDs and DStreams: rdd.toDF(), stream.sql(query), stream.createOrReplaceTempView(name)
// (a live view: the state of a stateful stream, else its latest batch) and saveAsParquetFiles(prefix).
import * as fs from "node:fs";
import * as path from "node:path";
import { DStream, StatefulDStream } from "../dstream.js";
import { RDD } from "../rdd.js";
import type { StreamingContext } from "../context.js";
import { DataFrame, LocalSource, rddRows, schemaOf, type FrameData, type FrameSource } from "./dataframe.js";
import { SparkSession, columnsFor } from "./session.js";
import { toRows, type NamedRowOf, type QueryRow, type RowOf } from "./rows.js";
import { StructField, StructType, type Row } from "./types.js";

declare module "../rdd.js" {
  interface RDD<T> {
    /**
     * This RDD's records as a DataFrame: pairs become `key`/`value` columns, other tuples `_1`, `_2`, ...,
     * objects keep their fields, single values become `value`; names given rename them in order.
     * collect() gives rows typed after the records.
     */
    toDF<E>(this: RDD<E>): DataFrame<RowOf<E>>;
    toDF<E, const N extends readonly string[]>(this: RDD<E>, columns: N): DataFrame<NamedRowOf<E, N>>;
    toDF<E, const N extends readonly string[]>(this: RDD<E>, ...columns: N): DataFrame<NamedRowOf<E, N>>;
  }
}

declare module "../dstream.js" {
  interface DStream<T> {
    /**
     * Each batch through a SQL query (DuckDB's dialect) that reads the batch as the view `batch`
     * (rows as toDF() makes them) and may join any registered view: `words.sql("select value as word, count(*) as n from batch group by value")`.
     * The rows are typed from a simple select list (batch columns keep their types, counts and sums are
     * numbers), else as Row; `sql<MyRow>(query)` names the type.
     */
    sql<E, const Q extends string>(this: DStream<E>, query: Q): DStream<QueryRow<Q, RowOf<E>>>;
    sql<R extends object>(query: string): DStream<R>;
    /**
     * A live view for spark.sql from any cell: a stateful stream's current state (key, value), any
     * other stream's latest batch. It is an output operation: the stream runs for it.
     */
    createOrReplaceTempView(name: string): void;
    /** Each batch as Parquet in the folder `prefix-TIME[.suffix]`; a replayed batch replaces its own folder. */
    saveAsParquetFiles(prefix: string, suffix?: string): void;
  }
}

/** The session a stream's SQL runs in: the active one, else one over the stream's SparkContext. */
export function sessionFor(ssc: StreamingContext): SparkSession {
  return SparkSession.getActiveSession() ?? SparkSession.builder().sparkContext(ssc.sparkContext).getOrCreate();
}

function frameOf<T>(rdd: RDD<T>, columns: readonly string[] | undefined): FrameData<Row> {
  const rows = toRows(rddRows(rdd), columns) as Row[];
  return { schema: schemaOf(rows, columnsFor(rows, columns)), rows };
}

RDD.prototype.toDF = function toDF<T>(this: RDD<T>, ...args: unknown[]): DataFrame<never> {
  const columns = (Array.isArray(args[0]) ? args[0] : args) as string[];
  const spark = SparkSession.getActiveSession() ?? SparkSession.builder().sparkContext(this.sc).getOrCreate();
  return new DataFrame(spark, new LocalSource(() => frameOf(this, columns), `toDF of RDD[${this.id}]`)) as unknown as DataFrame<never>;
} as RDD<unknown>["toDF"];

/** A running stream as a view: reloaded into DuckDB when a batch has completed since the last load. */
class StreamViewSource implements FrameSource<Row> {
  /** The columns of the last non-empty load: an empty batch or state keeps them, so queries still bind. */
  private lastSchema?: StructType;

  constructor(private readonly stream: DStream<unknown>) {}

  private get stateful(): boolean {
    return this.stream instanceof StatefulDStream;
  }

  private current(): RDD<unknown> {
    const s = this.stream;
    return this.stateful ? (s as StatefulDStream<unknown, unknown>).state() : s.latest();
  }

  data(): FrameData<Row> {
    const frame = frameOf(this.current(), undefined);
    if (frame.rows.length > 0) {
      this.lastSchema = frame.schema;
      return frame;
    }
    // Before any data: a state is pairs (key, value); another stream's records are at least a value.
    const names = this.stateful ? ["key", "value"] : ["value"];
    return { schema: this.lastSchema ?? new StructType(names.map((n) => new StructField(n, "string"))), rows: [] };
  }

  version(): unknown {
    return this.stream.ssc.graph.lastCompletedTime ?? -1;
  }

  describe(): string {
    return `stream ${this.stream.name}`;
  }
}

DStream.prototype.createOrReplaceTempView = function createOrReplaceTempView<T>(this: DStream<T>, name: string): void {
  const spark = sessionFor(this.ssc);
  spark.registerView(name, new StreamViewSource(this as DStream<unknown>), true);
  // An output operation, so the stream is computed every batch even with no other output.
  this.foreachRDD(() => {}, { name: `createOrReplaceTempView(${name})` });
};

DStream.prototype.sql = function sql<T, R extends object>(this: DStream<T>, query: string): DStream<R> {
  const spark = sessionFor(this.ssc);
  // An empty batch has no rows to infer columns from: it reuses the last batch's schema, or gives no rows.
  let lastSchema: StructType | undefined;
  return this.transform(async (rdd: RDD<T>) => {
    const records = rdd.collect();
    if (records.length === 0 && !lastSchema) return rdd.sc.emptyRDD<R>();
    const result = await spark.queryBatch(records, query, records.length === 0 ? lastSchema : undefined);
    if (records.length > 0) lastSchema = schemaOf(toRows(records.slice(0, 1)));
    return rdd.sc.parallelize(result.rows as unknown as R[], 1);
  });
};

DStream.prototype.saveAsParquetFiles = function saveAsParquetFiles<T>(this: DStream<T>, prefix: string, suffix?: string): void {
  const spark = sessionFor(this.ssc);
  this.foreachRDD(
    async (rdd, time) => {
      const target = `${prefix}-${time}${suffix ? `.${suffix}` : ""}`;
      const records = rdd.collect();
      if (records.length > 0) {
        await spark.createDataFrame(records).write.mode("overwrite").parquet(target);
        return;
      }
      // No rows, no schema: an empty folder with _SUCCESS (as saveAsTextFiles), so readers of prefix-*/*.parquet skip it.
      const tmp = path.join(path.dirname(target), `.${path.basename(target)}.tmp-${process.pid}-${Date.now()}`);
      await fs.promises.mkdir(tmp, { recursive: true });
      await fs.promises.writeFile(path.join(tmp, "_SUCCESS"), "");
      await fs.promises.rm(target, { recursive: true, force: true });
      await fs.promises.rename(tmp, target);
    },
    { name: `saveAsParquetFiles(${prefix})` },
  );
};
