// Checkpointing inside a running context and recovery with getOrCreate, on the manual clock: the
// recovered run's output equals an uninterrupted one; a changed pipeline recovers what it can match.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { SparkContext, State, StateSpec, StreamingContext, type DStream } from "../engine/index.js";
import { checkpoint, checkpointerOf, recoveryReportOf, type CheckpointOptions } from "../engine/checkpoint/index.js";

const dirs: string[] = [];
function tmpDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), "sb-recovery-"));
  dirs.push(d);
  return d;
}
const contexts: StreamingContext[] = [];
afterEach(async () => {
  for (const ssc of contexts.splice(0)) {
    await ssc.stop();
    await checkpointerOf(ssc)?.flush();
  }
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

const sc = new SparkContext();
const BATCHES = [["a b", "a"], ["b c"], ["c c a"], ["d"], ["a d"], ["e"]];

function sum(values: number[], last?: number): number {
  return values.reduce((x, y) => x + y, 0) + (last ?? 0);
}

type Out = Map<number, [string, number][]>;

/** The word count with a state named "counts"; `variant` changes the cell around it. */
function wordCount(dir: string, out: Out, variant: "original" | "changed" = "original", opts: CheckpointOptions = { interval: 1000 }): StreamingContext {
  const ssc = new StreamingContext(sc, 1000, { clock: "manual" });
  contexts.push(ssc);
  checkpoint(ssc, dir, opts);
  const lines = ssc.queueStream(BATCHES.map((b) => b.slice()), true);
  let words: DStream<string> = lines.flatMap((l) => l.split(" "));
  if (variant === "changed") words = words.map((w) => w.trim()).filter((w) => w.length > 0); // a changed cell
  const counts = words.map((w) => [w, 1] as [string, number]).updateStateByKey(sum, { name: "counts" });
  counts.foreachRDD((rdd, time) => {
    out.set(time, rdd.collect().sort((x, y) => (x[0] < y[0] ? -1 : 1)));
  });
  if (variant === "original") {
    // An unnamed second state: its default name depends on the pipeline's shape.
    lines.map((l) => ["lines", 1] as [string, number]).updateStateByKey(sum);
  }
  return ssc;
}

/** Runs n batches; each batch's checkpoint is on disk before the next (writes are otherwise coalesced). */
async function runBatches(ssc: StreamingContext, n: number): Promise<void> {
  await ssc.start();
  for (let i = 0; i < n; i++) {
    await ssc.advance(1000);
    await checkpointerOf(ssc)?.flush();
  }
}

describe("checkpoint + getOrCreate (manual clock)", () => {
  it("a run interrupted after 3 batches and recovered ends exactly like an uninterrupted one", async () => {
    const reference: Out = new Map();
    const ref = wordCount(tmpDir(), reference);
    await runBatches(ref, 6);
    await ref.stop();

    const dir = tmpDir();
    const out: Out = new Map();
    const first = wordCount(dir, out);
    await runBatches(first, 3);
    await checkpointerOf(first)!.flush();
    // Abandon it (as a crash would): no graceful stop, no final checkpoint.
    await first.stop();

    let setupCalls = 0;
    const second = StreamingContext.getOrCreate(dir, () => {
      setupCalls++;
      return wordCount(dir, out);
    });
    expect(setupCalls).toBe(1);
    const report = recoveryReportOf(second)!;
    expect((second as unknown as { recoveryReport: unknown }).recoveryReport).toBe(report);
    expect(report.checkpointTime).toBe(3000);
    expect(report.restoredState.sort()).toEqual(["counts", "updateStateByKey(map(queue#0))"].sort());
    expect(report.restoredPositions).toEqual(["queue#0"]);
    expect(report.unmatchedState).toEqual([]);
    await second.start();
    expect(second.now()).toBe(3000);
    for (let i = 0; i < 3; i++) await second.advance(1000);
    expect(out.get(6000)).toEqual(reference.get(6000));
    expect([...out.keys()].sort((a, b) => a - b)).toEqual([1000, 2000, 3000, 4000, 5000, 6000]);
    for (const t of [4000, 5000]) expect(out.get(t)).toEqual(reference.get(t));
  });

  it("recovers mapWithState and an incremental (inverse) window exactly", async () => {
    const build = (dir: string, out: Map<number, string>) => {
      const ssc = new StreamingContext(sc, 1000, { clock: "manual" });
      contexts.push(ssc);
      checkpoint(ssc, dir, { interval: 1000 });
      const pairs = ssc
        .queueStream(BATCHES.map((b) => b.slice()), true)
        .flatMap((l) => l.split(" "))
        .map((w) => [w, 1] as [string, number]);
      const windowed = pairs.reduceByKeyAndWindow((a, b) => a + b, (a, b) => a - b, 3000, 1000, { name: "win" });
      const running = pairs.mapWithState(
        StateSpec.function((word: string, one: number | undefined, state: State<number>) => {
          const n = (state.exists() ? state.get() : 0) + (one ?? 0);
          state.update(n);
          return `${word}:${n}`;
        }),
        { name: "running" },
      );
      ssc.union(windowed.map(([k, v]) => `w ${k}=${v}`), running.map((m) => `m ${m}`)).foreachRDD((rdd, t) => {
        out.set(t, rdd.collect().sort().join(","));
      });
      return ssc;
    };
    const reference = new Map<number, string>();
    const ref = build(tmpDir(), reference);
    await runBatches(ref, 6);

    const dir = tmpDir();
    const out = new Map<number, string>();
    const first = build(dir, out);
    await runBatches(first, 4);
    await first.stop();
    const second = StreamingContext.getOrCreate(dir, () => build(dir, out));
    expect(recoveryReportOf(second)!.restoredState.sort()).toEqual(["running", "win"]);
    await runBatches(second, 2);
    for (const t of [5000, 6000]) expect(out.get(t), `batch ${t}`).toEqual(reference.get(t));
  });

  it("batches generated but not completed at the checkpoint are generated again on recovery", async () => {
    const reference: Out = new Map();
    await runBatches(wordCount(tmpDir(), reference), 4);

    const dir = tmpDir();
    const out: Out = new Map();
    const first = wordCount(dir, out);
    let release!: () => void;
    const blocked = new Promise<void>((r) => (release = r));
    let reached!: () => void;
    const atBatch2 = new Promise<void>((r) => (reached = r));
    // The queue stream is the first input; hold batch 2000's jobs so 3000 and 4000 queue up behind it.
    first.graph.inputStreams()[0]!.foreachRDD(async (_rdd, t) => {
      if (t === 2000) {
        reached();
        await blocked;
      }
    });
    await first.start();
    const running = first.advance(4000); // generates 1000..4000 at once
    await atBatch2;
    const cp = checkpointerOf(first)!;
    await cp.flush();
    expect(cp.store.read()!.data).toMatchObject({ batchTime: 1000, lastCompletedBatch: 1000, pendingBatches: [2000, 3000, 4000] });
    // Crash now: batch 2000 never completes in this run.
    cp.dispose();

    const second = StreamingContext.getOrCreate(dir, () => wordCount(dir, out));
    expect(recoveryReportOf(second)!.pendingBatches).toEqual([2000, 3000, 4000]);
    await second.start();
    await second.scheduler.idle();
    for (const t of [2000, 3000, 4000]) expect(out.get(t), `batch ${t}`).toEqual(reference.get(t));
    release();
    await running;
  });

  it("checkpoints by default every max(10 s, 5 batches) of batch time", async () => {
    const dir = tmpDir();
    const ssc = new StreamingContext(sc, 1000, { clock: "manual" });
    contexts.push(ssc);
    const cp = checkpoint(ssc, dir);
    expect(cp.interval).toBe(10_000);
    ssc.queueStream<number>([], true).map((x) => [x, 1] as [number, number]).updateStateByKey(sum).foreachRDD(() => {});
    await runBatches(ssc, 25);
    await cp.flush();
    expect(cp.written).toBe(2); // at 10 s and 20 s
    const slow = new StreamingContext(sc, 3000, { clock: "manual" });
    contexts.push(slow);
    expect(checkpoint(slow, tmpDir()).interval).toBe(15_000);
    // ssc.checkpoint(dir) goes through the context's hook; stream.checkpoint(interval) sets the interval.
    const viaContext = new StreamingContext(sc, 1000, { clock: "manual" });
    contexts.push(viaContext);
    viaContext.checkpoint(tmpDir());
    viaContext.queueStream<number>([], true).map((x) => [x, 1] as [number, number]).updateStateByKey(sum).checkpoint(3000);
    expect(checkpointerOf(viaContext)?.interval).toBe(3000);
  });

  it("a changed cell recovers the state it can match and reports (and keeps) the rest", async () => {
    const dir = tmpDir();
    const out: Out = new Map();
    const first = wordCount(dir, out, "original");
    await runBatches(first, 2);
    await checkpointerOf(first)!.flush();
    await first.stop();

    const warnings: string[] = [];
    const changedOut: Out = new Map();
    const second = StreamingContext.getOrCreate(dir, () => {
      const ssc = wordCount(dir, changedOut, "changed", { interval: 1000, onWarning: (m) => warnings.push(m) });
      return ssc;
    });
    const report = recoveryReportOf(second)!;
    expect(report.restoredState).toEqual(["counts"]);
    expect(report.unmatchedState).toEqual(["updateStateByKey(map(queue#0))"]);
    expect(warnings.join("\n")).toMatch(/no stream named for state "updateStateByKey\(map\(queue#0\)\)".*kept in later checkpoints/);
    await runBatches(second, 1);
    expect(changedOut.get(3000)).toEqual([["a", 3], ["b", 2], ["c", 3]]);
    await checkpointerOf(second)!.flush();
    await second.stop();

    // The original cell again: the state the changed run could not use is still there.
    const third = StreamingContext.getOrCreate(dir, () => wordCount(dir, new Map(), "original"));
    const r3 = recoveryReportOf(third)!;
    expect(r3.restoredState.sort()).toEqual(["counts", "updateStateByKey(map(queue#0))"].sort());
    expect(r3.unmatchedState).toEqual([]);
  });

  it("falls back to the previous checkpoint when the newest is corrupt, and says so", async () => {
    const dir = tmpDir();
    const out: Out = new Map();
    const first = wordCount(dir, out);
    await runBatches(first, 3);
    const cp = checkpointerOf(first)!;
    await cp.flush();
    await first.stop();
    const newest = cp.store.files()[0]!;
    expect(newest.batchTime).toBe(3000);
    const bytes = fs.readFileSync(newest.file);
    bytes[bytes.length - 10] ^= 0x20;
    fs.writeFileSync(newest.file, bytes);

    const warnings: string[] = [];
    const origWarn = console.warn;
    console.warn = (m: string) => warnings.push(m);
    let second: StreamingContext;
    try {
      second = StreamingContext.getOrCreate(dir, () => wordCount(dir, out));
    } finally {
      console.warn = origWarn;
    }
    const report = recoveryReportOf(second)!;
    expect(report.checkpointTime).toBe(2000);
    expect(report.warnings.join("\n")).toMatch(/checksum mismatch/);
    expect(warnings.join("\n")).toMatch(/fell back to checkpoint-\d+-2000\.sbcp/);
    await runBatches(second, 4);
    const reference: Out = new Map();
    const ref = wordCount(tmpDir(), reference);
    await runBatches(ref, 6);
    expect(out.get(6000)).toEqual(reference.get(6000));
  });

  it("without a checkpoint, getOrCreate returns setup()'s context untouched", () => {
    const dir = tmpDir();
    const ssc = StreamingContext.getOrCreate(dir, () => wordCount(dir, new Map()));
    expect(recoveryReportOf(ssc)).toBeUndefined();
    expect(checkpointerOf(ssc)?.dir).toBe(path.resolve(dir));
  });
});
