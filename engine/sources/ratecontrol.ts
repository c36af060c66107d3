// Backpressure: Spark's PID rate estimator, and the controller that feeds it each completed
// batch and publishes the new rate limit to one input stream.

import { IllegalArgumentError } from "../errors.js";

/** Thrown for an estimator configured with impossible gains; the message names the setting to fix. */
export class RateEstimatorConfigError extends IllegalArgumentError {}

export interface PIDRateEstimatorOptions {
  /** Weight of the current error (Spark's spark.streaming.backpressure.pid.proportional, default 1.0). */
  proportional?: number;
  /** Weight of the accumulated error seen as scheduling delay (default 0.2). */
  integral?: number;
  /** Weight of the error's rate of change (default 0.0). */
  derived?: number;
  /** The estimate never falls below this many records/s, so some data always flows (default 100). */
  minRate?: number;
}

/**
 * Spark's PIDRateEstimator, arithmetic for arithmetic. The error is the gap between the rate
 * asked for last time and the rate the batch was actually processed at; the integral term reads
 * the scheduling delay as records that overflowed earlier batches.
 */
export class PIDRateEstimator {
  readonly batchIntervalMs: number;
  readonly proportional: number;
  readonly integral: number;
  readonly derived: number;
  readonly minRate: number;

  private firstRun = true;
  private latestTime = -1;
  private latestRate = -1;
  private latestError = -1;

  constructor(batchIntervalMs: number, options: PIDRateEstimatorOptions = {}) {
    this.batchIntervalMs = batchIntervalMs;
    this.proportional = options.proportional ?? 1.0;
    this.integral = options.integral ?? 0.2;
    this.derived = options.derived ?? 0.0;
    this.minRate = options.minRate ?? 100;
    if (!(batchIntervalMs > 0)) throw new RateEstimatorConfigError(`PIDRateEstimator: batch interval ${batchIntervalMs} ms must be > 0`);
    if (!(this.proportional >= 0)) throw new RateEstimatorConfigError(`PIDRateEstimator: proportional ${this.proportional} must be >= 0`);
    if (!(this.integral >= 0)) throw new RateEstimatorConfigError(`PIDRateEstimator: integral ${this.integral} must be >= 0`);
    if (!(this.derived >= 0)) throw new RateEstimatorConfigError(`PIDRateEstimator: derived ${this.derived} must be >= 0`);
    if (!(this.minRate > 0)) throw new RateEstimatorConfigError(`PIDRateEstimator: minRate ${this.minRate} must be > 0`);
  }

  /**
   * One completed batch: `time` in ms (when processing ended), its record count, and its delays in ms.
   * Returns the new rate in records/s, or undefined when there is nothing to learn (the first
   * batch only calibrates, as in Spark; empty or instant batches and old times are skipped).
   */
  compute(time: number, numElements: number, processingDelay: number, schedulingDelay: number): number | undefined {
    if (!(time > this.latestTime && numElements > 0 && processingDelay > 0)) return undefined;
    const delaySinceUpdate = (time - this.latestTime) / 1000;
    const processingRate = (numElements / processingDelay) * 1000;
    const error = this.latestRate - processingRate;
    const historicalError = (schedulingDelay * processingRate) / this.batchIntervalMs;
    const dError = (error - this.latestError) / delaySinceUpdate;
    const newRate = Math.max(
      this.latestRate - this.proportional * error - this.integral * historicalError - this.derived * dError,
      this.minRate,
    );
    this.latestTime = time;
    if (this.firstRun) {
      this.latestRate = processingRate;
      this.latestError = 0;
      this.firstRun = false;
      return undefined;
    }
    this.latestRate = newRate;
    this.latestError = error;
    return newRate;
  }
}

/** What a rate controller reads from onBatchCompleted (a subset of the engine's BatchInfo). */
export interface CompletedBatch {
  batchTime: number;
  numRecords?: number;
  schedulingDelay?: number;
  processingDelay?: number;
  totalDelay?: number;
  processingEndTime?: number;
}

