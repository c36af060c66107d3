// Window operators: window() (the union of the batches in the window) and the incremental
// reduceByKeyAndWindow with an inverse function, whose cost per batch follows the data entering and
// leaving the window, not the window's length.

import { DStream, operators, StatefulDStream, type ReduceWindowOptions } from "./dstream.js";
import { IllegalArgumentError } from "./errors.js";
import { KeyedMap } from "./keys.js";
import { formatRecord, type RDD } from "./rdd.js";
import { CHUNK, runSync, type Sliced } from "./slicing.js";
import { ColumnRows } from "./checkpoint/format.js";

export class WindowedDStream<T> extends DStream<T> {
  constructor(
    readonly parent: DStream<T>,
    readonly windowDuration: number,
    private readonly slide: number,
  ) {
    super(parent.ssc, "window", [parent as DStream<unknown>]);
    parent.requireRemember(windowDuration);
  }

  override get slideDuration(): number {
    return this.slide;
  }

  compute(time: number): RDD<T> {
    const rdds = this.parent.sliceCompute(time - this.windowDuration + this.parent.slideDuration, time);
    return this.ssc.sc.union(rdds);
  }
}

/** Calls visit(k, v) for every pair of a pair RDD, yielding every chunk. */
export function* forEachPair<K, V>(rdd: RDD<[K, V]>, visit: (k: K, v: V) => void): Sliced<void> {
  yield* rdd.forEachRecord((kv) => visit(kv[0], kv[1]));
}

export class MissingWindowKeyError extends IllegalArgumentError {}

/**
 * reduceByKeyAndWindow(func, invFunc, window, slide): the window at T is the window at T - slide,
 * minus (invFunc) the reduced batches that left it, plus (func) the ones that entered it.
 * The parent is the per-batch reduceByKey stream.
 */
export class ReducedWindowedDStream<K, V> extends StatefulDStream<[K, V], [K, V]> {
  private restored?: { time: number; window: KeyedMap<K, V> };

  constructor(
    readonly parent: DStream<[K, V]>,
    private readonly f: (a: V, b: V) => V,
    private readonly inv: (a: V, b: V) => V,
    readonly windowDuration: number,
    private readonly slide: number,
    private readonly options: ReduceWindowOptions<K, V>,
  ) {
    super(parent.ssc, "reduceByKeyAndWindow", [parent as DStream<unknown>], { name: options.name });
    // The batches leaving the window are read again one slide later.
    parent.requireRemember(windowDuration + slide);
  }

  override get slideDuration(): number {
    return this.slide;
  }

  compute(time: number): RDD<[K, V]> {
    const pSlide = this.parent.slideDuration;
    const currentBegin = time - this.windowDuration + pSlide;
    const prevTime = time - this.slide;
    const oldRDDs = this.parent.sliceCompute(currentBegin - this.slide, currentBegin - pSlide);
    const newRDDs = this.parent.sliceCompute(prevTime + pSlide, time);
    let prevRDD = this.getOrCompute(prevTime);
    let prevMap: KeyedMap<K, V> | undefined;
    if (!prevRDD && this.restored && this.restored.time === prevTime) prevMap = this.restored.window;
    this.restored = undefined;
    const { f, inv, options } = this;
    const filter = options.filterFunc;
    return this.ssc.sc.deferredMap<K, V>(function* () {
      let m: KeyedMap<K, V>;
      if (prevRDD) {
        const km = (yield* prevRDD.keyedGen()) as KeyedMap<K, V> | undefined;
        m = km ? yield* km.copySliced() : new KeyedMap((yield* prevRDD.partsGen()).flat());
        prevRDD = undefined;
      } else m = prevMap ? yield* prevMap.copySliced() : new KeyedMap();
      for (const old of oldRDDs) {
        yield* forEachPair(old, (k, v) => {
          if (!m.has(k)) {
            throw new MissingWindowKeyError(
              `reduceByKeyAndWindow: key ${formatRecord(k)} leaves the window at ${time} ms but is not in it; a filterFunc must not drop keys whose values are still in the window`,
            );
          }
          m.set(k, inv(m.get(k) as V, v));
        });
      }
      for (const fresh of newRDDs) {
        yield* forEachPair(fresh, (k, v) => m.merge(k, v, f));
      }
      if (filter) {
        let n = 0;
        for (const [k, v] of m) {
          if (!filter([k, v])) m.delete(k);
          if ((++n & (CHUNK - 1)) === 0) yield;
        }
      }
      return m;
    });
  }

