// queueStream: each batch takes RDDs (or arrays) from a queue the caller may keep pushing to.

import type { StreamingContext } from "../context.js";
import { RDD } from "../rdd.js";
import { InputDStream, type InputOptions } from "./input.js";

export class QueueInputDStream<T> extends InputDStream<T> {
  /** Items taken so far: the checkpoint position. */
  private consumed = 0;
  /** Batch times whose queue entry was null (no RDD), so that asking again does not take another entry. */
  private readonly noRDD = new Set<number>();

  constructor(
    ssc: StreamingContext,
    readonly queue: Array<RDD<T> | T[] | null>,
    readonly oneAtATime = true,
    readonly defaultRDD?: RDD<T> | T[],
    options?: InputOptions,
  ) {
    super(ssc, options);
  }

  start(): void {}
  stop(): void {}

  private toRDD(x: RDD<T> | T[]): RDD<T> {
    return x instanceof RDD ? x : this.ssc.sc.parallelize(x);
  }

  compute(): RDD<T> | undefined {
    if (this.queue.length > 0) {
      if (this.oneAtATime) {
        this.consumed++;
        return this.toRDD(this.queue.shift() as RDD<T> | T[]);
      }
      const all = this.queue.splice(0, this.queue.length);
      this.consumed += all.length;
      return this.ssc.sc.union(all.filter((x): x is RDD<T> | T[] => x !== null && x !== undefined).map((x) => this.toRDD(x)));
    }
    return this.defaultRDD === undefined ? undefined : this.toRDD(this.defaultRDD);
  }

  /** A null entry: no RDD for that batch (an input stream's compute returning undefined means empty). */
  override getOrCompute(time: number): RDD<T> | undefined {
    if (this.noRDD.has(time)) return undefined;
    const head = this.queue[0];
    if (this.oneAtATime && this.queue.length > 0 && (head === null || head === undefined) && !this.generatedAt(time) && this.isTimeValid(time)) {
      this.queue.shift();
      this.consumed++;
      this.noRDD.add(time);
      return undefined;
    }
    return super.getOrCompute(time);
  }

  override clearMetadata(time: number): void {
    super.clearMetadata(time);
    for (const t of this.noRDD) if (t <= time - this.rememberDuration) this.noRDD.delete(t);
  }

  checkpointPosition(): unknown {
    return { consumed: this.consumed };
  }

  /** Drops the items a previous run already consumed from the front of the (re-filled) queue. */
  restorePosition(position: unknown): void {
    const n = (position as { consumed?: number } | undefined)?.consumed ?? 0;
    this.queue.splice(0, Math.min(n, this.queue.length));
    this.consumed = n;
  }
}
