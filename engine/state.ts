// Stateful operators: updateStateByKey (a new immutable state Map per batch) and mapWithState
// (Spark's StateSpec/State, a per-key function with timeouts over a Map updated in place).

import { DStream, operators, StatefulDStream, type NameOption, type StateUpdate, type UpdateStateOptions } from "./dstream.js";
import { StateError } from "./errors.js";
import { KeyedMap, KeyedSet } from "./keys.js";
import type { KeyedView, RDD } from "./rdd.js";
import { CancelledError, CHUNK, runSync, type Sliced } from "./slicing.js";
import { forEachPair } from "./window.js";
import { ColumnRows } from "./checkpoint/format.js";

/**
 * The JSON form of a keyed state in checkpoints. Keys go through JSON: tuples and plain objects come
 * back equal by value (so they match later batches' keys); Date keys come back as ISO strings.
 */
export interface StateCheckpoint<K, S> {
  entries: [K, S][];
}

const ABSENT: unique symbol = Symbol("absent");

/**
 * One version of a keyed state kept in place: the live Map holds the newest state, and each older
 * version keeps the previous values of the keys changed after it (an undo log), so an older
 * version's RDD still reads exactly as it was. Versions nobody holds are garbage with their logs.
 */
class StateVersion<K, S> {
  undo?: KeyedMap<K, S | typeof ABSENT>;
  next?: StateVersion<K, S>;
  snapshot?: KeyedMap<K, S>;

  constructor(private readonly store: StateStore<K, S>) {}

  private lookup(k: K): S | typeof ABSENT {
    for (let v: StateVersion<K, S> | undefined = this; v; v = v.next) {
      if (v.snapshot) return v.snapshot.has(k) ? (v.snapshot.get(k) as S) : ABSENT;
      if (v.undo?.has(k)) return v.undo.get(k) as S | typeof ABSENT;
    }
    const live = this.store.map;
    return live.has(k) ? (live.get(k) as S) : ABSENT;
  }

  /** The pairs of this version: the live Map while nothing changed it since, else a snapshot (kept). */
  map(): KeyedMap<K, S> {
    if (this.snapshot) return this.snapshot;
    if (!this.undo) return this.store.map;
    const snap = new KeyedMap<K, S>();
    for (const k of this.store.map.keys()) {
      const x = this.lookup(k);
      if (x !== ABSENT) snap.set(k, x);
    }
    for (let v: StateVersion<K, S> | undefined = this; v && !v.snapshot; v = v.next) {
      if (!v.undo) continue;
      for (const k of v.undo.keys()) {
        if (snap.has(k) || this.store.map.has(k)) continue;
        const x = this.lookup(k);
        if (x !== ABSENT) snap.set(k, x);
      }
    }
    this.snapshot = snap;
    this.undo = undefined;
    this.next = undefined;
    return snap;
  }
}

class StateStore<K, S> {
  map = new KeyedMap<K, S>();
  current = new StateVersion<K, S>(this);
  private updating?: StateVersion<K, S>;
  /** Previous values of the keys the running update changed (kept here too: a snapshot may drop the version's reference). */
  private log?: KeyedMap<K, S | typeof ABSENT>;

  /** Starts changing the live Map; the current version starts reading through the log of what it had. */
  begin(): void {
    // An update that never finished (nor rolled back) must not leave its half in the live Map.
    this.rollback();
    const prev = this.current;
    this.log = new KeyedMap();
    prev.undo = this.log;
    this.updating = prev;
  }

  set(k: K, s: S): void {
    const log = this.log;
    if (log && !log.has(k)) log.set(k, this.map.has(k) ? (this.map.get(k) as S) : ABSENT);
    this.map.set(k, s);
  }

  delete(k: K): void {
    const log = this.log;
    if (log && !log.has(k) && this.map.has(k)) log.set(k, this.map.get(k) as S);
    this.map.delete(k);
  }

