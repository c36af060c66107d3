// reduceByKeyAndEventWindow / countByEventWindow: aggregation by key and sliding event-time window
// with a watermark, as Structured Streaming's guide ("Handling Late Data and Watermarking") describes:
// - the watermark is max(event time seen in earlier batches) - delay, and only moves at batch boundaries;
// - a record older than the watermark is dropped and counted (update and append modes);
// - a window's state is evicted once the watermark reaches its end (update and append modes);
// - output modes: update (rows changed this batch), append (each window once, when the watermark
//   closes it), complete (every window kept; as in Spark, complete mode keeps all state and drops nothing).

import { IllegalArgumentError } from "../errors.js";
import { StatefulDStream, type DStream, type NameOption } from "../dstream.js";
import { KeyedMap } from "../keys.js";
import type { EventTimeProgress } from "../listener.js";
import { presenter, type ChartOptions } from "../presenter.js";
import type { RDD } from "../rdd.js";
import { CancelledError, CHUNK, type Sliced } from "../slicing.js";
import { eventTimeMs, type EventWindowRow } from "./windows.js";

export type EventWindowOutputMode = "update" | "append" | "complete";

export interface EventWindowOptions extends NameOption {
  /** Which rows each batch emits (default "update"). */
  outputMode?: EventWindowOutputMode;
}

/** How a watermarked stream's records feed an aggregation: event time, key and value of a record. */
export interface EventWindowInput<T, K, V> {
  eventTime: (x: T) => number | Date;
  delay: number;
  key: (x: T) => K;
  value: (x: T) => V;
  /** Set by countByEventWindow: every value is 1 and the reduce is a sum (a faster path). */
  counting?: boolean;
}

const ABSENT: unique symbol = Symbol("absent");

/** A (window, key) aggregate; `stamp` marks the batch that last changed it and `prev` its value before. */
interface Cell<V> {
  v: V;
  stamp: number;
  prev: V | typeof ABSENT;
}

interface EventWindowCheckpoint<K, V> {
  watermark: number | null;
  maxEventTime: number | null;
  windows: [number, [K, V][]][];
  lateRecords: number;
}

export class EventWindowDStream<T, K, V> extends StatefulDStream<EventWindowRow<K, V>, [[number, K], V]> {
  readonly outputMode: EventWindowOutputMode;
  /** Window start -> key -> aggregate. */
  private windows = new Map<number, KeyedMap<K, Cell<V>>>();
  private watermarkMs: number | undefined;
  private maxEventTimeMs: number | undefined;
  /** Records dropped as late since the stream was created (or recovered). */
  private lateTotal = 0;
  private batchStamp = 0;
  // Held with `never` so that the stream stays covariant in T (a DStream<number> is a DStream<unknown>).
  private readonly input: EventWindowInput<never, K, V>;

  constructor(
    parent: DStream<T>,
    input: EventWindowInput<T, K, V>,
    private readonly reduceFunc: (a: V, b: V) => V,
    readonly windowDuration: number,
    readonly eventSlideDuration: number,
    options: EventWindowOptions,
  ) {
    super(parent.ssc, "eventWindow", [parent as DStream<unknown>], { name: options.name });
    this.input = input as unknown as EventWindowInput<never, K, V>;
    const mode = options.outputMode ?? "update";
    if (mode !== "update" && mode !== "append" && mode !== "complete") {
      throw new IllegalArgumentError(`outputMode must be "update", "append" or "complete", not ${JSON.stringify(mode)}`);
    }
    this.outputMode = mode;
  }

  /** The watermark the next batch applies (ms of event time), undefined before any event. */
  get watermark(): number | undefined {
    return this.watermarkMs;
  }

  /** The largest event time seen (ms). */
  get maxEventTime(): number | undefined {
    return this.maxEventTimeMs;
  }

  /** Records dropped as older than the watermark, in total. */
  get numRowsDroppedByWatermark(): number {
    return this.lateTotal;
  }

  compute(time: number): RDD<EventWindowRow<K, V>> | undefined {
    const data = (this.dependencies[0] as DStream<T>).getOrCompute(time);
    const self = this;
    let failure: { error: unknown } | undefined;
    return this.ssc.sc.deferred<EventWindowRow<K, V>>(function* () {
      if (failure) throw failure.error;
      try {
        return [yield* self.update(time, data)];
      } catch (error) {
        // A cancelled batch (plain stop) was undone and may run again whole; a failed one reports its error again.
        if (!(error instanceof CancelledError)) failure = { error };
        throw error;
      }
    });
  }

