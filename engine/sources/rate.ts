// rateStream: a generator for demos, { timestamp, value } rows with value counting up from 0, at a
// rows-per-second rate that can change while it runs. Rows come from clock time, so the manual
// clock gives exactly rowsPerSecond × batch seconds rows per batch.

import type { StreamingContext } from "../context.js";
import { RDD } from "../rdd.js";
import { IllegalArgumentError } from "../errors.js";
import { CHUNK, type Sliced } from "../slicing.js";
import { InputDStream } from "./input.js";
import { ProcessingThrottle } from "./ratecontrol.js";

export interface RateRow {
  /** Clock time (ms) the row stands for, spread evenly over its batch interval. */
  timestamp: number;
  value: number;
}

export interface RateStreamOptions {
  name?: string;
  /**
   * Rows one batch takes at most (default 1,000,000): past it the rows are owed to later batches, so a
   * rate the machine cannot keep up with never builds a batch too big for memory.
   */
  maxRowsPerBatch?: number;
  /**
   * Throttle to what the pipeline processes when it cannot keep up (default true, on the system
   * clock): a batch takes at most what is processed in about half a batch interval; rows not produced
   * yet are owed, not dropped, and come once it catches up. false produces rowsPerSecond regardless.
   */
  throttle?: boolean;
}

export const DEFAULT_MAX_ROWS_PER_BATCH = 1_000_000;

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
  private readonly maxRowsPerBatch: number;
  private readonly throttle: ProcessingThrottle | undefined;
  /** The latest batch's throttle limit, when it bound (rows per batch). */
  private throttledRows: number | undefined;

  constructor(ssc: StreamingContext, rowsPerSecond: number, options: RateStreamOptions = {}) {
    super(ssc, options.name !== undefined ? { name: options.name } : undefined);
    this.rate = checkRate(rowsPerSecond);
    const max = options.maxRowsPerBatch ?? DEFAULT_MAX_ROWS_PER_BATCH;
    if (!(max >= 1)) throw new IllegalArgumentError(`rateStream: maxRowsPerBatch must be >= 1, got ${max}`);
    this.maxRowsPerBatch = Math.floor(max);
    // Only against real time: a manual clock's batch interval says nothing of how long processing may take.
    if ((options.throttle ?? true) && ssc.clock.kind === "system") {
      this.throttle = new ProcessingThrottle(ssc.batchDuration);
      ssc.addStreamingListener(this.throttle);
    }
  }

  /** Rows per second the latest batch was throttled to (undefined: it was not throttled). */
  get throttledTo(): number | undefined {
    return this.throttledRows === undefined ? undefined : (this.throttledRows * 1000) / this.ssc.batchDuration;
  }

  /** Rows owed: due at the requested rate but not produced yet (throttled, or past maxRowsPerBatch). */
  get rowsOwed(): number {
    return Math.floor(this.owed / 1000);
  }

  /** The value the next row gets: rows produced so far. */
  get rowsProduced(): number {
    return this.nextValue;
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
    let n = Math.min(Math.floor(this.owed / 1000 + 1e-9), this.maxRowsPerBatch);
    // Under overload a batch takes what the pipeline processes in one interval; the rest stays owed.
    const limit = this.throttle?.limit() ?? Infinity;
    this.throttledRows = n > limit ? limit : undefined;
    if (n > limit) n = limit;
    this.throttle?.recordBatch(time, n);
    this.owed = Math.max(0, this.owed - n * 1000);
    const first = this.nextValue;
    this.nextValue += n;
    this.reportRecords(time, n);
    if (n === 0) return this.ssc.sc.emptyRDD<RateRow>();
    const start = time - span;
    // Rows are made when the batch runs, in slices: a batch waiting in the queue holds two numbers.
    return new RDD<RateRow>(this.ssc.sc, {
      gen: function* (): Sliced<RateRow[][]> {
        const rows: RateRow[] = new Array(n);
        for (let i = 0; i < n; i++) {
          rows[i] = { timestamp: span > 0 ? start + Math.round(((i + 1) * span) / n) : time, value: first + i };
          if ((i & (CHUNK - 1)) === CHUNK - 1) yield;
        }
        return [rows];
      },
    });
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
