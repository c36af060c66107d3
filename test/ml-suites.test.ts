// MLlib's streaming suites ported (StreamingKMeansSuite, StreamingLinearRegressionSuite,
// StreamingLogisticRegressionSuite, StreamingTestSuite, and pyspark's explicit cases), closed-form
// checks, bad input and model charts. Batches in, models and predictions out, on the manual clock.
import { describe, expect, it } from "vitest";
import {
  DimensionMismatchError,
  InvalidLabelError,
  LabeledPoint,
  ModelNotInitializedError,
  NonFiniteValueError,
  SparkContext,
  StatCounter,
  StreamingContext,
  StreamingKMeans,
  StreamingKMeansModel,
  StreamingLinearRegressionWithSGD,
  StreamingLogisticRegressionWithSGD,
  StreamingTest,
  StreamingTestResult,
  BinarySample,
  Vectors,
  DenseVector,
  SparseVector,
  setPresenter,
  type ChartRow,
  type DStream,
  type Presenter,
  type Vector,
} from "../engine/index.js";
import { LiveChart } from "../kernel/charts.js";
import { generateLinearInput, generateLogisticInput, generateTestData, streamingKMeansData } from "./ml-data.js";

/** Spark's TestSuiteBase.setupStreams + runStreams: inputs as batches, the built stream's output per batch. */
async function runStreams<T, U>(
  inputs: T[][],
  build: (input: DStream<T>, ssc: StreamingContext) => DStream<U> | void,
  numBatches = inputs.length,
): Promise<{ output: U[][]; ssc: StreamingContext }> {
  const sc = new SparkContext();
  const ssc = new StreamingContext(sc, 1000, { clock: "manual" });
  const stream = ssc.queueStream(inputs.map((xs) => sc.parallelize(xs, 2)), true, []);
  const out = build(stream, ssc);
  const output: U[][] = [];
  if (out) out.foreachRDD((rdd) => void output.push(rdd.collect()));
  await ssc.start();
  for (let i = 0; i < numBatches; i++) await ssc.advance(1000);
  await ssc.stop();
  return { output, ssc };
}

function expectVectorClose(a: Vector | number[], b: Vector | number[], tol: number): void {
  const x = Array.from(a instanceof Array ? a : a.toArray());
  const y = Array.from(b instanceof Array ? b : b.toArray());
  expect(x.length).toBe(y.length);
  x.forEach((v, i) => expect(Math.abs(v - (y[i] as number)), `element ${i}: ${v} vs ${y[i]}`).toBeLessThanOrEqual(tol));
}

describe("Vectors and LabeledPoint", () => {
  it("dense vectors keep a Float64Array and print as Spark does", () => {
    const v = Vectors.dense(1.0, 2.5, -3);
    expect(v).toBeInstanceOf(DenseVector);
    expect(v.values).toBeInstanceOf(Float64Array);
    expect(v.toString()).toBe("[1.0,2.5,-3.0]");
    expect(Vectors.dense([1e-4, 1e7]).toString()).toBe("[1.0E-4,1.0E7]");
    expect(v.size).toBe(3);
    expect(v.apply(1)).toBe(2.5);
  });

  it("sparse vectors: size, indices, values; equal to the dense vector with the same elements", () => {
    const s = Vectors.sparse(4, [0, 3], [1.0, 2.0]);
    expect(s).toBeInstanceOf(SparseVector);
    expect(s.toString()).toBe("(4,[0,3],[1.0,2.0])");
    expect(Array.from(s.toArray())).toEqual([1, 0, 0, 2]);
    expect(s.equals(Vectors.dense(1, 0, 0, 2))).toBe(true);
    expect(Vectors.sparse(3, [[2, 5.0], [0, 1.0]]).toString()).toBe("(3,[0,2],[1.0,5.0])");
    expect(() => Vectors.sparse(2, [0, 5], [1, 1])).toThrow(/out of bounds/);
    expect(() => Vectors.sparse(3, [0, 1], [1])).toThrow(/indices match the dimension of the values|dimension of the indices/);
  });

  it("Vectors.parse reads the dense and sparse text forms", () => {
    expect(Array.from(Vectors.parse("[1.0,2.0,3.5]").toArray())).toEqual([1, 2, 3.5]);
    const s = Vectors.parse(" (3, [0,2], [1.0, -2.0]) ");
    expect(s).toBeInstanceOf(SparseVector);
    expect(Array.from(s.toArray())).toEqual([1, 0, -2]);
    expect(Vectors.parse("[]").size).toBe(0);
    expect(() => Vectors.parse("[1.0,x]")).toThrow(/Cannot parse/);
  });

  it("LabeledPoint.parse reads (1.0,[2.0,3.0]), the sparse form and the pre-1.0 form", () => {
    const p = LabeledPoint.parse("(1.0,[2.0,3.0])");
    expect(p.label).toBe(1);
    expect(Array.from(p.features.toArray())).toEqual([2, 3]);
    expect(p.toString()).toBe("(1.0,[2.0,3.0])");
    const q = LabeledPoint.parse("(0.0,(3,[1],[4.0]))");
    expect(q.features).toBeInstanceOf(SparseVector);
    expect(Array.from(q.features.toArray())).toEqual([0, 4, 0]);
    const legacy = LabeledPoint.parse("1.0,2.0 3.0");
    expect(legacy.label).toBe(1);
    expect(Array.from(legacy.features.toArray())).toEqual([2, 3]);
    expect(() => LabeledPoint.parse("(1.0)")).toThrow(/Cannot parse/);
  });
});

