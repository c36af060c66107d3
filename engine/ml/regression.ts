// MLlib's streaming generalized linear models: each batch runs mini-batch gradient descent from the
// current weights (GradientDescent.runMiniBatchSGD: step size / sqrt(iteration), seeded sampling,
// early stop on the convergence tolerance). Streaming models never fit an intercept (it stays 0.0).

import type { DStream, NameOption } from "../dstream.js";
import { IllegalArgumentError } from "../errors.js";
import { RDD } from "../rdd.js";
import { CHUNK, type Sliced } from "../slicing.js";
import { regressionChartRows, regressionChartSpec, type ModelChartOptions } from "./charts.js";
import { DimensionMismatchError, MLInputError, ModelNotInitializedError, NonFiniteValueError, requireArg, where } from "./errors.js";
import { mapChecked } from "./kmeans.js";
import { LabeledPoint } from "./labeled-point.js";
import { DenseVector, dot, firstNonFinite, formatDouble, SparseVector, Vector, Vectors } from "./linalg.js";
import { SeededRandom } from "./random.js";
import { ModelTrainingDStream, type TrainingAlgorithm } from "./training.js";

/** Labels of a classifier that are not 0 or 1 (Spark: "Input validation failed."). */
export class InvalidLabelError extends MLInputError {}

/** A model of weights and an intercept (Spark's GeneralizedLinearModel). */
export abstract class GeneralizedLinearModel {
  readonly weights: DenseVector;

  constructor(
    weights: Vector | ArrayLike<number>,
    readonly intercept: number,
  ) {
    this.weights = weights instanceof Vector ? weights.toDense() : new DenseVector(weights);
  }

  get numFeatures(): number {
    return this.weights.size;
  }

  protected abstract predictPoint(features: Vector, weights: Float64Array, intercept: number): number;

  /** The prediction for one feature vector, or an RDD of predictions for an RDD of them. */
  predict(features: Vector | ArrayLike<number>): number;
  predict(data: RDD<Vector>): RDD<number>;
  predict(x: Vector | ArrayLike<number> | RDD<Vector>): number | RDD<number> {
    if (x instanceof RDD) return x.map((v) => this.predict(v));
    const v = x instanceof Vector ? x : new DenseVector(x);
    checkFeatures(v, this.weights.size, undefined, 0);
    return this.predictPoint(v, this.weights.values, this.intercept);
  }

  toString(): string {
    return `${this.constructor.name}: intercept = ${formatDouble(this.intercept)}, numFeatures = ${this.weights.size}`;
  }

  toJSON(): { weights: number[]; intercept: number } {
    return { weights: Array.from(this.weights.values), intercept: this.intercept };
  }
}

export class LinearRegressionModel extends GeneralizedLinearModel {
  protected predictPoint(features: Vector, weights: Float64Array, intercept: number): number {
    return dot(features, weights) + intercept;
  }
}

/** Binary logistic regression: predict() gives 0 or 1 with the threshold (default 0.5), the probability without one. */
export class LogisticRegressionModel extends GeneralizedLinearModel {
  readonly numClasses = 2;
  private threshold: number | undefined = 0.5;

  setThreshold(threshold: number): this {
    requireArg(threshold >= 0 && threshold <= 1, `Threshold must be in range [0, 1] but got ${threshold}`);
    this.threshold = threshold;
    return this;
  }

  getThreshold(): number | undefined {
    return this.threshold;
  }

  /** predict() then returns the probability of class 1. */
  clearThreshold(): this {
    this.threshold = undefined;
    return this;
  }

  protected predictPoint(features: Vector, weights: Float64Array, intercept: number): number {
    const margin = dot(features, weights) + intercept;
    const score = 1.0 / (1.0 + Math.exp(-margin));
    if (this.threshold === undefined) return score;
    return score > this.threshold ? 1.0 : 0.0;
  }
}

function checkFeatures(v: Vector, n: number, batchTime: number | undefined, index: number, record: unknown = v): void {
  if (v.size !== n) {
    throw new DimensionMismatchError(
      `${where(batchTime, index)} has ${v.size} features, but the model has ${n} weights: ${String(record).slice(0, 120)}; ` +
        `every vector must have the initial weights' dimension (filter or fix such records)`,
      batchTime,
      index,
    );
  }
}