  /** The update is complete: a new current version. */
  commit(): StateVersion<K, S> {
    const prev = this.updating as StateVersion<K, S>;
    const v = new StateVersion<K, S>(this);
    if (!prev.snapshot) prev.next = v;
    this.current = v;
    this.updating = undefined;
    this.log = undefined;
    return v;
  }

  /** The update failed: put the previous values back, as if it never started. */
  rollback(): void {
    const prev = this.updating;
    const log = this.log;
    if (!prev || !log) return;
    for (const [k, s] of log) {
      if (s === ABSENT) this.map.delete(k);
      else this.map.set(k, s);
    }
    prev.undo = undefined;
    this.updating = undefined;
    this.log = undefined;
  }

  /** Replaces everything (initial state, recovery). */
  reset(entries: Iterable<[K, S]>): StateVersion<K, S> {
    this.map = new KeyedMap(entries);
    this.current = new StateVersion<K, S>(this);
    this.updating = undefined;
    this.log = undefined;
    return this.current;
  }
}

/**
 * updateStateByKey: state(T) = f(values of T, state(T - slide)) for every key; undefined removes a key.
 * The state is one Map updated in place (memory ~ one copy of the state); each batch's RDD is a
 * version of it that keeps reading as it was (see StateVersion).
 */
export class StateDStream<K, V, S> extends StatefulDStream<[K, S], [K, S]> {
  private readonly store = new StateStore<K, S>();
  private lastState?: RDD<[K, S]>;
  /** State RDDs whose update threw: rolled back, and skipped by the next batch (which goes on from the last good state). */
  private readonly failed = new WeakSet<RDD<[K, S]>>();
  private initial?: RDD<[K, S]>;

  constructor(
    readonly parent: DStream<[K, V]>,
    private readonly update: StateUpdate<K, V, S>,
    options: UpdateStateOptions<K, S>,
  ) {
    super(parent.ssc, "updateStateByKey", [parent as DStream<unknown>], { name: options.name });
    this.initial = options.initialRDD;
  }

  private viewRDD(v: StateVersion<K, S>): RDD<[K, S]> {
    return this.ssc.sc.deferredMap<K, S>(function* () {
      return { view: () => v.map() as KeyedMap<unknown, unknown> };
    });
  }

  compute(time: number): RDD<[K, S]> | undefined {
    const data = this.parent.getOrCompute(time);
    let prev = this.lastState;
    // As Spark's StateDStream: with no state yet and no RDD from the parent there is nothing to do;
    // with a state and no RDD, every key is updated with empty values (below, as for an empty batch).
    if (!data && !prev) return undefined;
    const perKey = this.update.kind === "key" || this.update.kind === "timeKey" ? this.keyFunction(time) : undefined;
    const perPartition = perKey ? undefined : this.partitionFunction(time);
    const self = this;
    let failure: { error: unknown } | undefined;
    const rdd: RDD<[K, S]> = this.ssc.sc.deferredMap<K, S>(function* () {
      // Runs once: a failed update reports the same error again rather than touching the state.
      if (failure) throw failure.error;
      try {
        return yield* update();
      } catch (error) {
        // A cancelled update (plain stop) was undone and may run again whole; a failed one may not.
        if (!(error instanceof CancelledError)) {
          failure = { error };
          self.failed.add(rdd);
        }
        throw error;
      }
    });
    function* update(): Sliced<KeyedView> {
      if (prev && !self.failed.has(prev)) yield* prev.computeGen();
      prev = undefined;
      const store = self.store;
      if (self.initial) {
        const m: [K, S][] = [];
        yield* forEachPair(self.initial, (k, s) => void m.push([k, s]));
        // Only once read whole: a cancelled batch reads the initial state again when it runs again.
        self.initial = undefined;
        store.reset(m);
      }
      const groups = new KeyedMap<K, V[]>();
      if (data) yield* forEachPair(data, (k, v) => groups.combine(k, v, newGroup, pushGroup));
      store.begin();
      try {
        if (perKey) {
          let n = 0;
          for (const [k, s] of store.map) {
            const vs = groups.get(k);
            if (vs) groups.delete(k);
            const ns = perKey(vs ?? [], s, k);
            if (ns === undefined) store.delete(k);
            else if (ns !== s) store.set(k, ns);
            if ((++n & (CHUNK - 1)) === 0) yield;
          }
          for (const [k, vs] of groups) {
            const ns = perKey(vs, undefined, k);
            if (ns !== undefined) store.set(k, ns);
            if ((++n & (CHUNK - 1)) === 0) yield;
          }
        } else {
          // One partition: the user's function sees every key with new values or a state, once.
          const live = store.map;
          function* records(): IterableIterator<[K, V[], S | undefined]> {
            for (const [k, s] of live) yield [k, groups.get(k) ?? [], s];
            for (const [k, vs] of groups) if (!live.has(k)) yield [k, vs, undefined];
          }
          const keep = new KeyedSet<K>();
          const out: [K, S][] = [];
          for (const kv of (perPartition as (r: IterableIterator<[K, V[], S | undefined]>) => Iterable<[K, S]>)(records())) out.push(kv);
          yield;
          for (const [k, ns] of out) {
            keep.add(k);
            if (!live.has(k) || live.get(k) !== ns) store.set(k, ns);
          }
          const gone: K[] = [];
          for (const k of live.keys()) if (!keep.has(k)) gone.push(k);
          for (const k of gone) store.delete(k);
        }
      } catch (e) {
        store.rollback();
        throw e;
      }
      const v = store.commit();
      return { view: () => v.map() as KeyedMap<unknown, unknown> };
    }
    this.lastState = rdd;
    return rdd;
  }

