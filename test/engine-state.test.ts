// Stateful operators: updateStateByKey (removal, initialRDD) and mapWithState (timeouts, snapshots),
// and reading state from outside the running pipeline.

import { describe, expect, it } from "vitest";
import { StateSpec, type State } from "../engine/index.js";
import { newContext, runBatches, sorted } from "./engine-helpers.js";

type P = [string, number];
const words = [["a"], ["a", "b"], ["a", "b", "c"], ["a", "b"], ["a"], []];
const sum = (values: number[], state: number | undefined) => values.reduce((a, b) => a + b, 0) + (state ?? 0);

describe("updateStateByKey", () => {
  it("keeps running counts (Spark's suite)", async () => {
    expect(await runBatches(words, (s) => s.map((w) => [w, 1] as P).updateStateByKey(sum), { sort: true })).toEqual([
      [["a", 1]],
      [["a", 2], ["b", 1]],
      [["a", 3], ["b", 2], ["c", 1]],
      [["a", 4], ["b", 3], ["c", 1]],
      [["a", 5], ["b", 3], ["c", 1]],
      [["a", 5], ["b", 3], ["c", 1]],
    ]);
  });

  it("starts from initialRDD", async () => {
    const { sc } = newContext();
    const initialRDD = sc.parallelize([["a", 1], ["c", 2]] as P[]);
    expect(await runBatches(words.slice(0, 3), (s) => s.map((w) => [w, 1] as P).updateStateByKey(sum, { initialRDD }), { sort: true })).toEqual([
      [["a", 2], ["c", 2]],
      [["a", 3], ["b", 1], ["c", 2]],
      [["a", 4], ["b", 2], ["c", 3]],
    ]);
  });

  it("undefined removes the key", async () => {
    const capped = (values: number[], state: number | undefined) => {
      const n = sum(values, state);
      return n >= 3 ? undefined : n;
    };
    expect(await runBatches(words, (s) => s.map((w) => [w, 1] as P).updateStateByKey(capped), { sort: true })).toEqual([
      [["a", 1]],
      [["a", 2], ["b", 1]],
      [["b", 2], ["c", 1]],
      [["a", 1], ["c", 1]],
      [["a", 2], ["c", 1]],
      [["a", 2], ["c", 1]],
    ]);
  });

  it("the function sees the key; state() reads the state from outside while it runs", async () => {
    const { ssc } = newContext();
    const q: string[][] = [["x", "y"], ["x"]];
    const counts = ssc
      .queueStream(q)
      .map((w) => [w, 1] as P)
      .updateStateByKey((vs: number[], s: string | undefined, key: string) => `${key}:${vs.length + Number((s ?? ":0").split(":")[1])}`, { name: "counts" });
    counts.foreachRDD(() => {});
    expect(counts.name).toBe("counts");
    expect(counts.state().collect()).toEqual([]);
    await ssc.start();
    await ssc.advance(1000);
    expect(sorted(counts.state().collect())).toEqual([["x", "x:1"], ["y", "y:1"]]);
    const kept = counts.state();
    await ssc.advance(1000);
    expect(sorted(counts.state().collect())).toEqual([["x", "x:2"], ["y", "y:1"]]);
    expect(sorted(kept.collect())).toEqual([["x", "x:1"], ["y", "y:1"]]);
    expect(counts.latest().count()).toBe(2);
    await ssc.stop();
  });
});

