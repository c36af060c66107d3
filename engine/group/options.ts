// A group's options, and what an instance can tell about its group (ssc.group).
import type { RedisConnectionOptions } from "../sources/redis.js";
import { GroupOptionError } from "./errors.js";

export interface GroupOptions {
  /** The group's name: instances with the same name and coordinator share the work. */
  name: string;
  /** The coordination service: `etcd://HOST:PORT` (several: `etcd://h1:2379,h2:2379`). */
  coordinator: string;
  /**
   * How long an instance may be silent (paused, cut off) before its partitions go to others, in ms
   * (default 10 000; etcd counts whole seconds). Its writes after that are refused (fenced).
   */
  sessionTimeout?: number;
  /**
   * Where the group keeps its repartition streams, fences and per-partition checkpoints: a Redis URL or
   * connection options (default: the Redis of the first partitioned input; "the log itself").
   */
  store?: string | RedisConnectionOptions;
  /** Partitions of the repartition streams a re-key writes (default: as many as the input has). */
  partitions?: number;
  /** Batch time between checkpoints of a partition with state (default max(1 s, one batch)). */
  checkpointInterval?: number;
  /** After the session expired, join again as a new member (default true, as Kafka Streams does); false: stop with the error. */
  rejoin?: boolean;
  /** How long start-up waits for the coordinator (default 5 000 ms). */
  connectTimeout?: number;
  /**
   * A group starting from nothing (no partition owned yet) waits up to this long (default 1 000 ms), or until
   * `instances` have joined, before its first claims, so instances started together share the partitions
   * from the start instead of through a rebalance (Kafka's group.initial.rebalance.delay.ms).
   */
  initialRebalanceDelay?: number;
  /** How many instances are being started together (`--instances N` sets it); see initialRebalanceDelay. */
  instances?: number;
  /** This instance's id in the group (default: host-pid-random; must be unique). */
  instanceId?: string;
  /** The launcher's number for this instance (`streambook run --instances N` sets it). */
  launchIndex?: number;
}

/** Which instance this is, and how many there are. */
export interface GroupInstanceInfo {
  group: string;
  instanceId: string;
  /** 0-based position among the current members, in join order (the launcher's number until joined). */
  index: number | undefined;
  /** Members now (the launcher's count until joined). */
  count: number | undefined;
  /** Units (partition numbers) this instance owns now. */
  partitions: number[];
  /** Joined, but owns nothing (more instances than partitions). */
  standby: boolean;
  joined: boolean;
}

export interface GroupMemberStatus {
  instanceId: string;
  host: string;
  pid: number;
  joinedAt: number;
  launchIndex?: number;
  partitions: number[];
}

export interface GroupPartitionStatus {
  /** Sub-topology 0 is the log; the others are fed by repartition streams. */
  stage: number;
  partition: number;
  /** The log partition's stable id (stage 0), or the repartition partition's. */
  id: string;
  owner: string | undefined;
  epoch: number | undefined;
  /** Last batch the partition's task completed. */
  progress: number | undefined;
  /** Stage 0: records in the log after it (counted up to 10 000: `lagAtLeast` then). Later stages: batches behind the log's stage. */
  lagRecords?: number;
  lagAtLeast?: boolean;
  lagBatches?: number;
}

/** A change in the group, as the status panel lists them. */
export interface GroupEvent {
  time: number;
  kind: "joined" | "left" | "assigned" | "released" | "lost" | "fenced" | "session-expired" | "coordinator-unreachable" | "coordinator-back";
  instanceId?: string;
  unit?: number;
  epoch?: number;
  message: string;
}

export interface GroupStatus {
  group: string;
  coordinator: string;
  batchDuration: number;
  zeroTime: number;
  units: number;
  members: GroupMemberStatus[];
  partitions: GroupPartitionStatus[];
  /** The newest batch every partition of every stage has completed. */
  completedBatch: number | undefined;
  events: GroupEvent[];
  at: number;
}

export interface GroupListener {
  (event: GroupEvent): void;
}

/** ssc.group: this instance's view of its group. */
export interface GroupHandle {
  readonly name: string;
  readonly coordinator: string;
  readonly instanceId: string;
  /** Which instance this is and how many there are (the cell's question). */
  instance(): GroupInstanceInfo;
  /** The whole group as the coordinator and the store see it now: members, owners, progress and lag. */
  status(): Promise<GroupStatus>;
  /** Changes (joins, leaves, moves, fencing) as they happen; returns a remover. */
  onEvent(listener: GroupListener): () => void;
  /** The changes seen so far (the latest 200). */
  events(): GroupEvent[];
}

/** The group the environment names (`streambook run --instances/--group` sets these), if any. */
export function groupFromEnvironment(env: NodeJS.ProcessEnv = process.env): GroupOptions | undefined {
  const name = env.STREAMBOOK_GROUP;
  const coordinator = env.STREAMBOOK_COORDINATOR;
  if (!name && !coordinator) return undefined;
  if (!name || !coordinator) {
    throw new GroupOptionError("STREAMBOOK_GROUP and STREAMBOOK_COORDINATOR must be set together (a group name and etcd://HOST:PORT)");
  }
  const out: GroupOptions = { name, coordinator };
  const num = (v: string | undefined): number | undefined => (v !== undefined && v !== "" && Number.isFinite(Number(v)) ? Number(v) : undefined);
  out.sessionTimeout = num(env.STREAMBOOK_SESSION_TIMEOUT);
  out.launchIndex = num(env.STREAMBOOK_INSTANCE);
  if (env.STREAMBOOK_GROUP_STORE) out.store = env.STREAMBOOK_GROUP_STORE;
  return out;
}

export function checkGroupOptions(o: GroupOptions): void {
  if (typeof o.name !== "string" || !/^[A-Za-z0-9._-]{1,100}$/.test(o.name)) {
    throw new GroupOptionError(`group name ${JSON.stringify(o.name)}: use 1-100 letters, digits, ".", "_" or "-"`);
  }
  if (typeof o.coordinator !== "string") throw new GroupOptionError("group.coordinator: give etcd://HOST:PORT");
  for (const [k, v] of [
    ["sessionTimeout", o.sessionTimeout],
    ["partitions", o.partitions],
    ["checkpointInterval", o.checkpointInterval],
    ["connectTimeout", o.connectTimeout],
    ["instances", o.instances],
  ] as const) {
    if (v !== undefined && !(typeof v === "number" && v > 0 && Number.isFinite(v))) throw new GroupOptionError(`group.${k} must be a positive number, got ${String(v)}`);
  }
}
