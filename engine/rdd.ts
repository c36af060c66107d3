// RDD<T>: one batch of records, local and immutable, evaluated lazily. Narrow transformations
// (map, filter, flatMap, ...) fuse into one pass over each partition, chunk by chunk; everything is
// written as slicing generators so the engine can process a batch without blocking the event loop.
// SparkContext is the batch entry point (parallelize, textFile).

import * as fs from "node:fs";
import * as path from "node:path";
import { EmptyRDDError, IllegalArgumentError, RDDBusyError } from "./errors.js";
import { KeyedMap, KeyedSet, keptPair, keysEqual } from "./keys.js";
import { CHUNK, runSync, type Sliced } from "./slicing.js";
import { AccumulatorV2, Broadcast, CollectionAccumulator, DoubleAccumulator, LongAccumulator, type AccumulatorInfo } from "./shared/index.js";

/** The display protocol (as in Deno's kernel): a value with this method renders itself as a MIME bundle. */
export const JUPYTER_DISPLAY: unique symbol = Symbol.for("Jupyter.display");

/** Processes src[from..to) into out. One per narrow transformation; a chain of them is fused. */
type ChunkOp = (src: unknown[], from: number, to: number, out: unknown[]) => void;
/** The same transformation record by record, composed into one function for a whole chain (shuffles use it). */
type Sink = (x: unknown) => void;
type SinkOp = (next: Sink) => Sink;

type Source<T> =
  | { parts: T[][] }
  | { kv: KeyedMap<unknown, unknown> }
  | { view: () => KeyedMap<unknown, unknown> }
  | { parent: RDD<unknown>; op: ChunkOp; sink: SinkOp }
  | { gen: () => Sliced<T[][] | KeyedMap<unknown, unknown> | KeyedView> };

/**
 * Pairs read through a function each time (state kept in place across batches: the function returns
 * the live Map while this version is current, and a snapshot once a later batch has changed it).
 */
export interface KeyedView {
  view: () => KeyedMap<unknown, unknown>;
}

let nextRddId = 0;

export interface MimeBundle {
  "text/plain": string;
  "text/html"?: string;
  [mime: string]: unknown;
}

/** Spark's record format: pairs as "(k,v)", other values as strings or JSON. */
export function formatRecord(x: unknown): string {
  if (Array.isArray(x)) return `(${x.map(formatRecord).join(",")})`;
  if (x instanceof Map) return `Map(${[...x].map(([k, v]) => `${formatRecord(k)} -> ${formatRecord(v)}`).join(", ")})`;
  if (x !== null && typeof x === "object") {
    try {
      return JSON.stringify(x);
    } catch {
      return String(x);
    }
  }
  return String(x);
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c] as string);
}

/** A MIME bundle for a few records: text/plain lines and a small HTML table (pairs get key/value columns). */
export function recordsBundle(title: string, records: unknown[], more: boolean): MimeBundle {
  const plain = [title, ...records.map(formatRecord), ...(more ? ["..."] : [])].join("\n");
  const pairs = records.length > 0 && records.every((r) => Array.isArray(r) && r.length === 2);
  const head = pairs ? "<tr><th>key</th><th>value</th></tr>" : "<tr><th>value</th></tr>";
  const rows = records
    .map((r) =>
      pairs
        ? `<tr><td>${escapeHtml(formatRecord((r as unknown[])[0]))}</td><td>${escapeHtml(formatRecord((r as unknown[])[1]))}</td></tr>`
        : `<tr><td>${escapeHtml(formatRecord(r))}</td></tr>`,
    )
    .join("");
  const html = `<div><div>${escapeHtml(title)}</div><table>${head}${rows}</table>${more ? "<div>…</div>" : ""}</div>`;
  return { "text/plain": plain, "text/html": html };
}

/** Spark's ordering: numbers and strings as usual, tuples element by element. */
function compareKeys(a: unknown, b: unknown): number {
  if (typeof a === "number" && typeof b === "number") return a - b;
  if (Array.isArray(a) && Array.isArray(b)) {
    for (let i = 0; i < a.length && i < b.length; i++) {
      const c = compareKeys(a[i], b[i]);
      if (c !== 0) return c;
    }
    return a.length - b.length;
  }
  return (a as number) < (b as number) ? -1 : (a as number) > (b as number) ? 1 : 0;
}

function split<T>(data: T[], n: number): T[][] {
  n = Math.max(1, Math.floor(n));
  if (n === 1) return [data];
  const parts: T[][] = [];
  for (let i = 0; i < n; i++) parts.push(data.slice(Math.floor((i * data.length) / n), Math.floor(((i + 1) * data.length) / n)));
  return parts;
}

