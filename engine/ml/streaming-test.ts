// MLlib's StreamingTest: online two-sample significance testing (A/B tests) with Welch's or
// Student's t-test over all batches so far or a sliding window of batches, after a peace period.

import type { DStream, NameOption } from "../dstream.js";
import { IllegalArgumentError } from "../errors.js";
import { formatDouble } from "./linalg.js";
import { pValueChartSpec, type ModelChartOptions } from "./charts.js";
import { ModelNotInitializedError, requireArg } from "./errors.js";

/** One observation: its group (true = experiment, false = control) and its value. */
export interface BinarySampleLike {
  isExperiment: boolean;
  value: number;
}

export class BinarySample implements BinarySampleLike {
  constructor(
    readonly isExperiment: boolean,
    readonly value: number,
  ) {}

  toString(): string {
    return `(${this.isExperiment}, ${formatDouble(this.value)})`;
  }
}

/**
 * Spark's StatCounter: count, mean, variance, min and max of numbers, merged one at a time or from
 * another counter (Welford's and Chan's updates), numerically stable.
 */
export class StatCounter {
  n = 0;
  mu = 0;
  m2 = 0;
  maxValue = -Infinity;
  minValue = Infinity;

  constructor(values: Iterable<number> = []) {
    this.merge(values);
  }

  /** A StatCounter with another's fields (also a plain object a checkpoint gave back). */
  static of(other: Pick<StatCounter, "n" | "mu" | "m2" | "maxValue" | "minValue">): StatCounter {
    const s = new StatCounter();
    s.n = other.n;
    s.mu = other.mu;
    s.m2 = other.m2;
    s.maxValue = other.maxValue;
    s.minValue = other.minValue;
    return s;
  }

  /** Adds a value, some values, or another StatCounter's values. */
  merge(x: number | Iterable<number> | StatCounter): this {
    if (typeof x === "number") {
      const delta = x - this.mu;
      this.n += 1;
      this.mu += delta / this.n;
      this.m2 += delta * (x - this.mu);
      this.maxValue = Math.max(this.maxValue, x);
      this.minValue = Math.min(this.minValue, x);
      return this;
    }
    if (x instanceof StatCounter) {
      if (x === this) return this.merge(x.copy());
      if (this.n === 0) {
        this.n = x.n;
        this.mu = x.mu;
        this.m2 = x.m2;
        this.maxValue = x.maxValue;
        this.minValue = x.minValue;
      } else if (x.n !== 0) {
        const delta = x.mu - this.mu;
        if (x.n * 10 < this.n) this.mu = this.mu + (delta * x.n) / (this.n + x.n);
        else if (this.n * 10 < x.n) this.mu = x.mu - (delta * this.n) / (this.n + x.n);
        else this.mu = (this.mu * this.n + x.mu * x.n) / (this.n + x.n);
        this.m2 += x.m2 + (delta * delta * this.n * x.n) / (this.n + x.n);
        this.n += x.n;
        this.maxValue = Math.max(this.maxValue, x.maxValue);
        this.minValue = Math.min(this.minValue, x.minValue);
      }
      return this;
    }
    for (const v of x) this.merge(v);
    return this;
  }

  copy(): StatCounter {
    return StatCounter.of(this);
  }

  get count(): number {
    return this.n;
  }
  get mean(): number {
    return this.n === 0 ? NaN : this.mu;
  }
  get sum(): number {
    return this.n * this.mu;
  }
  get max(): number {
    return this.maxValue;
  }
  get min(): number {
    return this.minValue;
  }
  /** Population variance (divides by n), as Spark's `variance`. */
  get variance(): number {
    return this.popVariance;
  }
  get popVariance(): number {
    return this.n === 0 ? NaN : this.m2 / this.n;
  }
  /** Sample variance (divides by n - 1); NaN for fewer than 2 values. */
  get sampleVariance(): number {
    return this.n <= 1 ? NaN : this.m2 / (this.n - 1);
  }
  get stdev(): number {
    return Math.sqrt(this.variance);
  }
  get popStdev(): number {
    return Math.sqrt(this.popVariance);
  }
  get sampleStdev(): number {
    return Math.sqrt(this.sampleVariance);
  }

