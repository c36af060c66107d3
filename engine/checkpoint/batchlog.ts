// The batch-input log (Spark checkpoints FileInputDStream's batchTimeToSelectedFiles right after job
// generation): each generated batch's input selection, fsync'd before its output runs, so that a batch
// generated again after a crash takes exactly the input it took before, not what has arrived since.
import type { InputDStream } from "../sources/input.js";
import { WriteAheadLog } from "./wal.js";

/** One generated batch: its time and, per input stream name, what that stream's selectionFor() gave. */
type GeneratedRecord = { k: "g"; t: number; s: Record<string, unknown> };

export class BatchInputLog {
  private readonly wal: WriteAheadLog;
  /** Greatest batch time logged in each segment (-Infinity: none); a segment goes once a checkpoint covers it. */
  private readonly segMax = new Map<number, number>();
  /** A log of an earlier run found on disk was read by recover() (else it is discarded at the first append). */
  private adopted = false;
  private closed = false;
  private recovered = new Map<number, Record<string, unknown>>();
  /** Records appended, for tests and the benchmark. */
  appended = 0;

  constructor(dir: string) {
    // Records are tiny: small segments keep what a checkpoint makes unnecessary cheap to delete.
    this.wal = new WriteAheadLog(dir, { segmentBytes: 256 * 1024 });
  }

  get dir(): string {
    return this.wal.dir;
  }

  /**
   * Logs what batch `time` took from each input that can say (selectionFor). Called synchronously after
   * the batch was generated and before any of its jobs runs; returns false when no input had anything.
   */
  record(time: number, inputs: readonly InputDStream<unknown>[]): boolean {
    const s: Record<string, unknown> = {};
    let any = false;
    for (const input of inputs) {
      const sel = input.selectionFor?.(time);
      if (sel === undefined) continue;
      s[input.name] = sel;
      any = true;
    }
    if (!any) return false;
    if (!this.adopted) {
      // This context did not recover from that log: it belongs to a run whose batch times mean nothing now.
      this.adopted = true;
      this.wal.deleteSegments(this.wal.segments());
    }
    const rec: GeneratedRecord = { k: "g", t: time, s };
    const seg = this.wal.append(rec);
    this.segMax.set(seg, Math.max(this.segMax.get(seg) ?? -Infinity, time));
    this.appended++;
    return true;
  }

  /** True if the directory holds any logged batch (a crash before the first checkpoint). */
  hasRecords(): boolean {
    return this.wal.segments().length > 0 && this.wal.readAll().some((r) => (r.record as GeneratedRecord).k === "g");
  }

  /**
   * Reads the log after a crash: the selections of batches after `lastCompleted` (those up to it are in
   * the checkpointed state). Returns their times; restore() hands the selections to the new pipeline.
   */
  recover(lastCompleted: number | undefined): number[] {
    this.adopted = true;
    this.recovered = new Map();
    for (const seg of this.wal.segments()) if (!this.segMax.has(seg)) this.segMax.set(seg, -Infinity);
    for (const { segment, record } of this.wal.readAll()) {
      const rec = record as GeneratedRecord;
      if (rec.k !== "g" || typeof rec.t !== "number" || rec.s === null || typeof rec.s !== "object") continue;
      this.segMax.set(segment, Math.max(this.segMax.get(segment) ?? -Infinity, rec.t));
      if (lastCompleted !== undefined && rec.t <= lastCompleted) continue;
      // A batch generated again after an earlier recovery is logged again, with the same selection.
      this.recovered.set(rec.t, rec.s);
    }
    return [...this.recovered.keys()].sort((a, b) => a - b);
  }

  /**
   * Gives each input of the new pipeline (by name) the recorded selections of the pending batches.
   * Returns the batch times restored and the logged input names no stream of the pipeline has.
   */
  restore(pending: readonly number[], inputs: readonly InputDStream<unknown>[]): { batches: number[]; unmatched: string[] } {
    const byName = new Map<string, InputDStream<unknown>>();
    for (const input of inputs) if (input.restoreSelection) byName.set(input.name, input);
    const batches: number[] = [];
    const unmatched = new Set<string>();
    for (const t of pending) {
      const s = this.recovered.get(t);
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
    this.recovered = new Map();
    return { batches, unmatched: [...unmatched] };
  }

  /**
   * A checkpoint through batch `upTo` is durable (and so is every fallback the store keeps): segments
   * whose batches are all covered go, the open one too (closed; the next append starts a new one).
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

  /** Segments on disk (for tests). */
  segments(): number[] {
    return this.wal.segments();
  }

  close(): void {
    this.closed = true;
    this.wal.close();
  }
}
