// Receivers: the Receiver base class a custom source extends, and ReceiverInputDStream, which
// supervises one receiver (start, restart, stop, listener events) and turns what it stores into batches.

import type { StreamingContext } from "../context.js";
import type { ReceiverInfo } from "../listener.js";
import type { RDD } from "../rdd.js";
import { IllegalArgumentError, StreamingError, errorMessage } from "../errors.js";
import { InputDStream } from "./input.js";
import { BlockQueue, type BlockSlice, type BlockStore, type ReceivedBlock } from "./blocks.js";
import { PIDRateEstimator, RateController, type PIDRateEstimatorOptions } from "./ratecontrol.js";
import { makeRDD } from "./rddof.js";
import { estimateRecordSize } from "./sizes.js";

export type { BlockSlice, BlockStore, ReceivedBlock } from "./blocks.js";

/** A Receiver used before it was given to a stream (ssc.receiverStream(receiver)), or given to two. */
export class ReceiverNotAttachedError extends StreamingError {}

/** Spark's spark.streaming.receiverRestartDelay. */
export const DEFAULT_RESTART_DELAY_MS = 2000;

/** What a receiver calls on the stream that supervises it (internal). */
interface ReceiverHost<T> {
  readonly id: number;
  hostStore(items: readonly T[], single: boolean, waitForRoom?: boolean): Promise<void>;
  hostReportDropped(count: number, reason: string): void;
  hostRestart(reason: string, error: unknown, delayMs: number | undefined): void;
  hostReportError(message: string, error: unknown): void;
  hostStop(message: string, error: unknown): void;
  hostState(): ReceiverState;
  hostBuffered(): number;
  hostBufferFull(): boolean;
}

const ATTACH = Symbol("attach");

export type ReceiverState = "initialized" | "started" | "restarting" | "stopped";

/**
 * A custom source. Subclass it, start reading in onStart() (without blocking: use callbacks or an
 * async loop that checks isStopped()), release everything in onStop(), and hand records to
 * store(). Call restart(reason, error) when the source breaks, so the receiver is stopped and
 * started again after a delay; reportError() reports without restarting; stop() ends it for good.
 */
export abstract class Receiver<T> {
  /** Shown in ReceiverInfo; defaults to the class name. */
  name?: string;
  #host: ReceiverHost<T> | undefined;

  abstract onStart(): void | Promise<void>;
  abstract onStop(): void | Promise<void>;

  /** Internal: called by ReceiverInputDStream (a symbol, so no subclass member can clash with it). */
  [ATTACH](host: ReceiverHost<T>): void {
    if (this.#host && this.#host !== host) {
      throw new ReceiverNotAttachedError(`receiver ${this.#describe()} already belongs to stream ${this.#host.id}; create a new receiver for each receiverStream()`);
    }
    this.#host = host;
  }

