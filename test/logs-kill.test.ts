// Kill and recover over Kafka (librdkafka's mock cluster, hosted by kcat) and NATS JetStream (a real
// nats-server): a stateful word count reads the log, writes each batch's state to text files and to the
// log's own sink (saveToKafka, saveToNats), and is SIGKILLed at 10 points, once as a plain Node program
// (test/fixtures/recovery-logs.js) and once as cells of a real kernel; each time getOrCreate recovers it.
// Every batch's output must equal an uninterrupted run's, and the sink's topic or stream must hold every
// record exactly once, in the same places.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { KernelSpec } from "../cli/client.js";
import { KafkaMockCluster, kcatAvailable } from "./support/kafka-mock.js";
import { NatsTestServer, natsServerAvailable } from "./support/nats-server.js";
import { killRepeatedly, mulberry32, runOnce } from "./fixtures/recovery-harness.js";
import { builtKernelSpec, runCellsAndKill, runCellsToEnd } from "./fixtures/kernel-harness.js";

const ROOT = path.resolve(__dirname, "..");
const DIST = path.join(ROOT, "dist");
const FIXTURE = path.resolve(__dirname, "fixtures", "recovery-logs.js");
const BATCHES = 30;
const KILLS = 10;
const DELAY_MS = 30;
/** Kafka: 4 partitions (the mock's default) x 10 records a batch; JetStream: one partition of 40. */
const KAFKA_PER_PARTITION = 10;
const NATS_PER_PARTITION = 40;
const RECORDS = BATCHES * 40;

type Kind = "kafka" | "nats";

let work: string;
let kafka: KafkaMockCluster;
let nats: NatsTestServer;
let spec: KernelSpec;

/** The same lines every run: 6 words each, skewed, about 100 distinct. */
function lines(): string[] {
  const rng = mulberry32(21);
  return Array.from({ length: RECORDS }, () => Array.from({ length: 6 }, () => `w${Math.floor(rng() * rng() * 100)}`).join(" "));
}

async function natsClient() {
  const { connect } = await import("@nats-io/transport-node");
  const { jetstream, jetstreamManager } = await import("@nats-io/jetstream");
  const nc = await connect({ servers: nats.url });
  return { nc, js: jetstream(nc), jsm: await jetstreamManager(nc) };
}

/** Creates a run's input (staged with every line) and output (empty) logs. */
async function stageLogs(kind: Kind, name: string): Promise<void> {
  if (kind === "kafka") {
    await kafka.createTopics(`${name}-in`, `${name}-out`);
    await kafka.produce(`${name}-in`, lines().map((value, i) => ({ value, partition: i % 4 })));
    return;
  }
  const { nc, js, jsm } = await natsClient();
  const { StorageType } = await import("@nats-io/jetstream");
  try {
    await jsm.streams.add({ name: `${name}-in`, subjects: [`${name}.in`], storage: StorageType.File });
    await jsm.streams.add({ name: `${name}-out`, subjects: [`${name}.out`], storage: StorageType.File });
    const all = lines();
    for (let i = 0; i < all.length; i += 200) await Promise.all(all.slice(i, i + 200).map((l) => js.publish(`${name}.in`, l)));
  } finally {
    await nc.close();
  }
}

/** The sink's output: Kafka records per partition in offset order; JetStream messages in sequence order with their ids. */
async function sinkOutput(kind: Kind, name: string): Promise<string[]> {
  if (kind === "kafka") return (await kafka.consumeAll(`${name}-out`)).map((l) => l.replace(/^(\d+) \d+ /, "$1 "));
  const { nc, js, jsm } = await natsClient();
  const { DeliverPolicy } = await import("@nats-io/jetstream");
  try {
    const total = (await jsm.streams.info(`${name}-out`)).state.messages;
    const consumer = await js.consumers.get(`${name}-out`, { deliver_policy: DeliverPolicy.All });
    const out: string[] = [];
    for (let round = 0; out.length < total && round < 1000; round++) {
      const batch = await consumer.fetch({ max_messages: Math.min(1000, total - out.length), expires: 1000 });
      // The id without its subject (each run has its own): "<batch time>:<index>".
      for await (const m of batch) out.push(`${(m.headers?.get("Nats-Msg-Id") ?? "?").replace(/^.*:(\d+:\d+)$/, "$1")} ${m.string()}`);
    }
    return out;
  } finally {
    await nc.close();
  }
}

interface Run {
  name: string;
  base: string;
  ckpt: string;
  out: string;
}