  /** The current window's pairs. */
  state(): RDD<[K, V]> {
    return this.latest();
  }

  /** The window at the last completed batch and the reduced batches still in it. */
  checkpointState(): unknown {
    const time = this.ssc.graph.lastCompletedTime;
    if (time === undefined) return { time: null, window: [], slices: [] };
    const rdd = this.generatedRDDs.get(time);
    const slices: [number, [K, V][]][] = [];
    for (const t of this.parent.generatedTimes()) {
      if (t > time - this.windowDuration && t <= time) slices.push([t, (this.parent.slice(t, t)[0] as RDD<[K, V]>).collect()]);
    }
    return { time, window: rdd ? [...((runSync(rdd.keyedGen()) as KeyedMap<K, V> | undefined) ?? rdd.collect())] : [], slices };
  }

  /** As checkpointState() (the same JSON), a chunk of pairs at a time. */
  *checkpointStateSliced(): Sliced<unknown> {
    const time = this.ssc.graph.lastCompletedTime;
    if (time === undefined) return { time: null, window: [], slices: [] };
    // Into flat columns (no small array per pair for the collector to copy while young); the maps of
    // computed windows and reduced batches are not changed later, but their RDDs may be forgotten.
    const copy = function* (pairs: Iterable<[K, V]>, size: number): Sliced<ColumnRows> {
      const keys = new Array<K>(size);
      const values = new Array<V>(size);
      let i = 0;
      for (const kv of pairs) {
        keys[i] = kv[0];
        values[i++] = kv[1];
        if ((i & (CHUNK - 1)) === 0) yield;
      }
      return new ColumnRows([keys, values], i);
    };
    const slices: [number, ColumnRows][] = [];
    for (const t of this.parent.generatedTimes()) {
      if (t <= time - this.windowDuration || t > time) continue;
      const rdd = this.parent.generatedAt(t) as RDD<[K, V]>;
      const km = (yield* rdd.keyedGen()) as KeyedMap<K, V> | undefined;
      if (km) slices.push([t, yield* copy(km, km.size)]);
      else {
        const parts = yield* rdd.partsGen();
        slices.push([t, yield* copy(parts.flat(), parts.reduce((n, p) => n + p.length, 0))]);
      }
    }
    const rdd = this.generatedRDDs.get(time);
    let window: ColumnRows | [K, V][] = [];
    if (rdd) {
      const km = (yield* rdd.keyedGen()) as KeyedMap<K, V> | undefined;
      window = km ? yield* copy(km, km.size) : rdd.collect();
    }
    return { time, window, slices };
  }

  restoreState(data: unknown): void {
    const d = data as { time: number | null; window: [K, V][]; slices: [number, [K, V][]][] };
    if (d.time === null) return;
    // Keys come back from JSON as new arrays/objects: KeyedMap matches them to later batches' keys by value.
    this.restored = { time: d.time, window: new KeyedMap(d.window) };
    this.restoreRDD(d.time, this.ssc.sc.fromMap(new KeyedMap(d.window)));
    for (const [t, pairs] of d.slices) this.parent.restoreRDD(t, this.ssc.sc.parallelize(pairs, 1));
  }
}

operators.window = <T>(parent: DStream<T>, windowDuration: number, slideDuration: number) =>
  new WindowedDStream<T>(parent, windowDuration, slideDuration);

operators.reducedWindow = <K, V>(
  parent: DStream<[K, V]>,
  f: (a: V, b: V) => V,
  inv: (a: V, b: V) => V,
  windowDuration: number,
  slideDuration: number,
  options: ReduceWindowOptions<K, V>,
) => new ReducedWindowedDStream<K, V>(parent, f, inv, windowDuration, slideDuration, options);

