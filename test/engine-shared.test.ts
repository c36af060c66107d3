// Shared variables (Spark's guide): broadcast variables and accumulators, their Spark methods, and the
// guide's lazily re-created singletons surviving a real process SIGKILLed and recovered by getOrCreate.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { BroadcastDestroyedError, CollectionAccumulator, DoubleAccumulator, IllegalArgumentError, LongAccumulator, SparkContext } from "../engine/index.js";
import { runOnce } from "./fixtures/recovery-harness.js";
import { newContext } from "./engine-helpers.js";

describe("broadcast variables", () => {
  it("value is readable until destroy(); after it, any use throws as Spark does", async () => {
    const sc = new SparkContext();
    const b = sc.broadcast(new Set(["a", "b"]));
    expect(b.value.has("a")).toBe(true);
    b.unpersist();
    expect(b.value.has("b")).toBe(true);
    expect(b.isValid).toBe(true);
    b.destroy();
    expect(b.isValid).toBe(false);
    expect(() => b.value).toThrow(BroadcastDestroyedError);
    expect(() => b.value).toThrow(new RegExp(`^Attempted to use Broadcast\\(${b.id}\\) after it was destroyed`));
    expect(() => b.unpersist()).toThrow(BroadcastDestroyedError);
    expect(() => b.destroy()).toThrow(BroadcastDestroyedError);
    expect(String(sc.broadcast(1))).toMatch(/^Broadcast\(\d+\)$/);
  });

  it("a stream filters with a broadcast list; destroying it fails the next batch with Spark's message", async () => {
    const { sc, ssc } = newContext();
    const blocked = sc.broadcast(["spam"]);
    const out: string[][] = [];
    ssc
      .queueStream([["ham", "spam"], ["spam", "eggs"]].map((b) => sc.parallelize(b)))
      .filter((w) => !blocked.value.includes(w))
      .foreachRDD((r) => void out.push(r.collect()));
    await ssc.start();
    await ssc.advance(1000);
    blocked.destroy();
    await ssc.advance(1000);
    await ssc.stop();
    expect(out).toEqual([["ham"]]);
    expect(ssc.lastError).toBeInstanceOf(BroadcastDestroyedError);
  });
});

describe("accumulators", () => {
  it("LongAccumulator: add, value, sum, count, avg, isZero, reset, merge, copy", () => {
    const sc = new SparkContext();
    const acc = sc.longAccumulator("words");
    expect(acc.name).toBe("words");
    expect(acc.isZero()).toBe(true);
    expect(Number.isNaN(acc.avg)).toBe(true);
    for (const n of [1, 2, 3, 4]) acc.add(n);
    expect([acc.value, acc.sum, acc.count, acc.avg, acc.isZero()]).toEqual([10, 10, 4, 2.5, false]);
    const other = new LongAccumulator();
    other.add(5);
    acc.merge(other);
    expect([acc.value, acc.count]).toEqual([15, 5]);
    const copy = acc.copy();
    acc.reset();
    expect([acc.value, acc.count, acc.isZero(), copy.value, copy.count]).toEqual([0, 0, true, 15, 5]);
    expect(acc.copyAndReset().isZero()).toBe(true);
    expect(() => acc.add(1.5)).toThrow(IllegalArgumentError);
    expect(() => acc.merge(new DoubleAccumulator() as unknown as LongAccumulator)).toThrow(/Cannot merge LongAccumulator with DoubleAccumulator/);
    expect(String(acc)).toBe(`LongAccumulator(id: ${acc.id}, name: words, value: 0)`);
  });

  it("DoubleAccumulator and CollectionAccumulator", () => {
    const sc = new SparkContext();
    const d = sc.doubleAccumulator("latency");
    d.add(0.5);
    d.add(1.25);
    expect([d.value, d.sum, d.count, d.avg]).toEqual([1.75, 1.75, 2, 0.875]);
    const c = sc.collectionAccumulator<string>("seen");
    expect(c.isZero()).toBe(true);
    c.add("x");
    c.add("y");
    const v = c.value;
    v.push("not in the accumulator");
    expect(c.value).toEqual(["x", "y"]);
    const c2 = new CollectionAccumulator<string>();
    c2.add("z");
    c.merge(c2);
    expect(c.value).toEqual(["x", "y", "z"]);
    c.reset();
    expect(c.value).toEqual([]);
    expect(sc.accumulatorInfos().map((a) => [a.name, a.value])).toEqual([
      ["latency", "1.75"],
      ["seen", "0 elements"],
    ]);
  });

  it("a stream adds from inside its functions; the driver reads the value after each batch", async () => {
    const { sc, ssc } = newContext();
    const empties = sc.longAccumulator("emptyLines");
    const seen: number[] = [];
    ssc
      .queueStream([["a", "", "b"], ["", ""], ["c"]].map((b) => sc.parallelize(b)))
      .filter((line) => {
        if (line === "") empties.add(1);
        return line !== "";
      })
      .foreachRDD((r) => {
        r.count();
        seen.push(empties.value);
      });
    await ssc.start();
    await ssc.advance(3000);
    await ssc.stop();
    expect(seen).toEqual([1, 3, 3]);
  });
});

