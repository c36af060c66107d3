// BasicOperationsSuite-style cases: input batches and expected output batches side by side.

import { describe, expect, it } from "vitest";
import { runBatches, runBatches2, newContext, sorted } from "./engine-helpers.js";
import { JUPYTER_DISPLAY, type RDD } from "../engine/index.js";

type P = [string, number];

describe("basic operations", () => {
  it("map", async () => {
    expect(await runBatches([[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]], (s) => s.map((x) => String(x)))).toEqual([
      ["1", "2", "3", "4"],
      ["5", "6", "7", "8"],
      ["9", "10", "11", "12"],
    ]);
  });

  it("flatMap", async () => {
    expect(await runBatches([[1, 2], [3]], (s) => s.flatMap((x) => [x, x * 2]))).toEqual([[1, 2, 2, 4], [3, 6]]);
  });

  it("filter", async () => {
    expect(await runBatches([[1, 2, 3, 4], [5, 6, 7, 8]], (s) => s.filter((x) => x % 2 === 0))).toEqual([[2, 4], [6, 8]]);
  });

  it("glom keeps partitions", async () => {
    expect(await runBatches([[1, 2, 3, 4], [5, 6, 7, 8]], (s) => s.glom())).toEqual([
      [[1, 2], [3, 4]],
      [[5, 6], [7, 8]],
    ]);
  });

  it("mapPartitions", async () => {
    expect(
      await runBatches([[1, 2, 3, 4], [5, 6, 7, 8]], (s) =>
        s.mapPartitions((it) => {
          let sum = 0;
          for (const x of it) sum += x;
          return [sum];
        }),
      ),
    ).toEqual([[3, 7], [11, 15]]);
  });

  it("repartition", async () => {
    expect(await runBatches([[1, 2, 3, 4, 5, 6]], (s) => s.repartition(3).glom())).toEqual([[[1, 2], [3, 4], [5, 6]]]);
  });

  it("union", async () => {
    expect(await runBatches2([[1, 2], [3]], [[10], [20, 30]], (a, b) => a.union(b))).toEqual([[1, 2, 10], [3, 20, 30]]);
  });

  it("count, reduce, countByValue (empty batches)", async () => {
    const inputs = [[1], [], [1, 2, 2], [3, 3, 3]];
    expect(await runBatches(inputs, (s) => s.count())).toEqual([[1], [0], [3], [3]]);
    expect(await runBatches(inputs, (s) => s.reduce((a, b) => a + b))).toEqual([[1], [], [5], [9]]);
    expect(await runBatches(inputs, (s) => s.countByValue(), { sort: true })).toEqual([[[1, 1]], [], [[1, 1], [2, 2]], [[3, 3]]]);
  });

  it("mapValues, flatMapValues", async () => {
    const inputs: P[][] = [[["a", 1], ["b", 2]], [["a", 3]]];
    expect(await runBatches(inputs, (s) => s.mapValues((v) => v * 10))).toEqual([[["a", 10], ["b", 20]], [["a", 30]]]);
    expect(await runBatches(inputs, (s) => s.flatMapValues((v) => [v, -v]))).toEqual([
      [["a", 1], ["a", -1], ["b", 2], ["b", -2]],
      [["a", 3], ["a", -3]],
    ]);
  });

  it("reduceByKey, groupByKey, combineByKey", async () => {
    const inputs = [["a", "a", "b"], ["", ""], []];
    expect(await runBatches(inputs, (s) => s.map((x) => [x, 1] as P).reduceByKey((a, b) => a + b), { sort: true })).toEqual([
      [["a", 2], ["b", 1]],
      [["", 2]],
      [],
    ]);
    expect(await runBatches(inputs, (s) => s.map((x) => [x, 1] as P).groupByKey(), { sort: true })).toEqual([
      [["a", [1, 1]], ["b", [1]]],
      [["", [1, 1]]],
      [],
    ]);
    expect(
      await runBatches(
        inputs,
        (s) =>
          s.map((x) => [x, 1] as P).combineByKey(
            (v) => String(v),
            (c, v) => c + v,
            (a, b) => a + b,
          ),
        { sort: true },
      ),
    ).toEqual([[["a", "11"], ["b", "1"]], [["", "11"]], []]);
  });

  it("joins and cogroup", async () => {
    const a: P[][] = [[["a", 1], ["b", 2]], [["a", 1], ["c", 3]]];
    const b: [string, string][][] = [[["a", "x"], ["a", "y"]], [["c", "z"], ["d", "w"]]];
    expect(await runBatches2(a, b, (x, y) => x.join(y), { sort: true })).toEqual([
      [["a", [1, "x"]], ["a", [1, "y"]]],
      [["c", [3, "z"]]],
    ]);
    expect(await runBatches2(a, b, (x, y) => x.leftOuterJoin(y), { sort: true })).toEqual(
      [
        [["a", [1, "x"]], ["a", [1, "y"]], ["b", [2, undefined]]],
        [["a", [1, undefined]], ["c", [3, "z"]]],
      ].map(sorted),
    );
    expect(await runBatches2(a, b, (x, y) => x.rightOuterJoin(y), { sort: true })).toEqual(
      [
        [["a", [1, "x"]], ["a", [1, "y"]]],
        [["c", [3, "z"]], ["d", [undefined, "w"]]],
      ].map(sorted),
    );
    expect(await runBatches2(a, b, (x, y) => x.fullOuterJoin(y), { sort: true })).toEqual(
      [
        [["a", [1, "x"]], ["a", [1, "y"]], ["b", [2, undefined]]],
        [["a", [1, undefined]], ["c", [3, "z"]], ["d", [undefined, "w"]]],
      ].map(sorted),
    );
    expect(await runBatches2(a, b, (x, y) => x.cogroup(y), { sort: true })).toEqual(
      [
        [["a", [[1], ["x", "y"]]], ["b", [[2], []]]],
        [["a", [[1], []]], ["c", [[3], ["z"]]], ["d", [[], ["w"]]]],
      ].map(sorted),
    );
  });

  it("transform joins with reference data; transformWith gets both RDDs and the time", async () => {
    const { sc } = newContext();
    const ref = sc.parallelize([["a", "apple"], ["b", "banana"]] as [string, string][]);
    expect(await runBatches([["a", "b", "z"], ["b"]], (s) => s.map((x) => [x, 1] as P).transform((rdd) => rdd.join(ref).mapValues((v) => v[1])), { sort: true })).toEqual([
      [["a", "apple"], ["b", "banana"]],
      [["b", "banana"]],
    ]);
    expect(
      await runBatches2([[1, 2], [3]], [[10], [20]], (x, y) =>
        x.transformWith(y, (r1: RDD<number>, r2: RDD<number>, time) => r1.union(r2).map((v) => v + time)),
      ),
    ).toEqual([[1001, 1002, 1010], [2003, 2020]]);
  });

  it("ssc.union and ssc.transform", async () => {
    const { sc, ssc } = newContext();
    const a = ssc.queueStream([[1], [2]]);
    const b = ssc.queueStream([[10], [20]]);
    const out: number[][] = [];
    const t: number[][] = [];
    ssc.union(a, b).foreachRDD((r) => void out.push(r.collect()));
    ssc.transform([a, b], (rdds) => sc.parallelize([rdds.map((r) => r.count()).reduce((x, y) => x + y, 0)])).foreachRDD((r) => void t.push(r.collect()));
    await ssc.start();
    await ssc.advance(2000);
    await ssc.stop();
    expect(out).toEqual([[1, 10], [2, 20]]);
    expect(t).toEqual([[2], [2]]);
  });

  it("queueStream: oneAtATime false takes everything; defaultRDD fills empty batches; pushes while running", async () => {
    const { sc, ssc } = newContext();
    const q: number[][] = [[1], [2]];
    const all = ssc.queueStream(q, false, sc.parallelize([0]));
    const out: number[][] = [];
    all.foreachRDD((r) => void out.push(r.collect()));
    await ssc.start();
    await ssc.advance(1000);
    await ssc.advance(1000);
    q.push([7]);
    await ssc.advance(1000);
    await ssc.stop();
    expect(out).toEqual([[1, 2], [0], [7]]);
  });

  it("slice returns the remembered RDDs in [from, to]", async () => {
    const { ssc } = newContext();
    const s = ssc.queueStream([[1], [2], [3], [4]]);
    s.foreachRDD(() => {});
    ssc.remember(10_000);
    await ssc.start();
    await ssc.advance(4000);
    expect(s.slice(2000, 3000).map((r) => r.collect())).toEqual([[2], [3]]);
    await ssc.stop();
  });

  it("a DStream renders a summary through the Jupyter display protocol", async () => {
    const { ssc } = newContext();
    const s = ssc.queueStream([[1, 2]]).map((x) => x + 1);
    s.foreachRDD(() => {});
    await ssc.start();
    await ssc.advance(1000);
    const bundle = s[JUPYTER_DISPLAY]();
    expect(bundle["text/plain"]).toBe("DStream map(queue#0): every 1000 ms, context active, latest batch 1000 ms\n2\n3");
    expect(bundle["text/html"]).toContain("<td>3</td>");
    await ssc.stop();
  });

  it("latest() is the last completed batch's RDD; empty before", async () => {
    const { ssc } = newContext();
    const s = ssc.queueStream([[1, 2], [3]]).map((x) => x * 2);
    s.foreachRDD(() => {});
    expect(s.latest().collect()).toEqual([]);
    await ssc.start();
    await ssc.advance(1000);
    expect(s.latest().collect()).toEqual([2, 4]);
    await ssc.advance(1000);
    expect(s.latest().collect()).toEqual([6]);
    await ssc.stop();
  });
});