export class RDD<T> {
  readonly id = nextRddId++;
  private parts?: T[][];
  private fixedKv?: KeyedMap<unknown, unknown>;
  private view?: () => KeyedMap<unknown, unknown>;
  private parent?: RDD<unknown>;
  private op?: ChunkOp;
  private sink?: SinkOp;
  private gen?: () => Sliced<T[][] | KeyedMap<unknown, unknown> | KeyedView>;
  /** A sliced computation of this RDD is under way (guards against running it twice at once). */
  private computing = false;
  /** Set by cache()/persist(): computed and kept as a whole, never fused into a child's pass. */
  private keep = false;

  constructor(
    readonly sc: SparkContext,
    source: Source<T>,
  ) {
    if ("parts" in source) this.parts = source.parts;
    else if ("kv" in source) this.fixedKv = source.kv;
    else if ("view" in source) this.view = source.view;
    else if ("op" in source) {
      this.parent = source.parent;
      this.op = source.op;
      this.sink = source.sink;
    } else this.gen = source.gen;
  }

  /** Spark's rdd.sparkContext (and rdd.context): the SparkContext that made this RDD. */
  get sparkContext(): SparkContext {
    return this.sc;
  }

  get context(): SparkContext {
    return this.sc;
  }

  /** Pairs kept in a KeyedMap (unique keys), when this RDD keeps them that way. */
  private get kv(): KeyedMap<unknown, unknown> | undefined {
    return this.fixedKv ?? this.view?.();
  }

  // ---- evaluation -------------------------------------------------------------------------

  /** True once the records are computed (and kept: an RDD is computed at most once). */
  get isComputed(): boolean {
    return this.parts !== undefined || this.fixedKv !== undefined || this.view !== undefined;
  }

  /** Computes the records (once), yielding every chunk. Used by the engine through runSliced. */
  *computeGen(): Sliced<void> {
    if (this.isComputed) return;
    if (this.computing) {
      throw new RDDBusyError(`RDD[${this.id}] is being computed by a running batch; read it once that batch has completed (e.g. with latest())`);
    }
    this.computing = true;
    try {
      yield* this.computeOnce();
    } finally {
      this.computing = false;
    }
  }

  private *computeOnce(): Sliced<void> {
    if (this.op) {
      const ops: ChunkOp[] = [];
      let r: RDD<unknown> = this as RDD<unknown>;
      while (r.op && !r.isComputed && (r === this || !r.keep)) {
        ops.push(r.op);
        r = r.parent as RDD<unknown>;
      }
      ops.reverse();
      const src = yield* r.partsGen();
      this.parts = (yield* applyOps(src, ops)) as T[][];
    } else if (this.gen) {
      const result = yield* this.gen();
      if (result instanceof KeyedMap) this.fixedKv = result;
      else if (Array.isArray(result)) this.parts = result;
      else this.view = result.view;
    }
    // The lineage is no longer needed: let parents be collected.
    this.parent = undefined;
    this.op = undefined;
    this.sink = undefined;
    this.gen = undefined;
  }

  /** The records by partition (pairs kept in a Map come back as one partition of tuples). */
  *partsGen(): Sliced<T[][]> {
    yield* this.computeGen();
    if (this.parts) return this.parts;
    // Read once: a view's Map must not change between two slices of this pass.
    const kv = this.fixedKv ?? (this.view ? this.view().copy() : new KeyedMap());
    const out: unknown[] = new Array(kv.size);
    let i = 0;
    for (const e of kv) {
      out[i++] = e;
      if ((i & (CHUNK - 1)) === 0) yield;
    }
    return [out as T[]];
  }

  /**
   * Internal: calls visit for every record, yielding every chunk. An uncomputed narrow chain is
   * composed into one function per record, so no intermediate arrays are built.
   */
  *forEachRecord(visit: (x: T) => void): Sliced<void> {
    if (!this.isComputed && this.sink && !this.keep) {
      let fn = visit as Sink;
      let r: RDD<unknown> = this as RDD<unknown>;
      while (r.sink && !r.isComputed && !r.keep) {
        fn = r.sink(fn);
        r = r.parent as RDD<unknown>;
      }
      for (const p of yield* r.partsGen()) {
        for (let i = 0; i < p.length; i += CHUNK) {
          const to = Math.min(p.length, i + CHUNK);
          for (let j = i; j < to; j++) fn(p[j]);
          yield;
        }
      }
      return;
    }
    const kv = this.kv;
    if (kv) {
      let n = 0;
      for (const e of kv) {
        visit(e as T);
        if ((++n & (CHUNK - 1)) === 0) yield;
      }
      return;
    }
    for (const p of yield* this.partsGen()) {
      for (let i = 0; i < p.length; i += CHUNK) {
        const to = Math.min(p.length, i + CHUNK);
        for (let j = i; j < to; j++) visit(p[j] as T);
        yield;
      }
    }
  }

