// What can go wrong when a pipeline runs as a group: each a named class whose message says what to do.
import { StreamingError } from "../errors.js";

/** The coordination service (etcd) cannot be reached, at start or for longer than the session timeout. */
export class GroupCoordinatorUnavailableError extends StreamingError {}

/**
 * This instance's session with the coordinator expired (it was paused or cut off for longer than the
 * session timeout): its partitions went to other instances, and its writes under the old epoch are refused.
 */
export class GroupSessionExpiredError extends StreamingError {}

/** A write for a partition was refused: a newer owner (a higher epoch from the coordinator) holds it. */
export class GroupFencedError extends StreamingError {
  constructor(
    message: string,
    readonly unit: number,
    readonly epoch: number,
    readonly currentEpoch: number,
  ) {
    super(message);
  }
}

/** The group's stored settings (batch interval, partitions, pipeline shape) differ from this instance's. */
export class GroupConfigMismatchError extends StreamingError {}

/** The pipeline uses something a group cannot run (a non-partitioned source, an operator without a plan). */
export class GroupUnsupportedError extends StreamingError {}

/** A bad coordinator URL or group option. */
export class GroupOptionError extends StreamingError {}
