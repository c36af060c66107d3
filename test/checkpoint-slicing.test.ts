// Checkpoints of large state are encoded in slices: the event loop keeps turning while ~300k keys are
// encoded, a batch that runs meanwhile does not leak into the snapshot, and the files recover exactly.
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { SparkContext, StateSpec, StreamingContext, type RDD, type State } from "../engine/index.js";
import { checkpoint, checkpointerOf } from "../engine/checkpoint/index.js";
import { ColumnRows, decodeCheckpoint, encodeCheckpoint, encodeCheckpointSliced, encodeValue, type CheckpointData } from "../engine/checkpoint/format.js";
import { runSliced, runSync } from "../engine/slicing.js";

const KEYS = 300_000;
const dirs: string[] = [];
const contexts: StreamingContext[] = [];
afterEach(async () => {
  for (const ssc of contexts.splice(0)) {
    await ssc.stop();
    await checkpointerOf(ssc)?.flush();
  }
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function sum(values: number[], last?: number): number {
  return values.reduce((x, y) => x + y, 0) + (last ?? 0);
}

const sc = new SparkContext();
const initial: [string, number][] = [];
for (let i = 0; i < KEYS; i++) initial.push([`key${i}`, i]);

function setup(dir: string, withInitial: boolean): StreamingContext {
  const ssc = new StreamingContext(sc, 1000, { clock: "manual" });
  contexts.push(ssc);
  checkpoint(ssc, dir, { interval: 1000, keep: 3 });
  ssc
    .queueStream<string>([["key0 key1 fresh"], ["key0 later"], []], true)
    .flatMap((l) => l.split(" "))
    .map((w) => [w, 1] as [string, number])
    .updateStateByKey(sum, { name: "counts", initialRDD: withInitial ? sc.parallelize(initial) : undefined })
    .foreachRDD(() => {});
  return ssc;
}

function stateOf(ssc: StreamingContext): Map<string, number> {
  return new Map((ssc.graph.statefulStreams()[0]!.state() as RDD<[string, number]>).collect());
}

describe("sliced checkpoint encoding", () => {
  it("writes the same bytes as the one-piece encoder, tags and all", () => {
    const big: [string, unknown][] = [];
    for (let i = 0; i < 10_000; i++) big.push([`k${i}`, i % 7 === 0 ? { at: new Date(i), n: BigInt(i), u: undefined } : i]);
    const data: CheckpointData = {
      batchTime: 5000,
      batchDuration: 1000,
      zeroTime: undefined,
      lastCompletedBatch: 5000,
      pendingBatches: [],
      graph: { inputs: ["in"], stateful: ["counts", "m"] },
      state: { counts: { entries: big }, m: new Map(big.slice(0, 5000)), small: [Infinity, NaN, -0] },
      positions: { in: { files: ["a"] } },
      unmatched: { state: {}, positions: {} },
      writtenAt: new Date(0).toISOString(),
    };
    // The encoder before slicing: the whole value through encodeValue in one piece.
    const body = Buffer.from(encodeValue(data), "utf8");
    const header = { format: "streambook-checkpoint", version: 1, batchTime: 5000, bodyBytes: body.length, sha256: createHash("sha256").update(body).digest("hex") };
    const oneShot = Buffer.concat([Buffer.from(JSON.stringify(header) + "\n"), body]);
    const sliced = runSync(encodeCheckpointSliced(data));
    expect(sliced.equals(oneShot)).toBe(true);
    expect(encodeCheckpoint(data).equals(oneShot)).toBe(true);
    const back = decodeCheckpoint(sliced);
    expect(back.state.m).toEqual(new Map(big.slice(0, 5000)));
    expect((back.state.counts as { entries: unknown[] }).entries).toEqual(big);
    expect(back.zeroTime).toBeUndefined();
  });

  it("encodes rows held as columns, and short arrays holding large ones, as the one-piece encoder does, a piece at a time", () => {
    const n = 20_000;
    const keys = Array.from({ length: n }, (_, i) => (i % 3 === 0 ? [`k${i}`, i] : `k${i}`));
    const values = Array.from({ length: n }, (_, i) => (i % 5 === 0 ? { at: new Date(i) } : i));
    const times = Array.from({ length: n }, (_, i) => i * 1000);
    const rows = keys.map((k, i) => [k, values[i], times[i]]);
    const pairs = keys.map((k, i) => [k, values[i]]);
    const state = (columns: boolean) => ({
      m: { entries: columns ? new ColumnRows([keys, values, times], n) : rows },
      // An inverse window's shape: its window and [time, pairs] slices in a short array.
      w: { time: 3000, window: columns ? new ColumnRows([keys, values], n) : pairs, slices: [[2000, columns ? new ColumnRows([keys, values], n) : pairs], [3000, pairs]] },
      none: columns ? new ColumnRows([[]], 0) : [],
    });
    const data = (columns: boolean): CheckpointData => ({
      batchTime: 3000,
      batchDuration: 1000,
      zeroTime: 0,
      lastCompletedBatch: 3000,
      pendingBatches: [],
      graph: { inputs: [], stateful: ["m", "w"] },
      state: state(columns),
      positions: {},
      unmatched: { state: {}, positions: {} },
      writtenAt: new Date(0).toISOString(),
    });
    const plain = encodeCheckpoint(data(false));
    const body = Buffer.from(encodeValue(data(false)), "utf8");
    expect(plain.subarray(plain.indexOf(0x0a) + 1).equals(body)).toBe(true);
    const gen = encodeCheckpointSliced(data(true));
    let steps = 0;
    let r = gen.next();
    while (!r.done) {
      steps++;
      r = gen.next();
    }
    expect(r.value.equals(plain)).toBe(true);
    // Every large array, the ones inside the short slices array included, goes a piece at a time.
    expect(steps).toBeGreaterThan((4 * n) / 2048);
    expect(JSON.stringify(new ColumnRows([keys, values, times], n))).toBe(JSON.stringify(rows));
    const back = decodeCheckpoint(plain).state as ReturnType<typeof state>;
    expect(back.w.slices[0]).toEqual([2000, pairs]);
  });

  it(
    "gives the loop turns in the middle of encoding one 300k-key snapshot",
    async () => {
      const data: CheckpointData = {
        batchTime: 1000,
        batchDuration: 1000,
        zeroTime: 0,
        lastCompletedBatch: 1000,
        pendingBatches: [],
        graph: { inputs: [], stateful: ["counts"] },
        state: { counts: { entries: initial } },
        positions: {},
        unmatched: { state: {}, positions: {} },
        writtenAt: new Date(0).toISOString(),
      };
      let turns = 0;
      let done = false;
      const probe = () => {
        turns++;
        if (!done) setImmediate(probe);
      };
      setImmediate(probe);
      const bytes = await runSliced(encodeCheckpointSliced(data));
      done = true;
      // The one-piece encoder would have run to the end before the probe's first turn.
      expect(turns).toBeGreaterThan(0);
      // And the encoder offers a yield every few thousand keys, so no slice needs to run long.
      const gen = encodeCheckpointSliced(data);
      let steps = 0;
      while (!gen.next().done) steps++;
      expect(steps).toBeGreaterThan(KEYS / 4096);
      expect(new Map((decodeCheckpoint(bytes).state.counts as { entries: [string, number][] }).entries)).toEqual(new Map(initial));
    },
    60_000,
  );

  it(
    "keeps the event loop turning while 300k keys are encoded, and recovers exactly",
    async () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sb-ckpt-slicing-"));
      dirs.push(dir);
      const first = setup(dir, true);
      await first.start();
      await first.advance(1000); // batch 1: its checkpoint is now being encoded in the background
      const cp = checkpointerOf(first)!;
      expect(cp.written).toBe(0);
      const afterBatch1 = stateOf(first);

      // The probe: turns of the loop and the longest wait between two of them while the encode runs.
      let turns = 0;
      let maxGap = 0;
      let last = performance.now();
      let probing = true;
      const probe = () => {
        const now = performance.now();
        maxGap = Math.max(maxGap, now - last);
        last = now;
        turns++;
        if (probing) setImmediate(probe);
      };
      setImmediate(probe);
      // Batch 2 runs while batch 1's checkpoint is still being encoded: it must not leak into it.
      await first.advance(1000);
      await cp.flush();
      probing = false;
      const afterBatch2 = stateOf(first); // read after the probe: collecting 300k pairs is the test's own block

      expect(cp.written).toBe(2);
      expect(turns).toBeGreaterThan(5);
      expect(maxGap).toBeLessThan(1000);
      console.log(`checkpoint-slicing: ${turns} loop turns during two checkpoints of ${KEYS} keys, longest gap ${maxGap.toFixed(0)} ms`);

      const byTime = new Map(cp.store.files().map((f) => {
        const d = decodeCheckpoint(fs.readFileSync(f.file));
        return [d.batchTime, d] as const;
      }));
      const entries = (t: number) => new Map((byTime.get(t)!.state.counts as { entries: [string, number][] }).entries);
      expect(afterBatch1.get("key0")).toBe(1);
      expect(afterBatch2.get("key0")).toBe(2);
      expect(entries(1000)).toEqual(afterBatch1);
      expect(entries(2000)).toEqual(afterBatch2);
      await first.stop();

      const again = StreamingContext.getOrCreate(dir, () => setup(dir, false));
      contexts.push(again);
      await again.start();
      expect(stateOf(again)).toEqual(afterBatch2);
    },
    120_000,
  );

  it(
    "mapWithState and an inverse window, past 65536 keys, recover from their sliced checkpoints as an uninterrupted run goes on",
    async () => {
      const n = 70_000;
      const batch = (b: number): [number | string, number][] =>
        Array.from({ length: n }, (_, i) => [(i + b * 1000) % 3 === 0 ? `s${i + b * 1000}` : i + b * 1000, b + 1]);
      const pipeline = (dir: string | undefined, queue: RDD<[number | string, number]>[]) => {
        const ssc = new StreamingContext(sc, 1000, { clock: "manual" });
        contexts.push(ssc);
        if (dir) checkpoint(ssc, dir, { interval: 1000 });
        const input = ssc.queueStream(queue);
        const seen = { window: new Map<unknown, number>() };
        input
          .mapWithState(
            StateSpec.function((_k: number | string, v: number | undefined, s: State<number>) => {
              s.update((s.getOption() ?? 0) + (v ?? 0));
            }),
            { name: "totals" },
          )
          .foreachRDD(() => {});
        input
          .reduceByKeyAndWindow((a, b) => a + b, (a, b) => a - b, 2000, 1000, { name: "recent", filterFunc: (kv) => kv[1] !== 0 })
          .foreachRDD((rdd) => {
            seen.window = new Map(rdd.collect());
          });
        return { ssc, seen };
      };
      const totals = (ssc: StreamingContext) =>
        new Map((ssc.graph.statefulStreams().find((s) => s.name === "totals")!.state() as RDD<[unknown, number]>).collect());

      // Uninterrupted: three batches.
      const whole = pipeline(undefined, [0, 1, 2].map((b) => sc.parallelize(batch(b), 1)));
      await whole.ssc.start();
      for (let b = 0; b < 3; b++) await whole.ssc.advance(1000);
      const wantTotals = totals(whole.ssc);
      const wantWindow = whole.seen.window;
      await whole.ssc.stop();

      // Two batches with checkpoints (state copied into columns, encoded in slices), then a new run.
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sb-ckpt-columns-"));
      dirs.push(dir);
      const first = pipeline(dir, [0, 1].map((b) => sc.parallelize(batch(b), 1)));
      await first.ssc.start();
      for (let b = 0; b < 2; b++) await first.ssc.advance(1000);
      const cp = checkpointerOf(first.ssc)!;
      await cp.flush();
      expect(cp.written).toBe(2);
      const stored = decodeCheckpoint(fs.readFileSync(cp.store.files()[0]!.file)).state as { totals: { entries: [unknown, number, number][] } };
      const storedTotals = new Map(stored.totals.entries.map(([k, s]) => [k, s]));
      const firstTotals = totals(first.ssc);
      expect(storedTotals.size).toBe(firstTotals.size);
      expect([...firstTotals].filter(([k, v]) => storedTotals.get(k) !== v)).toEqual([]);
      await first.ssc.stop();

      // The same queue again: the recovered position skips the two batches the checkpoint holds.
      let second: ReturnType<typeof pipeline> | undefined;
      const again = StreamingContext.getOrCreate(dir, () => (second = pipeline(dir, [0, 1, 2].map((b) => sc.parallelize(batch(b), 1)))).ssc);
      contexts.push(again);
      expect(second).toBeDefined();
      await again.start();
      await again.advance(1000);
      // Compared by counting differences: a failing toEqual would diff 80k entries for minutes.
      const differences = (got: Map<unknown, number>, want: Map<unknown, number>) => {
        let d = Math.abs(got.size - want.size);
        for (const [k, v] of want) if (got.get(k) !== v) d++;
        return d;
      };
      expect(wantTotals.size).toBe(n + 2000);
      expect(differences(totals(again), wantTotals)).toBe(0);
      expect(wantWindow.size).toBe(n + 1000);
      expect(differences(second!.seen.window, wantWindow)).toBe(0);
    },
    120_000,
  );
});
