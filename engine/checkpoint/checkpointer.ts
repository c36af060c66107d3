// Checkpointing in a running context: after a batch completes (and every `interval` of batch time) it
// snapshots the stateful streams' state, the source positions and the pending batches, and writes them.
import * as path from "node:path";
import type { SourcesStartedInfo, StreamingContext } from "../context.js";
import type { InputDStream } from "../sources/input.js";
import type { StreamingListener } from "../listener.js";
import { CheckpointStore, type LoadedCheckpoint } from "./store.js";
import { ColumnRows, encodeCheckpointSliced, type CheckpointData } from "./format.js";
import { CHUNK, runSliced, type Sliced } from "../slicing.js";
import { StateDStream } from "../state.js";
import type { StatefulDStream } from "../dstream.js";
import type { RDD } from "../rdd.js";
import { ReceivedBlockLog } from "./blocklog.js";
import { BatchInputLog } from "./batchlog.js";

export interface CheckpointOptions {
  /**
   * Batch time (ms) between checkpoints. Default: the smallest `stream.checkpoint(interval)` of a
   * stateful stream, else max(10 s, 5 batches) as in Spark.
   */
  interval?: number;
  /** Log every block a receiver stores (fsync'd) before it enters a batch, and replay it after a crash. */
  writeAheadLog?: boolean;
  /** Checkpoint files kept (at least 2). */
  keep?: number;
  /** Where warnings go (fallback to an older checkpoint, unmatched state); default console.warn. */
  onWarning?: (message: string) => void;
}

/** What recovery did, for `recoveryReport`: every piece of checkpointed data is accounted for here. */
export interface RecoveryReport {
  checkpointFile: string;
  /** The batch time of the checkpoint recovered from. */
  checkpointTime: number;
  lastCompletedBatch: number | undefined;
  /** Batch times generated again at start (pending at the checkpoint, or logged by the write-ahead log). */
  pendingBatches: number[];
  restoredState: string[];
  restoredPositions: string[];
  /** Stateful streams of the new pipeline with no checkpointed state: they start empty. */
  freshState: string[];
  /** Checkpointed state no stream of the new pipeline is named for: kept in later checkpoints, not restored. */
  unmatchedState: string[];
  unmatchedPositions: string[];
  /** Receiver streams with logged data but no stream of that name now: the data stays in the log. */
  unmatchedReceivedData: string[];
  /** Receiver records replayed from the write-ahead log, per stream. */
  replayedRecords: Record<string, number>;
  /** Pending batches generated again with exactly the input they took before the crash (the batch-input log). */
  replayedBatches: number[];
  /** Input streams with a logged batch selection but no stream of that name now: they read afresh. */
  unmatchedBatchInputs: string[];
  /**
   * Batches after the checkpoint that completed before the crash (the batch log says so) and are not run
   * again: a pipeline without state resumes after them, its sources moved past what they took.
   */
  skippedBatches: number[];
  /** Warnings: damaged newer checkpoints skipped, unmatched state. */
  warnings: string[];
}

const checkpointers = new WeakMap<StreamingContext, Checkpointer>();

/** The checkpointer ssc.checkpoint(dir) installed on `ssc`, if any. */
export function checkpointerOf(ssc: StreamingContext): Checkpointer | undefined {
  return checkpointers.get(ssc);
}

export class Checkpointer {
  readonly ssc: StreamingContext;
  readonly dir: string;
  readonly store: CheckpointStore;
  readonly blockLog: ReceivedBlockLog | undefined;
  /** Each generated batch's input selection, logged before its output runs (exactly-once replays). */
  readonly batchLog: BatchInputLog;
  private readonly keep: number;
  /** lastCompletedBatch of the durable checkpoints the store still keeps, oldest first. */
  private readonly durable: number[] = [];
  private readonly explicitInterval: number | undefined;
  private readonly onWarning: (message: string) => void;
  /** Reports a warning where this checkpointer's warnings go. */
  warn(message: string): void {
    this.onWarning(message);
  }
  /** Input positions captured right after each batch was generated, until that batch completes. */
  private readonly positionsAt = new Map<number, Record<string, unknown>>();
  private lastWrittenTime: number | undefined;
  /** Checkpointed data the current pipeline did not match: carried into every later checkpoint. */
  unmatched: CheckpointData["unmatched"] = { state: {}, positions: {} };
  recoveryReport: RecoveryReport | undefined;
  private inFlight: Promise<void> | undefined;
  /** A snapshot being copied (in slices, while the batch loop waits) before it is queued. */
  private snapshotting: Promise<void> | undefined;
  private queued: CheckpointData | undefined;
  private writeError: unknown;
  private readonly removers: (() => void)[] = [];
  private readonly listener: StreamingListener;
  /** Checkpoint files written, for tests and the benchmark. */
  written = 0;

