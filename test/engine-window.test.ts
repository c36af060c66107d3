// WindowOperationsSuite-style cases, the programming guide's windowed word count, and a property
// test that the incremental (inverse) and recomputed windowed reductions agree.

import { describe, expect, it } from "vitest";
import { InvalidDurationError, Seconds } from "../engine/index.js";
import { newContext, runBatches, sorted } from "./engine-helpers.js";

type P = [string, number];

const bigInput: P[][] = [
  [["a", 1]],
  [["a", 1], ["b", 1]],
  [["a", 1], ["b", 1], ["c", 1]],
  [["a", 1], ["b", 1]],
  [["a", 1]],
  [],
  [["a", 1]],
  [["a", 1], ["b", 1]],
  [["a", 1], ["b", 1], ["c", 1]],
  [["a", 1], ["b", 1]],
  [["a", 1]],
  [],
];

const bigReduceOutput: P[][] = [
  [["a", 1]],
  [["a", 2], ["b", 1]],
  [["a", 2], ["b", 2], ["c", 1]],
  [["a", 2], ["b", 2], ["c", 1]],
  [["a", 2], ["b", 1]],
  [["a", 1]],
  [["a", 1]],
  [["a", 2], ["b", 1]],
  [["a", 2], ["b", 2], ["c", 1]],
  [["a", 2], ["b", 2], ["c", 1]],
  [["a", 2], ["b", 1]],
  [["a", 1]],
];

// Without a filterFunc, keys whose count fell to 0 stay (as in Spark).
const bigReduceInvOutput: P[][] = [
  [["a", 1]],
  [["a", 2], ["b", 1]],
  [["a", 2], ["b", 2], ["c", 1]],
  [["a", 2], ["b", 2], ["c", 1]],
  [["a", 2], ["b", 1], ["c", 0]],
  [["a", 1], ["b", 0], ["c", 0]],
  [["a", 1], ["b", 0], ["c", 0]],
  [["a", 2], ["b", 1], ["c", 0]],
  [["a", 2], ["b", 2], ["c", 1]],
  [["a", 2], ["b", 2], ["c", 1]],
  [["a", 2], ["b", 1], ["c", 0]],
  [["a", 1], ["b", 0], ["c", 0]],
];

const add = (a: number, b: number) => a + b;
const sub = (a: number, b: number) => a - b;

