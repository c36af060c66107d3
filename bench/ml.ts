// npm run bench:ml — MLlib's streaming trainers against hand-written loops doing the same arithmetic on
// the same arrays: StreamingKMeans (k = 10, dim = 10) and StreamingLogisticRegressionWithSGD (dim = 100,
// Spark's defaults: step 0.1, 50 iterations, tolerance 0.001), each over 20 batches of 100k points.
// Batches are generated one at a time and handed to both sides (engine first on even batches, the loop
// first on odd ones); only the training is timed. Ends with `summary: kmeans X.XXx, logistic X.XXx`.

import {
  DenseVector,
  LabeledPoint,
  SparkContext,
  StreamingContext,
  StreamingKMeans,
  StreamingLogisticRegressionWithSGD,
  type DStream,
  type RDD,
  type Vector,
} from "../engine/index.js";
import { SeededRandom } from "../engine/ml/random.js";

import { parseArgs } from "node:util";

const { values: args } = parseArgs({ options: { batches: { type: "string", default: "20" }, points: { type: "string", default: "100000" } } });
const BATCHES = Number(args.batches);
const POINTS = Number(args.points);
const gc = (globalThis as { gc?: () => void }).gc ?? (() => {});

function now(): number {
  return performance.now();
}

// ---- k-means ------------------------------------------------------------------------------------

/** The hand-written k-means step: Spark's update rule, on the same Float64Arrays. */
function kmeansLoop(points: DenseVector[], centers: Float64Array[], weights: Float64Array, decay: number): void {
  const k = centers.length;
  const dim = (centers[0] as Float64Array).length;
  const sums = Array.from({ length: k }, () => new Float64Array(dim));
  const counts = new Float64Array(k);
  for (let i = 0; i < points.length; i++) {
    const x = (points[i] as DenseVector).values;
    let best = 0;
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
    counts[best] = (counts[best] as number) + 1;
  }
  for (let c = 0; c < k; c++) weights[c] = decay * (weights[c] as number);
  for (let c = 0; c < k; c++) {
    const count = counts[c] as number;
    if (count === 0) continue;
    const ctr = centers[c] as Float64Array;
    const s = sums[c] as Float64Array;
    const w = (weights[c] as number) + count;
    const lambda = count / Math.max(w, 1e-16);
    weights[c] = w;
    const a = lambda / count;
    for (let j = 0; j < dim; j++) ctr[j] = (ctr[j] as number) * (1.0 - lambda);
    for (let j = 0; j < dim; j++) ctr[j] = (ctr[j] as number) + a * (s[j] as number);
  }
  let largest = 0;
  let smallest = 0;
  for (let c = 1; c < k; c++) {
    if ((weights[c] as number) > (weights[largest] as number)) largest = c;
    if ((weights[c] as number) < (weights[smallest] as number)) smallest = c;
  }
  if ((weights[smallest] as number) < 1e-8 * (weights[largest] as number)) {
    const w = ((weights[largest] as number) + (weights[smallest] as number)) / 2;
    weights[largest] = w;
    weights[smallest] = w;
    const big = centers[largest] as Float64Array;
    const small = centers[smallest] as Float64Array;
    for (let j = 0; j < dim; j++) {
      const x = big[j] as number;
      const p = 1e-14 * Math.max(Math.abs(x), 1.0);
      big[j] = x + p;
      small[j] = x - p;
    }
  }
}

// ---- logistic regression ------------------------------------------------------------------------

/** The hand-written SGD: runMiniBatchSGD with LogisticGradient, SquaredL2Updater (regParam 0), same arrays. */
let loopIterations = 0;

