// Errors of the ML algorithms: what was wrong, where (batch and record), and what to do.

import { IllegalArgumentError, StreamingError } from "../errors.js";

/** A record a model cannot learn from or predict on: wrong dimension, NaN or infinite values, bad label. */
export class MLInputError extends StreamingError {
  constructor(
    message: string,
    /** The batch time (ms), when the record came from a stream. */
    readonly batchTime: number | undefined,
    /** The record's position in its batch, counting from 0. */
    readonly recordIndex: number | undefined,
  ) {
    super(message);
  }
}

/** A vector whose size is not the model's dimension. */
export class DimensionMismatchError extends MLInputError {}

/** A vector (or label) holding NaN or an infinite value. */
export class NonFiniteValueError extends MLInputError {}

/** trainOn/predictOn/latestModel before the model has initial weights or centres. */
export class ModelNotInitializedError extends IllegalArgumentError {}

/** A checkpointed model that does not fit the algorithm now named for it. */
export class ModelCheckpointError extends StreamingError {}

/** Spark's require(): the message starts as Spark's does ("requirement failed: ..."). */
export function requireArg(ok: boolean, message: string): void {
  if (!ok) throw new IllegalArgumentError(`requirement failed: ${message}`);
}

/** "batch 3000 ms, record 17" or "record 17" (for the messages above). */
export function where(batchTime: number | undefined, index: number): string {
  return batchTime === undefined ? `record ${index} (counting from 0)` : `batch ${batchTime} ms, record ${index} (counting from 0)`;
}
