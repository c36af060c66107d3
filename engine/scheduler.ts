// JobGenerator: when batches happen. It turns clock ticks (a timer on the system clock, advance() on
// the manual clock) into batch times, asks the graph for each batch's jobs and hands them to the
// JobScheduler. Batch times are aligned to multiples of the batch interval; none is ever skipped.
// Under overload it generates a batch only while fewer than maxQueuedBatches wait: the batch times
// still to generate are a number, not queued data, so memory stays bounded while the scheduling delay
// grows (as Spark's does); their data waits in the sources, which hold back or pause.

import type { Clock } from "./clock.js";
import type { DStreamGraph, GeneratedJob } from "./graph.js";
import type { JobScheduler } from "./jobs.js";
import type { StreamInputInfo } from "./listener.js";

/** Generated batches that may wait behind the running one before generation holds back. */
export const DEFAULT_MAX_QUEUED_BATCHES = 8;

export class JobGenerator {
  private timer?: NodeJS.Timeout;
  /** The next batch time to generate. */
  private nextTime?: number;
  /** Batch times to generate before the clock's (recovery's pending batches), oldest first. */
  private readonly backlog: number[] = [];
  lastGeneratedTime?: number;
  /** Generated batches that may wait behind the running one; more wait ungenerated. */
  maxQueuedBatches = DEFAULT_MAX_QUEUED_BATCHES;

  constructor(
    private readonly clock: Clock,
    private readonly batchDuration: number,
    private readonly graph: DStreamGraph,
    private readonly scheduler: JobScheduler,
    /** Called for each batch time before its jobs are generated (e.g. receivers hand over their blocks). */
    private readonly beforeGenerate: (time: number) => void,
    private readonly onError: (e: unknown) => void,
    /** Called once a batch is generated; what it returns (a log becoming durable) must settle before the batch's jobs run. */
    private readonly afterGenerate: (time: number) => Promise<void> | undefined = () => undefined,
  ) {}

  /** The first batch time after `now`: the next multiple of the batch interval. */
  firstBatchTime(now: number): number {
    return Math.floor(now / this.batchDuration) * this.batchDuration + this.batchDuration;
  }

  /** Starts the clock at `firstTime`, after the `backlog` batch times (recovery), which go first. */
  start(firstTime: number, backlog: readonly number[] = []): void {
    this.nextTime = firstTime;
    this.backlog.push(...backlog);
    this.tick();
  }

  /** Stops generating; batch times not generated yet are dropped (a plain stop). */
  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.nextTime = undefined;
    this.backlog.length = 0;
  }

  /** A graceful stop: generates every batch time held back, regardless of the queue's bound. */
  generateHeldBack(): void {
    this.catchUp(Infinity);
  }

  /** The scheduler has room again: generate what is due, and wait for the clock if nothing is. */
  tick(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.catchUp();
    if (this.clock.kind === "system") this.schedule();
  }

  get running(): boolean {
    return this.nextTime !== undefined;
  }

  get upcomingTime(): number | undefined {
    return this.nextTime;
  }

  /** Generates the backlog, then every batch whose time is <= the clock's, while the scheduler's queue has room. */
  catchUp(maxQueued = this.maxQueuedBatches): void {
    while (this.scheduler.queuedBatches < maxQueued) {
      const t = this.backlog.shift();
      if (t !== undefined) {
        this.generate(t);
        continue;
      }
      if (this.nextTime === undefined || this.nextTime > this.clock.now()) return;
      const due = this.nextTime;
      this.nextTime = due + this.batchDuration;
      // Held back by overload: it was due at its batch time (so the scheduling delay says how late it runs).
      const late = this.clock.kind === "system" && this.clock.now() - due > this.batchDuration;
      this.generate(due, late ? due : undefined);
    }
  }

  /** Generates one batch now, whatever the clock says (recovery and graceful stop use it). */
  generate(time: number, dueAt?: number): void {
    let jobs: GeneratedJob[] = [];
    let inputs: Record<number, StreamInputInfo> = {};
    try {
      this.beforeGenerate(time);
      jobs = this.graph.generateJobs(time);
      inputs = this.graph.inputInfos(time);
    } catch (e) {
      // A user function that runs while the batch is defined (e.g. inside transform) fails the batch.
      jobs = [];
      inputs = {};
      this.onError(e);
    }
    this.lastGeneratedTime = time;
    this.scheduler.submit(time, jobs, inputs, this.afterGenerate(time), dueAt);
  }

  private schedule(): void {
    if (this.nextTime === undefined) return;
    const delay = this.nextTime - this.clock.now();
    // Due but held back: the scheduler calls tick() when a batch completes, no timer needed.
    if (delay <= 0 && this.scheduler.queuedBatches >= this.maxQueuedBatches) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.tick();
    }, Math.max(0, delay));
  }
}