describe("the guide's singleton pattern across a crash", () => {
  it("a broadcast exclude list and a dropped-words accumulator work again after SIGKILL and getOrCreate", async () => {
    const fixture = path.resolve(__dirname, "fixtures", "shared-variables-wordcount.js");
    const dist = path.resolve(__dirname, "..", "dist");
    const work = fs.mkdtempSync(path.join(os.tmpdir(), "sb-shared-"));
    try {
      const BATCHES = 12;
      const reference = await runOnce([fixture, path.join(work, "ref"), String(BATCHES)], dist, undefined);
      expect(reference.stderr).toBe("");
      expect(reference.lines.at(-1)).toBe("DONE");
      const ckpt = path.join(work, "victim");
      const killed = await runOnce([fixture, ckpt, String(BATCHES), "30"], dist, { afterBatch: 5000, delayMs: 0 });
      expect(killed.signal).toBe("SIGKILL");
      const recovered = await runOnce([fixture, ckpt, String(BATCHES)], dist, undefined);
      expect(recovered.stderr).toBe("");
      expect(recovered.lines[0]).toMatch(/^recovered \d+$/);
      // The recovered process made its own broadcast and accumulator on first use, as the guide intends.
      expect(recovered.lines.filter((l) => l.startsWith("created "))).toEqual(["created broadcast", "created accumulator"]);
      expect(recovered.lines.at(-1)).toBe("DONE");

      type Batch = { counts: string; dropped: number };
      const batchesOf = (lines: string[]) => {
        const m = new Map<number, Batch>();
        for (const l of lines) {
          const x = /^counts (\d+) (.*) dropped (\d+)$/.exec(l);
          if (x) m.set(Number(x[1]), { counts: x[2] as string, dropped: Number(x[3]) });
        }
        return m;
      };
      const ref = batchesOf(reference.lines);
      const after = batchesOf(recovered.lines);
      const before = batchesOf(killed.lines);
      expect(ref.size).toBe(BATCHES);
      // Every batch's counts, before and after the crash, equal the uninterrupted run's: the exclude list held.
      for (const [t, b] of [...before, ...after]) expect(b.counts).toBe(ref.get(t)?.counts);
      for (const b of ref.values()) expect(b.counts).not.toMatch(/"[abc]"/);
      expect(Math.min(...after.keys())).toBeLessThanOrEqual(Math.max(...before.keys()) + 1000);
      expect(Math.max(...after.keys())).toBe(BATCHES * 1000);
      // The accumulator counts each batch's dropped words again from zero in the new process (Spark does
      // not checkpoint accumulators): its increments match the reference batch by batch.
      const increments = (m: Map<number, Batch>) => {
        const ts = [...m.keys()].sort((a, b) => a - b);
        return ts.map((t, i) => [t, (m.get(t) as Batch).dropped - (i === 0 ? 0 : (m.get(ts[i - 1] as number) as Batch).dropped)]);
      };
      const refInc = new Map(increments(ref) as [number, number][]);
      for (const [t, inc] of increments(after)) expect(inc).toBe(refInc.get(t as number));
      expect((after.get(BATCHES * 1000) as Batch).dropped).toBe([...after.keys()].reduce((n, t) => n + (refInc.get(t) as number), 0));
    } finally {
      fs.rmSync(work, { recursive: true, force: true });
    }
  }, 60_000);
});