/**
 * Listens to completed batches and publishes a new rate limit for one stream. The stream tells it
 * how many of its own records went into each batch (`recordBatch`), since a batch's total count
 * mixes every input; Spark reads the same number from the batch's per-stream input info.
 */
export class RateController {
  private readonly counts = new Map<number, number>();
  private latest: number | undefined;

  constructor(
    private readonly estimator: PIDRateEstimator,
    private readonly publish: (rate: number) => void,
  ) {}

  /** The stream put `count` records into the batch at `batchTime`. */
  recordBatch(batchTime: number, count: number): void {
    this.counts.set(batchTime, count);
    // Bounded: batches that never complete (a stopped context) must not pile up.
    if (this.counts.size > 1000) {
      const oldest = this.counts.keys().next().value;
      if (oldest !== undefined) this.counts.delete(oldest);
    }
  }

  /** The last rate published, in records/s (undefined before the estimator has learnt one). */
  getLatestRate(): number | undefined {
    return this.latest;
  }

  onBatchCompleted(event: { batchInfo: CompletedBatch }): void {
    const info = event.batchInfo;
    const elements = this.counts.get(info.batchTime);
    if (elements === undefined) return;
    this.counts.delete(info.batchTime);
    const processingDelay = info.processingDelay;
    const schedulingDelay = info.schedulingDelay;
    if (processingDelay === undefined || schedulingDelay === undefined) return;
    const end = info.processingEndTime ?? info.batchTime + (info.totalDelay ?? schedulingDelay + processingDelay);
    const rate = this.estimator.compute(end, elements, processingDelay, schedulingDelay);
    if (rate === undefined) return;
    this.latest = rate;
    this.publish(rate);
  }
}

/**
 * Throttle for a source that can make its records later (the rate generator): a batch takes at most
 * what the pipeline processes in ~50% of a batch interval (the rest is left to the kernel: displays,
 * requests), learnt from its completed batches (time per record, from batches big enough to measure),
 * halved while batches wait behind each other. Unlike Spark's PID estimator it needs no steady state:
 * it never collapses to its minimum when a backlog built up before it had learnt, nor lets a backlog
 * through in one huge batch afterwards.
 */
export class ProcessingThrottle {
  /** Records in each generated batch not yet completed. */
  private readonly inFlight = new Map<number, number>();
  private msPerRecord: number | undefined;
  private behind = false;

  constructor(
    private readonly batchIntervalMs: number,
    /** Batches smaller than this do not teach the time per record (fixed costs would dominate). */
    private readonly minSample = 1000,
  ) {}

  /** The stream put `count` records into the batch at `batchTime`. */
  recordBatch(batchTime: number, count: number): void {
    this.inFlight.set(batchTime, count);
    if (this.inFlight.size > 1000) this.inFlight.delete(this.inFlight.keys().next().value as number);
  }

  /** Records the next batch may take (Infinity: no limit learnt, and nothing waiting). */
  limit(): number {
    if (this.msPerRecord === undefined) {
      // Not learnt yet: one full batch at a time, small ones while it runs.
      return this.inFlight.size > 0 ? this.minSample : Infinity;
    }
    const n = (0.5 * this.batchIntervalMs) / this.msPerRecord;
    return Math.max(this.minSample, Math.floor(this.behind ? n / 2 : n));
  }

  onBatchCompleted(event: { batchInfo: CompletedBatch }): void {
    const info = event.batchInfo;
    const n = this.inFlight.get(info.batchTime);
    if (n === undefined) return;
    for (const t of this.inFlight.keys()) if (t <= info.batchTime) this.inFlight.delete(t);
    this.behind = (info.schedulingDelay ?? 0) > 2 * this.batchIntervalMs;
    const ms = info.processingDelay;
    if (ms === undefined || n < this.minSample || !(ms > 0)) return;
    const sample = ms / n;
    this.msPerRecord = this.msPerRecord === undefined ? sample : 0.7 * this.msPerRecord + 0.3 * sample;
  }
}
