// InputDStream: the base of every source. It registers with the context's graph (getting Spark's
// numeric stream `id`), is started and stopped with the context, and computes each batch's RDD.

import type { StreamingContext } from "../context.js";
import { DStream } from "../dstream.js";
import type { RDD } from "../rdd.js";
import type { PartitionRange } from "../listener.js";

export interface InputOptions {
  /** A stable name for checkpoints (default: `<kind>#<id>`, e.g. `socket#0`). */
  name?: string;
}

function kindOf(ctor: Function): string {
  const k = ctor.name.replace(/(Input)?D?Stream$/, "") || "input";
  return k.charAt(0).toLowerCase() + k.slice(1);
}

export abstract class InputDStream<T> extends DStream<T> {
  /** Spark's stream id: 0, 1, 2, ... in creation order within the context. */
  readonly id: number;
  private readonly recordCounts = new Map<number, number>();
  private readonly inputDetails = new Map<number, { partitions?: PartitionRange[]; metadata?: Record<string, unknown> }>();

  constructor(ssc: StreamingContext, options?: InputOptions) {
    super(ssc, `${kindOf(new.target)}#${ssc.graph.inputStreams().length}`, [], options);
    this.id = ssc.graph.addInputStream(this as InputDStream<unknown>);
    ssc.inputAdded(this as InputDStream<unknown>);
  }

  /** Called by ssc.start() (awaited before the first batch); also when added to a running context. */
  abstract start(): void | Promise<void>;
  /** Called by ssc.stop(). */
  abstract stop(): void | Promise<void>;
  /** The batch ending at `time`: what arrived in (time - batchDuration, time]. undefined means empty. */
  abstract compute(time: number): RDD<T> | undefined;

  /** Checkpoint hook: the source's position (JSON-serialisable), for exactly-once recovery. */
  checkpointPosition?(): unknown;
  /** Checkpoint hook: continue from a position checkpointPosition() returned. */
  restorePosition?(position: unknown): void;

  /**
   * Batch-input hook: what batch `time` took (JSON data: file names, an ID range), or undefined. With a
   * checkpoint directory it is logged durably after the batch is generated and before its output runs.
   */
  selectionFor?(time: number): unknown;
  /** Batch-input hook: after a crash, batch `time` must take exactly `selection` when generated again. */
  restoreSelection?(time: number, selection: unknown): void;
  /**
   * Batch-input hook: after a crash, batch `time` (which took `selection`) completed and is not run
   * again; move the position past it (called in batch order, after restorePosition, before start).
   * Without it, recovery runs such batches again rather than skip them.
   */
  skipSelection?(time: number, selection: unknown): void;

  /** Graceful stop keeps generating batches while this is true (received data not yet in a batch). */
  hasPendingData(): boolean {
    return false;
  }

  /** Sources that know how many records a batch got (receivers) may report it for BatchInfo.numRecords. */
  protected reportRecords(time: number, numRecords: number): void {
    this.recordCounts.set(time, numRecords);
  }

  /**
   * As reportRecords, with what a partitioned log read per partition (and Spark's metadata map): the batch's
   * listener events carry it in BatchInfo.streamIdToInputInfo.
   */
  protected reportInput(time: number, numRecords: number, details: { partitions?: PartitionRange[]; metadata?: Record<string, unknown> }): void {
    this.recordCounts.set(time, numRecords);
    this.inputDetails.set(time, details);
  }

  /** Internal: the count reported for `time`, if any. */
  reportedRecords(time: number): number | undefined {
    return this.recordCounts.get(time);
  }

  /** Internal: the partitions and metadata reported for `time`, if any. */
  reportedInput(time: number): { partitions?: PartitionRange[]; metadata?: Record<string, unknown> } | undefined {
    return this.inputDetails.get(time);
  }

  override getOrCompute(time: number): RDD<T> | undefined {
    const had = this.generatedRDDs.has(time);
    const rdd = super.getOrCompute(time);
    if (rdd || had || !this.isTimeValid(time)) return rdd;
    const empty = this.ssc.sc.emptyRDD<T>();
    this.generatedRDDs.set(time, empty);
    return empty;
  }

  override clearMetadata(time: number): void {
    super.clearMetadata(time);
    const limit = time - this.rememberDuration;
    for (const t of this.recordCounts.keys()) if (t <= limit) this.recordCounts.delete(t);
    // Read when the batch was submitted; kept no longer than the batch.
    for (const t of this.inputDetails.keys()) if (t <= time) this.inputDetails.delete(t);
  }
}
