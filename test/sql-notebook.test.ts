// SQL from notebook cells (the built kernel's notebook binding, in process): `spark` is pre-bound and
// typed, DuckDB loads only at the first query, a DataFrame shows as a table, collect() is typed by the
// RDD's records, a running stream's view answers from another cell, and bad SQL is an error under the
// cell with the query and position while the stream keeps running.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { createRequire } from "node:module";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const REPO = path.resolve(__dirname, "..");
const requireDist = createRequire(path.join(REPO, "dist", "kernel", "notebook.js"));

type Bundle = Record<string, unknown>;
interface Sent {
  kind: string;
  cell: number;
  text: string;
  data?: Bundle;
}
interface Outcome {
  status: string;
  result?: Bundle;
  ename?: string;
  evalue?: string;
}
interface NotebookInterpreterLike {
  execute(code: string, ctx: unknown): Promise<Outcome>;
  shutdown(restart: boolean): Promise<void>;
}

let interp: NotebookInterpreterLike;
const sent: Sent[] = [];
let count = 0;

async function run(code: string): Promise<{ n: number; outcome: Outcome }> {
  const n = ++count;
  const text = (d: Bundle) => String(d["text/plain"] ?? "");
  const outcome = await interp.execute(code, {
    sink: {
      stream: (_name: string, t: string) => sent.push({ kind: "stream", cell: n, text: t }),
      displayData: (d: Bundle) => sent.push({ kind: "display", cell: n, text: text(d), data: d }),
      updateDisplayData: (d: Bundle) => sent.push({ kind: "update", cell: n, text: text(d), data: d }),
      clearOutput: () => {},
    },
    executionCount: n,
    input: async () => "",
    cellId: `cell-${n}`,
    silent: false,
  });
  return { n, outcome };
}

function ok(outcome: Outcome): void {
  expect(outcome, JSON.stringify(outcome)).toMatchObject({ status: "ok" });
}

const duckdbLoaded = () => Object.keys(requireDist.cache).some((k) => k.includes(`${path.sep}@duckdb${path.sep}`));

beforeAll(() => {
  const main = path.join(REPO, "dist", "kernel", "notebook.js");
  if (!fs.existsSync(main)) throw new Error(`${main} is missing: run "npm run build" first`);
  const { createNotebookInterpreter } = requireDist("./notebook.js") as {
    createNotebookInterpreter(o: { cwd: string; warmup: false; handleSigint: false }): NotebookInterpreterLike;
  };
  interp = createNotebookInterpreter({ cwd: os.tmpdir(), warmup: false, handleSigint: false });
});

afterAll(async () => {
  await interp?.shutdown(false);
});

describe("SQL in a notebook", () => {
  it("spark is pre-bound; DuckDB loads at the first query, not before", async () => {
    ok((await run("const n0: number = sc.parallelize([1, 2, 3]).count();\nString(spark)")).outcome);
    expect(duckdbLoaded()).toBe(false);
    const { outcome } = await run("(await spark.sql('select 40 + 2 as answer')).collect()[0]");
    ok(outcome);
    expect(outcome.result?.["text/plain"]).toBe("{ answer: 42 }");
    expect(duckdbLoaded()).toBe(true);
  }, 60_000);

  it("a DataFrame is the last expression: an HTML table; collect() is typed by the RDD's records", async () => {
    const { outcome } = await run(
      [
        "const pairsDF = sc.parallelize([['a', 1], ['b', 2]] as [string, number][]).toDF();",
        "const firstKey: string = pairsDF.collect()[0]!.key;",
        "const total: number = pairsDF.collect().reduce((s, r) => s + r.value, 0);",
        "pairsDF",
      ].join("\n"),
    );
    ok(outcome);
    expect(outcome.result?.["text/html"]).toMatch(/<table class="dataframe">.*<th[^>]*>key<\/th><th[^>]*>value<\/th>.*<td>a<\/td><td>1<\/td>/s);
    expect(outcome.result?.["text/plain"]).toContain("|key|value|");
    const wrong = await run("const notANumber: number = pairsDF.collect()[0]!.key;");
    expect(wrong.outcome).toMatchObject({ status: "error", ename: "TypeScriptError" });
    expect(wrong.outcome.evalue).toMatch(/string.*number/);
    // stream.sql's rows are typed from the select list.
    const typed = [
      'const tctx = new StreamingContext(sc, Milliseconds(100), { clock: "manual" });',
      'const typedSql = tctx.queueStream([["a"]]).sql("select value as word, count(*) as n from batch group by value");',
    ].join("\n");
    ok((await run(`${typed}\ntypedSql.foreachRDD((rdd) => { const n: number = rdd.first().n; const w: string = rdd.first().word; });`)).outcome);
    const badSql = await run("typedSql.foreachRDD((rdd) => { const n: string = rdd.first().n; });");
    expect(badSql.outcome).toMatchObject({ status: "error", ename: "TypeScriptError" });
  }, 60_000);

  it("a running stream's view answers from another cell; bad SQL errs under its cell and the stream runs on", async () => {
    ok(
      (
        await run(
          [
            'const live = new StreamingContext(sc, Milliseconds(200), { clock: "manual" });',
            "const feed: string[][] = [['a', 'b'], ['a'], ['c', 'a']];",
            "const liveCounts = live.queueStream(feed.slice()).map((w) => [w, 1] as [string, number]).updateStateByKey((vs: number[], s?: number) => vs.length + (s ?? 0));",
            'liveCounts.createOrReplaceTempView("live_counts");',
            "live.queueStream(feed.slice()).sql(\"select valu from batch\").foreachRDD(() => {});",
            "live.start();",
            "await live.advance(400);",
          ].join("\n"),
        )
      ).outcome,
    );
    const query = await run('await spark.sql("select key, value from live_counts order by key")');
    ok(query.outcome);
    expect(query.outcome.result?.["text/plain"]).toContain("|  a|    2|");
    const bad = await run('await spark.sql("select key, value\\nfrom live_counts\\nwhere value >> 1 1")');
    expect(bad.outcome).toMatchObject({ status: "error", ename: "ParseException" });
    expect(bad.outcome.evalue).toContain("LINE 3");
    expect(bad.outcome.evalue).toContain("where value >> 1 1");
    // The stream keeps running: the next batch lands in the view.
    ok((await run("await live.advance(200);")).outcome);
    const after = await run('(await spark.sql("select value from live_counts where key = \'a\'")).collect()[0]!.value');
    expect(after.outcome.result?.["text/plain"]).toBe("3");
    // The stream's own bad query failed its batches; each failure is reported under the cell that started it.
    const reports = sent.filter((s) => s.text.includes("failed: AnalysisException") && s.text.includes("valu"));
    expect(reports.length).toBeGreaterThan(0);
    ok((await run("await live.stop();")).outcome);
  }, 60_000);
});
