// Test helpers for the engine suites: run input batches through a pipeline on the manual clock and
// collect each batch's output, as Spark's BasicOperationsSuite does.

import { SparkContext, StreamingContext, type DStream } from "../engine/index.js";

export interface RunOptions {
  batch?: number;
  /** Batches to run (default: as many as inputs). */
  numBatches?: number;
  /** Sort each output batch (for operators whose order is not defined). */
  sort?: boolean;
}

export function newContext(batch = 1000): { sc: SparkContext; ssc: StreamingContext } {
  const sc = new SparkContext();
  const ssc = new StreamingContext(sc, batch, { clock: "manual" });
  return { sc, ssc };
}

function sortKey(x: unknown): string {
  return JSON.stringify(x);
}

export function sorted<T>(xs: T[]): T[] {
  return xs.slice().sort((a, b) => (sortKey(a) < sortKey(b) ? -1 : sortKey(a) > sortKey(b) ? 1 : 0));
}

/** Feeds inputs[i] as batch i (time (i+1) * batch) and returns each batch's output records. */
export async function runBatches<T, U>(
  inputs: T[][],
  build: (input: DStream<T>, ssc: StreamingContext) => DStream<U>,
  options: RunOptions = {},
): Promise<U[][]> {
  const { sc, ssc } = newContext(options.batch ?? 1000);
  const queue = inputs.map((xs) => sc.parallelize(xs, 2));
  const stream = build(ssc.queueStream(queue, true, []), ssc);
  const out: U[][] = [];
  stream.foreachRDD((rdd) => {
    out.push(options.sort ? sorted(rdd.collect()) : rdd.collect());
  });
  await ssc.start();
  const n = options.numBatches ?? inputs.length;
  for (let i = 0; i < n; i++) await ssc.advance(ssc.batchDuration);
  await ssc.stop();
  const err = ssc.lastError;
  if (err) throw err;
  return out;
}

/** Two inputs, one output (joins, cogroup, transformWith). */
export async function runBatches2<A, B, U>(
  a: A[][],
  b: B[][],
  build: (a: DStream<A>, b: DStream<B>) => DStream<U>,
  options: RunOptions = {},
): Promise<U[][]> {
  const { sc, ssc } = newContext(options.batch ?? 1000);
  const sa = ssc.queueStream(a.map((xs) => sc.parallelize(xs)), true, []);
  const sb = ssc.queueStream(b.map((xs) => sc.parallelize(xs)), true, []);
  const out: U[][] = [];
  build(sa, sb).foreachRDD((rdd) => {
    out.push(options.sort ? sorted(rdd.collect()) : rdd.collect());
  });
  await ssc.start();
  const n = options.numBatches ?? Math.max(a.length, b.length);
  for (let i = 0; i < n; i++) await ssc.advance(ssc.batchDuration);
  await ssc.stop();
  if (ssc.lastError) throw ssc.lastError;
  return out;
}
