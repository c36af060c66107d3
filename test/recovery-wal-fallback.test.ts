// The receivers' write-ahead log and checkpoint fallback: when the newest checkpoint is damaged and
// recovery falls back to the previous one, the log still holds every record received after that one.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { Receiver, SparkContext, StreamingContext } from "../engine/index.js";
import { checkpoint, checkpointerOf, recoveryReportOf } from "../engine/checkpoint/index.js";

const dirs: string[] = [];
const contexts: StreamingContext[] = [];
function tmpDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), "sb-wal-fallback-"));
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

/** A reliable receiver: what push() stores is acknowledged once the log holds it. */
class PushReceiver extends Receiver<string> {
  onStart(): void {}
  onStop(): void {}
  push(items: string[]): Promise<void> {
    return this.storeReliably(items);
  }
}

const sc = new SparkContext();
const warnings: string[] = [];

/** Records are "<id>|<padding>": the state counts ids, so a lost or doubled record shows. */
function pipeline(dir: string) {
  const ssc = new StreamingContext(sc, 1000, { clock: "manual" });
  contexts.push(ssc);
  checkpoint(ssc, dir, { interval: 1000, writeAheadLog: true, onWarning: (m) => warnings.push(m) });
  const rx = new PushReceiver();
  const input = ssc.receiverStream(rx, { name: "records" });
  const counts = input
    .map((r) => [r.slice(0, r.indexOf("|")), 1] as [string, number])
    .updateStateByKey((vs: number[], last?: number) => vs.reduce((a, b) => a + b, 0) + (last ?? 0), { name: "seen" });
  counts.foreachRDD(() => {});
  return { ssc, rx, input, counts };
}

function records(from: number, n: number, pad = 0): string[] {
  return Array.from({ length: n }, (_, i) => `${from + i}|${"x".repeat(pad)}`);
}

/** Damages the newest checkpoint file (a flipped byte near the end, as in checkpoint-store.test.ts). */
function corruptNewest(dir: string): string {
  const newest = checkpointerOf(contexts.at(-1)!)!.store.files()[0]!;
  const b = fs.readFileSync(newest.file);
  b[b.length - 5] ^= 0x01;
  fs.writeFileSync(newest.file, b);
  return path.basename(newest.file);
}

/** Recovers from `dir`, runs until every replayed and pushed record is in a batch, returns the counts. */
async function recoverAndDrain(dir: string): Promise<{ counts: Map<string, number>; fellBackTo: string; warnings: string[] }> {
  let p!: ReturnType<typeof pipeline>;
  const ssc = StreamingContext.getOrCreate(dir, () => (p = pipeline(dir)).ssc);
  const report = recoveryReportOf(ssc)!;
  await ssc.start();
  await ssc.scheduler.idle();
  for (let i = 0; i < 5 && p.input.bufferedRecords() > 0; i++) await ssc.advance(1000);
  expect(p.input.bufferedRecords()).toBe(0);
  const counts = new Map(p.counts.state().collect());
  return { counts, fellBackTo: path.basename(report.checkpointFile), warnings: report.warnings };
}

function expectEachOnce(counts: Map<string, number>, n: number): void {
  const wrong = [...Array(n).keys()].map(String).filter((id) => counts.get(id) !== 1);
  expect(wrong.map((id) => `${id}: ${counts.get(id) ?? 0}`)).toEqual([]);
  expect(counts.size).toBe(n);
}

describe("write-ahead log kept back to the oldest checkpoint kept", () => {
  it(
    "a damaged newest checkpoint falls back to the previous one, and every record counts exactly once",
    async () => {
      const dir = tmpDir();
      const one = pipeline(dir);
      await one.ssc.start();
      // Large records make the log roll segments (8 MiB each) within the run, so checkpoints delete some.
      const pad = 1024 * 1024;
      let next = 0;
      for (let b = 0; b < 4; b++) {
        await one.rx.push(records(next, 9, pad));
        next += 9;
        await one.ssc.advance(1000); // each batch is checkpointed
        await checkpointerOf(one.ssc)!.flush();
      }
      await one.rx.push(records(next, 3)); // acknowledged, in no batch yet
      next += 3;
      expect(checkpointerOf(one.ssc)!.store.files().map((f) => f.batchTime)).toEqual([4000, 3000]);
      // Still trimmed: each 9 MiB block fills a segment, so segments 1-3 hold only what batches through
      // 3000 (the oldest checkpoint kept) took; 4 holds batch 4000's block, 5 is open.
      expect(checkpointerOf(one.ssc)!.blockLog!.segments()).toEqual([4, 5]);
      // Crash, then the newest checkpoint turns out damaged.
      const damaged = corruptNewest(dir);
      const { counts, fellBackTo, warnings: skipped } = await recoverAndDrain(dir);
      expect(fellBackTo).toMatch(/-3000\.sbcp$/);
      expect(skipped.join("\n")).toContain(damaged);
      expectEachOnce(counts, next);
    },
    120_000,
  );

  it(
    "a recovery in between keeps what the previous checkpoint needs, for a later fallback",
    async () => {
      const dir = tmpDir();
      const one = pipeline(dir);
      await one.ssc.start();
      let next = 0;
      for (let b = 0; b < 3; b++) {
        await one.rx.push(records(next, 4));
        next += 4;
        await one.ssc.advance(1000);
        await checkpointerOf(one.ssc)!.flush();
      }
      await one.rx.push(records(next, 2));
      next += 2;
      // Crash; a second run recovers from the newest checkpoint (3000) and crashes before its next one.
      const two = StreamingContext.getOrCreate(dir, () => pipeline(dir).ssc);
      expect(recoveryReportOf(two)!.checkpointTime).toBe(3000);
      // Then the checkpoint at 3000 turns out damaged: the third run falls back to 2000.
      const damaged = corruptNewest(dir);
      const { counts, fellBackTo, warnings: skipped } = await recoverAndDrain(dir);
      expect(fellBackTo).toMatch(/-2000\.sbcp$/);
      expect(skipped.join("\n")).toContain(damaged);
      expectEachOnce(counts, next);
    },
    120_000,
  );
});