  /** Internal: the computed pairs as a KeyedMap when this RDD keeps them that way (unique keys). */
  *keyedGen(): Sliced<KeyedMap<unknown, unknown> | undefined> {
    yield* this.computeGen();
    return this.kv;
  }

  private partitions(): T[][] {
    return runSync(this.partsGen());
  }

  /** The number of records if it is known without computing anything. */
  countIfKnown(): number | undefined {
    const kv = this.kv;
    if (kv) return kv.size;
    if (this.parts) return this.parts.reduce((n, p) => n + p.length, 0);
    return undefined;
  }

  private narrow<U>(op: ChunkOp, sink: SinkOp): RDD<U> {
    return new RDD<U>(this.sc, { parent: this as RDD<unknown>, op, sink });
  }

  private derive<U>(gen: () => Sliced<U[][] | KeyedMap<unknown, unknown>>): RDD<U> {
    return new RDD<U>(this.sc, { gen });
  }

  // ---- transformations --------------------------------------------------------------------

  map<U>(f: (x: T) => U): RDD<U> {
    return this.narrow(
      (src, from, to, out) => {
        for (let i = from; i < to; i++) out.push(f(src[i] as T));
      },
      (next) => (x) => next(f(x as T)),
    );
  }

  flatMap<U>(f: (x: T) => Iterable<U>): RDD<U> {
    return this.narrow(
      (src, from, to, out) => {
        for (let i = from; i < to; i++) {
          const r = f(src[i] as T);
          if (Array.isArray(r)) for (let j = 0; j < r.length; j++) out.push(r[j]);
          else for (const y of r) out.push(y);
        }
      },
      (next) => (x) => {
        const r = f(x as T);
        if (Array.isArray(r)) for (let j = 0; j < r.length; j++) next(r[j]);
        else for (const y of r) next(y);
      },
    );
  }

  filter(f: (x: T) => boolean): RDD<T> {
    return this.narrow(
      (src, from, to, out) => {
        for (let i = from; i < to; i++) {
          const x = src[i];
          if (f(x as T)) out.push(x);
        }
      },
      (next) => (x) => {
        if (f(x as T)) next(x);
      },
    );
  }

  /** f sees each partition's records once; it returns the partition's new records. */
  mapPartitions<U>(f: (records: IterableIterator<T>) => Iterable<U>): RDD<U> {
    return this.mapPartitionsWithIndex((_i, records) => f(records));
  }

  mapPartitionsWithIndex<U>(f: (index: number, records: IterableIterator<T>) => Iterable<U>): RDD<U> {
    return this.derive(() => mapParts(this, (p, i) => Array.from(f(i, p[Symbol.iterator]()))));
  }

  glom(): RDD<T[]> {
    return this.derive(() => mapParts(this, (p) => [p.slice()]));
  }

  repartition(numPartitions: number): RDD<T> {
    if (!(numPartitions >= 1)) throw new IllegalArgumentError(`repartition(${numPartitions}): the number of partitions must be at least 1`);
    const self = this;
    return this.derive(function* () {
      const all = flatten(yield* self.partsGen());
      return split(all, numPartitions);
    });
  }

  coalesce(numPartitions: number): RDD<T> {
    return this.repartition(numPartitions);
  }

  getNumPartitions(): number {
    return this.partitions().length;
  }

  union(...others: RDD<T>[]): RDD<T> {
    const all = [this as RDD<T>, ...others];
    return this.derive(function* () {
      const parts: T[][] = [];
      for (const r of all) parts.push(...(yield* r.partsGen()));
      return parts;
    });
  }

  distinct(numPartitions?: number): RDD<T> {
    const self = this;
    return this.derive(function* () {
      const seen = new KeyedSet<T>();
      for (const p of yield* self.partsGen()) {
        for (let i = 0; i < p.length; i++) {
          seen.add(p[i]);
          if ((i & (CHUNK - 1)) === CHUNK - 1) yield;
        }
      }
      return split([...seen], numPartitions ?? 1);
    });
  }

  sortBy<K>(keyFn: (x: T) => K, ascending = true, numPartitions?: number): RDD<T> {
    const self = this;
    return this.derive(function* () {
      const all = flatten(yield* self.partsGen());
      const keys = all.map(keyFn);
      yield;
      const idx = all.map((_x, i) => i);
      const sign = ascending ? 1 : -1;
      idx.sort((a, b) => sign * compareKeys(keys[a], keys[b]) || a - b);
      yield;
      return split(
        idx.map((i) => all[i] as T),
        numPartitions ?? 1,
      );
    });
  }

  keyBy<K>(f: (x: T) => K): RDD<[K, T]> {
    return this.map((x) => [f(x), x] as [K, T]);
  }

