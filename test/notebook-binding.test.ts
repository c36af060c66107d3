// The notebook binding in process (the built kernel, a recording OutputSink): live displays under the
// defining cell, re-runs disposing outputs, late logs, interrupt of awaitTermination, shutdown, globals' types.
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { createRequire } from "node:module";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const REPO = path.resolve(__dirname, "..");
const requireDist = createRequire(path.join(REPO, "dist", "kernel", "notebook.js"));

type Bundle = Record<string, unknown>;
interface Sent {
  kind: "stream" | "display" | "update" | "clear";
  cell: number;
  text: string;
  id?: string;
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
  complete(code: string, cursor: number): Promise<{ matches: string[] }>;
  interrupt(): void;
  shutdown(restart: boolean): Promise<void>;
}

let interp: NotebookInterpreterLike;
const sent: Sent[] = [];
let count = 0;

function sinkFor(cell: number) {
  const text = (d: Bundle) => String(d["text/plain"] ?? "");
  return {
    stream: (_name: string, t: string) => sent.push({ kind: "stream", cell, text: t }),
    displayData: (d: Bundle, _m?: unknown, tr?: { display_id?: string }) =>
      sent.push({ kind: "display", cell, text: text(d), id: tr?.display_id, data: d }),
    updateDisplayData: (d: Bundle, _m: unknown, tr: { display_id: string }) =>
      sent.push({ kind: "update", cell, text: text(d), id: tr.display_id, data: d }),
    clearOutput: () => sent.push({ kind: "clear", cell, text: "" }),
  };
}

/** Runs a cell; returns its number (the OutputSink tags everything it sends with it). */
async function run(code: string, cellId?: string): Promise<{ n: number; outcome: Outcome }> {
  const n = ++count;
  const outcome = await interp.execute(code, {
    sink: sinkFor(n),
    executionCount: n,
    input: async () => "",
    cellId,
    silent: false,
  });
  return { n, outcome };
}

function ok(outcome: Outcome): void {
  expect(outcome, JSON.stringify(outcome)).toMatchObject({ status: "ok" });
}

