// Turns the pipeline a user defined into a group plan, as Kafka Streams splits a topology at repartition
// topics: sub-topology 0 reads the partitioned log; a keyed operation on a stream that is not partitioned by
// its key (a re-key) starts a new sub-topology fed by an exchange (repartition streams in the log), with the
// operation's own reduction applied map-side first so that only combined records cross. Each sub-topology
// runs as one task per partition; the plan says how each task rebuilds its part of the pipeline.
import type { StreamingContext } from "../context.js";
import { DStream, ForEachDStream } from "../dstream.js";
import type { RDD } from "../rdd.js";
import { StateSpec, MapWithStateDStream } from "../state.js";
import { InputDStream } from "../sources/input.js";
import { isPartitionedInput } from "../sources/partitioned.js";
import { GroupUnsupportedError } from "./errors.js";
import { isGroupSource, type GroupSourceSpec } from "./log.js";
import { modifiersOf, recipeOf, type Recipe } from "./recipe.js";
import { partitionOf } from "./partitioner.js";
import { PARTITIONED_SINK } from "./scope.js";
import type { RedisConnectionOptions } from "../sources/redis.js";


type AnyStream = DStream<unknown>;
type Pair = [unknown, unknown];
type Fn = (...a: never[]) => unknown;

export interface Exchange {
  id: number;
  /** Map-side sub-topology and the original stream whose task copy feeds the exchange. */
  from: number;
  source: AnyStream;
  /** Reduce-side sub-topology. */
  to: number;
  /** Applied to the map-side copy: the operation's own combining (reduceByKey's f, a count, ...). */
  combine: (copy: AnyStream) => DStream<Pair>;
}

export interface SubTopology {
  id: number;
  partitions: number;
  /** Exchanges this sub-topology reads (none for sub-topology 0, which reads the log). */
  inputs: number[];
}

/** What a task has while it rebuilds its pipeline. */
export interface ReplayScope {
  ctx: StreamingContext;
  sub: number;
  partition: number;
  /** The task copy of an original stream built earlier in the replay. */
  copy(original: AnyStream): AnyStream;
  /** The exchange input stream of this task for an exchange. */
  exchangeInput(id: number): DStream<Pair>;
}

export interface PlanStep {
  original: AnyStream;
  sub: number;
  build(scope: ReplayScope): AnyStream;
}

export interface PlannedOutput {
  output: ForEachDStream<unknown>;
  /** The original stream the output reads. */
  parent: AnyStream;
  sub: number;
  /** A partitioned sink: rebuilt inside each task. Otherwise it runs once per instance on the owned partitions' union. */
  perTask?: (scope: ReplayScope) => void;
  /** The server a partitioned sink writes to. */
  sinkConnection?: RedisConnectionOptions;
}

export interface GroupPlan {
  inputs: { stream: InputDStream<unknown>; spec: GroupSourceSpec }[];
  subs: SubTopology[];
  exchanges: Exchange[];
  steps: PlanStep[];
  outputs: PlannedOutput[];
  /** Units of ownership: unit i is every sub-topology's task i. */
  units: number;
  fingerprint: string;
}

/** How a keyed operation runs across an exchange: map-side combining, then the reduce-side operation. */
interface KeyedRule {
  /** Index of numPartitions among the arguments, or a function finding it. */
  partitions?: (args: unknown[]) => number | undefined;
  /** A global operation (count, reduce): one partition. */
  global?: boolean;
  /** Its result is keyed like its input (pairs by the same key). */
  keyedResult: boolean;
  combine: (x: AnyStream, args: unknown[]) => DStream<Pair>;
  reduce: (e: DStream<Pair>, args: unknown[], scope: ReplayScope, parts: number) => AnyStream;
  /** On a stream already partitioned by the key (no exchange), when the plain call would not do. */
  local?: (x: AnyStream, args: unknown[], scope: ReplayScope, parts: number) => AnyStream;
}

/** updateStateByKey (or its iterator form) with the initial state of this task's partition only. */
function updateStateLocal(x: AnyStream, a: unknown[], scope: ReplayScope, parts: number, method: "updateStateByKey" | "updateStateByKeyIterator" = "updateStateByKey"): AnyStream {
  const options = (a[1] ?? {}) as { initialRDD?: RDD<Pair> };
  return ops(x)[method](a[0] as Fn, { ...options, initialRDD: initialFor(options.initialRDD, scope, parts) });
}

