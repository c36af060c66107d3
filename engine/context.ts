// StreamingContext: the entry point of a streaming program. It owns the graph (what a batch is), the
// job generator (when batches happen) and the job scheduler (who runs them), and their lifecycle.

import { ManualClock, SystemClock, type Clock } from "./clock.js";
import { DStreamGraph } from "./graph.js";
import { JobGenerator } from "./scheduler.js";
import { JobScheduler, ListenerBus } from "./jobs.js";
import { IllegalArgumentError, StreamingContextStateError } from "./errors.js";
import type { StreamingListener, StreamingListenerEvent } from "./listener.js";
import { DStream, TransformedDStream, UnionDStream } from "./dstream.js";
import { RDD, SparkContext } from "./rdd.js";
import type { InputDStream } from "./sources/input.js";
import type { CheckpointOptions, RecoveryReport } from "./checkpoint/checkpointer.js";
import { QueueInputDStream } from "./sources/queue.js";
import { SocketInputDStream, type SocketStreamOptions } from "./sources/socket.js";
import { TextFileInputDStream, type TextFileStreamOptions } from "./sources/textfile.js";
import { ReceiverInputDStream, type Receiver, type ReceiverStreamOptions } from "./sources/receiver.js";
import { RateInputDStream, type RateStreamOptions } from "./sources/rate.js";
import type { GroupHandle, GroupOptions } from "./group/options.js";
import "./window.js";
import "./state.js";
import "./eventtime/index.js";
import "./async.js";

export type StreamingState = "initialized" | "active" | "stopped";

export interface StreamingContextOptions {
  clock?: "system" | "manual";
  /** Records per second each receiver may contribute (Spark's spark.streaming.receiver.maxRate). */
  maxRate?: number;
  /** Spark's PID rate estimator for receivers (spark.streaming.backpressure.enabled). */
  backpressure?: boolean;
  name?: string;
  /**
   * Run as one instance of a group over a partitioned log (engine/group): `{ name, coordinator: "etcd://HOST:PORT" }`.
   * Default: the group named by the STREAMBOOK_GROUP and STREAMBOOK_COORDINATOR environment variables, if set
   * (what `streambook run --instances N` and `--group NAME --coordinator URL` set); `false`: never a group.
   */
  group?: GroupOptions | false;
}

export interface StreamingConf {
  clock: "system" | "manual";
  maxRate?: number;
  backpressure: boolean;
  name: string;
  group?: GroupOptions;
}

/** What addSourcesStartedHook's hooks are told. */
export interface SourcesStartedInfo {
  zeroTime: number;
  /** The first batch time generated after the sources started. */
  firstBatch: number;
  /** The context was started before (this is a restart, or a source added while running). */
  restart: boolean;
  /** This start resumes a run recovered from a checkpoint. */
  recovered: boolean;
}

export interface StopOptions {
  /** Finish the data already received and the batches already generated before stopping (default false). */
  stopGracefully?: boolean;
  /** Also stop the SparkContext (default false here: a notebook keeps using sc). */
  stopSparkContext?: boolean;
}

/** Options for start(); the recovery fields are what engine/checkpoint uses. */
export interface StartOptions {
  /** Recovery: the zero time of the checkpointed run, so that windows keep their alignment. */
  zeroTime?: number;
  /** Recovery: the manual clock's time to resume at (the system clock ignores it). */
  resumeTime?: number;
  /** Recovery: batch times generated again, in order, before the regular ones (pending at the checkpoint, plus those missed while down). */
  pendingBatches?: number[];
}

/**
 * What engine/checkpoint plugs in: ssc.checkpoint(dir) and StreamingContext.getOrCreate(dir, setup).
 *
 * The hooks it uses (all data, no code):
 * - ssc.graph.statefulStreams(): streams with a stable `name` ({ name } option, else derived from the
 *   pipeline's shape, e.g. "updateStateByKey(map(flatMap(queue#0)))"), checkpointState() -> JSON and
 *   restoreState(json). updateStateByKey, mapWithState and reduceByKeyAndWindow with an inverse.
 * - ssc.graph.inputStreams(): sources with `name`, `id`, and optional checkpointPosition()/restorePosition().
 * - ssc.graph.zeroTime, ssc.lastCompletedBatchTime, ssc.pendingBatchTimes() (generated, not completed).
 * - ssc.addBatchCompletionHook(fn): awaited after each batch completes, before the next one starts.
 * - ssc.addBatchGenerationHook(fn): called synchronously just before a batch is generated.
 * - ssc.start({ zeroTime, resumeTime, pendingBatches }): generates the pending batches again, then goes on.
 * - DStream.restoreRDD(time, rdd) and ssc.graph.streamByName(name) for finer restores.
 */
