// A model trained by a stream is state: each batch's RDD is the model's summary after that batch,
// computed once (by trainOn's output job), and the model itself is checkpointed under the stream's
// stable name, so StreamingContext.getOrCreate resumes training from the checkpointed model.

import { StatefulDStream, type DStream, type NameOption } from "../dstream.js";
import type { RDD } from "../rdd.js";
import type { Sliced } from "../slicing.js";
import { ModelCheckpointError } from "./errors.js";

/** What an algorithm does for its training stream. */
export interface TrainingAlgorithm<T, S> {
  /** "StreamingKMeans", "StreamingLinearRegressionWithSGD", ...: the stream's kind and the checkpoint's tag. */
  readonly kind: string;
  /**
   * Trains on one batch (its records by partition). The new model is committed only when this returns:
   * a throw (a bad record) leaves the model as it was, so later batches go on from the last good model.
   */
  trainBatch(parts: T[][], time: number): Sliced<S>;
  /** The current model as plain data. */
  modelState(): unknown;
  /** Replaces the current model with one modelState() returned. */
  restoreModel(data: unknown): void;
  /** A summary of the current model (before any batch: of the initial model). */
  currentSummary(): S;
}

interface ModelCheckpoint {
  kind: string;
  model: unknown;
}

export class ModelTrainingDStream<T, S> extends StatefulDStream<S, S> {
  constructor(
    readonly parent: DStream<T>,
    private readonly algorithm: TrainingAlgorithm<T, S>,
    options: NameOption = {},
  ) {
    super(parent.ssc, `${algorithm.kind}.trainOn`, [parent as DStream<unknown>], options);
  }

  compute(time: number): RDD<S> | undefined {
    const data = this.parent.getOrCompute(time);
    // As Spark's foreachRDD: no RDD at this time, no update.
    if (!data) return undefined;
    const algorithm = this.algorithm;
    let failure: { error: unknown } | undefined;
    return this.ssc.sc.deferred<S>(function* () {
      // Runs once: a failed batch reports the same error again rather than training twice.
      if (failure) throw failure.error;
      try {
        const parts = yield* data.partsGen();
        const summary = yield* algorithm.trainBatch(parts, time);
        return [[summary]];
      } catch (error) {
        failure = { error };
        throw error;
      }
    });
  }

  /** One record: the summary of the current model. */
  state(): RDD<S> {
    return this.ssc.sc.parallelize([this.algorithm.currentSummary()], 1);
  }

  checkpointState(): ModelCheckpoint {
    return { kind: this.algorithm.kind, model: this.algorithm.modelState() };
  }

  restoreState(data: unknown): void {
    const d = data as Partial<ModelCheckpoint> | null;
    if (!d || d.kind !== this.algorithm.kind) {
      throw new ModelCheckpointError(
        `checkpoint: the state named "${this.name}" holds ${d?.kind ? `a ${d.kind} model` : "no model"}, not a ${this.algorithm.kind} model; ` +
          `give trainOn a different { name }, or use a new checkpoint directory`,
      );
    }
    this.algorithm.restoreModel(d.model);
  }
}