function nonFinite(p: LabeledPoint, batchTime: number | undefined, index: number): NonFiniteValueError {
  const j = firstNonFinite(p.features);
  const what = j >= 0 ? `element ${j} of its features is ${formatDouble(p.features.apply(j))}` : `its label is ${formatDouble(p.label)}`;
  return new NonFiniteValueError(
    `${where(batchTime, index)} has a non-finite value (${what}): ${String(p).slice(0, 120)}; filter out NaN and infinite values before trainOn`,
    batchTime,
    index,
  );
}

/** Settings of the gradient descent each batch runs (Spark's GradientDescent; streaming defaults). */
class GradientDescent {
  stepSize = 0.1;
  numIterations = 50;
  regParam = 0.0;
  miniBatchFraction = 1.0;
  convergenceTol = 0.001;

  constructor(
    readonly gradient: "leastSquares" | "logistic",
    readonly updater: "simple" | "squaredL2",
  ) {}

  setStepSize(step: number): void {
    requireArg(step > 0, `Initial step size must be positive but got ${step}`);
    this.stepSize = step;
  }

  setMiniBatchFraction(fraction: number): void {
    requireArg(fraction > 0 && fraction <= 1.0, `Fraction for mini-batch SGD must be in range (0, 1] but got ${fraction}`);
    this.miniBatchFraction = fraction;
  }

  setNumIterations(iters: number): void {
    requireArg(iters >= 0, `Number of iterations must be nonnegative but got ${iters}`);
    this.numIterations = iters;
  }

  setRegParam(regParam: number): void {
    requireArg(regParam >= 0, `Regularization parameter must be nonnegative but got ${regParam}`);
    this.regParam = regParam;
  }

  setConvergenceTol(tolerance: number): void {
    requireArg(tolerance >= 0.0 && tolerance <= 1.0, `Convergence tolerance must be in range [0, 1] but got ${tolerance}`);
    this.convergenceTol = tolerance;
  }

  /**
   * runMiniBatchSGD over one batch, in slices. Checks every record first (dimension, finite label,
   * 0/1 labels for the classifier), so a bad record fails the batch before the weights move.
   */
  *run(points: LabeledPoint[], initial: Float64Array, batchTime: number | undefined): Sliced<SGDResult> {
    const n = initial.length;
    const classifier = this.gradient === "logistic";
    let invalid = 0;
    let firstInvalid = -1;
    for (let i = 0; i < points.length; i++) {
      const p = points[i] as LabeledPoint;
      if (!(p instanceof LabeledPoint)) {
        throw new MLInputError(`${where(batchTime, i)} is not a LabeledPoint: ${String(p).slice(0, 80)}; map records to new LabeledPoint(label, features) first`, batchTime, i);
      }
      checkFeatures(p.features, n, batchTime, i, p);
      if (!Number.isFinite(p.label)) throw nonFinite(p, batchTime, i);
      if (classifier && p.label !== 0 && p.label !== 1) {
        if (firstInvalid < 0) firstInvalid = i;
        invalid++;
      }
      if ((i & (CHUNK - 1)) === CHUNK - 1) yield;
    }
    if (invalid > 0) {
      throw new InvalidLabelError(
        `Input validation failed: classification labels should be 0 or 1. Found ${invalid} invalid labels; the first, ${where(batchTime, firstInvalid)}, ` +
          `has label ${formatDouble((points[firstInvalid] as LabeledPoint).label)}`,
        batchTime,
        firstInvalid,
      );
    }
    const result: SGDResult = { weights: initial, loss: NaN, iterations: 0 };
    // No data: the initial weights, to avoid NaNs (as Spark).
    if (points.length === 0) return result;
    let weights = initial.slice();
    let previous: Float64Array | undefined;
    let current: Float64Array | undefined;
    const grad = new Float64Array(n);
    const acc = { loss: 0, count: 0, withLoss: true };
    const chunk = classifier ? logisticChunk : leastSquaresChunk;
    const fraction = this.miniBatchFraction;
    let converged = false;
    let i = 1;
    while (!converged && i <= this.numIterations) {
      grad.fill(0);
      acc.loss = 0;
      acc.count = 0;
      // Only the first iteration's loss is reported (the batch's error under the weights before the update).
      acc.withLoss = i === 1;
      const sampler = fraction < 1.0 ? new SeededRandom(42 + i) : undefined;
      for (let from = 0; from < points.length; from += CHUNK) {
        chunk(points, from, Math.min(points.length, from + CHUNK), weights, grad, acc, sampler, fraction);
        yield;
      }
      if (i === 1 && !grad.every(Number.isFinite)) {
        for (let r = 0; r < points.length; r++) if (firstNonFinite((points[r] as LabeledPoint).features) >= 0) throw nonFinite(points[r] as LabeledPoint, batchTime, r);
      }
      if (acc.count > 0) {
        if (i === 1) result.loss = acc.loss / acc.count;
        const step = this.stepSize / Math.sqrt(i);
        const next = weights.slice();
        if (this.updater === "squaredL2" && this.regParam !== 0) {
          const shrink = 1.0 - step * this.regParam;
          for (let j = 0; j < n; j++) next[j] = (next[j] as number) * shrink;
        }
        const count = acc.count;
        for (let j = 0; j < n; j++) next[j] = (next[j] as number) + -step * ((grad[j] as number) / count);
        weights = next;
        previous = current;
        current = weights;
        if (previous !== undefined) converged = isConverged(previous, current, this.convergenceTol);
      }
      i++;
    }
    result.weights = weights;
    result.iterations = i - 1;
    return result;
  }
}

