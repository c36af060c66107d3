// The task a partitioned sink is running in (AsyncLocalStorage carries it through the sink's awaits). Kept
// apart, with no runtime imports, so that sources can ask for it without loading the group machinery.
import { AsyncLocalStorage } from "node:async_hooks";
import type { RedisConnectionOptions } from "../sources/redis.js";

/** What a partitioned sink sees while it runs inside a task. */
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

export const taskScopes = new AsyncLocalStorage<GroupTaskScope>();

/** The task a sink is running in, when it runs inside a group. */
export function currentGroupTask(): GroupTaskScope | undefined {
  return taskScopes.getStore();
}

/**
 * Marks a sink function that writes per partition (fenced, idempotent): it runs inside each task. The
 * marker's value is the Redis server it writes to, whose fence a new owner raises before it starts.
 */
export const PARTITIONED_SINK: unique symbol = Symbol.for("streambook.group.partitionedSink") as never;