/** mapWithState with the initial state of this task's partition only. */
function mapWithStateLocal(x: AnyStream, a: unknown[], scope: ReplayScope, parts: number): AnyStream {
  const spec = a[0] as StateSpec<unknown, unknown, unknown, unknown>;
  const own = StateSpec.function(spec.fn);
  const initial = initialFor(spec.getInitialState(), scope, parts);
  if (initial) own.initialState(initial);
  const timeout = spec.getTimeout();
  if (timeout !== undefined) own.timeout(timeout);
  return ops(x).mapWithState(own, a[1]);
}

const sum = (a: number, b: number): number => a + b;
const concat = (a: unknown[], b: unknown[]): unknown[] => a.concat(b);
const spread = (vs: unknown[]): unknown[] => vs;
const num = (v: unknown): number | undefined => (typeof v === "number" && v >= 1 ? Math.floor(v) : undefined);
const opt = (v: unknown): number | undefined => num((v as { numPartitions?: unknown } | undefined)?.numPartitions);

/** A stream's pair methods, typed loosely: the replay calls them on copies of streams the user typed. */
interface PairOps {
  reduceByKey(f: Fn, n?: number): DStream<Pair>;
  combineByKey(a: Fn, b: Fn, c: Fn, n?: number): DStream<Pair>;
  groupByKey(n?: number): DStream<Pair>;
  flatMapValues(f: Fn): DStream<Pair>;
  mapValues(f: Fn): DStream<Pair>;
  updateStateByKey(f: Fn, o?: unknown): AnyStream;
  updateStateByKeyIterator(f: Fn, o?: unknown): AnyStream;
  mapWithState(spec: unknown, o?: unknown): AnyStream;
  reduceByKeyAndWindow(...a: unknown[]): DStream<Pair>;
  groupByKeyAndWindow(...a: unknown[]): DStream<Pair>;
  countByValue(n?: number): DStream<Pair>;
  count(): DStream<number>;
  reduce(f: Fn): AnyStream;
  map(f: Fn): AnyStream;
  reduceByWindow(...a: unknown[]): AnyStream;
  transform(f: (rdd: RDD<unknown>) => RDD<unknown>): AnyStream;
}
const ops = (s: AnyStream): PairOps => s as unknown as PairOps;

/** Keeps an initial state's keys of this task's partition only. */
function initialFor<K, S>(rdd: RDD<[K, S]> | undefined, scope: ReplayScope, parts: number): RDD<[K, S]> | undefined {
  return rdd?.filter((kv) => partitionOf(kv[0], parts) === scope.partition);
}