interface SGDResult {
  weights: Float64Array;
  /** Mean loss of the first iteration (before any update); NaN without one. */
  loss: number;
  iterations: number;
}

function isConverged(previous: Float64Array, current: Float64Array, tol: number): boolean {
  let diff = 0;
  let norm = 0;
  for (let j = 0; j < current.length; j++) {
    const d = (previous[j] as number) - (current[j] as number);
    diff += d * d;
    norm += (current[j] as number) * (current[j] as number);
  }
  return Math.sqrt(diff) < tol * Math.max(Math.sqrt(norm), 1.0);
}

interface Acc {
  loss: number;
  count: number;
  withLoss: boolean;
}

/** LeastSquaresGradient over points[from, to): grad += (w.x - y) x; loss (w.x - y)^2 / 2. */
function leastSquaresChunk(points: LabeledPoint[], from: number, to: number, w: Float64Array, grad: Float64Array, acc: Acc, sampler: SeededRandom | undefined, fraction: number): void {
  const n = w.length;
  for (let i = from; i < to; i++) {
    if (sampler !== undefined && !(sampler.nextDouble() < fraction)) continue;
    const p = points[i] as LabeledPoint;
    const f = p.features;
    if (f instanceof DenseVector) {
      const x = f.values;
      let s = 0;
      for (let j = 0; j < n; j++) s += (x[j] as number) * (w[j] as number);
      const diff = s - p.label;
      for (let j = 0; j < n; j++) grad[j] = (grad[j] as number) + diff * (x[j] as number);
      if (acc.withLoss) acc.loss += (diff * diff) / 2.0;
    } else {
      const sv = f as SparseVector;
      const diff = dot(sv, w) - p.label;
      for (let k = 0; k < sv.indices.length; k++) {
        const j = sv.indices[k] as number;
        grad[j] = (grad[j] as number) + diff * (sv.values[k] as number);
      }
      if (acc.withLoss) acc.loss += (diff * diff) / 2.0;
    }
    acc.count++;
  }
}

function log1pExp(x: number): number {
  return x > 0 ? x + Math.log1p(Math.exp(-x)) : Math.log1p(Math.exp(x));
}

/** Binary LogisticGradient over points[from, to): grad += (sigmoid(w.x) - y) x; log loss. */
function logisticChunk(points: LabeledPoint[], from: number, to: number, w: Float64Array, grad: Float64Array, acc: Acc, sampler: SeededRandom | undefined, fraction: number): void {
  const n = w.length;
  for (let i = from; i < to; i++) {
    if (sampler !== undefined && !(sampler.nextDouble() < fraction)) continue;
    const p = points[i] as LabeledPoint;
    const f = p.features;
    const label = p.label;
    if (f instanceof DenseVector) {
      const x = f.values;
      let s = 0;
      for (let j = 0; j < n; j++) s += (x[j] as number) * (w[j] as number);
      const margin = -1.0 * s;
      const multiplier = 1.0 / (1.0 + Math.exp(margin)) - label;
      for (let j = 0; j < n; j++) grad[j] = (grad[j] as number) + multiplier * (x[j] as number);
      if (acc.withLoss) acc.loss += label > 0 ? log1pExp(margin) : log1pExp(margin) - margin;
    } else {
      const sv = f as SparseVector;
      const margin = -1.0 * dot(sv, w);
      const multiplier = 1.0 / (1.0 + Math.exp(margin)) - label;
      for (let k = 0; k < sv.indices.length; k++) {
        const j = sv.indices[k] as number;
        grad[j] = (grad[j] as number) + multiplier * (sv.values[k] as number);
      }
      if (acc.withLoss) acc.loss += label > 0 ? log1pExp(margin) : log1pExp(margin) - margin;
    }
    acc.count++;
  }
}

