// MLlib's StreamingKMeans: one mini-batch k-means step per batch, with forgetfulness (decay per batch
// or per point) and the dying-cluster split, as in Spark's StreamingKMeansModel.update.

import type { DStream, NameOption } from "../dstream.js";
import { IllegalArgumentError } from "../errors.js";
import { RDD } from "../rdd.js";
import { CHUNK, runSync, type Sliced } from "../slicing.js";
import { DimensionMismatchError, ModelNotInitializedError, NonFiniteValueError, requireArg, where } from "./errors.js";
import { DenseVector, firstNonFinite, formatDouble, SparseVector, Vector } from "./linalg.js";
import { SeededRandom } from "./random.js";
import { ModelTrainingDStream, type TrainingAlgorithm } from "./training.js";
import { kmeansChartSpec, kmeansChartRows, type ModelChartOptions } from "./charts.js";

export type TimeUnit = "batches" | "points";

/** One batch of trainOn's stream: the model after the batch, and the batch's points (for charts). */
export interface KMeansBatchSummary {
  time: number;
  clusterCenters: number[][];
  clusterWeights: number[];
  /** Points in this batch. */
  count: number;
  /** The batch's points by partition (not copied; charts sample them). */
  points: Vector[][];
}

function toCenter(v: Vector | ArrayLike<number>): Float64Array {
  if (v instanceof Vector) return v.toArray().slice();
  return Float64Array.from(v);
}

/** Internal: per-cluster sums and counts of one pass over a batch. */
interface BatchStats {
  sums: Float64Array[];
  counts: Float64Array;
}

/**
 * A k-means model that also keeps a weight per cluster (Spark's StreamingKMeansModel). update()
 * changes the centres and weights in place and returns a model over them, as Spark's does.
 */
export class StreamingKMeansModel {
  /** Internal: the centres, each of the model's dimension. */
  readonly centers: Float64Array[];
  readonly clusterWeights: number[];

  constructor(clusterCenters: (Vector | ArrayLike<number>)[], clusterWeights: ArrayLike<number>) {
    requireArg(clusterCenters.length === clusterWeights.length, "Number of initial centers must be equal to number of weights");
    this.centers = clusterCenters.map(toCenter);
    const dim = this.centers[0]?.length;
    for (const c of this.centers) {
      if (c.length !== dim) throw new DimensionMismatchError(`all cluster centers must have the same dimension; got ${dim} and ${c.length}`, undefined, undefined);
    }
    this.clusterWeights = Array.from(clusterWeights);
  }

  get k(): number {
    return this.centers.length;
  }

  /** The dimension of the centres. */
  get dim(): number {
    return this.centers[0]?.length ?? 0;
  }

  /** The centres as vectors (copies). */
  get clusterCenters(): DenseVector[] {
    return this.centers.map((c) => new DenseVector(c.slice()));
  }

  /** The centres as plain arrays (pyspark's `centers`). */
  get centersArray(): number[][] {
    return this.centers.map((c) => Array.from(c));
  }

  /** The index of the closest centre to `point`, or an RDD of them for an RDD of points. */
  predict(point: Vector | ArrayLike<number>): number;
  predict(points: RDD<Vector>): RDD<number>;
  predict(p: Vector | ArrayLike<number> | RDD<Vector>): number | RDD<number> {
    if (p instanceof RDD) return p.map((v) => this.predict(v));
    const v = p instanceof Vector ? p : new DenseVector(p);
    this.check(v, undefined, 0);
    return closest(this.centers, v).index;
  }

  /** Sum of squared distances of the points to their nearest centre (Spark's computeCost). */
  computeCost(data: RDD<Vector> | Vector[]): number {
    const points = data instanceof RDD ? data.collect() : data;
    let cost = 0;
    points.forEach((v, i) => {
      this.check(v, undefined, i);
      cost += closest(this.centers, v).distance;
    });
    return cost;
  }

