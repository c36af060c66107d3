// The module whose exports every notebook has as globals (and the checker knows with their types):
// the engine's public face, with a StreamingContext that adds the notebook's status panel, ssc.ui().
import * as engine from "../engine/index.js";
import { formatTime } from "../engine/duration.js";
import { flushFinalRenderings } from "./notebook-display.js";
import { currentRun } from "./notebook-presenter.js";
import { watchReceiver } from "./receiver-status.js";
import { StatusPanel, type StatusPanelOptions } from "./status-panel.js";

export * from "../engine/index.js";
export { StatusPanel } from "./status-panel.js";
export type { StatusPanelOptions, StatusSummary } from "./status-panel.js";
export { GroupPanel, groupPanel } from "./group-panel.js";
export type { GroupPanelOptions, GroupStatusSource } from "./group-panel.js";

/** Contexts with a pending awaitTermination(): an interrupt stops them gracefully. */
const awaiting = new Map<engine.StreamingContext, number>();

function track<T>(ctx: engine.StreamingContext, wait: Promise<T>): Promise<T> {
  awaiting.set(ctx, (awaiting.get(ctx) ?? 0) + 1);
  const done = (): void => {
    const n = (awaiting.get(ctx) ?? 1) - 1;
    if (n <= 0) awaiting.delete(ctx);
    else awaiting.set(ctx, n);
  };
  wait.then(done, done);
  return wait;
}

/** Every notebook context, weakly: the binding asks which may still run batches. */
const created = new Set<WeakRef<engine.StreamingContext>>();

/** Contexts that are running or not started yet (their outputs may still produce late output). */
export function contextsNotStopped(): engine.StreamingContext[] {
  const out: engine.StreamingContext[] = [];
  for (const ref of created) {
    const ctx = ref.deref();
    if (ctx === undefined) created.delete(ref);
    else if (ctx.state !== "stopped") out.push(ctx);
  }
  return out;
}

/** The contexts a cell is waiting on right now (awaitTermination / awaitTerminationOrTimeout). */
export function contextsAwaited(): engine.StreamingContext[] {
  return [...awaiting.keys()];
}

/**
 * Spark's StreamingContext, plus what a notebook adds: `ui()` opens the status panel (Spark's
 * Streaming tab) under the current cell. Everything else is the engine's.
 */
export class StreamingContext extends engine.StreamingContext {
  constructor(...args: ConstructorParameters<typeof engine.StreamingContext>) {
    super(...args);
    created.add(new WeakRef(this));
  }

  /** As the engine's, typed as the notebook's context (setup() returns one), so the result has ui(). */
  static override getOrCreate(dir: string, setup: () => StreamingContext): StreamingContext {
    return engine.StreamingContext.getOrCreate(dir, setup) as StreamingContext;
  }

  /** A live panel under this cell: input rate, processing time and scheduling delay per batch, and a table. */
  ui(options?: StatusPanelOptions): StatusPanel {
    return StatusPanel.open(this, options);
  }

  private failureListener: engine.StreamingListener | undefined;

  /**
   * Starts as the engine does; a batch whose output operation fails is also reported under the cell
   * that started the context (its log display once the cell has returned), so errors are never silent.
   */
  override start(options?: engine.StartOptions): Promise<void> {
    const run = currentRun();
    if (this.failureListener !== undefined) this.removeStreamingListener(this.failureListener);
    this.failureListener = undefined;
    if (run !== undefined) {
      run.definedLoggingOutput = true;
      // A source's errors (an unknown topic, a broker down, skipped records) show under this cell too; a
      // retrying source repeats its message, which is shown once until the source is started again.
      const shown = new Map<string, string>();
      this.failureListener = {
        onOutputOperationCompleted: ({ outputOperationInfo: op }) => {
          if (op.failureReason === undefined || run.disposed) return;
          // The batch time as the Time: headers of pprint show it.
          run.report("stderr", `batch ${formatTime(op.batchTime)}: output operation ${op.id} (${op.name}) failed: ${op.failureReason}\n`);
        },
        onReceiverError: ({ receiverInfo: r }) => {
          const message = r.lastErrorMessage ?? r.lastError ?? "error";
          const key = `${r.streamId}\u0000${r.name}`;
          // Retry delays change from one report to the next: compare without the numbers.
          const gist = message.replace(/\d+/g, "#");
          if (run.disposed || shown.get(key) === gist) return;
          shown.set(key, gist);
          const detail = r.lastError && !message.includes(r.lastError.replace(/^\w+: /, "")) ? ` (${r.lastError})` : "";
          run.report("stderr", `source ${r.name}: ${message}${detail}\n`);
        },
        onReceiverStarted: ({ receiverInfo: r }) => {
          shown.delete(`${r.streamId}\u0000${r.name}`);
        },
        // Records a source had to drop are never lost silently (reports come at most once a second per stream).
        onRecordsDropped: ({ droppedInfo: d }) => {
          if (run.disposed) return;
          run.report("stderr", `stream ${d.name}: ${d.count} records dropped (${d.total} in all): ${d.reason}\n`);
        },
      };
      this.addStreamingListener(this.failureListener);
    }
    const started = super.start(options);
    // A group that cannot be joined stops the context; say why under the cell that started it.
    if (run !== undefined && this.conf.group) {
      void started.then(() => {
        const e = this.lastError;
        if (this.state === "stopped" && e !== undefined && !run.disposed) run.report("stderr", `${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}\n`);
      });
    }
    return started;
  }

  /** A source defined in a cell reports its receiver's failures (and retries) under that cell. */
  override inputAdded(input: engine.InputDStream<unknown>): void {
    super.inputAdded(input);
    const run = currentRun();
    const neverFails = input instanceof engine.QueueInputDStream || input instanceof engine.RateInputDStream;
    if (run !== undefined) watchReceiver(this, input.id, run, !neverFails);
  }

  /** Stops as the engine does; then its charts will not change again, so they get their last-state PNG now. */
  override async stop(options?: engine.StopOptions): Promise<void> {
    await super.stop(options);
    await flushFinalRenderings();
  }

  override awaitTermination(): Promise<void> {
    return track(this, super.awaitTermination());
  }

  override awaitTerminationOrTimeout(timeout: number): Promise<boolean> {
    return track(this, super.awaitTerminationOrTimeout(timeout));
  }
}