describe("StreamingKMeans (StreamingKMeansSuite)", () => {
  it("accuracy for single center and equivalence to grand average", async () => {
    const numBatches = 10;
    const numPoints = 50;
    const model = new StreamingKMeans().setK(1).setDecayFactor(1.0).setInitialCenters([Vectors.dense(0, 0, 0, 0, 0)], [0.0]);
    const { input, centers } = streamingKMeansData(numPoints, numBatches, 1, 5, 0.1, 42);
    await runStreams(input, (s) => {
      model.trainOn(s);
      return s.count();
    });
    expectVectorClose(model.latestModel().clusterCenters[0]!, centers[0]!, 1e-1);
    const grand = new Float64Array(5);
    for (const v of input.flat()) for (let j = 0; j < 5; j++) grand[j]! += v.apply(j) / (numBatches * numPoints);
    expectVectorClose(model.latestModel().clusterCenters[0]!, Array.from(grand), 1e-5);
    expect(model.latestModel().clusterWeights).toEqual([500]);
  });

  it("accuracy for two centers", async () => {
    const kMeans = new StreamingKMeans()
      .setK(2)
      .setHalfLife(2, "batches")
      .setInitialCenters([Vectors.dense(-0.1, 0.1, -0.2, -0.3, -0.1), Vectors.dense(0.1, -0.2, 0.0, 0.2, 0.1)], [5.0, 5.0]);
    // (seed 1 of our generator: Spark's seed 42 names its own random stream)
    const { input, centers } = streamingKMeansData(5, 10, 2, 5, 0.1, 1);
    await runStreams(input, (s) => {
      kMeans.trainOn(s);
      return s.count();
    });
    const m = kMeans.latestModel();
    const d0 = Vectors.sqdist(m.clusterCenters[0]!, centers[0]!);
    const d1 = Vectors.sqdist(m.clusterCenters[0]!, centers[1]!);
    const [c0, c1] = d0 < d1 ? [centers[0]!, centers[1]!] : [centers[1]!, centers[0]!];
    expectVectorClose(m.clusterCenters[0]!, c0, 1e-1);
    expectVectorClose(m.clusterCenters[1]!, c1, 1e-1);
  });

  it("detecting dying clusters: the largest cluster is split when the smallest dies", async () => {
    const kMeans = new StreamingKMeans().setK(2).setHalfLife(0.5, "points").setInitialCenters([Vectors.dense(0.0), Vectors.dense(1000.0)], [1.0, 1.0]);
    const { input } = streamingKMeansData(5, 10, 1, 1, 1.0, 42, [Vectors.dense(0.0)]);
    await runStreams(input, (s) => {
      kMeans.trainOn(s);
      return s.count();
    });
    const m = kMeans.latestModel();
    const c0 = m.clusterCenters[0]!.apply(0);
    const c1 = m.clusterCenters[1]!.apply(0);
    expect(c0 * c1, "one positive center and one negative center").toBeLessThan(0);
    expect(Math.abs(Math.abs(c0) - 0.8)).toBeLessThanOrEqual(0.6);
    expect(Math.abs(Math.abs(c1) - 0.8)).toBeLessThanOrEqual(0.6);
  });

  it("the split puts both centres 1e-14 apart around the largest one, each with half the weight", () => {
    const m = new StreamingKMeansModel([Vectors.dense(2.0, -4.0), Vectors.dense(9.0, 9.0)], [1.0, 1e-9]);
    m.update([], 1.0, "batches");
    expect(m.clusterWeights).toEqual([(1.0 + 1e-9) / 2, (1.0 + 1e-9) / 2]);
    expect(Array.from(m.clusterCenters[0]!.values)).toEqual([2.0 + 2e-14, -4.0 + 4e-14]);
    expect(Array.from(m.clusterCenters[1]!.values)).toEqual([2.0 - 2e-14, -4.0 - 4e-14]);
  });

  it("SPARK-7946 setDecayFactor, and the defaults", () => {
    const kMeans = new StreamingKMeans();
    expect(kMeans.decayFactor).toBe(1.0);
    expect(kMeans.k).toBe(2);
    expect(kMeans.timeUnit).toBe("batches");
    kMeans.setDecayFactor(2.0);
    expect(kMeans.decayFactor).toBe(2.0);
    kMeans.setHalfLife(3, "points");
    expect(kMeans.decayFactor).toBeCloseTo(Math.pow(0.5, 1 / 3), 15);
    expect(kMeans.timeUnit).toBe("points");
    expect(() => kMeans.setHalfLife(1, "minutes" as "points")).toThrow(/Invalid time unit for decay: minutes/);
    expect(() => kMeans.setK(0)).toThrow(/Number of clusters must be positive but got 0/);
    expect(() => kMeans.setDecayFactor(-1)).toThrow(/Decay factor must be nonnegative/);
    expect(() => new StreamingKMeans().setK(3).setInitialCenters([[0], [1]], [1, 1])).toThrow(/Number of initial centers must be 3 but got 2/);
    expect(() => new StreamingKMeans().setInitialCenters([[0], [1]], [1])).toThrow(/equal to number of weights/);
  });

  it("setRandomCenters: k seeded centres of the dimension asked, each with the weight given", () => {
    const a = new StreamingKMeans().setK(3).setRandomCenters(4, 7.0, 11).latestModel();
    const b = new StreamingKMeans().setK(3).setRandomCenters(4, 7.0, 11).latestModel();
    expect(a.k).toBe(3);
    expect(a.dim).toBe(4);
    expect(a.clusterWeights).toEqual([7, 7, 7]);
    expect(a.centersArray).toEqual(b.centersArray);
    expect(new StreamingKMeans().setK(3).setRandomCenters(4, 7.0, 12).latestModel().centersArray).not.toEqual(a.centersArray);
  });

  it("StreamingKMeansModel.update with explicit values (pyspark's doctest)", () => {
    const data = [[-0.1, -0.1], [0.1, 0.1], [1.1, 1.1], [0.9, 0.9]].map((x) => Vectors.dense(x));
    let stkm = new StreamingKMeansModel([[0.0, 0.0], [1.0, 1.0]], [1.0, 1.0]);
    stkm = stkm.update(data, 1.0, "batches");
    expect(stkm.centersArray).toEqual([[0, 0], [1, 1]]);
    expect(stkm.predict([-0.1, -0.1])).toBe(0);
    expect(stkm.predict([0.9, 0.9])).toBe(1);
    expect(stkm.clusterWeights).toEqual([3.0, 3.0]);
    stkm = stkm.update([Vectors.dense(1.5, 1.5), Vectors.dense(0.2, 0.2)], 0.0, "batches");
    expect(stkm.centersArray).toEqual([[0.2, 0.2], [1.5, 1.5]]);
    expect(stkm.clusterWeights).toEqual([1.0, 1.0]);
    expect(stkm.predict([0.2, 0.2])).toBe(0);
    expect(stkm.predict([1.5, 1.5])).toBe(1);
    expect(stkm.computeCost([Vectors.dense(0.2, 0.2), Vectors.dense(1.5, 2.5)])).toBeCloseTo(1.0, 12);
  });

  it("trainOn a toy data set of four clusters leaves the centres where they are (pyspark)", async () => {
    const initCenters = [[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]];
    const stkm = new StreamingKMeans().setInitialCenters(initCenters, [1.0, 1.0, 1.0, 1.0]);
    const offsets = [[0, 0.1], [0, -0.1], [0.1, 0], [-0.1, 0]];
    const batches = offsets.map((o) => initCenters.map((c) => Vectors.dense(o[0]! + c[0]!, o[1]! + c[1]!)));
    await runStreams(batches, (s) => void stkm.trainOn(s));
    expectVectorClose(stkm.latestModel().centersArray.flat(), initCenters.flat(), 1e-12);
    expect(stkm.latestModel().clusterWeights).toEqual([5.0, 5.0, 5.0, 5.0]);
  });

  it("predictOn uses the model as it is; trainOn before predictOn predicts with the updated model (pyspark)", async () => {
    const stkm = new StreamingKMeans(2, 0.0).setInitialCenters([[0.0], [1.0]], [1.0, 1.0]);
    const batches = [[[-0.5], [0.6], [0.8]], [[0.2], [-0.1], [0.3]]].map((b) => b.map((x) => Vectors.dense(x)));
    const { output } = await runStreams(batches, (s) => {
      stkm.trainOn(s);
      return stkm.predictOn(s);
    });
    expect(output).toEqual([[0, 1, 1], [1, 0, 1]]);

    const fixed = new StreamingKMeans().setInitialCenters([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]], [1, 1, 1, 1]);
    const { output: predicted } = await runStreams([[[1.5, 1.5]], [[-1.5, 1.5]], [[-1.5, -1.5]], [[1.5, -1.5]]].map((b) => b.map((x) => Vectors.dense(x))), (s) =>
      fixed.predictOnValues(s.map((v) => [v.apply(0), v] as [number, Vector])),
    );
    expect(predicted).toEqual([[[1.5, 0]], [[-1.5, 1]], [[-1.5, 2]], [[1.5, 3]]]);
  });

  it("closed form: one batch with decay 0 puts each centre at the mean of its points", async () => {
    const clusters = [
      [[0.0, 0.0], [0.5, 0.1], [0.2, -0.4]],
      [[10.0, 10.0], [11.0, 9.5], [10.5, 10.25], [9.0, 10.0]],
      [[-8.0, 5.0], [-7.0, 6.0]],
    ];
    const kMeans = new StreamingKMeans().setK(3).setDecayFactor(0.0).setInitialCenters([[1, 1], [8, 8], [-5, 5]], [100, 100, 100]);
    const batch = [clusters[1]![0]!, clusters[0]![0]!, clusters[2]![0]!, ...clusters.flatMap((c) => c.slice(1))].map((x) => Vectors.dense(x));
    await runStreams([batch], (s) => void kMeans.trainOn(s));
    const m = kMeans.latestModel();
    clusters.forEach((points, c) => {
      const mean = [0, 1].map((j) => points.reduce((s, p) => s + p[j]!, 0) / points.length);
      expectVectorClose(m.clusterCenters[c]!, mean, 1e-12);
      expect(m.clusterWeights[c]).toBe(points.length);
    });
  });
});