  #need(): ReceiverHost<T> {
    if (!this.#host) {
      throw new ReceiverNotAttachedError(`receiver ${this.#describe()} is not attached to a stream: pass it to ssc.receiverStream(receiver) first`);
    }
    return this.#host;
  }

  #describe(): string {
    return this.name ?? this.constructor.name;
  }

  /**
   * Stores one record, or each record of an array (so a source of array-typed records stores
   * `[record]`). Single records gather into a block; an array is a block of its own.
   */
  store(data: T | readonly T[]): void {
    const host = this.#need();
    if (Array.isArray(data)) void host.hostStore(data as readonly T[], false).catch(() => {});
    else void host.hostStore([data as T], true).catch(() => {});
  }

  /**
   * Stores records as one block and resolves once the stream's block store (a write-ahead log,
   * when one is installed) holds them durably; rejects if it could not. A reliable receiver
   * acknowledges its source only after this resolves. The records reach a batch either way.
   * While the buffer is full it first waits for room (Spark blocks store()): nothing is dropped.
   */
  storeReliably(items: readonly T[]): Promise<void> {
    return this.#need().hostStore(items, false, true);
  }

  /** Reports records this receiver had to drop (shown under the cell with counts, and to listeners). */
  protected reportDropped(count: number, reason: string): void {
    this.#need().hostReportDropped(count, reason);
  }

  /** Stops the receiver and starts it again after `delayMs` (default 2 s), reporting `reason` as an error. */
  restart(reason: string, error?: unknown, delayMs?: number): void {
    this.#need().hostRestart(reason, error, delayMs);
  }

  /** Reports an error to the listeners (onReceiverError); the receiver keeps running. */
  reportError(message: string, error?: unknown): void {
    this.#need().hostReportError(message, error);
  }

  /** Stops the receiver for good (until the context is started again); the context runs on. */
  stop(message: string, error?: unknown): void {
    this.#need().hostStop(message, error);
  }

  isStarted(): boolean {
    return this.#host?.hostState() === "started";
  }

  /** True once stopped, and while waiting to be restarted: an async read loop should end then. */
  isStopped(): boolean {
    const s = this.#host?.hostState();
    return s === "stopped" || s === "restarting";
  }

  /** The id of the stream this receiver feeds (-1 before it is given to one). */
  get streamId(): number {
    return this.#host?.id ?? -1;
  }

  /** Records stored but not yet taken by a batch. */
  protected bufferedRecords(): number {
    return this.#host?.hostBuffered() ?? 0;
  }

  /**
   * True when the buffer is full: a rate limit holds several batches' worth back, or what is
   * buffered and in batches not yet done reaches maxBufferedBytes or maxBufferedRecords. A source
   * that can push back (a socket) should pause reading until onBufferDrained(); past twice the
   * bounds, store() drops records (and says so), so one that ignores this cannot exhaust memory.
   */
  protected isBufferFull(): boolean {
    return this.#host?.hostBufferFull() ?? false;
  }

  /** Called after a batch took records and the buffer is no longer full. */
  onBufferDrained(): void {}
}

export interface ReceiverStreamOptions<T = unknown> {
  name?: string;
  /** Records per second this receiver may contribute (a batch takes at most maxRate × batch seconds); <= 0 means no limit. Default: ssc.conf.maxRate. */
  maxRate?: number;
  /** Switch on Spark's PID rate estimator. Default: ssc.conf.backpressure. */
  backpressure?: boolean;
  /** With backpressure, the rate before the estimator has learnt one (Spark's backpressure.initialRate). */
  initialRate?: number;
  /** PID gains (Spark's defaults: 1.0, 0.2, 0.0, minRate 100). */
  pid?: PIDRateEstimatorOptions;
  /** Delay before a restart() without an explicit delay (default 2000 ms). */
  restartDelayMs?: number;
  /** Where blocks are made durable before they enter a batch (a write-ahead log). */
  blockStore?: BlockStore<T>;
  /** With a block store, single stored records are sealed into a block at least this often (default 200 ms, as Spark). */
  blockIntervalMs?: number;
  /**
   * Bound on the estimated bytes of records buffered or in batches not yet done (default 64 MiB):
   * at it the buffer is full (isBufferFull, storeReliably waits); at twice it store() drops records.
   */
  maxBufferedBytes?: number;
  /** The same bound in records (default 1,000,000). */
  maxBufferedRecords?: number;
}

export const DEFAULT_MAX_BUFFERED_BYTES = 64 * 1024 * 1024;
export const DEFAULT_MAX_BUFFERED_RECORDS = 1_000_000;
/** Drops are reported at most this often per stream (with the count since the last report). */
const DROP_REPORT_INTERVAL_MS = 1000;

interface OpenBlock<T> {
  time: number;
  items: T[];
}

/**
 * The stream of what one receiver stores. The batch at time T takes every block whose first record
 * was stored at or before T and that no earlier batch took; with a rate limit it takes at most
 * rate × batch seconds records and leaves the rest for later batches (nothing is dropped).
 */
export class ReceiverInputDStream<T> extends InputDStream<T> implements ReceiverHost<T> {
  readonly receiver: Receiver<T>;
  private readonly queue = new BlockQueue<T>();
  private open: OpenBlock<T> | undefined;
  private nextBlockId = 0;
  private blockStore: BlockStore<T> | undefined;
  private readonly blockIntervalMs: number;
  private sealTimer: NodeJS.Timeout | undefined;
  private pendingPuts = 0;
  private putChain: Promise<unknown> = Promise.resolve();
  private readonly replay = new Map<number, T[]>();
  /** Records allocated to batches at generation time and not yet read by compute(). */
  private readonly allocated = new Map<number, T[]>();
  private readonly maxBufferedBytes: number;
  private readonly maxBufferedRecords: number;
  /** Records and bytes in batches generated but not completed: they count against the bounds. */
  private readonly inFlight = new Map<number, { records: number; bytes: number }>();
  private inFlightRecords = 0;
  private inFlightBytes = 0;
  /** Estimated bytes per record of the latest block (for the open block's records). */
  private recordBytes = 64;
  /** storeReliably calls waiting for room. */
  private roomWaiters: (() => void)[] = [];
  private droppedTotal = 0;
  private dropPending = 0;
  private dropReason = "";
  private dropTimer: NodeJS.Timeout | undefined;