  /** The per-key forms as one `(values, state, key)` function for batch `time`. */
  private keyFunction(time: number): ((values: V[], state: S | undefined, key: K) => S | undefined) | undefined {
    const u = this.update;
    if (u.kind === "key") return u.f;
    if (u.kind === "timeKey") return (values, state, key) => u.f(time, key, values, state);
    return undefined;
  }

  /** The iterator forms as one `(records)` function for batch `time`. */
  private partitionFunction(time: number): ((records: IterableIterator<[K, V[], S | undefined]>) => Iterable<[K, S]>) | undefined {
    const u = this.update;
    if (u.kind === "partition") return u.f;
    if (u.kind === "timePartition") return (records) => u.f(time, records);
    return undefined;
  }

  /** The state after the latest completed batch (the initial state before any). */
  state(): RDD<[K, S]> {
    const last = this.ssc.graph.lastCompletedTime;
    const rdd = last === undefined ? undefined : this.generatedRDDs.get(last);
    // A failed batch left the state as it was before it: that is the current version.
    if (rdd && !this.failed.has(rdd)) return rdd;
    if (this.initial && this.generatedRDDs.size === 0) return this.initial;
    return this.viewRDD(this.store.current);
  }

  checkpointState(): StateCheckpoint<K, S> {
    const rdd = this.state();
    const m = runSync(rdd.keyedGen()) as KeyedMap<K, S> | undefined;
    return { entries: m ? [...m] : rdd.collect() };
  }

  restoreState(data: unknown): void {
    this.initial = undefined;
    this.lastState = this.viewRDD(this.store.reset((data as StateCheckpoint<K, S>).entries));
  }
}

/** A key's state as mapWithState's function sees it. */
export class State<S> {
  private value: S | undefined;
  private has = false;
  private timingOut = false;
  /** Internal: what the function did (Spark's isUpdated/isRemoved). */
  updated = false;
  removed = false;

  /** Internal: prepares the wrapper for one call. */
  wrap(exists: boolean, value: S | undefined, timingOut: boolean): void {
    this.has = exists;
    this.value = value;
    this.timingOut = timingOut;
    this.updated = false;
    this.removed = false;
  }

  exists(): boolean {
    return this.has;
  }

  /** The state; throws StateError when there is none (check exists() or use getOption()). */
  get(): S {
    if (!this.has) throw new StateError("State is not set: this key has no state; check state.exists() first or use getOption()");
    return this.value as S;
  }

  getOption(): S | undefined {
    return this.has ? this.value : undefined;
  }