describe("RDD", () => {
  it("actions and pair operations", () => {
    const { sc } = newContext();
    const r = sc.parallelize([3, 1, 2, 3], 2);
    expect(r.count()).toBe(4);
    expect(r.reduce((a, b) => a + b)).toBe(9);
    expect(r.fold(10, (a, b) => a + b)).toBe(19);
    expect(r.take(2)).toEqual([3, 1]);
    expect(r.first()).toBe(3);
    expect(sorted(r.distinct().collect())).toEqual([1, 2, 3]);
    expect(r.sortBy((x) => x).collect()).toEqual([1, 2, 3, 3]);
    expect(r.sortBy((x) => x, false).collect()).toEqual([3, 3, 2, 1]);
    expect(r.union(sc.parallelize([9])).collect()).toEqual([3, 1, 2, 3, 9]);
    expect(r.isEmpty()).toBe(false);
    expect(sc.emptyRDD().isEmpty()).toBe(true);
    expect([...r.countByValue()]).toEqual([[3, 2], [1, 1], [2, 1]]);
    const seen: number[] = [];
    r.foreach((x) => seen.push(x));
    expect(seen).toEqual([3, 1, 2, 3]);
    const p = sc.parallelize([["a", 1], ["b", 2], ["a", 3]] as P[]);
    expect(p.keys().collect()).toEqual(["a", "b", "a"]);
    expect(p.values().collect()).toEqual([1, 2, 3]);
    expect(p.reduceByKey((a, b) => a + b).collectAsMap()).toEqual(new Map([["a", 4], ["b", 2]]));
    expect(p.groupByKey().collect()).toEqual([["a", [1, 3]], ["b", [2]]]);
    expect(p.join(sc.parallelize([["a", "x"]] as [string, string][])).collect()).toEqual([["a", [1, "x"]], ["a", [3, "x"]]]);
    expect(p.leftOuterJoin(sc.parallelize([["a", "x"]] as [string, string][])).collect()).toEqual([
      ["a", [1, "x"]],
      ["b", [2, undefined]],
      ["a", [3, "x"]],
    ]);
    expect(() => sc.emptyRDD<number>().reduce((a, b) => a + b)).toThrow(/EmptyRDD|empty RDD/);
  });

  it("renders itself through the Jupyter display protocol", () => {
    const { sc } = newContext();
    const bundle = sc.parallelize([["a", 1]] as P[])[JUPYTER_DISPLAY]();
    expect(bundle["text/plain"]).toContain("(a,1)");
    expect(bundle["text/html"]).toContain("<td>a</td><td>1</td>");
  });

  it("textFile splits on \\n and \\r\\n", async () => {
    const fs = await import("node:fs");
    const os = await import("node:os");
    const path = await import("node:path");
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "engine-rdd-"));
    fs.writeFileSync(path.join(dir, "a.txt"), "one\r\ntwo\nthree\n");
    const { sc } = newContext();
    expect(sc.textFile(path.join(dir, "a.txt")).collect()).toEqual(["one", "two", "three"]);
    fs.rmSync(dir, { recursive: true });
  });
});

describe("cache", () => {
  it("a cached stream runs its functions once per record however many consumers read it", async () => {
    for (const cached of [false, true]) {
      const { ssc } = newContext();
      let calls = 0;
      const words = ssc.queueStream([["a", "b", "a"]]).map((w) => {
        calls++;
        return [w, 1] as P;
      });
      if (cached) words.cache();
      words.reduceByKey((a, b) => a + b).foreachRDD(() => {});
      words.groupByKey().foreachRDD(() => {});
      words.count().foreachRDD(() => {});
      await ssc.start();
      await ssc.advance(1000);
      await ssc.stop();
      expect(calls).toBe(cached ? 3 : 9);
    }
  });
});