  private rstate: ReceiverState = "initialized";
  private generation = 0;
  private restartTimer: NodeJS.Timeout | undefined;
  private running = false;
  private readonly restartDelayMs: number;
  private lastErrorMessage: string | undefined;
  private lastError: string | undefined;
  private lastErrorTime: number | undefined;

  private maxRate: number | undefined;
  private estimatedRate: number | undefined;
  private rateCarry = 0;
  readonly rateController: RateController | undefined;

  constructor(ssc: StreamingContext, receiver: Receiver<T>, options: ReceiverStreamOptions<T> = {}) {
    super(ssc, options.name !== undefined ? { name: options.name } : undefined);
    this.receiver = receiver;
    receiver[ATTACH](this);
    this.blockStore = options.blockStore;
    this.blockIntervalMs = options.blockIntervalMs ?? 200;
    this.restartDelayMs = options.restartDelayMs ?? DEFAULT_RESTART_DELAY_MS;
    this.maxBufferedBytes = positiveOr(options.maxBufferedBytes, DEFAULT_MAX_BUFFERED_BYTES, "maxBufferedBytes");
    this.maxBufferedRecords = positiveOr(options.maxBufferedRecords, DEFAULT_MAX_BUFFERED_RECORDS, "maxBufferedRecords");
    const conf = ssc.conf;
    const maxRate = options.maxRate ?? conf.maxRate;
    this.maxRate = maxRate !== undefined && maxRate > 0 ? maxRate : undefined;
    if (options.backpressure ?? conf.backpressure ?? false) {
      if (options.initialRate !== undefined) {
        if (!(options.initialRate > 0)) throw new IllegalArgumentError(`initialRate must be > 0 records/s, got ${options.initialRate}`);
        this.estimatedRate = options.initialRate;
      }
      const estimator = new PIDRateEstimator(ssc.batchDuration, options.pid);
      this.rateController = new RateController(estimator, (rate) => {
        this.estimatedRate = rate;
      });
      ssc.addStreamingListener(this.rateController);
    }
    // As Spark's ReceiverTracker, blocks are allocated to a batch when it is generated, whether or
    // not an output reads this stream, so what nobody reads does not pile up.
    ssc.addBatchGenerationHook((time) => {
      this.allocate(time);
    });
    ssc.addBatchCompletionHook((time) => this.release(time));
  }

  // ---- rate limit ---------------------------------------------------------------------------

  /** The rate limit in records/s now in force (undefined: none): the PID estimate, capped by maxRate. */
  get rateLimit(): number | undefined {
    const a = this.maxRate;
    const b = this.estimatedRate;
    if (a === undefined) return b;
    if (b === undefined) return a;
    return Math.min(a, b);
  }

  /** Changes maxRate while running (<= 0 or undefined removes the limit). */
  setMaxRate(recordsPerSecond: number | undefined): void {
    this.maxRate = recordsPerSecond !== undefined && recordsPerSecond > 0 ? recordsPerSecond : undefined;
  }

  /** Records stored and not yet taken by a batch. */
  bufferedRecords(): number {
    return this.queue.size + (this.open?.items.length ?? 0);
  }

  /** Estimated bytes of the records stored and not yet taken by a batch. */
  bufferedBytes(): number {
    return this.queue.bytes + (this.open?.items.length ?? 0) * this.recordBytes;
  }

  /** Records dropped since the stream was created because a receiver ignored a full buffer (or dropped them itself). */
  get droppedRecords(): number {
    return this.droppedTotal;
  }