/** Waits (bounded) until `pred` holds for what was sent; the kernel's timers drive the updates. */
async function until(pred: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}; sent:\n${JSON.stringify(sent.slice(-10), null, 1)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

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

describe("the notebook binding", () => {
  it("pre-binds sc, a lazy 1 s ssc with ui(), and the engine's exports, known to the checker", async () => {
    const { outcome } = await run(
      "const info: [number, string, boolean] = [ssc.batchDuration, typeof sc.parallelize, typeof ssc.ui === 'function'];\n" +
        "[info, typeof StreamingContext, typeof StateSpec.function, typeof Receiver, Seconds(2)]",
    );
    ok(outcome);
    expect(outcome.result?.["text/plain"]).toBe("[ [ 1000, 'function', true ], 'function', 'function', 'function', 2000 ]");
    const { outcome: typo } = await run("ssc.socketTextStrem('localhost', 9999)");
    expect(typo).toMatchObject({ status: "error", ename: "TypeScriptError" });
    expect((await interp.complete("ssc.socketT", 11)).matches).toContain("socketTextStream");
  }, 60_000);

  it("offers pair operations only on pair streams", async () => {
    ok((await run("const nums = ssc.queueStream([sc.parallelize([1, 2])]);\nconst pairs = nums.map((x) => [String(x), x] as [string, number]);")).outcome);
    expect((await interp.complete("pairs.reduceByK", 15)).matches).toEqual(["reduceByKey", "reduceByKeyAndWindow"]);
    // TypeScript lists methods whatever their `this` parameter; kernel/language.ts must filter them
    // (the notebook helper's report carries the patch).
    expect((await interp.complete("nums.reduceByK", 14)).matches, "reduceByKey offered on DStream<number>").toEqual([]);
  }, 60_000);

  it("pprint and chart update displays created under the defining cell, after the cell returned", async () => {
    const { n, outcome } = await run(
      [
        'const m1 = new StreamingContext(sc, Seconds(1), { clock: "manual" });',
        "const q1 = [sc.parallelize([['a', 1], ['b', 2]] as [string, number][]), sc.parallelize([['a', 5]] as [string, number][])];",
        "const s1 = m1.queueStream(q1);",
        "s1.pprint();",
        's1.chart({ mark: "bar" }, { mode: "update", title: "s1" });',
        "m1.start();",
      ].join("\n"),
      "define-1",
    );
    ok(outcome);
    const displays = sent.filter((s) => s.cell === n && s.kind === "display");
    // pprint, chart, and the (empty) log display of a cell that leaves its context running.
    expect(displays.map((d) => d.text)).toEqual(["(waiting for the first batch)", "s1: bar chart (update), 0 rows, no batch yet", ""]);
    const [printId, chartId] = displays.map((d) => d.id);
    const later = await run("await m1.advance(Seconds(2));");
    ok(later.outcome);
    await until(() => sent.some((s) => s.id === chartId && s.text.includes("2 rows")), "the chart's update");
    const print = sent.filter((s) => s.id === printId && s.kind === "update").pop();
    expect(print?.cell).toBe(n); // sent through the defining cell's sink, not the advancing cell's
    expect(print?.text).toContain("Time: 1000 ms\n-------------------------------------------\n(a,1)\n(b,2)");
    expect(print?.text).toContain("Time: 2000 ms\n-------------------------------------------\n(a,5)");
    const chart = sent.filter((s) => s.id === chartId && s.kind === "update").pop();
    expect(chart?.cell).toBe(n);
    expect(Object.keys(chart?.data ?? {})).toEqual(expect.arrayContaining(["application/vnd.vegalite.v5+json", "image/svg+xml"]));
    expect(chart?.text).toBe("s1: bar chart (update), 2 rows, time 2000: b=2, a=5");
    expect(sent.filter((s) => s.cell === later.n && s.kind !== "stream")).toEqual([]);
  }, 60_000);

  it("console.log in foreachRDD goes to a log display under the defining cell; a re-run replaces that output", async () => {
    const define = await run(
      ['const m2 = new StreamingContext(sc, Seconds(1), { clock: "manual" });', "const s2 = m2.queueStream<number>([], true, sc.parallelize([7]));", "m2.start();"].join("\n"),
    );
    ok(define.outcome);
    const first = await run('s2.foreachRDD((rdd, t) => console.log("first", t, rdd.collect()));', "logger");
    ok(first.outcome);
    const log1 = sent.find((s) => s.cell === first.n && s.kind === "display");
    expect(log1?.text).toBe("");
    const advance = await run("await m2.advance(Seconds(1));");
    ok(advance.outcome);
    await until(() => sent.some((s) => s.id === log1?.id && s.text.includes("first 1000 [ 7 ]")), "the log display's update");
    expect(sent.filter((s) => s.cell === advance.n && s.kind === "stream")).toEqual([]);

    // Re-running the cell (same cell id) unregisters the first foreachRDD and quiets its display.
    const second = await run('s2.foreachRDD((rdd, t) => console.log("second", t));', "logger");
    ok(second.outcome);
    const log2 = sent.find((s) => s.cell === second.n && s.kind === "display");
    ok((await run("await m2.advance(Seconds(1));")).outcome);
    await until(() => sent.some((s) => s.id === log2?.id && s.text.includes("second 2000")), "the new log display");
    const stale = sent.filter((s) => s.id === log1?.id && s.text.includes("2000"));
    expect(stale).toEqual([]);
    ok((await run("await m2.stop();")).outcome);
  }, 60_000);

  it("start, stop and start again from cells: the state is kept, the same display goes on", async () => {
    const define = await run(
      [
        'const m6 = new StreamingContext(sc, Seconds(1), { clock: "manual" });',
        "const q6: number[][] = [[1], [2], [3]];",
        "const total6 = m6.queueStream(q6).map((x) => ['sum', x] as [string, number])",
        "  .updateStateByKey((v: number[], s?: number) => v.reduce((a, b) => a + b, 0) + (s ?? 0));",
        "total6.pprint();",
        "m6.start();",
        "await m6.advance(Seconds(1));",
      ].join("\n"),
    );
    ok(define.outcome);
    const printId = sent.find((s) => s.cell === define.n && s.kind === "display")?.id;
    ok((await run("await m6.stop();")).outcome);
    const again = await run("m6.start();\nawait m6.advance(Seconds(2));\ntotal6.state().collect()");
    ok(again.outcome);
    expect(again.outcome.result?.["text/plain"]).toBe("[ [ 'sum', 6 ] ]");
    await until(() => sent.some((s) => s.id === printId && s.text.includes("(sum,6)")), "the pprint display after the restart");
    ok((await run("await m6.stop();")).outcome);
  }, 60_000);

  it("a failing batch is reported under the cell that started the context, after it returned", async () => {
    const start = await run(
      [
        'const m5 = new StreamingContext(sc, Seconds(1), { clock: "manual" });',
        "m5.queueStream([[1], [2]]).foreachRDD((rdd) => { if (rdd.first() === 2) throw new RangeError('two is too many'); });",
        "m5.start();",
      ].join("\n"),
    );
    ok(start.outcome);
    const log = sent.find((s) => s.cell === start.n && s.kind === "display");
    expect(log?.text).toBe("");
    await run("await m5.advance(Seconds(2)).catch(() => {});");
    await until(() => sent.some((s) => s.id === log?.id && s.text.includes("batch 2000 ms: output operation 0 (foreachRDD) failed: RangeError: two is too many")), "the failure in the log display");
    await run("await m5.stop();");
  }, 60_000);

  it("an interrupt during awaitTermination() stops the context gracefully", async () => {
    const pending = run(
      [
        "const m3 = new StreamingContext(sc, Milliseconds(50));",
        "m3.queueStream<number>([], true, sc.parallelize([1])).foreachRDD(() => {});",
        "m3.start();",
        "await m3.awaitTermination();",
      ].join("\n"),
    );
    // The cell is waiting once the context has run a batch; then interrupt it.
    const ctxModule = requireDist("./notebook-prelude.js") as { contextsAwaited(): { state: string; lastCompletedBatchTime?: number }[] };
    await until(() => ctxModule.contextsAwaited().some((c) => c.lastCompletedBatchTime !== undefined), "the awaited context's first batch");
    interp.interrupt();
    const { outcome } = await pending;
    expect(outcome.status).toBe("ok"); // awaitTermination resolves: the context stopped, the cell ends normally
    expect(sent.some((s) => s.kind === "stream" && s.text.includes("stopping the StreamingContext gracefully"))).toBe(true);
    const { outcome: state } = await run("m3.state");
    expect(state.result?.["text/plain"]).toBe("'stopped'");
  }, 60_000);

  it("display.vegaLite gets a PNG rendering beside the spec, sent before the cell's reply", async () => {
    const { n, outcome } = await run('display.vegaLite({ mark: "bar", data: { values: [{ a: "x", b: 3 }] }, encoding: { x: { field: "a", type: "nominal" }, y: { field: "b", type: "quantitative" } } }); 0');
    ok(outcome);
    const id = sent.find((s) => s.cell === n && s.kind === "display")?.id;
    // No waiting: nbclient stops listening at the reply, so an image sent after it is lost from the notebook.
    const update = sent.find((s) => s.id === id && s.kind === "update");
    expect(String(update?.data?.["image/png"] ?? "")).toMatch(/^iVBOR/);
    expect(update?.data?.["image/svg+xml"]).toBeUndefined();
  }, 60_000);

  it("shutdown stops the active context and its receiver closes its socket", async () => {
    const server = net.createServer((socket) => {
      socket.write("hello\n");
      socket.on("error", () => {});
      socket.on("close", () => closed.resolve());
    });
    let resolveClosed!: () => void;
    const closedPromise = new Promise<void>((r) => (resolveClosed = r));
    const closed = { resolve: resolveClosed };
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as net.AddressInfo).port;
    const connected = new Promise<void>((r) => server.once("connection", () => r()));
    ok((await run(`const m4 = new StreamingContext(sc, Milliseconds(100));\nm4.socketTextStream("127.0.0.1", ${port}).count().foreachRDD(() => {});\nm4.start();`)).outcome);
    await connected;
    await interp.shutdown(false);
    await closedPromise;
    const { StreamingContext } = requireDist("./notebook-prelude.js") as { StreamingContext: { getActive(): unknown } };
    expect(StreamingContext.getActive()).toBeUndefined();
    server.close();
  }, 60_000);
});