describe("StreamingLinearRegressionWithSGD (StreamingLinearRegressionSuite)", () => {
  const validatePrediction = (predictions: number[], input: LabeledPoint[]) => {
    const off = predictions.filter((p, i) => Math.abs(p - input[i]!.label) > 0.5).length;
    expect(off).toBeLessThan(input.length / 5);
  };

  it("has Spark's defaults and validates its setters", () => {
    const m = new StreamingLinearRegressionWithSGD();
    expect([m.stepSize, m.numIterations, m.miniBatchFraction, m.convergenceTol, m.regParam]).toEqual([0.1, 50, 1.0, 0.001, 0.0]);
    expect(() => m.setStepSize(0)).toThrow(/Initial step size must be positive but got 0/);
    expect(() => m.setMiniBatchFraction(1.5)).toThrow(/Fraction for mini-batch SGD must be in range \(0, 1\] but got 1.5/);
    expect(() => m.setNumIterations(-1)).toThrow(/Number of iterations must be nonnegative/);
    expect(() => m.setConvergenceTol(2)).toThrow(/Convergence tolerance must be in range \[0, 1\]/);
    expect(() => m.latestModel()).toThrow(ModelNotInitializedError);
  });

  it("parameter accuracy: learns Y = 10*X1 + 10*X2", async () => {
    const model = new StreamingLinearRegressionWithSGD().setInitialWeights(Vectors.dense(0.0, 0.0)).setStepSize(0.2).setNumIterations(25).setConvergenceTol(0.0001);
    const input = Array.from({ length: 10 }, (_, i) => generateLinearInput(0.0, [10.0, 10.0], 100, 42 * (i + 1)));
    await runStreams(input, (s) => {
      model.trainOn(s);
      return s.count();
    });
    expect(Math.abs(model.latestModel().intercept)).toBeLessThanOrEqual(0.1);
    expect(Math.abs(model.latestModel().weights.apply(0) - 10.0)).toBeLessThanOrEqual(0.1);
    expect(Math.abs(model.latestModel().weights.apply(1) - 10.0)).toBeLessThanOrEqual(0.1);
    const validation = generateLinearInput(0.0, [10.0, 10.0], 100, 17);
    validatePrediction(validation.map((r) => model.latestModel().predict(r.features)), validation);
  });

  it("parameter convergence: the error shrinks batch after batch", async () => {
    const model = new StreamingLinearRegressionWithSGD().setInitialWeights(Vectors.dense(0.0)).setStepSize(0.2).setNumIterations(25);
    const input = Array.from({ length: 10 }, (_, i) => generateLinearInput(0.0, [10.0], 100, 42 * (i + 1)));
    const history: number[] = [];
    await runStreams(input, (s) => {
      model.trainOn(s);
      s.foreachRDD(() => void history.push(Math.abs(model.latestModel().weights.apply(0) - 10.0)));
      return s.count();
    });
    const deltas = history.slice(1).map((h, i) => h - history[i]!);
    expect(deltas.every((d) => d <= 0.1)).toBe(true);
    expect(deltas.filter((d) => d < 0).length).toBeGreaterThan(1);
  });

  it("predictions with the true weights", async () => {
    const model = new StreamingLinearRegressionWithSGD().setInitialWeights(Vectors.dense(10.0, 10.0)).setStepSize(0.2).setNumIterations(25);
    const input = Array.from({ length: 10 }, (_, i) => generateLinearInput(0.0, [10.0, 10.0], 100, 42 * (i + 1)));
    const { output } = await runStreams(input, (s) => model.predictOnValues(s.map((x) => [x.label, x.features] as [number, Vector])));
    expect(output).toHaveLength(10);
    for (const batch of output) expect(batch.reduce((e, [y, p]) => e + Math.abs(y - p), 0) / 100).toBeLessThanOrEqual(0.1);
  });

  it("training and prediction: the prediction error improves", async () => {
    const model = new StreamingLinearRegressionWithSGD().setInitialWeights(Vectors.dense(0.0, 0.0)).setStepSize(0.2).setNumIterations(25);
    const input = Array.from({ length: 10 }, (_, i) => generateLinearInput(0.0, [10.0, 10.0], 100, 42 * (i + 1)));
    const { output } = await runStreams(input, (s) => {
      model.trainOn(s);
      return model.predictOnValues(s.map((x) => [x.label, x.features] as [number, Vector]));
    });
    const error = output.map((b) => b.reduce((e, [y, p]) => e + Math.abs(y - p), 0) / 100);
    expect(error[0]! - error[error.length - 1]!).toBeGreaterThan(2);
  });

  it("handling empty RDDs in a stream: the model is unchanged", async () => {
    const model = new StreamingLinearRegressionWithSGD().setInitialWeights(Vectors.dense(0.0, 0.0)).setStepSize(0.2).setNumIterations(25);
    const { output, ssc } = await runStreams<LabeledPoint, [number, number]>([], (s) => {
      model.trainOn(s);
      return model.predictOnValues(s.map((x) => [x.label, x.features] as [number, Vector]));
    }, 10);
    expect(ssc.lastError).toBeUndefined();
    expect(output.flat()).toEqual([]);
    expect(Array.from(model.latestModel().weights.values)).toEqual([0, 0]);
  });

  it("gradient descent arithmetic: step / sqrt(iteration), mean gradient, intercept stays 0", async () => {
    const points = [new LabeledPoint(2, Vectors.dense(1)), new LabeledPoint(4, Vectors.dense(2))];
    const one = new StreamingLinearRegressionWithSGD().setInitialWeights([0]).setStepSize(1.0).setNumIterations(1);
    const two = new StreamingLinearRegressionWithSGD().setInitialWeights([0]).setStepSize(1.0).setNumIterations(2).setConvergenceTol(0);
    await runStreams([points], (s) => {
      one.trainOn(s);
      two.trainOn(s);
    });
    // grad at w = 0: ((0 - 2) * 1 + (0 - 4) * 2) / 2 = -5, so w = 0 - 1 * -5 = 5
    expect(one.latestModel().weights.apply(0)).toBe(5);
    // then grad at w = 5: ((5 - 2) * 1 + (10 - 4) * 2) / 2 = 7.5 with step 1 / sqrt(2)
    expect(two.latestModel().weights.apply(0)).toBe(5 + -(1 / Math.sqrt(2)) * 7.5);
    expect(two.latestModel().intercept).toBe(0);
  });

  it("stops a batch early at the convergence tolerance; seeded mini-batches are reproducible", async () => {
    const input = [generateLinearInput(0, [1, -2], 400, 5, 0)];
    // One context at a time: a new StreamingContext stops the active one.
    const runs: { weights: number[]; iterations: number }[] = [];
    for (const [i, tol] of [0.001, 0.0, 0.5, 0.5].entries()) {
      runs.push(
        await (async () => {
        const m = new StreamingLinearRegressionWithSGD().setInitialWeights([0, 0]).setStepSize(0.5).setNumIterations(200);
        if (i < 2) m.setConvergenceTol(tol);
        else m.setMiniBatchFraction(0.3);
        const iterations: number[] = [];
        await runStreams(input, (s) => void m.trainOn(s).foreachRDD((r) => void iterations.push(r.first().iterations)));
        return { weights: Array.from(m.latestModel().weights.values), iterations: iterations[0]! };
        })(),
      );
    }
    expect(runs[0]!.iterations).toBeLessThan(200);
    expect(runs[1]!.iterations).toBe(200);
    expect(runs[2]!.weights).toEqual(runs[3]!.weights);
    expect(runs[2]!.weights).not.toEqual(runs[1]!.weights);
  });

  it("closed form: noiseless linear data gives back its weights within 0.1", async () => {
    const truth = [3.0, -2.0, 0.5];
    const model = new StreamingLinearRegressionWithSGD().setInitialWeights([0, 0, 0]).setStepSize(1.0).setNumIterations(50).setConvergenceTol(0);
    const input = Array.from({ length: 10 }, (_, i) => generateLinearInput(0.0, truth, 200, 100 + i, 0.0));
    const errors: number[] = [];
    await runStreams(input, (s) => void model.trainOn(s).foreachRDD((r) => void errors.push(r.first().error)));
    expectVectorClose(model.latestModel().weights, truth, 0.1);
    expect(errors[errors.length - 1]!).toBeLessThan(errors[0]! / 10);
  });
});

