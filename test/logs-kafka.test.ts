// kafkaStream and saveToKafka against librdkafka's mock cluster (hosted by kcat, see test/support/kafka-mock.ts),
// on the manual clock, batch by batch: offset ranges per partition, the RDD's partitions, rate limits and
// backpressure, starting offsets and group commits, new topics of a pattern, bad input, a broker that is
// not there at first, the idempotent sink under replays, and partition assignment.
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SparkContext, StreamingContext, kafkaStream, saveToKafka, KafkaTopicNotFoundError, type BatchInfo, type KafkaRecord } from "../engine/index.js";
import type { KafkaRDD } from "../engine/sources/kafka.js";
import { natsStream, GroupUnsupportedError } from "../engine/index.js";
import { planGroup } from "../engine/group/plan.js";
import { KafkaMockCluster, kcatAvailable } from "./support/kafka-mock.js";
import { freePort } from "./support/ports.js";

let kafka: KafkaMockCluster;
let work: string;

beforeAll(async () => {
  kafka = await KafkaMockCluster.start();
  work = fs.mkdtempSync(path.join(os.tmpdir(), "sb-kafka-"));
}, 30_000);

afterAll(async () => {
  await kafka?.stop();
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

/** A manual-clock context that records each batch's info and every source error. */
function context(options: { backpressure?: boolean } = {}) {
  const ssc = new StreamingContext(new SparkContext(), 1000, { clock: "manual", ...options });
  const batches: BatchInfo[] = [];
  const errors: string[] = [];
  ssc.addStreamingListener({
    onBatchCompleted: ({ batchInfo }) => void batches.push(batchInfo),
    onReceiverError: ({ receiverInfo }) => void errors.push(receiverInfo.lastErrorMessage ?? ""),
  });
  return { ssc, batches, errors };
}

/** Waits (bounded) until `pred` holds. */
async function until(pred: () => boolean, what: string, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe.skipIf(!kcatAvailable())("kafkaStream against librdkafka's mock cluster", () => {
  it("each batch is an offset range per partition; records carry their fields; the RDD's partitions are the Kafka partitions", async () => {
    await kafka.createTopics("k1");
    await kafka.produce("k1", Array.from({ length: 8 }, (_, i) => ({ key: `k${i}`, value: `v${i}`, partition: i % 4, headers: { h: `x${i}` } })));
    const { ssc, batches } = context();
    const stream = kafkaStream(ssc, { brokers: kafka.bootstrap, topics: "k1", startingOffsets: "earliest", maxRatePerPartition: 1 });
    const seen: { parts: KafkaRecord[][]; ranges: unknown }[] = [];
    stream.foreachRDD((rdd) => {
      seen.push({ parts: rdd.glom().collect() as KafkaRecord[][], ranges: (rdd as KafkaRDD).offsetRanges });
    });
    await ssc.start();
    try {
      await stream.sync();
      await ssc.advance(1000);
      await ssc.advance(1000);
      await ssc.advance(1000);
    } finally {
      await ssc.stop();
    }
    // Batch 1: offset 0 of each partition, one RDD partition per Kafka partition, in partition order.
    expect(seen[0]!.parts.map((p) => p.map((r) => r.value))).toEqual([["v0"], ["v1"], ["v2"], ["v3"]]);
    const r0 = seen[0]!.parts[2]![0]!;
    expect(r0).toMatchObject({ topic: "k1", partition: 2, offset: 0, key: "k2", value: "v2", headers: { h: "x2" } });
    expect(Math.abs(r0.timestamp - Date.now())).toBeLessThan(10 * 60_000);
    expect(seen[0]!.ranges).toEqual([0, 1, 2, 3].map((p) => ({ topic: "k1", partition: p, fromOffset: 0, untilOffset: 1 })));
    expect(seen[1]!.parts.map((p) => p.map((r) => r.value))).toEqual([["v4"], ["v5"], ["v6"], ["v7"]]);
    expect(seen[2]!.parts.map((p) => p.length)).toEqual([0, 0, 0, 0]);
    // The listener events carry what each partition gave each batch, and the lag behind the log's end.
    const info = (b: BatchInfo) => b.streamIdToInputInfo![stream.id]!;
    expect(info(batches[0]!).partitions).toEqual([0, 1, 2, 3].map((p) => ({ partition: `k1-${p}`, from: 0, until: 1, count: 1, lag: 1 })));
    expect(info(batches[1]!).partitions!.map((p) => [p.from, p.until, p.lag])).toEqual([[1, 2, 0], [1, 2, 0], [1, 2, 0], [1, 2, 0]]);
    expect(info(batches[1]!).metadata!.Description).toContain("topic: k1\tpartition: 0\toffsets: 1 to 2");
    expect(batches.map((b) => b.numRecords)).toEqual([4, 4, 0]);
  }, 60_000);

  it("maxRatePerPartition bounds each batch; so does backpressure, to the rate batches are processed at", async () => {
    await kafka.createTopics("k2");
    await kafka.produce("k2", Array.from({ length: 4000 }, (_, i) => ({ value: `r${i}`, partition: i % 4 })));
    {
      const { ssc, batches } = context();
      const stream = kafkaStream(ssc, { brokers: kafka.bootstrap, topics: "k2", startingOffsets: "earliest", maxRatePerPartition: 7 });
      stream.count().foreachRDD(() => {});
      await ssc.start();
      try {
        for (let i = 0; i < 3; i++) {
          await stream.sync();
          await ssc.advance(1000);
        }
      } finally {
        await ssc.stop();
      }
      expect(batches.map((b) => b.streamIdToInputInfo![stream.id]!.partitions!.map((p) => p.count))).toEqual([
        [7, 7, 7, 7],
        [7, 7, 7, 7],
        [7, 7, 7, 7],
      ]);
    }
    {
      // Processing takes 1 ms per record, about 1000 records/s: the PID estimator learns that rate.
      const { ssc, batches } = context({ backpressure: true });
      const stream = kafkaStream(ssc, { brokers: kafka.bootstrap, topics: "k2", startingOffsets: "earliest", initialRate: 40 });
      stream.foreachRDD(async (rdd) => {
        await new Promise((r) => setTimeout(r, rdd.count()));
      });
      await ssc.start();
      const rates: (number | undefined)[] = [];
      try {
        for (let i = 0; i < 4; i++) {
          await stream.sync();
          rates.push(stream.rateController!.getLatestRate());
          await ssc.advance(1000);
        }
      } finally {
        await ssc.stop();
      }
      const counts = batches.map((b) => b.numRecords);
      // The first batches take the initial rate (10 a partition); later ones at most the estimate (plus the
      // floor of one record a partition), never the 4000 waiting.
      expect(counts[0]).toBe(40);
      for (let i = 0; i < counts.length; i++) {
        if (rates[i] !== undefined) expect(counts[i]).toBeLessThanOrEqual(Math.floor(rates[i]!) + 4);
        expect(counts[i]).toBeLessThan(4000);
      }
      expect(rates.some((r) => r !== undefined)).toBe(true);
    }
  }, 60_000);

  it("starts at explicit, earliest or latest offsets, commits to its groupId, and a new stream of that group resumes there", async () => {
    await kafka.createTopics("k3");
    await kafka.produce("k3", Array.from({ length: 20 }, (_, i) => ({ value: `a${i}`, partition: i % 4 })));
    const read = async (options: Parameters<typeof kafkaStream>[1], produce?: () => Promise<void>) => {
      const { ssc } = context();
      const stream = kafkaStream(ssc, options);
      const got: string[] = [];
      stream.foreachRDD((rdd) => void got.push(...rdd.collect().map((r) => `${r.partition}:${r.offset}`)));
      await ssc.start();
      try {
        await produce?.();
        await stream.sync();
        await ssc.advance(1000);
        await stream.committed();
      } finally {
        await ssc.stop();
      }
      return got;
    };
    // Partition 0 from offset 3, partition 1 from the earliest, the others (unlisted) from the latest.
    const got = await read({ brokers: kafka.bootstrap, topics: "k3", startingOffsets: { k3: { 0: 3, 1: -2 } }, groupId: "g3" });
    expect(got).toEqual(["0:3", "0:4", "1:0", "1:1", "1:2", "1:3", "1:4"]);
    // The group's committed offsets, as Kafka's own tools see them.
    const { Kafka, logLevel } = await import("kafkajs");
    const admin = new Kafka({ brokers: kafka.brokers, logLevel: logLevel.NOTHING }).admin();
    await admin.connect();
    try {
      const committed = await admin.fetchOffsets({ groupId: "g3", topics: ["k3"] });
      expect(committed[0]!.partitions.map((p) => [p.partition, p.offset]).sort()).toEqual([
        [0, "5"],
        [1, "5"],
        [2, "5"],
        [3, "5"],
      ]);
    } finally {
      await admin.disconnect();
    }
    // Without a checkpoint, a stream of the same group starts at the committed offsets, whatever startingOffsets says.
    const again = await read({ brokers: kafka.bootstrap, topics: "k3", startingOffsets: "earliest", groupId: "g3" }, () =>
      kafka.produce("k3", [{ value: "late", partition: 2 }]),
    );
    expect(again).toEqual(["2:5"]);
    // "latest" reads only what arrives after the start.
    const latest = await read({ brokers: kafka.bootstrap, topics: "k3", startingOffsets: "latest" }, () => kafka.produce("k3", [{ value: "later", partition: 1 }]));
    expect(latest).toEqual(["1:5"]);
  }, 60_000);

  it("a topic pattern picks up a topic created while it runs, from its earliest offset", async () => {
    await kafka.createTopics("pat-a");
    await kafka.produce("pat-a", [{ value: "a0", partition: 0 }]);
    const { ssc } = context();
    const stream = kafkaStream(ssc, { brokers: kafka.bootstrap, topics: /^pat-/, startingOffsets: "earliest", discoveryIntervalMs: 100 });
    const got: string[][] = [];
    stream.foreachRDD((rdd) => void got.push(rdd.collect().map((r) => `${r.topic}-${r.partition}:${r.value}`)));
    await ssc.start();
    try {
      await stream.sync();
      await ssc.advance(1000);
      await kafka.produce("pat-b", [
        { value: "b0", partition: 3 },
        { value: "b1", partition: 3 },
      ]);
      await until(() => stream.partitions().includes("pat-b-3"), "the new topic's partitions");
      await stream.sync();
      await ssc.advance(1000);
    } finally {
      await ssc.stop();
    }
    expect(got).toEqual([["pat-a-0:a0"], ["pat-b-3:b0", "pat-b-3:b1"]]);
    expect(stream.partitions()).toEqual([...[0, 1, 2, 3].map((p) => `pat-a-${p}`), ...[0, 1, 2, 3].map((p) => `pat-b-${p}`)]);
  }, 60_000);

  it("an unknown topic is a clear error; malformed UTF-8 and oversized records are reported and skipped", async () => {
    {
      const { ssc, errors } = context();
      kafkaStream(ssc, { brokers: kafka.bootstrap, topics: ["k5", "no-such-topic"] }).count().foreachRDD(() => {});
      await kafka.createTopics("k5");
      await ssc.start();
      await expect(ssc.awaitTerminationOrTimeout(5000)).rejects.toThrow(KafkaTopicNotFoundError);
      await expect(ssc.awaitTerminationOrTimeout(0)).rejects.toThrow(/topic "no-such-topic" does not exist on .*create it first or fix the name/);
      expect(errors.join("\n")).toContain('KafkaTopicNotFoundError: topic "no-such-topic" does not exist');
      await ssc.stop();
    }
    await kafka.produce("k5", [
      { value: "ok-1", partition: 0 },
      { value: Buffer.from([0x61, 0xff, 0xfe]), partition: 0 },
      { value: "ok-2", partition: 0 },
      { value: "x".repeat(4096), partition: 0 },
      { value: "ok-3", partition: 0 },
    ]);
    const { ssc, errors, batches } = context();
    const stream = kafkaStream(ssc, { brokers: kafka.bootstrap, topics: "k5", startingOffsets: "earliest", maxMessageBytes: 1024 });
    const bytes = kafkaStream(ssc, { brokers: kafka.bootstrap, topics: "k5", startingOffsets: "earliest", bytes: true });
    const got: string[] = [];
    const raw: number[] = [];
    stream.foreachRDD((rdd) => void got.push(...rdd.collect().map((r) => `${r.offset}:${r.value}`)));
    bytes.foreachRDD((rdd) => void raw.push(...rdd.collect().map((r) => (r.value as Buffer).length)));
    await ssc.start();
    try {
      await stream.sync();
      await bytes.sync();
      await ssc.advance(1000);
    } finally {
      await ssc.stop();
    }
    expect(got).toEqual(["0:ok-1", "2:ok-2", "4:ok-3"]);
    expect(errors.some((e) => /skipped the record at k5-0@1: its value is not valid UTF-8/.test(e))).toBe(true);
    expect(errors.some((e) => /skipped the record at k5-0@3: 4096 bytes is more than maxMessageBytes \(1024\)/.test(e))).toBe(true);
    expect(stream.skippedRecords).toBe(2);
    // The skipped records are inside the batch's range: a replay skips them again, and nothing after them is lost.
    expect(batches[0]!.streamIdToInputInfo![stream.id]!.partitions![0]).toMatchObject({ from: 0, until: 5, count: 3 });
    // Asked for bytes, every record comes as it is.
    expect(raw).toEqual([4, 3, 4, 4096, 4]);
  }, 60_000);

  it("a wrong broker address is reported and retried; once a broker answers there, everything is read", async () => {
    await kafka.createTopics("k6");
    await kafka.produce("k6", Array.from({ length: 12 }, (_, i) => ({ value: `z${i}`, partition: i % 4 })));
    const port = await freePort();
    const { ssc, errors } = context();
    const stream = kafkaStream(ssc, { brokers: `127.0.0.1:${port}`, topics: "k6", startingOffsets: "earliest" });
    const got: string[] = [];
    stream.foreachRDD((rdd) => void got.push(...rdd.collect().map((r) => String(r.value))));
    let proxy: net.Server | undefined;
    await ssc.start();
    try {
      await until(() => errors.length >= 2, "two reported connection failures");
      expect(errors[0]).toMatch(/kafkaStream k6: KafkaJS\w*: .*ECONNREFUSED.*; retrying in \d+ ms/);
      // The batches meanwhile are empty, and the context runs on.
      await ssc.advance(1000);
      expect(got).toEqual([]);
      // A bootstrap broker appears at that address (a TCP relay to the mock); metadata then names the real brokers.
      const [host, target] = kafka.brokers[0]!.split(":") as [string, string];
      proxy = net.createServer((c) => {
        const up = net.connect(Number(target), host);
        c.pipe(up).pipe(c);
        c.on("error", () => up.destroy());
        up.on("error", () => c.destroy());
      });
      await new Promise<void>((r) => proxy!.listen(port, "127.0.0.1", () => r()));
      await stream.sync(20_000);
      await ssc.advance(1000);
    } finally {
      await ssc.stop();
      proxy?.close();
    }
    expect(got.sort()).toEqual(Array.from({ length: 12 }, (_, i) => `z${i}`).sort());
  }, 60_000);

  it("saveToKafka writes each record once: a batch written again adds nothing, a half-written batch is completed", async () => {
    await kafka.createTopics("k7-out");
    const batches = [
      [["alpha", 1], ["beta", 2], ["gamma", 3], ["delta", 4], ["epsilon", 5]],
      [["alpha", 6], ["beta", 7], ["zeta", 8]],
      [["eta", 9], ["theta", 10], ["iota", 11], ["kappa", 12]],
    ] as [string, number][][];
    const run = async (upTo: number) => {
      const { ssc } = context();
      saveToKafka(ssc.queueStream(batches.slice(0, upTo).map((b) => b.slice())), { brokers: kafka.bootstrap, topic: "k7-out" });
      await ssc.start();
      try {
        await ssc.advance(upTo * 1000);
      } finally {
        await ssc.stop();
      }
    };
    await run(1);
    // A crashed attempt at batch 2000 wrote its first record (index 0, alpha) where the sink puts it.
    const { Partitioners } = await import("kafkajs");
    const part = Partitioners.DefaultPartitioner();
    const meta = [0, 1, 2, 3].map((p) => ({ partitionId: p, leader: 1, partitionErrorCode: 0, replicas: [], isr: [] }));
    const partition = part({
      topic: "k7-out",
      partitionMetadata: meta,
      message: { key: "alpha", value: "6" },
    });
    await kafka.produce("k7-out", [{ key: "alpha", value: "6", partition, headers: { "streambook-batch": "2000", "streambook-index": "0" } }]);
    // The program starts again from scratch: batches 1000 and 2000 are generated again, 3000 is new.
    await run(3);
    const lines = await kafka.consumeAll("k7-out");
    const records = lines.map((l) => {
      const [p, , key, value, headers] = l.split(" ");
      return { p: Number(p), key, value, headers };
    });
    expect(records.length).toBe(12);
    expect(records.map((r) => `${r.key}=${r.value}`).sort()).toEqual(batches.flat().map(([k, v]) => `${k}=${v}`).sort());
    // Keyed records go where Kafka's default partitioner puts them (murmur2 of the key), every time.
    for (const r of records) {
      expect(r.p).toBe(part({ topic: "k7-out", partitionMetadata: meta, message: { key: r.key!, value: "" } }));
      expect(r.headers).toMatch(/streambook-batch=\d+000,streambook-index=\d+/);
    }
  }, 60_000);

  it("reads only its assigned partitions and leaves the others' positions as they were", async () => {
    await kafka.createTopics("k8");
    await kafka.produce("k8", Array.from({ length: 12 }, (_, i) => ({ value: `p${i % 4}-${Math.floor(i / 4)}`, partition: i % 4 })));
    const { ssc } = context();
    const stream = kafkaStream(ssc, { brokers: kafka.bootstrap, topics: "k8", startingOffsets: "earliest" });
    const got: string[][] = [];
    stream.foreachRDD((rdd) => void got.push(rdd.collect().map((r) => String(r.value))));
    stream.assignPartitions(["k8-0", "k8-2"]);
    await ssc.start();
    try {
      await stream.sync();
      await ssc.advance(1000);
      expect(stream.assignedPartitions()).toEqual(["k8-0", "k8-2"]);
      expect(stream.checkpointPosition().positions).toEqual({ "k8-0": 3, "k8-1": 0, "k8-2": 3, "k8-3": 0 });
      stream.assignPartitions(undefined);
      await stream.sync();
      await ssc.advance(1000);
    } finally {
      await ssc.stop();
    }
    expect(got).toEqual([
      ["p0-0", "p0-1", "p0-2", "p2-0", "p2-1", "p2-2"],
      ["p1-0", "p1-1", "p1-2", "p3-0", "p3-1", "p3-2"],
    ]);
    expect(stream.partitionStatus().map((p) => [p.partition, p.position, p.lag])).toEqual([
      ["k8-0", 3, 0],
      ["k8-1", 3, 0],
      ["k8-2", 3, 0],
      ["k8-3", 3, 0],
    ]);
  }, 60_000);

  it("a group (issue 10) refuses a Kafka or JetStream input with a clear error: groups run over Redis Streams only", () => {
    for (const make of [
      (ssc: StreamingContext) => kafkaStream(ssc, { brokers: kafka.brokers.join(","), topics: "k9" }),
      (ssc: StreamingContext) => natsStream(ssc, { servers: "nats://127.0.0.1:1", stream: "S" }),
    ]) {
      const ssc = new StreamingContext(new SparkContext(), 1000, { clock: "manual", group: false });
      make(ssc).map((r) => [String(r), 1] as [string, number]).reduceByKey((a, b) => a + b).foreachRDD(() => {});
      expect(() => planGroup(ssc)).toThrow(GroupUnsupportedError);
      expect(() => planGroup(ssc)).toThrow(/is a partitioned log, but groups run over Redis Streams only; run it in a single-process context/);
    }
  });

  it("a logged start with no partitions yet (a run killed before it listed them) leaves startingOffsets in force", async () => {
    await kafka.createTopics("k10");
    await kafka.produce("k10", [{ value: "before", partition: 0 }]);
    const { ssc } = context();
    const stream = kafkaStream(ssc, { brokers: kafka.bootstrap, topics: "k10", startingOffsets: "latest" });
    // What the batch log's start record holds for a stream that had not listed its partitions yet.
    stream.restorePosition({ positions: {} });
    const got: string[] = [];
    stream.foreachRDD((rdd) => void got.push(...rdd.collect().map((r) => String(r.value))));
    await ssc.start();
    try {
      await stream.sync(20_000);
      await kafka.produce("k10", [{ value: "after", partition: 1 }]);
      await stream.sync(20_000);
      await ssc.advance(1000);
    } finally {
      await ssc.stop();
    }
    expect(got).toEqual(["after"]);
  }, 60_000);
});
