// The batch log: the one home for what each batch took and where each source stands, written every
// batch (Structured Streaming's offset and commit logs; Spark's DStreams checkpoint the same metadata
// after every batch, and state only at the checkpoint interval). Three kinds of record:
// - start: each source's position when it started, durable before the first batch is generated, so a
//   crash before the first checkpoint loses nothing (what arrives while the program is down is new);
// - generated: batch t's selection from each input that can say (files, ID ranges, offset ranges;
//   Spark's batchTimeToSelectedFiles), durable before the batch's output runs, and the positions of
//   the inputs that keep no selection (a queue, the rate generator);
// - completed: batch t's jobs all finished, so recovery of a pipeline without state need not run it again.
import type { InputDStream } from "../sources/input.js";
import { WriteAheadLog } from "./wal.js";

/** A source started: positions of the inputs that started, before batch `t` (the first it generates). */
type StartRecord = { k: "s"; fresh: boolean; z: number; t: number; th: number; p: Record<string, unknown> };
/** Batch `t` was generated: selections by input name, and positions of the inputs without selections. */
type GeneratedRecord = { k: "g"; t: number; s: Record<string, unknown>; p?: Record<string, unknown> };
/** Batch `t` completed. */
type CompletedRecord = { k: "c"; t: number };
type BatchRecord = StartRecord | GeneratedRecord | CompletedRecord;

/** What a recovered log holds, for recovery to decide what to restore and what to run again. */
export interface BatchLogContents {
  /** No record at all. */
  empty: boolean;
  /** The log begins with the first start of a fresh run, so it alone can rebuild everything since. */
  fromFreshStart: boolean;
  /** The first start's zero time (window alignment when there is no checkpoint). */
  zeroTime: number | undefined;
  /** Each input's position at the earliest start that logged it. */
  startPositions: Record<string, unknown>;
  /** The latest completed batch, if any. */
  lastCompleted: number | undefined;
  /** Generated batch times, ascending. */
  generatedTimes: number[];
  /** Completed batch times, ascending. */
  completedTimes: number[];
  /** Positions of the selection-less inputs just before batch `before` (the newest logged snapshot through an earlier batch). */
  positionsBefore(before: number): Record<string, unknown>;
  /** The selections batch `time` logged. */
  selectionsAt(time: number): Record<string, unknown> | undefined;
}

export class BatchInputLog {
  private readonly wal: WriteAheadLog;
  /** Greatest batch time logged in each segment (-Infinity: none); a segment goes once a checkpoint covers it. */
  private readonly segMax = new Map<number, number>();
  /** A log of an earlier run found on disk was read by recover() (else it is discarded at the first write). */
  private adopted = false;
  private closed = false;
  private contents: { records: BatchRecord[] } | undefined;
  /** Generated-batch records written (one per batch), for tests and the benchmark. */
  appended = 0;

  constructor(dir: string) {
    // Records are tiny: small segments keep what a checkpoint makes unnecessary cheap to delete.
    this.wal = new WriteAheadLog(dir, { segmentBytes: 256 * 1024 });
  }

  get dir(): string {
    return this.wal.dir;
  }

  private write(rec: BatchRecord, time: number): void {
    if (this.closed) return;
    if (!this.adopted) {
      // This context did not recover from that log: it belongs to a run whose batch times mean nothing now.
      this.adopted = true;
      this.wal.deleteSegments(this.wal.segments());
    }
    const seg = this.wal.write(rec);
    this.segMax.set(seg, Math.max(this.segMax.get(seg) ?? -Infinity, time));
    if (rec.k === "g") this.appended++;
  }

  /**
   * Inputs started (the context's start, or a source added while it runs): logs their positions and
   * resolves once that is durable. `fresh` marks the first start of a run that recovered nothing.
   */
  started(inputs: readonly InputDStream<unknown>[], info: { fresh: boolean; zeroTime: number; firstBatch: number; batchDuration: number }): Promise<void> {
    const p: Record<string, unknown> = {};
    for (const input of inputs) {
      const pos = input.checkpointPosition?.();
      if (pos !== undefined) p[input.name] = pos;
    }
    const through = info.firstBatch - info.batchDuration;
    this.write({ k: "s", fresh: info.fresh, z: info.zeroTime, t: info.firstBatch, th: through, p }, through);
    return this.wal.sync();
  }

  /**
   * Logs what batch `time` took from each input that can say (selectionFor) and where the others stand.
   * Called synchronously after the batch was generated, before any of its jobs runs. Returns a promise
   * the batch's output must wait for when a selection was logged (it resolves once that is durable).
   */
  generated(time: number, inputs: readonly InputDStream<unknown>[]): Promise<void> | undefined {
    const s: Record<string, unknown> = {};
    let p: Record<string, unknown> | undefined;
    let selected = false;
    for (const input of inputs) {
      if (input.selectionFor) {
        const sel = input.selectionFor(time);
        if (sel === undefined) continue;
        s[input.name] = sel;
        selected = true;
      } else {
        const pos = input.checkpointPosition?.();
        if (pos !== undefined) (p ??= {})[input.name] = pos;
      }
    }
    const rec: GeneratedRecord = { k: "g", t: time, s };
    if (p) rec.p = p;
    this.write(rec, time);
    return selected ? this.wal.sync() : undefined;
  }

  /** Batch `time` completed (durable with the next sync: losing it only means running the batch again). */
  completed(time: number): void {
    this.write({ k: "c", t: time }, time);
  }