/** One batch of trainOn's stream: the model after the batch and the batch's error before it. */
export interface LinearModelBatchSummary {
  time: number;
  weights: number[];
  intercept: number;
  /** Records in the batch. */
  count: number;
  /**
   * The batch's error under the weights before this batch's update (so it measures prediction on
   * unseen data): mean squared error for linear regression, mean log-loss for logistic regression.
   */
  error: number;
  /** Gradient descent iterations run (fewer than numIterations when it converged). */
  iterations: number;
}

/**
 * Spark's StreamingLinearAlgorithm: trainOn updates the model with every batch; predictOn and
 * predictOnValues use the model as it is when their batch runs (so a trainOn defined earlier on the
 * same stream has already learned from that batch).
 */
export abstract class StreamingLinearAlgorithm<M extends GeneralizedLinearModel> {
  protected model: M | undefined;
  protected readonly optimizer: GradientDescent;
  private training: ModelTrainingDStream<LabeledPoint, LinearModelBatchSummary> | undefined;

  protected constructor(gradient: "leastSquares" | "logistic", updater: "simple" | "squaredL2") {
    this.optimizer = new GradientDescent(gradient, updater);
  }

  protected abstract createModel(weights: Vector, intercept: number): M;
  protected abstract readonly kind: string;

  /** Initial step size; iteration t uses stepSize / sqrt(t). Default 0.1. */
  setStepSize(stepSize: number): this {
    this.optimizer.setStepSize(stepSize);
    return this;
  }

  /** Gradient descent iterations per batch. Default 50. */
  setNumIterations(numIterations: number): this {
    this.optimizer.setNumIterations(numIterations);
    return this;
  }

  /** Fraction of each batch sampled per iteration (seeded: 42 + iteration). Default 1.0. */
  setMiniBatchFraction(miniBatchFraction: number): this {
    this.optimizer.setMiniBatchFraction(miniBatchFraction);
    return this;
  }

  /** Regularization parameter. Default 0.0. */
  setRegParam(regParam: number): this {
    this.optimizer.setRegParam(regParam);
    return this;
  }

  /** Stop a batch's iterations early when the weights move less than this (relative above norm 1). Default 0.001. */
  setConvergenceTol(tolerance: number): this {
    this.optimizer.setConvergenceTol(tolerance);
    return this;
  }

  /** The initial weights (their size is the number of features); the intercept starts and stays 0.0. */
  setInitialWeights(initialWeights: Vector | ArrayLike<number>): this {
    const w = initialWeights instanceof Vector ? initialWeights : Vectors.dense(initialWeights);
    if (firstNonFinite(w) >= 0) throw new IllegalArgumentError(`setInitialWeights: the weights must be finite, got ${String(w)}`);
    this.model = this.createModel(w.toDense().copy(), 0.0);
    return this;
  }

  get stepSize(): number {
    return this.optimizer.stepSize;
  }
  get numIterations(): number {
    return this.optimizer.numIterations;
  }
  get miniBatchFraction(): number {
    return this.optimizer.miniBatchFraction;
  }
  get regParam(): number {
    return this.optimizer.regParam;
  }
  get convergenceTol(): number {
    return this.optimizer.convergenceTol;
  }

  /** The latest model; throws when no initial weights were set. */
  latestModel(): M {
    if (!this.model) throw new ModelNotInitializedError("Model must be initialized before starting training: call setInitialWeights(Vectors.dense(...)) first");
    return this.model;
  }

  /**
   * Trains on every batch of `data` (an output operation, like Spark's foreachRDD); an empty batch
   * leaves the model unchanged. The model is checkpointed under the returned stream's name.
   */
  trainOn(data: DStream<LabeledPoint>, options: NameOption = {}): ModelTrainingDStream<LabeledPoint, LinearModelBatchSummary> {
    if (!this.model) throw new ModelNotInitializedError("Model must be initialized before starting training: call setInitialWeights(Vectors.dense(...)) first");
    const training = new ModelTrainingDStream<LabeledPoint, LinearModelBatchSummary>(data, this.algorithm(), options);
    training.foreachRDD(() => {});
    this.training = training;
    return training;
  }

