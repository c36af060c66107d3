// SQL over streams in a plain program (the engine's public face, real DuckDB): the guide's "DataFrame
// and SQL Operations" word count, toDF and its types, live views of running streams (also during a
// large batch), stream.sql, joins with Parquet and CSV history, bad SQL, bad files, injection via data.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  AnalysisException,
  FileFormatError,
  ParseException,
  SparkContext,
  SparkSession,
  StreamingContext,
  type DataFrame,
  type DStream,
  type RDD,
  type Row,
} from "../engine/index.js";

let dir: string;
let spark: SparkSession;

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "sb-sql-"));
  spark = SparkSession.builder().appName("sql-engine-test").getOrCreate();
});

afterAll(() => {
  spark.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

function manual(sc = spark.sparkContext): StreamingContext {
  return new StreamingContext(sc, 1000, { clock: "manual" });
}

/** Captures console.log while fn runs (show() prints, as Spark's does). */
async function captureLog(fn: () => Promise<void>): Promise<string> {
  const lines: string[] = [];
  const original = console.log;
  console.log = (...args: unknown[]) => void lines.push(args.map(String).join(" "));
  try {
    await fn();
  } finally {
    console.log = original;
  }
  return lines.join("\n");
}

describe("the streaming guide's DataFrame and SQL Operations", () => {
  it("word count per batch: toDF, createOrReplaceTempView and spark.sql inside foreachRDD", async () => {
    // Spark's SqlNetworkWordCount, with a queue of lines for the socket.
    const ssc = manual();
    const lines = ssc.queueStream([["a b a"], ["b c"], ["c c c d"]]);
    const words = lines.flatMap((l) => l.split(" "));
    const perBatch: Row[][] = [];
    const shown = await captureLog(async () => {
      words.foreachRDD(async (rdd, time) => {
        const session = SparkSession.builder().getOrCreate();
        const wordsDataFrame = rdd.toDF("word");
        wordsDataFrame.createOrReplaceTempView("words");
        const wordCountsDataFrame = await session.sql("select word, count(*) as total from words group by word order by word");
        console.log(`========= ${time} =========`);
        wordCountsDataFrame.show();
        perBatch.push(wordCountsDataFrame.collect());
      });
      ssc.start();
      await ssc.advance(3000);
      await ssc.stop();
    });
    expect(perBatch).toEqual([
      [{ word: "a", total: 2 }, { word: "b", total: 1 }],
      [{ word: "b", total: 1 }, { word: "c", total: 1 }],
      [{ word: "c", total: 3 }, { word: "d", total: 1 }],
    ]);
    // Spark's show() layout: right-aligned cells between +---+ rules.
    expect(shown).toContain(["+----+-----+", "|word|total|", "+----+-----+", "|   c|    3|", "|   d|    1|", "+----+-----+"].join("\n"));
  }, 30_000);

  it("the same per batch with stream.sql over the view `batch`, and an async transform", async () => {
    const ssc = manual();
    const words = ssc.queueStream([["x", "y", "x"], [], ["y"]]);
    // The row type is read off the select list: value is the batch's string column, count(*) a number.
    const counts: DStream<{ word: string; n: number }> = words.sql("select value as word, count(*) as n from batch group by value order by value");
    const viaTransform = words.transform(async (rdd: RDD<string>) => {
      rdd.toDF("word").createOrReplaceTempView("tw");
      return (await spark.sql("select word, count(*) as n from tw group by word order by word")).rdd;
    });
    const got: unknown[][] = [];
    const got2: unknown[][] = [];
    counts.foreachRDD((rdd) => void got.push(rdd.collect()));
    viaTransform.foreachRDD((rdd) => void got2.push(rdd.collect()));
    ssc.start();
    await ssc.advance(3000);
    await ssc.stop();
    expect(got).toEqual([[{ word: "x", n: 2 }, { word: "y", n: 1 }], [], [{ word: "y", n: 1 }]]);
    expect(got2).toEqual(got);
  }, 30_000);
});

describe("toDF and DataFrames", () => {
  it("pairs become key/value, objects keep fields, values keep their types, collect() is typed", async () => {
    const sc = spark.sparkContext;
    const pairs = sc.parallelize([["a", 1], ["b", 2.5]] as [string, number][]).toDF();
    const rows: { key: string; value: number }[] = pairs.collect();
    expect(rows).toEqual([{ key: "a", value: 1 }, { key: "b", value: 2.5 }]);
    expect(pairs.columns).toEqual(["key", "value"]);
    expect(pairs.schema.simpleString()).toBe("struct<key:string,value:double>");
    const when = new Date(Date.UTC(2024, 0, 2, 3, 4, 5));
    const objs = sc.parallelize([{ id: 1, name: "x", ok: true, ts: when }]).toDF();
    const first: { id: number; name: string; ok: boolean; ts: Date } | undefined = objs.first();
    expect(first).toEqual({ id: 1, name: "x", ok: true, ts: when });
    expect(objs.schema.simpleString()).toBe("struct<id:bigint,name:string,ok:boolean,ts:timestamp>");
    const named: DataFrame<{ word: string; n: number }> = sc.parallelize([["w", 3]] as [string, number][]).toDF(["word", "n"]);
    expect(named.collect()).toEqual([{ word: "w", n: 3 }]);
    // Types survive DuckDB too.
    objs.createOrReplaceTempView("objs");
    const back = (await spark.sql("select id, name, ok, ts, id + 1 as next from objs")).collect();
    expect(back).toEqual([{ id: 1, name: "x", ok: true, ts: when, next: 2 }]);
    expect(String(objs)).toBe("DataFrame[id: bigint, name: string, ok: boolean, ts: timestamp]");
  }, 30_000);

  it("shows as an HTML table and as show()'s text", () => {
    const df = spark.sparkContext.parallelize(Array.from({ length: 25 }, (_, i) => ({ i, s: "<b>" }))).toDF();
    const bundle = (df as unknown as { [k: symbol]: () => Record<string, string> })[Symbol.for("Jupyter.display")]!();
    expect(bundle["text/html"]).toContain("<table");
    expect(bundle["text/html"]).toContain("&lt;b&gt;");
    expect(bundle["text/html"]).toContain("only showing top 20 of 25 rows");
    expect(bundle["text/plain"]).toContain("only showing top 20 rows");
    expect(df.count()).toBe(25);
  }, 30_000);

  it("write.parquet and write.csv write folders that spark.read reads back", async () => {
    const df = spark.createDataFrame([{ id: 1, name: "a, \"b\"" }, { id: 2, name: "c" }]);
    const pq = path.join(dir, "out.parquet");
    const csv = path.join(dir, "out.csv");
    await df.write.parquet(pq);
    await df.write.csv(csv, { header: true });
    expect(fs.existsSync(path.join(pq, "_SUCCESS"))).toBe(true);
    expect((await spark.read.parquet(pq)).collect()).toEqual(df.collect());
    expect((await spark.read.csv(csv, { header: true })).collect()).toEqual(df.collect());
    await expect(df.write.parquet(pq)).rejects.toThrow(/already exists.*overwrite/);
    await df.write.mode("overwrite").parquet(pq);
    const json = path.join(dir, "out.json");
    await df.write.json(json);
    expect((await spark.read.json(json)).collect()).toEqual(df.collect());
    df.createOrReplaceTempView("written");
    expect((await spark.table("written")).count()).toBe(2);
    expect(spark.catalog.listTables()).toContain("written");
  }, 30_000);
});

describe("live views of running streams", () => {
  it("a stateful stream's view is its state after the latest batch; other streams show their latest batch", async () => {
    const ssc = manual();
    const words = ssc.queueStream([["a", "b"], ["a"], ["c", "a"]]);
    const counts = words.map((w) => [w, 1] as [string, number]).updateStateByKey((vs: number[], s?: number) => vs.length + (s ?? 0));
    counts.createOrReplaceTempView("counts");
    words.window(2000, 1000).createOrReplaceTempView("recent");
    ssc.start();
    const q = async () => (await spark.sql("select key, value from counts order by value desc, key")).collect();
    await ssc.advance(1000);
    expect(await q()).toEqual([{ key: "a", value: 1 }, { key: "b", value: 1 }]);
    await ssc.advance(2000);
    expect(await q()).toEqual([{ key: "a", value: 3 }, { key: "b", value: 1 }, { key: "c", value: 1 }]);
    expect((await spark.sql("select value from recent order by value")).collect().map((r) => r.value)).toEqual(["a", "a", "c"]);
    // The same data as DataFrames, typed by the streams' records.
    const state: { key: string; value: number }[] = counts.state().toDF().collect();
    expect(state.sort((x, y) => (x.key < y.key ? -1 : 1))).toEqual([{ key: "a", value: 3 }, { key: "b", value: 1 }, { key: "c", value: 1 }]);
    const latest: { value: string }[] = words.latest().toDF().collect();
    expect(latest).toEqual([{ value: "c" }, { value: "a" }]);
    await ssc.stop();
  }, 30_000);

  it("a query while a large batch is processed sees the whole batch or none of it", async () => {
    const ssc = new StreamingContext(spark.sparkContext, 1000, { clock: "manual" });
    const N = 100_000;
    const big = Array.from({ length: N }, (_, i) => `k${i % 50_000}`);
    const words = ssc.queueStream([["seed"], big, big]);
    const counts = words.map((w) => [w, 1] as [string, number]).updateStateByKey((vs: number[], s?: number) => vs.length + (s ?? 0));
    counts.createOrReplaceTempView("loadcounts");
    words.createOrReplaceTempView("loadbatch");
    ssc.start();
    await ssc.advance(1000);
    const totals = new Set<string>();
    let queries = 0;
    // Batches 2 and 3 run in slices while queries keep arriving (the event loop is shared).
    const running = ssc.advance(2000);
    let done = false;
    void running.then(() => (done = true));
    while (!done && queries < 200) {
      // One query over both views: it sees both as of one completed batch.
      const [r] = (await spark.sql("select (select sum(value) from loadcounts) as total, (select count(*) from loadcounts) as keys, (select count(*) from loadbatch) as n")).collect();
      totals.add(`${r!.total}/${r!.keys}/${r!.n}`);
      queries++;
    }
    await running;
    const [end] = (await spark.sql("select sum(value) as total, count(*) as keys from loadcounts")).collect();
    expect(end).toEqual({ total: 1 + 2 * N, keys: 50_001 });
    // Every answer is the state and batch of a completed batch: 1, 1 + N or 1 + 2N words in total.
    for (const t of totals) expect(["1/1/1", `${1 + N}/50001/${N}`, `${1 + 2 * N}/50001/${N}`]).toContain(t);
    expect(queries).toBeGreaterThan(1);
    await ssc.stop();
  }, 60_000);
});

describe("joins with history on disk", () => {
  it("joins each batch with Parquet from SQL and with CSV from transform, re-reading only changed files", async () => {
    const hist = path.join(dir, "history");
    fs.mkdirSync(hist);
    await spark.createDataFrame([{ id: 1, name: "Ada" }, { id: 2, name: "Bo" }]).write.parquet(path.join(hist, "p1"));
    const csvFile = path.join(dir, "tiers.csv");
    fs.writeFileSync(csvFile, "id,tier\n1,gold\n2,silver\n");
    const customers = await spark.read.parquet(path.join(hist, "*", "*.parquet"));
    customers.createOrReplaceTempView("customers");
    const tiers = await spark.read.csv(csvFile, { header: true });
    const ssc = manual();
    const orders = ssc.queueStream([[{ id: 1, amount: 5 }], [{ id: 2, amount: 7 }], [{ id: 3, amount: 1 }]]);
    const named = orders.sql("select c.name, o.amount from batch o join customers c on o.id = c.id");
    const tiered = orders.transform((rdd) => rdd.map((o) => [o.id, o.amount] as [number, number]).join(tiers.rdd.keyBy((r) => Number(r.id))));
    const out1: unknown[][] = [];
    const out2: unknown[][] = [];
    named.foreachRDD((rdd) => void out1.push(rdd.collect()));
    tiered.foreachRDD((rdd) => void out2.push(rdd.collect().map(([id, [amount, row]]) => [id, amount, row.tier])));
    ssc.start();
    await ssc.advance(2000);
    const source = customers.source as unknown as { reads: number };
    const readsBefore = source.reads;
    expect(readsBefore).toBe(1);
    // New history arrives: the third batch's join sees customer 3, the CSV change is seen too.
    await spark.createDataFrame([{ id: 3, name: "Cy" }]).write.parquet(path.join(hist, "p2"));
    fs.writeFileSync(csvFile, "id,tier\n1,gold\n2,silver\n3,bronze\n");
    await ssc.advance(1000);
    await ssc.stop();
    expect(out1).toEqual([[{ name: "Ada", amount: 5 }], [{ name: "Bo", amount: 7 }], [{ name: "Cy", amount: 1 }]]);
    expect(out2).toEqual([[[1, 5, "gold"]], [[2, 7, "silver"]], [[3, 1, "bronze"]]]);
    expect(source.reads).toBe(2);
  }, 30_000);

  it("a missing file and a corrupt Parquet file give clear errors", async () => {
    await expect(spark.read.parquet(path.join(dir, "nope.parquet"))).rejects.toThrow(AnalysisException);
    await expect(spark.read.parquet(path.join(dir, "nope.parquet"))).rejects.toThrow(/PATH_NOT_FOUND.*nope\.parquet/);
    const bad = path.join(dir, "bad.parquet");
    fs.writeFileSync(bad, "PAR1 this is not parquet PAR1");
    const err = await spark.read.parquet(bad).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FileFormatError);
    expect((err as Error).message).toMatch(/cannot read .*bad\.parquet as parquet/);
  }, 30_000);
});

describe("bad SQL and data that looks like SQL", () => {
  it("bad SQL is a ParseException or AnalysisException with the query and position", async () => {
    const err = (await spark.sql("select *\nform counts").catch((e: unknown) => e)) as ParseException;
    expect(err).toBeInstanceOf(ParseException);
    expect(err.query).toBe("select *\nform counts");
    expect(err.line).toBe(2);
    expect(err.message).toContain("syntax error");
    const err2 = (await spark.sql("select nope from (select 1 as a)").catch((e: unknown) => e)) as AnalysisException;
    expect(err2).toBeInstanceOf(AnalysisException);
    expect(err2.message).toMatch(/nope/);
    expect([err2.line, err2.column]).toEqual([1, 8]);
  }, 30_000);

  it("a stream whose query is bad fails those batches and keeps running", async () => {
    const ssc = manual();
    const s = ssc.queueStream([[1], [2], [3]]);
    const bad = s.sql("select valeu from batch");
    const good: number[] = [];
    s.foreachRDD((rdd) => void good.push(...rdd.collect()));
    bad.foreachRDD(() => {});
    const failures: string[] = [];
    ssc.addStreamingListener({ onOutputOperationCompleted: (e) => void (e.outputOperationInfo.failureReason && failures.push(e.outputOperationInfo.failureReason)) });
    ssc.start();
    await ssc.advance(3000);
    await ssc.stop();
    expect(good).toEqual([1, 2, 3]);
    expect(failures).toHaveLength(3);
    expect(failures[0]).toMatch(/AnalysisException.*valeu/s);
    expect(ssc.lastError).toBeInstanceOf(AnalysisException);
  }, 30_000);

  it("quotes and semicolons in data and parameters stay data", async () => {
    const evil = ["x'); drop table t; --", 'a"b;c', "'; select 1; '"];
    const sc = new SparkContext();
    const df = sc.parallelize(evil.map((s, i) => ({ i, s }))).toDF();
    df.createOrReplaceTempView("evil");
    const back = (await spark.sql("select s from evil order by i")).collect().map((r) => r.s);
    expect(back).toEqual(evil);
    const hit = (await spark.sql("select i from evil where s = $1", [evil[0]!])).collect();
    expect(hit).toEqual([{ i: 0 }]);
    expect((await spark.sql("select i from evil where s = $s", { s: evil[2]! })).collect()).toEqual([{ i: 2 }]);
    expect((await spark.sql("select count(*) as n from evil")).collect()).toEqual([{ n: 3 }]);
  }, 30_000);
});
