// DStream<T>: a sequence of RDDs, one per batch time. Each operator is one small class with its
// dependencies, slide duration and compute(time), as in Spark; windows and state live in window.ts
// and state.ts and plug in through `operators` (so this file has no runtime import of them).

import * as fs from "node:fs";
import * as path from "node:path";
import type { StreamingContext } from "./context.js";
import { IllegalArgumentError, InvalidDurationError, MissingParentRDDError, NullTransformResultError, StreamingContextStateError } from "./errors.js";
import { StorageLevel } from "./storage.js";
import { presenter, type ChartOptions, type ChartRow } from "./presenter.js";
import { DEFAULT_MAX_ROWS } from "./chart.js";
import { formatRecord, JUPYTER_DISPLAY, recordsBundle, RDD, type MimeBundle } from "./rdd.js";
import { formatTime } from "./duration.js";
import { CHUNK, runSliced, type Sliced } from "./slicing.js";
import type { MapWithStateDStream, StateSpec } from "./state.js";
import type { EventTimeOperators, WatermarkedDStream } from "./eventtime/index.js";
import type { StorageLevelName } from "./storage.js";

export interface NameOption {
  /** A stable name: checkpoints match state by it across runs. Defaults to a name derived from the pipeline. */
  name?: string;
}

export interface UpdateStateOptions<K, S> extends NameOption {
  initialRDD?: RDD<[K, S]>;
  numPartitions?: number;
}

export interface ReduceWindowOptions<K, V> extends NameOption {
  numPartitions?: number;
  /** Keeps only the pairs for which it returns true (e.g. drop keys whose count fell to 0). */
  filterFunc?: (kv: [K, V]) => boolean;
}

type Maybe<T> = T | undefined;

/** Constructors of the operators that live in other files; window.ts and state.ts fill this in. */
export const operators: {
  window?: <T>(parent: DStream<T>, windowDuration: number, slideDuration: number) => DStream<T>;
  reducedWindow?: <K, V>(
    parent: DStream<[K, V]>,
    f: (a: V, b: V) => V,
    inv: (a: V, b: V) => V,
    windowDuration: number,
    slideDuration: number,
    options: ReduceWindowOptions<K, V>,
  ) => DStream<[K, V]>;
  updateState?: <K, V, S>(parent: DStream<[K, V]>, update: StateUpdate<K, V, S>, options: UpdateStateOptions<K, S>) => StatefulDStream<[K, S], [K, S]>;
  mapWithState?: <K, V, S, M>(parent: DStream<[K, V]>, spec: StateSpec<K, V, S, M>, options: NameOption) => MapWithStateDStream<K, V, S, M>;
  /** engine/eventtime fills this in: withWatermark and the event-window operators. */
  eventTime?: EventTimeOperators;
  asyncTransform?: <T, U>(parent: DStream<T>, fn: (rdd: RDD<T>, time: number) => Promise<RDD<U>> | RDD<U>, options?: NameOption) => DStream<U>;
} = {};

/** True for `async function` and `async () =>` (their constructor is AsyncFunction). */
export function isAsyncFunction(fn: unknown): boolean {
  return typeof fn === "function" && Object.prototype.toString.call(fn) === "[object AsyncFunction]";
}

/**
 * updateStateByKey's function in one of Spark's forms: per key `(values, state, key)`, per key with
 * the batch time `(time, key, values, state)`, or over a whole partition's iterator.
 */
export type StateUpdate<K, V, S> =
  | { kind: "key"; f: (values: V[], state: S | undefined, key: K) => S | undefined }
  | { kind: "timeKey"; f: (time: number, key: K, values: V[], state: S | undefined) => S | undefined }
  | { kind: "partition"; f: (records: IterableIterator<[K, V[], S | undefined]>) => Iterable<[K, S]> }
  | { kind: "timePartition"; f: (time: number, records: IterableIterator<[K, V[], S | undefined]>) => Iterable<[K, S]> };

/** Options of updateStateByKey's iterator forms. */
export interface UpdateStateIteratorOptions<K, S> extends UpdateStateOptions<K, S> {
  /** Spark's flag: the partitioning of the state RDD is kept (always true here: one partition of pairs). */
  rememberPartitioner?: boolean;
}

function need<F>(f: F | undefined, what: string): F {
  if (!f) throw new IllegalArgumentError(`${what} is not loaded: import the engine through its index ("streambook" / engine/index.js)`);
  return f;
}

export abstract class DStream<T> {
  readonly ssc: StreamingContext;
  /** Unique within the context; input streams also have Spark's stream `id`. */
  readonly uid: number;
  /** Stable identity for checkpoints: explicit, or derived from the pipeline's shape. */
  readonly name: string;
  readonly dependencies: DStream<unknown>[];
  protected readonly generatedRDDs = new Map<number, RDD<T>>();
  /** Longest span of past RDDs a child operator (a window) needs. */
  private requiredRemember = 0;
  /** Set by cache()/persist(): each batch's RDD is kept whole and shared by every consumer. */
  private cacheRDDs = false;
  private storageLevel: StorageLevel = StorageLevel.NONE;
  /** Set by checkpoint(interval): how often this stream's data should be checkpointed. */
  checkpointDuration?: number;
  /**
   * Each batch restates a running total per key (updateStateByKey, stateSnapshots(), windowed reductions
   * by key, and filter/mapValues of those): chart() then defaults to "update" mode, the latest value per
   * key, since stacking every batch's restated total would overstate it.
   */
  restatesKeyedTotals = false;