export const checkpointSupport: {
  attach?: (ssc: StreamingContext, dir: string, options?: CheckpointOptions) => void;
  getOrCreate?: (dir: string, setup: () => StreamingContext) => StreamingContext;
  /** Awaited by stop(): every checkpoint asked for is on disk when stop() resolves. */
  onStop?: (ssc: StreamingContext) => Promise<void>;
} = {};

/** What a group runtime needs from the context it runs (engine/group plugs itself in through groupSupport). */
export interface GroupHooks {
  /** A user function or a part of the group failed; awaitTermination() rejects with the first such error. */
  reportError(e: unknown): void;
}

/**
 * What engine/group plugs in: a context created with `group` runs as one instance of that group. start()
 * joins it and runs this instance's share of the partitions; stop() leaves it.
 */
export const groupSupport: {
  fromEnvironment?: () => GroupOptions | undefined;
  start?: (ssc: StreamingContext, hooks: GroupHooks) => Promise<void>;
  stop?: (ssc: StreamingContext, options: { graceful: boolean }) => Promise<void>;
  handle?: (ssc: StreamingContext) => GroupHandle | undefined;
} = {};

let active: StreamingContext | undefined;
let constructingDetached = false;

/**
 * Internal (engine/group): a context that only hosts a task's copy of a pipeline. It is never started,
 * never becomes the active context, and creating it leaves the active one running.
 */
export function detachedContext(sc: SparkContext, batchDuration: number): StreamingContext {
  constructingDetached = true;
  try {
    return new StreamingContext(sc, batchDuration, { clock: "manual", group: false });
  } finally {
    constructingDetached = false;
  }
}

export class StreamingContext {
  readonly sc: SparkContext;
  readonly batchDuration: number;
  readonly conf: StreamingConf;
  readonly graph = new DStreamGraph();
  readonly clock: Clock;
  readonly listenerBus = new ListenerBus();
  readonly scheduler: JobScheduler;
  readonly generator: JobGenerator;
  /** Set by checkpoint(dir). */
  checkpointDir?: string;
  /** Set by getOrCreate: what was recovered (state, positions, pending batches, unmatched state). */
  recoveryReport?: RecoveryReport;
  /** Set by getOrCreate: the first start() generates the recovered batches again. */
  recoveredStart?: StartOptions;
  private _state: StreamingState = "initialized";
  private startPromise: Promise<void> = Promise.resolve();
  private readonly batchHooks: ((time: number) => void | Promise<void>)[] = [];
  private readonly beforeBatchHooks: ((time: number) => void)[] = [];
  private readonly generatedHooks: ((time: number) => Promise<void> | undefined)[] = [];
  private readonly startHooks: ((inputs: InputDStream<unknown>[], info: SourcesStartedInfo) => Promise<void> | void)[] = [];
  /** start() ran before: a later start is a restart. */
  private startedBefore = false;
  private error?: { error: unknown };
  private waiters: { resolve: (stopped: boolean) => void; reject: (e: unknown) => void }[] = [];
  private stopping?: Promise<void>;