  private *update(time: number, data: RDD<T> | undefined): Sliced<EventWindowRow<K, V>[]> {
    const stamp = ++this.batchStamp;
    const { eventTime, key, value, delay, counting } = this.input as unknown as EventWindowInput<T, K, V>;
    const f = this.reduceFunc;
    const W = this.windowDuration;
    const S = this.eventSlideDuration;
    const keepAll = this.outputMode === "complete";
    const wm = this.watermarkMs ?? -Infinity;
    const windows = this.windows;
    const changed: [number, K, Cell<V>][] = [];
    const created: number[] = [];
    let maxSeen = this.maxEventTimeMs ?? -Infinity;
    let late = 0;
    try {
      if (data) {
        yield* data.forEachRecord((x) => {
          const raw = eventTime(x);
          const t = typeof raw === "number" ? raw : eventTimeMs(raw);
          if (t !== t) throw new IllegalArgumentError(`withWatermark: the event time of ${JSON.stringify(x)} is not a number of ms or a Date`);
          if (t < wm && !keepAll) {
            late++;
            return;
          }
          if (t > maxSeen) maxSeen = t;
          const k = key(x);
          const v = counting ? (1 as V) : value(x);
          for (let start = Math.floor(t / S) * S; start > t - W; start -= S) {
            let m = windows.get(start);
            if (m === undefined) {
              windows.set(start, (m = new KeyedMap()));
              created.push(start);
            }
            const cell = m.get(k);
            if (cell === undefined) {
              const c: Cell<V> = { v, stamp, prev: ABSENT };
              m.set(k, c);
              changed.push([start, k, c]);
            } else {
              if (cell.stamp !== stamp) {
                cell.prev = cell.v;
                cell.stamp = stamp;
                changed.push([start, k, cell]);
              }
              cell.v = counting ? (((cell.v as number) + 1) as V) : f(cell.v, v);
            }
          }
        });
      }
    } catch (e) {
      // Put the state back as it was before this batch: the next batch goes on from there.
      for (const [start, k, c] of changed) {
        if (c.prev === ABSENT) windows.get(start)?.delete(k);
        else c.v = c.prev;
        c.stamp = 0;
      }
      for (const start of created) if (windows.get(start)?.size === 0) windows.delete(start);
      throw e;
    }
    const out: EventWindowRow<K, V>[] = [];
    const row = (start: number, k: K, v: V): EventWindowRow<K, V> => ({ window: { start, end: start + W }, key: k, value: v });
    let evicted = 0;
    const starts = [...windows.keys()].sort((a, b) => a - b);
    if (this.outputMode === "update") {
      changed.sort((a, b) => a[0] - b[0]);
      for (const [start, k, c] of changed) out.push(row(start, k, c.v));
    }
    let n = 0;
    for (const start of starts) {
      const m = windows.get(start) as KeyedMap<K, Cell<V>>;
      const closed = !keepAll && start + W <= wm;
      if (this.outputMode === "complete" || (this.outputMode === "append" && closed)) {
        for (const [k, c] of m) {
          out.push(row(start, k, c.v));
          if ((++n & (CHUNK - 1)) === 0) yield;
        }
      }
      if (closed) {
        windows.delete(start);
        evicted++;
      }
    }
    let rows = 0;
    for (const m of windows.values()) rows += m.size;
    this.lateTotal += late;
    const seen = maxSeen === -Infinity ? undefined : maxSeen;
    this.maxEventTimeMs = seen;
    // The watermark for the next batch: it only moves forward, and only at batch boundaries.
    if (seen !== undefined && (this.watermarkMs === undefined || seen - delay > this.watermarkMs)) this.watermarkMs = seen - delay;
    const progress: EventTimeProgress = {
      watermark: wm === -Infinity ? undefined : wm,
      maxEventTime: seen,
      numRowsDroppedByWatermark: late,
      numRowsTotal: rows,
      numRowsUpdated: changed.length,
      numWindowsEvicted: evicted,
    };
    this.ssc.graph.reportEventTime(time, this.name, progress);
    return out;
  }