  /** Predictions for each feature vector, with the model as it is when the batch runs. */
  predictOn(data: DStream<Vector>): DStream<number> {
    this.requireModelForPrediction();
    return data.transform((rdd, time) =>
      mapChecked(rdd, time, (v, i) => {
        const m = this.latestModel();
        checkFeatures(v, m.numFeatures, time, i);
        return m.predict(v);
      }),
    );
  }

  /** As predictOn, keeping each record's key. */
  predictOnValues<K>(data: DStream<[K, Vector]>): DStream<[K, number]> {
    this.requireModelForPrediction();
    return data.transform((rdd, time) =>
      mapChecked(rdd, time, (kv, i) => {
        const m = this.latestModel();
        checkFeatures(kv[1], m.numFeatures, time, i);
        return [kv[0], m.predict(kv[1])] as [K, number];
      }),
    );
  }

  /** A live chart under the cell: the weights (first `maxWeights`) and each batch's error before its update. Call after trainOn. */
  chart(options: ModelChartOptions & { maxWeights?: number } = {}): void {
    const training = this.training;
    if (!training) throw new ModelNotInitializedError(`${this.kind}.chart(): call trainOn(stream) first; the chart shows what training sees`);
    const maxWeights = options.maxWeights ?? 10;
    const timeType = training.ssc.clock.kind === "manual" ? "quantitative" : "temporal";
    training
      .flatMap((s) => regressionChartRows(s, maxWeights))
      .chart(regressionChartSpec(timeType, this.optimizer.gradient === "logistic" ? "log-loss before update" : "mean squared error before update"), {
        mode: "append",
        maxRows: (options.maxRows ?? 200) * (Math.min(maxWeights, this.latestModel().numFeatures) + 1),
        title: options.title ?? `${this.kind}: weights and error per batch`,
      });
  }

  private requireModelForPrediction(): void {
    if (!this.model) throw new ModelNotInitializedError("Model must be initialized before starting prediction: call setInitialWeights(Vectors.dense(...)) first");
  }

  private algorithm(): TrainingAlgorithm<LabeledPoint, LinearModelBatchSummary> {
    const self = this;
    const summary = (time: number, count: number, error: number, iterations: number): LinearModelBatchSummary => {
      const m = self.latestModel();
      return { time, weights: Array.from(m.weights.values), intercept: m.intercept, count, error, iterations };
    };
    return {
      kind: this.kind,
      *trainBatch(parts, time) {
        const points = parts.length === 1 ? (parts[0] as LabeledPoint[]) : parts.flat();
        const before = self.latestModel();
        const r = yield* self.optimizer.run(points, before.weights.values, time);
        // Spark: a batch with no records leaves the model as it is.
        if (points.length > 0) self.model = self.createModel(new DenseVector(r.weights), 0.0);
        const error = self.optimizer.gradient === "leastSquares" ? 2 * r.loss : r.loss;
        return summary(time, points.length, error, r.iterations);
      },
      modelState: () => self.latestModel().toJSON(),
      restoreModel: (data) => {
        const d = data as { weights: number[]; intercept: number };
        self.model = self.createModel(new DenseVector(d.weights), d.intercept);
      },
      currentSummary: () => summary(NaN, 0, NaN, 0),
    };
  }
}

/** Spark's StreamingLinearRegressionWithSGD: least squares, no regularization (its updater ignores regParam). */
export class StreamingLinearRegressionWithSGD extends StreamingLinearAlgorithm<LinearRegressionModel> {
  protected readonly kind = "StreamingLinearRegressionWithSGD";

  constructor() {
    super("leastSquares", "simple");
  }

  protected createModel(weights: Vector, intercept: number): LinearRegressionModel {
    return new LinearRegressionModel(weights, intercept);
  }
}

/** Spark's StreamingLogisticRegressionWithSGD: binary logistic loss, L2 regularization (regParam, default 0.0). */
export class StreamingLogisticRegressionWithSGD extends StreamingLinearAlgorithm<LogisticRegressionModel> {
  protected readonly kind = "StreamingLogisticRegressionWithSGD";

  constructor() {
    super("logistic", "squaredL2");
  }

  protected createModel(weights: Vector, intercept: number): LogisticRegressionModel {
    return new LogisticRegressionModel(weights, intercept);
  }
}