  constructor(sc: SparkContext, batchDuration: number, options: StreamingContextOptions = {}) {
    if (!(batchDuration > 0) || !Number.isFinite(batchDuration)) {
      throw new IllegalArgumentError(`batchDuration must be a positive number of milliseconds (e.g. Seconds(1)), got ${batchDuration}`);
    }
    this.sc = sc;
    this.batchDuration = batchDuration;
    const clock = options.clock ?? "system";
    const group = options.group === false ? undefined : (options.group ?? groupSupport.fromEnvironment?.());
    this.conf = { clock, maxRate: options.maxRate, backpressure: options.backpressure ?? false, name: options.name ?? sc.appName, group };
    this.clock = clock === "manual" ? new ManualClock() : new SystemClock();
    // A re-run notebook cell makes a new context: the old one stops (a deliberate difference from Spark).
    if (active && !constructingDetached) void active.stop().catch(() => {});
    this.scheduler = new JobScheduler(this.listenerBus, {
      onError: (e) => this.reportError(e),
      afterBatch: (time) => this.afterBatch(time),
      refill: () => {
        if (this._state === "active" && !this.stopping) this.generator.tick();
      },
      completing: (info) => {
        const eventTime = this.graph.takeEventTime(info.batchTime);
        if (eventTime) info.eventTime = eventTime;
      },
    });
    this.generator = new JobGenerator(
      this.clock,
      batchDuration,
      this.graph,
      this.scheduler,
      (time) => {
        for (const h of this.beforeBatchHooks) h(time);
      },
      (e) => this.reportError(e),
      (time) => this.batchGenerated(time),
    );
  }

  /** Spark's name for sc. */
  get sparkContext(): SparkContext {
    return this.sc;
  }

  get state(): StreamingState {
    return this._state;
  }

  /** True from stop() until it resolves: sinks that retry a failing write give up then, so stop() is not held. */
  get isStopping(): boolean {
    return this.stopping !== undefined;
  }

  /** The active context of this process, if any. */
  static getActive(): StreamingContext | undefined {
    return active;
  }

  static getActiveOrCreate(create: () => StreamingContext): StreamingContext {
    return active ?? create();
  }

  /** Recovers from the checkpoint in `dir` if there is one, else calls setup (needs engine/checkpoint loaded). */
  static getOrCreate(dir: string, setup: () => StreamingContext): StreamingContext {
    if (!checkpointSupport.getOrCreate) {
      throw new StreamingContextStateError("StreamingContext.getOrCreate needs checkpoint support: import the engine through its index");
    }
    return checkpointSupport.getOrCreate(dir, setup);
  }

  /** This instance's view of its group (which instance it is, how many there are, who owns what), when in one. */
  get group(): GroupHandle | undefined {
    return groupSupport.handle?.(this);
  }

  /** The clock's time: wall time, or the manual clock's (which starts at 0). */
  now(): number {
    return this.clock.now();
  }

  // ---- sources ------------------------------------------------------------------------------

  /**
   * Each batch takes the next RDD (or array) of `queue`, or all of them with oneAtATime = false.
   * Once the queue is empty a batch gets defaultRDD, else an empty RDD; a `null` entry gives that
   * batch no RDD at all (as a Spark source that returns None). Overloads, so that an `any[]` queue
   * gives a DStream<any> rather than DStream<unknown>.
   */
  queueStream<T>(queue: Array<RDD<T> | T[] | null>, oneAtATime?: boolean, defaultRDD?: RDD<T> | T[]): DStream<T>;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- Spark's untyped queue: any flows to the records
  queueStream(queue: any[], oneAtATime?: boolean, defaultRDD?: unknown): DStream<any>;
  queueStream<T>(queue: Array<RDD<T> | T[] | null>, oneAtATime = true, defaultRDD?: RDD<T> | T[]): DStream<T> {
    return new QueueInputDStream<T>(this, queue, oneAtATime, defaultRDD);
  }

  socketTextStream(host: string, port: number, options?: SocketStreamOptions): SocketInputDStream {
    return new SocketInputDStream(this, host, port, options);
  }

  textFileStream(dir: string, options?: TextFileStreamOptions): TextFileInputDStream {
    return new TextFileInputDStream(this, dir, options);
  }

  receiverStream<T>(receiver: Receiver<T>, options?: ReceiverStreamOptions<T>): ReceiverInputDStream<T> {
    return new ReceiverInputDStream<T>(this, receiver, options);
  }

  rateStream(rowsPerSecond: number, options?: RateStreamOptions): RateInputDStream {
    return new RateInputDStream(this, rowsPerSecond, options);
  }

