// JobScheduler: who runs batches. Job sets run one after another (Spark's default of one concurrent
// job), output operations in definition order; listeners hear every step through the ListenerBus.

import type { GeneratedJob } from "./graph.js";
import type { BatchInfo, OutputOperationInfo, StreamInputInfo, StreamingListener, StreamingListenerEvent } from "./listener.js";
import { CancelledError } from "./slicing.js";
import { errorMessage } from "./errors.js";

export class ListenerBus {
  private readonly listeners: StreamingListener[] = [];
  private warned = new WeakSet<StreamingListener>();

  add(l: StreamingListener): void {
    this.listeners.push(l);
  }

  remove(l: StreamingListener): void {
    const i = this.listeners.indexOf(l);
    if (i >= 0) this.listeners.splice(i, 1);
  }

  /** Calls each listener; one that throws is reported once on stderr and never stops the others. */
  post<K extends keyof StreamingListener>(kind: K, event: StreamingListenerEvent<K>): void {
    for (const l of this.listeners.slice()) {
      const fn = l[kind] as ((e: StreamingListenerEvent<K>) => void) | undefined;
      if (!fn) continue;
      try {
        fn.call(l, event);
      } catch (e) {
        if (!this.warned.has(l)) {
          this.warned.add(l);
          console.error(`streaming listener ${kind} threw (further errors of this listener are not shown): ${errorMessage(e)}`);
        }
      }
    }
  }
}

export interface JobSet {
  time: number;
  jobs: GeneratedJob[];
  info: BatchInfo;
  /** Settles when the batch may run its jobs (its input selection is durable); never rejects. */
  ready?: Promise<void>;
}

export interface JobSchedulerHooks {
  /** A user function failed: the context records it for awaitTermination. */
  onError(error: unknown): void;
  /** After a batch's jobs: forget old RDDs, write checkpoints. Awaited before the next batch starts. */
  afterBatch(time: number): Promise<void>;
  /** A batch left the queue: batches held back by overload may be generated now. */
  refill?(): void;
  /** Adds what operators reported during the batch (event-time progress) before listeners hear of it. */
  completing?(info: BatchInfo): void;
}

export class JobScheduler {
  private readonly queue: JobSet[] = [];
  private running?: JobSet;
  /** Fails the output operation running now, when its code can no longer finish. */
  private abandonRunning?: (reason: Error) => void;
  private loop?: Promise<void>;
  /** A drain loop is running (set synchronously, unlike `loop`). */
  private draining = false;
  private cancelled = false;

  constructor(
    private readonly bus: ListenerBus,
    private readonly hooks: JobSchedulerHooks,
  ) {}

  /** Generated batches waiting behind the running one. */
  get queuedBatches(): number {
    return this.queue.length;
  }

  /** `dueAt`: when the batch fell due, if generation was held back (its scheduling delay counts from then). */
  submit(time: number, jobs: GeneratedJob[], streamIdToInputInfo: Record<number, StreamInputInfo>, ready?: Promise<void>, dueAt?: number): void {
    const streamIdToNumRecords: Record<number, number> = {};
    for (const [id, input] of Object.entries(streamIdToInputInfo)) streamIdToNumRecords[Number(id)] = input.numRecords;
    const numRecords = Object.values(streamIdToNumRecords).reduce((a, b) => a + b, 0);
    const info: BatchInfo = { batchTime: time, numRecords, submissionTime: dueAt ?? Date.now(), streamIdToNumRecords, streamIdToInputInfo, outputOperationInfos: {} };
    this.queue.push({ time, jobs, info, ready });
    this.bus.post("onBatchSubmitted", { batchInfo: { ...info } });
    if (!this.draining) {
      // Set before drain() runs: it may submit more (refill) before its first await.
      this.draining = true;
      const loop: Promise<void> = this.drain()
        .catch((e) => {
          this.draining = false;
          this.hooks.onError(e);
        })
        .finally(() => {
          if (this.loop === loop) this.loop = undefined;
        });
      this.loop = loop;
    }
  }

  /** Batch times generated but not yet completed (the running one first). */
  pendingBatchTimes(): number[] {
    return [...(this.running ? [this.running.time] : []), ...this.queue.map((s) => s.time)];
  }

  /** Resolves when every submitted batch has completed. */
  async idle(): Promise<void> {
    while (this.loop) await this.loop;
  }

  /**
   * Fails the running output operation as if it had thrown, and goes on with the next: for code that was
   * stopped from outside (an interrupt in the notebook kernel) and so will never return. False if none runs.
   */
  abandonRunningJob(reason: Error): boolean {
    if (!this.abandonRunning) return false;
    this.abandonRunning(reason);
    this.abandonRunning = undefined;
    return true;
  }

  /** Drops queued batches and aborts the running one at its next slice boundary (non-graceful stop). */
  async cancel(): Promise<void> {
    this.cancelled = true;
    this.queue.length = 0;
    await this.idle();
    this.cancelled = false;
  }

  private async drain(): Promise<void> {
    for (;;) {
      const set = this.queue.shift();
      if (!set) {
        this.draining = false;
        return;
      }
      this.running = set;
      try {
        // Room in the queue: batches held back by overload are generated (before this one runs).
        if (!this.cancelled) this.hooks.refill?.();
        await this.runJobSet(set);
      } finally {
        this.running = undefined;
      }
      if (!this.cancelled) this.hooks.refill?.();
    }
  }

  private async runJobSet(set: JobSet): Promise<void> {
    // What the batch took is durable before any of its output runs (the log's fsync ran meanwhile).
    if (set.ready) await set.ready;
    const info = set.info;
    info.processingStartTime = Date.now();
    info.schedulingDelay = info.processingStartTime - info.submissionTime;
    this.bus.post("onBatchStarted", { batchInfo: { ...info } });
    const isCancelled = () => this.cancelled;
    // A batch abandoned by a plain stop is not completed: no completion event, no checkpoint through it.
    // It stays pending (in the batch log and in later checkpoints), so recovery runs it again whole.
    let abandoned = false;
    for (const job of set.jobs) {
      if (this.cancelled) {
        abandoned = true;
        break;
      }
      const op: OutputOperationInfo = { batchTime: set.time, id: job.outputId, name: job.name, description: job.description, startTime: Date.now() };
      this.bus.post("onOutputOperationStarted", { outputOperationInfo: { ...op } });
      try {
        const abandoned = new Promise<never>((_, reject) => (this.abandonRunning = reject));
        await Promise.race([job.run(isCancelled), abandoned]);
      } catch (e) {
        if (e instanceof CancelledError) {
          op.failureReason = e.message;
          abandoned = true;
        } else {
          op.failureReason = errorMessage(e);
          info.failureReason ??= op.failureReason;
          this.hooks.onError(e);
        }
      }
      this.abandonRunning = undefined;
      op.endTime = Date.now();
      op.duration = op.endTime - (op.startTime as number);
      (info.outputOperationInfos as Record<number, OutputOperationInfo>)[op.id] = op;
      this.bus.post("onOutputOperationCompleted", { outputOperationInfo: { ...op } });
    }
    if (abandoned) return;
    info.processingEndTime = Date.now();
    info.processingDelay = info.processingEndTime - info.processingStartTime;
    info.totalDelay = info.processingEndTime - info.submissionTime;
    this.hooks.completing?.(info);
    this.bus.post("onBatchCompleted", { batchInfo: { ...info } });
    try {
      await this.hooks.afterBatch(set.time);
    } catch (e) {
      this.hooks.onError(e);
    }
  }
}