const KEYED: Record<string, KeyedRule> = {
  reduceByKey: {
    partitions: (a) => num(a[1]),
    keyedResult: true,
    combine: (x, a) => ops(x).reduceByKey(a[0] as Fn),
    reduce: (e, a) => ops(e).reduceByKey(a[0] as Fn),
  },
  combineByKey: {
    partitions: (a) => num(a[3]),
    keyedResult: true,
    combine: (x, a) => ops(x).combineByKey(a[0] as Fn, a[1] as Fn, a[2] as Fn),
    // The map side made combiners: the reduce side merges them.
    reduce: (e, a) => ops(e).reduceByKey(a[2] as Fn),
  },
  groupByKey: {
    partitions: (a) => num(a[0]),
    keyedResult: true,
    combine: (x) => ops(x).groupByKey(),
    reduce: (e) => ops(e).reduceByKey(concat as Fn),
  },
  countByValue: {
    partitions: (a) => num(a[0]),
    keyedResult: true,
    combine: (x) => ops(x).countByValue(),
    reduce: (e) => ops(e).reduceByKey(sum as Fn),
  },
  updateStateByKey: {
    partitions: (a) => opt(a[1]),
    keyedResult: true,
    // The function sees every value of a key: the map side can only gather them (one entry per key).
    combine: (x) => ops(x).groupByKey(),
    reduce: (e, a, scope, parts) => updateStateLocal(ops(e).flatMapValues(spread as Fn), a, scope, parts),
    local: updateStateLocal,
  },
  updateStateByKeyIterator: {
    partitions: (a) => opt(a[1]),
    keyedResult: true,
    combine: (x) => ops(x).groupByKey(),
    reduce: (e, a, scope, parts) => updateStateLocal(ops(e).flatMapValues(spread as Fn), a, scope, parts, "updateStateByKeyIterator"),
    local: (x, a, scope, parts) => updateStateLocal(x, a, scope, parts, "updateStateByKeyIterator"),
  },
  mapWithState: {
    partitions: (a) => num((a[0] as StateSpec<unknown, unknown, unknown, unknown>).getNumPartitions()),
    keyedResult: false,
    combine: (x) => x as DStream<Pair>,
    reduce: (e, a, scope, parts) => mapWithStateLocal(e, a, scope, parts),
    local: mapWithStateLocal,
  },
  reduceByKeyAndWindow: {
    partitions: (a) => (typeof a[1] === "function" ? opt(a[4]) : num(a[3])),
    keyedResult: true,
    combine: (x, a) => ops(x).reduceByKey(a[0] as Fn),
    reduce: (e, a) => ops(e).reduceByKeyAndWindow(...a),
  },
  groupByKeyAndWindow: {
    partitions: (a) => num(a[2]),
    keyedResult: true,
    combine: (x) => ops(x).groupByKey(),
    reduce: (e, a) => ops(ops(e).flatMapValues(spread as Fn)).groupByKeyAndWindow(a[0], a[1]),
  },
  countByValueAndWindow: {
    partitions: (a) => num(a[2]),
    keyedResult: true,
    combine: (x) => ops(x).countByValue(),
    reduce: (e, a) =>
      ops(e).reduceByKeyAndWindow(sum, (x: number, y: number) => x - y, a[0], a[1], { filterFunc: (kv: Pair) => kv[1] !== 0 }),
  },
  count: {
    global: true,
    keyedResult: false,
    combine: (x) => ops(x).count().map((n) => [0, n] as Pair),
    // One record per batch, 0 when empty, as count() gives.
    reduce: (e) => ops(e).transform((rdd) => rdd.sc.parallelize([rdd.collect().reduce((a: number, kv) => a + ((kv as Pair)[1] as number), 0)], 1)),
  },
  reduce: {
    global: true,
    keyedResult: false,
    combine: (x, a) => ops(ops(x).reduce(a[0] as Fn)).map((v) => [0, v]) as DStream<Pair>,
    reduce: (e, a) => ops(ops(e).map((kv) => (kv as Pair)[1])).reduce(a[0] as Fn),
  },
  countByWindow: {
    global: true,
    keyedResult: false,
    combine: (x) => ops(x).count().map((n) => [0, n] as Pair),
    reduce: (e, a) => ops(ops(e).map((kv) => (kv as Pair)[1])).reduceByWindow(sum, (x: number, y: number) => x - y, a[0], a[1] ?? e.slideDuration),
  },
  reduceByWindow: {
    global: true,
    keyedResult: false,
    combine: (x, a) => ops(ops(x).reduce(a[0] as Fn)).map((v) => [0, v]) as DStream<Pair>,
    reduce: (e, a) => ops(ops(e).map((kv) => (kv as Pair)[1])).reduceByWindow(...a),
  },
};

/** Two-sided keyed operations: both sides are exchanged to the same partitions (co-partitioned). */
const JOINS = new Set(["join", "leftOuterJoin", "rightOuterJoin", "fullOuterJoin", "cogroup"]);
/** Operations that keep the key of every record (and so the partitioning). */
const KEY_PRESERVING = new Set(["filter", "mapValues", "flatMapValues", "window", "stateSnapshots"]);

interface Placement {
  sub: number;
  keyed: boolean;
}

function streamArgs(args: unknown[]): AnyStream[] {
  const out: AnyStream[] = [];
  for (const a of args) {
    if (a instanceof DStream) out.push(a);
    else if (Array.isArray(a)) for (const x of a) if (x instanceof DStream) out.push(x);
  }
  return out;
}

function mapArgs(args: unknown[], scope: ReplayScope): unknown[] {
  return args.map((a) => {
    if (a instanceof DStream) return scope.copy(a);
    if (Array.isArray(a) && a.some((x) => x instanceof DStream)) return a.map((x) => (x instanceof DStream ? scope.copy(x) : x));
    return a;
  });
}

function replayCall(recipe: Recipe, scope: ReplayScope): AnyStream {
  const receiver = recipe.receiver instanceof DStream ? scope.copy(recipe.receiver) : scope.ctx;
  const method = (receiver as unknown as Record<string, (...a: unknown[]) => unknown>)[recipe.method];
  return method.apply(receiver, mapArgs(recipe.args, scope)) as AnyStream;
}