  constructor(ssc: StreamingContext, dir: string, options: CheckpointOptions = {}) {
    this.ssc = ssc;
    this.dir = path.resolve(dir);
    this.explicitInterval = options.interval;
    if (options.interval !== undefined && !(options.interval > 0)) {
      throw new RangeError(`checkpoint interval must be a positive number of ms, got ${options.interval}`);
    }
    this.onWarning = options.onWarning ?? ((m) => console.warn(m));
    this.store = new CheckpointStore(this.dir, { keep: options.keep, onWarning: this.onWarning });
    this.blockLog = options.writeAheadLog ? new ReceivedBlockLog(path.join(this.dir, "receivedBlocks"), ssc) : undefined;
    this.batchLog = new BatchInputLog(path.join(this.dir, "batches"));
    this.keep = Math.max(2, options.keep ?? 2);
    this.listener = {
      onStreamingStarted: () => this.blockLog?.install(),
      onStreamingStopped: () => void this.flush().catch(() => {}),
    };
    ssc.addStreamingListener(this.listener);
    this.removers.push(() => ssc.removeStreamingListener(this.listener));
    this.removers.push(ssc.addBatchCompletionHook((time) => this.afterBatch(time)));
    this.removers.push(ssc.addBatchGeneratedHook((time) => this.batchGenerated(time)));
    this.removers.push(ssc.addSourcesStartedHook((inputs, info) => this.sourcesStarted(inputs, info)));
    if (this.blockLog) this.removers.push(ssc.addBatchGenerationHook((time) => this.blockLog?.install(time)));
    const previous = checkpointers.get(ssc);
    previous?.dispose();
    checkpointers.set(ssc, this);
    // checkpoint(dir) on a running context: where its sources stand now is where a recovery starts.
    if (ssc.state === "active" && ssc.generator.upcomingTime !== undefined) {
      void this.sourcesStarted(ssc.graph.inputStreams(), {
        zeroTime: ssc.graph.zeroTime ?? 0,
        firstBatch: ssc.generator.upcomingTime,
        restart: true,
        recovered: false,
      });
    }
  }

  /** Sources started: their positions go to the batch log, durably, before the first batch. */
  private async sourcesStarted(inputs: InputDStream<unknown>[], info: SourcesStartedInfo): Promise<void> {
    try {
      const fresh = !info.restart && !info.recovered && this.recoveryReport === undefined;
      await this.batchLog.started(inputs, { fresh, zeroTime: info.zeroTime, firstBatch: info.firstBatch, batchDuration: this.ssc.batchDuration });
    } catch (err) {
      this.onWarning(`checkpoint: could not log where the sources start in ${this.batchLog.dir}: ${(err as Error).message}; a crash before the first checkpoint would read them afresh`);
    }
  }

  /**
   * Batch `time` was generated and none of its jobs has run: the sources' positions now are exactly
   * "through `time`". Its metadata goes to the batch log; the batch's output waits until what it took
   * (its selection, the receivers' blocks) is durable.
   */
  private batchGenerated(time: number): Promise<void> | undefined {
    this.capturePositions(time);
    let gate: Promise<void> | undefined;
    try {
      gate = this.batchLog.generated(time, this.ssc.graph.inputStreams());
    } catch (err) {
      // The batch runs anyway; a crash before its checkpoint would then read its input afresh.
      this.onWarning(`checkpoint: could not log the input of batch ${time} in ${this.batchLog.dir}: ${(err as Error).message}`);
    }
    const blocks = this.blockLog && !this.blockLog.isSynced ? this.blockLog.sync() : undefined;
    const gates = [gate, blocks].filter((g): g is Promise<void> => g !== undefined);
    if (gates.length === 0) return undefined;
    return Promise.all(gates).then(
      () => undefined,
      (err: unknown) => this.onWarning(`checkpoint: could not make the input of batch ${time} durable in ${this.dir}: ${(err as Error).message}`),
    );
  }