function makeRun(name: string): Run {
  const base = path.join(work, name);
  const run = { name, base, ckpt: path.join(base, "ckpt"), out: path.join(base, "out") };
  fs.mkdirSync(run.out, { recursive: true });
  return run;
}

function servers(kind: Kind): string {
  return kind === "kafka" ? kafka.bootstrap : nats.url;
}

function programArgs(kind: Kind, run: Run): string[] {
  const [input, output] = kind === "kafka" ? [`${run.name}-in`, `${run.name}-out`] : [`${run.name}-in`, `${run.name}.out`];
  const per = kind === "kafka" ? KAFKA_PER_PARTITION : NATS_PER_PARTITION;
  return [FIXTURE, kind, servers(kind), run.ckpt, input, output, run.out, String(BATCHES), String(per), String(DELAY_MS)];
}

/** The same pipeline as the fixture program, as two notebook cells: define-or-recover, then drive the batches. */
function kernelCells(kind: Kind, run: Run): [string, string] {
  const dirs = JSON.stringify({ ckpt: run.ckpt, out: run.out });
  const source =
    kind === "kafka"
      ? `kafkaStream(ctx, { brokers: ${JSON.stringify(kafka.bootstrap)}, topics: ${JSON.stringify(`${run.name}-in`)}, startingOffsets: "earliest", maxRatePerPartition: ${KAFKA_PER_PARTITION}, name: "log" })`
      : `natsStream(ctx, { servers: ${JSON.stringify(nats.url)}, stream: ${JSON.stringify(`${run.name}-in`)}, start: "first", maxRatePerPartition: ${NATS_PER_PARTITION}, name: "log" })`;
  const line = kind === "kafka" ? "r.value ?? \"\"" : "r.data";
  const sink =
    kind === "kafka"
      ? `saveToKafka(counts, { brokers: ${JSON.stringify(kafka.bootstrap)}, topic: ${JSON.stringify(`${run.name}-out`)} });`
      : `saveToNats(counts, { servers: ${JSON.stringify(nats.url)}, subject: ${JSON.stringify(`${run.name}.out`)} });`;
  // Type checking is the kernel's own business, tested elsewhere; off here, each of the 11 kernels starts faster.
  const define = `//% typecheck off
import * as path from "node:path";
const dirs = ${dirs};
let source: { sync(): Promise<void> } | undefined;
function setup(): StreamingContext {
  const ctx = new StreamingContext(sc, 1000, { clock: "manual" });
  ctx.checkpoint(dirs.ckpt, { interval: 1000 });
  const s = ${source};
  source = s;
  const counts = s
    .map((r) => ${line})
    .flatMap((l) => l.split(" "))
    .filter((w) => w.length > 0)
    .map((w) => [w, 1] as [string, number])
    .reduceByKey((a, b) => a + b)
    .updateStateByKey((values: number[], last?: number) => values.reduce((a, b) => a + b, 0) + (last ?? 0), { name: "counts" });
  counts.saveAsTextFiles(path.join(dirs.out, "counts"));
  ${sink}
  return ctx;
}
const job = StreamingContext.getOrCreate(dirs.ckpt, setup);
console.log(job.recoveryReport ? \`recovered \${job.recoveryReport.checkpointTime}\` : "fresh");
`;
  const drive = `//% typecheck off
await job.start();
while (job.now() < ${BATCHES * 1000}) {
  await source!.sync();
  await job.advance(1000);
  await new Promise((resolve) => setTimeout(resolve, ${DELAY_MS})); // room for a kill between batches
}
await job.stop();
console.log("DONE");
`;
  return [define, drive];
}

function outputOf(out: string, batch: number): string[] {
  const dir = path.join(out, `counts-${batch * 1000}`);
  const parts = fs.readdirSync(dir).filter((n) => n.startsWith("part-"));
  return parts.flatMap((p) => fs.readFileSync(path.join(dir, p), "utf8").split("\n").filter((l) => l.length > 0)).sort();
}

function highestOutput(out: string): number {
  let max = 0;
  for (const n of fs.readdirSync(out)) {
    const m = /^counts-(\d+)$/.exec(n);
    if (m) max = Math.max(max, Number(m[1]) / 1000);
  }
  return max;
}