  /** Spark's ssc.union: a list of streams, or the streams as arguments. */
  union<T>(streams: DStream<T>[]): DStream<T>;
  union<T>(...streams: DStream<T>[]): DStream<T>;
  union<T>(...args: (DStream<T> | DStream<T>[])[]): DStream<T> {
    const streams = args.length === 1 && Array.isArray(args[0]) ? args[0] : (args as DStream<T>[]);
    return new UnionDStream<T>(this, streams);
  }

  /** fn gets the RDDs of all `streams` for each batch; each stream must have an RDD then (as in Spark). */
  transform<T>(streams: DStream<unknown>[], fn: (rdds: RDD<unknown>[], time: number) => RDD<T>): DStream<T> {
    return new TransformedDStream<T>(this, "transform", streams, fn);
  }

  // ---- configuration ------------------------------------------------------------------------

  /** Keep every stream's RDDs for at least `duration` ms (for slice() and ad-hoc queries). */
  remember(duration: number): void {
    if (!(duration > 0)) throw new IllegalArgumentError(`remember(${duration}): give a positive duration in ms`);
    this.graph.rememberDuration = duration;
  }

  /** Checkpoint to `dir` (the writer lives in engine/checkpoint). */
  checkpoint(dir: string, options?: CheckpointOptions): void {
    this.checkpointDir = dir;
    checkpointSupport.attach?.(this, dir, options);
  }

  addStreamingListener(listener: StreamingListener): void {
    this.listenerBus.add(listener);
  }

  removeStreamingListener(listener: StreamingListener): void {
    this.listenerBus.remove(listener);
  }

  /** Posts an event to every listener; a throwing listener never affects the others or the caller. */
  notifyListeners<K extends keyof StreamingListener>(kind: K, event: StreamingListenerEvent<K>): void {
    this.listenerBus.post(kind, event);
  }

  /** Hook: runs after each batch completes, before the next starts (checkpoint writers). Returns a remover. */
  addBatchCompletionHook(hook: (time: number) => void | Promise<void>): () => void {
    this.batchHooks.push(hook);
    return () => {
      const i = this.batchHooks.indexOf(hook);
      if (i >= 0) this.batchHooks.splice(i, 1);
    };
  }

  /** Hook: runs synchronously just before batch `time` is generated (write-ahead logs note the batch). */
  addBatchGenerationHook(hook: (time: number) => void): () => void {
    this.beforeBatchHooks.push(hook);
    return () => {
      const i = this.beforeBatchHooks.indexOf(hook);
      if (i >= 0) this.beforeBatchHooks.splice(i, 1);
    };
  }

  /**
   * Hook: runs synchronously right after batch `time` was generated, before any of its jobs; a promise
   * it returns (a log made durable) is awaited before the batch's jobs run. It must not reject.
   */
  addBatchGeneratedHook(hook: (time: number) => Promise<void> | undefined): () => void {
    this.generatedHooks.push(hook);
    return () => {
      const i = this.generatedHooks.indexOf(hook);
      if (i >= 0) this.generatedHooks.splice(i, 1);
    };
  }

  /**
   * Hook: awaited once sources have started (at start(), before its first batch is generated; and for a
   * source added while running, once it started), so their starting positions can be made durable.
   */
  addSourcesStartedHook(hook: (inputs: InputDStream<unknown>[], info: SourcesStartedInfo) => Promise<void> | void): () => void {
    this.startHooks.push(hook);
    return () => {
      const i = this.startHooks.indexOf(hook);
      if (i >= 0) this.startHooks.splice(i, 1);
    };
  }

  private batchGenerated(time: number): Promise<void> | undefined {
    let gates: Promise<void>[] | undefined;
    for (const h of this.generatedHooks) {
      try {
        const p = h(time);
        if (p) (gates ??= []).push(p);
      } catch (e) {
        this.reportError(e);
      }
    }
    if (!gates) return undefined;
    return (gates.length === 1 ? gates[0]! : Promise.all(gates).then(() => undefined)).catch((e: unknown) => this.reportError(e));
  }

  private async sourcesStarted(inputs: InputDStream<unknown>[], info: SourcesStartedInfo): Promise<void> {
    for (const h of this.startHooks.slice()) {
      try {
        await h(inputs, info);
      } catch (e) {
        this.reportError(e);
      }
    }
  }