  constructor(ssc: StreamingContext, kind: string, dependencies: DStream<unknown>[], options?: NameOption) {
    this.ssc = ssc;
    this.dependencies = dependencies;
    for (const d of dependencies) {
      if (d.ssc !== ssc) throw new IllegalArgumentError(`${kind}: all streams must belong to the same StreamingContext`);
    }
    this.uid = ssc.graph.nextUid();
    const base = options?.name ?? (dependencies.length ? `${kind}(${dependencies.map((d) => d.name).join(",")})` : kind);
    this.name = ssc.graph.claimName(base);
    ssc.graph.addStream(this as DStream<unknown>);
  }

  /** Time between two of this stream's RDDs (the batch interval, or a window's slide). */
  get slideDuration(): number {
    const d = this.dependencies[0];
    return d ? d.slideDuration : this.ssc.batchDuration;
  }

  /** The batch ending at `time`; undefined when there is no RDD at that time. */
  abstract compute(time: number): RDD<T> | undefined;

  /** How long RDDs are kept after their batch: at least one slide, more when a window or remember() asks. */
  get rememberDuration(): number {
    return Math.max(this.slideDuration, this.requiredRemember, this.ssc.graph.rememberDuration ?? 0);
  }

  /** Internal: a child needs this stream's RDDs for `duration` (windows). */
  requireRemember(duration: number): void {
    if (duration > this.requiredRemember) {
      this.requiredRemember = duration;
      for (const d of this.dependencies) d.requireRemember(duration);
    }
  }

  isTimeValid(time: number): boolean {
    const zero = this.ssc.graph.zeroTime;
    if (zero === undefined || time <= zero) return false;
    return (time - zero) % this.slideDuration === 0;
  }

  /** The RDD at `time`, computed once and kept for rememberDuration. */
  getOrCompute(time: number): RDD<T> | undefined {
    const cached = this.generatedRDDs.get(time);
    if (cached) return cached;
    if (!this.isTimeValid(time)) return undefined;
    const rdd = this.compute(time);
    if (rdd) {
      if (this.cacheRDDs) rdd.cache();
      this.generatedRDDs.set(time, rdd);
    }
    return rdd;
  }

  /** Internal: drops RDDs older than the remember duration (called after each batch). */
  clearMetadata(time: number): void {
    const limit = time - this.rememberDuration;
    for (const t of this.generatedRDDs.keys()) if (t <= limit) this.generatedRDDs.delete(t);
  }

  /** Internal (recovery): puts back the RDD of `time`, as if it had been generated. */
  restoreRDD(time: number, rdd: RDD<T>): void {
    this.generatedRDDs.set(time, rdd);
  }

  /** Internal: forget every generated RDD (restart). */
  clearAll(): void {
    this.generatedRDDs.clear();
  }

  /** Times of the RDDs this stream holds now. */
  generatedTimes(): number[] {
    return [...this.generatedRDDs.keys()].sort((a, b) => a - b);
  }

  // ---- notebook hooks -----------------------------------------------------------------------

  /**
   * The RDD of the latest completed batch (an empty RDD before the first one). Safe to call from
   * outside the pipeline while it runs: RDDs are immutable.
   */
  latest(): RDD<T> {
    const last = this.ssc.graph.lastCompletedTime;
    let best: number | undefined;
    for (const t of this.generatedRDDs.keys()) if ((last === undefined || t <= last) && (best === undefined || t > best)) best = t;
    return best === undefined ? this.ssc.sc.emptyRDD<T>() : (this.generatedRDDs.get(best) as RDD<T>);
  }

  toString(): string {
    return `DStream ${this.name}`;
  }

  [JUPYTER_DISPLAY](): MimeBundle {
    const last = this.ssc.graph.lastCompletedTime;
    const title = `DStream ${this.name}: every ${this.slideDuration} ms, context ${this.ssc.state}${
      last === undefined ? ", no batch yet" : `, latest batch ${formatTime(last)}`
    }`;
    const head = this.latest().take(11);
    return recordsBundle(title, head.slice(0, 10), head.length > 10);
  }

  // ---- checks ---------------------------------------------------------------------------------

  protected checkWindow(op: string, windowDuration: number, slideDuration: number): void {
    const slide = this.slideDuration;
    for (const [what, d] of [
      ["window duration", windowDuration],
      ["slide duration", slideDuration],
    ] as const) {
      if (!(d > 0) || d % slide !== 0) {
        throw new InvalidDurationError(
          `${op}: the ${what} (${d} ms) must be a positive multiple of the parent's slide duration (${slide} ms, the batch interval); use e.g. Seconds(n) with a whole number of batches`,
        );
      }
    }
  }

