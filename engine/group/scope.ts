// Which task of a group an RDD belongs to, so that a partitioned sink can write under that task's partition
// and epoch. Kept apart, with no runtime imports, so that sources can ask without loading the group machinery.
// (Keyed by the RDD rather than carried in an AsyncLocalStorage: a notebook runs each foreachRDD function in
// the async context of the cell that defined it, which would hide the task.)
import type { RedisConnectionOptions } from "../sources/redis.js";

/** What a partitioned sink sees while it writes one task's batch. */
export interface GroupTaskScope {
  group: string;
  instanceId: string;
  unit: number;
  sub: number;
  partition: number;
  partitions: number;
  epoch: number;
  /** Writes one batch of a sink's output for this partition to `stream` (fenced, idempotent by batch time). */
  writeRedisOutput(connection: RedisConnectionOptions, stream: string, time: number, rows: Record<string, string>[], maxLen?: number): Promise<number>;
}

const scopes = new WeakMap<object, GroupTaskScope>();

/** Internal (engine/group): `rdd` is a batch of this task's. */
export function markGroupTask(rdd: object, scope: GroupTaskScope): void {
  scopes.set(rdd, scope);
}

/** The group task whose batch `rdd` is, when a sink runs inside a group (undefined otherwise). */
export function groupTaskOf(rdd: object): GroupTaskScope | undefined {
  return scopes.get(rdd);
}

/**
 * Marks a sink as partitioned: put it in foreachRDD's options (`{ [PARTITIONED_SINK]: connection }`). In a
 * group the sink then runs inside each task, on that partition's batch, and a new owner raises its fence on
 * the sink's server before it starts.
 */
export const PARTITIONED_SINK: unique symbol = Symbol.for("streambook.group.partitionedSink") as never;