describe("StreamingLogisticRegressionWithSGD (StreamingLogisticRegressionSuite)", () => {
  const B = 1.5;

  it("parameter accuracy: learns B for Y = logistic(B X)", async () => {
    const model = new StreamingLogisticRegressionWithSGD().setInitialWeights(Vectors.dense(0.0)).setStepSize(0.2).setNumIterations(25);
    const input = Array.from({ length: 20 }, (_, i) => generateLogisticInput(0.0, B, 100, 42 * (i + 1)));
    await runStreams(input, (s) => {
      model.trainOn(s);
      return s.count();
    });
    expect(Math.abs(model.latestModel().weights.apply(0) - B) / B).toBeLessThanOrEqual(0.1);
  });

  it("parameter convergence", async () => {
    const model = new StreamingLogisticRegressionWithSGD().setInitialWeights(Vectors.dense(0.0)).setStepSize(0.2).setNumIterations(25);
    // Seeds 2000 + 42 (i + 1): with our generator, seeds 42 (i + 1) give one noisy batch that moves the weight 0.13 away.
    const input = Array.from({ length: 20 }, (_, i) => generateLogisticInput(0.0, B, 100, 2000 + 42 * (i + 1)));
    const history: number[] = [];
    await runStreams(input, (s) => {
      model.trainOn(s);
      s.foreachRDD(() => void history.push(Math.abs(model.latestModel().weights.apply(0) - B)));
      return s.count();
    });
    const deltas = history.slice(1).map((h, i) => h - history[i]!);
    expect(deltas.every((d) => d <= 0.1)).toBe(true);
    expect(deltas.filter((d) => d < 0).length).toBeGreaterThan(1);
  });

  it("predictions with the true weight", async () => {
    const model = new StreamingLogisticRegressionWithSGD().setInitialWeights(Vectors.dense(1.5)).setStepSize(0.2).setNumIterations(25);
    const input = Array.from({ length: 10 }, (_, i) => generateLogisticInput(0.0, B, 100, 42 * (i + 1)));
    const { output } = await runStreams(input, (s) => model.predictOnValues(s.map((x) => [x.label, x.features] as [number, Vector])));
    for (const batch of output) expect(batch.reduce((e, [y, p]) => e + Math.abs(y - p), 0) / 100).toBeLessThanOrEqual(0.4);
  });

  it("training and prediction: the error falls from above 0.8 to below 0.2", async () => {
    const model = new StreamingLogisticRegressionWithSGD().setInitialWeights(Vectors.dense(-0.1)).setStepSize(0.01).setNumIterations(10);
    const input = Array.from({ length: 10 }, (_, i) => generateLogisticInput(0.0, 5.0, 100, 42 * (i + 1)));
    const { output } = await runStreams(input, (s) => {
      model.trainOn(s);
      return model.predictOnValues(s.map((x) => [x.label, x.features] as [number, Vector]));
    });
    const error = output.map((b) => b.reduce((e, [y, p]) => e + Math.abs(y - p), 0) / 100);
    expect(error[0]!).toBeGreaterThan(0.8);
    expect(error[error.length - 1]!).toBeLessThan(0.2);
  });

  it("handling empty RDDs in a stream", async () => {
    const model = new StreamingLogisticRegressionWithSGD().setInitialWeights(Vectors.dense(-0.1)).setStepSize(0.01).setNumIterations(10);
    const { ssc } = await runStreams<LabeledPoint, [number, number]>([], (s) => {
      model.trainOn(s);
      return model.predictOnValues(s.map((x) => [x.label, x.features] as [number, Vector]));
    }, 10);
    expect(ssc.lastError).toBeUndefined();
    expect(model.latestModel().weights.apply(0)).toBe(-0.1);
  });

  it("threshold 0.5 by default; clearThreshold gives probabilities; labels must be 0 or 1", async () => {
    const m = new StreamingLogisticRegressionWithSGD().setInitialWeights([2.0]).latestModel();
    expect(m.getThreshold()).toBe(0.5);
    expect(m.predict([1.0])).toBe(1);
    expect(m.predict([-1.0])).toBe(0);
    m.clearThreshold();
    expect(m.predict([1.0])).toBeCloseTo(1 / (1 + Math.exp(-2)), 15);
    const model = new StreamingLogisticRegressionWithSGD().setInitialWeights([0.0]);
    const { ssc } = await runStreams([[new LabeledPoint(1, Vectors.dense(1)), new LabeledPoint(2, Vectors.dense(1)), new LabeledPoint(-1, Vectors.dense(0))]], (s) => void model.trainOn(s));
    expect(ssc.lastError).toBeInstanceOf(InvalidLabelError);
    expect(String((ssc.lastError as Error).message)).toMatch(/Input validation failed: classification labels should be 0 or 1\. Found 2 invalid labels; the first, batch 1000 ms, record 1/);
    expect(model.latestModel().weights.apply(0)).toBe(0);
  });
});