  update(s: S): void {
    if (this.removed || this.timingOut) {
      throw new StateError(
        this.removed
          ? "Cannot update the state after it has been removed (State.update() after State.remove() in the same call)"
          : "Cannot update the state that is timing out: check state.isTimingOut() before update()",
      );
    }
    this.value = s;
    this.has = true;
    this.updated = true;
  }

  remove(): void {
    if (this.timingOut) throw new StateError("Cannot remove the state that is timing out: it is removed anyway after this call");
    if (this.removed) throw new StateError("Cannot remove the state that has already been removed");
    this.has = false;
    this.value = undefined;
    // As Spark's StateImpl: a removed state is not also "updated", whatever came before in this call.
    this.updated = false;
    this.removed = true;
  }

  /** Spark's isUpdated(): update() was called in this call (and remove() was not, after it). */
  isUpdated(): boolean {
    return this.updated;
  }

  /** Spark's isRemoved(): remove() was called in this call. */
  isRemoved(): boolean {
    return this.removed;
  }

  /** True when the function is called because the key stayed idle longer than the timeout. */
  isTimingOut(): boolean {
    return this.timingOut;
  }
}

export type MappingFunction<K, V, S, M> = (key: K, value: V | undefined, state: State<S>) => M;

/** Spark's other StateSpec.function form: the batch time first; undefined results are dropped (Option). */
export type MappingFunctionWithTime<K, V, S, M> = (time: number, key: K, value: V | undefined, state: State<S>) => M | undefined;

/** Spark's StateSpec: StateSpec.function(fn).initialState(rdd).timeout(ms). */
export class StateSpec<K, V, S, M> {
  private _initial?: RDD<[K, S]>;
  private _timeout?: number;
  private _numPartitions?: number;

  private constructor(
    readonly fn: MappingFunction<K, V, S, M>,
    /** Set for Spark's form with the batch time: (time, key, value, state). */
    readonly fnWithTime?: MappingFunctionWithTime<K, V, S, M>,
  ) {}

  /**
   * fn(key, value, state) runs for each record of a batch (value undefined when the key times out).
   * Spark's other form, fn(time, key, value, state), is told apart by its four parameters (or use
   * StateSpec.functionWithTime to say so explicitly).
   */
  static function<K, V, S, M>(fn: MappingFunctionWithTime<K, V, S, M>): StateSpec<K, V, S, M>;
  static function<K, V, S, M>(fn: MappingFunction<K, V, S, M>): StateSpec<K, V, S, M>;
  static function<K, V, S, M>(fn: MappingFunction<K, V, S, M> | MappingFunctionWithTime<K, V, S, M>): StateSpec<K, V, S, M> {
    if (fn.length >= 4) return StateSpec.functionWithTime(fn as MappingFunctionWithTime<K, V, S, M>);
    return new StateSpec(fn as MappingFunction<K, V, S, M>);
  }

  /** Spark's StateSpec.function((time, key, value, state) => Option[M]), stated explicitly. */
  static functionWithTime<K, V, S, M>(fn: MappingFunctionWithTime<K, V, S, M>): StateSpec<K, V, S, M> {
    return new StateSpec<K, V, S, M>(() => undefined as M, fn);
  }

  initialState(rdd: RDD<[K, S]>): this {
    this._initial = rdd;
    return this;
  }

  /** Keys that get no data for `ms` time out: fn sees state.isTimingOut() once, then the key is removed. */
  timeout(ms: number): this {
    this._timeout = ms;
    return this;
  }

  numPartitions(n: number): this {
    this._numPartitions = n;
    return this;
  }

  getInitialState(): RDD<[K, S]> | undefined {
    return this._initial;
  }

  getTimeout(): number | undefined {
    return this._timeout;
  }

  getNumPartitions(): number | undefined {
    return this._numPartitions;
  }
}

const newGroup = <V>(v: V): V[] => [v];
const pushGroup = <V>(g: V[], v: V): V[] => (g.push(v), g);

interface Entry<S> {
  s: S;
  /** Batch time of the last update or data for this key (for timeouts). */
  t: number;
}

