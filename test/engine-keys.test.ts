// Keys compared by value: tuple, plain-object and Date keys group in every keyed operator (batch
// tables on the manual clock, as in Spark's suites), and state with such keys survives checkpoints.

import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as vm from "node:vm";
import { afterEach, describe, expect, it } from "vitest";
import { recoveryReportOf, SparkContext, State, StateSpec, StreamingContext, type DStream } from "../engine/index.js";
import { checkpoint, checkpointerOf } from "../engine/checkpoint/index.js";
import { KeyedMap, KeyedSet, keysEqual, structuralKey } from "../engine/keys.js";
import { newContext, runBatches, runBatches2, sorted } from "./engine-helpers.js";

type Tup = [string, number];
type TP = [Tup, number];
const add = (a: number, b: number) => a + b;
const sub = (a: number, b: number) => a - b;
/** A fresh tuple per record, so that nothing groups by object identity. */
const pairOf = ([w, h]: Tup): TP => [[w, h], 1];

describe("KeyedMap and keysEqual", () => {
  it("primitives keep Map semantics (SameValueZero)", () => {
    const m = new KeyedMap<unknown, string>();
    m.set(NaN, "nan").set(-0, "zero").set("1", "string one").set(1, "number one").set(1n, "bigint one").set(null, "null").set(undefined, "undef");
    expect(m.get(NaN)).toBe("nan");
    expect(m.get(0)).toBe("zero");
    expect(m.get(1)).toBe("number one");
    expect(m.get("1")).toBe("string one");
    expect(m.get(1n)).toBe("bigint one");
    expect(m.get(null)).toBe("null");
    expect(m.get(undefined)).toBe("undef");
    expect(m.size).toBe(7);
    expect(keysEqual(NaN, NaN)).toBe(true);
    expect(keysEqual(-0, 0)).toBe(true);
    expect(keysEqual("1", 1)).toBe(false);
  });

  it("tuples, plain objects (any key order) and Dates compare by value; the first-seen key is kept", () => {
    const m = new KeyedMap<unknown, number>();
    const first = ["a", 1];
    m.set(first, 1);
    m.set(["a", 1], 2);
    m.set({ user: "u", hour: 3 }, 10);
    m.set({ hour: 3, user: "u" }, 11);
    m.set(new Date(5000), 20);
    m.set(new Date(5000), 21);
    m.set([NaN, -0], 30);
    m.set([NaN, 0], 31);
    expect(m.size).toBe(4);
    expect([...m]).toEqual([
      [["a", 1], 2],
      [{ user: "u", hour: 3 }, 11],
      [new Date(5000), 21],
      [[NaN, -0], 31],
    ]);
    expect([...m.keys()][0]).toBe(first);
    expect(keysEqual([["a", { x: [1, 2] }]], [["a", { x: [1, 2] }]])).toBe(true);
    expect(keysEqual(["a", 1], ["a", "1"])).toBe(false);
    expect(keysEqual(["a", 1], ["a", 1, undefined])).toBe(false);
    expect(keysEqual({ a: undefined }, {})).toBe(false);
    expect(keysEqual([1n], [1])).toBe(false);
  });

  it("a merge keeps its own copy of a tuple key, so a user's tuple is never held past its batch", () => {
    // Holding one user tuple per distinct key makes V8 pretenure the user's allocation site (keys.ts, keptPair).
    const m = new KeyedMap<unknown, number>();
    const pair = ["a", 1];
    const triple = ["b", 2, 3];
    m.merge(pair, 1, (x, y) => x + y);
    m.merge(["a", 1], 2, (x, y) => x + y);
    m.combine(triple, 5, (x: number) => x, (c, x: number) => c + x);
    m.combine(["b", 2, 3], 6, (x: number) => x, (c, x: number) => c + x);
    const keys = [...m.keys()];
    expect(keys).toEqual([["a", 1], ["b", 2, 3]]);
    expect(keys[0]).not.toBe(pair);
    expect(keys[1]).not.toBe(triple);
    expect(m.get(["a", 1])).toBe(3);
    expect(m.get(["b", 2, 3])).toBe(11);
  });

  it("a string that looks like an encoded key does not collide with the key", () => {
    const m = new KeyedMap<unknown, string>();
    const tuple = ["a", 1];
    m.set(tuple, "tuple");
    m.set(structuralKey(tuple) as string, "string");
    m.set('["a",1]', "json string");
    m.set("a,1", "joined string");
    expect(m.size).toBe(3 + (structuralKey(tuple) === '["a",1]' ? 0 : 1));
    expect(m.get(["a", 1])).toBe("tuple");
    expect(m.get("a,1")).toBe("joined string");
    expect(m.get('["a",1]')).toBe("json string");
  });

  it("class instances, Maps and functions keep identity semantics, also inside tuples", () => {
    class User {
      constructor(readonly name: string) {}
    }
    const u = new User("a");
    const m = new KeyedMap<unknown, number>();
    m.set(u, 1);
    m.set(new User("a"), 2);
    m.set([u, 1], 3);
    m.set([u, 1], 4);
    m.set([new User("a"), 1], 5);
    m.set(new Map([["a", 1]]), 6);
    m.set(new Map([["a", 1]]), 7);
    expect(m.size).toBe(6);
    expect(m.get(u)).toBe(1);
    expect(m.get([u, 1])).toBe(4);
  });

  it("objects from a notebook's vm context compare by value too", () => {
    const ctx = vm.createContext({});
    const fromVm = vm.runInContext('[{ user: "a", d: new Date(7) }, ["x", 1]]', ctx) as unknown[];
    expect(keysEqual(fromVm, [{ d: new Date(7), user: "a" }, ["x", 1]])).toBe(true);
  });

  it("copies are independent; cyclic keys do not hang; delete and KeyedSet", () => {
    const m = new KeyedMap<unknown, number>([
      [["a"], 1],
      ["b", 2],
    ]);
    const c = m.copy();
    c.set(["a"], 9);
    c.delete("b");
    expect(m.get(["a"])).toBe(1);
    expect(m.get("b")).toBe(2);
    expect(c.get(["a"])).toBe(9);
    expect(c.delete(["a"])).toBe(true);
    expect(c.size).toBe(0);
    const cyc: unknown[] = ["x"];
    cyc.push(cyc);
    m.set(cyc, 3);
    expect(m.get(cyc)).toBe(3);
    const s = new KeyedSet<unknown>();
    s.add([1, 2]).add([1, 2]).add("[1,2]");
    expect(s.size).toBe(2);
    expect(s.has([1, 2])).toBe(true);
  });
});

