// A task: one partition of one sub-topology, with its own copy of that part of the pipeline (its keyed
// state is the state of its partition's keys only), its input (the log's partition, or the repartition
// streams addressed to its partition), and its checkpoint in the store. A batch reads exactly the records
// of batch T (the log's (T - batch, T], or every map-side task's entry for T), runs, and commits under the
// unit's epoch: map-side entries and checkpoint in one atomic script, so a replay finds them there.
import { performance } from "node:perf_hooks";
import { detachedContext, type StreamingContext } from "../context.js";
import { DStream, StatefulDStream } from "../dstream.js";
import { RDD } from "../rdd.js";
import { InputDStream } from "../sources/input.js";
import { runSliced } from "../slicing.js";
import { decodeCheckpoint, decodeValue, encodeCheckpoint, encodeValue, type CheckpointData } from "../checkpoint/format.js";
import type { RedisConnectionOptions } from "../sources/redis.js";
import type { LogReader } from "./log.js";
import type { GroupPlan, ReplayScope } from "./plan.js";
import { partitionOf } from "./partitioner.js";
import { GroupStore, type ScriptRedis } from "./store.js";
import { GroupFencedError } from "./errors.js";
import { markGroupTask, type GroupTaskScope } from "./scope.js";

type AnyStream = DStream<unknown>;
type Pair = [unknown, unknown];


/** Batches read ahead at most, when the input is behind (catching up) and batches are small. */
const READ_AHEAD = 20;
/** Records (or repartition payload bytes / 100) a batch may hold for the next read to look ahead. */
const SMALL_BATCH = 2000;

/** The log's partition p: batch T is what the log received in (T - batch, T]. */
class LogPartitionInput extends InputDStream<unknown> {
  private readonly ready = new Map<number, unknown[]>();
  private lastSize = 0;

  constructor(
    ctx: StreamingContext,
    name: string,
    private readonly reader: LogReader,
    private readonly partition: number,
    private readonly zeroTime: number,
  ) {
    super(ctx, { name });
  }

  start(): void {}
  stop(): void {}

  async prepare(time: number): Promise<boolean> {
    if (this.ready.has(time) || this.generatedRDDs.has(time)) return true;
    const b = this.ssc.batchDuration;
    const pending = this.prefetched;
    this.prefetched = undefined;
    if (pending?.time === time) {
      // Read while the previous batch ran. A read the log's clock had not passed yet, or that failed, is done again below.
      const r = await pending.read.catch(() => undefined);
      if (r) {
        this.prefetchedBatches++;
        this.ready.set(time, r.records);
        this.lastSize = r.records.length;
        this.prefetch(time);
        return true;
      }
    }
    const first = time === this.zeroTime + b;
    // Behind the log's clock with small batches (catching up): read several batches in one round trip.
    const behind = Math.floor((Date.now() - 1 - time) / b);
    const ahead = first || this.lastSize > SMALL_BATCH ? 0 : Math.max(0, Math.min(READ_AHEAD - 1, behind - 1));
    let r = await this.reader.read(this.partition, time - b, time + ahead * b, first);
    let to = time + ahead * b;
    if (!r && ahead > 0) {
      r = await this.reader.read(this.partition, time - b, time, first);
      to = time;
    }
    if (!r) return false;
    if (to === time) this.ready.set(time, r.records);
    else {
      for (let t = time; t <= to; t += b) this.ready.set(t, []);
      for (const rec of r.records) {
        const ms = Number((rec as { id: string }).id.split("-")[0]);
        const t = Math.max(time, Math.ceil(ms / b) * b);
        this.ready.get(t)!.push(rec);
      }
    }
    this.lastSize = this.ready.get(time)!.length;
    this.prefetch(to);
    return true;
  }

  /** Batches whose records were read while the batch before them ran. */
  prefetchedBatches = 0;

  /** The read of the batch after `time`, started while `time` runs (catching up on large batches). */
  private prefetched: { time: number; read: ReturnType<LogReader["read"]> } | undefined;

  /**
   * Catching up on large batches (small ones are read several at a time instead), the next batch is read while
   * this one runs, so the task does not wait on the log between batches. Only once the log's clock has passed
   * it: the read then finds the batch complete, as a read made later would.
   */
  private prefetch(time: number): void {
    const next = time + this.ssc.batchDuration;
    if (this.lastSize <= SMALL_BATCH || this.ready.has(next) || Date.now() - 1 <= next) return;
    const read = this.reader.read(this.partition, time, next, false);
    read.catch(() => {});
    this.prefetched = { time: next, read };
  }

