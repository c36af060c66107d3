// The engine's Presenter for a notebook: pprint and chart become live displays under the cell that
// defined them, each cell run remembers its outputs so a re-run disposes them, late logs become a display.
import type { ChartOptions, ChartRow, ChartSink, Presenter, PrintSink } from "../engine/presenter.js";
import { currentCell } from "./cell-context.js";
import { chartWorker, LiveChart } from "./charts.js";
import type { MimeBundle, OutputSink } from "./interpreter.js";
import { FINAL_AFTER_IDLE_MS, LiveDisplay } from "./notebook-display.js";
import { ArrayPrototypePush, KernelClearTimeout, KernelPromise, KernelSetTimeout, SafePromiseAll, SafePromiseRace, SafeSet } from "./primordials.js";

export { liveDisplayStats } from "./notebook-display.js";

/** Batches a pprint display keeps, newest last (Spark's console shows one; a notebook has room for a few). */
export const PRINT_BATCHES_KEPT = 3;
/** Lines a cell's live log display keeps. */
export const LOG_LINES_KEPT = 40;
/** Longest wait for a cell's pending display updates before its execute_reply. */
const SETTLE_TIMEOUT_MS = 5000;

/**
 * One execution of one cell: the live displays and output operations it defined. While the cell runs,
 * its output is ordinary; after its reply, stream output from its callbacks goes to a live log display.
 */
export class CellRun {
  readonly displays = new SafeSet<LiveDisplay>();
  private readonly disposers: (() => void)[] = [];
  private finishedFlag = false;
  private disposedFlag = false;
  private log: LiveDisplay | undefined;
  private logLines: string[] = [];
  /** Lines about something ongoing (a receiver's connection), shown after the log and replaced in place. */
  private readonly statusLines = new Map<string, string>();
  /** Set while a presenter call (pprint/chart) is defining an output, so outputDefined knows its kind. */
  presenterOutputPending = false;
  /** The cell defined an output whose callbacks may log (foreachRDD and the like). */
  definedLoggingOutput = false;

  constructor(
    readonly cellId: string | undefined,
    readonly executionCount: number,
    /** The frontend's sink for this execution (not routed through the log display). */
    readonly sink: OutputSink,
  ) {}

  get finished(): boolean {
    return this.finishedFlag;
  }

  get disposed(): boolean {
    return this.disposedFlag;
  }

  addDisplay(display: LiveDisplay): void {
    if (this.disposedFlag) void display.close();
    else this.displays.add(display);
  }

  addDisposer(dispose: () => void): void {
    if (this.disposedFlag) dispose();
    else this.disposers.push(dispose);
  }

  /**
   * Called at the end of a cell that defined a foreachRDD-like output on a context that may still run:
   * gives the cell a log display while its output still reaches frontends, so console.log from
   * later batches has somewhere to go. (A cell whose stream already stopped gets none: no empty output.)
   */
  ensureLogDisplay(): void {
    if (this.log !== undefined || this.finishedFlag || this.disposedFlag) return;
    this.log = new LiveDisplay(this.sink, { "text/plain": "" });
    this.displays.add(this.log);
  }

  /** Output that arrives after the reply: appended to the log display when the cell has one. */
  lateStream(name: "stdout" | "stderr", text: string): boolean {
    if (this.log === undefined || this.log.isClosed) return false;
    const lines = text.replace(/\n$/, "").split("\n");
    for (const line of lines) this.logLines.push(name === "stderr" ? `[stderr] ${line}` : line);
    if (this.logLines.length > LOG_LINES_KEPT) this.logLines.splice(0, this.logLines.length - LOG_LINES_KEPT);
    this.refreshLog();
    return true;
  }

  /**
   * Sets (or with undefined, clears) a status line under the cell, e.g. a receiver that cannot connect:
   * one line per key at the end of the log display, replaced in place rather than repeated. While the cell
   * runs it opens the log display if needed; afterwards it needs the one ensureLogDisplay() left.
   */
  setStatus(key: string, line: string | undefined): void {
    if (line === undefined) this.statusLines.delete(key);
    else this.statusLines.set(key, line);
    if (this.log === undefined) {
      if (line === undefined || this.finishedFlag || this.disposedFlag) return;
      this.log = new LiveDisplay(this.sink, { "text/plain": "" });
      this.displays.add(this.log);
    }
    if (!this.log.isClosed) this.refreshLog();
  }

  private refreshLog(): void {
    const text = [...this.logLines, ...this.statusLines.values()].join("\n");
    this.log?.update(() => ({ "text/plain": text }));
  }

  /** Output on behalf of this cell from outside its code (listeners): the log display once it returned. */
  report(name: "stdout" | "stderr", text: string): void {
    if (this.finishedFlag && this.lateStream(name, text)) return;
    this.sink.stream(name, text);
  }

  /** Renderings still under way while the cell runs (display.vegaLite's image), awaited by settle(). */
  private readonly held = new Set<Promise<unknown>>();

  holdReplyFor(work: Promise<unknown>): void {
    if (this.finishedFlag) return;
    const settled = work.then(() => undefined, () => undefined).finally(() => this.held.delete(settled));
    this.held.add(settled);
  }

