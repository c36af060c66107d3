// JobGenerator: when batches happen. It turns clock ticks (a timer on the system clock, advance() on
// the manual clock) into batch times, asks the graph for each batch's jobs and hands them to the
// JobScheduler. Batch times are aligned to multiples of the batch interval; none is ever skipped.

import type { Clock } from "./clock.js";
import type { DStreamGraph } from "./graph.js";
import type { JobScheduler } from "./jobs.js";

export class JobGenerator {
  private timer?: NodeJS.Timeout;
  /** The next batch time to generate. */
  private nextTime?: number;
  lastGeneratedTime?: number;

  constructor(
    private readonly clock: Clock,
    private readonly batchDuration: number,
    private readonly graph: DStreamGraph,
    private readonly scheduler: JobScheduler,
    /** Called for each batch time before its jobs are generated (e.g. receivers hand over their blocks). */
    private readonly beforeGenerate: (time: number) => void,
    private readonly onError: (e: unknown) => void,
  ) {}

  /** The first batch time after `now`: the next multiple of the batch interval. */
  firstBatchTime(now: number): number {
    return Math.floor(now / this.batchDuration) * this.batchDuration + this.batchDuration;
  }

  start(firstTime: number): void {
    this.nextTime = firstTime;
    if (this.clock.kind === "system") this.schedule();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.nextTime = undefined;
  }

  get running(): boolean {
    return this.nextTime !== undefined;
  }

  get upcomingTime(): number | undefined {
    return this.nextTime;
  }

  /** Generates every batch whose time is <= the clock's time. */
  catchUp(): void {
    while (this.nextTime !== undefined && this.nextTime <= this.clock.now()) {
      const t = this.nextTime;
      this.nextTime = t + this.batchDuration;
      this.generate(t);
    }
  }

  /** Generates one batch now, whatever the clock says (recovery and graceful stop use it). */
  generate(time: number): void {
    try {
      this.beforeGenerate(time);
      const jobs = this.graph.generateJobs(time);
      this.lastGeneratedTime = time;
      this.scheduler.submit(time, jobs, this.graph.inputInfos(time));
    } catch (e) {
      // A user function that runs while the batch is defined (e.g. inside transform) fails the batch.
      this.lastGeneratedTime = time;
      this.onError(e);
      this.scheduler.submit(time, [], {});
    }
  }

  private schedule(): void {
    if (this.nextTime === undefined) return;
    const delay = Math.max(0, this.nextTime - this.clock.now());
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.catchUp();
      this.schedule();
    }, delay);
  }
}