/** Every batch's text output and the sink's whole output must equal the reference run's. */
async function expectSameAsReference(kind: Kind, reference: Run, victim: Run): Promise<void> {
  const differing: number[] = [];
  for (let b = 1; b <= BATCHES; b++) if (JSON.stringify(outputOf(victim.out, b)) !== JSON.stringify(outputOf(reference.out, b))) differing.push(b);
  expect(differing, "batches whose output differs from the uninterrupted run's").toEqual([]);
  const expected = await sinkOutput(kind, reference.name);
  // Every batch's state went to the sink: about 100 keys after the first few batches, 30 batches.
  expect(expected.length).toBeGreaterThan(BATCHES * 50);
  const got = await sinkOutput(kind, victim.name);
  expect(got.length, "records in the sink (a replayed batch must add none)").toBe(expected.length);
  expect(got).toEqual(expected);
}

// Promises, so the tests (run concurrently) share one reference run per log.
const references = new Map<Kind, Promise<Run>>();

/** The uninterrupted run each kind's victims are compared with (a plain program, run once). */
function reference(kind: Kind): Promise<Run> {
  let have = references.get(kind);
  if (!have) {
    have = (async () => {
      const run = makeRun(`${kind}-reference`);
      await stageLogs(kind, run.name);
      const ref = await runOnce(programArgs(kind, run), DIST, undefined);
      expect(ref.stderr).toBe("");
      expect(ref.lines.at(-1)).toBe("DONE");
      return run;
    })();
    references.set(kind, have);
  }
  return have;
}

beforeAll(async () => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), "sb-kill-logs-"));
  spec = builtKernelSpec();
  [kafka, nats] = await Promise.all([KafkaMockCluster.start(), NatsTestServer.start()]);
}, 60_000);

afterAll(async () => {
  await Promise.all([kafka?.stop(), nats?.stop()]);
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

// Concurrent: each test has its own topics or streams, and most of its time is spent waiting on kernels and batches.
describe.skipIf(!kcatAvailable() || !natsServerAvailable())("kill and recover over Kafka and JetStream", { concurrent: true }, () => {
  for (const kind of ["kafka", "nats"] as const) {
    it(`${kind}: a plain Node program SIGKILLed at ${KILLS} points equals an uninterrupted run, batch for batch and in its sink`, async () => {
      const ref = await reference(kind);
      const victim = makeRun(`${kind}-victim`);
      await stageLogs(kind, victim.name);
      const log = await killRepeatedly(programArgs(kind, victim), DIST, { kills: KILLS, batches: BATCHES, delayMs: DELAY_MS, seed: kind === "kafka" ? 31 : 37 });
      if (process.env.SB_KILL_LOG) console.log(log.join("\n"));
      const last = await runOnce(programArgs(kind, victim), DIST, undefined);
      expect(last.stderr).toBe("");
      expect(last.lines.at(-1)).toBe("DONE");
      expect(log.filter((l) => l.includes("-> recovered")).length).toBeGreaterThanOrEqual(KILLS / 2);
      await expectSameAsReference(kind, ref, victim);
    }, 120_000);

    it(`${kind}: a kernel SIGKILLed at ${KILLS} points and recovered with getOrCreate in a new kernel equals an uninterrupted run`, async () => {
      const ref = await reference(kind);
      const victim = makeRun(`${kind}-kernel`);
      await stageLogs(kind, victim.name);
      const cells = kernelCells(kind, victim);
      const rng = mulberry32(kind === "kafka" ? 41 : 43);
      const log: string[] = [];
      let progress = 0;
      const t0 = Date.now();
      for (let i = 0; i < KILLS; i++) {
        // After the next batch's output or the one after; at once, or a moment later (mid-batch, mid-checkpoint).
        const killAt = progress + 1 + Math.floor(rng() * 2);
        const delayMs = i % 2 === 0 ? 0 : Math.floor(rng() * DELAY_MS * 1.5);
        const said = await runCellsAndKill(spec, victim.base, cells, path.join(victim.out, `counts-${killAt * 1000}`), delayMs);
        progress = highestOutput(victim.out);
        expect(progress).toBeGreaterThanOrEqual(killAt);
        expect(progress).toBeLessThan(BATCHES);
        log.push(`kill ${i}: after batch ${killAt} + ${delayMs} ms; began ${said.trim()}; outputs up to ${progress} (${Date.now() - t0} ms)`);
      }
      const [began, drove] = await runCellsToEnd(spec, victim.base, cells);
      expect(drove).toContain("DONE");
      log.push(`last: began ${began!.trim()}`);
      if (process.env.SB_KILL_LOG) console.log(log.join("\n"));
      expect(log.filter((l) => l.includes("began recovered")).length).toBe(KILLS);
      await expectSameAsReference(kind, ref, victim);
    }, 300_000);
  }
});