  zipWithIndex(): RDD<[T, number]> {
    const self = this;
    return this.derive(function* () {
      let n = 0;
      return (yield* self.partsGen()).map((p) => p.map((x) => [x, n++] as [T, number]));
    });
  }

  /**
   * Keeps the records once computed, so that several consumers share them. (Without it, a chain of
   * narrow transformations is re-run by each shuffle that reads it, as in Spark.)
   */
  cache(): this {
    this.keep = true;
    return this;
  }

  persist(): this {
    return this.cache();
  }

  unpersist(): this {
    this.keep = false;
    return this;
  }

  // ---- actions ----------------------------------------------------------------------------

  collect(): T[] {
    return flatten(this.partitions());
  }

  count(): number {
    return this.countIfKnown() ?? (runSync(this.computeGen()), this.countIfKnown() as number);
  }

  isEmpty(): boolean {
    return this.count() === 0;
  }

  take(n: number): T[] {
    runSync(this.computeGen());
    const out: T[] = [];
    if (n <= 0) return out;
    const kv = this.kv;
    if (kv) {
      for (const e of kv) {
        out.push(e as T);
        if (out.length >= n) break;
      }
      return out;
    }
    for (const p of this.parts as T[][]) {
      for (let i = 0; i < p.length && out.length < n; i++) out.push(p[i] as T);
      if (out.length >= n) break;
    }
    return out;
  }

  first(): T {
    const t = this.take(1);
    if (t.length === 0) throw new EmptyRDDError("first() on an empty RDD: check isEmpty() first");
    return t[0] as T;
  }

  reduce(f: (a: T, b: T) => T): T {
    let acc: T | undefined;
    let has = false;
    for (const p of this.partitions()) {
      for (let i = 0; i < p.length; i++) {
        if (has) acc = f(acc as T, p[i] as T);
        else {
          acc = p[i];
          has = true;
        }
      }
    }
    if (!has) throw new EmptyRDDError("reduce() on an empty RDD: use fold(zero, f) or check isEmpty() first");
    return acc as T;
  }

  fold(zero: T, f: (a: T, b: T) => T): T {
    let acc = zero;
    for (const p of this.partitions()) for (let i = 0; i < p.length; i++) acc = f(acc, p[i] as T);
    return acc;
  }

  aggregate<U>(zero: U, seqOp: (acc: U, x: T) => U, combOp: (a: U, b: U) => U): U {
    let acc = zero;
    for (const p of this.partitions()) {
      let local = zero;
      for (let i = 0; i < p.length; i++) local = seqOp(local, p[i] as T);
      acc = combOp(acc, local);
    }
    return acc;
  }

  /** Counts of each distinct value; tuple, object and Date values count by value (see keys.ts), each the first-seen one. */
  countByValue(): Map<T, number> {
    const m = new KeyedMap<T, number>();
    for (const p of this.partitions()) for (let i = 0; i < p.length; i++) m.merge(p[i] as T, 1, add);
    return m.toMap();
  }

  foreach(f: (x: T) => void): void {
    for (const p of this.partitions()) for (let i = 0; i < p.length; i++) f(p[i] as T);
  }

  foreachPartition(f: (records: IterableIterator<T>) => void): void {
    for (const p of this.partitions()) f(p[Symbol.iterator]());
  }

  sum(this: RDD<number>): number {
    return this.fold(0, (a, b) => a + b);
  }

  max(this: RDD<number>): number {
    return this.reduce((a, b) => (b > a ? b : a));
  }

  min(this: RDD<number>): number {
    return this.reduce((a, b) => (b < a ? b : a));
  }

  // ---- pairs ------------------------------------------------------------------------------
  // Keys compare by value for tuples (arrays), plain objects and Dates, as Spark compares Python
  // tuples and case classes; other objects by identity (engine/keys.ts). Outputs keep the first-seen key
  // (a tuple key of primitives as the engine's equal copy: keptPair says why).

  mapValues<K, V, U>(this: RDD<[K, V]>, f: (v: V) => U): RDD<[K, U]> {
    return this.narrow(
      (src, from, to, out) => {
        for (let i = from; i < to; i++) {
          const kv = src[i] as [K, V];
          out.push([kv[0], f(kv[1])]);
        }
      },
      (next) => (x) => {
        const kv = x as [K, V];
        next([kv[0], f(kv[1])]);
      },
    );
  }

  flatMapValues<K, V, U>(this: RDD<[K, V]>, f: (v: V) => Iterable<U>): RDD<[K, U]> {
    return this.narrow(
      (src, from, to, out) => {
        for (let i = from; i < to; i++) {
          const kv = src[i] as [K, V];
          for (const u of f(kv[1])) out.push([kv[0], u]);
        }
      },
      (next) => (x) => {
        const kv = x as [K, V];
        for (const u of f(kv[1])) next([kv[0], u]);
      },
    );
  }

