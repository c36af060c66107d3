// An async transform: the batch's RDD comes from a function that returns a promise (a SQL query, I/O).
// Generating a batch only registers the step; it runs when the batch's jobs run (after the previous
// batch's), computes the parent's RDD in slices, awaits the function, and its result fills this batch.
import { DStream, operators, type NameOption } from "./dstream.js";
import { StreamingError } from "./errors.js";
import type { RDD } from "./rdd.js";
import { runSliced } from "./slicing.js";

/** A batch of an async transform was read before its step ran (it runs inside the batch's jobs). */
export class AsyncStepPendingError extends StreamingError {}

export class AsyncTransformedDStream<T, U> extends DStream<U> {
  private readonly results = new Map<number, { rdd: RDD<U> } | { error: unknown }>();

  constructor(
    readonly parent: DStream<T>,
    private readonly fn: (rdd: RDD<T>, time: number) => Promise<RDD<U>> | RDD<U>,
    options?: NameOption,
  ) {
    super(parent.ssc, "transform", [parent as DStream<unknown>], options);
  }

  compute(time: number): RDD<U> | undefined {
    const input = this.parent.getOrCompute(time);
    if (!input) return undefined;
    this.ssc.graph.addBatchPreparation(time, async () => {
      try {
        await runSliced(input.computeGen());
        const out = await this.fn(input, time);
        await runSliced(out.computeGen());
        this.results.set(time, { rdd: out });
      } catch (error) {
        this.results.set(time, { error });
      }
    });
    const results = this.results;
    const name = this.name;
    return this.ssc.sc.deferred<U>(function* () {
      const r = results.get(time);
      if (!r) throw new AsyncStepPendingError(`${name} at ${time} ms: the async step has not run; read this stream's RDDs from outputs or with latest()`);
      if ("error" in r) throw r.error;
      return yield* r.rdd.partsGen();
    });
  }

  override clearMetadata(time: number): void {
    super.clearMetadata(time);
    const limit = time - this.rememberDuration;
    for (const t of this.results.keys()) if (t <= limit) this.results.delete(t);
  }

  override clearAll(): void {
    super.clearAll();
    this.results.clear();
  }
}

operators.asyncTransform = <T, U>(parent: DStream<T>, fn: (rdd: RDD<T>, time: number) => Promise<RDD<U>> | RDD<U>, options?: NameOption) =>
  new AsyncTransformedDStream<T, U>(parent, fn, options);