  /** Internal: dimension and finiteness of one point, with where it came from in the message. */
  check(v: Vector, batchTime: number | undefined, index: number): void {
    if (v.size !== this.dim) throw dimensionError(v, this.dim, batchTime, index);
    if (firstNonFinite(v) >= 0) throw nonFiniteError(v, batchTime, index);
  }

  /** Spark's update: one k-means step on a batch, with decay per batch or per point. */
  update(data: RDD<Vector> | Vector[], decayFactor: number, timeUnit: TimeUnit): StreamingKMeansModel {
    const parts = data instanceof RDD ? [data.collect()] : [data];
    runSync(this.updateGen(parts, decayFactor, timeUnit, undefined));
    return new StreamingKMeansModel(this.centers, this.clusterWeights).shareArrays(this);
  }

  /** Internal: a model object over another's arrays (update() returns one, as Spark does). */
  private shareArrays(other: StreamingKMeansModel): this {
    (this as { centers: Float64Array[] }).centers = other.centers;
    (this as { clusterWeights: number[] }).clusterWeights = other.clusterWeights;
    return this;
  }

  /** Internal: the update in slices; nothing changes until every point has been read and checked. */
  *updateGen(parts: Vector[][], decayFactor: number, timeUnit: TimeUnit, batchTime: number | undefined): Sliced<number> {
    const k = this.k;
    const dim = this.dim;
    const stats: BatchStats = { sums: this.centers.map(() => new Float64Array(dim)), counts: new Float64Array(k) };
    let offset = 0;
    for (const part of parts) {
      for (let i = 0; i < part.length; i += CHUNK) {
        assignChunk(part, i, Math.min(part.length, i + CHUNK), this.centers, dim, stats, batchTime, offset);
        yield;
      }
      offset += part.length;
    }
    // NaN or an infinity in a feature makes its cluster's sum non-finite: find the record to name it.
    if (stats.sums.some((s) => s.some((x) => !Number.isFinite(x)))) {
      let index = 0;
      for (const part of parts) {
        for (const v of part) {
          if (firstNonFinite(v) >= 0) throw nonFiniteError(v, batchTime, index);
          index++;
        }
      }
    }
    this.apply(stats, decayFactor, timeUnit);
    return offset;
  }

  private apply({ sums, counts }: BatchStats, decayFactor: number, timeUnit: TimeUnit): void {
    const weights = this.clusterWeights;
    const k = this.k;
    const dim = this.dim;
    let numNewPoints = 0;
    for (let c = 0; c < k; c++) numNewPoints += counts[c] as number;
    const discount = timeUnit === "batches" ? decayFactor : Math.pow(decayFactor, numNewPoints);
    for (let c = 0; c < k; c++) weights[c] = discount * (weights[c] as number);
    for (let c = 0; c < k; c++) {
      const count = counts[c] as number;
      if (count === 0) continue; // Spark updates only the clusters that received points
      const centroid = this.centers[c] as Float64Array;
      const sum = sums[c] as Float64Array;
      const updatedWeight = (weights[c] as number) + count;
      const lambda = count / Math.max(updatedWeight, 1e-16);
      weights[c] = updatedWeight;
      const a = lambda / count;
      for (let j = 0; j < dim; j++) centroid[j] = (centroid[j] as number) * (1.0 - lambda);
      for (let j = 0; j < dim; j++) centroid[j] = (centroid[j] as number) + a * (sum[j] as number);
    }
    // The smallest cluster is dying: split the largest one in two (first max and first min, as Scala's maxBy/minBy).
    let largest = 0;
    let smallest = 0;
    for (let c = 1; c < k; c++) {
      if ((weights[c] as number) > (weights[largest] as number)) largest = c;
      if ((weights[c] as number) < (weights[smallest] as number)) smallest = c;
    }
    const maxWeight = weights[largest] as number;
    const minWeight = weights[smallest] as number;
    if (minWeight < 1e-8 * maxWeight) {
      const weight = (maxWeight + minWeight) / 2.0;
      weights[largest] = weight;
      weights[smallest] = weight;
      const big = this.centers[largest] as Float64Array;
      const small = this.centers[smallest] as Float64Array;
      for (let j = 0; j < dim; j++) {
        const x = big[j] as number;
        const p = 1e-14 * Math.max(Math.abs(x), 1.0);
        big[j] = x + p;
        small[j] = x - p;
      }
    }
  }

