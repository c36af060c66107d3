// Engine errors: each a class with a searchable name and a message that says what to do.

export class StreamingError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** An operation that the context's current state ("initialized", "active", "stopped") does not allow. */
export class StreamingContextStateError extends StreamingError {}

/** A window or slide duration that is not a positive multiple of the parent's slide (the batch interval). */
export class InvalidDurationError extends StreamingError {}

/** A wrong argument to an operator, caught when the pipeline is defined. */
export class IllegalArgumentError extends StreamingError {}

/** A user function threw inside a batch; `cause` holds the original error. */
export class BatchFailedError extends StreamingError {
  constructor(
    readonly batchTime: number,
    readonly outputName: string,
    cause: unknown,
  ) {
    super(`batch ${batchTime} ms failed in ${outputName}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
  }
}

/** State.update()/remove() called on a key that is timing out, or State.get() on a missing state. */
export class StateError extends StreamingError {}

/** An RDD read synchronously while a running batch is computing it in slices. */
export class RDDBusyError extends StreamingError {}

/** An empty RDD asked for a value that needs at least one record (reduce, first). */
export class EmptyRDDError extends StreamingError {}

export function errorMessage(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}

/** A transform, transformWith or union whose parent stream has no RDD at a batch time (Spark raises too). */
export class MissingParentRDDError extends StreamingError {}

/** A transform function returned null or undefined instead of an RDD (return sc.emptyRDD() for nothing). */
export class NullTransformResultError extends StreamingError {}

/** A broadcast variable used after destroy(). */
export class BroadcastDestroyedError extends StreamingError {}