  toString(): string {
    const f = (x: number) => x.toFixed(6);
    return `(count: ${this.n}, mean: ${f(this.mean)}, stdev: ${f(this.stdev)}, max: ${f(this.max)}, min: ${f(this.min)})`;
  }
}

/** One batch's test result (Spark's StreamingTestResult). */
export class StreamingTestResult {
  constructor(
    readonly pValue: number,
    readonly degreesOfFreedom: number,
    readonly statistic: number,
    readonly method: string,
    readonly nullHypothesis: string,
  ) {}

  toString(): string {
    const p = this.pValue;
    const explain =
      p <= 0.01
        ? `Very strong presumption against null hypothesis: ${this.nullHypothesis}.`
        : p <= 0.05
          ? `Strong presumption against null hypothesis: ${this.nullHypothesis}.`
          : p <= 0.1
            ? `Low presumption against null hypothesis: ${this.nullHypothesis}.`
            : `No presumption against null hypothesis: ${this.nullHypothesis}.`;
    return (
      `Streaming test summary:\nmethod: ${this.method}\n` +
      `degrees of freedom = ${formatDouble(this.degreesOfFreedom)} \nstatistic = ${formatDouble(this.statistic)} \npValue = ${formatDouble(p)} \n${explain}`
    );
  }
}

type TCdf = (x: number, v: number) => number;
let tCdf: TCdf | undefined;

/** Student's t CDF (stdlib's, a port of Boost's incomplete beta), loaded on first use. */
function studentTCdf(x: number, v: number): number {
  tCdf ??= require("@stdlib/stats-base-dists-t-cdf") as TCdf;
  return tCdf(x, v);
}

/** Two-sided p-value of statistic t with df degrees of freedom. */
export function twoSidedPValue(t: number, df: number): number {
  if (Number.isNaN(t) || Number.isNaN(df)) return NaN;
  return 2.0 * studentTCdf(-Math.abs(t), df);
}

/** A two-sample t-test on two summaries (textbook formulas, sample variances). */
export interface StreamingTestMethod {
  readonly methodName: string;
  readonly nullHypothesis: string;
  test(a: StatCounter, b: StatCounter): StreamingTestResult;
}

export const WelchTTest: StreamingTestMethod = {
  methodName: "Welch's 2-sample t-test",
  nullHypothesis: "Both groups have same mean",
  test(a, b) {
    const va = a.sampleVariance / a.count;
    const vb = b.sampleVariance / b.count;
    const t = (a.mean - b.mean) / Math.sqrt(va + vb);
    const df = ((va + vb) * (va + vb)) / ((va * va) / (a.count - 1) + (vb * vb) / (b.count - 1));
    return new StreamingTestResult(twoSidedPValue(t, df), df, t, this.methodName, this.nullHypothesis);
  },
};

export const StudentTTest: StreamingTestMethod = {
  methodName: "Student's 2-sample t-test",
  nullHypothesis: "Both groups have same mean",
  test(a, b) {
    const df = a.count + b.count - 2;
    const pooled = ((a.count - 1) * a.sampleVariance + (b.count - 1) * b.sampleVariance) / df;
    const t = (a.mean - b.mean) / Math.sqrt(pooled * (1 / a.count + 1 / b.count));
    return new StreamingTestResult(twoSidedPValue(t, df), df, t, this.methodName, this.nullHypothesis);
  },
};

const TEST_NAME_TO_OBJECT: Record<string, StreamingTestMethod> = { welch: WelchTTest, student: StudentTTest };

export type TestMethodName = "welch" | "student";

/**
 * Spark's StreamingTest: `new StreamingTest().setPeacePeriod(10).setWindowSize(0).setTestMethod("welch")
 * .registerStream(samples)` gives a stream of results, one per batch once data has arrived.
 * The first group of each pair is the control group (isExperiment false), so `statistic` > 0 means
 * the control's mean is higher.
 */
export class StreamingTest {
  peacePeriod = 0;
  windowSize = 0;
  testMethod: StreamingTestMethod = WelchTTest;
  private results: DStream<StreamingTestResult> | undefined;