  /** Batch times generated but not completed yet (for checkpoints). */
  pendingBatchTimes(): number[] {
    return this.scheduler.pendingBatchTimes();
  }

  /** Time of the latest completed batch. */
  get lastCompletedBatchTime(): number | undefined {
    return this.graph.lastCompletedTime;
  }

  // ---- lifecycle ----------------------------------------------------------------------------

  /**
   * Starts the sources and the batch clock. The returned promise resolves once the sources have
   * started (it never rejects: a source that fails to start is reported to awaitTermination).
   * A stopped context can be started again; its stateful streams keep their state.
   */
  start(options: StartOptions = {}): Promise<void> {
    if (this.recoveredStart) {
      options = { ...this.recoveredStart, ...options };
      this.recoveredStart = undefined;
    }
    if (this._state === "active") throw new StreamingContextStateError("start(): the StreamingContext is already started; stop() it first");
    if (this.stopping) throw new StreamingContextStateError("start(): the StreamingContext is stopping; await its stop() first");
    if (active && active !== this) void active.stop().catch(() => {});
    active = this;
    this._state = "active";
    this.error = undefined;
    if (this.conf.group) return this.startGroup();
    if (this.clock instanceof ManualClock && options.resumeTime !== undefined) this.clock.setTime(options.resumeTime);
    const now = this.clock.now();
    const pending = (options.pendingBatches ?? []).slice().sort((a, b) => a - b);
    let first = this.generator.firstBatchTime(now);
    const lastPending = pending[pending.length - 1];
    if (lastPending !== undefined && lastPending >= first) first = lastPending + this.batchDuration;
    // A recovered run keeps its zero time and the RDDs restored from the checkpoint.
    this.graph.reset(options.zeroTime ?? (pending[0] ?? first) - this.batchDuration, options.zeroTime === undefined);
    const started: SourcesStartedInfo = {
      zeroTime: this.graph.zeroTime as number,
      firstBatch: pending[0] ?? first,
      restart: this.startedBefore,
      recovered: options.zeroTime !== undefined,
    };
    this.startedBefore = true;
    this.notifyListeners("onStreamingStarted", { time: Date.now() });
    this.startPromise = (async () => {
      const inputs = this.graph.inputStreams();
      for (const input of inputs) {
        try {
          await input.start();
        } catch (e) {
          this.reportError(e);
        }
      }
      if (this._state !== "active") return;
      await this.sourcesStarted(inputs, started);
      if (this._state !== "active") return;
      this.generator.start(first, pending);
    })();
    return this.startPromise;
  }

  /**
   * A group instance: the group runtime drives the batches (one task per owned partition). When the group
   * cannot be joined (the coordinator unreachable, another pipeline under the same group name) the error
   * goes to awaitTermination(), as a source's would, and the context stops.
   */
  private startGroup(): Promise<void> {
    if (!groupSupport.start) {
      throw new StreamingContextStateError("this context is in a group but engine/group is not loaded: import the engine through its index");
    }
    this.notifyListeners("onStreamingStarted", { time: Date.now() });
    this.startPromise = groupSupport.start(this, { reportError: (e) => this.reportError(e) }).catch((e: unknown) => {
      this.reportError(e);
      this._state = "stopped";
      if (active === this) active = undefined;
      this.notifyListeners("onStreamingStopped", { time: Date.now() });
    });
    return this.startPromise;
  }

  /** Internal (InputDStream): a source created while the context runs is started at once. */
  inputAdded(input: InputDStream<unknown>): void {
    if (this._state !== "active") return;
    void this.startPromise.then(async () => {
      try {
        await input.start();
      } catch (e) {
        this.reportError(e);
      }
      const next = this.generator.upcomingTime;
      if (this._state === "active" && next !== undefined) {
        await this.sourcesStarted([input], { zeroTime: this.graph.zeroTime as number, firstBatch: next, restart: true, recovered: false });
      }
    });
  }