  /** Over the bounds by `factor`: 1 is full (push back), 2 is where store() drops. */
  private over(factor: number): boolean {
    return (
      this.bufferedRecords() + this.inFlightRecords >= factor * this.maxBufferedRecords ||
      this.bufferedBytes() + this.inFlightBytes >= factor * this.maxBufferedBytes
    );
  }

  /** Resolves once the buffer is no longer full. */
  private room(): Promise<void> {
    if (!this.hostBufferFull()) return Promise.resolve();
    return new Promise((resolve) => this.roomWaiters.push(resolve));
  }

  /** Batches up to `time` are done: their records no longer count against the bounds. */
  private release(time: number): void {
    for (const [t, f] of this.inFlight) {
      if (t > time) continue;
      this.inFlight.delete(t);
      this.inFlightRecords -= f.records;
      this.inFlightBytes -= f.bytes;
    }
    this.drained();
  }

  /** Tells the receiver, and storeReliably calls waiting, when the buffer has room again. */
  private drained(): void {
    if (this.hostBufferFull()) return;
    for (const w of this.roomWaiters.splice(0)) w();
    try {
      this.receiver.onBufferDrained();
    } catch (e) {
      this.hostReportError("onBufferDrained threw", e);
    }
  }

  hostReportDropped(count: number, reason: string): void {
    if (!(count > 0)) return;
    this.droppedTotal += count;
    this.dropPending += count;
    this.dropReason = reason;
    // The first drop is reported at once; more within the interval are summed into one report.
    if (this.dropTimer) return;
    this.flushDrops();
    this.dropTimer = setTimeout(() => {
      this.dropTimer = undefined;
      if (this.dropPending > 0) this.flushDrops();
    }, DROP_REPORT_INTERVAL_MS);
    this.dropTimer.unref();
  }

  private flushDrops(): void {
    const count = this.dropPending;
    if (count === 0) return;
    this.dropPending = 0;
    this.ssc.notifyListeners("onRecordsDropped", {
      droppedInfo: { streamId: this.id, name: this.name, count, total: this.droppedTotal, reason: this.dropReason, time: this.ssc.now() },
    });
  }

  private batchLimit(): number {
    const rate = this.rateLimit;
    if (rate === undefined) return Infinity;
    // Carry the fraction so that e.g. 1 record/s with 500 ms batches gives one record every other batch.
    const exact = (rate * this.ssc.batchDuration) / 1000 + this.rateCarry;
    const n = Math.floor(exact);
    this.rateCarry = exact - n;
    return n;
  }

  // ---- blocks -------------------------------------------------------------------------------

  /** Installs the block store (a write-ahead log) that every later block passes through. */
  setBlockStore(store: BlockStore<T> | undefined): void {
    this.blockStore = store;
  }

  /** Recovery: blocks received before a crash and not yet in a batch go first into the next batches. */
  restoreBlocks(blocks: readonly ReceivedBlock<T>[]): void {
    this.queue.unshift(blocks);
    for (const b of blocks) this.nextBlockId = Math.max(this.nextBlockId, b.id + 1);
  }

  /** Recovery: the batch at `batchTime` (generated before a crash) gets exactly these records when generated again. */
  restoreBatch(batchTime: number, items: readonly T[]): void {
    this.replay.set(batchTime, items.slice());
  }

  hostStore(items: readonly T[], single: boolean, waitForRoom = false): Promise<void> {
    if (waitForRoom && this.hostBufferFull()) return this.room().then(() => this.hostStore(items, single, true));
    if (this.over(2)) {
      // The receiver kept storing into a full buffer: memory stays bounded, and the loss is reported.
      this.hostReportDropped(
        items.length,
        `the buffer held twice its bound (${this.maxBufferedRecords} records or ${Math.round(this.maxBufferedBytes / 1048576)} MiB, ` +
          `counting batches not yet done) and the receiver kept storing; pause on isBufferFull() or use storeReliably()`,
      );
      return Promise.resolve();
    }
    if (single) {
      const now = this.ssc.now();
      if (!this.open) this.open = { time: now, items: [] };
      for (const item of items) this.open.items.push(item);
      if (this.blockStore && !this.sealTimer) {
        this.sealTimer = setTimeout(() => {
          this.sealTimer = undefined;
          this.sealOpen();
        }, this.blockIntervalMs);
        this.sealTimer.unref();
      }
      return Promise.resolve();
    }
    this.sealOpen();
    if (items.length === 0) return Promise.resolve();
    return this.enqueue(this.makeBlock(this.ssc.now(), Array.from(items)));
  }

