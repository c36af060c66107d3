// redisStream and saveToRedis in a context, against a real redis-server: per-batch caps, positions in
// the checkpoint, an idempotent sink across a replayed batch, a rebuilt batch that takes exactly its logged
// entries whatever arrived while the process was down, and a server restart that loses nothing.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type Redis from "ioredis";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { SparkContext, StreamingContext } from "../engine/index.js";
import { checkpoint, checkpointerOf, recoveryReportOf } from "../engine/checkpoint/index.js";
import { connect, redisStream, saveToRedis, type RedisInputDStream } from "../engine/sources/redis.js";
import { RedisTestServer, redisServerAvailable } from "./support/redis-server.js";

const sc = new SparkContext();
const sum = (vs: number[], last?: number) => vs.reduce((a, b) => a + b, 0) + (last ?? 0);
const dirs: string[] = [];
const contexts: StreamingContext[] = [];
function tmpDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), "sb-redis-ctx-"));
  dirs.push(d);
  return d;
}

describe.skipIf(!redisServerAvailable())("redisStream / saveToRedis (real redis-server)", () => {
  let server: RedisTestServer;
  let redis: Redis;

  beforeAll(async () => {
    server = await RedisTestServer.start({ persistent: true });
    redis = connect({ url: server.url });
  }, 30_000);
  afterEach(async () => {
    for (const ssc of contexts.splice(0)) {
      await ssc.stop();
      await checkpointerOf(ssc)?.flush();
    }
    for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
  });
  afterAll(async () => {
    redis?.disconnect();
    await server?.stop();
  });

  /** word count from `input` into `output`, 4 entries per batch at most, checkpointed every 2 batches. */
  function pipeline(input: string, output: string, dir?: string) {
    const ssc = new StreamingContext(sc, 1000, { clock: "manual" });
    contexts.push(ssc);
    if (dir) checkpoint(ssc, dir, { interval: 2000 });
    const source = redisStream(ssc, { url: server.url, streams: input, startId: "0", count: 4, name: "words" });
    const counts = source.map((e) => [e.fields.w!, 1] as [string, number]).updateStateByKey(sum, { name: "counts" });
    saveToRedis(counts, { url: server.url, stream: output });
    return { ssc, source };
  }

  async function batch(ssc: StreamingContext, source: RedisInputDStream): Promise<void> {
    await source.sync();
    await ssc.advance(1000);
  }

  async function outBatches(stream: string): Promise<Map<number, string[]>> {
    const rows = (await redis.xrange(stream, "-", "+")) as [string, string[]][];
    const m = new Map<number, string[]>();
    for (const [id, f] of rows) {
      const t = Number(id.split("-")[0]);
      m.set(t, [...(m.get(t) ?? []), `${f[1]}=${f[3]}`]);
    }
    for (const v of m.values()) v.sort();
    return m;
  }

  it("reads from explicit IDs with a per-batch cap and writes each batch under its batch time", async () => {
    for (const w of "a b a c b a d e a b".split(" ")) await redis.xadd("in1", "*", "w", w);
    const { ssc, source } = pipeline("in1", "out1");
    await ssc.start();
    for (let i = 0; i < 3; i++) await batch(ssc, source);
    const out = await outBatches("out1");
    expect([...out.keys()]).toEqual([1000, 2000, 3000]);
    expect(out.get(1000)).toEqual(["a=2", "b=1", "c=1"]);
    expect(out.get(3000)).toEqual(["a=4", "b=3", "c=1", "d=1", "e=1"]);
    expect(source.checkpointPosition().lastIds.in1).toBe(((await redis.xrevrange("in1", "+", "-", "COUNT", 1)) as [string, string[]][])[0]![0]);
  });

  it("recovers its position from the checkpoint; a replayed batch does not duplicate the sink's output", async () => {
    for (const w of "a b a c b a d e a b c c d".split(" ")) await redis.xadd("in2", "*", "w", w);
    const dir = tmpDir();
    const first = pipeline("in2", "out2", dir);
    await first.ssc.start();
    for (let i = 0; i < 3; i++) await batch(first.ssc, first.source); // checkpoint at 2000; 3000 is written to the sink, then a crash
    await checkpointerOf(first.ssc)!.flush();
    const before = await outBatches("out2");
    await first.ssc.stop(); // abandon (no checkpoint at 3000)

    let second!: ReturnType<typeof pipeline>;
    const ssc = StreamingContext.getOrCreate(dir, () => (second = pipeline("in2", "out2", dir)).ssc);
    const report = recoveryReportOf(ssc)!;
    expect(report.checkpointTime).toBe(2000);
    expect(report.restoredPositions).toEqual(["words"]);
    await ssc.start(); // generates 3000 again from the batch-input log: the same 4 entries, already in the sink
    await batch(ssc, second.source); // 4000: the last one
    const after = await outBatches("out2");
    expect([...after.keys()]).toEqual([1000, 2000, 3000, 4000]);
    expect(after.get(3000)).toEqual(before.get(3000));
    expect(after.get(4000)).toEqual(["a=4", "b=3", "c=3", "d=2", "e=1"]);
    expect(await redis.xlen("out2")).toBe([...after.values()].reduce((n, v) => n + v.length, 0));
  });

  it("a batch rebuilt after a crash takes exactly the entries it took before; entries added while down go to later batches", async () => {
    for (const w of "a b a c b a d e a b".split(" ")) await redis.xadd("in5", "*", "w", w);
    const dir = tmpDir();
    /** The word count into `output`, plus the entry IDs each batch took, as the source gave them. */
    const run = (output: string) => {
      const p = pipeline("in5", output, dir);
      const ids = new Map<number, string[]>();
      p.source.foreachRDD((rdd, t) => void ids.set(t, rdd.collect().map((e) => e.id)), { name: "ids" });
      return { ...p, ids };
    };
    const first = run("out5");
    await first.ssc.start();
    for (let i = 0; i < 3; i++) await batch(first.ssc, first.source); // 4, 4, then 2 entries (3000 is below the cap)
    await checkpointerOf(first.ssc)!.flush();
    expect(first.ids.get(3000)).toHaveLength(2);
    await first.ssc.stop(); // a crash after 3000's output, before its checkpoint (at 4000)

    // While it is down: 3 more, which a batch taking "what is there now" would have swallowed into 3000.
    const added: string[] = [];
    for (const w of "c c z".split(" ")) added.push((await redis.xadd("in5", "*", "w", w))!);

    // The recovered run writes to a fresh stream, so its output for 3000 is really written and compared.
    let second!: ReturnType<typeof run>;
    const ssc = StreamingContext.getOrCreate(dir, () => (second = run("out5b")).ssc);
    const report = recoveryReportOf(ssc)!;
    expect(report.checkpointTime).toBe(2000);
    expect(report.replayedBatches).toEqual([3000]);
    await ssc.start(); // generates 3000 again
    await batch(ssc, second.source); // 4000
    expect(second.ids.get(3000)).toEqual(first.ids.get(3000));
    expect(second.ids.get(4000)).toEqual(added);
    const original = await outBatches("out5");
    const rebuilt = await outBatches("out5b");
    expect(rebuilt.get(3000)).toEqual(["a=4", "b=3", "c=1", "d=1", "e=1"]);
    expect(rebuilt.get(3000)).toEqual(original.get(3000));
    expect(rebuilt.get(4000)).toEqual(["a=4", "b=3", "c=3", "d=1", "e=1", "z=1"]);
    expect(second.source.checkpointPosition().lastIds.in5).toBe(added[2]);
  });

  it("two streams, two batches rebuilt after a crash: each takes exactly its entries, in the same order", async () => {
    for (let i = 0; i < 9; i++) {
      await redis.xadd("in6a", "*", "w", `a${i}`);
      await redis.xadd("in6b", "*", "w", `b${i}`);
    }
    const dir = tmpDir();
    const run = () => {
      const ssc = new StreamingContext(sc, 1000, { clock: "manual" });
      contexts.push(ssc);
      checkpoint(ssc, dir, { interval: 3000 });
      const source = redisStream(ssc, { url: server.url, streams: ["in6a", "in6b"], startId: "0", count: 2, name: "two" });
      const words = new Map<number, string[]>();
      source.foreachRDD((rdd, t) => void words.set(t, rdd.collect().map((e) => e.fields.w!)));
      // With state, the batches completed after the checkpoint run again (a stateless pipeline skips them).
      source.map((e) => [e.stream, 1] as [string, number]).updateStateByKey((vs: number[], s?: number) => vs.length + (s ?? 0), { name: "perStream" }).foreachRDD(() => {});
      return { ssc, source, words };
    };
    const first = run();
    await first.ssc.start();
    for (let i = 0; i < 5; i++) await batch(first.ssc, first.source); // checkpoint at 3000; 4000 and 5000 pending
    await checkpointerOf(first.ssc)!.flush();
    expect(first.words.get(4000)).toEqual(["a6", "a7", "b6", "b7"]);
    expect(first.words.get(5000)).toEqual(["a8", "b8"]); // below the cap: the late ones would have joined it
    await first.ssc.stop();
    for (let i = 5; i < 8; i++) await redis.xadd(i % 2 ? "in6a" : "in6b", "*", "w", `late${i}`);

    let second!: ReturnType<typeof run>;
    const ssc = StreamingContext.getOrCreate(dir, () => (second = run()).ssc);
    expect(recoveryReportOf(ssc)!.replayedBatches).toEqual([4000, 5000]);
    await ssc.start(); // 4000 and 5000 again
    await batch(ssc, second.source); // 6000: the late ones, at most 2 per stream
    expect(second.words.get(4000)).toEqual(first.words.get(4000));
    expect(second.words.get(5000)).toEqual(first.words.get(5000));
    expect(second.words.get(6000)).toEqual(["late5", "late7", "late6"]);
  });

  it("rides out a Redis server restart: the source reconnects and nothing is lost or doubled", async () => {
    const { ssc, source } = pipeline("in3", "out3");
    await ssc.start();
    for (let i = 0; i < 3; i++) await redis.xadd("in3", "*", "w", "x");
    await batch(ssc, source);
    await server.restart(); // the append-only file keeps both streams
    for (let i = 0; i < 3; i++) await redis.xadd("in3", "*", "w", "y"); // the test's own client reconnects too
    await batch(ssc, source);
    await batch(ssc, source);
    const out = await outBatches("out3");
    expect(out.get(1000)).toEqual(["x=3"]);
    expect(out.get(3000)).toEqual(["x=3", "y=3"]);
    expect(await redis.xlen("in3")).toBe(6);
  }, 60_000);

  it("as a consumer group: unacknowledged entries are read again after a crash, and acknowledged once checkpointed", async () => {
    for (const w of "a b a c b a d e a b c c d".split(" ")) await redis.xadd("in4", "*", "w", w);
    const dir = tmpDir();
    const grouped = (d: string) => {
      const ssc = new StreamingContext(sc, 1000, { clock: "manual" });
      contexts.push(ssc);
      checkpoint(ssc, d, { interval: 2000 });
      const source = redisStream(ssc, { url: server.url, streams: "in4", startId: "0", count: 4, name: "words", group: "g", consumer: "c1" });
      const counts = source.map((e) => [e.fields.w!, 1] as [string, number]).updateStateByKey(sum, { name: "counts" });
      saveToRedis(counts, { url: server.url, stream: "out4" });
      return { ssc, source };
    };
    const first = grouped(dir);
    await first.ssc.start();
    for (let i = 0; i < 3; i++) await batch(first.ssc, first.source);
    await checkpointerOf(first.ssc)!.flush();
    // All 13 were delivered (the fetcher reads ahead); the checkpoint at 2000 covers 8, so only those are acknowledged.
    expect(await first.source.pendingCount()).toBe(5);
    await first.ssc.stop(); // crash before the checkpoint at 4000

    let second!: ReturnType<typeof grouped>;
    const ssc = StreamingContext.getOrCreate(dir, () => (second = grouped(dir)).ssc);
    expect(recoveryReportOf(ssc)!.checkpointTime).toBe(2000);
    await ssc.start(); // generates 3000 again from the batch-input log, from this consumer's pending entries
    await batch(ssc, second.source); // 4000: the last new entry; checkpoint
    await checkpointerOf(ssc)!.flush();
    const out = await outBatches("out4");
    expect([...out.keys()]).toEqual([1000, 2000, 3000, 4000]);
    expect(out.get(4000)).toEqual(["a=4", "b=3", "c=3", "d=2", "e=1"]);
    expect(await second.source.pendingCount()).toBe(0);
  });
});