function applyModifiers(original: AnyStream, copy: AnyStream): AnyStream {
  for (const m of modifiersOf(original)) (copy as unknown as Record<string, (...a: unknown[]) => unknown>)[m.method]!.apply(copy, m.args);
  return copy;
}

/** Builds the plan of `ssc`'s pipeline (its outputs and everything they read). */
export function planGroup(ssc: StreamingContext, defaultPartitions?: number): GroupPlan {
  const inputs: GroupPlan["inputs"] = [];
  const placement = new Map<AnyStream, Placement>();
  const subs: SubTopology[] = [];
  const exchanges: Exchange[] = [];
  const steps: PlanStep[] = [];

  // Everything the outputs read, walking recipes back to the inputs.
  const outputs = ssc.graph.outputStreams();
  if (outputs.length === 0) throw new GroupUnsupportedError("the pipeline has no output operation (pprint, foreachRDD, saveToRedis, ...): a group has nothing to run");
  const needed = new Set<AnyStream>();
  const visit = (s: AnyStream, via: string): void => {
    if (needed.has(s)) return;
    if (s instanceof InputDStream) {
      needed.add(s);
      return;
    }
    const r = recipeOf(s);
    if (!r) {
      throw new GroupUnsupportedError(
        `${via} reads ${s.name}, which a group cannot rebuild per partition (it was not made by a DStream method it knows); ` +
          `build the pipeline from a partitioned source with DStream methods`,
      );
    }
    needed.add(s);
    if (r.receiver instanceof DStream) visit(r.receiver, s.name);
    for (const a of streamArgs(r.args)) visit(a, s.name);
  };
  for (const o of outputs) visit(o.parent, `output ${o.kind}`);

  // Inputs: sub-topology 0, one task per partition; every partitioned input must have as many.
  for (const s of ssc.graph.inputStreams()) {
    if (!needed.has(s)) continue;
    if (!isGroupSource(s) && isPartitionedInput(s)) {
      // Kafka and JetStream are partitioned, but a group cuts batches by the log's own clock and keeps its
      // checkpoints, fences and repartition streams in Redis (README, "Scale-out (groups)").
      throw new GroupUnsupportedError(
        `input ${s.name} is a partitioned log, but groups run over Redis Streams only; ` +
          `run it in a single-process context ({ group: false }), or copy the log into one Redis stream key per partition and read that with redisStream`,
      );
    }
    if (!isGroupSource(s)) {
      throw new GroupUnsupportedError(
        `input ${s.name} is not a partitioned log, so a group cannot split it between instances; ` +
          `read a partitioned log (redisStream with one stream key per partition) in a group`,
      );
    }
    const spec = s.groupSource();
    inputs.push({ stream: s, spec });
    placement.set(s, { sub: 0, keyed: false });
  }
  if (inputs.length === 0) throw new GroupUnsupportedError("the pipeline reads no partitioned log: a group needs one (redisStream over one stream key per partition)");
  const P = inputs[0]!.spec.partitionIds.length;
  for (const i of inputs) {
    if (i.spec.partitionIds.length !== P) {
      throw new GroupUnsupportedError(
        `inputs ${inputs[0]!.stream.name} and ${i.stream.name} have ${P} and ${i.spec.partitionIds.length} partitions; ` +
          `a group reads partition i of every input in the same task, so give them as many partitions`,
      );
    }
  }
  subs.push({ id: 0, partitions: P, inputs: [] });
  const defaultQ = defaultPartitions ?? P;

  const newSub = (partitions: number): SubTopology => {
    const sub = { id: subs.length, partitions, inputs: [] as number[] };
    subs.push(sub);
    return sub;
  };
  const newExchange = (source: AnyStream, to: SubTopology, combine: Exchange["combine"]): Exchange => {
    const x: Exchange = { id: exchanges.length, from: placement.get(source)!.sub, source, to: to.id, combine };
    exchanges.push(x);
    to.inputs.push(x.id);
    return x;
  };
  const place = (s: AnyStream, p: Placement): void => void placement.set(s, p);
  const sameSub = (streams: AnyStream[], what: string): number => {
    const sub = placement.get(streams[0]!)!.sub;
    for (const x of streams) {
      if (placement.get(x)!.sub !== sub) {
        throw new GroupUnsupportedError(
          `${what} combines streams from different stages of the group (separated by a re-key); ` +
            `combine them before the keyed operation, or key both the same way and join them`,
        );
      }
    }
    return sub;
  };

  const ordered = [...needed].filter((s) => !(s instanceof InputDStream)).sort((a, b) => recipeOf(a)!.seq - recipeOf(b)!.seq);
  for (const s of ordered) {
    const r = recipeOf(s)!;
    const m = r.method;
    const receiver = r.receiver instanceof DStream ? r.receiver : undefined;
    const parents = [...(receiver ? [receiver] : []), ...streamArgs(r.args)];
    const rule = KEYED[m];
    if (rule && receiver) {
      const at = placement.get(receiver)!;
      const wanted = rule.global ? 1 : (rule.partitions?.(r.args) ?? undefined);
      const local = at.keyed && (wanted === undefined || subs[at.sub]!.partitions === wanted) && (!rule.global || subs[at.sub]!.partitions === 1);
      if (local) {
        place(s, { sub: at.sub, keyed: rule.keyedResult });
        const parts = subs[at.sub]!.partitions;
        const localReplay = rule.local;
        steps.push({
          original: s,
          sub: at.sub,
          build: (scope) => applyModifiers(s, localReplay ? localReplay(scope.copy(receiver), r.args, scope, parts) : replayCall(r, scope)),
        });
      } else {
        const to = newSub(wanted ?? defaultQ);
        const x = newExchange(receiver, to, (copy) => rule.combine(copy, r.args));
        place(s, { sub: to.id, keyed: rule.keyedResult });
        steps.push({ original: s, sub: to.id, build: (scope) => applyModifiers(s, rule.reduce(scope.exchangeInput(x.id), r.args, scope, to.partitions)) });
      }
    } else if (JOINS.has(m) && receiver) {
      const other = r.args[0] as AnyStream;
      const wanted = num(r.args[1]);
      const a = placement.get(receiver)!;
      const b = placement.get(other)!;
      if (a.keyed && b.keyed && a.sub === b.sub && (wanted === undefined || subs[a.sub]!.partitions === wanted)) {
        place(s, { sub: a.sub, keyed: true });
        steps.push({ original: s, sub: a.sub, build: (scope) => applyModifiers(s, replayCall(r, scope)) });
      } else {
        const to = newSub(wanted ?? defaultQ);
        const left = newExchange(receiver, to, (copy) => copy as DStream<Pair>);
        const right = newExchange(other, to, (copy) => copy as DStream<Pair>);
        place(s, { sub: to.id, keyed: true });
        steps.push({
          original: s,
          sub: to.id,
          build: (scope) => {
            const l = scope.exchangeInput(left.id) as unknown as Record<string, (...a: unknown[]) => AnyStream>;
            return applyModifiers(s, l[m]!.call(l, scope.exchangeInput(right.id), ...r.args.slice(1)));
          },
        });
      }
    } else {
      if (parents.length === 0) throw new GroupUnsupportedError(`${s.name} (${m}) reads no stream of the pipeline`);
      const sub = sameSub(parents, `${m} (${s.name})`);
      const keyed =
        (KEY_PRESERVING.has(m) && placement.get(parents[0]!)!.keyed) ||
        (m === "stateSnapshots" && receiver instanceof MapWithStateDStream) ||
        (m === "union" && parents.every((p) => placement.get(p)!.keyed));
      place(s, { sub, keyed });
      steps.push({ original: s, sub, build: (scope) => applyModifiers(s, replayCall(r, scope)) });
    }
  }

  const planned: PlannedOutput[] = [];
  for (const o of outputs) {
    const r = recipeOf(o);
    const at = placement.get(o.parent)!;
    const marker = r?.method === "foreachRDD" ? (r.args[1] as Record<symbol, unknown> | undefined)?.[PARTITIONED_SINK] : undefined;
    if (r && marker) {
      const sinkConnection = marker as RedisConnectionOptions;
      planned.push({ output: o, parent: o.parent, sub: at.sub, perTask: (scope) => void replayCall(r, scope), sinkConnection });
    } else planned.push({ output: o, parent: o.parent, sub: at.sub });
  }

  const units = Math.max(...subs.map((x) => x.partitions));
  const fingerprint = JSON.stringify({
    inputs: inputs.map((i) => ({ name: i.stream.name, partitions: i.spec.partitionIds })),
    subs: subs.map((x) => [x.partitions, x.inputs]),
    exchanges: exchanges.map((x) => [x.from, x.to]),
    steps: steps.map((st) => [recipeOf(st.original)!.method, st.sub]),
  });
  return { inputs, subs, exchanges, steps, outputs: planned, units, fingerprint };
}