function logisticLoop(points: LabeledPoint[], initial: Float64Array, stepSize: number, numIterations: number, tol: number): Float64Array {
  const n = initial.length;
  let weights = initial.slice();
  let previous: Float64Array | undefined;
  let current: Float64Array | undefined;
  const grad = new Float64Array(n);
  let loss = 0;
  for (let it = 1; it <= numIterations; it++) {
    loopIterations++;
    grad.fill(0);
    let count = 0;
    for (let i = 0; i < points.length; i++) {
      const p = points[i] as LabeledPoint;
      const x = (p.features as DenseVector).values;
      let s = 0;
      for (let j = 0; j < n; j++) s += (x[j] as number) * (weights[j] as number);
      const margin = -1.0 * s;
      const multiplier = 1.0 / (1.0 + Math.exp(margin)) - p.label;
      for (let j = 0; j < n; j++) grad[j] = (grad[j] as number) + multiplier * (x[j] as number);
      if (it === 1) loss += p.label > 0 ? log1pExp(margin) : log1pExp(margin) - margin;
      count++;
    }
    const step = stepSize / Math.sqrt(it);
    const next = weights.slice();
    for (let j = 0; j < n; j++) next[j] = (next[j] as number) + -step * ((grad[j] as number) / count);
    weights = next;
    previous = current;
    current = weights;
    if (previous !== undefined) {
      let diff = 0;
      let norm = 0;
      for (let j = 0; j < n; j++) {
        const d = (previous[j] as number) - (current[j] as number);
        diff += d * d;
        norm += (current[j] as number) * (current[j] as number);
      }
      if (Math.sqrt(diff) < tol * Math.max(Math.sqrt(norm), 1.0)) break;
    }
  }
  void loss;
  return weights;
}

function log1pExp(x: number): number {
  return x > 0 ? x + Math.log1p(Math.exp(-x)) : Math.log1p(Math.exp(x));
}

// ---- harness ------------------------------------------------------------------------------------

interface Side {
  engine: number;
  loop: number;
}

/** Runs `batches` through the engine (a queueStream on the manual clock) and the loop, timing each. */
async function compare<T>(makeBatch: (i: number) => T[], engineTrain: (stream: DStream<T>) => void, loop: (batch: T[]) => void, batches: number): Promise<Side> {
  const sc = new SparkContext();
  const ssc = new StreamingContext(sc, 1000, { clock: "manual" });
  const queue: RDD<T>[] = [];
  const stream = ssc.queueStream(queue, true);
  engineTrain(stream);
  await ssc.start();
  const t: Side = { engine: 0, loop: 0 };
  for (let i = 0; i < batches; i++) {
    const batch = makeBatch(i);
    const runEngine = async () => {
      queue.push(sc.parallelize(batch, 1));
      gc();
      const t0 = now();
      await ssc.advance(1000);
      t.engine += now() - t0;
    };
    const runLoop = () => {
      gc();
      const t0 = now();
      loop(batch);
      t.loop += now() - t0;
    };
    if (i % 2 === 0) {
      await runEngine();
      runLoop();
    } else {
      runLoop();
      await runEngine();
    }
  }
  await ssc.stop();
  if (ssc.lastError) throw ssc.lastError;
  return t;
}

async function benchKMeans(): Promise<number> {
  const k = 10;
  const dim = 10;
  const rnd = new SeededRandom(1);
  const truth = Array.from({ length: k }, () => Array.from({ length: dim }, () => rnd.nextGaussian() * 5));
  const makeBatch = (i: number): Vector[] => {
    const r = new SeededRandom(100 + i);
    const out: Vector[] = new Array(POINTS);
    for (let p = 0; p < POINTS; p++) {
      const c = truth[p % k] as number[];
      const v = new Float64Array(dim);
      for (let j = 0; j < dim; j++) v[j] = (c[j] as number) + r.nextGaussian();
      out[p] = new DenseVector(v);
    }
    return out;
  };
  const init = Array.from({ length: k }, (_, c) => Float64Array.from({ length: dim }, (_, j) => ((c * 7 + j * 3) % 11) - 5));
  const decay = 0.9;
  // warm-up on a small batch (both sides), not timed
  const warm = makeBatch(99).slice(0, 20_000);
  kmeansLoop(warm as DenseVector[], init.map((c) => c.slice()), new Float64Array(k), decay);
  const model = new StreamingKMeans().setK(k).setDecayFactor(decay).setInitialCenters(init.map((c) => c.slice()), new Array<number>(k).fill(0));
  const loopCenters = init.map((c) => c.slice());
  const loopWeights = new Float64Array(k);
  const t = await compare<Vector>(makeBatch, (s) => void model.trainOn(s), (b) => kmeansLoop(b as DenseVector[], loopCenters, loopWeights, decay), BATCHES);
  let maxDiff = 0;
  model.latestModel().centersArray.forEach((c, ci) => c.forEach((x, j) => (maxDiff = Math.max(maxDiff, Math.abs(x - (loopCenters[ci]![j] as number))))));
  const pts = (BATCHES * POINTS) / 1e6;
  console.log(`k-means, k=${k} dim=${dim}: ${BATCHES} batches x ${POINTS / 1000}k points, decay ${decay}`);
  console.log(`  hand-written loop   ${(pts / (t.loop / 1000)).toFixed(2)} M points/s  (${t.loop.toFixed(0)} ms)`);
  console.log(`  engine trainOn      ${(pts / (t.engine / 1000)).toFixed(2)} M points/s  (${t.engine.toFixed(0)} ms)   ${(t.loop / t.engine).toFixed(2)}x the loop (goal >= 0.8x)`);
  console.log(`  same model: largest centre difference ${maxDiff.toExponential(2)}`);
  return t.loop / t.engine;
}