  toJSON(): { clusterCenters: number[][]; clusterWeights: number[] } {
    return { clusterCenters: this.centersArray, clusterWeights: this.clusterWeights.slice() };
  }

  toString(): string {
    return `StreamingKMeansModel(k=${this.k}, centers=[${this.centers.map((c) => `[${Array.from(c, formatDouble).join(",")}]`).join(", ")}], weights=[${this.clusterWeights.map(formatDouble).join(",")}])`;
  }
}

function dimensionError(v: Vector, dim: number, batchTime: number | undefined, index: number): DimensionMismatchError {
  return new DimensionMismatchError(
    `${where(batchTime, index)} has dimension ${v.size}, but the k-means model's centers have dimension ${dim}: ${String(v).slice(0, 120)}; ` +
      `every vector must have the centers' dimension (filter or fix such records before trainOn/predictOn)`,
    batchTime,
    index,
  );
}

function nonFiniteError(v: Vector, batchTime: number | undefined, index: number): NonFiniteValueError {
  const j = firstNonFinite(v);
  return new NonFiniteValueError(
    `${where(batchTime, index)} has a non-finite feature (element ${j} is ${formatDouble(v.apply(j))}): ${String(v).slice(0, 120)}; ` +
      `filter out NaN and infinite values before trainOn/predictOn`,
    batchTime,
    index,
  );
}