describe("updateStateByKey versions", () => {
  it("each batch's state RDD keeps reading as it was, through additions, changes and removals", async () => {
    const { ssc } = newContext();
    const q: P[][] = [[["a", 1], ["b", 1]], [["a", 1], ["c", 1]], [["b", -1], ["d", 1]], []];
    const st = ssc.queueStream(q).updateStateByKey((vs: number[], s: number | undefined) => {
      if (vs.includes(-1)) return undefined;
      return vs.reduce((x, y) => x + y, s ?? 0);
    });
    const kept: import("../engine/index.js").RDD<P>[] = [];
    st.foreachRDD((r) => void kept.push(r));
    await ssc.start();
    await ssc.advance(1000);
    const seenEarly = sorted(kept[0]?.collect() ?? []);
    await ssc.advance(3000);
    expect(seenEarly).toEqual([["a", 1], ["b", 1]]);
    expect(kept.map((r) => sorted(r.collect()))).toEqual([
      [["a", 1], ["b", 1]],
      [["a", 2], ["b", 1], ["c", 1]],
      [["a", 2], ["c", 1], ["d", 1]],
      [["a", 2], ["c", 1], ["d", 1]],
    ]);
    expect(kept[0]?.count()).toBe(2);
    expect(kept[1]?.take(10).length).toBe(3);
    await ssc.stop();
  });

  it("state() read in the middle of a batch sees the previous batch's state, and a failed batch is still undone", async () => {
    const { ssc } = newContext();
    const keys = Array.from({ length: 200_000 }, (_, i) => `k${i}`);
    const q: P[][] = [keys.map((k) => [k, 1] as P), keys.map((k) => [k, 1] as P).concat([["bad", 1]])];
    let midBatch: P[] | undefined;
    let calls = 0;
    const st = ssc.queueStream(q).updateStateByKey((vs: number[], s: number | undefined, k: string) => {
      if (k === "bad") throw new Error("bad key");
      calls++;
      return vs.length + (s ?? 0);
    });
    st.foreachRDD(() => {});
    await ssc.start();
    await ssc.advance(1000);
    const before = calls;
    // Read from "another cell" while the second batch is being processed in slices.
    const reader = setImmediate(function poll() {
      if (calls > before && calls < before + keys.length) midBatch = st.state().collect();
      else setImmediate(poll);
    });
    await ssc.advance(1000);
    clearImmediate(reader);
    await ssc.stop();
    expect(midBatch?.length).toBe(keys.length);
    expect(midBatch?.every(([, v]) => v === 1)).toBe(true);
    expect(st.state().collect().every(([, v]) => v === 1)).toBe(true);
    expect((ssc.lastError as Error).message).toBe("bad key");
  }, 60_000); // 400k keys: seconds on a loaded 2-core machine

  it("a batch whose update function throws leaves the state as it was; later batches go on from it", async () => {
    const { ssc } = newContext();
    const q: P[][] = [[["a", 1]], [["a", 1], ["bad", 1]], [["a", 1]]];
    const st = ssc.queueStream(q).updateStateByKey((vs: number[], s: number | undefined, k: string) => {
      if (k === "bad") throw new Error("bad key");
      return vs.reduce((x, y) => x + y, s ?? 0);
    });
    const out: P[][] = [];
    st.foreachRDD((r) => void out.push(sorted(r.collect())));
    await ssc.start();
    await ssc.advance(3000);
    await ssc.stop();
    expect((ssc.lastError as Error).message).toBe("bad key");
    expect(out).toEqual([[["a", 1]], [["a", 2]]]);
    expect(sorted(st.state().collect())).toEqual([["a", 2]]);
  });
});