  /** Reads the log of the run that crashed (once, before the new run writes). */
  recover(): BatchLogContents {
    this.adopted = true;
    for (const seg of this.wal.segments()) if (!this.segMax.has(seg)) this.segMax.set(seg, -Infinity);
    const records: BatchRecord[] = [];
    for (const { segment, record } of this.wal.readAll()) {
      const rec = record as BatchRecord;
      if (rec === null || typeof rec !== "object" || typeof (rec as { t?: unknown }).t !== "number") continue;
      if (rec.k === "g" && (rec.s === null || typeof rec.s !== "object")) continue;
      if (rec.k !== "g" && rec.k !== "c" && rec.k !== "s") continue;
      records.push(rec);
      const t = rec.k === "s" ? rec.th : rec.t;
      this.segMax.set(segment, Math.max(this.segMax.get(segment) ?? -Infinity, t));
    }
    this.contents = { records };
    const first = records[0];
    const startPositions: Record<string, unknown> = {};
    let zeroTime: number | undefined;
    const generated = new Map<number, GeneratedRecord>();
    const completed = new Set<number>();
    for (const rec of records) {
      if (rec.k === "s") {
        zeroTime ??= rec.z;
        for (const [name, pos] of Object.entries(rec.p)) if (!(name in startPositions)) startPositions[name] = pos;
      } else if (rec.k === "g") generated.set(rec.t, rec);
      else completed.add(rec.t);
    }
    const asc = (a: number, b: number) => a - b;
    const completedTimes = [...completed].sort(asc);
    return {
      empty: records.length === 0,
      fromFreshStart: first !== undefined && first.k === "s" && first.fresh,
      zeroTime,
      startPositions,
      lastCompleted: completedTimes.at(-1),
      generatedTimes: [...generated.keys()].sort(asc),
      completedTimes,
      selectionsAt: (time) => generated.get(time)?.s,
      positionsBefore: (before) => {
        // Snapshots through an earlier batch; the newest wins, and a later record wins a tie.
        let best: { through: number; p: Record<string, unknown> }[] = [];
        for (const rec of records) {
          if (rec.k === "c") continue;
          const through = rec.k === "s" ? rec.th : rec.t;
          const p = rec.p;
          if (!p || through >= before) continue;
          best.push({ through, p });
        }
        best = best.sort((a, b) => a.through - b.through); // stable: log order within a time
        const out: Record<string, unknown> = {};
        for (const b of best) Object.assign(out, b.p);
        return out;
      },
    };
  }

  /**
   * Gives each input of the new pipeline (by name) the logged selections of the batches to generate
   * again. Returns the batch times restored and the logged input names no stream of the pipeline has.
   */
  restore(pending: readonly number[], inputs: readonly InputDStream<unknown>[]): { batches: number[]; unmatched: string[] } {
    const byName = new Map<string, InputDStream<unknown>>();
    for (const input of inputs) if (input.restoreSelection) byName.set(input.name, input);
    const batches: number[] = [];
    const unmatched = new Set<string>();
    const generated = this.generatedRecords();
    for (const t of pending) {
      const s = generated.get(t)?.s;
      if (!s) continue;
      let matched = false;
      for (const [name, sel] of Object.entries(s)) {
        const input = byName.get(name);
        if (input) {
          input.restoreSelection!(t, sel);
          matched = true;
        } else unmatched.add(name);
      }
      if (matched) batches.push(t);
    }
    return { batches, unmatched: [...unmatched] };
  }

  /**
   * Batches that completed before the crash and are not run again: each input with a selection moves
   * its position past what they took (skipSelection). Returns false, changing nothing, when an input
   * with logged selections cannot do that or is gone (then the batches must be run again instead).
   */
  skip(completed: readonly number[], inputs: readonly InputDStream<unknown>[]): boolean {
    const byName = new Map<string, InputDStream<unknown>>();
    for (const input of inputs) byName.set(input.name, input);
    const generated = this.generatedRecords();
    const steps: [InputDStream<unknown>, number, unknown][] = [];
    for (const t of completed) {
      for (const [name, sel] of Object.entries(generated.get(t)?.s ?? {})) {
        const input = byName.get(name);
        // An input gone from the pipeline (reported when the batches run again) or unable to skip.
        if (!input?.skipSelection) return false;
        steps.push([input, t, sel]);
      }
    }
    for (const [input, t, sel] of steps) input.skipSelection!(t, sel);
    return true;
  }

  private generatedRecords(): Map<number, GeneratedRecord> {
    const m = new Map<number, GeneratedRecord>();
    for (const rec of this.contents?.records ?? []) if (rec.k === "g") m.set(rec.t, rec);
    return m;
  }

  /** Recovery is done: the records read are no longer needed in memory. */
  forgetRecovered(): void {
    this.contents = undefined;
  }

  /**
   * A checkpoint through batch `upTo` is durable (and so is every fallback the store keeps): segments
   * whose batches are all covered go, the open one too (closed; the next write starts a new one).
   */
  checkpointed(upTo: number): void {
    if (this.closed) return;
    const current = this.wal.currentSegment;
    // Sealed even if it holds later batches: it goes at a later checkpoint, and the log stays small.
    if (current !== undefined && this.segMax.has(current)) this.wal.seal();
    const doomed: number[] = [];
    for (const [seg, max] of this.segMax) if (seg !== this.wal.currentSegment && max <= upTo) doomed.push(seg);
    for (const seg of doomed) this.segMax.delete(seg);
    if (doomed.length > 0) this.wal.deleteSegments(doomed);
  }

  /** Resolves once every record written so far is durable. */
  sync(): Promise<void> {
    return this.wal.sync();
  }

  /** Segments on disk (for tests). */
  segments(): number[] {
    return this.wal.segments();
  }

  close(): void {
    this.closed = true;
    this.wal.close();
  }
}