  // ---- transformations ----------------------------------------------------------------------

  /**
   * Applies fn to each batch's RDD (internal building block of most operators). As Spark's
   * MappedDStream and friends, a batch for which this stream has no RDD has none downstream either.
   */
  private derive<U>(kind: string, fn: (rdd: RDD<T>, time: number) => RDD<U>, options?: NameOption): DStream<U> {
    return new DerivedDStream<T, U>(this, kind, fn, options);
  }

  map<U>(f: (x: T) => U): DStream<U> {
    return this.derive("map", (rdd) => rdd.map(f));
  }

  flatMap<U>(f: (x: T) => Iterable<U>): DStream<U> {
    return this.derive("flatMap", (rdd) => rdd.flatMap(f));
  }

  filter(f: (x: T) => boolean): DStream<T> {
    return restating(this.derive("filter", (rdd) => rdd.filter(f)), this.restatesKeyedTotals);
  }

  glom(): DStream<T[]> {
    return this.derive("glom", (rdd) => rdd.glom());
  }

  mapPartitions<U>(f: (records: IterableIterator<T>) => Iterable<U>): DStream<U> {
    return this.derive("mapPartitions", (rdd) => rdd.mapPartitions(f));
  }

  repartition(numPartitions: number): DStream<T> {
    return this.derive("repartition", (rdd) => rdd.repartition(numPartitions));
  }

  /**
   * Spark's union: records of both streams, batch by batch (the slide durations must match). As in
   * Spark, a batch for which one of the streams has no RDD fails with MissingParentRDDError.
   */
  union(...others: DStream<T>[]): DStream<T> {
    return new UnionDStream<T>(this.ssc, [this, ...others]);
  }

  /** One record per batch: the number of records (0 for an empty batch). */
  count(): DStream<number> {
    return this.derive("count", (rdd) =>
      rdd.sc.deferred(function* () {
        let n = rdd.countIfKnown();
        if (n === undefined) {
          let c = 0;
          yield* rdd.forEachRecord(() => void c++);
          n = c;
        }
        return [[n]];
      }),
    );
  }

  /** One record per non-empty batch: the records reduced with f. */
  reduce(f: (a: T, b: T) => T): DStream<T> {
    return this.derive("reduce", (rdd) =>
      rdd
        .map((x) => [0, x] as [number, T])
        .reduceByKey(f)
        .map((kv) => kv[1]),
    );
  }

  countByValue(numPartitions?: number): DStream<[T, number]> {
    return this.derive("countByValue", (rdd) => rdd.map((x) => [x, 1] as [T, number]).reduceByKey((a, b) => a + b, numPartitions));
  }

  /**
   * fn(rdd, time) makes each batch's RDD. As Spark's TransformedDStream: fn must return an RDD
   * (sc.emptyRDD() for nothing), and a batch for which this stream has no RDD fails. An `async` fn
   * (returning a promise: SQL, I/O) runs when the batch's jobs run, batch after batch in order, and
   * the batch waits for it.
   */
  transform<U>(fn: (rdd: RDD<T>, time: number) => RDD<U> | Promise<RDD<U>>): DStream<U> {
    if (isAsyncFunction(fn)) return need(operators.asyncTransform, "async transform")(this, fn);
    return new TransformedDStream<U>(this.ssc, "transform", [this as DStream<unknown>], (rdds, time) => {
      const out = fn(rdds[0] as RDD<T>, time) as RDD<U> | Promise<RDD<U>> | null | undefined;
      if (out !== null && out !== undefined && !(out instanceof RDD)) {
        throw new IllegalArgumentError("transform: the function returned a promise or a non-RDD; declare it `async` so it runs with the batch's jobs, or return an RDD");
      }
      return out as RDD<U>;
    });
  }

  transformWith<U, W>(other: DStream<U>, fn: (rdd: RDD<T>, other: RDD<U>, time: number) => RDD<W>): DStream<W> {
    return new TransformedDStream<W>(
      this.ssc,
      "transformWith",
      [this as DStream<unknown>, other as DStream<unknown>],
      (rdds, time) => fn(rdds[0] as RDD<T>, rdds[1] as RDD<U>, time),
    );
  }

  /** All records of the batches in (T - windowDuration, T], every slideDuration (default: this stream's slide). */
  window(windowDuration: number, slideDuration: number = this.slideDuration): DStream<T> {
    this.checkWindow("window", windowDuration, slideDuration);
    return need(operators.window, "window")(this, windowDuration, slideDuration);
  }

  /** The number of records in each window (incremental: computed with an inverse reduce). */
  countByWindow(windowDuration: number, slideDuration: number = this.slideDuration): DStream<number> {
    return this.map(() => 1).reduceByWindow(
      (a, b) => a + b,
      (a, b) => a - b,
      windowDuration,
      slideDuration,
    );
  }

