// Spark's DStream behaviours that differ from "treat a missing RDD as empty": errors Spark raises
// (TransformedDStream, UnionDStream, slice before start), slice computing on demand, StateDStream with
// no parent RDD, the other updateStateByKey/mapWithState forms, State.remove, union of a list,
// persist(StorageLevel), and a queueStream of any[] type-checked in a real cell.
import * as fs from "node:fs";
import { createRequire } from "node:module";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import {
  MissingParentRDDError,
  NullTransformResultError,
  StateSpec,
  StorageLevel,
  StreamingContextStateError,
  type DStream,
  type RDD,
  type State,
} from "../engine/index.js";
import { newContext, runBatches, sorted } from "./engine-helpers.js";

type P = [string, number];

/** Runs `numBatches` batches of a queue (null = no RDD at that batch) and collects outputs and errors. */
async function runQueue<T, U>(queue: (T[] | null)[], build: (s: DStream<T>) => DStream<U>, numBatches = queue.length) {
  const { sc, ssc } = newContext();
  const q = queue.map((xs) => (xs === null ? null : sc.parallelize(xs)));
  const out: [number, U[]][] = [];
  const failures: string[] = [];
  build(ssc.queueStream<T>(q)).foreachRDD((rdd, time) => void out.push([time, sorted(rdd.collect())]));
  ssc.addStreamingListener({ onOutputOperationCompleted: (e) => void (e.outputOperationInfo.failureReason && failures.push(e.outputOperationInfo.failureReason)) });
  await ssc.start();
  for (let i = 0; i < numBatches; i++) await ssc.advance(1000);
  await ssc.stop();
  return { out, failures, error: ssc.lastError };
}

describe("errors Spark raises", () => {
  it("a transform function returning null or undefined fails the batch (Spark: 'Transform function must not return null')", async () => {
    for (const bad of [null, undefined]) {
      const r = await runQueue([[1], [2]], (s) => s.transform((rdd) => (rdd.first() === 2 ? (bad as unknown as RDD<number>) : rdd)));
      expect(r.out).toEqual([[1000, [1]]]);
      expect(r.error).toBeInstanceOf(NullTransformResultError);
      expect((r.error as Error).message).toMatch(/^Transform function must not return null/);
    }
  });

  it("union, transform and transformWith raise when a parent has no RDD at a batch time (a null queue entry)", async () => {
    const { sc, ssc } = newContext();
    const a = ssc.queueStream([sc.parallelize([1]), null, sc.parallelize([3])]);
    const b = ssc.queueStream([sc.parallelize([10]), sc.parallelize([20]), sc.parallelize([30])]);
    const outs: Record<string, [number, number[]][]> = { union: [], ssc_union: [], transform: [], transformWith: [] };
    a.union(b).foreachRDD((r, t) => void outs.union?.push([t, sorted(r.collect())]));
    ssc.union([a, b]).foreachRDD((r, t) => void outs.ssc_union?.push([t, sorted(r.collect())]));
    a.transform((r) => r.map((x) => x * 2)).foreachRDD((r, t) => void outs.transform?.push([t, r.collect()]));
    a.transformWith(b, (x: RDD<number>, y: RDD<number>) => x.union(y)).foreachRDD((r, t) => void outs.transformWith?.push([t, sorted(r.collect())]));
    const failures: string[] = [];
    ssc.addStreamingListener({ onOutputOperationCompleted: (e) => void (e.outputOperationInfo.failureReason && failures.push(`${e.outputOperationInfo.batchTime} ${e.outputOperationInfo.failureReason}`)) });
    await ssc.start();
    for (let i = 0; i < 3; i++) await ssc.advance(1000);
    await ssc.stop();
    // Batch 2000 fails in every one of them, as in Spark; batches 1000 and 3000 are normal.
    expect(outs).toEqual({
      union: [[1000, [1, 10]], [3000, [3, 30]]],
      ssc_union: [[1000, [1, 10]], [3000, [3, 30]]],
      transform: [[1000, [2]], [3000, [6]]],
      transformWith: [[1000, [1, 10]], [3000, [3, 30]]],
    });
    expect(failures).toHaveLength(4);
    expect(failures.every((f) => f.startsWith("2000 MissingParentRDDError"))).toBe(true);
    expect(failures.filter((f) => f.includes("Could not generate RDD from a parent for unifying at time 2000 ms"))).toHaveLength(2);
    expect(failures.filter((f) => f.includes("Couldn't generate RDD from parent at time 2000 ms"))).toHaveLength(2);
    expect(ssc.lastError).toBeInstanceOf(MissingParentRDDError);
  });

  it("map, filter, reduceByKey and count pass a missing RDD through (no output), as Spark's MappedDStream", async () => {
    const r = await runQueue([[1, 2], null, [3]], (s) => s.map((x) => [x % 2, x] as [number, number]).reduceByKey((a, b) => a + b));
    expect(r.out).toEqual([[1000, [[0, 2], [1, 1]]], [3000, [[1, 3]]]]);
    expect(r.error).toBeUndefined();
  });

  it("slice before the context has started raises 'has not been initialized'", () => {
    const { sc, ssc } = newContext();
    const s = ssc.queueStream([sc.parallelize([1])]);
    expect(() => s.slice(0, 1000)).toThrow(StreamingContextStateError);
    expect(() => s.slice(0, 1000)).toThrow(/has not been initialized/);
  });
});