describe("a large KeyedMap (past 65536 native keys, which spill into shards)", () => {
  // Keys of every native kind, and a few value keys among them, in one map of 100k keys.
  const N = 100_000;
  const keyAt = (i: number): unknown => {
    switch (i % 6) {
      case 0:
        return i; // small integers
      case 1:
        return `user-${i}`; // ids varying at the end
      case 2:
        return i / 7; // fractions
      case 3:
        return 1_700_000_000_000 + i * 1000; // millisecond timestamps: multiples of 1000
      case 4:
        return `${i}`.padStart(12, "0");
      default:
        return i % 600 === 5 ? [`t${i}`, i] : -i - 0.5;
    }
  };

  it("agrees with a plain Map on get, has, set, merge, combine, delete, size and iteration", () => {
    const km = new KeyedMap<unknown, number>();
    const ref = new Map<string, [unknown, number]>();
    const id = (k: unknown) => (Array.isArray(k) ? `T${JSON.stringify(k)}` : `${typeof k}:${String(k)}`);
    for (let i = 0; i < N; i++) {
      const k = keyAt(i);
      if (i % 3 === 0) km.set(k, i);
      else if (i % 3 === 1) km.merge(k, i, (a, b) => a + b);
      else km.combine(k, i, (x) => x, (c, x) => c + x);
      ref.set(id(k), [k, i]);
    }
    // Updates of existing keys (in direct and in the shards), merges and deletes.
    for (let i = 0; i < N; i += 5) {
      const k = keyAt(i);
      km.merge(Array.isArray(k) ? [...k] : k, 1, (a, b) => a + b);
      (ref.get(id(k)) as [unknown, number])[1] += 1;
    }
    for (let i = 1; i < N; i += 11) {
      const k = keyAt(i);
      expect(km.delete(Array.isArray(k) ? [...k] : k)).toBe(true);
      ref.delete(id(k));
    }
    expect(km.delete("absent")).toBe(false);
    expect(km.size).toBe(ref.size);
    const wrong: unknown[] = [];
    for (let i = 0; i < N; i++) {
      const k = keyAt(i);
      const want = ref.get(id(k));
      if (km.has(k) !== (want !== undefined) || km.get(k) !== want?.[1]) wrong.push(k);
    }
    expect(wrong).toEqual([]);
    const seen = new Map<string, number>();
    for (const [k, v] of km) seen.set(id(k), v);
    expect(seen).toEqual(new Map([...ref].map(([i, kv]) => [i, kv[1]])));
    expect([...km.keys()].length).toBe(ref.size);
    expect([...km.values()].reduce((a, b) => a + b, 0)).toBe([...ref.values()].reduce((a, kv) => a + kv[1], 0));
    // SameValueZero holds in the shards too: -0 finds 0, NaN finds NaN.
    km.set(NaN, -1);
    expect(km.get(NaN)).toBe(-1);
    expect(km.get(-0)).toBe(km.get(0));
  });

  it("copies are independent and the sliced copy yields as it goes; a deleted key comes back once", () => {
    const km = new KeyedMap<unknown, number>();
    for (let i = 0; i < N; i++) km.set(keyAt(i), i);
    const gen = km.copySliced();
    let steps = 0;
    let r = gen.next();
    while (!r.done) {
      steps++;
      r = gen.next();
    }
    const copy = r.value;
    expect(steps).toBeGreaterThan(10);
    expect(copy.size).toBe(N);
    km.set(keyAt(N - 1), -1);
    km.delete(keyAt(N - 2));
    expect(copy.get(keyAt(N - 1))).toBe(N - 1);
    expect(copy.has(keyAt(N - 2))).toBe(true);
    km.set(keyAt(N - 2), 7);
    km.set(keyAt(N - 2), 8);
    expect(km.size).toBe(N);
    expect(km.get(keyAt(N - 2))).toBe(8);
    const plain = km.copy();
    km.clear();
    expect(km.size).toBe(0);
    expect(km.get(keyAt(N - 3))).toBeUndefined();
    expect(plain.size).toBe(N);
    expect(plain.get(keyAt(N - 3))).toBe(N - 3);
  });

  it("keeps every native Map small: none holds more than 65536 keys, so no rehash holds the loop long", () => {
    const km = new KeyedMap<number, number>();
    for (let i = 0; i < 1_000_000; i++) km.merge(i, 1, (a, b) => a + b);
    expect(km.size).toBe(1_000_000);
    const inner = km as unknown as { direct: Map<number, number>; spill: Map<number, number>[] };
    const sizes = [inner.direct.size, ...inner.spill.map((m) => m.size)];
    expect(Math.max(...sizes)).toBeLessThanOrEqual(1 << 16);
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(1_000_000);
    // Shares differ (over an octave), so the shards do not all grow, and rehash, at the same moment.
    const spilled = inner.spill.map((m) => m.size);
    expect(Math.max(...spilled) / Math.min(...spilled)).toBeGreaterThan(1.5);
  });
});

