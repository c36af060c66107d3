// Data generators for the ML suites, in the spirit of Spark's (LinearDataGenerator,
// LogisticRegressionSuite.generateLogisticInput, the suites' own k-means and A/B generators),
// seeded by the engine's SeededRandom (Spark's exact random streams are not reproduced).

import { BinarySample, LabeledPoint, Vectors, type Vector } from "../engine/index.js";
import { SeededRandom } from "../engine/ml/random.js";

/** y = w.x + intercept + eps * N(0, 1), x uniform in [-1, 1) per feature. */
export function generateLinearInput(intercept: number, weights: number[], nPoints: number, seed: number, eps = 0.1): LabeledPoint[] {
  const rnd = new SeededRandom(seed);
  const out: LabeledPoint[] = [];
  for (let i = 0; i < nPoints; i++) {
    const x = weights.map(() => (rnd.nextDouble() - 0.5) * 2);
    const y = x.reduce((s, xi, j) => s + xi * (weights[j] as number), intercept) + eps * rnd.nextGaussian();
    out.push(new LabeledPoint(y, Vectors.dense(x)));
  }
  return out;
}

/** x ~ N(0, 1); y = 1 with probability sigmoid(offset + scale * x). */
export function generateLogisticInput(offset: number, scale: number, nPoints: number, seed: number): LabeledPoint[] {
  const rnd = new SeededRandom(seed);
  const x = Array.from({ length: nPoints }, () => rnd.nextGaussian());
  return x.map((xi) => {
    const p = 1.0 / (1.0 + Math.exp(-(offset + scale * xi)));
    return new LabeledPoint(rnd.nextDouble() < p ? 1.0 : 0.0, Vectors.dense(xi));
  });
}

/** numBatches batches of numPoints points around k centres (point idx goes to centre idx % k), spread r. */
export function streamingKMeansData(
  numPoints: number,
  numBatches: number,
  k: number,
  d: number,
  r: number,
  seed: number,
  initCenters?: Vector[],
): { input: Vector[][]; centers: Vector[] } {
  const rand = new SeededRandom(seed);
  const centers = initCenters ?? Array.from({ length: k }, () => Vectors.dense(Array.from({ length: d }, () => rand.nextGaussian())));
  const input = Array.from({ length: numBatches }, () =>
    Array.from({ length: numPoints }, (_, idx) => {
      const c = centers[idx % k] as Vector;
      return Vectors.dense(Array.from({ length: d }, (_, x) => c.apply(x) + rand.nextGaussian() * r));
    }),
  );
  return { input, centers };
}

/** Half the batch in the experiment group (mean A), half in control (mean B). */
export function generateTestData(numBatches: number, pointsPerBatch: number, meanA: number, stdevA: number, meanB: number, stdevB: number, seed: number): BinarySample[][] {
  const rand = new SeededRandom(seed);
  const numTrues = pointsPerBatch / 2;
  return Array.from({ length: numBatches }, () => [
    ...Array.from({ length: numTrues }, () => new BinarySample(true, meanA + stdevA * rand.nextGaussian())),
    ...Array.from({ length: pointsPerBatch - numTrues }, () => new BinarySample(false, meanB + stdevB * rand.nextGaussian())),
  ]);
}