describe("slice computes on demand (Spark's BasicOperationsSuite 'slice')", () => {
  it("returns every valid time in the range, generating batches not generated yet", async () => {
    const { sc, ssc } = newContext();
    const s = ssc.queueStream([[1], [2], [3], [4]].map((x) => sc.parallelize(x)));
    const seen: number[][] = [];
    s.foreachRDD((r) => void seen.push(r.collect()));
    await ssc.start();
    // As Spark's test: the (manual) clock has not moved, so every batch sliced is computed on demand.
    const values = (from: number, to: number) => new Set(s.slice(from, to).flatMap((r) => r.collect()));
    expect(values(0, 1000)).toEqual(new Set([1]));
    expect(values(0, 2000)).toEqual(new Set([1, 2]));
    expect(values(1000, 2000)).toEqual(new Set([1, 2]));
    expect(values(2000, 4000)).toEqual(new Set([2, 3, 4]));
    // Unaligned ends are floored to the slide: (1500, 3500) is 1000..3000.
    expect(values(1500, 3500)).toEqual(new Set([1, 2, 3]));
    // The batches sliced ahead of time are the ones the clock then runs.
    await ssc.advance(4000);
    await ssc.stop();
    expect(seen).toEqual([[1], [2], [3], [4]]);
  });

  it("a windowed stream slices at its own slide", async () => {
    const { sc, ssc } = newContext();
    const s = ssc.queueStream([[1], [2], [3], [4]].map((x) => sc.parallelize(x)));
    const w = s.window(2000, 2000);
    w.foreachRDD(() => {});
    await ssc.start();
    expect(w.slice(1000, 4000).map((r) => sorted(r.collect()))).toEqual([[1, 2], [3, 4]]);
    await ssc.stop();
  });
});

