// What a group needs of a partitioned log source: stable partition ids, and each partition's records by
// the log's own clock. A group batch at time T holds, per partition, the records the log received in
// (T - batch, T]: every instance, and every replay after a failure, reads exactly the same batch.
import type { RedisConnectionOptions } from "../sources/redis.js";

/** How a source describes itself to a group (sources that can be partitioned implement groupSource()). */
export interface GroupSourceSpec {
  kind: "redis";
  /** Stable ids in partition order: index i is partition i. For Redis, the stream keys. */
  partitionIds: readonly string[];
  connection: RedisConnectionOptions;
  /** "0" (everything), "$" (only what arrives after the group starts) or an entry ID to start after. */
  startId: string;
}

/** A source a group can run: it says how it is partitioned. */
export interface GroupSource {
  groupSource(): GroupSourceSpec;
}

export function isGroupSource(x: unknown): x is GroupSource {
  return typeof (x as { groupSource?: unknown }).groupSource === "function";
}

/** Reads one partitioned source by log time. */
export interface LogReader {
  /**
   * The group's zero time for a group created now: batch zero+batch is the first. For "0" it is the batch
   * before the one holding the log's first record, so two runs over the same log cut the same batches.
   */
  zeroTime(now: number, batchDuration: number): Promise<number>;
  /**
   * Records of partition `p` with log time in (from, to] (`first`: also everything the start position lets
   * in before `from`); undefined while the log's clock has not passed `to` (more could still arrive).
   */
  read(p: number, from: number, to: number, first: boolean): Promise<{ records: unknown[]; end: string | undefined } | undefined>;
  /** How far behind partition `p` is: records after log time `after`, and the log's newest record time. */
  lag(p: number, after: number): Promise<{ records: number; newest: number | undefined }>;
  close(): void;
}