describe("StreamingTest (StreamingTestSuite)", () => {
  const registered = async (model: StreamingTest, input: BinarySample[][]) => (await runStreams(input, (s) => model.registerStream(s))).output.flat();

  for (const [method, name] of [["welch", "Welch's 2-sample t-test"], ["student", "Student's 2-sample t-test"]] as const) {
    it(`accuracy for null hypothesis using ${method} t-test`, async () => {
      const model = new StreamingTest().setWindowSize(0).setPeacePeriod(0).setTestMethod(method);
      // A p-value under the null is uniform: seed 2 of our generator is one whose draws are not in the 5 % tail.
      const out = await registered(model, generateTestData(2, 1000, 0, 0.001, 0, 0.001, 2));
      expect(out).toHaveLength(2);
      expect(out.every((r) => r.pValue > 0.05 && r.method === name)).toBe(true);
    });

    it(`accuracy for alternative hypothesis using ${method} t-test`, async () => {
      const model = new StreamingTest().setWindowSize(0).setPeacePeriod(0).setTestMethod(method);
      const out = await registered(model, generateTestData(2, 1000, -10, 1, 10, 1, 42));
      expect(out).toHaveLength(2);
      expect(out.every((r) => r.pValue < 0.05 && r.method === name && r.nullHypothesis === "Both groups have same mean")).toBe(true);
    });
  }

  it("batches within same test window are grouped", async () => {
    const testWindow = 3;
    const pointsPerBatch = 100;
    const model = new StreamingTest().setWindowSize(testWindow).setPeacePeriod(0);
    const { output } = await runStreams(generateTestData(5, pointsPerBatch, -10, 1, 10, 1, 42), (s) => model.summarizeByKeyAndWindow(s));
    const counts = output.flat().map(([, s]) => s.count);
    expect(counts).toHaveLength(10);
    for (let i = 0; i < testWindow; i++) expect(counts.slice(2 * i, 2 * i + 2).every((c) => c === ((i + 1) * pointsPerBatch) / 2)).toBe(true);
    expect(counts.slice(2 * (testWindow - 1)).every((c) => c === (testWindow * pointsPerBatch) / 2)).toBe(true);
  });

  it("entries in peace period are dropped", async () => {
    const model = new StreamingTest().setWindowSize(0).setPeacePeriod(3);
    const { output } = await runStreams(generateTestData(7, 1000, -10, 1, 10, 1, 42), (s) => model.dropPeacePeriod(s));
    expect(output.flat()).toHaveLength((7 - 3) * 1000);
  });

  it("null hypothesis when only data from one group is present", async () => {
    const model = new StreamingTest().setWindowSize(0).setPeacePeriod(0);
    const out = await registered(model, generateTestData(2, 1000, 0, 0.001, 0, 0.001, 42).map((b) => b.filter((x) => x.isExperiment)));
    expect(out).toHaveLength(2);
    expect(out.every((r) => Math.abs(r.pValue - 1.0) < 0.001)).toBe(true);
  });

  it("p-values, statistics and degrees of freedom agree with a reference computation (scipy's ttest_ind) to 1e-9", async () => {
    const b1 = [...[2.1, 2.5, 1.9, 3.2, 2.8, 2.2, 2.9].map((v) => new BinarySample(true, v)), ...[1.8, 2.0, 1.7, 2.4, 2.1, 1.6].map((v) => new BinarySample(false, v))];
    const b2 = [...[3.0, 2.6, 2.4, 2.7].map((v) => ({ isExperiment: true, value: v })), ...[1.9, 2.2, 2.3, 1.5, 2.0].map((v) => ({ isExperiment: false, value: v }))];
    // scipy.stats.ttest_ind(control, experiment, equal_var=...) after batch 1, then over both batches
    const reference = {
      welch: [[-2.692559790791077, 0.022329754111707734, 10.14810158096048], [-4.159974665975369, 0.0005789047299425645, 18.15420479949877]],
      student: [[-2.5944637276879634, 0.02493896499983131, 11], [-4.159974665975369, 0.00048395596067403815, 20]],
    } as const;
    for (const method of ["welch", "student"] as const) {
      const out = await registered(new StreamingTest().setTestMethod(method), [b1, b2]);
      expect(out).toHaveLength(2);
      out.forEach((r, i) => {
        const [t, p, df] = reference[method][i]!;
        expect(Math.abs(r.statistic - t)).toBeLessThan(1e-9);
        expect(Math.abs(r.pValue - p)).toBeLessThan(1e-9);
        expect(Math.abs(r.degreesOfFreedom - df)).toBeLessThan(1e-9);
      });
    }
  });

  it("results have Spark's fields and summary; unknown methods are refused with Spark's message", () => {
    const r = new StreamingTestResult(0.03, 10, 2.5, "Welch's 2-sample t-test", "Both groups have same mean");
    expect(Object.keys(r)).toEqual(["pValue", "degreesOfFreedom", "statistic", "method", "nullHypothesis"]);
    expect(String(r)).toBe(
      "Streaming test summary:\nmethod: Welch's 2-sample t-test\ndegrees of freedom = 10.0 \nstatistic = 2.5 \npValue = 0.03 \nStrong presumption against null hypothesis: Both groups have same mean.",
    );
    expect(() => new StreamingTest().setTestMethod("z" as "welch")).toThrow("Unrecognized method name. Supported streaming test methods: welch, student");
    const s = new StatCounter([1, 2, 3, 4]);
    expect([s.count, s.mean, s.sum, s.variance, s.sampleVariance, s.max, s.min]).toEqual([4, 2.5, 10, 1.25, 5 / 3, 4, 1]);
    expect(new StatCounter([1, 2]).merge(new StatCounter([3, 4])).sampleVariance).toBeCloseTo(5 / 3, 14);
  });
});