  compute(time: number): RDD<unknown> | undefined {
    const items = this.ready.get(time);
    if (!items) throw new Error(`group task: batch ${time} of ${this.name} was not read before it ran`);
    this.ready.delete(time);
    this.reportRecords(time, items.length);
    return new RDD<unknown>(this.ssc.sc, { parts: items.length > 0 ? [items] : [] });
  }
}

/** The repartition streams addressed to this task: batch T is every map-side partition's entry for T, in partition order. */
class ExchangeInput extends InputDStream<Pair> {
  private readonly ready = new Map<number, Pair[][]>();
  private lastBytes = 0;

  constructor(
    ctx: StreamingContext,
    name: string,
    private readonly store: GroupStore,
    readonly keys: string[],
  ) {
    super(ctx, { name });
  }

  start(): void {}
  stop(): void {}

  async prepare(time: number): Promise<boolean> {
    if (this.ready.has(time) || this.generatedRDDs.has(time)) return true;
    const b = this.ssc.batchDuration;
    const behind = Math.floor((Date.now() - 1 - time) / b);
    const ahead = this.lastBytes > SMALL_BATCH * 100 ? 0 : Math.max(0, Math.min(READ_AHEAD - 1, behind - 1));
    const perKey = await this.store.readExchangeRange(this.keys, time, time + ahead * b);
    // A batch is there when every map-side partition has committed it.
    for (let t = time; t <= time + ahead * b; t += b) {
      if (perKey.some((m) => !m.has(t))) break;
      let bytes = 0;
      this.ready.set(
        t,
        perKey.map((m) => {
          const p = m.get(t)!;
          bytes += p.length;
          return decodeValue(p) as Pair[];
        }),
      );
      if (t === time) this.lastBytes = bytes;
    }
    return this.ready.has(time);
  }

  compute(time: number): RDD<Pair> | undefined {
    const parts = this.ready.get(time);
    if (!parts) throw new Error(`group task: batch ${time} of ${this.name} was not read before it ran`);
    this.ready.delete(time);
    let n = 0;
    for (const p of parts) n += p.length;
    this.reportRecords(time, n);
    return new RDD<Pair>(this.ssc.sc, { parts: parts.filter((p) => p.length > 0) });
  }
}

export interface TaskEnvironment {
  group: string;
  instanceId: string;
  plan: GroupPlan;
  store: GroupStore;
  readers: LogReader[];
  zeroTime: number;
  batchDuration: number;
  /** Batch time between checkpoints of a task with state (a stateless task checkpoints every batch: it is tiny). */
  checkpointInterval: number;
  sparkContext: StreamingContext["sc"];
  /** A user function failed inside a batch: the context reports it (awaitTermination rejects), the task goes on. */
  reportError(e: unknown): void;
  /** Sink servers other than the store, each with this unit's fence raised before the task writes. */
  sinkServer(connection: RedisConnectionOptions): ScriptRedis;
}

export class GroupTask {
  readonly ctx: StreamingContext;
  /** Last completed batch. */
  progress: number;
  /** Records this task read per batch time (for the instance's batch info), until reported. */
  readonly records = new Map<number, number>();
  /** Per batch, the RDDs this instance's outputs (pprint, chart, foreachRDD) read of this task, until they run. */
  readonly outputRDDs = new Map<number, Map<AnyStream, RDD<unknown>>>();
  private readonly copies = new Map<AnyStream, AnyStream>();
  private readonly inputs: (LogPartitionInput | ExchangeInput)[] = [];
  private readonly mapSides: { exchange: number; partitions: number; stream: DStream<Pair>; keys: string[] }[] = [];
  private lastCheckpoint: number;
  private readonly scope: GroupTaskScope;
  private cancelled = false;
  private readonly sinkFences = new Set<ScriptRedis>();
  private lastMark = 0;
  private readonly cpKey: string;
  /**
   * Where this task's batches spent their time (ms from start to end of each part, so tasks running side by side
   * overlap): reading the input, running the batch, committing; and how often the input was not there yet.
   */
  readonly timing = { batches: 0, notReady: 0, inputMs: 0, runMs: 0, commitMs: 0, prefetched: 0 };

  private constructor(
    private readonly env: TaskEnvironment,
    readonly unit: number,
    readonly sub: number,
    readonly partition: number,
    readonly epoch: number,
  ) {
    this.ctx = detachedContext(env.sparkContext, env.batchDuration);
    this.progress = env.zeroTime;
    this.lastCheckpoint = env.zeroTime;
    this.cpKey = env.store.keys.checkpoint(sub, partition);
    const partitions = env.plan.subs[sub]!.partitions;
    const self = this;
    this.scope = {
      group: env.group,
      instanceId: env.instanceId,
      unit,
      sub,
      partition,
      partitions,
      epoch,
      async writeRedisOutput(connection, stream, time, rows, maxLen) {
        const server = env.sinkServer(connection);
        if (!self.sinkFences.has(server)) {
          await env.store.acquireOn(server, unit, epoch);
          self.sinkFences.add(server);
        }
        return env.store.writeOutput(server, unit, epoch, stream, time, rows, maxLen);
      },
    };
  }

