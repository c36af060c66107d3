// The receivers' write-ahead log in a context: a custom receiver's acknowledged records survive a crash
// (in-process here, on the manual clock; recovery-kill-wal.test.ts does it with SIGKILL), pending batches
// get exactly their records again, and log segments a checkpoint covers are deleted.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { Receiver, SparkContext, StreamingContext } from "../engine/index.js";
import { checkpoint, checkpointerOf, recoveryReportOf } from "../engine/checkpoint/index.js";

const dirs: string[] = [];
const contexts: StreamingContext[] = [];
function tmpDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), "sb-wal-ctx-"));
  dirs.push(d);
  return d;
}
afterEach(async () => {
  for (const ssc of contexts.splice(0)) {
    await ssc.stop();
    await checkpointerOf(ssc)?.flush();
  }
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

/** A reliable receiver: what push() stores is acknowledged once the block store (the log) holds it. */
class PushReceiver extends Receiver<string> {
  onStart(): void {}
  onStop(): void {}
  push(items: string[]): Promise<void> {
    return this.storeReliably(items);
  }
}

const sc = new SparkContext();
const warnings: string[] = [];
const sum = (vs: number[], last?: number) => vs.reduce((a, b) => a + b, 0) + (last ?? 0);

function pipeline(dir: string, batches: Map<number, string[]>, state: Map<number, [string, number][]>, name = "rx") {
  const ssc = new StreamingContext(sc, 1000, { clock: "manual" });
  contexts.push(ssc);
  checkpoint(ssc, dir, { interval: 2000, writeAheadLog: true, onWarning: (m) => warnings.push(m) });
  const rx = new PushReceiver();
  const words = ssc.receiverStream(rx, { name });
  words.foreachRDD((rdd, t) => {
    batches.set(t, rdd.collect());
  });
  words
    .map((w) => [w, 1] as [string, number])
    .updateStateByKey(sum, { name: "counts" })
    .foreachRDD((rdd, t) => {
      state.set(t, rdd.collect().sort((a, b) => (a[0] < b[0] ? -1 : 1)));
    });
  return { ssc, rx };
}

describe("write-ahead log for receivers", () => {
  it("replays a crashed run's pending batch exactly and its untaken records, twice over", async () => {
    const dir = tmpDir();
    const b1 = new Map<number, string[]>();
    const s1 = new Map<number, [string, number][]>();
    const one = pipeline(dir, b1, s1);
    await one.ssc.start();
    await one.rx.push(["a", "b"]);
    await one.ssc.advance(1000);
    await one.rx.push(["c"]);
    await one.ssc.advance(1000); // checkpoint at 2000
    await checkpointerOf(one.ssc)!.flush();
    await one.rx.push(["d", "e"]);
    await one.ssc.advance(1000); // batch 3000 takes d, e: no checkpoint covers it
    await one.rx.push(["f"]); // acknowledged, in no batch yet
    expect(b1.get(3000)).toEqual(["d", "e"]);
    // Crash: the context is simply abandoned.

    const b2 = new Map<number, string[]>();
    const s2 = new Map<number, [string, number][]>();
    let two!: ReturnType<typeof pipeline>;
    const ssc2 = StreamingContext.getOrCreate(dir, () => (two = pipeline(dir, b2, s2)).ssc);
    const r2 = recoveryReportOf(ssc2)!;
    expect(r2.checkpointTime).toBe(2000);
    expect(r2.pendingBatches).toEqual([3000]);
    expect(r2.replayedRecords).toEqual({ rx: 3 });
    await ssc2.start();
    await ssc2.scheduler.idle();
    expect(b2.get(3000)).toEqual(["d", "e"]); // the same batch again, exactly
    expect(s2.get(3000)).toEqual([["a", 1], ["b", 1], ["c", 1], ["d", 1], ["e", 1]]);
    // Crash again before any new checkpoint: the recovery summary in the log carries everything.

    const b3 = new Map<number, string[]>();
    const s3 = new Map<number, [string, number][]>();
    let three!: ReturnType<typeof pipeline>;
    const ssc3 = StreamingContext.getOrCreate(dir, () => (three = pipeline(dir, b3, s3)).ssc);
    expect(recoveryReportOf(ssc3)!.pendingBatches).toEqual([3000]);
    expect(recoveryReportOf(ssc3)!.replayedRecords).toEqual({ rx: 3 });
    await ssc3.start();
    await three.rx.push(["g"]);
    await ssc3.advance(1000); // 4000: f (replayed) then g; checkpoint at 4000
    expect(b3.get(4000)).toEqual(["f", "g"]);
    expect(s3.get(4000)).toEqual(["a", "b", "c", "d", "e", "f", "g"].map((w) => [w, 1]));
    const cp = checkpointerOf(ssc3)!;
    await cp.flush();
    // Everything before the checkpoint at 4000 is covered: only the open segment remains.
    expect(cp.blockLog!.segments().length).toBe(1);
    void two;
  });

  it("a crash before the first checkpoint still replays every logged record", async () => {
    const dir = tmpDir();
    const one = pipeline(dir, new Map(), new Map());
    await one.ssc.start();
    await one.rx.push(["x", "y"]);
    await one.ssc.advance(1000); // no checkpoint yet (interval 2000)
    await one.rx.push(["z"]);
    expect(checkpointerOf(one.ssc)!.store.files()).toEqual([]);
    const b2 = new Map<number, string[]>();
    const s2 = new Map<number, [string, number][]>();
    let two!: ReturnType<typeof pipeline>;
    const ssc2 = StreamingContext.getOrCreate(dir, () => (two = pipeline(dir, b2, s2)).ssc);
    const report = recoveryReportOf(ssc2)!;
    expect(report.pendingBatches).toEqual([1000]);
    expect(report.replayedRecords).toEqual({ rx: 3 });
    await ssc2.start();
    await two.ssc.advance(1000);
    expect(b2.get(1000)).toEqual(["x", "y"]);
    expect(b2.get(2000)).toEqual(["z"]);
    expect(s2.get(2000)).toEqual([["x", 1], ["y", 1], ["z", 1]]);
  });

  it("keeps logged data of a receiver the new pipeline renamed, and replays it once the name is back", async () => {
    const dir = tmpDir();
    const one = pipeline(dir, new Map(), new Map());
    await one.ssc.start();
    await one.rx.push(["p", "q"]);
    await one.ssc.advance(1000);
    await one.ssc.advance(1000); // checkpoint at 2000 covers p, q
    await checkpointerOf(one.ssc)!.flush();
    await one.rx.push(["r"]); // logged, in no batch

    warnings.length = 0;
    const renamed = StreamingContext.getOrCreate(dir, () => pipeline(dir, new Map(), new Map(), "renamed").ssc);
    expect(recoveryReportOf(renamed)!.unmatchedReceivedData).toEqual(["rx"]);
    expect(warnings.join("\n")).toMatch(/received data for "rx".*stays in the log/);
    await renamed.start();
    await renamed.advance(1000);
    await renamed.advance(1000); // a checkpoint at 4000: r must survive it
    await checkpointerOf(renamed)!.flush();
    await renamed.stop();

    const b3 = new Map<number, string[]>();
    const back = StreamingContext.getOrCreate(dir, () => pipeline(dir, b3, new Map(), "rx").ssc);
    expect(recoveryReportOf(back)!.replayedRecords).toEqual({ rx: 1 });
    await back.start();
    await back.advance(1000);
    expect(b3.get(5000)).toEqual(["r"]);
  });
});