  /** Sends pending updates (bounded), so the cell's final state is in its output before the reply. */
  async settle(): Promise<void> {
    // Kernel plumbing that runs after every cell: built-ins as captured at start (./primordials.ts).
    const flushes: Promise<unknown>[] = [];
    for (const d of this.displays) ArrayPrototypePush<Promise<unknown>>(flushes, d.flush());
    for (const work of this.held) ArrayPrototypePush(flushes, work);
    let timer: NodeJS.Timeout | undefined;
    await SafePromiseRace<unknown>([SafePromiseAll(flushes), new KernelPromise<void>((ok) => (timer = KernelSetTimeout(ok, SETTLE_TIMEOUT_MS)))]);
    KernelClearTimeout(timer);
  }

  markFinished(): void {
    this.finishedFlag = true;
  }

  /** The cell was re-run or the kernel is stopping: its outputs stop and its displays go quiet. */
  dispose(): void {
    if (this.disposedFlag) return;
    this.disposedFlag = true;
    for (const dispose of this.disposers.splice(0)) {
      try {
        dispose();
      } catch {
        // an output that cannot unregister is gone with its displays anyway
      }
    }
    for (const d of this.displays) void d.close();
    this.displays.clear();
  }
}

/** The sink a cell's code sees: plain while the cell runs, routed to the log display afterwards. */
export class CellSink implements OutputSink {
  constructor(
    private readonly inner: OutputSink,
    readonly run: CellRun,
  ) {}

  stream(name: "stdout" | "stderr", text: string): void {
    if (this.run.finished && this.run.lateStream(name, text)) return;
    this.inner.stream(name, text);
  }

  displayData(data: MimeBundle, metadata?: Record<string, unknown>, transient?: { display_id?: string }): void {
    this.inner.displayData(data, metadata, transient);
  }

  updateDisplayData(data: MimeBundle, metadata: Record<string, unknown>, transient: { display_id: string }): void {
    // A disposed run's displays belong to a replaced cell output: keep them quiet.
    if (this.run.disposed) return;
    this.inner.updateDisplayData(data, metadata, transient);
  }

  clearOutput(wait: boolean): void {
    this.inner.clearOutput(wait);
  }

  holdReplyFor(work: Promise<unknown>): void {
    this.run.holdReplyFor(work);
  }
}

/** The run of the cell whose code is running now (the defining cell when called during a definition). */
export function currentRun(): CellRun | undefined {
  const sink = currentCell()?.sink;
  return sink instanceof CellSink ? sink.run : undefined;
}

function reportDisplayError(sink: OutputSink, what: string): (err: unknown) => void {
  let reported = false;
  return (err) => {
    if (reported) return;
    reported = true;
    sink.stream("stderr", `${what} failed: ${err instanceof Error ? err.message : String(err)}\n`);
  };
}

export interface NotebookPresenterOptions {
  /** Minimum spacing of one display's updates (default 100 ms: about 10 per second). */
  minIntervalMs?: number;
  /** Where output goes when no cell is running (plain Node, housekeeping): the console presenter. */
  fallback: Presenter;
}

export class NotebookPresenter implements Presenter {
  constructor(private readonly options: NotebookPresenterOptions) {}

  openPrint(): PrintSink {
    const cell = currentCell();
    if (cell === undefined) return this.options.fallback.openPrint();
    const run = currentRun();
    if (run !== undefined) run.presenterOutputPending = true;
    const kept: string[] = [];
    const display = new LiveDisplay(
      cell.sink,
      { "text/plain": "(waiting for the first batch)" },
      this.options.minIntervalMs,
      reportDisplayError(cell.sink, "pprint display"),
    );
    run?.addDisplay(display);
    return {
      batch: (_time: number, text: string) => {
        kept.push(text.replace(/\n+$/, ""));
        if (kept.length > PRINT_BATCHES_KEPT) kept.shift();
        display.update(() => ({ "text/plain": kept.join("\n\n") }));
      },
    };
  }

  openChart(spec: Record<string, unknown>, options: ChartOptions): ChartSink {
    const cell = currentCell();
    if (cell === undefined) return this.options.fallback.openChart(spec, options);
    const run = currentRun();
    if (run !== undefined) run.presenterOutputPending = true;
    // Validates spec and options now, so a bad chart() call throws in the defining cell.
    const chart = new LiveChart(spec, options);
    // A chart will render: start the chart worker now, so its first SVG does not wait for vega to load.
    chartWorker().warm();
    const display = new LiveDisplay(
      cell.sink,
      { "application/vnd.vegalite.v5+json": chart.spec(), "text/plain": chart.summary() },
      this.options.minIntervalMs,
      reportDisplayError(cell.sink, "chart rendering"),
      // The last state gets a PNG (for nbconvert and GitHub); live updates only the cheaper SVG.
      { finalAfterIdleMs: FINAL_AFTER_IDLE_MS },
    );
    run?.addDisplay(display);
    // The first update brings the SVG (rendering is asynchronous) for frontends without Vega-Lite.
    const render = (final: boolean) => chart.output(final);
    display.update(render);
    return {
      batch: (time: number, rows: ChartRow[]) => {
        chart.batch(time, rows);
        display.update(render);
      },
    };
  }

  outputDefined(dispose: () => void): void {
    const run = currentRun();
    if (run === undefined) return;
    run.addDisposer(dispose);
    // pprint/chart opened a display just before; any other output may log from its callbacks.
    if (run.presenterOutputPending) run.presenterOutputPending = false;
    else run.definedLoggingOutput = true;
  }
}