  /** Records of each window reduced with f; with invFunc the window is updated incrementally. */
  reduceByWindow(f: (a: T, b: T) => T, windowDuration: number, slideDuration?: number): DStream<T>;
  reduceByWindow(f: (a: T, b: T) => T, invFunc: (a: T, b: T) => T, windowDuration: number, slideDuration?: number): DStream<T>;
  reduceByWindow(
    f: (a: T, b: T) => T,
    b: number | ((a: T, b: T) => T),
    c?: number,
    d?: number,
  ): DStream<T> {
    if (typeof b === "number") {
      const slide = c ?? this.slideDuration;
      this.checkWindow("reduceByWindow", b, slide);
      return this.reduce(f).window(b, slide).reduce(f);
    }
    const windowDuration = c as number;
    const slide = d ?? this.slideDuration;
    this.checkWindow("reduceByWindow", windowDuration, slide);
    return this.map((x) => [0, x] as [number, T])
      .reduceByKeyAndWindow(f, b, windowDuration, slide)
      .map((kv) => kv[1]);
  }

  /** Count of each distinct value in each window (incremental; values whose count falls to 0 are dropped). */
  countByValueAndWindow(windowDuration: number, slideDuration: number = this.slideDuration, numPartitions?: number): DStream<[T, number]> {
    return this.map((x) => [x, 1] as [T, number]).reduceByKeyAndWindow(
      (a, b) => a + b,
      (a, b) => a - b,
      windowDuration,
      slideDuration,
      { numPartitions, filterFunc: (kv) => kv[1] !== 0 },
    );
  }

  /**
   * Spark's slice: the RDDs of every valid time in [fromTime, toTime] (both floored to this stream's
   * slide), computing those not generated or no longer remembered. Before the context has started
   * there is no zero time to align to: it throws, as Spark does.
   */
  slice(fromTime: number, toTime: number): RDD<T>[] {
    const zero = this.ssc.graph.zeroTime;
    if (zero === undefined) {
      throw new StreamingContextStateError(`${this} has not been initialized: slice() needs a started StreamingContext (call ssc.start() first)`);
    }
    const slide = this.slideDuration;
    const floor = (t: number) => t - ((((t - zero) % slide) + slide) % slide);
    const out: RDD<T>[] = [];
    for (let t = floor(fromTime); t <= floor(toTime); t += slide) {
      if (t < zero) continue;
      const r = this.getOrCompute(t);
      if (r) out.push(r);
    }
    return out;
  }

  /** Internal: the RDD this stream holds for `time`, without computing anything. */
  generatedAt(time: number): RDD<T> | undefined {
    return this.generatedRDDs.get(time);
  }

  /** Internal: RDDs at every valid time in [fromTime, toTime], computing those not yet generated (windows). */
  sliceCompute(fromTime: number, toTime: number): RDD<T>[] {
    const slide = this.slideDuration;
    const zero = this.ssc.graph.zeroTime ?? 0;
    const align = (t: number) => t - ((((t - zero) % slide) + slide) % slide);
    const out: RDD<T>[] = [];
    for (let t = align(fromTime) < fromTime ? align(fromTime) + slide : align(fromTime); t <= toTime; t += slide) {
      const r = this.getOrCompute(t);
      if (r) out.push(r);
    }
    return out;
  }

  /** Each batch's RDD is computed once and shared by all operators that read it (Spark's cache). */
  cache(): this {
    return this.persist();
  }

  /**
   * Spark's persist(level). Every storage level means "kept in memory" here (there is no disk or
   * serialised store in one Node process); StorageLevel.NONE undoes cache().
   */
  persist(level: StorageLevel | StorageLevelName = StorageLevel.MEMORY_ONLY_SER): this {
    const l = typeof level === "string" ? StorageLevel.fromString(level) : level;
    if (!(l instanceof StorageLevel)) throw new IllegalArgumentError(`persist(${String(level)}): give a StorageLevel, e.g. StorageLevel.MEMORY_ONLY`);
    this.storageLevel = l;
    this.cacheRDDs = l !== StorageLevel.NONE;
    return this;
  }

  /** The storage level persist() set (StorageLevel.NONE when not persisted). */
  getStorageLevel(): StorageLevel {
    return this.storageLevel;
  }

  /** Marks the stream for periodic checkpointing of its data at `interval` ms. */
  checkpoint(interval: number): this {
    if (!(interval > 0) || interval % this.slideDuration !== 0) {
      throw new InvalidDurationError(`checkpoint(${interval}): the interval must be a positive multiple of the slide duration (${this.slideDuration} ms)`);
    }
    this.checkpointDuration = interval;
    return this;
  }

  // ---- pairs ------------------------------------------------------------------------------
  // Keys compare by value for tuples (arrays), plain objects and Dates, as Spark compares Python
  // tuples and case classes; other objects by identity (engine/keys.ts). Outputs keep the first-seen key
  // (a tuple key of primitives as the engine's equal copy: keptPair says why).

  mapValues<K, V, U>(this: DStream<[K, V]>, f: (v: V) => U): DStream<[K, U]> {
    return restating(this.derive("mapValues", (rdd) => rdd.mapValues(f)), this.restatesKeyedTotals);
  }