/**
 * mapWithState: the mapped values of each batch (undefined results are dropped, as with Spark's
 * Option-returning form). The state Map is updated in place, batch after batch, in order.
 */
export class MapWithStateDStream<K, V, S, M> extends StatefulDStream<M, [K, S]> {
  private stateMap = new KeyedMap<K, Entry<S>>();
  private initial?: RDD<[K, S]>;
  private lastRDD?: RDD<M>;
  private readonly failed = new WeakSet<RDD<M>>();
  /** The undo log of the batch being processed, if one is. */
  private inProgress?: KeyedMap<K, Entry<S> | typeof ABSENT>;
  private snapshotsWanted = false;
  private readonly snapshots = new Map<number, KeyedMap<K, S>>();

  constructor(
    readonly parent: DStream<[K, V]>,
    readonly spec: StateSpec<K, V, S, M>,
    options: NameOption,
  ) {
    super(parent.ssc, "mapWithState", [parent as DStream<unknown>], options);
    this.initial = spec.getInitialState();
  }

  compute(time: number): RDD<M> {
    const data = this.parent.getOrCompute(time);
    let prev = this.lastRDD;
    const self = this;
    const withTime = this.spec.fnWithTime;
    const fn: MappingFunction<K, V, S, M> = withTime ? (k, v, st) => withTime(time, k, v, st) as M : this.spec.fn;
    const timeout = this.spec.getTimeout();
    let failure: { error: unknown } | undefined;
    const rdd: RDD<M> = this.ssc.sc.deferred<M>(function* () {
      // Runs once: a failed batch reports the same error again rather than touching the state.
      if (failure) throw failure.error;
      try {
        return yield* update();
      } catch (error) {
        if (!(error instanceof CancelledError)) {
          failure = { error };
          self.failed.add(rdd);
        }
        throw error;
      }
    });
    function* update(): Sliced<M[][]> {
      if (prev && !self.failed.has(prev)) yield* prev.computeGen();
      prev = undefined;
      const map = self.stateMap;
      if (self.initial) {
        const m: [K, S][] = [];
        yield* forEachPair(self.initial, (k, s) => void m.push([k, s]));
        // Only once read whole: a cancelled batch reads the initial state again when it runs again.
        self.initial = undefined;
        for (const [k, s] of m) map.set(k, { s, t: time });
      }
      // Previous entries of the keys this batch touches, to undo the batch if the function throws
      // (and so that state() read while the batch runs sees the state before it).
      const undo = new KeyedMap<K, Entry<S> | typeof ABSENT>();
      self.inProgress = undo;
      const touch = (k: K, e: Entry<S> | undefined) => {
        if (!undo.has(k)) undo.set(k, e ? { s: e.s, t: e.t } : ABSENT);
      };
      const out: M[] = [];
      const state = new State<S>();
      try {
        if (data) {
          yield* forEachPair(data, (k, v) => {
            const e = map.get(k);
            state.wrap(e !== undefined, e?.s, false);
            const m = fn(k, v, state);
            if (m !== undefined) out.push(m);
            if (state.removed) {
              touch(k, e);
              map.delete(k);
            } else if (state.updated) {
              touch(k, e);
              if (e) {
                e.s = state.getOption() as S;
                e.t = time;
              } else map.set(k, { s: state.getOption() as S, t: time });
            } else if (e && timeout !== undefined) {
              touch(k, e);
              e.t = time;
            }
          });
        }
        if (timeout !== undefined) {
          const threshold = time - timeout;
          let n = 0;
          for (const [k, e] of map) {
            if (e.t < threshold) {
              state.wrap(true, e.s, true);
              const m = fn(k, undefined, state);
              if (m !== undefined) out.push(m);
              touch(k, e);
              map.delete(k);
            }
            if ((++n & (CHUNK - 1)) === 0) yield;
          }
        }
      } catch (error) {
        for (const [k, pre] of undo) {
          if (pre === ABSENT) map.delete(k);
          else map.set(k, pre);
        }
        throw error;
      } finally {
        self.inProgress = undefined;
      }
      if (self.snapshotsWanted) {
        const snap = new KeyedMap<K, S>();
        for (const [k, e] of map) snap.set(k, e.s);
        self.snapshots.set(time, snap);
      }
      return [out];
    }
    this.lastRDD = rdd;
    return rdd;
  }

