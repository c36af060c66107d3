// StreamingContext.getOrCreate: a pipeline's code comes from setup() (the same or a changed one), its
// data from the checkpoint, matched by stable stream names; whatever cannot be matched is reported and kept.
import * as fs from "node:fs";
import * as path from "node:path";
import { StreamingContext, type StartOptions } from "../context.js";
import { Checkpointer, checkpointerOf, type CheckpointOptions, type RecoveryReport } from "./checkpointer.js";
import { CheckpointStore, type LoadedCheckpoint } from "./store.js";
import type { BatchLogContents } from "./batchlog.js";

/** The checkpoint's batch interval differs from the new pipeline's. */
export class CheckpointMismatchError extends Error {
  override name = "CheckpointMismatchError";
}

/**
 * The batch log describes batches whose checkpoint is gone (checkpoint files deleted while `batches/`
 * was kept): recovering from the log alone would silently miss what that checkpoint held.
 */
export class CheckpointMissingError extends Error {
  override name = "CheckpointMissingError";
}

const reports = new WeakMap<StreamingContext, RecoveryReport>();

/** What getOrCreate restored (undefined for a fresh context). */
export function recoveryReportOf(ssc: StreamingContext): RecoveryReport | undefined {
  return reports.get(ssc);
}

/**
 * Restore a freshly set-up context from a loaded checkpoint and the batch log: state and positions by
 * name, unmatched data kept for later checkpoints, and the start options that generate the pending
 * batches again. A pipeline without state resumes after the last batch the log says completed; one
 * with state runs again every batch after its checkpoint, as the state must see them.
 */
