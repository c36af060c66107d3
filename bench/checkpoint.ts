// Benchmark (not a test): stateful word count with a checkpoint every 5 batches (and the batch log's
// metadata every batch) against none, side by side in one process on the same input; the time to recover
// 1M keys of state; event-loop gaps while checkpointing; and how fast a recovered pipeline catches up
// after 3 minutes down, against real time. Ends with "summary: overhead X.X%, catch-up X.Xx".
// Run: node --expose-gc dist/bench/checkpoint.js
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { SparkContext, StreamingContext, type RDD } from "../engine/index.js";
import { checkpoint, checkpointerOf, recoveryReportOf } from "../engine/checkpoint/index.js";
import { encodeCheckpoint, encodeCheckpointSliced } from "../engine/checkpoint/format.js";
import { runSliced } from "../engine/slicing.js";

const BATCHES = 20;
const LINES = 10_000;
const WORDS_PER_LINE = 10;
const DISTINCT = 50_000;
const ROUNDS = 5;

function makeBatches(): string[][] {
  let a = 12345;
  const rnd = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const out: string[][] = [];
  for (let b = 0; b < BATCHES; b++) {
    const lines: string[] = [];
    for (let l = 0; l < LINES; l++) {
      const ws: string[] = [];
      for (let w = 0; w < WORDS_PER_LINE; w++) ws.push(`w${Math.floor(rnd() * DISTINCT)}`);
      lines.push(ws.join(" "));
    }
    out.push(lines);
  }
  return out;
}

const sum = (vs: number[], last?: number) => vs.reduce((a, b) => a + b, 0) + (last ?? 0);

async function wordCount(batches: string[][], dir: string | undefined): Promise<{ ms: number; checkpoints: number; keys: number }> {
  const sc = new SparkContext();
  const ssc = new StreamingContext(sc, 1000, { clock: "manual" });
  if (dir) checkpoint(ssc, dir, { interval: 5000 });
  let keys = 0;
  ssc
    .queueStream(batches.map((b) => b.slice()), true)
    .flatMap((l) => l.split(" "))
    .map((w) => [w, 1] as [string, number])
    .reduceByKey((a, b) => a + b)
    .updateStateByKey(sum, { name: "counts" })
    .foreachRDD((rdd) => {
      keys = rdd.count();
    });
  const t0 = performance.now();
  await ssc.start();
  for (let i = 0; i < BATCHES; i++) await ssc.advance(1000);
  const cp = dir ? checkpointerOf(ssc) : undefined;
  await cp?.flush(); // the checkpoints' cost counts in full
  const ms = performance.now() - t0;
  await ssc.stop();
  return { ms, checkpoints: cp?.written ?? 0, keys };
}