  /** Every key's state after each batch. */
  stateSnapshots(): DStream<[K, S]> {
    this.snapshotsWanted = true;
    const snapshots = new SnapshotDStream<K, S>(this as MapWithStateDStream<K, unknown, S, unknown>);
    snapshots.restatesKeyedTotals = true; // every live key's state, each batch: charts default to "update"
    return snapshots;
  }

  /** Internal: the snapshot taken after batch `time`. */
  takeSnapshot(time: number): KeyedMap<K, S> {
    const s = this.snapshots.get(time) ?? new KeyedMap<K, S>();
    this.snapshots.delete(time);
    return s;
  }

  /** A copy of the state after the latest processed batch (while a batch runs: the state before it). */
  state(): RDD<[K, S]> {
    const snap = new KeyedMap<K, S>();
    if (this.initial && this.stateMap.size === 0) for (const [k, s] of this.initial.collect()) snap.set(k, s);
    const undo = this.inProgress;
    for (const [k, e] of this.stateMap) {
      const pre = undo?.get(k);
      if (pre === undefined) snap.set(k, e.s);
      else if (pre !== ABSENT) snap.set(k, pre.s);
    }
    if (undo) for (const [k, pre] of undo) if (pre !== ABSENT && !this.stateMap.has(k)) snap.set(k, pre.s);
    return this.ssc.sc.fromMap(snap);
  }

  checkpointState(): { entries: [K, S, number][] } {
    return { entries: [...this.stateMap].map(([k, e]) => [k, e.s, e.t]) };
  }

  /**
   * As checkpointState() (the same JSON), a chunk of keys at a time (1M keys in one piece hold the
   * loop ~200 ms), into flat columns: entries are updated in place, so their values are copied out.
   */
  *checkpointStateSliced(): Sliced<{ entries: ColumnRows }> {
    const n = this.stateMap.size;
    const keys = new Array<K>(n);
    const states = new Array<S>(n);
    const times = new Array<number>(n);
    let i = 0;
    for (const [k, e] of this.stateMap) {
      keys[i] = k;
      states[i] = e.s;
      times[i++] = e.t;
      if ((i & (CHUNK - 1)) === 0) yield;
    }
    return { entries: new ColumnRows([keys, states, times], i) };
  }

  restoreState(data: unknown): void {
    const d = data as { entries: [K, S, number][] };
    // Keys come back from JSON as new arrays/objects: KeyedMap matches them to later batches' keys by value.
    this.stateMap = new KeyedMap(d.entries.map(([k, s, t]) => [k, { s, t }] as [K, Entry<S>]));
    this.initial = undefined;
    this.lastRDD = undefined;
  }
}

class SnapshotDStream<K, S> extends DStream<[K, S]> {
  constructor(readonly parent: MapWithStateDStream<K, unknown, S, unknown>) {
    super(parent.ssc, "stateSnapshots", [parent as unknown as DStream<unknown>]);
  }

  compute(time: number): RDD<[K, S]> | undefined {
    const mapped = this.parent.getOrCompute(time);
    if (!mapped) return undefined;
    const parent = this.parent;
    return this.ssc.sc.deferredMap<K, S>(function* () {
      yield* mapped.computeGen();
      return parent.takeSnapshot(time);
    });
  }
}

operators.updateState = <K, V, S>(parent: DStream<[K, V]>, update: StateUpdate<K, V, S>, options: UpdateStateOptions<K, S>) =>
  new StateDStream<K, V, S>(parent, update, options);

operators.mapWithState = <K, V, S, M>(parent: DStream<[K, V]>, spec: StateSpec<K, V, S, M>, options: NameOption) =>
  new MapWithStateDStream<K, V, S, M>(parent, spec, options);