  keys<K, V>(this: RDD<[K, V]>): RDD<K> {
    return this.map((kv) => kv[0]);
  }

  values<K, V>(this: RDD<[K, V]>): RDD<V> {
    return this.map((kv) => kv[1]);
  }

  /** Merges the values of each key with f. The result keeps its pairs in a Map (one partition). */
  reduceByKey<K, V>(this: RDD<[K, V]>, f: (a: V, b: V) => V, numPartitions?: number): RDD<[K, V]> {
    const self = this;
    return this.derive<[K, V]>(function* () {
      const m = new CombineBuffer<K, V>();
      yield* self.forEachRecord((kv) => m.merge(kv[0], kv[1], f));
      const out = yield* m.finish();
      return numPartitions && numPartitions > 1 ? split([...out], numPartitions) : (out as KeyedMap<unknown, unknown>);
    });
  }

  combineByKey<K, V, C>(
    this: RDD<[K, V]>,
    createCombiner: (v: V) => C,
    mergeValue: (c: C, v: V) => C,
    _mergeCombiners?: (a: C, b: C) => C,
    numPartitions?: number,
  ): RDD<[K, C]> {
    const self = this;
    return this.derive<[K, C]>(function* () {
      const m = new CombineBuffer<K, C>();
      yield* self.forEachRecord((kv) => m.combine(kv[0], kv[1], createCombiner, mergeValue));
      const out = yield* m.finish();
      return numPartitions && numPartitions > 1 ? split([...out], numPartitions) : (out as KeyedMap<unknown, unknown>);
    });
  }

  groupByKey<K, V>(this: RDD<[K, V]>, numPartitions?: number): RDD<[K, V[]]> {
    return this.combineByKey(
      (v) => [v],
      (c, v) => (c.push(v), c),
      (a, b) => a.concat(b),
      numPartitions,
    );
  }

  /** A plain Map; tuple, object and Date keys are counted by value (see keys.ts), each the first-seen one. */
  countByKey<K, V>(this: RDD<[K, V]>): Map<K, number> {
    const m = new KeyedMap<K, number>();
    this.foreach((kv) => m.merge(kv[0], 1, add));
    return m.toMap();
  }

  /**
   * The pairs as a plain Map (a later pair wins). Tuple, object and Date keys are deduplicated by
   * value, each kept as the first-seen object: look them up by iterating, or with that object.
   */
  collectAsMap<K, V>(this: RDD<[K, V]>): Map<K, V> {
    runSync(this.computeGen());
    const kv = this.kv;
    if (kv) return (kv as KeyedMap<K, V>).toMap();
    return new KeyedMap<K, V>(this.collect()).toMap();
  }

  /** The values of `key` (compared by value for tuples, objects and Dates). */
  lookup<K, V>(this: RDD<[K, V]>, key: K): V[] {
    return this.collect()
      .filter((kv) => keysEqual(kv[0], key))
      .map((kv) => kv[1]);
  }

  /** For each key, the values of this RDD and of each other RDD, as arrays (in input order). */
  cogroup<K, V, W>(this: RDD<[K, V]>, other: RDD<[K, W]>, numPartitions?: number): RDD<[K, [V[], W[]]]> {
    const self = this;
    return this.derive<[K, [V[], W[]]]>(function* () {
      const m = new KeyedMap<K, [V[], W[]]>();
      let n = 0;
      for (const [side, rdd] of [
        [0, self],
        [1, other],
      ] as const) {
        for (const p of yield* (rdd as RDD<[K, unknown]>).partsGen()) {
          for (let i = 0; i < p.length; i++) {
            const kv = p[i] as [K, unknown];
            let g = m.get(kv[0]);
            if (!g) m.set(kv[0], (g = [[], []]));
            (g[side] as unknown[]).push(kv[1]);
            if ((++n & (CHUNK - 1)) === 0) yield;
          }
        }
      }
      return numPartitions && numPartitions > 1 ? split([...m], numPartitions) : (m as KeyedMap<unknown, unknown>);
    });
  }

  join<K, V, W>(this: RDD<[K, V]>, other: RDD<[K, W]>, numPartitions?: number): RDD<[K, [V, W]]> {
    return joinWith(this, other, false, false, numPartitions) as RDD<[K, [V, W]]>;
  }

  leftOuterJoin<K, V, W>(this: RDD<[K, V]>, other: RDD<[K, W]>, numPartitions?: number): RDD<[K, [V, W | undefined]]> {
    return joinWith(this, other, true, false, numPartitions) as RDD<[K, [V, W | undefined]]>;
  }