  /** Batch time between checkpoints now in force. */
  get interval(): number {
    if (this.explicitInterval !== undefined) return this.explicitInterval;
    let fromStreams: number | undefined;
    for (const s of this.ssc.graph.statefulStreams()) {
      const d = s.checkpointDuration;
      if (d !== undefined && (fromStreams === undefined || d < fromStreams)) fromStreams = d;
    }
    return fromStreams ?? Math.max(10_000, 5 * this.ssc.batchDuration);
  }

  /** Removes the hooks (a second ssc.checkpoint(dir) call replaces this checkpointer). */
  dispose(): void {
    for (const r of this.removers.splice(0)) r();
    this.blockLog?.close();
    this.batchLog.close();
  }

  private capturePositions(time: number): void {
    const positions: Record<string, unknown> = {};
    for (const input of this.ssc.graph.inputStreams()) {
      const p = input.checkpointPosition?.();
      if (p !== undefined) positions[input.name] = p;
    }
    this.positionsAt.set(time, positions);
  }

  private isDue(time: number): boolean {
    const since = this.lastWrittenTime ?? this.ssc.graph.zeroTime ?? 0;
    return time - since >= this.interval;
  }

  private async afterBatch(time: number): Promise<void> {
    try {
      this.batchLog.completed(time);
    } catch (err) {
      this.onWarning(`checkpoint: could not log the completion of batch ${time} in ${this.batchLog.dir}: ${(err as Error).message}`);
    }
    if (this.isDue(time)) {
      // The batch loop awaits this hook, so the state stays as of `time` while it is copied in slices.
      this.lastWrittenTime = time;
      const taking = this.snapshotSliced(time).then((data) => this.enqueueData(data));
      this.snapshotting = taking;
      try {
        await taking;
      } finally {
        if (this.snapshotting === taking) this.snapshotting = undefined;
      }
    }
    for (const t of this.positionsAt.keys()) if (t <= time) this.positionsAt.delete(t);
  }

  /** The checkpoint as of completed batch `time` (state now is state through `time`). */
  snapshot(time: number): CheckpointData {
    const state: Record<string, unknown> = {};
    for (const s of this.ssc.graph.statefulStreams()) state[s.name] = s.checkpointState();
    return this.snapshotWith(time, state);
  }

  /** As snapshot(), copying large state in ~15 ms slices; nothing may update the state until it resolves. */
  private async snapshotSliced(time: number): Promise<CheckpointData> {
    const data = this.snapshotWith(time, {});
    for (const s of this.ssc.graph.statefulStreams()) data.state[s.name] = await runSliced(stateSliced(s));
    return data;
  }

  private snapshotWith(time: number, state: Record<string, unknown>): CheckpointData {
    const graph = this.ssc.graph;
    let positions = this.positionsAt.get(time);
    if (positions === undefined) {
      // Not captured (batch generated before this checkpointer existed): the current positions are the best known.
      this.capturePositions(time);
      positions = this.positionsAt.get(time)!;
    }
    return {
      batchTime: time,
      batchDuration: this.ssc.batchDuration,
      zeroTime: graph.zeroTime,
      lastCompletedBatch: graph.lastCompletedTime,
      pendingBatches: this.ssc.pendingBatchTimes().filter((t) => t > time),
      graph: { inputs: graph.inputStreams().map((s) => s.name), stateful: graph.statefulStreams().map((s) => s.name) },
      state,
      positions,
      unmatched: this.unmatched,
      writtenAt: new Date().toISOString(),
    };
  }

  private enqueue(time: number): void {
    this.lastWrittenTime = time;
    this.enqueueData(this.snapshot(time));
  }

