// Remembers the public call that made each stream (receiver, method, arguments), so that a group can make
// the same pipeline again once per task, over that task's partition, as Kafka Streams instantiates its
// processors per task from the topology. Only calls made by user code are recorded: the calls an operator
// makes inside itself (reduceByKeyAndWindow calls reduceByKey) are part of that operator.
import { StreamingContext } from "../context.js";
import { DStream, ForEachDStream } from "../dstream.js";
import { MapWithStateDStream } from "../state.js";

/** A stream's making: `receiver[method](...args)`, receiver a stream or the context. */
export interface Recipe {
  method: string;
  receiver: DStream<unknown> | StreamingContext;
  args: unknown[];
  /** Order of the call within the process, so a replay follows definition order. */
  seq: number;
}

/** Methods that return a new stream (or, for cache/persist/checkpoint, the same stream). */
export const STREAM_METHODS = [
  "map", "flatMap", "filter", "glom", "mapPartitions", "repartition", "union", "count", "reduce", "countByValue",
  "transform", "transformWith", "window", "countByWindow", "reduceByWindow", "countByValueAndWindow",
  "mapValues", "flatMapValues", "groupByKey", "reduceByKey", "combineByKey", "join", "leftOuterJoin",
  "rightOuterJoin", "fullOuterJoin", "cogroup", "groupByKeyAndWindow", "reduceByKeyAndWindow",
  "updateStateByKey", "updateStateByKeyIterator", "mapWithState",
] as const;

/** Methods that change the stream they are called on and return it. */
export const MODIFIER_METHODS = ["cache", "persist", "checkpoint"] as const;

/** Output operations: each adds a ForEachDStream to the graph. */
export const OUTPUT_METHODS = ["foreachRDD", "pprint", "print", "saveAsTextFiles", "chart"] as const;

const CONTEXT_METHODS = ["union", "transform"] as const;

const recipes = new WeakMap<object, Recipe>();
const modifiers = new WeakMap<object, Recipe[]>();
let depth = 0;
let seq = 0;

/** The call that made `stream`, if user code made it with a recorded method. */
export function recipeOf(stream: object): Recipe | undefined {
  return recipes.get(stream);
}

/** cache()/persist()/checkpoint() calls made on `stream`, in order. */
export function modifiersOf(stream: object): Recipe[] {
  return modifiers.get(stream) ?? [];
}

type Method = (this: unknown, ...args: unknown[]) => unknown;

function outputsOf(receiver: unknown): ForEachDStream<unknown>[] {
  const ssc = receiver instanceof StreamingContext ? receiver : (receiver as DStream<unknown>).ssc;
  return ssc.graph.outputStreams();
}

function wrap(proto: Record<string, unknown>, name: string, kind: "stream" | "modifier" | "output"): void {
  const original = proto[name] as Method | undefined;
  if (typeof original !== "function" || (original as { recorded?: boolean }).recorded) return;
  const recorded: Method = function (this: unknown, ...args: unknown[]): unknown {
    if (depth > 0) return original.apply(this, args);
    const before = kind === "output" ? new Set(outputsOf(this)) : undefined;
    depth++;
    let out: unknown;
    try {
      out = original.apply(this, args);
    } finally {
      depth--;
    }
    const recipe: Recipe = { method: name, receiver: this as DStream<unknown>, args, seq: seq++ };
    if (kind === "stream" && out instanceof DStream && out !== this && !recipes.has(out)) recipes.set(out, recipe);
    else if (kind === "modifier" && out === this) {
      const list = modifiers.get(this as object) ?? [];
      list.push(recipe);
      modifiers.set(this as object, list);
    } else if (kind === "output" && before) {
      for (const o of outputsOf(this)) if (!before.has(o)) recipes.set(o, recipe);
    }
    return out;
  };
  (recorded as { recorded?: boolean }).recorded = true;
  Object.defineProperty(proto, name, { value: recorded, writable: true, configurable: true, enumerable: false });
}

let installed = false;

/** Installs the recording once (engine/group's index does it on load, before any pipeline is defined). */
export function installRecipes(): void {
  if (installed) return;
  installed = true;
  const dproto = DStream.prototype as unknown as Record<string, unknown>;
  for (const m of STREAM_METHODS) wrap(dproto, m, "stream");
  for (const m of MODIFIER_METHODS) wrap(dproto, m, "modifier");
  for (const m of OUTPUT_METHODS) wrap(dproto, m, "output");
  wrap(MapWithStateDStream.prototype as unknown as Record<string, unknown>, "stateSnapshots", "stream");
  const cproto = StreamingContext.prototype as unknown as Record<string, unknown>;
  for (const m of CONTEXT_METHODS) wrap(cproto, m, "stream");
}