  /** The copy of `original` in this task's pipeline. */
  copyOf(original: AnyStream): AnyStream | undefined {
    return this.copies.get(original);
  }

  /** Builds the task's pipeline and restores its checkpoint; `epoch`'s fence is raised by the caller. */
  static async open(env: TaskEnvironment, unit: number, sub: number, partition: number, epoch: number): Promise<GroupTask> {
    const task = new GroupTask(env, unit, sub, partition, epoch);
    task.build();
    await task.restore();
    return task;
  }

  private build(): void {
    const { plan, store, readers, zeroTime } = this.env;
    const ctx = this.ctx;
    if (this.sub === 0) {
      plan.inputs.forEach((input, i) => {
        const copy = new LogPartitionInput(ctx, input.stream.name, readers[i]!, this.partition, zeroTime);
        this.copies.set(input.stream as AnyStream, copy as AnyStream);
        this.inputs.push(copy);
      });
    }
    const exchangeInputs = new Map<number, ExchangeInput>();
    for (const id of plan.subs[this.sub]!.inputs) {
      const x = plan.exchanges[id]!;
      const from = plan.subs[x.from]!.partitions;
      const keys = Array.from({ length: from }, (_, p) => store.keys.exchange(id, p, this.partition));
      const input = new ExchangeInput(ctx, `exchange#${id}`, store, keys);
      exchangeInputs.set(id, input);
      this.inputs.push(input);
    }
    const scope: ReplayScope = {
      ctx,
      sub: this.sub,
      partition: this.partition,
      copy: (original) => {
        const c = this.copies.get(original);
        if (!c) throw new Error(`group task: ${original.name} has no copy in sub-topology ${this.sub}`);
        return c;
      },
      exchangeInput: (id) => exchangeInputs.get(id)! as unknown as DStream<Pair>,
    };
    for (const step of plan.steps) {
      if (step.sub !== this.sub) continue;
      this.copies.set(step.original, step.build(scope));
    }
    for (const x of plan.exchanges) {
      if (x.from !== this.sub) continue;
      const partitions = plan.subs[x.to]!.partitions;
      const keys = Array.from({ length: partitions }, (_, q) => store.keys.exchange(x.id, this.partition, q));
      this.mapSides.push({ exchange: x.id, partitions, stream: x.combine(scope.copy(x.source)), keys });
    }
    for (const o of plan.outputs) if (o.sub === this.sub && o.perTask) o.perTask(scope);
  }

  private stateful(): StatefulDStream<unknown, unknown>[] {
    return this.ctx.graph.statefulStreams();
  }

  private async restore(): Promise<void> {
    const { zeroTime } = this.env;
    this.ctx.graph.reset(zeroTime, true);
    const stored = await this.env.store.readCheckpoint(this.cpKey);
    if (!stored) return;
    const data = decodeCheckpoint(stored.bytes, this.cpKey);
    for (const s of this.stateful()) {
      if (Object.prototype.hasOwnProperty.call(data.state, s.name)) s.restoreState(data.state[s.name]);
    }
    this.progress = data.batchTime;
    this.lastCheckpoint = data.batchTime;
    this.ctx.graph.lastCompletedTime = data.batchTime;
    // Windows read batches before the checkpoint again: the log (or the kept repartition entries) still has them.
    for (const input of this.inputs) {
      const b = this.env.batchDuration;
      for (let t = data.batchTime - input.rememberDuration + b; t <= data.batchTime; t += b) {
        if (t > zeroTime && input.rememberDuration > b) await input.prepare(t);
      }
    }
  }

  /** Stops taking part in batches (the unit moved); a running batch gives up at its next slice. */
  cancel(): void {
    this.cancelled = true;
  }

  get isCancelled(): boolean {
    return this.cancelled;
  }