  rightOuterJoin<K, V, W>(this: RDD<[K, V]>, other: RDD<[K, W]>, numPartitions?: number): RDD<[K, [V | undefined, W]]> {
    return joinWith(this, other, false, true, numPartitions) as RDD<[K, [V | undefined, W]]>;
  }

  fullOuterJoin<K, V, W>(
    this: RDD<[K, V]>,
    other: RDD<[K, W]>,
    numPartitions?: number,
  ): RDD<[K, [V | undefined, W | undefined]]> {
    return joinWith(this, other, true, true, numPartitions);
  }

  subtractByKey<K, V, W>(this: RDD<[K, V]>, other: RDD<[K, W]>): RDD<[K, V]> {
    const self = this;
    return this.derive<[K, V]>(function* () {
      const drop = new KeyedSet<K>();
      for (const p of yield* other.partsGen()) for (const kv of p) drop.add(kv[0]);
      return (yield* self.partsGen()).map((p) => p.filter((kv) => !drop.has(kv[0])));
    });
  }

  sortByKey<K, V>(this: RDD<[K, V]>, ascending = true): RDD<[K, V]> {
    return this.sortBy((kv) => kv[0], ascending);
  }

  // ---- display ----------------------------------------------------------------------------

  toString(): string {
    const n = this.countIfKnown();
    return `RDD[${this.id}]${n === undefined ? "" : ` (${n} records)`}`;
  }

  /** Rich display protocol (a notebook calls it; no Jupyter dependency): the first 20 records. */
  [JUPYTER_DISPLAY](): MimeBundle {
    const head = this.take(21);
    return recordsBundle(`RDD[${this.id}]: ${this.count()} records`, head.slice(0, 20), head.length > 20);
  }
}

const add = (a: number, b: number) => a + b;

/**
 * A shuffle's combining step: string and number keys (and other primitives) go into a native Map of
 * boxes, so merging into a key already seen is one lookup and a field write (a KeyedMap's merge is
 * a get and a set); value keys go through a KeyedMap. finish() hands the result over as a KeyedMap.
 */
/**
 * Primitive keys boxed in one native Map, up to this many; the rest go to a KeyedMap, whose shards keep
 * the rehash of a growing Map short (see keys.ts) and which holds no box per key for the GC to copy.
 */
const MAX_BOXES = 1 << 16;

/** A pair key [a, b] of primitives boxed by its first element (the `[word, 1]` key), with a copy of the key (keptPair). */
interface PairBox<K, C> {
  k: K;
  b: unknown;
  c: C;
}

/** The box of pair key [a, b] in `pairs`, if the box under `a` is for this `b` (SameValueZero). */
function pairBox<K, C>(pairs: Map<unknown, PairBox<K, C>>, a: unknown, b: unknown): PairBox<K, C> | undefined {
  const e = pairs.get(a);
  return e !== undefined && (e.b === b || (e.b !== e.b && b !== b)) ? e : undefined;
}

const isPrimitive = (x: unknown): boolean => typeof x !== "object" || x === null;

/**
 * Combines one partition's values by key. Primitive keys and pair keys of primitives (one box per
 * first element, as reduceByKey over `[word, n]` keys mostly sees) are one native lookup each; the
 * other keys, and pairs whose first element comes with a second one, go through a KeyedMap. A key
 * is never in two places: it goes to a box only while nothing else holds its first element.
 */
class CombineBuffer<K, C> {
  private readonly boxes = new Map<K, { c: C }>();
  private readonly pairs = new Map<unknown, PairBox<K, C>>();
  private values?: KeyedMap<K, C>;

  merge(k: K, v: C, f: (a: C, b: C) => C): void {
    if (typeof k !== "object" || k === null) {
      const b = this.boxes.get(k);
      if (b !== undefined) {
        b.c = f(b.c, v);
        return;
      }
      if (this.boxes.size < MAX_BOXES) {
        this.boxes.set(k, { c: v });
        return;
      }
    } else if (Array.isArray(k) && k.length === 2 && isPrimitive(k[0]) && isPrimitive(k[1])) {
      const e = pairBox(this.pairs, k[0], k[1]);
      if (e !== undefined) {
        e.c = f(e.c, v);
        return;
      }
      if (this.pairs.size < MAX_BOXES && !this.pairs.has(k[0])) {
        this.pairs.set(k[0], { k: keptPair<K>(k[0], k[1]), b: k[1], c: v });
        return;
      }
    }
    (this.values ??= new KeyedMap<K, C>()).merge(k, v, f);
  }