  /**
   * Manual clock: moves time forward by `ms`, runs every batch that falls due and resolves when their
   * jobs are done. (On a stopped context it only moves the clock.)
   */
  async advance(ms: number): Promise<void> {
    if (!(this.clock instanceof ManualClock)) {
      throw new StreamingContextStateError('advance(ms) needs the manual clock: new StreamingContext(sc, batch, { clock: "manual" })');
    }
    await this.startPromise;
    this.clock.advance(ms);
    if (this._state === "active") this.generator.catchUp();
    await this.scheduler.idle();
  }

  /**
   * Stops the batch clock and the sources. Graceful: the data already received goes into final
   * batches and every generated batch completes; otherwise queued batches are dropped and the
   * running one is abandoned at its next slice.
   */
  stop(options: StopOptions = {}): Promise<void> {
    if (this.stopping) return this.stopping;
    if (this._state !== "active") {
      this._state = "stopped";
      if (options.stopSparkContext) this.sc.stop();
      return Promise.resolve();
    }
    if (active === this) active = undefined;
    this.stopping = (async () => {
      await this.startPromise;
      if (this.conf.group) {
        await groupSupport.stop?.(this, { graceful: options.stopGracefully ?? false });
        this._state = "stopped";
        if (active === this) active = undefined;
        if (options.stopSparkContext) this.sc.stop();
        this.notifyListeners("onStreamingStopped", { time: Date.now() });
        for (const w of this.waiters.splice(0)) w.resolve(true);
        return;
      }
      const inputs = this.graph.inputStreams();
      for (const input of inputs) {
        try {
          await input.stop();
        } catch (e) {
          this.reportError(e);
        }
      }
      if (options.stopGracefully) {
        // Batches held back by overload first, then, as Spark's timer does, the next batch, then more
        // while sources still hold received data.
        this.generator.generateHeldBack();
        let t = this.generator.upcomingTime;
        let rounds = 0;
        while (t !== undefined && (rounds === 0 || inputs.some((i) => i.hasPendingData())) && rounds < 1000) {
          if (this.clock instanceof ManualClock && this.clock.now() < t) this.clock.setTime(t);
          this.generator.generate(t);
          t += this.batchDuration;
          rounds++;
        }
        this.generator.stop();
        await this.scheduler.idle();
      } else {
        this.generator.stop();
        await this.scheduler.cancel();
      }
      await checkpointSupport.onStop?.(this);
      this._state = "stopped";
      if (active === this) active = undefined;
      if (options.stopSparkContext) this.sc.stop();
      this.notifyListeners("onStreamingStopped", { time: Date.now() });
      for (const w of this.waiters.splice(0)) w.resolve(true);
    })().finally(() => (this.stopping = undefined));
    return this.stopping;
  }

  /** Resolves when the context stops; rejects with the first error a user function threw (as Spark). */
  awaitTermination(): Promise<void> {
    return this.awaitTerminationOrTimeout(Infinity).then(() => undefined);
  }

  /** true if the context stopped within `timeout` ms, false if not; rejects like awaitTermination. */
  awaitTerminationOrTimeout(timeout: number): Promise<boolean> {
    if (this.error) return Promise.reject(this.error.error);
    if (this._state === "stopped") return Promise.resolve(true);
    return new Promise<boolean>((resolve, reject) => {
      const w = {
        resolve: (v: boolean) => {
          if (timer) clearTimeout(timer);
          resolve(v);
        },
        reject: (e: unknown) => {
          if (timer) clearTimeout(timer);
          reject(e);
        },
      };
      const timer =
        Number.isFinite(timeout) && timeout >= 0
          ? setTimeout(() => {
              this.waiters = this.waiters.filter((x) => x !== w);
              resolve(false);
            }, timeout)
          : undefined;
      this.waiters.push(w);
    });
  }

  /** The first error since start, if a user function or a source failed. */
  get lastError(): unknown {
    return this.error?.error;
  }

  private reportError(e: unknown): void {
    if (!this.error) this.error = { error: e };
    for (const w of this.waiters.splice(0)) w.reject(e);
  }

  private async afterBatch(time: number): Promise<void> {
    this.graph.batchCompleted(time);
    for (const h of this.batchHooks.slice()) await h(time);
  }

  toString(): string {
    return `StreamingContext(${this.conf.name}, batch ${this.batchDuration} ms, ${this._state})`;
  }
}
