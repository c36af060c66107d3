// rateStream: a generator for demos, { timestamp, value } rows with value counting up from 0, at a
// rows-per-second rate that can change while it runs. Rows come from clock time, so the manual
// clock gives exactly rowsPerSecond × batch seconds rows per batch.

import type { StreamingContext } from "../context.js";
import type { RDD } from "../rdd.js";
import { IllegalArgumentError } from "../errors.js";
import { InputDStream } from "./input.js";
import { makeRDD } from "./rddof.js";

export interface RateRow {
  /** Clock time (ms) the row stands for, spread evenly over its batch interval. */
  timestamp: number;
  value: number;
}

export interface RateStreamOptions {
  name?: string;
}

export interface RatePosition {
  nextValue: number;
  /** Owed fraction of a row, in rows × 1000 (rate × ms). */
  owed: number;
  /** Clock time up to which rows were produced: batches generated again after recovery get the same rows. */
  lastTime?: number;
}

function checkRate(rowsPerSecond: number): number {
  if (!(Number.isFinite(rowsPerSecond) && rowsPerSecond >= 0)) {
    throw new IllegalArgumentError(`rateStream: rowsPerSecond must be a finite number >= 0, got ${rowsPerSecond}`);
  }
  return rowsPerSecond;
}

export class RateInputDStream extends InputDStream<RateRow> {
  private rate: number;
  private nextValue = 0;
  /** Rows owed but not yet emitted, scaled by 1000 (exact for integer rates and times). */
  private owed = 0;
  private lastTime: number | undefined;
  private running = false;
  private restored = false;

  constructor(ssc: StreamingContext, rowsPerSecond: number, options: RateStreamOptions = {}) {
    super(ssc, options.name !== undefined ? { name: options.name } : undefined);
    this.rate = checkRate(rowsPerSecond);
  }

  get rowsPerSecond(): number {
    return this.rate;
  }

  /** Changes the rate from now on; the time before the change still counts at the old rate. */
  setRate(rowsPerSecond: number): void {
    checkRate(rowsPerSecond);
    if (this.running && this.lastTime !== undefined) {
      const now = this.ssc.now();
      if (now > this.lastTime) {
        this.owed += this.rate * (now - this.lastTime);
        this.lastTime = now;
      }
    }
    this.rate = rowsPerSecond;
  }

  start(): void {
    this.running = true;
    // Time while stopped produces nothing; after recovery, rows continue from the checkpointed time.
    if (this.restored && this.lastTime !== undefined) this.restored = false;
    else this.lastTime = this.ssc.now();
  }

  stop(): void {
    this.running = false;
  }

  compute(time: number): RDD<RateRow> | undefined {
    const from = this.lastTime ?? time - this.ssc.batchDuration;
    const span = Math.max(0, time - from);
    this.owed += this.rate * span;
    this.lastTime = Math.max(from, time);
    // The epsilon absorbs float error of fractional rates (0.1 × 3 ≠ 0.3); integer rates are exact.
    const n = Math.floor(this.owed / 1000 + 1e-9);
    this.owed = Math.max(0, this.owed - n * 1000);
    const rows: RateRow[] = new Array(n);
    const start = time - span;
    for (let i = 0; i < n; i++) {
      rows[i] = { timestamp: span > 0 ? start + Math.round(((i + 1) * span) / n) : time, value: this.nextValue++ };
    }
    return makeRDD(this.ssc, rows);
  }

  checkpointPosition(): RatePosition {
    const p: RatePosition = { nextValue: this.nextValue, owed: this.owed };
    if (this.lastTime !== undefined) p.lastTime = this.lastTime;
    return p;
  }

  restorePosition(position: unknown): void {
    const p = position as Partial<RatePosition> | undefined;
    if (p && typeof p.nextValue === "number") this.nextValue = p.nextValue;
    if (p && typeof p.owed === "number") this.owed = p.owed;
    if (p && typeof p.lastTime === "number") {
      this.lastTime = p.lastTime;
      this.restored = true;
    }
  }
}