  combine<X>(k: K, x: X, create: (x: X) => C, mergeValue: (c: C, x: X) => C): void {
    if (typeof k !== "object" || k === null) {
      const b = this.boxes.get(k);
      if (b !== undefined) {
        b.c = mergeValue(b.c, x);
        return;
      }
      if (this.boxes.size < MAX_BOXES) {
        this.boxes.set(k, { c: create(x) });
        return;
      }
    } else if (Array.isArray(k) && k.length === 2 && isPrimitive(k[0]) && isPrimitive(k[1])) {
      const e = pairBox(this.pairs, k[0], k[1]);
      if (e !== undefined) {
        e.c = mergeValue(e.c, x);
        return;
      }
      if (this.pairs.size < MAX_BOXES && !this.pairs.has(k[0])) {
        this.pairs.set(k[0], { k: keptPair<K>(k[0], k[1]), b: k[1], c: create(x) });
        return;
      }
    }
    (this.values ??= new KeyedMap<K, C>()).combine(k, x, create, mergeValue);
  }

  *finish(): Sliced<KeyedMap<K, C>> {
    const out = new KeyedMap<K, C>();
    let n = 0;
    for (const [k, b] of this.boxes) {
      out.set(k, b.c);
      if ((++n & (CHUNK - 1)) === 0) yield;
    }
    for (const e of this.pairs.values()) {
      out.set(e.k, e.c);
      if ((++n & (CHUNK - 1)) === 0) yield;
    }
    if (this.values) {
      for (const [k, c] of this.values) {
        out.set(k, c);
        if ((++n & (CHUNK - 1)) === 0) yield;
      }
    }
    return out;
  }
}
const newGroup = <W>(w: W): W[] => [w];
const pushGroup = <W>(g: W[], w: W): W[] => (g.push(w), g);

function flatten<T>(parts: T[][]): T[] {
  if (parts.length === 1) return (parts[0] as T[]).slice();
  let n = 0;
  for (const p of parts) n += p.length;
  const out: T[] = new Array(n);
  let k = 0;
  for (const p of parts) for (let i = 0; i < p.length; i++) out[k++] = p[i] as T;
  return out;
}

function* applyOps(src: unknown[][], ops: ChunkOp[]): Sliced<unknown[][]> {
  const out: unknown[][] = [];
  const last = ops.length - 1;
  for (const p of src) {
    const o: unknown[] = [];
    for (let i = 0; i < p.length; i += CHUNK) {
      const end = Math.min(p.length, i + CHUNK);
      if (last === 0) (ops[0] as ChunkOp)(p, i, end, o);
      else {
        let buf = p;
        let from = i;
        let to = end;
        for (let k = 0; k < last; k++) {
          const tmp: unknown[] = [];
          (ops[k] as ChunkOp)(buf, from, to, tmp);
          buf = tmp;
          from = 0;
          to = tmp.length;
        }
        (ops[last] as ChunkOp)(buf, from, to, o);
      }
      yield;
    }
    out.push(o);
  }
  return out;
}

function* mapParts<T, U>(rdd: RDD<T>, f: (p: T[], index: number) => U[]): Sliced<U[][]> {
  const parts = yield* rdd.partsGen();
  const out: U[][] = [];
  for (let i = 0; i < parts.length; i++) {
    out.push(f(parts[i] as T[], i));
    yield;
  }
  return out;
}

function joinWith<K, V, W>(
  left: RDD<[K, V]>,
  right: RDD<[K, W]>,
  keepLeft: boolean,
  keepRight: boolean,
  numPartitions?: number,
): RDD<[K, [V | undefined, W | undefined]]> {
  return new RDD<[K, [V | undefined, W | undefined]]>(left.sc, {
    *gen() {
      const byKey = new KeyedMap<K, W[]>();
      for (const p of yield* right.partsGen()) for (const kv of p) byKey.combine(kv[0], kv[1], newGroup, pushGroup);
      yield;
      const out: [K, [V | undefined, W | undefined]][] = [];
      const matched = keepRight ? new KeyedSet<K>() : undefined;
      let n = 0;
      for (const p of yield* left.partsGen()) {
        for (const kv of p) {
          const ws = byKey.get(kv[0]);
          if (ws) {
            matched?.add(kv[0]);
            for (const w of ws) out.push([kv[0], [kv[1], w]]);
          } else if (keepLeft) out.push([kv[0], [kv[1], undefined]]);
          if ((++n & (CHUNK - 1)) === 0) yield;
        }
      }
      if (matched) for (const [k, ws] of byKey) if (!matched.has(k)) for (const w of ws) out.push([k, [undefined, w]]);
      return split(out, numPartitions ?? 1);
    },
  });
}

export interface SparkContextOptions {
  appName?: string;
  /** Partitions of parallelize() when numSlices is not given (default 2, like local[2]). */
  defaultParallelism?: number;
}

/** The batch entry point: builds RDDs from local data and files. */
export class SparkContext {
  readonly appName: string;
  readonly defaultParallelism: number;
  private stopped = false;

