// withWatermark: a stream whose records carry an event time, with Structured Streaming's lateness
// bound. It passes its parent's RDDs through; the event-window operators read the event time from it.

import { DStream } from "../dstream.js";
import { IllegalArgumentError } from "../errors.js";
import type { RDD } from "../rdd.js";
import { EventWindowDStream, type EventWindowOptions } from "./aggregate.js";
import { checkEventWindow } from "./windows.js";

export class WatermarkedDStream<T> extends DStream<T> {
  /** How late (in event time) a record may be before it is dropped. */
  readonly delayThreshold: number;
  // Kept behind a method so that the stream stays covariant in T (DStream<number> is a DStream<unknown>).
  private readonly eventTimeFn: (x: never) => number | Date;

  constructor(parent: DStream<T>, eventTime: (x: T) => number | Date, delayThreshold: number) {
    super(parent.ssc, "withWatermark", [parent as DStream<unknown>]);
    this.delayThreshold = delayThreshold;
    this.eventTimeFn = eventTime as (x: never) => number | Date;
    if (typeof eventTime !== "function") throw new IllegalArgumentError("withWatermark(eventTime, delay): eventTime must be a function of the record, e.g. (e) => e.timestamp");
    if (!(delayThreshold >= 0) || !Number.isFinite(delayThreshold)) {
      throw new IllegalArgumentError(`withWatermark: the delay threshold must be a non-negative number of ms (e.g. Minutes(10)), got ${delayThreshold}`);
    }
  }

  /** The event time of a record: ms since the epoch (or any consistent ms scale), or a Date. */
  eventTime(x: T): number | Date {
    return this.eventTimeFn(x as never);
  }

  compute(time: number): RDD<T> | undefined {
    return (this.dependencies[0] as DStream<T>).getOrCompute(time);
  }

  /**
   * Counts records by key and sliding event-time window (Structured Streaming's
   * groupBy(window(eventTime, windowDuration, slideDuration), key).count()). Emits
   * `{ window: { start, end }, key, value }` rows as the output mode says.
   */
  countByEventWindow<K>(key: (x: T) => K, windowDuration: number, slideDuration: number = windowDuration, options: EventWindowOptions = {}): EventWindowDStream<T, K, number> {
    checkEventWindow("countByEventWindow", windowDuration, slideDuration);
    return new EventWindowDStream<T, K, number>(
      this,
      { eventTime: this.eventTimeFn as (x: T) => number | Date, delay: this.delayThreshold, key, value: () => 1, counting: true },
      (a, b) => a + b,
      windowDuration,
      slideDuration,
      options,
    );
  }

  /** Values of each key reduced per sliding event-time window (the general form). */
  reduceByKeyAndEventWindow<K, V>(
    this: WatermarkedDStream<[K, V]>,
    reduceFunc: (a: V, b: V) => V,
    windowDuration: number,
    slideDuration: number = windowDuration,
    options: EventWindowOptions = {},
  ): EventWindowDStream<[K, V], K, V> {
    checkEventWindow("reduceByKeyAndEventWindow", windowDuration, slideDuration);
    return new EventWindowDStream<[K, V], K, V>(
      this,
      { eventTime: this.eventTimeFn as (x: [K, V]) => number | Date, delay: this.delayThreshold, key: (kv) => kv[0], value: (kv) => kv[1] },
      reduceFunc,
      windowDuration,
      slideDuration,
      options,
    );
  }
}
