// Keyed operators in a group, against Spark's semantics computed by hand from the same batches: the log holds
// entries at known times (so the batches are known), a group of one instance runs a pipeline with windows
// (with and without an inverse), a join, mapWithState, count, countByValue and groupByKey, each a re-key
// through repartition streams with map-side combining; every batch's result must be what Spark gives for
// those batches. Plus the plan: where the stages split and what crosses. Real etcd and redis-server.
import type Redis from "ioredis";
import { describe, expect, it } from "vitest";
import { Milliseconds, SparkContext, StateSpec, StreamingContext, redisStream, type RDD, type State } from "../engine/index.js";
import { planGroup } from "../engine/group/plan.js";
import { assignUnits } from "../engine/group/coordinator.js";
import { connect } from "../engine/sources/redis.js";
import { EtcdTestServer, etcdAvailable } from "./support/etcd-server.js";
import { RedisTestServer, redisServerAvailable } from "./support/redis-server.js";
import { mulberry32, sleep } from "./support/group-harness.js";

const B = 100;
const BATCHES = 12;
const PARTITIONS = 4;
type P = [string, number];

describe.skipIf(!etcdAvailable() || !redisServerAvailable())("keyed operators in a group (real etcd, redis-server)", () => {
  it("assigns units balanced, from the member set alone, and keeps most units in place when a member leaves", () => {
    const members = ["a", "b", "c", "d"];
    const four = assignUnits(8, members);
    expect([...four.values()].map((u) => u.length)).toEqual([2, 2, 2, 2]);
    expect(assignUnits(8, [...members].reverse())).toEqual(new Map([...four].sort()));
    const three = assignUnits(8, ["a", "b", "d"]);
    expect([...three.values()].map((u) => u.length).sort()).toEqual([2, 3, 3]);
    // c's two units move, and few others.
    const owner = (m: Map<string, number[]>, u: number) => [...m].find(([, us]) => us.includes(u))![0];
    const moved = [...Array(8).keys()].filter((u) => owner(four, u) !== "c" && owner(four, u) !== owner(three, u));
    expect(moved.length).toBeLessThanOrEqual(2);
    // More members than units: the extra ones stand by.
    expect([...assignUnits(2, ["a", "b", "c"]).values()].map((u) => u.length).sort()).toEqual([0, 1, 1]);
  });

  it("plans the re-keys as stages and combines map-side", () => {
    const ssc = new StreamingContext(new SparkContext(), Milliseconds(B), { group: false });
    const lines = redisStream(ssc, { url: "redis://127.0.0.1:1", streams: ["a", "b"], startId: "0" });
    const pairs = lines.map((e) => [e.fields.w!, 1] as P);
    const counted = pairs.reduceByKey((a, b) => a + b);
    counted.updateStateByKey((vs: number[], s?: number) => vs.reduce((a, b) => a + b, 0) + (s ?? 0)).foreachRDD(() => {});
    counted.join(pairs.reduceByKey((a, b) => a + b, 3)).foreachRDD(() => {});
    lines.count().foreachRDD(() => {});
    const plan = planGroup(ssc);
    // The log's stage; reduceByKey's (updateStateByKey on it stays there); the 3-partition reduceByKey's; the
    // join's (its sides are keyed differently, so both are exchanged again); and count's single partition.
    expect(plan.subs.map((s) => s.partitions)).toEqual([2, 2, 3, 2, 1]);
    expect(plan.exchanges.map((x) => [x.from, x.to])).toEqual([[0, 1], [0, 2], [1, 3], [2, 3], [0, 4]]);
    expect(plan.units).toBe(3);
  });

  it("windows, a join, mapWithState, updateStateByKeyIterator, count, countByValue and groupByKey give Spark's result for every batch", async () => {
    const etcd = await EtcdTestServer.start();
    const server = await RedisTestServer.start();
    const redis: Redis = connect({ url: server.url });
    let ssc: StreamingContext | undefined;
    try {
      // Batch k (1-based) holds the entries with times in (base + (k-1)B, base + kB].
      const base = Math.floor(Date.now() / 1000) * 1000 - 60_000;
      const rng = mulberry32(21);
      const batches: string[][] = [];
      const next = new Array<number>(PARTITIONS).fill(0);
      for (let k = 1; k <= BATCHES; k++) {
        const words: string[] = [];
        const pipe = redis.pipeline();
        const n = k === 5 ? 0 : 20 + Math.floor(rng() * 20); // batch 5 is empty
        for (let i = 0; i < n; i++) {
          const w = `w${Math.floor(rng() * 9)}`;
          words.push(w);
          const p = Math.floor(rng() * PARTITIONS);
          const ms = base + (k - 1) * B + 1 + Math.floor((i * (B - 2)) / Math.max(1, n));
          next[p] = Math.max(next[p]! + 1, ms * 1000);
          pipe.xadd(`in:${p}`, `${Math.floor(next[p]! / 1000)}-${next[p]! % 1000}`, "w", w);
        }
        await pipe.exec();
        batches.push(words);
      }
      // A batch's words in the order a group reads them: partition by partition, each in log order.
      const perBatch = batches.map(() => new Map<number, string[]>());
      for (let p = 0; p < PARTITIONS; p++) {
        for (const [id, f] of (await redis.xrange(`in:${p}`, "-", "+")) as [string, string[]][]) {
          const k = Math.ceil((Number(id.split("-")[0]) - base) / B);
          const m = perBatch[k - 1]!;
          m.set(p, [...(m.get(p) ?? []), f[1]!]);
        }
      }
      const ordered = perBatch.map((m) => [...Array(PARTITIONS).keys()].flatMap((p) => m.get(p) ?? []));
      expect(ordered.map((ws) => [...ws].sort())).toEqual(batches.map((ws) => [...ws].sort()));

      ssc = new StreamingContext(new SparkContext(), Milliseconds(B), { group: { name: "ops", coordinator: etcd.url, sessionTimeout: 2000 } });
      const words = redisStream(ssc, { url: server.url, streams: [...Array(PARTITIONS).keys()].map((p) => `in:${p}`), startId: "0" }).map((e) => e.fields.w!);
      const pairs = words.map((w) => [w, 1] as P);
      const got = new Map<string, Map<number, unknown>>();
      const keep = (name: string, norm: (rdd: RDD<unknown>) => unknown) => (rdd: RDD<unknown>, t: number) => {
        const m = got.get(name) ?? new Map<number, unknown>();
        m.set(Math.round((t - base) / B), norm(rdd));
        got.set(name, m);
      };
      const asMap = (rdd: RDD<unknown>) => Object.fromEntries((rdd.collect() as [string, unknown][]).sort());
      pairs.reduceByKeyAndWindow((a, b) => a + b, (a, b) => a - b, 3 * B, B).foreachRDD(keep("inverse", asMap));
      pairs.reduceByKeyAndWindow((a, b) => a + b, 3 * B, B).foreachRDD(keep("window", asMap));
      const lengths = words.map((w) => [w, w.length * 10] as P);
      pairs.reduceByKey((a, b) => a + b).join(lengths.reduceByKey((a, b) => Math.max(a, b))).foreachRDD(keep("join", asMap));
      const spec = StateSpec.function((k: string, v: number | undefined, s: State<number>) => {
        const n = (s.getOption() ?? 0) + (v ?? 0);
        s.update(n);
        return `${k}=${n}`;
      });
      pairs.mapWithState(spec).foreachRDD(keep("mapWithState", (r) => (r.collect() as string[]).slice().sort()));
      pairs
        .updateStateByKeyIterator(function* (records: IterableIterator<[string, number[], number | undefined]>) {
          for (const [k, vs, s] of records) yield [k, (s ?? 0) + vs.length] as [string, number];
        })
        .foreachRDD(keep("iterator", asMap));
      words.count().foreachRDD(keep("count", (r) => r.collect()));
      words.countByValue().foreachRDD(keep("countByValue", asMap));
      pairs.groupByKey().foreachRDD(keep("groupByKey", (r) => Object.fromEntries((r.collect() as [string, number[]][]).map(([k, vs]) => [k, vs.length]).sort())));
      await ssc.start();
      for (let i = 0; i < 600 && (got.get("count")?.size ?? 0) < BATCHES; i++) await sleep(50);
      await ssc.stop();

      if (process.env.SB_GROUP_LOG) for (const [name, m] of got) console.log(name, JSON.stringify([...m].slice(0, 8)));
      // Spark's results for the same batches.
      const count = (ws: string[]) => {
        const m: Record<string, number> = {};
        for (const w of ws) m[w] = (m[w] ?? 0) + 1;
        return Object.fromEntries(Object.entries(m).sort());
      };
      const running = new Map<string, number>();
      const totals: Record<string, number> = {};
      for (let k = 1; k <= BATCHES; k++) {
        const ws = ordered[k - 1]!;
        const inWindow = ordered.slice(Math.max(0, k - 3), k).flat();
        const windowCounts = count(inWindow);
        expect(got.get("window")!.get(k), `window, batch ${k}`).toEqual(windowCounts);
        // The inverse form keeps keys whose count fell to 0 (Spark's, without a filterFunc).
        const inverse = got.get("inverse")!.get(k) as Record<string, number>;
        expect(Object.fromEntries(Object.entries(inverse).filter(([, v]) => v !== 0)), `inverse window, batch ${k}`).toEqual(windowCounts);
        const c = count(ws);
        for (const w of ws) totals[w] = (totals[w] ?? 0) + 1;
        expect(got.get("iterator")!.get(k), `updateStateByKeyIterator, batch ${k}`).toEqual(Object.fromEntries(Object.entries(totals).sort()));
        expect(got.get("join")!.get(k), `join, batch ${k}`).toEqual(Object.fromEntries(Object.entries(c).map(([w, n]) => [w, [n, w.length * 10]])));
        expect(got.get("count")!.get(k), `count, batch ${k}`).toEqual([ws.length]);
        expect(got.get("countByValue")!.get(k), `countByValue, batch ${k}`).toEqual(c);
        expect(got.get("groupByKey")!.get(k), `groupByKey, batch ${k}`).toEqual(c);
        // mapWithState sees the records one by one, in the group's order (partition by partition).
        const mapped: string[] = [];
        for (const w of ws) {
          running.set(w, (running.get(w) ?? 0) + 1);
          mapped.push(`${w}=${running.get(w)}`);
        }
        expect(got.get("mapWithState")!.get(k), `mapWithState, batch ${k}`).toEqual(mapped.sort());
      }
    } finally {
      await ssc?.stop();
      redis.disconnect();
      await Promise.all([etcd.stop(), server.stop()]);
    }
  }, 120_000);

  it("catching up on a backlog of large batches (each read while the one before runs) gives every batch's counts", async () => {
    const etcd = await EtcdTestServer.start();
    const server = await RedisTestServer.start();
    const redis: Redis = connect({ url: server.url });
    let ssc: StreamingContext | undefined;
    try {
      // 6 batches of 2 partitions, 2,500 entries each (large enough to be read one batch ahead), batch 4 empty.
      const base = Math.floor(Date.now() / 1000) * 1000 - 60_000;
      const rng = mulberry32(5);
      const want: Record<string, number>[] = [];
      const totals: Record<string, number> = {};
      const N = 6;
      for (let k = 1; k <= N; k++) {
        const c: Record<string, number> = {};
        const pipe = redis.pipeline();
        for (let p = 0; p < 2; p++) {
          for (let i = 0; k !== 4 && i < 2500; i++) {
            const w = `w${Math.floor(rng() * 50)}`;
            c[w] = (c[w] ?? 0) + 1;
            pipe.xadd(`big:${p}`, `${base + (k - 1) * B + 1 + Math.floor(i / 30)}-${i % 30}`, "w", w);
          }
        }
        await pipe.exec();
        for (const [w, n] of Object.entries(c)) totals[w] = (totals[w] ?? 0) + n;
        want.push({ ...totals });
      }
      ssc = new StreamingContext(new SparkContext(), Milliseconds(B), { group: { name: "backlog", coordinator: etcd.url, sessionTimeout: 2000 } });
      const got = new Map<number, Record<string, number>>();
      redisStream(ssc, { url: server.url, streams: ["big:0", "big:1"], startId: "0" })
        .map((e) => [e.fields.w!, 1] as P)
        .reduceByKey((a, b) => a + b)
        .updateStateByKey((vs: number[], s?: number) => vs.reduce((a, b) => a + b, 0) + (s ?? 0))
        .foreachRDD((rdd: RDD<P>, t) => void got.set(Math.round((t - base) / B), Object.fromEntries(rdd.collect())));
      await ssc.start();
      for (let i = 0; i < 600 && got.size < N; i++) await sleep(50);
      const stats = (ssc.group as unknown as { loopStats(): { tasks: Record<number, { prefetched: number }> } }).loopStats();
      await ssc.stop();
      for (let k = 1; k <= N; k++) expect(got.get(k), `batch ${k}`).toEqual(want[k - 1]);
      // The batches after the first large one in each partition were read ahead (so this test ran that path).
      expect(stats.tasks[0]!.prefetched).toBeGreaterThanOrEqual(2);
    } finally {
      await ssc?.stop();
      redis.disconnect();
      await Promise.all([etcd.stop(), server.stop()]);
    }
  }, 120_000);
});