  flatMapValues<K, V, U>(this: DStream<[K, V]>, f: (v: V) => Iterable<U>): DStream<[K, U]> {
    return this.derive("flatMapValues", (rdd) => rdd.flatMapValues(f));
  }

  groupByKey<K, V>(this: DStream<[K, V]>, numPartitions?: number): DStream<[K, V[]]> {
    return this.derive("groupByKey", (rdd) => rdd.groupByKey(numPartitions));
  }

  reduceByKey<K, V>(this: DStream<[K, V]>, f: (a: V, b: V) => V, numPartitions?: number): DStream<[K, V]> {
    return this.derive("reduceByKey", (rdd) => rdd.reduceByKey(f, numPartitions));
  }

  combineByKey<K, V, C>(
    this: DStream<[K, V]>,
    createCombiner: (v: V) => C,
    mergeValue: (c: C, v: V) => C,
    mergeCombiners: (a: C, b: C) => C,
    numPartitions?: number,
  ): DStream<[K, C]> {
    return this.derive("combineByKey", (rdd) => rdd.combineByKey(createCombiner, mergeValue, mergeCombiners, numPartitions));
  }

  private joinLike<W, R>(other: DStream<W>, kind: string, fn: (a: RDD<T>, b: RDD<W>) => RDD<R>): DStream<R> {
    return new TransformedDStream<R>(this.ssc, kind, [this as DStream<unknown>, other as DStream<unknown>], (rdds) =>
      fn(rdds[0] as RDD<T>, rdds[1] as RDD<W>),
    );
  }

  join<K, V, W>(this: DStream<[K, V]>, other: DStream<[K, W]>, numPartitions?: number): DStream<[K, [V, W]]> {
    return this.joinLike(other, "join", (a, b) => a.join(b, numPartitions));
  }

  leftOuterJoin<K, V, W>(this: DStream<[K, V]>, other: DStream<[K, W]>, numPartitions?: number): DStream<[K, [V, W | undefined]]> {
    return this.joinLike(other, "leftOuterJoin", (a, b) => a.leftOuterJoin(b, numPartitions));
  }

  rightOuterJoin<K, V, W>(this: DStream<[K, V]>, other: DStream<[K, W]>, numPartitions?: number): DStream<[K, [V | undefined, W]]> {
    return this.joinLike(other, "rightOuterJoin", (a, b) => a.rightOuterJoin(b, numPartitions));
  }

  fullOuterJoin<K, V, W>(
    this: DStream<[K, V]>,
    other: DStream<[K, W]>,
    numPartitions?: number,
  ): DStream<[K, [V | undefined, W | undefined]]> {
    return this.joinLike(other, "fullOuterJoin", (a, b) => a.fullOuterJoin(b, numPartitions));
  }

  cogroup<K, V, W>(this: DStream<[K, V]>, other: DStream<[K, W]>, numPartitions?: number): DStream<[K, [V[], W[]]]> {
    return this.joinLike(other, "cogroup", (a, b) => a.cogroup(b, numPartitions));
  }

  groupByKeyAndWindow<K, V>(
    this: DStream<[K, V]>,
    windowDuration: number,
    slideDuration: number = this.slideDuration,
    numPartitions?: number,
  ): DStream<[K, V[]]> {
    return restating(this.window(windowDuration, slideDuration).groupByKey(numPartitions));
  }

  /**
   * Values of each key reduced over a sliding window. Scala's overloads:
   * (func, windowDuration, slideDuration?, numPartitions?) recomputes each window;
   * (func, invFunc, windowDuration, slideDuration?, { filterFunc?, numPartitions?, name? }) is incremental:
   * each batch adds the slide entering the window and removes (invFunc) the one leaving it.
   */
  reduceByKeyAndWindow<K, V>(
    this: DStream<[K, V]>,
    f: (a: V, b: V) => V,
    windowDuration: number,
    slideDuration?: number,
    numPartitions?: number,
  ): DStream<[K, V]>;
  reduceByKeyAndWindow<K, V>(
    this: DStream<[K, V]>,
    f: (a: V, b: V) => V,
    invFunc: (a: V, b: V) => V,
    windowDuration: number,
    slideDuration?: number,
    options?: ReduceWindowOptions<K, V>,
  ): DStream<[K, V]>;
  reduceByKeyAndWindow<K, V>(
    this: DStream<[K, V]>,
    f: (a: V, b: V) => V,
    b: number | ((a: V, b: V) => V),
    c?: number,
    d?: number | ReduceWindowOptions<K, V>,
    e?: ReduceWindowOptions<K, V>,
  ): DStream<[K, V]> {
    if (typeof b === "number") {
      const slide = c ?? this.slideDuration;
      this.checkWindow("reduceByKeyAndWindow", b, slide);
      const n = typeof d === "number" ? d : undefined;
      return restating(this.reduceByKey(f, n).window(b, slide).reduceByKey(f, n));
    }
    if (typeof c !== "number") throw new IllegalArgumentError("reduceByKeyAndWindow(func, invFunc, windowDuration, slideDuration?): windowDuration is missing");
    const slide = typeof d === "number" ? d : this.slideDuration;
    const options = (typeof d === "object" ? d : e) ?? {};
    this.checkWindow("reduceByKeyAndWindow", c, slide);
    if (c < slide) {
      // A window shorter than its slide shares no batch with the previous one: nothing to subtract.
      const w = this.reduceByKey(f, options.numPartitions).window(c, slide).reduceByKey(f, options.numPartitions);
      const keep = options.filterFunc;
      return restating(keep ? w.filter(keep) : w);
    }
    return restating(need(operators.reducedWindow, "reduceByKeyAndWindow")(this.reduceByKey(f, options.numPartitions), f, b, c, slide, options));
  }