describe("updateStateByKey as Spark's StateDStream", () => {
  it("with no RDD from its parent, every key is updated with empty values (first batch: nothing)", async () => {
    const calls: [string, number[], number | undefined][] = [];
    const idleOut = (values: number[], state: number | undefined, key: string) => {
      calls.push([key, values, state]);
      // A key with no new values for a batch is dropped: a timeout, as Spark users write it.
      return values.length === 0 ? undefined : (state ?? 0) + values.length;
    };
    const r = await runQueue<string, [string, number]>([null, ["a", "b"], ["a"], null, ["b"]], (s) => s.map((w) => [w, 1] as P).updateStateByKey(idleOut));
    expect(r.out).toEqual([
      [2000, [["a", 1], ["b", 1]]],
      [3000, [["a", 2]]],
      [4000, []],
      [5000, [["b", 1]]],
    ]);
    expect(calls.filter(([, vs]) => vs.length === 0)).toEqual([
      ["b", [], 1],
      ["a", [], 2],
    ]);
  });

  it("the (time, key, values, state) form gets the batch time", async () => {
    const out = await runBatches(
      [["a"], ["a", "b"], []],
      (s) =>
        s
          .map((w) => [w, 1] as P)
          .updateStateByKey((time: number, key: string, values: number[], state: string | undefined) => `${key}@${time}:${values.length + Number(state?.split(":")[1] ?? 0)}`, {
            withTime: true,
          }),
      { sort: true },
    );
    expect(out).toEqual([
      [["a", "a@1000:1"]],
      [["a", "a@2000:2"], ["b", "b@2000:1"]],
      [["a", "a@3000:2"], ["b", "b@3000:1"]],
    ]);
  });

  it("the iterator form sees the whole partition once per batch; keys it leaves out are removed", async () => {
    let calls = 0;
    const out = await runBatches(
      [["a", "b"], ["a", "c"], ["a"]],
      (s) =>
        s.map((w) => [w, 1] as P).updateStateByKeyIterator((records: IterableIterator<[string, number[], number | undefined]>) => {
          calls++;
          const kept: [string, number][] = [];
          for (const [k, vs, st] of records) {
            const n = (st ?? 0) + vs.length;
            if (k !== "b" || vs.length > 0) kept.push([k, n]);
          }
          return kept;
        }),
      { sort: true },
    );
    expect(out).toEqual([
      [["a", 1], ["b", 1]],
      [["a", 2], ["c", 1]],
      [["a", 3], ["c", 1]],
    ]);
    expect(calls).toBe(3);
  });

  it("the iterator form with the batch time, and an initial RDD", async () => {
    const { sc } = newContext();
    const initialRDD = sc.parallelize([["z", 5]] as P[]);
    const out = await runBatches(
      [["a"], []],
      (s) =>
        s.map((w) => [w, 1] as P).updateStateByKeyIterator(
          (time: number, records: IterableIterator<[string, number[], number | undefined]>) =>
            [...records].map(([k, vs, st]) => [k, (st ?? 0) + vs.length + time / 1000] as P),
          { withTime: true, initialRDD },
        ),
      { sort: true },
    );
    expect(out).toEqual([
      [["a", 2], ["z", 6]],
      [["a", 4], ["z", 8]],
    ]);
  });
});

describe("mapWithState and State", () => {
  it("StateSpec.function((time, key, value, state) => ...) gets the batch time, on data and on timeouts", async () => {
    const spec = StateSpec.function((time: number, key: string, value: number | undefined, state: State<number>) => {
      if (state.isTimingOut()) return `${key} timed out @${time}`;
      const n = (state.getOption() ?? 0) + (value ?? 0);
      state.update(n);
      return `${key}=${n} @${time}`;
    }).timeout(2000);
    const out = await runBatches([[["a", 1] as P], [["a", 2] as P], [], [], []], (s) => s.mapWithState(spec));
    expect(out).toEqual([["a=1 @1000"], ["a=3 @2000"], [], [], ["a timed out @5000"]]);
  });

  it("State.remove() after update() leaves the state removed, not updated (Spark's StateImpl)", async () => {
    const seen: [boolean, boolean][] = [];
    const spec = StateSpec.function((key: string, value: number | undefined, state: State<number>) => {
      state.update((state.getOption() ?? 0) + (value ?? 0));
      if (value === 0) state.remove();
      seen.push([state.isUpdated(), state.isRemoved()]);
      return key;
    });
    const { sc, ssc } = newContext();
    const st = ssc.queueStream([[["a", 1]], [["a", 0]], [["a", 5]]].map((b) => sc.parallelize(b as P[]))).mapWithState(spec);
    const snaps: P[][] = [];
    st.stateSnapshots().foreachRDD((r) => void snaps.push(r.collect()));
    await ssc.start();
    await ssc.advance(3000);
    await ssc.stop();
    expect(seen).toEqual([
      [true, false],
      [false, true],
      [true, false],
    ]);
    expect(snaps).toEqual([[["a", 1]], [], [["a", 5]]]);
  });
});