  /**
   * Runs batch `time` (the next after progress) if its input is complete. Returns false when it is not yet
   * (the log's clock has not passed it, or a map-side task has not committed it). Throws GroupFencedError
   * when the unit was taken over.
   */
  async step(time: number): Promise<boolean> {
    const t0 = performance.now();
    for (const input of this.inputs) {
      if (!(await input.prepare(time))) {
        this.timing.notReady++;
        this.timing.inputMs += performance.now() - t0;
        return false;
      }
    }
    const t1 = performance.now();
    this.timing.inputMs += t1 - t0;
    this.timing.prefetched = 0;
    for (const input of this.inputs) if (input instanceof LogPartitionInput) this.timing.prefetched += input.prefetchedBatches;
    if (this.cancelled) return false;
    const isCancelled = (): boolean => this.cancelled;
    const graph = this.ctx.graph;
    // Partitioned sinks find their task (partition, epoch) by the batch they are handed.
    for (const out of graph.outputStreams()) {
      const rdd = out.parent.getOrCompute(time);
      if (rdd) markGroupTask(rdd, this.scope);
    }
    for (const job of graph.generateJobs(time)) {
      try {
        await job.run(isCancelled);
      } catch (e) {
        if (e instanceof GroupFencedError) throw e;
        if (this.cancelled) return false;
        this.env.reportError(e);
      }
    }
    // What this instance's outputs read, computed now: the batch's RDDs are forgotten once it completes.
    const watched = new Map<AnyStream, RDD<unknown>>();
    for (const o of this.env.plan.outputs) {
      if (o.perTask || o.sub !== this.sub) continue;
      const rdd = this.copies.get(o.parent)?.getOrCompute(time);
      if (!rdd) continue;
      try {
        await runSliced(rdd.computeGen(), isCancelled);
        watched.set(o.parent, rdd);
      } catch (e) {
        if (this.cancelled) return false;
        this.env.reportError(e);
      }
    }
    const entries: { key: string; payload: string }[] = [];
    for (const ms of this.mapSides) {
      const buckets: Pair[][] = Array.from({ length: ms.partitions }, () => []);
      try {
        const rdd = ms.stream.getOrCompute(time);
        if (rdd) {
          await runSliced(rdd.computeGen(), isCancelled);
          const parts = await runSliced(rdd.partsGen(), isCancelled);
          for (const part of parts) for (const kv of part) buckets[partitionOf(kv[0], ms.partitions)]!.push(kv);
        }
      } catch (e) {
        if (this.cancelled) return false;
        // A throwing user function: this batch sends nothing on (a replay throws the same way, so it stays consistent).
        this.env.reportError(e);
        for (const b of buckets) b.length = 0;
      }
      ms.keys.forEach((key, q) => entries.push({ key, payload: encodeValue(buckets[q]) }));
    }
    if (this.cancelled) return false;
    graph.batchCompleted(time);
    this.outputRDDs.set(time, watched);
    let n = 0;
    for (const input of this.inputs) if (input instanceof LogPartitionInput) n += input.reportedRecords(time) ?? 0;
    this.records.set(time, n);
    const stateful = this.stateful();
    const due = stateful.length === 0 || time - this.lastCheckpoint >= this.env.checkpointInterval;
    const bytes = due ? this.checkpointBytes(time) : undefined;
    const t2 = performance.now();
    this.timing.runMs += t2 - t1;
    this.timing.batches++;
    if (this.mapSides.length > 0) {
      await this.env.store.commitMap(this.unit, this.epoch, this.cpKey, time, bytes ?? Buffer.alloc(0), entries);
    } else if (bytes) {
      const trim = this.inputs.filter((i): i is ExchangeInput => i instanceof ExchangeInput);
      const keep = Math.max(this.env.batchDuration, ...trim.map((i) => i.rememberDuration));
      await this.env.store.checkpoint(
        this.unit,
        this.epoch,
        this.cpKey,
        time,
        bytes,
        trim.flatMap((i) => i.keys),
        time - keep + this.env.batchDuration,
      );
    } else if (Date.now() - this.lastMark > 100) {
      // Only the status panel reads the mark: a few a second are enough.
      await this.env.store.progress(this.unit, this.epoch, this.cpKey, time);
      this.lastMark = Date.now();
    }
    this.timing.commitMs += performance.now() - t2;
    if (bytes) this.lastCheckpoint = time;
    this.progress = time;
    return true;
  }

  private checkpointBytes(time: number): Buffer {
    const state: Record<string, unknown> = {};
    for (const s of this.stateful()) state[s.name] = s.checkpointState();
    const data: CheckpointData = {
      batchTime: time,
      batchDuration: this.env.batchDuration,
      zeroTime: this.env.zeroTime,
      lastCompletedBatch: time,
      pendingBatches: [],
      graph: { inputs: this.ctx.graph.inputStreams().map((s) => s.name), stateful: Object.keys(state) },
      state,
      positions: {},
      unmatched: { state: {}, positions: {} },
      writtenAt: new Date().toISOString(),
    };
    return encodeCheckpoint(data);
  }
}