  constructor(options: SparkContextOptions = {}) {
    this.appName = options.appName ?? "streambook";
    this.defaultParallelism = options.defaultParallelism ?? 2;
  }

  get isStopped(): boolean {
    return this.stopped;
  }

  parallelize<T>(data: Iterable<T>, numSlices?: number): RDD<T> {
    const arr = Array.isArray(data) ? data.slice() : Array.from(data);
    return new RDD<T>(this, { parts: split(arr, numSlices ?? Math.min(this.defaultParallelism, Math.max(1, arr.length))) });
  }

  emptyRDD<T>(): RDD<T> {
    return new RDD<T>(this, { parts: [] });
  }

  /** Internal: an RDD computed (in slices) by a generator when first needed. */
  deferred<T>(gen: () => Sliced<T[][]>): RDD<T> {
    return new RDD<T>(this, { gen });
  }

  /** Internal: a pair RDD computed (in slices) into a KeyedMap with unique keys when first needed. */
  deferredMap<K, V>(gen: () => Sliced<KeyedMap<K, V> | KeyedView>): RDD<[K, V]> {
    return new RDD<[K, V]>(this, { gen: gen as () => Sliced<KeyedMap<unknown, unknown> | KeyedView> });
  }

  /**
   * Internal: an RDD over pairs already held with unique keys (a KeyedMap is used as is and must not
   * change afterwards; a plain Map is copied, merging keys equal by value).
   */
  fromMap<K, V>(m: KeyedMap<K, V> | Map<K, V>): RDD<[K, V]> {
    const kv = m instanceof KeyedMap ? m : new KeyedMap<K, V>(m);
    return new RDD<[K, V]>(this, { kv: kv as KeyedMap<unknown, unknown> });
  }

  /** Lines of a file, or of every visible file in a directory (sorted by name); \n and \r\n both end a line. */
  textFile(file: string, minPartitions?: number): RDD<string> {
    const files = fs.statSync(file).isDirectory()
      ? fs
          .readdirSync(file)
          .filter((f) => !f.startsWith(".") && !f.startsWith("_"))
          .sort()
          .map((f) => path.join(file, f))
          .filter((f) => fs.statSync(f).isFile())
      : [file];
    const lines: string[] = [];
    for (const f of files) {
      const text = fs.readFileSync(f, "utf8");
      if (text.length === 0) continue;
      const ls = text.split(/\r?\n/);
      if (ls[ls.length - 1] === "") ls.pop();
      for (const l of ls) lines.push(l);
    }
    return this.parallelize(lines, minPartitions ?? 1);
  }

  union<T>(rdds: RDD<T>[]): RDD<T> {
    if (rdds.length === 0) return this.emptyRDD();
    return (rdds[0] as RDD<T>).union(...rdds.slice(1));
  }

  // ---- shared variables (Spark's guide, "Shared Variables") -------------------------------------

  private readonly accumulators: AccumulatorV2<unknown, unknown>[] = [];

  /** A read-only value every task can use: `b.value`; `b.unpersist()`, `b.destroy()`. */
  broadcast<T>(value: T): Broadcast<T> {
    return new Broadcast(value);
  }

  /** Registers an accumulator (named ones show in ssc.ui()). */
  register(acc: AccumulatorV2<unknown, unknown>, name?: string): void {
    if (name !== undefined) acc.name = name;
    if (!this.accumulators.includes(acc)) this.accumulators.push(acc);
  }

  /** Sums integers: `add(n)`, `value`, `sum`, `count`, `avg`. */
  longAccumulator(name?: string): LongAccumulator {
    const acc = new LongAccumulator();
    this.register(acc as AccumulatorV2<unknown, unknown>, name);
    return acc;
  }

  /** Sums doubles: `add(x)`, `value`, `sum`, `count`, `avg`. */
  doubleAccumulator(name?: string): DoubleAccumulator {
    const acc = new DoubleAccumulator();
    this.register(acc as AccumulatorV2<unknown, unknown>, name);
    return acc;
  }

  /** Collects elements: `add(x)`, `value` (a copy of the list). */
  collectionAccumulator<T>(name?: string): CollectionAccumulator<T> {
    const acc = new CollectionAccumulator<T>();
    this.register(acc as AccumulatorV2<unknown, unknown>, name);
    return acc;
  }

  /** The named accumulators registered here, as ssc.ui() shows them. */
  accumulatorInfos(): AccumulatorInfo[] {
    return this.accumulators
      .filter((a) => a.name !== undefined)
      .map((a) => {
        const v = a.value;
        return { id: a.id, name: a.name as string, value: Array.isArray(v) ? `${v.length} elements` : String(v) };
      });
  }

  stop(): void {
    this.stopped = true;
  }
}