function median(xs: number[]): number {
  const s = xs.slice().sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function throughput(): Promise<number> {
  const batches = makeBatches();
  const words = BATCHES * LINES * WORDS_PER_LINE;
  const none: number[] = [];
  const every5: number[] = [];
  let written = 0;
  const { keys } = await wordCount(batches, undefined); // warm-up
  const gc = (globalThis as { gc?: () => void }).gc;
  const plain = async () => {
    gc?.();
    none.push((await wordCount(batches, undefined)).ms);
  };
  const checkpointed = async () => {
    gc?.();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sb-bench-ckpt-"));
    const res = await wordCount(batches, dir);
    every5.push(res.ms);
    if (res.keys !== keys) throw new Error(`checkpointed run kept ${res.keys} keys, the plain one ${keys}`);
    written = res.checkpoints;
    fs.rmSync(dir, { recursive: true, force: true });
  };
  for (let r = 0; r < ROUNDS; r++) {
    // Interleaved, in alternating order, so both see the same machine load and heap history.
    if (r % 2 === 0) {
      await plain();
      await checkpointed();
    } else {
      await checkpointed();
      await plain();
    }
  }
  const a = median(none);
  const b = median(every5);
  console.log(`stateful word count, ${BATCHES} batches x ${LINES} lines x ${WORDS_PER_LINE} words, ${keys} keys (median of ${ROUNDS}):`);
  console.log(`  no checkpoint          ${(words / (a / 1000) / 1e6).toFixed(2)} M words/s  (${a.toFixed(0)} ms)`);
  console.log(`  checkpoint every 5     ${(words / (b / 1000) / 1e6).toFixed(2)} M words/s  (${b.toFixed(0)} ms, ${written} checkpoints)`);
  console.log(`  overhead               ${((b / a - 1) * 100).toFixed(1)} %  (goal <= 10 %; the batch log's metadata every batch included)`);
  return (b / a - 1) * 100;
}

async function recovery(): Promise<void> {
  const KEYS = 1_000_000;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sb-bench-recover-"));
  const setup = (initial?: RDD<[string, number]>) => {
    const ssc = new StreamingContext(new SparkContext(), 1000, { clock: "manual" });
    checkpoint(ssc, dir, { interval: 1000 });
    ssc
      .queueStream<string>([["k1 k2"]], true)
      .flatMap((l) => l.split(" "))
      .map((w) => [w, 1] as [string, number])
      .updateStateByKey(sum, { name: "counts", initialRDD: initial })
      .foreachRDD(() => {});
    return ssc;
  };
  const sc = new SparkContext();
  const pairs: [string, number][] = [];
  for (let i = 0; i < KEYS; i++) pairs.push([`key${i}`, i]);
  const first = setup(sc.parallelize(pairs));
  await first.start();
  const w0 = performance.now();
  await first.advance(1000);
  await checkpointerOf(first)!.flush();
  const writeMs = performance.now() - w0;
  await first.stop();
  const file = checkpointerOf(first)!.store.files()[0]!;
  const bytes = fs.statSync(file.file).size;

  const r0 = performance.now();
  const ssc = StreamingContext.getOrCreate(dir, () => setup());
  await ssc.start();
  const restoredMs = performance.now() - r0;
  let keys = 0;
  await ssc.advance(1000); // the first batch after recovery touches the restored state
  const firstBatchMs = performance.now() - r0;
  keys = (ssc.graph.statefulStreams()[0]!.state() as RDD<unknown>).count();
  await ssc.stop();
  await checkpointerOf(ssc)?.flush();
  const report = recoveryReportOf(ssc)!;
  fs.rmSync(dir, { recursive: true, force: true });
  console.log(`recovery of ${KEYS.toLocaleString("en")} keys of updateStateByKey state (checkpoint ${(bytes / 1e6).toFixed(1)} MB):`);
  console.log(`  batch + checkpoint write ${writeMs.toFixed(0)} ms`);
  console.log(`  getOrCreate + start      ${restoredMs.toFixed(0)} ms (restored ${report.restoredState.join(", ")})`);
  console.log(`  ... + first batch        ${firstBatchMs.toFixed(0)} ms (${keys.toLocaleString("en")} keys after it)`);
}

/** Longest wait between two turns of the event loop while `work` runs (a setImmediate probe). */
async function longestGap(work: () => Promise<unknown> | unknown): Promise<{ gap: number; turns: number; ms: number }> {
  let gap = 0;
  let turns = 0;
  let last = performance.now();
  let on = true;
  const probe = () => {
    const now = performance.now();
    gap = Math.max(gap, now - last);
    last = now;
    turns++;
    if (on) setImmediate(probe);
  };
  setImmediate(probe);
  await new Promise((r) => setImmediate(r)); // the probe is turning before the work starts
  const t0 = performance.now();
  last = t0;
  await work();
  const ms = performance.now() - t0;
  const now = performance.now();
  gap = Math.max(gap, now - last);
  on = false;
  return { gap, turns, ms };
}

async function loopGaps(): Promise<void> {
  const KEYS = 1_000_000;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sb-bench-gap-"));
  const sc = new SparkContext();
  const pairs: [string, number][] = [];
  for (let i = 0; i < KEYS; i++) pairs.push([`key${i}`, i]);
  const ssc = new StreamingContext(sc, 1000, { clock: "manual" });
  checkpoint(ssc, dir, { interval: 1000 });
  ssc
    .queueStream<string>([["k1 k2"]], true)
    .flatMap((l) => l.split(" "))
    .map((w) => [w, 1] as [string, number])
    .updateStateByKey(sum, { name: "counts", initialRDD: sc.parallelize(pairs) })
    .foreachRDD(() => {});
  await ssc.start();
  await ssc.advance(1000);
  const cp = checkpointerOf(ssc)!;
  await cp.flush();
  const gc = (globalThis as { gc?: () => void }).gc;
  // Side by side on the same state: the snapshot alone, the old one-piece encode, the sliced one, and
  // what the batch hook did before (snapshot + one-piece encode); then a whole checkpoint as it runs now.
  const rows: [string, { gap: number; turns: number; ms: number }][] = [];
  for (let round = 0; round < 3; round++) {
    gc?.();
    const snap = await longestGap(() => cp.snapshot(1000));
    const data = cp.snapshot(1000);
    gc?.();
    const before = await longestGap(() => encodeCheckpoint(data));
    gc?.();
    const after = await longestGap(() => runSliced(encodeCheckpointSliced(data)));
    gc?.();
    gc?.();
    const oldWay = await longestGap(() => encodeCheckpoint(cp.snapshot(1000)));
    if (round === 2) {
      rows.push(["snapshot, checkpointState()", snap], ["encode, one piece", before], ["encode, sliced", after]);
      rows.push(["before: snapshot + encode", oldWay]);
    }
  }
  // A real checkpoint of the running context: the batch, its snapshot, the encode and the durable write.
  const cpRun = await longestGap(async () => {
    await ssc.advance(1000);
    await cp.flush();
  });
  rows.push(["after: batch + checkpoint", cpRun]);
  await ssc.stop();
  fs.rmSync(dir, { recursive: true, force: true });
  console.log(`event-loop gaps while checkpointing ${KEYS.toLocaleString("en")} keys of updateStateByKey state (goal: longest gap ~50 ms):`);
  for (const [name, r] of rows) {
    console.log(`  ${name.padEnd(28)} longest gap ${r.gap.toFixed(0).padStart(4)} ms over ${r.ms.toFixed(0).padStart(4)} ms (${r.turns} loop turns)`);
  }
}

/**
 * A word count over textFileStream (updateStateByKey over 2,000 keys, its counts saved every batch,
 * checkpoints at the default interval), run live for 20 batches of 500 ms, then recovered with
 * getOrCreate after 3 minutes of (clock) downtime: the 360 batches that fell due meanwhile, nearly all
 * empty, are generated and run. Returns the ratio of the time down to the time catching up.
 */
async function catchUp(): Promise<number> {
  const BATCH = 500;
  const DOWN = 180_000;
  const LIVE = 20;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sb-bench-catchup-"));
  const input = path.join(dir, "input");
  const out = path.join(dir, "out");
  fs.mkdirSync(input);
  fs.mkdirSync(out);
  const ckpt = path.join(dir, "ckpt");
  let batches = 0;
  const setup = () => {
    const ssc = new StreamingContext(new SparkContext(), BATCH, { clock: "manual" });
    ssc.checkpoint(ckpt);
    ssc
      .textFileStream(input, { name: "files" })
      .flatMap((l) => l.split(" "))
      .map((w) => [w, 1] as [string, number])
      .reduceByKey((a, b) => a + b)
      .updateStateByKey(sum, { name: "counts" })
      .saveAsTextFiles(path.join(out, "counts"));
    ssc.addStreamingListener({ onBatchCompleted: () => void batches++ });
    return ssc;
  };
  const first = StreamingContext.getOrCreate(ckpt, setup);
  await first.start();
  const l0 = performance.now();
  for (let i = 0; i < LIVE; i++) {
    const words: string[] = [];
    for (let w = 0; w < 5000; w++) words.push(`w${(w * 7919 + i * 104729) % 2000}`);
    fs.writeFileSync(path.join(dir, "next"), words.join(" ").replace(/((?:\S+ ){9}\S+) /g, "$1\n"));
    fs.renameSync(path.join(dir, "next"), path.join(input, `f${i}.txt`));
    await first.advance(BATCH);
  }
  const liveMs = (performance.now() - l0) / LIVE;
  await checkpointerOf(first)!.flush();
  // The program goes away here (its batch log and checkpoints stay); the clock moves on 3 minutes.
  await first.stop();
  const ssc = StreamingContext.getOrCreate(ckpt, setup);
  await ssc.start();
  batches = 0;
  const c0 = performance.now();
  await ssc.advance(DOWN);
  const catchMs = performance.now() - c0;
  const caughtUp = batches;
  await ssc.stop();
  await checkpointerOf(ssc)?.flush();
  fs.rmSync(dir, { recursive: true, force: true });
  const ratio = DOWN / catchMs;
  console.log(`catch-up after ${DOWN / 1000} s down: textFileStream -> updateStateByKey (2,000 keys) -> saveAsTextFiles, ${BATCH} ms batches, checkpoints at the default interval:`);
  console.log(`  live batches (20, with data)  ${liveMs.toFixed(1)} ms/batch`);
  console.log(`  catch-up (${caughtUp} batches)       ${catchMs.toFixed(0)} ms = ${(catchMs / Math.max(1, caughtUp)).toFixed(1)} ms/batch`);
  console.log(`  catch-up rate          ${ratio.toFixed(1)}x real time (goal >= 10x)`);
  return ratio;
}

async function main(): Promise<void> {
  if (process.argv.includes("--gaps")) return loopGaps();
  if (process.argv.includes("--catch-up")) {
    await catchUp();
    return;
  }
  const overhead = await throughput();
  await recovery();
  await loopGaps();
  const ratio = await catchUp();
  console.log(`summary: overhead ${overhead.toFixed(1)}%, catch-up ${ratio.toFixed(1)}x`);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