  private makeBlock(time: number, items: T[]): ReceivedBlock<T> {
    return { id: this.nextBlockId++, streamId: this.id, time, items };
  }

  private push(block: ReceivedBlock<T>): void {
    const bytes = estimateRecordSize(block.items);
    if (bytes > 0) this.recordBytes = bytes;
    this.queue.push(block, bytes);
  }

  private sealOpen(): void {
    if (this.sealTimer) {
      clearTimeout(this.sealTimer);
      this.sealTimer = undefined;
    }
    const open = this.open;
    if (!open) return;
    this.open = undefined;
    void this.enqueue(this.makeBlock(open.time, open.items)).catch(() => {});
  }

  /** Every block passes here: through the block store (in order, even when put is async) into the queue. */
  private enqueue(block: ReceivedBlock<T>): Promise<void> {
    const store = this.blockStore;
    if (!store) {
      this.push(block);
      return Promise.resolve();
    }
    const done = () => {
      this.push(block);
    };
    const failed = (e: unknown) => {
      // The block stays in memory and reaches its batch; only its durability is lost.
      this.hostReportError(`could not store block ${block.id} of stream ${this.id} durably`, e);
      this.push(block);
      throw e;
    };
    if (this.pendingPuts === 0) {
      let result: void | Promise<void>;
      try {
        result = store.put(block);
      } catch (e) {
        try {
          failed(e);
        } catch {
          /* reported */
        }
        return Promise.reject(e);
      }
      if (!isThenable(result)) {
        done();
        return Promise.resolve();
      }
      return this.track(Promise.resolve(result).then(done, failed));
    }
    if (store.concurrentPuts) {
      // put() is called at once (a log writes in order, and one group commit covers many blocks);
      // blocks still enter the queue in order, each once its own put has settled.
      let settled: Promise<void>;
      try {
        settled = Promise.resolve(store.put(block));
      } catch (e) {
        settled = Promise.reject(e);
      }
      settled.catch(() => {}); // handled in order below
      return this.track(this.putChain.then(() => settled).then(done, failed));
    }
    return this.track(this.putChain.then(() => store.put(block)).then(done, failed));
  }

  private track(p: Promise<void>): Promise<void> {
    this.pendingPuts++;
    const settled = p.finally(() => {
      this.pendingPuts--;
    });
    this.putChain = settled.catch(() => {});
    return settled;
  }

  // ---- batches ------------------------------------------------------------------------------

  /** Takes the records of batch `time` out of the buffer (once per batch time). */
  private allocate(time: number): T[] {
    const had = this.allocated.get(time);
    if (had) return had;
    // Allocations no output read (this stream had no consumer at those times) are dropped, as in Spark.
    for (const t of this.allocated.keys()) if (t < time) this.allocated.delete(t);
    let items: T[];
    let bytes: number;
    const replayed = this.replay.get(time);
    if (replayed) {
      this.replay.delete(time);
      items = replayed;
      bytes = estimateRecordSize(items) * items.length;
    } else {
      if (this.open && this.open.time <= time) this.sealOpen();
      const taken = this.queue.take(time, this.batchLimit());
      items = taken.items;
      bytes = taken.bytes;
      if (taken.slices.length > 0) this.blockStore?.allocated?.(time, taken.slices);
    }
    this.allocated.set(time, items);
    if (items.length > 0) {
      this.inFlight.set(time, { records: items.length, bytes });
      this.inFlightRecords += items.length;
      this.inFlightBytes += bytes;
    }
    this.reportRecords(time, items.length);
    this.rateController?.recordBatch(time, items.length);
    this.drained();
    return items;
  }

  compute(time: number): RDD<T> | undefined {
    const items = this.allocate(time);
    this.allocated.delete(time);
    return makeRDD(this.ssc, items);
  }

  override hasPendingData(): boolean {
    return this.bufferedRecords() > 0;
  }

  hostBuffered(): number {
    return this.bufferedRecords();
  }