async function benchLogistic(): Promise<number> {
  const dim = 100;
  const rnd = new SeededRandom(2);
  const truth = Array.from({ length: dim }, () => rnd.nextGaussian() * 0.3);
  const makeBatch = (i: number): LabeledPoint[] => {
    const r = new SeededRandom(500 + i);
    const out: LabeledPoint[] = new Array(POINTS);
    for (let p = 0; p < POINTS; p++) {
      const v = new Float64Array(dim);
      let m = 0;
      for (let j = 0; j < dim; j++) {
        v[j] = r.nextGaussian();
        m += (v[j] as number) * (truth[j] as number);
      }
      out[p] = new LabeledPoint(r.nextDouble() < 1 / (1 + Math.exp(-m)) ? 1 : 0, new DenseVector(v));
    }
    return out;
  };
  const model = new StreamingLogisticRegressionWithSGD().setInitialWeights(new Float64Array(dim));
  let loopWeights: Float64Array = new Float64Array(dim);
  const warm = makeBatch(99).slice(0, 5_000);
  logisticLoop(warm, new Float64Array(dim), 0.1, 5, 0.001);
  loopIterations = 0;
  let engineIterations = 0;
  const t = await compare<LabeledPoint>(makeBatch, (s) => model.trainOn(s).foreachRDD((r) => void (engineIterations += r.first().iterations)), (b) => void (loopWeights = logisticLoop(b, loopWeights, 0.1, 50, 0.001)), BATCHES);
  let maxDiff = 0;
  model.latestModel().weights.values.forEach((x, j) => (maxDiff = Math.max(maxDiff, Math.abs(x - (loopWeights[j] as number)))));
  console.log(`logistic regression with SGD, dim=${dim}: ${BATCHES} batches x ${POINTS / 1000}k points, step 0.1, up to 50 iterations, tolerance 0.001`);
  const rate = (iterations: number, ms: number) => ((iterations * POINTS) / 1e6 / (ms / 1000)).toFixed(2);
  console.log(`  hand-written loop   ${rate(loopIterations, t.loop)} M point-iterations/s  (${t.loop.toFixed(0)} ms, ${loopIterations} iterations)`);
  console.log(`  engine trainOn      ${rate(engineIterations, t.engine)} M point-iterations/s  (${t.engine.toFixed(0)} ms, ${engineIterations} iterations)   ${(t.loop / t.engine).toFixed(2)}x the loop (goal >= 0.8x)`);
  console.log(`  same model: largest weight difference ${maxDiff.toExponential(2)}`);
  return t.loop / t.engine;
}

async function main(): Promise<void> {
  const kmeans = await benchKMeans();
  const logistic = await benchLogistic();
  console.log(`summary: kmeans ${kmeans.toFixed(2)}x, logistic ${logistic.toFixed(2)}x`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