describe("tuple keys in batch operators", () => {
  it("reduceByKey", async () => {
    const input: Tup[][] = [
      [["a", 1], ["a", 1], ["b", 1]],
      [["a", 2], ["a", 1], ["a", 2]],
    ];
    expect(await runBatches(input, (s) => s.map(pairOf).reduceByKey(add), { sort: true })).toEqual([
      [[["a", 1], 2], [["b", 1], 1]],
      [[["a", 1], 1], [["a", 2], 2]],
    ]);
  });

  it("a string key that looks like an encoded tuple stays apart from the tuple", async () => {
    const input: [unknown, number][][] = [[[["a", 1], 1], ['["a",1]', 10], [["a", 1], 1], ["a,1", 100]]];
    expect(await runBatches(input, (s) => s.reduceByKey(add), { sort: true })).toEqual([
      sorted<[unknown, number]>([["a,1", 100], ['["a",1]', 10], [["a", 1], 2]]),
    ]);
  });

  it("object keys with different key order group together", async () => {
    const input: [Record<string, unknown>, number][][] = [
      [
        [{ user: "a", hour: 1 }, 1],
        [{ hour: 1, user: "a" }, 2],
        [{ user: "b", hour: 1 }, 4],
      ],
    ];
    expect(await runBatches(input, (s) => s.reduceByKey(add).groupByKey(), { sort: true })).toEqual([
      sorted([
        [{ user: "a", hour: 1 }, [3]],
        [{ user: "b", hour: 1 }, [4]],
      ]),
    ]);
  });

  it("Date keys group by time", async () => {
    const input: number[][] = [[1000, 1000, 2000]];
    const out = await runBatches(input, (s) => s.map((t) => [new Date(t), 1] as [Date, number]).reduceByKey(add));
    expect(sorted(out[0] as [Date, number][])).toEqual([
      [new Date(1000), 2],
      [new Date(2000), 1],
    ]);
  });

  it("join, leftOuterJoin and cogroup", async () => {
    const a: Tup[][] = [[["a", 1], ["b", 2]]];
    const b: Tup[][] = [[["a", 1], ["c", 3]]];
    const tag = (t: string) => ([w, h]: Tup): [Tup, string] => [[w, h], t];
    expect(await runBatches2(a, b, (x, y) => x.map(tag("x")).join(y.map(tag("y"))))).toEqual([[[["a", 1], ["x", "y"]]]]);
    expect(await runBatches2(a, b, (x, y) => x.map(tag("x")).leftOuterJoin(y.map(tag("y"))), { sort: true })).toEqual([
      [[["a", 1], ["x", "y"]], [["b", 2], ["x", undefined]]],
    ]);
    expect(await runBatches2(a, b, (x, y) => x.map(tag("x")).cogroup(y.map(tag("y"))), { sort: true })).toEqual([
      [[["a", 1], [["x"], ["y"]]], [["b", 2], [["x"], []]], [["c", 3], [[], ["y"]]]],
    ]);
  });

  it("countByValue and distinct", async () => {
    const input: Tup[][] = [[["a", 1], ["a", 1], ["b", 2]]];
    const fresh = (s: DStream<Tup>) => s.map(([w, h]) => [w, h] as Tup);
    expect(await runBatches(input, (s) => fresh(s).countByValue(), { sort: true })).toEqual([[[["a", 1], 2], [["b", 2], 1]]]);
    expect(await runBatches(input, (s) => fresh(s).transform((r) => r.distinct()), { sort: true })).toEqual([[["a", 1], ["b", 2]]]);
  });

  it("RDD actions: countByValue, countByKey, collectAsMap, lookup, subtractByKey, sortByKey", () => {
    const sc = new SparkContext();
    const rdd = sc.parallelize<TP>([[["a", 1], 1], [["a", 1], 2], [["b", 0], 3], [["a", 0], 4]], 2);
    expect([...rdd.keys().countByValue()]).toEqual([[["a", 1], 2], [["b", 0], 1], [["a", 0], 1]]);
    expect([...rdd.countByKey()]).toEqual([[["a", 1], 2], [["b", 0], 1], [["a", 0], 1]]);
    expect([...rdd.collectAsMap()]).toEqual([[["a", 1], 2], [["b", 0], 3], [["a", 0], 4]]);
    expect(rdd.lookup(["a", 1])).toEqual([1, 2]);
    expect(rdd.subtractByKey(sc.parallelize<TP>([[["a", 1], 0]])).collect()).toEqual([[["b", 0], 3], [["a", 0], 4]]);
    expect(rdd.sortByKey().keys().collect()).toEqual([["a", 0], ["a", 1], ["a", 1], ["b", 0]]);
  });
});