export function restore(
  ssc: StreamingContext,
  loaded: LoadedCheckpoint,
  cp: Checkpointer,
  log: BatchLogContents = cp.batchLog.recover(),
): { report: RecoveryReport; start: StartOptions } {
  const data = loaded.data;
  if (data.batchDuration !== ssc.batchDuration) {
    throw new CheckpointMismatchError(
      `checkpoint in ${cp.dir} was written with a batch interval of ${data.batchDuration} ms but the new context ` +
        `uses ${ssc.batchDuration} ms; use the same interval, or a new checkpoint directory to start fresh`,
    );
  }
  const graph = ssc.graph;
  const inputs = graph.inputStreams();
  const warnings = [...loaded.warnings];
  // Previously unmatched data is offered again: a later run may bring its stream back.
  const allState: Record<string, unknown> = { ...data.unmatched.state, ...data.state };
  const allPositions: Record<string, unknown> = { ...data.unmatched.positions, ...data.positions };
  const restoredState: string[] = [];
  const freshState: string[] = [];
  for (const s of graph.statefulStreams()) {
    if (Object.prototype.hasOwnProperty.call(allState, s.name)) {
      s.restoreState(allState[s.name]);
      restoredState.push(s.name);
      delete allState[s.name];
    } else freshState.push(s.name);
  }
  // Batches the log says completed after the checkpoint: without state to rebuild they need not run again.
  const checkpointed = data.lastCompletedBatch;
  let lastCompleted = checkpointed;
  let skipped: number[] = [];
  const completedAfter = log.completedTimes.filter((t) => checkpointed === undefined || t > checkpointed);
  const skippable = graph.statefulStreams().length === 0 && completedAfter.length > 0;
  if (skippable) {
    const last = completedAfter[completedAfter.length - 1]!;
    // Inputs that keep no selection (a queue, the rate generator) logged where they stood after each batch.
    const firstPending = log.generatedTimes.find((t) => t > last) ?? Infinity;
    const logged = log.positionsBefore(firstPending);
    for (const input of inputs) {
      if (!input.selectionFor && Object.prototype.hasOwnProperty.call(logged, input.name)) allPositions[input.name] = logged[input.name];
    }
  }
  const restoredPositions: string[] = [];
  for (const input of inputs) {
    if (Object.prototype.hasOwnProperty.call(allPositions, input.name) && input.restorePosition) {
      input.restorePosition(allPositions[input.name]);
      restoredPositions.push(input.name);
      delete allPositions[input.name];
    }
  }
  // Inputs with selections move past what the completed batches took (or, if one cannot, they run again).
  if (skippable && cp.batchLog.skip(completedAfter, inputs)) {
    skipped = completedAfter;
    lastCompleted = completedAfter[completedAfter.length - 1];
  }
  cp.unmatched = { state: allState, positions: allPositions };
  const unmatchedState = Object.keys(allState);
  const unmatchedPositions = Object.keys(allPositions);
  if (unmatchedState.length > 0 || unmatchedPositions.length > 0) {
    const names = [...unmatchedState.map((n) => `state "${n}"`), ...unmatchedPositions.map((n) => `position "${n}"`)];
    const msg =
      `checkpoint: the pipeline has no stream named for ${names.join(", ")}; that data is not restored but is ` +
      `kept in later checkpoints (name the stream with { name } to match it). New pipeline's stateful streams: ` +
      `${graph.statefulStreams().map((s) => s.name).join(", ") || "(none)"}`;
    warnings.push(msg);
    cp.warn(msg);
  }
  const logDir = path.join(cp.dir, "receivedBlocks");
  if (!cp.blockLog && fs.existsSync(logDir) && fs.readdirSync(logDir).some((n) => n.endsWith(".wal"))) {
    const msg = `checkpoint: ${logDir} holds a write-ahead log of received data, but this context has writeAheadLog off, so it is not replayed; pass { writeAheadLog: true } to ssc.checkpoint to replay it`;
    warnings.push(msg);
    cp.warn(msg);
  }
  const blocks = cp.blockLog?.recover(lastCompleted) ?? { batchTimes: [], replayed: {} };
  const pendingSet = new Set<number>(data.pendingBatches);
  for (const t of blocks.batchTimes) pendingSet.add(t);
  for (const t of log.generatedTimes) pendingSet.add(t);
  const pending = [...pendingSet].filter((t) => lastCompleted === undefined || t > lastCompleted).sort((a, b) => a - b);
  fillGaps(pending, lastCompleted ?? (pending.length > 0 ? pending[0]! - ssc.batchDuration : undefined), ssc.batchDuration);
  const replayedInputs = cp.batchLog.restore(pending, inputs);
  cp.batchLog.forgetRecovered();
  if (replayedInputs.unmatched.length > 0) {
    const msg =
      `checkpoint: the batch-input log records what ${replayedInputs.unmatched.map((n) => `"${n}"`).join(", ")} gave to batches ` +
      `pending at the crash, but the pipeline has no input stream of that name; those batches read their input afresh ` +
      `(name the stream with { name } to match it)`;
    warnings.push(msg);
    cp.warn(msg);
  }
  const unmatchedLogged = cp.blockLog?.restoreBatches(pending) ?? [];
  if (unmatchedLogged.length > 0) {
    const msg =
      `checkpoint: the write-ahead log holds received data for ${unmatchedLogged.map((n) => `"${n}"`).join(", ")}, ` +
      `but the pipeline has no receiver stream of that name; the data stays in the log for a later run (name the stream with { name } to match it)`;
    warnings.push(msg);
    cp.warn(msg);
  }
  const lastGenerated = Math.max(data.batchTime, lastCompleted ?? -Infinity, ...pending);
  const start: StartOptions = { zeroTime: data.zeroTime, resumeTime: lastGenerated, pendingBatches: pending };
  if (ssc.clock.kind === "system") {
    // As Spark: the batches that fell due while the program was down are generated too, so none is skipped.
    const now = ssc.now();
    let t = lastGenerated + ssc.batchDuration;
    let added = 0;
    while (t <= now && added < 10_000) {
      pending.push(t);
      t += ssc.batchDuration;
      added++;
    }
    if (t <= now) warnings.push(`checkpoint: more than 10000 batches fell due while down; generating only the first 10000`);
  }
  cp.resumeFrom(loaded);
  const report: RecoveryReport = {
    checkpointFile: loaded.file,
    checkpointTime: data.batchTime,
    lastCompletedBatch: lastCompleted,
    pendingBatches: pending.slice(),
    restoredState,
    restoredPositions,
    freshState,
    unmatchedState,
    unmatchedPositions,
    unmatchedReceivedData: unmatchedLogged,
    replayedRecords: blocks.replayed,
    replayedBatches: replayedInputs.batches,
    unmatchedBatchInputs: replayedInputs.unmatched,
    skippedBatches: skipped,
    warnings,
  };
  cp.recoveryReport = report;
  reports.set(ssc, report);
  // Readable as ssc.recoveryReport (a field the context may declare; set either way).
  (ssc as { recoveryReport?: RecoveryReport }).recoveryReport = report;
  return { report, start };
}