  hostBufferFull(): boolean {
    if (this.over(1)) return true;
    const rate = this.rateLimit;
    if (rate === undefined) return false;
    // Four batches' worth, and never fewer than 1000 records, so a slow limit still reads in chunks.
    return this.bufferedRecords() >= Math.max((4 * rate * this.ssc.batchDuration) / 1000, 1000);
  }

  // ---- receiver supervision -----------------------------------------------------------------

  async start(): Promise<void> {
    this.running = true;
    this.rateCarry = 0;
    await this.startReceiver();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.stopReceiver("Stopped by the streaming context", undefined);
    // What was stored stays buffered: a graceful stop or a later start still delivers it.
    this.sealOpen();
    if (this.dropTimer) clearTimeout(this.dropTimer);
    this.dropTimer = undefined;
    this.flushDrops();
  }

  hostState(): ReceiverState {
    return this.rstate;
  }

  private async startReceiver(): Promise<void> {
    const gen = ++this.generation;
    this.rstate = "started";
    try {
      await this.receiver.onStart();
    } catch (e) {
      if (gen === this.generation) this.hostRestart(`Error starting receiver ${this.id}`, e, undefined);
      return;
    }
    if (gen !== this.generation || this.rstate !== "started") return;
    this.notify("onReceiverStarted", true);
  }

  hostRestart(reason: string, error: unknown, delayMs: number | undefined): void {
    if (!this.running || this.rstate === "stopped" || this.rstate === "restarting") return;
    const wasStarted = this.rstate === "started";
    const gen = ++this.generation;
    this.rstate = "restarting";
    this.recordError(reason, error);
    this.notify("onReceiverError", false);
    const delay = delayMs ?? this.restartDelayMs;
    void (async () => {
      if (wasStarted) await this.safeOnStop();
      if (gen !== this.generation || !this.running) return;
      this.restartTimer = setTimeout(() => {
        this.restartTimer = undefined;
        if (gen !== this.generation || !this.running) return;
        void this.startReceiver();
      }, Math.max(0, delay));
    })();
  }

  hostReportError(message: string, error: unknown): void {
    this.recordError(message, error);
    this.notify("onReceiverError", this.rstate === "started");
  }

  hostStop(message: string, error: unknown): void {
    void this.stopReceiver(message, error);
  }

  private async stopReceiver(message: string, error: unknown): Promise<void> {
    if (this.restartTimer) {
      clearTimeout(this.restartTimer);
      this.restartTimer = undefined;
    }
    const before = this.rstate;
    if (before === "stopped" || before === "initialized") {
      this.rstate = before === "initialized" ? "initialized" : "stopped";
      return;
    }
    this.generation++;
    this.rstate = "stopped";
    if (error !== undefined) this.recordError(message, error);
    if (before === "started") await this.safeOnStop();
    this.notify("onReceiverStopped", false);
  }

  private async safeOnStop(): Promise<void> {
    try {
      await this.receiver.onStop();
    } catch (e) {
      this.recordError(`Error stopping receiver ${this.id}`, e);
      this.notify("onReceiverError", false);
    }
  }

  private recordError(message: string, error: unknown): void {
    this.lastErrorMessage = message;
    this.lastError = error === undefined ? "" : errorMessage(error);
    this.lastErrorTime = this.ssc.now();
  }

  /** The receiver as the listeners see it. */
  receiverInfo(active = this.rstate === "started"): ReceiverInfo {
    const info: ReceiverInfo = { streamId: this.id, name: this.receiver.name ?? this.receiver.constructor.name, active };
    if (this.lastErrorMessage !== undefined) {
      info.lastErrorMessage = this.lastErrorMessage;
      info.lastError = this.lastError ?? "";
      info.lastErrorTime = this.lastErrorTime ?? -1;
    }
    return info;
  }

  private notify(event: "onReceiverStarted" | "onReceiverError" | "onReceiverStopped", active: boolean): void {
    this.ssc.notifyListeners(event, { receiverInfo: this.receiverInfo(active) });
  }
}

function positiveOr(v: number | undefined, fallback: number, name: string): number {
  if (v === undefined) return fallback;
  if (!(v > 0)) throw new IllegalArgumentError(`${name} must be > 0, got ${v}`);
  return v;
}

function isThenable(v: unknown): v is PromiseLike<void> {
  return typeof v === "object" && v !== null && typeof (v as { then?: unknown }).then === "function";
}