describe("tuple keys in state and windows", () => {
  const events: Tup[][] = [[["a", 1], ["b", 2]], [["a", 1]], [], [["b", 2], ["a", 1]]];

  it("updateStateByKey across batches", async () => {
    const sum = (vs: number[], s: number | undefined) => vs.reduce(add, 0) + (s ?? 0);
    expect(await runBatches(events, (s) => s.map(pairOf).updateStateByKey(sum), { sort: true })).toEqual([
      [[["a", 1], 1], [["b", 2], 1]],
      [[["a", 1], 2], [["b", 2], 1]],
      [[["a", 1], 2], [["b", 2], 1]],
      [[["a", 1], 3], [["b", 2], 2]],
    ]);
  });

  it("updateStateByKey with object keys in changing key order", async () => {
    const input: [string, number][][] = [[["a", 1]], [["a", 1]]];
    let flip = false;
    const build = (s: DStream<[string, number]>) =>
      s
        .map(([user, hour]) => ((flip = !flip) ? [{ user, hour }, 1] : [{ hour, user }, 1]) as [Record<string, unknown>, number])
        .updateStateByKey((vs: number[], st: number | undefined) => vs.length + (st ?? 0));
    expect(await runBatches(input, build)).toEqual([[[{ user: "a", hour: 1 }, 1]], [[{ user: "a", hour: 1 }, 2]]]);
  });

  it("reduceByKeyAndWindow with inverse: keys enter and leave the window", async () => {
    const input: Tup[][] = [[["a", 1]], [["a", 1], ["b", 2]], [["b", 2]], [], [["a", 1]]];
    expect(await runBatches(input, (s) => s.map(pairOf).reduceByKeyAndWindow(add, sub, 2000, 1000), { sort: true })).toEqual([
      [[["a", 1], 1]],
      [[["a", 1], 2], [["b", 2], 1]],
      [[["a", 1], 1], [["b", 2], 2]],
      [[["a", 1], 0], [["b", 2], 1]],
      [[["a", 1], 1], [["b", 2], 0]],
    ]);
    const keep = (kv: TP) => kv[1] > 0;
    expect(
      await runBatches(input, (s) => s.map(pairOf).reduceByKeyAndWindow(add, sub, 2000, 1000, { filterFunc: keep }), { sort: true }),
    ).toEqual([[[["a", 1], 1]], [[["a", 1], 2], [["b", 2], 1]], [[["a", 1], 1], [["b", 2], 2]], [[["b", 2], 1]], [[["a", 1], 1]]]);
  });

  it("mapWithState, its snapshots and state()", async () => {
    const { sc, ssc } = newContext();
    const queue = events.map((b) => sc.parallelize(b.map(([w, h]) => [w, h] as Tup)));
    const spec = StateSpec.function((key: Tup, one: number | undefined, state: State<number>) => {
      const n = (state.getOption() ?? 0) + (one ?? 0);
      state.update(n);
      return `${key.join("/")}=${n}`;
    });
    const mapped = ssc.queueStream(queue, true, []).map(pairOf).mapWithState(spec);
    const out: string[][] = [];
    const snaps: TP[][] = [];
    mapped.foreachRDD((r) => void out.push(r.collect().sort()));
    mapped.stateSnapshots().foreachRDD((r) => void snaps.push(sorted(r.collect())));
    await ssc.start();
    for (let i = 0; i < events.length; i++) await ssc.advance(1000);
    expect(out).toEqual([["a/1=1", "b/2=1"], ["a/1=2"], [], ["a/1=3", "b/2=2"]]);
    expect(snaps[3]).toEqual([[["a", 1], 3], [["b", 2], 2]]);
    expect(sorted(mapped.state().collect())).toEqual([[["a", 1], 3], [["b", 2], 2]]);
    await ssc.stop();
    if (ssc.lastError) throw ssc.lastError;
  });

  it("checkpointState/restoreState through JSON keep tuple keys grouping", async () => {
    const sum = (vs: number[], s: number | undefined) => vs.reduce(add, 0) + (s ?? 0);
    const { sc, ssc } = newContext();
    const counts = ssc.queueStream([sc.parallelize<Tup>([["a", 1], ["b", 2], ["a", 1]])]).map(pairOf).updateStateByKey(sum);
    counts.foreachRDD(() => {});
    await ssc.start();
    await ssc.advance(1000);
    await ssc.stop();
    const json = JSON.parse(JSON.stringify(counts.checkpointState())) as unknown;
    expect(json).toEqual({ entries: [[["a", 1], 2], [["b", 2], 1]] });

    const { sc: sc2, ssc: ssc2 } = newContext();
    const counts2 = ssc2.queueStream([sc2.parallelize<Tup>([["a", 1]])]).map(pairOf).updateStateByKey(sum);
    counts2.restoreState(json);
    const out: TP[][] = [];
    counts2.foreachRDD((r) => void out.push(sorted(r.collect())));
    await ssc2.start({ zeroTime: 0, resumeTime: 2000, pendingBatches: [2000] });
    await ssc2.advance(0);
    await ssc2.stop();
    expect(out[0]).toEqual([[["a", 1], 3], [["b", 2], 1]]);
  });
});