describe("mapWithState", () => {
  const spec = () =>
    StateSpec.function((key: string, value: number | undefined, state: State<number>) => {
      if (state.isTimingOut()) return `${key} timed out at ${state.get()}`;
      const n = (state.getOption() ?? 0) + (value ?? 0);
      state.update(n);
      return `${key}=${n}`;
    });

  it("maps each record with its key's state", async () => {
    expect(await runBatches(words, (s) => s.map((w) => [w, 1] as P).mapWithState(spec()))).toEqual([
      ["a=1"],
      ["a=2", "b=1"],
      ["a=3", "b=2", "c=1"],
      ["a=4", "b=3"],
      ["a=5"],
      [],
    ]);
  });

  it("idle keys time out once, seeing isTimingOut(), then are gone", async () => {
    const input: P[][] = [[["a", 1]], [["b", 1]], [], [["b", 1]], [], [], []];
    // timeout 2 s: a (last seen at 1 s) times out at 4 s; b (last seen at 4 s) at 7 s.
    expect(await runBatches(input, (s) => s.mapWithState(spec().timeout(2000)))).toEqual([
      ["a=1"],
      ["b=1"],
      [],
      ["b=2", "a timed out at 1"],
      [],
      [],
      ["b timed out at 2"],
    ]);
  });

  it("initialState, remove(), stateSnapshots() and state()", async () => {
    const { sc, ssc } = newContext();
    const s = ssc.queueStream<P>([[["a", 1]], [["a", -1], ["b", 5]], []]);
    const mapped = s.mapWithState(
      StateSpec.function((key: string, v: number | undefined, state: State<number>) => {
        if (v === -1) {
          state.remove();
          return undefined;
        }
        state.update((state.getOption() ?? 0) + (v ?? 0));
        return key;
      }).initialState(sc.parallelize([["z", 9]] as P[])),
    );
    const snaps: P[][] = [];
    mapped.stateSnapshots().foreachRDD((r) => void snaps.push(sorted(r.collect())));
    const outs: string[][] = [];
    mapped.foreachRDD((r) => void outs.push(r.collect() as string[])); // undefined mapped values must be dropped
    await ssc.start();
    await ssc.advance(3000);
    expect(outs).toEqual([["a"], ["b"], []]);
    expect(snaps).toEqual([
      [["a", 1], ["z", 9]],
      [["b", 5], ["z", 9]],
      [["b", 5], ["z", 9]],
    ]);
    expect(sorted(mapped.state().collect())).toEqual([["b", 5], ["z", 9]]);
    expect(mapped.checkpointState()).toEqual({ entries: [["z", 9, 1000], ["b", 5, 2000]] });
    await ssc.stop();
  });

  it("a batch whose function throws is undone; later batches go on from the state before it", async () => {
    const { ssc } = newContext();
    const q: P[][] = [[["a", 1]], [["a", 1], ["b", 1], ["bad", 1]], [["a", 1]]];
    const mapped = ssc.queueStream(q).mapWithState(
      StateSpec.function((k: string, v: number | undefined, state: State<number>) => {
        if (k === "bad") throw new Error("bad key");
        state.update((state.getOption() ?? 0) + (v ?? 0));
        return `${k}=${state.get()}`;
      }),
    );
    const out: string[][] = [];
    mapped.foreachRDD((r) => void out.push(r.collect()));
    await ssc.start();
    await ssc.advance(3000);
    await ssc.stop();
    expect(out).toEqual([["a=1"], ["a=2"]]);
    expect(sorted(mapped.state().collect())).toEqual([["a", 2]]);
  });

  it("state() read while a batch runs sees the state before that batch", async () => {
    const { ssc } = newContext();
    const keys = Array.from({ length: 400_000 }, (_, i) => `k${i}`);
    const q: P[][] = [keys.map((k) => [k, 1] as P), keys.map((k) => [k, 1] as P)];
    let calls = 0;
    const mapped = ssc.queueStream(q).mapWithState(
      StateSpec.function((_k: string, v: number | undefined, state: State<number>) => {
        calls++;
        state.update((state.getOption() ?? 0) + (v ?? 0));
      }),
    );
    mapped.foreachRDD(() => {});
    await ssc.start();
    await ssc.advance(1000);
    let midBatch: P[] | undefined;
    const reader = setImmediate(function poll() {
      if (calls > keys.length && calls < 2 * keys.length) midBatch = mapped.state().collect();
      else setImmediate(poll);
    });
    await ssc.advance(1000);
    clearImmediate(reader);
    await ssc.stop();
    expect(midBatch?.length).toBe(keys.length);
    expect(midBatch?.every(([, v]) => v === 1)).toBe(true);
    expect(mapped.state().collect().every(([, v]) => v === 2)).toBe(true);
  }, 60_000); // 400k keys: seconds on a loaded 2-core machine

  it("State.update on a timing-out key fails the batch", async () => {
    await expect(
      runBatches([[["a", 1]] as P[], [], [], []], (s) =>
        s.mapWithState(
          StateSpec.function((_k: string, _v: number | undefined, state: State<number>) => {
            state.update(1);
            return 0;
          }).timeout(1000),
        ),
      ),
    ).rejects.toThrow(/timing out/);
  });
});