  private enqueueData(data: CheckpointData): void {
    // The snapshot holds fresh entry arrays that later batches do not touch (the engine replaces state
    // values, it does not mutate them), so it stays as of its batch while it is encoded in slices and
    // written in the background, batches running meanwhile.
    // If encoding or writing falls behind, only the newest snapshot waits (older ones are moot).
    this.queued = data;
    if (!this.inFlight) this.inFlight = this.drain().finally(() => (this.inFlight = undefined));
  }

  private async drain(): Promise<void> {
    for (;;) {
      const job = this.queued;
      if (!job) return;
      this.queued = undefined;
      try {
        // Encoded in ~15 ms slices: 1M keys of state must not hold the event loop (kernel shell, displays).
        const bytes = await runSliced(encodeCheckpointSliced(job));
        await this.store.writeEncoded(job.batchTime, bytes);
        this.written++;
        // Only now is everything through this batch durable elsewhere: the log may forget it.
        const lastCompleted = job.lastCompletedBatch;
        if (lastCompleted !== undefined) this.blockLog?.checkpointed(lastCompleted);
        if (lastCompleted !== undefined) {
          // Batch selections are kept back to the oldest checkpoint kept, so a fallback replays exactly too.
          this.durable.push(lastCompleted);
          while (this.durable.length > this.keep) this.durable.shift();
          if (this.durable.length >= this.keep) this.batchLog.checkpointed(this.durable[0]!);
        }
        // Sources that acknowledge upstream (a Redis consumer group) may do so up to the durable position.
        for (const input of this.ssc.graph.inputStreams()) {
          const hook = (input as { onCheckpointDurable?: (position: unknown) => void }).onCheckpointDurable;
          if (hook && Object.prototype.hasOwnProperty.call(job.positions, input.name)) hook.call(input, job.positions[input.name]);
        }
      } catch (err) {
        this.writeError = err;
        this.onWarning(`checkpoint: could not write to ${this.dir}: ${(err as Error).message}; will retry at the next interval`);
      }
    }
  }

  /** Write a checkpoint of the latest completed batch now (if any) and wait until every write is durable. */
  async checkpointNow(): Promise<void> {
    const last = this.ssc.graph.lastCompletedTime;
    if (last !== undefined && last !== this.lastWrittenTime) this.enqueue(last);
    await this.flush();
  }

  /** Resolves when every checkpoint asked for so far is on disk. */
  async flush(): Promise<void> {
    while (this.snapshotting || this.inFlight) await (this.snapshotting ?? this.inFlight)?.catch(() => {});
    await this.batchLog.sync().catch(() => {});
  }

  /** The last write error, if the latest attempt failed. */
  get lastWriteError(): unknown {
    return this.writeError;
  }

  /** After recovery, the next checkpoint is due an interval after the recovered one. */
  resumeFrom(loaded: LoadedCheckpoint): void {
    this.lastWrittenTime = loaded.data.batchTime;
    if (loaded.data.lastCompletedBatch !== undefined) this.durable.push(loaded.data.lastCompletedBatch);
  }
}

/**
 * A stream's checkpointState(), for updateStateByKey copied a chunk of keys at a time (the one-piece
 * `[...map]` holds the loop ~300 ms per 1M keys). Iterates the live state: the caller keeps batches out.
 */
function* stateSliced(s: StatefulDStream<unknown, unknown>): Sliced<unknown> {
  // mapWithState, inverse windows and event windows copy themselves in slices.
  if (s.checkpointStateSliced) return yield* s.checkpointStateSliced();
  if (!(s instanceof StateDStream)) return s.checkpointState();
  // The same JSON as StateDStream.checkpointState(): { entries: [key, state][] }, held as two flat columns.
  const rdd = s.state() as RDD<[unknown, unknown]>;
  const m = yield* rdd.keyedGen();
  if (!m) return { entries: rdd.collect() };
  const keys = new Array<unknown>(m.size);
  const states = new Array<unknown>(m.size);
  let i = 0;
  for (const [k, v] of m.entries()) {
    keys[i] = k;
    states[i++] = v;
    if ((i & (CHUNK - 1)) === 0) yield;
  }
  return { entries: new ColumnRows([keys, states], i) };
}