  /** The aggregates kept now, as `[[windowStart, key], value]` pairs. */
  state(): RDD<[[number, K], V]> {
    const pairs: [[number, K], V][] = [];
    for (const [start, m] of [...this.windows].sort((a, b) => a[0] - b[0])) for (const [k, c] of m) pairs.push([[start, k], c.v]);
    return this.ssc.sc.parallelize(pairs, 1);
  }

  checkpointState(): EventWindowCheckpoint<K, V> {
    const windows: [number, [K, V][]][] = [];
    for (const [start, m] of this.windows) windows.push([start, [...m].map(([k, c]) => [k, c.v] as [K, V])]);
    return { watermark: this.watermarkMs ?? null, maxEventTime: this.maxEventTimeMs ?? null, windows, lateRecords: this.lateTotal };
  }

  /** As checkpointState(), a chunk of rows at a time. */
  *checkpointStateSliced(): Sliced<unknown> {
    const windows: [number, [K, V][]][] = [];
    let n = 0;
    for (const [start, m] of this.windows) {
      const rows: [K, V][] = new Array<[K, V]>(m.size);
      let i = 0;
      for (const [k, c] of m) {
        rows[i++] = [k, c.v];
        if ((++n & (CHUNK - 1)) === 0) yield;
      }
      windows.push([start, rows]);
    }
    return { watermark: this.watermarkMs ?? null, maxEventTime: this.maxEventTimeMs ?? null, windows, lateRecords: this.lateTotal };
  }

  restoreState(data: unknown): void {
    const d = data as EventWindowCheckpoint<K, V>;
    this.watermarkMs = d.watermark ?? undefined;
    this.maxEventTimeMs = d.maxEventTime ?? undefined;
    this.lateTotal = d.lateRecords ?? 0;
    this.windows = new Map(
      d.windows.map(([start, rows]) => [start, new KeyedMap<K, Cell<V>>(rows.map(([k, v]) => [k, { v, stamp: 0, prev: ABSENT }] as [K, Cell<V>]))]),
    );
  }

  /**
   * A live chart with the event-time window on the x axis: one bar per key in each window (the
   * latest value of every (window, key) emitted and still kept), coloured by key. A spec with its own
   * encoding replaces the default; rows have windowStart, windowEnd, window (a label), key, value, time.
   */
  override chart(spec: Record<string, unknown> = {}, options: ChartOptions = {}): void {
    const epochWindows = (start: number) => start >= 1e11;
    const label = (start: number, end: number) =>
      epochWindows(start) ? `${new Date(start).toISOString().slice(11, 16)}-${new Date(end).toISOString().slice(11, 16)}` : `${start}-${end}`;
    const full: Record<string, unknown> = { mark: "bar", ...spec };
    if (full.encoding === undefined) {
      full.encoding = {
        x: { field: "window", type: "ordinal", title: "event-time window", sort: { field: "windowStart" } },
        xOffset: { field: "key", type: "nominal" },
        y: { field: "value", type: "quantitative" },
        color: { field: "key", type: "nominal" },
      };
    }
    const maxRows = options.maxRows ?? 1000;
    const sink = presenter().openChart(full, { ...options, mode: "complete", maxRows });
    const shown = new Map<string, Record<string, unknown>>();
    this.registerOutput("chart", (rdd, time) => {
      for (const r of rdd.collect()) {
        const k = `${r.window.start}\u0000${JSON.stringify(r.key)}`;
        shown.delete(k);
        shown.set(k, { windowStart: r.window.start, windowEnd: r.window.end, window: label(r.window.start, r.window.end), key: r.key, value: r.value, time });
      }
      // Windows the watermark evicted leave the chart too (append mode keeps the closed ones it emitted).
      if (this.outputMode !== "append") {
        for (const [k, row] of shown) if (!this.windows.has(row.windowStart as number)) shown.delete(k);
      }
      while (shown.size > maxRows) shown.delete(shown.keys().next().value as string);
      const rows = [...shown.values()].sort((a, b) => (a.windowStart as number) - (b.windowStart as number));
      sink.batch(time, rows.map((r) => ({ ...r, time })));
    });
  }
}