/** The closest centre (first of equals, as Spark's findClosest) and its squared distance. */
function closest(centers: Float64Array[], v: Vector): { index: number; distance: number } {
  let best = 0;
  let bestD = Infinity;
  for (let c = 0; c < centers.length; c++) {
    const d = sqdistTo(v, centers[c] as Float64Array);
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  return { index: best, distance: bestD };
}

function sqdistTo(v: Vector, center: Float64Array): number {
  let d = 0;
  if (v instanceof DenseVector) {
    const x = v.values;
    for (let j = 0; j < x.length; j++) {
      const t = (x[j] as number) - (center[j] as number);
      d += t * t;
    }
    return d;
  }
  const sv = v as SparseVector;
  for (let j = 0; j < center.length; j++) d += (center[j] as number) * (center[j] as number);
  for (let q = 0; q < sv.indices.length; q++) {
    const c = center[sv.indices[q] as number] as number;
    const t = (sv.values[q] as number) - c;
    d += t * t - c * c;
  }
  return d;
}

/** One chunk of the assignment pass: nearest centre of each point, summed per cluster. */
function assignChunk(points: Vector[], from: number, to: number, centers: Float64Array[], dim: number, stats: BatchStats, batchTime: number | undefined, offset: number): void {
  const k = centers.length;
  const { sums, counts } = stats;
  for (let i = from; i < to; i++) {
    const p = points[i] as Vector;
    if (p.size !== dim) throw dimensionError(p, dim, batchTime, offset + i);
    let best = 0;
    if (p instanceof DenseVector) {
      const x = p.values;
      let bestD = Infinity;
      for (let c = 0; c < k; c++) {
        const ctr = centers[c] as Float64Array;
        let d = 0;
        for (let j = 0; j < dim; j++) {
          const t = (x[j] as number) - (ctr[j] as number);
          d += t * t;
        }
        if (d < bestD) {
          bestD = d;
          best = c;
        }
      }
      const s = sums[best] as Float64Array;
      for (let j = 0; j < dim; j++) s[j] = (s[j] as number) + (x[j] as number);
    } else {
      best = closest(centers, p).index;
      const sv = p as SparseVector;
      const s = sums[best] as Float64Array;
      for (let q = 0; q < sv.indices.length; q++) {
        const j = sv.indices[q] as number;
        s[j] = (s[j] as number) + (sv.values[q] as number);
      }
    }
    counts[best] = (counts[best] as number) + 1;
  }
}

/**
 * Spark's StreamingKMeans: `new StreamingKMeans().setK(3).setDecayFactor(0.5).setRandomCenters(2, 0.0, 42)`,
 * then `trainOn(stream)`, `predictOn(stream)`, `latestModel()`.
 */
export class StreamingKMeans {
  k: number;
  decayFactor: number;
  timeUnit: TimeUnit;
  private model: StreamingKMeansModel | undefined;
  /** setK() called (or k given): setInitialCenters must then give exactly k centres. */
  private kGiven: boolean;
  private training: ModelTrainingDStream<Vector, KMeansBatchSummary> | undefined;

  constructor(k?: number, decayFactor = 1.0, timeUnit: TimeUnit = "batches") {
    this.kGiven = k !== undefined;
    this.k = k ?? 2;
    this.decayFactor = decayFactor;
    this.timeUnit = timeUnit;
  }

  /** Number of clusters (default 2). */
  setK(k: number): this {
    requireArg(k > 0, `Number of clusters must be positive but got ${k}`);
    this.k = k;
    this.kGiven = true;
    return this;
  }

  /** Forgetfulness of the previous centroids: 1.0 (default) weighs all batches equally, 0.0 only the latest. */
  setDecayFactor(a: number): this {
    requireArg(a >= 0, `Decay factor must be nonnegative but got ${a}`);
    this.decayFactor = a;
    return this;
  }

  /** The decay as a half life in "batches" or "points": data from time t counts half at t + halfLife. */
  setHalfLife(halfLife: number, timeUnit: TimeUnit): this {
    requireArg(halfLife > 0, `Half life must be positive but got ${halfLife}`);
    if (timeUnit !== "batches" && timeUnit !== "points") {
      throw new IllegalArgumentError(`Invalid time unit for decay: ${String(timeUnit)} (use "batches" or "points")`);
    }
    this.decayFactor = Math.exp(Math.log(0.5) / halfLife);
    this.timeUnit = timeUnit;
    return this;
  }

  /** The initial centres and their weights (how many points each is worth). */
  setInitialCenters(centers: (Vector | ArrayLike<number>)[], weights: ArrayLike<number>): this {
    requireArg(centers.length === weights.length, "Number of initial centers must be equal to number of weights");
    // Spark requires exactly k centres; when k was never set, the centres say how many (as pyspark does).
    if (!this.kGiven && centers.length > 0) this.k = centers.length;
    requireArg(centers.length === this.k, `Number of initial centers must be ${this.k} but got ${centers.length}`);
    requireArg(Array.from(weights).every((w) => w >= 0), `Weight for each inital center must be nonnegative but got [${Array.from(weights).join(" ")}]`);
    this.model = new StreamingKMeansModel(centers, weights);
    return this;
  }

  /** k random centres of dimension `dim` (standard normal, seeded), each of weight `weight`. */
  setRandomCenters(dim: number, weight: number, seed: number = Date.now()): this {
    requireArg(dim > 0, `Number of dimensions must be positive but got ${dim}`);
    requireArg(weight >= 0, `Weight for each center must be nonnegative but got ${weight}`);
    const random = new SeededRandom(seed);
    const centers: Float64Array[] = [];
    for (let c = 0; c < this.k; c++) {
      const v = new Float64Array(dim);
      for (let j = 0; j < dim; j++) v[j] = random.nextGaussian();
      centers.push(v);
    }
    this.model = new StreamingKMeansModel(centers, new Array<number>(this.k).fill(weight));
    return this;
  }

  /** The current model (updated in place by each batch, as Spark's). */
  latestModel(): StreamingKMeansModel {
    return this.assertInitialized();
  }

  /**
   * Trains on every batch of `data` (an output operation, like Spark's foreachRDD). The model is
   * checkpointed under the returned stream's name (`{ name }` or one derived from the pipeline).
   */
  trainOn(data: DStream<Vector>, options: NameOption = {}): ModelTrainingDStream<Vector, KMeansBatchSummary> {
    this.assertInitialized();
    const training = new ModelTrainingDStream<Vector, KMeansBatchSummary>(data, this.algorithm(), options);
    training.foreachRDD(() => {});
    this.training = training;
    return training;
  }

  /** The index of the closest centre for each point, with the model as it is when the batch runs. */
  predictOn(data: DStream<Vector>): DStream<number> {
    this.assertInitialized();
    return data.transform((rdd, time) =>
      mapChecked(rdd, time, (v, i) => {
        const m = this.assertInitialized();
        m.check(v, time, i);
        return closest(m.centers, v).index;
      }),
    );
  }

  /** As predictOn, keeping each record's key. */
  predictOnValues<K>(data: DStream<[K, Vector]>): DStream<[K, number]> {
    this.assertInitialized();
    return data.transform((rdd, time) =>
      mapChecked(rdd, time, (kv, i) => {
        const m = this.assertInitialized();
        m.check(kv[1], time, i);
        return [kv[0], closest(m.centers, kv[1]).index] as [K, number];
      }),
    );
  }

  /**
   * A live chart under the cell: the centres moving over the latest batch's points (first two
   * dimensions, or `dims`). Call after trainOn.
   */
  chart(options: ModelChartOptions & { dims?: [number, number]; maxPoints?: number } = {}): void {
    const training = this.training;
    if (!training) throw new ModelNotInitializedError("StreamingKMeans.chart(): call trainOn(stream) first; the chart shows what training sees");
    const dims = options.dims ?? [0, 1];
    const maxPoints = options.maxPoints ?? 500;
    training
      .flatMap((s) => kmeansChartRows(s, dims, maxPoints))
      .chart(kmeansChartSpec(dims), { mode: "complete", maxRows: maxPoints + this.k, title: options.title ?? "StreamingKMeans: centres over the latest batch" });
  }

  private assertInitialized(): StreamingKMeansModel {
    if (!this.model) {
      throw new ModelNotInitializedError(
        "Initial cluster centers must be set before starting predictions: call setInitialCenters(centers, weights) or setRandomCenters(dim, weight, seed)",
      );
    }
    return this.model;
  }

  private algorithm(): TrainingAlgorithm<Vector, KMeansBatchSummary> {
    const self = this;
    const summary = (time: number, count: number, points: Vector[][]): KMeansBatchSummary => {
      const m = self.assertInitialized();
      return { time, clusterCenters: m.centersArray, clusterWeights: m.clusterWeights.slice(), count, points };
    };
    return {
      kind: "StreamingKMeans",
      *trainBatch(parts, time) {
        const count = yield* self.assertInitialized().updateGen(parts, self.decayFactor, self.timeUnit, time);
        return summary(time, count, parts);
      },
      modelState: () => self.assertInitialized().toJSON(),
      restoreModel: (data) => {
        const d = data as { clusterCenters: number[][]; clusterWeights: number[] };
        self.model = new StreamingKMeansModel(d.clusterCenters, d.clusterWeights);
      },
      currentSummary: () => summary(NaN, 0, []),
    };
  }
}

/** Internal: f over an RDD's records with each record's index in its batch (computed once, in slices). */
export function mapChecked<T, U>(rdd: RDD<T>, time: number, f: (x: T, index: number) => U): RDD<U> {
  return rdd.sc.deferred<U>(function* () {
    const parts = yield* rdd.partsGen();
    const out: U[][] = [];
    let index = 0;
    for (const part of parts) {
      const o = new Array<U>(part.length);
      for (let i = 0; i < part.length; i++) {
        o[i] = f(part[i] as T, index++);
        if ((i & (CHUNK - 1)) === CHUNK - 1) yield;
      }
      out.push(o);
    }
    return out;
  });
}