  /**
   * Keeps a state per key. Spark's forms:
   * - `updateStateByKey((values, state, key) => newState)`: each batch calls f for every key that has
   *   new values or a state (the key is an extra third argument); undefined removes the key;
   * - `updateStateByKey((time, key, values, state) => newState, { withTime: true })`: the same with
   *   the batch time first, as Scala's `(Time, K, Seq[V], Option[S]) => Option[S]`;
   * - `updateStateByKey.iterator((records) => pairs)` / `updateStateByKeyIterator`: see there.
   * When this stream has no RDD for a batch, every key is updated with empty values, as Spark's
   * StateDStream does (so a state can time out on idle keys).
   */
  updateStateByKey<K, V, S>(
    this: DStream<[K, V]>,
    f: (values: V[], state: S | undefined, key: K) => S | undefined,
    options?: UpdateStateOptions<K, S>,
  ): StatefulDStream<[K, S], [K, S]>;
  updateStateByKey<K, V, S>(
    this: DStream<[K, V]>,
    f: (time: number, key: K, values: V[], state: S | undefined) => S | undefined,
    options: UpdateStateOptions<K, S> & { withTime: true },
  ): StatefulDStream<[K, S], [K, S]>;
  updateStateByKey<K, V, S>(
    this: DStream<[K, V]>,
    f: ((values: V[], state: S | undefined, key: K) => S | undefined) | ((time: number, key: K, values: V[], state: S | undefined) => S | undefined),
    options: UpdateStateOptions<K, S> & { withTime?: boolean } = {},
  ): StatefulDStream<[K, S], [K, S]> {
    const update: StateUpdate<K, V, S> = options.withTime
      ? { kind: "timeKey", f: f as (time: number, key: K, values: V[], state: S | undefined) => S | undefined }
      : { kind: "key", f: f as (values: V[], state: S | undefined, key: K) => S | undefined };
    return restating(need(operators.updateState, "updateStateByKey")(this, update, options));
  }

  /**
   * Spark's iterator form of updateStateByKey: f sees the whole partition as an iterator of
   * `[key, newValues, previousState]` and returns the `[key, state]` pairs to keep (a key it leaves
   * out is removed). With `{ withTime: true }`, f is `(time, records)`.
   */
  updateStateByKeyIterator<K, V, S>(
    this: DStream<[K, V]>,
    f: (records: IterableIterator<[K, V[], S | undefined]>) => Iterable<[K, S]>,
    options?: UpdateStateIteratorOptions<K, S>,
  ): StatefulDStream<[K, S], [K, S]>;
  updateStateByKeyIterator<K, V, S>(
    this: DStream<[K, V]>,
    f: (time: number, records: IterableIterator<[K, V[], S | undefined]>) => Iterable<[K, S]>,
    options: UpdateStateIteratorOptions<K, S> & { withTime: true },
  ): StatefulDStream<[K, S], [K, S]>;
  updateStateByKeyIterator<K, V, S>(
    this: DStream<[K, V]>,
    f:
      | ((records: IterableIterator<[K, V[], S | undefined]>) => Iterable<[K, S]>)
      | ((time: number, records: IterableIterator<[K, V[], S | undefined]>) => Iterable<[K, S]>),
    options: UpdateStateIteratorOptions<K, S> & { withTime?: boolean } = {},
  ): StatefulDStream<[K, S], [K, S]> {
    const update: StateUpdate<K, V, S> = options.withTime
      ? { kind: "timePartition", f: f as (time: number, records: IterableIterator<[K, V[], S | undefined]>) => Iterable<[K, S]> }
      : { kind: "partition", f: f as (records: IterableIterator<[K, V[], S | undefined]>) => Iterable<[K, S]> };
    return restating(need(operators.updateState, "updateStateByKey")(this, update, options));
  }

  /** Spark's mapWithState: f(key, value, state) per record, with timeouts; see StateSpec. */
  mapWithState<K, V, S, M>(this: DStream<[K, V]>, spec: StateSpec<K, V, S, M>, options: NameOption = {}): MapWithStateDStream<K, V, S, M> {
    return need(operators.mapWithState, "mapWithState")(this, spec, options);
  }

  // ---- event time ---------------------------------------------------------------------------

