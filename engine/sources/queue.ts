// queueStream: each batch takes RDDs (or arrays) from a queue the caller may keep pushing to.

import type { StreamingContext } from "../context.js";
import { RDD } from "../rdd.js";
import { InputDStream, type InputOptions } from "./input.js";

export class QueueInputDStream<T> extends InputDStream<T> {
  /** Items taken so far: the checkpoint position. */
  private consumed = 0;

  constructor(
    ssc: StreamingContext,
    readonly queue: Array<RDD<T> | T[]>,
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
      const all = this.queue.splice(0, this.queue.length).map((x) => this.toRDD(x));
      this.consumed += all.length;
      return this.ssc.sc.union(all);
    }
    return this.defaultRDD === undefined ? undefined : this.toRDD(this.defaultRDD);
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