describe("window operations", () => {
  it("window: 2 batches, sliding by 1", async () => {
    expect(await runBatches([[1], [2], [3], [4], [5], [6]], (s) => s.window(2000, 1000))).toEqual([[1], [1, 2], [2, 3], [3, 4], [4, 5], [5, 6]]);
  });

  it("window: 4 batches, sliding by 2 (outputs every other batch)", async () => {
    expect(await runBatches([[1], [2], [3], [4], [5], [6], [], []], (s) => s.window(4000, 2000))).toEqual([[1, 2], [1, 2, 3, 4], [3, 4, 5, 6], [5, 6]]);
  });

  it("window and slide must be multiples of the batch interval", () => {
    const { ssc } = newContext();
    const s = ssc.queueStream<number>([]);
    expect(() => s.window(1500)).toThrow(InvalidDurationError);
    expect(() => s.window(2000, 500)).toThrow(/multiple of the parent's slide/);
    expect(() => s.map((x) => [String(x), x] as P).reduceByKeyAndWindow(add, sub, 2500)).toThrow(InvalidDurationError);
    expect(() => s.countByWindow(3000, 1200)).toThrow(InvalidDurationError);
    // A windowed stream's slide becomes the unit for windows built on it.
    expect(() => s.window(4000, 2000).window(5000, 2000)).toThrow(InvalidDurationError);
  });

  it("reduceByKeyAndWindow without inverse", async () => {
    expect(await runBatches(bigInput, (s) => s.reduceByKeyAndWindow(add, 2000), { sort: true })).toEqual(bigReduceOutput);
  });

  it("reduceByKeyAndWindow with inverse keeps zero counts, and drops them with filterFunc", async () => {
    expect(await runBatches(bigInput, (s) => s.reduceByKeyAndWindow(add, sub, 2000), { sort: true })).toEqual(bigReduceInvOutput);
    expect(await runBatches(bigInput, (s) => s.reduceByKeyAndWindow(add, sub, 2000, 1000, { filterFunc: (kv) => kv[1] > 0 }), { sort: true })).toEqual(
      bigReduceOutput,
    );
  });

  it("reduceByKeyAndWindow with a larger slide, with and without inverse", async () => {
    const input: P[][] = [[["a", 1]], [["a", 2]], [["a", 3]], [["a", 4]], [["a", 5]], [["a", 6]], [], []];
    const expected = [[["a", 3]], [["a", 10]], [["a", 18]], [["a", 11]]];
    expect(await runBatches(input, (s) => s.reduceByKeyAndWindow(add, 4000, 2000))).toEqual(expected);
    expect(await runBatches(input, (s) => s.reduceByKeyAndWindow(add, sub, 4000, 2000))).toEqual(expected);
  });

  it("countByWindow, reduceByWindow (both forms), countByValueAndWindow, groupByKeyAndWindow", async () => {
    const input = [[1], [1], [1, 2], [0], [], []];
    expect(await runBatches(input, (s) => s.countByWindow(2000, 1000))).toEqual([[1], [2], [3], [3], [1], [0]]);
    expect(await runBatches(input, (s) => s.reduceByWindow(add, 2000, 1000))).toEqual([[1], [2], [4], [3], [0], []]);
    expect(await runBatches(input, (s) => s.reduceByWindow(add, sub, 2000, 1000))).toEqual([[1], [2], [4], [3], [0], [0]]);
    expect(await runBatches(input, (s) => s.countByValueAndWindow(2000, 1000), { sort: true })).toEqual([
      [[1, 1]],
      [[1, 2]],
      [[1, 2], [2, 1]],
      [[0, 1], [1, 1], [2, 1]],
      [[0, 1]],
      [],
    ]);
    expect(await runBatches(bigInput.slice(0, 4), (s) => s.groupByKeyAndWindow(2000), { sort: true })).toEqual([
      [["a", [1]]],
      [["a", [1, 1]], ["b", [1]]],
      [["a", [1, 1]], ["b", [1, 1]], ["c", [1]]],
      [["a", [1, 1]], ["b", [1, 1]], ["c", [1]]],
    ]);
  });

  it("the programming guide's windowed word count (30 s window, every 10 s)", async () => {
    const lines = [["a b"], ["a"], ["c"], [""], ["a"]];
    const expected = [
      [["a", 1], ["b", 1]],
      [["a", 2], ["b", 1]],
      [["a", 2], ["b", 1], ["c", 1]],
      [["a", 1], ["c", 1]],
      [["a", 1], ["c", 1]],
    ];
    const pairs = (s: import("../engine/index.js").DStream<string>) =>
      s
        .flatMap((line) => line.split(" "))
        .filter((w) => w !== "")
        .map((w) => [w, 1] as P);
    expect(await runBatches(lines, (s) => pairs(s).reduceByKeyAndWindow(add, Seconds(30), Seconds(10)), { batch: Seconds(10), sort: true })).toEqual(expected);
    expect(
      await runBatches(lines, (s) => pairs(s).reduceByKeyAndWindow(add, sub, Seconds(30), Seconds(10), { filterFunc: (kv) => kv[1] > 0 }), {
        batch: Seconds(10),
        sort: true,
      }),
    ).toEqual(expected);
  });

  it("property: inverse and recomputed windowed reductions agree on random input", async () => {
    let seed = 12345;
    const rand = () => {
      // mulberry32
      seed |= 0;
      seed = (seed + 0x6d2b79f5) | 0;
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    for (let trial = 0; trial < 25; trial++) {
      const slideBatches = 1 + Math.floor(rand() * 3);
      // Mostly windows of whole slides; sometimes a window shorter than its slide.
      const windowBatches = rand() < 0.2 ? 1 : slideBatches * (1 + Math.floor(rand() * 4));
      const numBatches = 5 + Math.floor(rand() * 15);
      const keys = 1 + Math.floor(rand() * 6);
      const input: P[][] = [];
      for (let b = 0; b < numBatches; b++) {
        const n = Math.floor(rand() * 6);
        const batch: P[] = [];
        for (let i = 0; i < n; i++) batch.push([`k${Math.floor(rand() * keys)}`, 1 + Math.floor(rand() * 9)]);
        input.push(batch);
      }
      const w = windowBatches * 1000;
      const sl = slideBatches * 1000;
      const plain = await runBatches(input, (s) => s.reduceByKeyAndWindow(add, w, sl), { sort: true });
      const inv = await runBatches(input, (s) => s.reduceByKeyAndWindow(add, sub, w, sl, { filterFunc: (kv) => kv[1] !== 0 }), { sort: true });
      expect(inv, `trial ${trial}: window ${w} slide ${sl}`).toEqual(plain);
      const counts = await runBatches(input, (s) => s.map((kv) => kv[0]).countByValueAndWindow(w, sl), { sort: true });
      const countsPlain = await runBatches(input, (s) => s.map((kv) => [kv[0], 1] as P).reduceByKeyAndWindow(add, w, sl), { sort: true });
      expect(counts).toEqual(countsPlain);
      expect(sorted(counts.flat()).length).toBe(countsPlain.flat().length);
    }
  });
});