describe("bad input", () => {
  it("a vector of the wrong dimension fails its batch naming the batch and record; the model stays as it was and training goes on", async () => {
    const kMeans = new StreamingKMeans().setK(1).setInitialCenters([[0, 0]], [0]);
    const good = [Vectors.dense(1, 1), Vectors.dense(3, 3)];
    const bad = [Vectors.dense(5, 5), Vectors.dense(6, 6), Vectors.dense(6, 6), Vectors.dense(1, 2, 3)];
    const centres: number[][][] = [];
    const { ssc } = await runStreams([good, bad, good], (s) => {
      kMeans.trainOn(s);
      s.foreachRDD(() => void centres.push(kMeans.latestModel().centersArray));
    });
    expect(ssc.lastError).toBeDefined();
    const cause = (ssc.lastError as { cause?: unknown }).cause ?? ssc.lastError;
    expect(cause).toBeInstanceOf(DimensionMismatchError);
    expect((cause as Error).message).toMatch(/batch 2000 ms, record 3 \(counting from 0\) has dimension 3, but the k-means model's centers have dimension 2/);
    expect(centres).toEqual([[[2, 2]], [[2, 2]], [[2, 2]]]);
    expect(kMeans.latestModel().clusterWeights).toEqual([4]);
  });

  it("NaN or infinite features fail the batch the same way, for k-means and regression", async () => {
    const kMeans = new StreamingKMeans().setK(1).setInitialCenters([[0, 0]], [0]);
    const { ssc } = await runStreams([[Vectors.dense(1, 1), Vectors.dense(NaN, 1)]], (s) => void kMeans.trainOn(s));
    const e1 = ((ssc.lastError as { cause?: unknown }).cause ?? ssc.lastError) as Error;
    expect(e1).toBeInstanceOf(NonFiniteValueError);
    expect(e1.message).toMatch(/batch 1000 ms, record 1 \(counting from 0\) has a non-finite feature \(element 0 is NaN\)/);
    expect(kMeans.latestModel().centersArray).toEqual([[0, 0]]);

    const reg = new StreamingLinearRegressionWithSGD().setInitialWeights([0, 0]);
    const points = [new LabeledPoint(1, Vectors.dense(1, 2)), new LabeledPoint(1, Vectors.dense(1, Infinity))];
    const { ssc: ssc2 } = await runStreams([points], (s) => void reg.trainOn(s));
    const e2 = ((ssc2.lastError as { cause?: unknown }).cause ?? ssc2.lastError) as Error;
    expect(e2).toBeInstanceOf(NonFiniteValueError);
    expect(e2.message).toMatch(/batch 1000 ms, record 1 \(counting from 0\) has a non-finite value \(element 1 of its features is Infinity\)/);
    expect(Array.from(reg.latestModel().weights.values)).toEqual([0, 0]);

    const { ssc: ssc3 } = await runStreams([[new LabeledPoint(1, Vectors.dense(1, 2)), new LabeledPoint(1, Vectors.dense(1))]], (s) => void reg.trainOn(s));
    const e3 = ((ssc3.lastError as { cause?: unknown }).cause ?? ssc3.lastError) as Error;
    expect(e3).toBeInstanceOf(DimensionMismatchError);
    expect(e3.message).toMatch(/batch 1000 ms, record 1 \(counting from 0\) has 1 features, but the model has 2 weights/);
  });

  it("predictOn before any training uses the initial model, and is refused when there is none", async () => {
    const reg = new StreamingLinearRegressionWithSGD().setInitialWeights([2, 3]);
    const { output } = await runStreams([[Vectors.dense(1, 1), Vectors.dense(0, 2)]], (s) => reg.predictOn(s));
    expect(output).toEqual([[5, 6]]);
    const sc = new SparkContext();
    const ssc = new StreamingContext(sc, 1000, { clock: "manual" });
    const s = ssc.queueStream<Vector>([]);
    expect(() => new StreamingLinearRegressionWithSGD().predictOn(s)).toThrow(/Model must be initialized before starting prediction/);
    expect(() => new StreamingLogisticRegressionWithSGD().trainOn(s as unknown as DStream<LabeledPoint>)).toThrow(/Model must be initialized before starting training/);
    expect(() => new StreamingKMeans().predictOn(s)).toThrow(ModelNotInitializedError);
    expect(() => new StreamingKMeans().trainOn(s)).toThrow(/Initial cluster centers must be set before starting predictions/);
    const { ssc: ssc2 } = await runStreams([[Vectors.dense(1, 1, 1)]], (st) => reg.predictOn(st));
    expect((((ssc2.lastError as { cause?: unknown }).cause ?? ssc2.lastError) as Error).message).toMatch(/batch 1000 ms, record 0 \(counting from 0\) has 3 features, but the model has 2 weights/);
  });
});

describe("models you can watch", () => {
  function capturePresenter(): { charts: { spec: Record<string, unknown>; mode?: string; chart: LiveChart }[]; restore: () => void } {
    const charts: { spec: Record<string, unknown>; mode?: string; chart: LiveChart }[] = [];
    const presenter: Presenter = {
      openPrint: () => ({ batch: () => {} }),
      openChart: (spec, options) => {
        const chart = new LiveChart(spec, options);
        charts.push({ spec, mode: options.mode, chart });
        return { batch: (time: number, rows: ChartRow[]) => chart.batch(time, rows) };
      },
      outputDefined: () => {},
    };
    setPresenter(presenter);
    return { charts, restore: () => setPresenter(undefined) };
  }

  it("k-means centres over the latest batch's points, regression weights and error per batch, A/B p-value over time: Vega-Lite that renders to SVG", async () => {
    const cap = capturePresenter();
    try {
      const kMeans = new StreamingKMeans().setK(2).setInitialCenters([[0, 0], [5, 5]], [1, 1]);
      const { input } = streamingKMeansData(40, 3, 2, 2, 0.3, 7, [Vectors.dense(0, 0), Vectors.dense(5, 5)]);
      await runStreams(input, (s) => {
        kMeans.trainOn(s);
        kMeans.chart({ maxPoints: 10 });
      });
      const reg = new StreamingLinearRegressionWithSGD().setInitialWeights([0, 0]).setStepSize(0.5);
      await runStreams(Array.from({ length: 4 }, (_, i) => generateLinearInput(0, [2, -1], 50, i + 1)), (s) => {
        reg.trainOn(s);
        reg.chart();
      });
      const test = new StreamingTest();
      await runStreams(generateTestData(3, 40, 0, 1, 1, 1, 3), (s) => {
        test.registerStream(s);
        test.chart();
      });
      const [km, rg, ab] = cap.charts;
      expect(km!.mode).toBe("complete");
      const kmRows = km!.chart.rows();
      expect(kmRows.filter((r) => r.kind === "point")).toHaveLength(10);
      const centres = kmRows.filter((r) => r.kind === "centre");
      expect(centres.map((r) => [r.x, r.y])).toEqual(kMeans.latestModel().centersArray);
      expect(rg!.mode).toBe("append");
      const errors = rg!.chart.rows().filter((r) => r.panel === "error").map((r) => r.value as number);
      expect(errors).toHaveLength(4);
      expect(errors[3]!).toBeLessThan(errors[0]!);
      expect(rg!.chart.rows().filter((r) => r.key === "w[1]").map((r) => r.time)).toEqual([1000, 2000, 3000, 4000]);
      expect(ab!.chart.rows().map((r) => typeof r.pValue)).toEqual(["number", "number", "number"]);
      for (const c of [km!, rg!, ab!]) {
        const bundle = await c.chart.bundle();
        expect(bundle["image/svg+xml"]).toMatch(/^<svg/);
      }
    } finally {
      cap.restore();
    }
  });
});