/**
 * Adds the batch times missing between `after` and the last pending one: with the manual clock nothing
 * else would generate them (recovery resumes the clock at the last pending batch).
 */
function fillGaps(pending: number[], after: number | undefined, step: number): void {
  const last = pending[pending.length - 1];
  if (after === undefined || last === undefined) return;
  const have = new Set(pending);
  let added = false;
  for (let t = after + step, n = 0; t < last && n < 10_000; t += step, n++) {
    if (!have.has(t)) {
      pending.push(t);
      added = true;
    }
  }
  if (added) pending.sort((a, b) => a - b);
}

/**
 * Spark's StreamingContext.getOrCreate: with a readable checkpoint in `dir`, setup() defines the pipeline
 * (its code) and the checkpoint restores its data; without one, setup()'s context is returned as is.
 * setup() should call ssc.checkpoint(dir); if it does not, the context is checkpointed to `dir` anyway.
 */
export function getOrCreate(dir: string, setup: () => StreamingContext, options: CheckpointOptions = {}): StreamingContext {
  const loaded = new CheckpointStore(dir, { onWarning: options.onWarning }).read();
  const ssc = setup();
  let cp = checkpointerOf(ssc);
  if (!cp || cp.dir !== new CheckpointStore(dir).dir) {
    ssc.checkpoint(dir);
    cp = checkpointerOf(ssc) ?? new Checkpointer(ssc, dir, options);
  }
  const log = cp.batchLog.recover();
  let from = loaded;
  if (!from && (!log.empty || (cp.blockLog && cp.blockLog.segments().length > 0))) {
    if (!log.empty && !log.fromFreshStart) {
      const first = log.generatedTimes[0] ?? log.completedTimes[0];
      throw new CheckpointMissingError(
        `checkpoint: ${cp.batchLog.dir} logs batches${first !== undefined ? ` from ${first} ms on` : ""}, but no checkpoint file in ` +
          `${cp.dir} holds the state and positions before them (were the checkpoint-*.sbcp files deleted?); recovering ` +
          `from the log alone would silently miss that data. Put the checkpoint files back, or delete ${cp.dir} to start fresh`,
      );
    }
    // A crash before the first checkpoint: no state to restore, but the batch log holds where the sources
    // started and every batch generated since (generated again from the first), the block log what was received.
    from = {
      file: "(no checkpoint yet: batch log and write-ahead log only)",
      warnings: [],
      data: {
        batchTime: 0,
        batchDuration: ssc.batchDuration,
        zeroTime: log.zeroTime,
        lastCompletedBatch: undefined,
        pendingBatches: [],
        graph: { inputs: [], stateful: [] },
        state: {},
        positions: log.startPositions,
        unmatched: { state: {}, positions: {} },
        writtenAt: new Date().toISOString(),
      },
    };
  }
  if (!from) return ssc;
  const { start } = restore(ssc, from, cp, log);
  // The recovered batches must be generated by the first start(). A context that declares
  // `recoveredStart` applies it itself; otherwise the first start() is wrapped once.
  if ("recoveredStart" in ssc) {
    (ssc as { recoveredStart?: StartOptions }).recoveredStart = start;
    return ssc;
  }
  const protoStart = StreamingContext.prototype.start;
  ssc.start = function (this: StreamingContext, o: StartOptions = {}): Promise<void> {
    delete (this as { start?: unknown }).start;
    return protoStart.call(this, { ...start, ...o });
  };
  return ssc;
}