describe("tuple keys across a real checkpoint and recovery", () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
  });
  const tmpDir = () => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), "sb-keys-"));
    dirs.push(d);
    return d;
  };
  const BATCHES: Tup[][] = [[["a", 1], ["b", 2]], [["a", 1]], [["b", 2], ["c", 3]], [["a", 1]], [["c", 3], ["a", 1]], [["b", 2]]];
  const sc = new SparkContext();

  const build = (dir: string, out: Map<number, string>): StreamingContext => {
    const ssc = new StreamingContext(sc, 1000, { clock: "manual" });
    checkpoint(ssc, dir, { interval: 1000 });
    const pairs = ssc.queueStream(BATCHES.map((b) => sc.parallelize(b.map(([w, h]) => [w, h] as Tup))), true).map(pairOf);
    const counts = pairs.updateStateByKey((vs: number[], s: number | undefined) => vs.length + (s ?? 0), { name: "counts" });
    const win = pairs.reduceByKeyAndWindow(add, sub, 3000, 1000, { name: "win" });
    const running = pairs.mapWithState(
      StateSpec.function((k: Tup, one: number | undefined, st: State<number>) => {
        st.update((st.getOption() ?? 0) + (one ?? 0));
        return `${k.join("/")}:${st.get()}`;
      }),
      { name: "running" },
    );
    const show = (tag: string) => (kv: TP) => `${tag} ${kv[0].join("/")}=${kv[1]}`;
    ssc.union(counts.map(show("u")), win.map(show("w")), running.map((m) => `m ${m}`)).foreachRDD((rdd, t) => {
      out.set(t, rdd.collect().sort().join(","));
    });
    return ssc;
  };

  async function run(ssc: StreamingContext, n: number): Promise<void> {
    await ssc.start();
    for (let i = 0; i < n; i++) {
      await ssc.advance(1000);
      await checkpointerOf(ssc)?.flush();
    }
  }

  it("a recovered run with tuple keys ends like an uninterrupted one", async () => {
    const reference = new Map<number, string>();
    const ref = build(tmpDir(), reference);
    await run(ref, 6);
    await ref.stop();
    await checkpointerOf(ref)?.flush();

    const dir = tmpDir();
    const out = new Map<number, string>();
    const first = build(dir, out);
    await run(first, 3);
    await first.stop();
    await checkpointerOf(first)?.flush();
    const second = StreamingContext.getOrCreate(dir, () => build(dir, out));
    expect(recoveryReportOf(second)?.restoredState.sort()).toEqual(["counts", "running", "win"]);
    await second.start();
    for (let i = 0; i < 3; i++) await second.advance(1000);
    await second.stop();
    await checkpointerOf(second)?.flush();
    if (second.lastError) throw second.lastError;
    for (const t of [4000, 5000, 6000]) expect(out.get(t)).toEqual(reference.get(t));
    expect(reference.get(6000)).toContain("u a/1=4");
  });
});