  /** Batches to ignore at the start. Default 0. */
  setPeacePeriod(peacePeriod: number): this {
    requireArg(Number.isInteger(peacePeriod) && peacePeriod >= 0, `Peace period must be a nonnegative number of batches but got ${peacePeriod}`);
    this.peacePeriod = peacePeriod;
    return this;
  }

  /** Batches each test covers (a window sliding by one batch); 0 (default) means every batch so far. */
  setWindowSize(windowSize: number): this {
    requireArg(Number.isInteger(windowSize) && windowSize >= 0, `Window size must be a nonnegative number of batches but got ${windowSize}`);
    this.windowSize = windowSize;
    return this;
  }

  /** "welch" (default) or "student". */
  setTestMethod(method: TestMethodName): this {
    const m = TEST_NAME_TO_OBJECT[method];
    if (!m) throw new IllegalArgumentError(`Unrecognized method name. Supported streaming test methods: ${Object.keys(TEST_NAME_TO_OBJECT).join(", ")}`);
    this.testMethod = m;
    return this;
  }

  /** The stream of test results. `{ name }` names the running summaries' state for checkpoints. */
  registerStream(data: DStream<BinarySampleLike>, options: NameOption = {}): DStream<StreamingTestResult> {
    const summaries = this.summarizeByKeyAndWindow(this.dropPeacePeriod(data), options);
    const method = this.testMethod;
    this.results = this.pairSummaries(summaries).map(([a, b]) => method.test(a, b));
    return this.results;
  }

  /** Internal step: batches inside the peace period become empty. */
  dropPeacePeriod<T extends BinarySampleLike>(data: DStream<T>): DStream<T> {
    return data.transform((rdd, time) => {
      const zero = data.ssc.graph.zeroTime ?? 0;
      return time - zero > data.slideDuration * this.peacePeriod ? rdd : rdd.sc.emptyRDD<T>();
    });
  }

  /** Internal step: a StatCounter per group, over all batches so far or over the window. */
  summarizeByKeyAndWindow(data: DStream<BinarySampleLike>, options: NameOption = {}): DStream<[boolean, StatCounter]> {
    const pairs = data.map((s) => [s.isExperiment, s.value] as [boolean, number]);
    if (this.windowSize === 0) {
      return pairs.updateStateByKey<boolean, number, StatCounter>(
        // A new counter each batch: state values are immutable (checkpoints may share them), and a
        // recovered state is plain data, made a StatCounter again here.
        (values, old) => (old ? StatCounter.of(old) : new StatCounter()).merge(values),
        { name: options.name },
      );
    }
    return pairs.groupByKeyAndWindow(data.slideDuration * this.windowSize).mapValues((values) => new StatCounter(values));
  }

  /** Internal step: (control, experiment) summaries; the same summary twice when only one group has data. */
  pairSummaries(summaries: DStream<[boolean, StatCounter]>): DStream<[StatCounter, StatCounter]> {
    return summaries
      .map((kv) => [0, kv] as [number, [boolean, StatCounter]])
      .groupByKey()
      .map(([, groups]) => {
        const sorted = groups.slice().sort((x, y) => Number(x[0]) - Number(y[0]));
        return [(sorted[0] as [boolean, StatCounter])[1], (sorted[sorted.length - 1] as [boolean, StatCounter])[1]] as [StatCounter, StatCounter];
      });
  }

  /** A live chart of the p-value per batch under the cell (a dashed rule at 0.05). Call after registerStream. */
  chart(options: ModelChartOptions = {}): void {
    const results = this.results;
    if (!results) throw new ModelNotInitializedError("StreamingTest.chart(): call registerStream(stream) first");
    const timeType = results.ssc.clock.kind === "manual" ? "quantitative" : "temporal";
    results
      .map((r) => ({ pValue: r.pValue, statistic: r.statistic, degreesOfFreedom: r.degreesOfFreedom }))
      .chart(pValueChartSpec(timeType), { mode: "append", maxRows: options.maxRows ?? 500, title: options.title ?? `StreamingTest (${this.testMethod.methodName}): p-value per batch` });
  }
}