describe("API forms", () => {
  it("persist accepts Spark's StorageLevel names (all mean in memory) and NONE undoes cache()", async () => {
    const { sc, ssc } = newContext();
    let computed = 0;
    const s = ssc.queueStream([sc.parallelize([1, 2])]).map((x) => (computed++, x));
    expect(s.persist(StorageLevel.MEMORY_AND_DISK_SER_2)).toBe(s);
    expect(s.getStorageLevel()).toBe(StorageLevel.MEMORY_AND_DISK_SER_2);
    s.persist("DISK_ONLY");
    expect(s.getStorageLevel().name).toBe("DISK_ONLY");
    expect(() => s.persist("MEMORY_ONLY_3" as "MEMORY_ONLY")).toThrow(/Invalid StorageLevel: MEMORY_ONLY_3/);
    s.foreachRDD((r) => void r.count());
    s.foreachRDD((r) => void r.count());
    await ssc.start();
    await ssc.advance(1000);
    await ssc.stop();
    // Persisted: both outputs share one computation of the batch.
    expect(computed).toBe(2);
    expect(s.persist(StorageLevel.NONE).getStorageLevel()).toBe(StorageLevel.NONE);
    expect(StorageLevel.fromString("MEMORY_ONLY")).toBe(StorageLevel.MEMORY_ONLY);
  });

  it("ssc.union takes a list as well as arguments", async () => {
    const { sc, ssc } = newContext();
    const mk = (xs: number[]) => ssc.queueStream([sc.parallelize(xs)]);
    const out: number[][] = [];
    ssc.union([mk([1]), mk([2]), mk([3])]).foreachRDD((r) => void out.push(sorted(r.collect())));
    ssc.union(mk([4]), mk([5])).foreachRDD((r) => void out.push(sorted(r.collect())));
    await ssc.start();
    await ssc.advance(1000);
    await ssc.stop();
    expect(out).toEqual([[1, 2, 3], [4, 5]]);
  });

  it("a queueStream of any[] gives a DStream<any> (this file is type-checked with noImplicitAny)", async () => {
    const { ssc } = newContext();
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const q: any[] = [[1, 2], [3]];
    const out: number[][] = [];
    ssc.queueStream(q).map((x) => x * 10).foreachRDD((r) => void out.push(r.collect()));
    await ssc.start();
    await ssc.advance(2000);
    await ssc.stop();
    expect(out).toEqual([[10, 20], [30]]);
  });
});

describe("in a notebook cell (the kernel's interpreter with the notebook prelude)", () => {
  it("queueStream(any[]) type-checks; accumulators and event time show in ssc.ui()", async () => {
    // The built kernel, as the kernel process loads it (the prelude module is resolved next to it).
    const requireDist = createRequire(path.resolve(__dirname, "..", "dist", "kernel", "notebook.js"));
    const { createInterpreter } = requireDist("./evaluate.js") as typeof import("../kernel/evaluate.js");
    const { notebookPrelude } = requireDist("./notebook.js") as typeof import("../kernel/notebook.js");
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "streambook-spark-cell-"));
    const it = createInterpreter({ cwd: dir, warmup: false, handleSigint: false, prelude: notebookPrelude() });
    const sent: { kind: string; data?: Record<string, unknown> }[] = [];
    const sink = {
      stream: () => {},
      displayData: (data: Record<string, unknown>) => void sent.push({ kind: "display", data }),
      updateDisplayData: (data: Record<string, unknown>) => void sent.push({ kind: "update", data }),
      clearOutput: () => {},
    };
    let n = 0;
    const run = (code: string) => it.execute(code, { sink: sink as never, executionCount: ++n, input: async () => "", silent: false });
    try {
      await it.warm();
      const typed = await run(
        [
          'ssc = new StreamingContext(sc, Seconds(1), { clock: "manual" });',
          "const q: any[] = [[1, 2], [3]];",
          "const tens = ssc.queueStream(q).map((x) => x * 10);",
          'const dropped = sc.longAccumulator("droppedWords");',
          "tens.foreachRDD((rdd) => rdd.foreach((x) => { if (x > 10) dropped.add(1); }));",
          "const ev = ssc.queueStream([[{ t: 5000, w: 'a' }], [{ t: 20000, w: 'b' }], [{ t: 1000, w: 'late' }]])",
          "  .withWatermark((e) => e.t, Seconds(5)).countByEventWindow((e) => e.w, Seconds(10), Seconds(5));",
          "ev.foreachRDD(() => {});",
        ].join("\n"),
      );
      expect(typed).toEqual({ status: "ok" });
      const ui = await run("const panel = ssc.ui(); await ssc.start(); await ssc.advance(3000); await panel.flush(); panel.summary()");
      expect(ui.status).toBe("ok");
      const text = String((ui as { result?: Record<string, unknown> }).result?.["text/plain"]);
      expect(text).toContain("droppedWords");
      expect(text).toMatch(/value: '2'/);
      expect(text).toMatch(/lateRecordsDropped: 1/);
      const tables = sent.map((m) => String(m.data?.["text/html"] ?? "")).filter((h) => h.includes("Accumulators"));
      expect(tables.at(-1)).toContain("droppedWords");
      expect(tables.at(-1)).toContain("late records dropped");
      await run("await ssc.stop()");
    } finally {
      await it.shutdown(false);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