  /**
   * Structured Streaming's withWatermark on a DStream: `eventTime(record)` is the record's event
   * time (ms or a Date); records more than `delayThreshold` behind the largest event time seen are
   * late. The result has countByEventWindow and reduceByKeyAndEventWindow (engine/eventtime).
   */
  withWatermark(eventTime: (x: T) => number | Date, delayThreshold: number): WatermarkedDStream<T> {
    return need(operators.eventTime, "withWatermark").withWatermark(this, eventTime, delayThreshold);
  }

  // ---- output operations --------------------------------------------------------------------

  /** Runs fn on each batch's RDD (after it is computed). fn may return a promise; the batch waits for it. */
  foreachRDD(fn: (rdd: RDD<T>, time: number) => void | Promise<void>, options: NameOption = {}): void {
    this.registerOutput("foreachRDD", fn, options);
  }

  /** Prints the first `num` records of every batch in Spark's layout (a live display in a notebook). */
  pprint(num = 10): void {
    const sink = presenter().openPrint();
    this.registerOutput("pprint", (rdd, time) => {
      const head = rdd.take(num + 1);
      const lines = head.slice(0, num).map(formatRecord);
      if (head.length > num) lines.push("...");
      const rule = "-------------------------------------------";
      sink.batch(time, `${rule}\nTime: ${formatTime(time)}\n${rule}\n${lines.map((l) => l + "\n").join("")}`);
    });
  }

  print(num = 10): void {
    this.pprint(num);
  }

  /**
   * Writes each batch to the directory `prefix-TIME[.suffix]` (one part-NNNNN file per partition).
   * Idempotent per batch time: written to a temporary directory, then renamed over any earlier output.
   */
  saveAsTextFiles(prefix: string, suffix?: string): void {
    this.registerOutput("saveAsTextFiles", async (rdd, time) => {
      const target = `${prefix}-${time}${suffix ? `.${suffix}` : ""}`;
      const tmp = path.join(path.dirname(target), `.${path.basename(target)}.tmp-${process.pid}-${Date.now()}`);
      await fs.promises.mkdir(tmp, { recursive: true });
      const parts = rdd.glom().collect();
      for (let i = 0; i < parts.length; i++) {
        const text = (parts[i] as T[]).map((r) => formatRecord(r) + "\n").join("");
        await fs.promises.writeFile(path.join(tmp, `part-${String(i).padStart(5, "0")}`), text);
      }
      await fs.promises.writeFile(path.join(tmp, "_SUCCESS"), "");
      await fs.promises.rm(target, { recursive: true, force: true });
      await fs.promises.rename(tmp, target);
    });
  }

  /**
   * A live Vega-Lite chart of each batch's records: pairs become { key, value } rows, objects keep
   * their fields, other values become { value }; every row gets the batch `time`.
   */
  chart(spec: Record<string, unknown>, options: ChartOptions = {}): void {
    const mode = options.mode ?? (this.restatesKeyedTotals ? "update" : "append");
    const sink = presenter().openChart(spec, { ...options, mode });
    // append and complete keep only the newest maxRows rows: only those are made, in slices, so a
    // 1M-record batch feeds a chart without stalling the event loop.
    const keep = mode === "update" ? Infinity : (options.maxRows ?? DEFAULT_MAX_ROWS);
    this.registerOutput("chart", async (rdd, time) => {
      sink.batch(time, await runSliced(chartRows(rdd, time, keep)));
    });
  }

  protected registerOutput(kind: string, fn: (rdd: RDD<T>, time: number) => void | Promise<void>, options: NameOption = {}): void {
    const out = new ForEachDStream<T>(this.ssc, kind, this, fn, options);
    this.ssc.graph.addOutputStream(out as ForEachDStream<unknown>);
    presenter().outputDefined(() => this.ssc.graph.removeOutputStream(out as ForEachDStream<unknown>));
  }
}

/** Marks a stream whose batches restate a total per key (see DStream.restatesKeyedTotals). */
function restating<S extends DStream<unknown>>(stream: S, restates = true): S {
  stream.restatesKeyedTotals = restates;
  return stream;
}

/** The chart rows of the last `keep` records of `rdd`. */
function* chartRows<T>(rdd: RDD<T>, time: number, keep: number): Sliced<ChartRow[]> {
  const parts = yield* rdd.partsGen();
  let skip = Math.max(0, parts.reduce((n, p) => n + p.length, 0) - keep);
  const rows: ChartRow[] = [];
  for (const p of parts) {
    if (skip >= p.length) {
      skip -= p.length;
      continue;
    }
    for (let i = skip; i < p.length; i++) {
      rows.push(toChartRow(p[i], time));
      if ((rows.length & (CHUNK - 1)) === 0) yield;
    }
    skip = 0;
  }
  return rows;
}

export function toChartRow(r: unknown, time: number): ChartRow {
  if (Array.isArray(r) && r.length === 2) return { key: r[0], value: r[1], time };
  if (r !== null && typeof r === "object" && !Array.isArray(r)) return { ...(r as Record<string, unknown>), time };
  return { value: r, time };
}

