// Logs benchmark: the same 2M records (10 words each) read with a stateful word count, through kafkaStream
// against kafkajs's own consumer loop, and through natsStream against a plain JetStream consumer loop. The
// brokers are started here: librdkafka's mock cluster (kcat) and nats-server with file storage, on
// 127.0.0.1, in a temporary folder. Ends with `summary: kafka X.XXx, nats X.XXx` (engine over plain loop).
import { spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { SparkContext, StreamingContext, kafkaStream, natsStream, Milliseconds, type DStream } from "../engine/index.js";
import { freePorts } from "../cli/client.js";

const RECORDS = Number(process.env.SB_LOGS_RECORDS ?? 2_000_000);
const WORDS = 10;
const DISTINCT = 10_000;
const BATCH_MS = 500;
const KCAT = process.env.KCAT ?? "kcat";
/** SB_LOGS_ONLY=kafka or nats runs one half (the summary line then shows "-" for the other). */
const ONLY = process.env.SB_LOGS_ONLY;

/** Deterministic lines: 10 words each from DISTINCT words, skewed (as the engine benchmark's). */
function* lines(): Generator<string> {
  let seed = 12345;
  const next = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  for (let i = 0; i < RECORDS; i++) {
    const words: string[] = [];
    for (let w = 0; w < WORDS; w++) words.push(`w${Math.floor(next() * next() * DISTINCT)}`);
    yield words.join(" ");
  }
}


async function until(pred: () => boolean, what: string, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Ends a broker: nats-server flushes on SIGTERM; kcat would wait for its stdin to end, so it gets SIGKILL. */
function kill(p: ChildProcess | undefined, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
  if (!p || p.exitCode !== null || p.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    p.once("exit", () => resolve());
    p.kill(signal);
  });
}

/** The word count both sides must agree on: total words and the count of the most frequent word. */
interface Counted {
  words: number;
  top: [string, number];
}

function summarize(counts: Iterable<[string, number]>): Counted {
  let words = 0;
  let top: [string, number] = ["", -1];
  for (const [w, n] of counts) {
    words += n;
    if (n > top[1] || (n === top[1] && w < top[0])) top = [w, n];
  }
  return { words, top };
}

/** The engine side: a stateful word count over `source`, until every record is in; returns seconds and the counts. */
async function engineRun(ssc: StreamingContext, source: DStream<string>): Promise<{ seconds: number; counted: Counted }> {
  let records = 0;
  let last: [string, number][] = [];
  source.foreachRDD((rdd) => void (records += rdd.count()));
  source
    .flatMap((line) => line.split(" "))
    .map((w) => [w, 1] as [string, number])
    .reduceByKey((a, b) => a + b)
    .updateStateByKey((values: number[], state?: number) => {
      let s = state ?? 0;
      for (const v of values) s += v;
      return s;
    })
    .foreachRDD((rdd) => {
      if (records >= RECORDS) last = rdd.collect();
    });
  const t0 = performance.now();
  await ssc.start();
  await until(() => records >= RECORDS && last.length > 0, "the engine to count every record", 600_000);
  const seconds = (performance.now() - t0) / 1000;
  await ssc.stop();
  return { seconds, counted: summarize(last) };
}

function countLine(counts: Map<string, number>, line: string): void {
  for (const w of line.split(" ")) counts.set(w, (counts.get(w) ?? 0) + 1);
}

// ---- Kafka --------------------------------------------------------------------------------------

async function startKafkaMock(dir: string): Promise<{ bootstrap: string; proc: ChildProcess }> {
  const log = path.join(dir, "kcat.log");
  const proc = spawn(KCAT, ["-b", "127.0.0.1:1", "-X", "test.mock.num.brokers=3", "-d", "mock", "-P", "-t", "__mock"], { stdio: ["pipe", "ignore", fs.openSync(log, "w")] });
  let bootstrap = "";
  await until(() => (bootstrap = /bootstrap\.servers=(\S+)/.exec(fs.readFileSync(log, "utf8"))?.[1] ?? "") !== "", "the mock cluster", 10_000);
  return { bootstrap, proc };
}

/**
 * librdkafka's mock cluster keeps about 5 MB per partition and drops older records: the records go to
 * TOPICS topics of 4 partitions each (50,000 records, about 3.5 MB, per partition for 2M).
 */
const TOPICS = Math.max(1, Math.ceil(RECORDS / 200_000));
const topicNames = Array.from({ length: TOPICS }, (_, i) => `bench-${i}`);

/** Produces the records with kcat (librdkafka), one kcat per partition, lines on stdin, round-robin over the partitions. */
async function produceKafka(bootstrap: string): Promise<void> {
  const targets = topicNames.flatMap((topic) => [0, 1, 2, 3].map((partition) => ({ topic, partition, lines: [] as string[] })));
  let i = 0;
  for (const line of lines()) targets[i++ % targets.length]!.lines.push(line);
  // A few at a time: each kcat is a librdkafka producer with its own threads.
  for (let k = 0; k < targets.length; k += 4) {
    await Promise.all(
      targets.slice(k, k + 4).map(async (t) => {
        const p = spawn(KCAT, ["-b", bootstrap, "-P", "-t", t.topic, "-p", String(t.partition), "-X", "linger.ms=20"], { stdio: ["pipe", "ignore", "inherit"] });
        const done = new Promise<number | null>((resolve) => p.on("exit", (code) => resolve(code)));
        p.stdin!.end(t.lines.join("\n") + "\n");
        if ((await done) !== 0) throw new Error(`kcat could not produce to ${t.topic}-${t.partition}`);
      }),
    );
  }
  const { Kafka, logLevel } = await import("kafkajs");
  const admin = new Kafka({ brokers: bootstrap.split(","), logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  try {
    let total = 0;
    for (const topic of topicNames) {
      for (const p of await admin.fetchTopicOffsets(topic)) {
        if (Number(p.low) !== 0) throw new Error(`the mock cluster dropped the first ${p.low} records of ${topic}-${p.partition} (it keeps about 5 MB per partition)`);
        total += Number(p.high);
      }
    }
    if (total !== RECORDS) throw new Error(`the topics hold ${total} records, not ${RECORDS}`);
  } finally {
    await admin.disconnect();
  }
}

async function kafkaPlain(bootstrap: string): Promise<{ seconds: number; counted: Counted }> {
  const { Kafka, logLevel } = await import("kafkajs");
  const consumer = new Kafka({ brokers: bootstrap.split(","), logLevel: logLevel.NOTHING }).consumer({ groupId: `plain-${Date.now()}` });
  await consumer.connect();
  await consumer.subscribe({ topics: topicNames, fromBeginning: true });
  const counts = new Map<string, number>();
  let records = 0;
  let t0 = 0;
  let t1 = 0;
  // The clock starts at the first batch: the group's join (seconds on the mock) is not counted against it.
  await new Promise<void>((resolve, reject) => {
    setTimeout(() => reject(new Error(`the kafkajs consumer read ${records} of ${RECORDS} records in 10 minutes`)), 600_000).unref();
    consumer
      .run({
        eachBatch: async ({ batch }) => {
          if (t0 === 0) t0 = performance.now();
          for (const m of batch.messages) {
            countLine(counts, m.value!.toString());
            records++;
          }
          if (records >= RECORDS && t1 === 0) {
            t1 = performance.now();
            resolve();
          }
        },
      })
      .catch(reject);
  });
  await consumer.disconnect();
  return { seconds: (t1 - t0) / 1000, counted: summarize(counts) };
}

// ---- NATS ---------------------------------------------------------------------------------------

async function startNats(dir: string): Promise<{ url: string; proc: ChildProcess }> {
  const [port] = await freePorts(1);
  const proc = spawn(process.env.NATS_SERVER ?? "nats-server", ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", path.join(dir, "js")], { stdio: "ignore" });
  const url = `127.0.0.1:${port}`;
  const { connect } = await import("@nats-io/transport-node");
  for (let i = 0; ; i++) {
    try {
      const nc = await connect({ servers: url });
      await nc.close();
      return { url, proc };
    } catch (e) {
      if (i > 100) throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

async function publishNats(url: string, stream: string): Promise<void> {
  const { connect } = await import("@nats-io/transport-node");
  const { jetstreamManager, StorageType } = await import("@nats-io/jetstream");
  const nc = await connect({ servers: url });
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: stream, subjects: [`${stream}.lines`], storage: StorageType.File });
  // Core publishes into the stream's subject, flushed in chunks: JetStream stores them (a JetStream publish
  // waits for an acknowledgement per message and would take minutes for 2M).
  let n = 0;
  for (const line of lines()) {
    nc.publish(`${stream}.lines`, line);
    if (++n % 5000 === 0) await nc.flush();
  }
  await nc.flush();
  for (let i = 0; i < 6000; i++) {
    if ((await jsm.streams.info(stream)).state.messages >= RECORDS) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const stored = (await jsm.streams.info(stream)).state.messages;
  await nc.close();
  if (stored !== RECORDS) throw new Error(`JetStream stored ${stored} of ${RECORDS} messages (slow consumer?); run the benchmark on a quieter machine`);
}

async function natsPlain(url: string, stream: string): Promise<{ seconds: number; counted: Counted }> {
  const { connect } = await import("@nats-io/transport-node");
  const { jetstream, DeliverPolicy } = await import("@nats-io/jetstream");
  const nc = await connect({ servers: url });
  const js = jetstream(nc);
  const counts = new Map<string, number>();
  let records = 0;
  const t0 = performance.now();
  const consumer = await js.consumers.get(stream, { deliver_policy: DeliverPolicy.All });
  while (records < RECORDS) {
    if (performance.now() - t0 > 600_000) throw new Error(`the JetStream consumer read ${records} of ${RECORDS} records in 10 minutes`);
    const batch = await consumer.fetch({ max_messages: 2000, expires: 1000 });
    for await (const m of batch) {
      countLine(counts, m.string());
      records++;
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  await nc.close();
  return { seconds, counted: summarize(counts) };
}

// ---- the run ------------------------------------------------------------------------------------

function rate(seconds: number): string {
  return `${((RECORDS / seconds) / 1000).toFixed(1).padStart(7)} k records/s  (${seconds.toFixed(2)} s)`;
}

function same(a: Counted, b: Counted): void {
  if (a.words !== b.words || a.top[0] !== b.top[0] || a.top[1] !== b.top[1]) {
    throw new Error(`the two counts differ: ${JSON.stringify(a)} vs ${JSON.stringify(b)}`);
  }
}

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sb-bench-logs-"));
  let kafkaProc: ChildProcess | undefined;
  let natsProc: ChildProcess | undefined;
  try {
    console.log(`logs benchmark: ${RECORDS.toLocaleString("en")} records x ${WORDS} words (${DISTINCT.toLocaleString("en")} distinct), stateful word count, ${BATCH_MS} ms batches`);
    let kRatio: number | undefined;
    let nRatio: number | undefined;
    if (ONLY !== "nats") {
      const kafka = await startKafkaMock(dir);
      kafkaProc = kafka.proc;
      const t = performance.now();
      await produceKafka(kafka.bootstrap);
      console.log(`kafka: librdkafka's mock cluster (3 brokers, ${TOPICS} topics of 4 partitions), kafkajs; produced with kcat in ${((performance.now() - t) / 1000).toFixed(1)} s`);
      const kPlain = await kafkaPlain(kafka.bootstrap);
      console.log(`  kafkajs consumer loop (eachBatch)   ${rate(kPlain.seconds)}  clock from its first batch (group join excluded)`);
      const kssc = new StreamingContext(new SparkContext(), Milliseconds(BATCH_MS));
      const kEngine = await engineRun(kssc, kafkaStream(kssc, { brokers: kafka.bootstrap, topics: topicNames, startingOffsets: "earliest" }).map((r) => r.value ?? ""));
      same(kEngine.counted, kPlain.counted);
      kRatio = kPlain.seconds / kEngine.seconds;
      console.log(`  kafkaStream -> updateStateByKey     ${rate(kEngine.seconds)}  ${kRatio.toFixed(2)}x the loop (goal >= 0.8x)`);
      await kill(kafkaProc, "SIGKILL");
      kafkaProc = undefined;
    }
    if (ONLY !== "kafka") {
      const nats = await startNats(dir);
      natsProc = nats.proc;
      const t = performance.now();
      await publishNats(nats.url, "BENCH");
      console.log(`nats: nats-server (JetStream, file storage), @nats-io/jetstream; published in ${((performance.now() - t) / 1000).toFixed(1)} s`);
      const nPlain = await natsPlain(nats.url, "BENCH");
      console.log(`  JetStream consumer loop (fetch)     ${rate(nPlain.seconds)}`);
      const nssc = new StreamingContext(new SparkContext(), Milliseconds(BATCH_MS));
      const nEngine = await engineRun(nssc, natsStream(nssc, { servers: nats.url, stream: "BENCH", start: "first" }).map((r) => r.data));
      same(nEngine.counted, nPlain.counted);
      nRatio = nPlain.seconds / nEngine.seconds;
      console.log(`  natsStream -> updateStateByKey      ${rate(nEngine.seconds)}  ${nRatio.toFixed(2)}x the loop (goal >= 0.8x)`);
    }
    const show = (r: number | undefined) => (r === undefined ? "-" : `${r.toFixed(2)}x`);
    console.log(`summary: kafka ${show(kRatio)}, nats ${show(nRatio)}`);
  } finally {
    await kill(kafkaProc, "SIGKILL");
    await kill(natsProc);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);