/**
 * A stream whose operator keeps state across batches (updateStateByKey, mapWithState, incremental
 * windows): state() reads it from outside the pipeline; checkpointState/restoreState save and restore it.
 */
export abstract class StatefulDStream<T, S = T> extends DStream<T> {
  /** The current state as an RDD of [key, state] pairs (immutable; safe to keep). */
  abstract state(): RDD<S>;
  /** Checkpoint hook: the state as of the last completed batch, JSON-serialisable. */
  abstract checkpointState(): unknown;
  /** Checkpoint hook: replaces the state with what checkpointState() returned. */
  abstract restoreState(data: unknown): void;
  /**
   * Checkpoint hook: what checkpointState() returns (the same JSON), copied a chunk at a time (runSliced drives
   * it while batches wait), so a large state never holds the event loop for long.
   */
  checkpointStateSliced?(): Sliced<unknown>;
}

function checkSameSlide(kind: string, parents: DStream<unknown>[]): void {
  const slide = parents[0]?.slideDuration;
  for (const p of parents) {
    if (p.slideDuration !== slide) {
      throw new InvalidDurationError(`${kind}: the streams have different slide durations (${slide} ms and ${p.slideDuration} ms); window them alike first`);
    }
  }
}

/** One parent, each batch's RDD mapped by fn (map, filter, reduceByKey, ...); no RDD in, none out. */
export class DerivedDStream<T, U> extends DStream<U> {
  constructor(
    readonly parent: DStream<T>,
    kind: string,
    private readonly fn: (rdd: RDD<T>, time: number) => RDD<U>,
    options?: NameOption,
  ) {
    super(parent.ssc, kind, [parent as DStream<unknown>], options);
  }

  compute(time: number): Maybe<RDD<U>> {
    const r = this.parent.getOrCompute(time);
    return r ? this.fn(r, time) : undefined;
  }
}

/**
 * Spark's TransformedDStream: the RDDs of all parents at a time combined by fn (transform,
 * transformWith, joins). Every parent must have an RDD then, and fn must return one.
 */
export class TransformedDStream<U> extends DStream<U> {
  constructor(
    ssc: StreamingContext,
    kind: string,
    parents: DStream<unknown>[],
    private readonly fn: (rdds: RDD<unknown>[], time: number) => RDD<U>,
    options?: NameOption,
  ) {
    if (parents.length === 0) throw new IllegalArgumentError(`${kind}: list of DStreams to transform is empty`);
    super(ssc, kind, parents, options);
    checkSameSlide(kind, parents);
  }

  compute(time: number): Maybe<RDD<U>> {
    const rdds: RDD<unknown>[] = [];
    for (const p of this.dependencies) {
      const r = p.getOrCompute(time);
      if (!r) throw new MissingParentRDDError(`Couldn't generate RDD from parent at time ${formatTime(time)}: ${p} has no RDD then`);
      rdds.push(r);
    }
    const out = this.fn(rdds, time) as RDD<U> | null | undefined;
    if (out === null || out === undefined) {
      throw new NullTransformResultError(
        "Transform function must not return null. Return sc.emptyRDD() instead to represent no element as the result of transformation.",
      );
    }
    return out;
  }
}

/** Spark's UnionDStream: the records of every parent, batch by batch; every parent must have an RDD. */
export class UnionDStream<T> extends DStream<T> {
  constructor(ssc: StreamingContext, parents: DStream<T>[]) {
    if (parents.length === 0) throw new IllegalArgumentError("union: list of DStreams to union is empty");
    super(ssc, "union", parents as DStream<unknown>[]);
    checkSameSlide("union", parents as DStream<unknown>[]);
  }

  compute(time: number): Maybe<RDD<T>> {
    // As Spark: every parent is asked for its RDD first (sources take their batch), then checked.
    const rdds = this.dependencies.map((p) => p.getOrCompute(time) as RDD<T> | undefined);
    const missing = rdds.findIndex((r) => r === undefined);
    if (missing >= 0) {
      throw new MissingParentRDDError(`Could not generate RDD from a parent for unifying at time ${formatTime(time)}: ${this.dependencies[missing]} has no RDD then`);
    }
    return this.ssc.sc.union(rdds as RDD<T>[]);
  }
}

/** An output operation: each batch, computes the parent's RDD (in slices) and runs fn on it. */
export class ForEachDStream<T> extends DStream<void> {
  constructor(
    ssc: StreamingContext,
    readonly kind: string,
    readonly parent: DStream<T>,
    private readonly fn: (rdd: RDD<T>, time: number) => void | Promise<void>,
    options?: NameOption,
  ) {
    super(ssc, kind, [parent as DStream<unknown>], options);
  }

  compute(): undefined {
    return undefined;
  }

  /** The job of batch `time`, or undefined when the parent has no RDD then. */
  generateJob(time: number): ((cancelled: () => boolean) => Promise<void>) | undefined {
    const rdd = this.parent.getOrCompute(time);
    if (!rdd) return undefined;
    return async (cancelled) => {
      await runSliced(rdd.computeGen(), cancelled);
      await this.fn(rdd, time);
    };
  }
}
