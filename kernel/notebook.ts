// The notebook binding: joins the engine and the kernel. It gives cells their pre-bound globals (sc, ssc,
// the engine's exports), installs the live-display Presenter, and wraps the interpreter so each cell run
// owns its outputs (a re-run disposes them), interrupts stop awaited contexts, and shutdown stops streams.
import { AsyncResource } from "node:async_hooks";
import * as path from "node:path";
import { presenter as currentPresenter, setPresenter, type Presenter } from "../engine/presenter.js";
import { renderPng, renderSvgInWorker, stopChartWorker } from "./charts.js";
import { setVegaLiteRenderer } from "./display.js";
import { createInterpreter, type Prelude, type StreambookInterpreter } from "./evaluate.js";
import type {
  CompleteResult,
  ExecuteContext,
  ExecuteOutcome,
  InspectResult,
  Interpreter,
  IsCompleteResult,
} from "./interpreter.js";
import { CellRun, CellSink, NotebookPresenter } from "./notebook-presenter.js";
import { SafeMap, withOriginals } from "./primordials.js";
import type * as PreludeModule from "./notebook-prelude.js";

export { CellRun, CellSink, NotebookPresenter } from "./notebook-presenter.js";

/** Batch interval of the pre-bound `ssc`, as in the PySpark shell examples. */
export const DEFAULT_BATCH_MS = 1000;
const PRELUDE_MODULE = path.join(__dirname, "notebook-prelude.js");

function preludeModule(): typeof PreludeModule {
  return require(PRELUDE_MODULE) as typeof PreludeModule;
}

export interface NotebookOptions {
  cwd: string;
  /** Minimum spacing of a live display's updates (default 100 ms). */
  minIntervalMs?: number;
  /** Passed to the interpreter (tests switch warm-up off). */
  warmup?: number | false;
  /** Install a SIGINT handler that interrupts the running cell (default true; off in in-process tests). */
  handleSigint?: boolean;
  /** Run cells under Node's SIGINT watchdog (default true); the kernel stops spinning code itself instead. */
  breakOnSigint?: boolean;
}

let foreachBound = false;

/**
 * foreachRDD callbacks run in the async context of the cell that defined them, not of whichever
 * cell started the context: console.log inside them then reaches the defining cell's log display.
 */
function bindForeachToDefiningCell(mod: typeof PreludeModule): void {
  if (foreachBound) return;
  foreachBound = true;
  const proto = mod.DStream.prototype as unknown as {
    foreachRDD: (this: unknown, fn: (...a: unknown[]) => unknown, ...rest: unknown[]) => unknown;
  };
  const original = proto.foreachRDD;
  proto.foreachRDD = function (this: unknown, fn: (...a: unknown[]) => unknown, ...rest: unknown[]) {
    return original.call(this, typeof fn === "function" ? AsyncResource.bind(fn) : fn, ...rest);
  };
}

/** The prelude for createInterpreter: engine exports as globals, `sc` and a lazy `ssc`, and shutdown. */
export function notebookPrelude(): Prelude {
  const typeOf = (name: string): string => `import(${JSON.stringify(PRELUDE_MODULE)}).${name}`;
  let sc: PreludeModule.SparkContext | undefined;
  const getSc = (): PreludeModule.SparkContext => (sc ??= new (preludeModule().SparkContext)());
  return {
    module: PRELUDE_MODULE,
    globals: {
      sc: { type: typeOf("SparkContext"), get: getSc },
      ssc: {
        type: typeOf("StreamingContext"),
        get: () => new (preludeModule().StreamingContext)(getSc(), DEFAULT_BATCH_MS),
      },
      // SQL over DuckDB; DuckDB itself loads at the first query, so a notebook without SQL never pays for it.
      spark: {
        type: typeOf("SparkSession"),
        get: () => preludeModule().SparkSession.builder().sparkContext(getSc()).getOrCreate(),
      },
    },
    shutdown: async () => {
      await stopActiveContext();
    },
  };
}

/** Stops the process's active context (its receivers close their sockets and files). */
async function stopActiveContext(): Promise<void> {
  const active = preludeModule().StreamingContext.getActive();
  if (active !== undefined && active.state === "active") await active.stop();
}

/**
 * Wraps the TypeScript interpreter with the notebook's duties around each cell. Every Interpreter
 * method is forwarded; execute, interrupt and shutdown do more.
 */
export class NotebookInterpreter implements Interpreter {
  /** The latest run of each frontend cell id: re-running that cell disposes it. */
  private readonly runs = new SafeMap<string, CellRun>();
  private running: CellRun | undefined;
  private readonly previousPresenter: Presenter;
  private readonly sigint = (): void => this.interrupt();
  private shutDown = false;
  /** A graceful stop an interrupt started, until it completes. */
  private stopping: Promise<unknown> | undefined;

  constructor(
    readonly inner: StreambookInterpreter,
    options: { minIntervalMs?: number; handleSigint?: boolean } = {},
  ) {
    this.previousPresenter = currentPresenter();
    setPresenter(new NotebookPresenter({ fallback: this.previousPresenter, minIntervalMs: options.minIntervalMs }));
    // display.vegaLite(spec) gets a PNG beside the spec, for classic Notebook, nbconvert and GitHub: a PNG,
    // not the SVG, since nbconvert prefers SVG and Debian 12's strips it to nothing.
    setVegaLiteRenderer(async (spec) => {
      const png = await renderPng(await renderSvgInWorker(spec as Record<string, unknown>));
      return { data: { "image/png": png.base64 }, metadata: { "image/png": { width: png.width, height: png.height } } };
    });
    bindForeachToDefiningCell(preludeModule());
    if (options.handleSigint !== false) process.on("SIGINT", this.sigint);
  }

  async execute(code: string, ctx: ExecuteContext): Promise<ExecuteOutcome> {
    const run = new CellRun(ctx.cellId, ctx.executionCount, ctx.sink);
    if (ctx.cellId !== undefined) {
      this.runs.get(ctx.cellId)?.dispose();
      this.runs.set(ctx.cellId, run);
    }
    const sink = new CellSink(ctx.sink, run);
    const wrapped: ExecuteContext = {
      sink,
      executionCount: ctx.executionCount,
      input: (prompt, password) => ctx.input(prompt, password),
      cellId: ctx.cellId,
      silent: ctx.silent,
    };
    this.running = run;
    try {
      // Checking and compiling happen before the cell's first await: with the built-ins they started with.
      return await withOriginals(() => this.inner.execute(code, wrapped));
    } finally {
      // The cell's live displays show their latest state before its reply (nbclient stops listening then).
      if (run.definedLoggingOutput && preludeModule().contextsNotStopped().length > 0) run.ensureLogDisplay();
      await run.settle();
      run.markFinished();
      if (this.running === run) this.running = undefined;
    }
  }

  evaluateExpressions(expressions: Record<string, string>): Promise<Record<string, unknown>> {
    return this.inner.evaluateExpressions(expressions);
  }

  complete(code: string, cursorPos: number): Promise<CompleteResult> {
    return withOriginals(() => this.inner.complete(code, cursorPos));
  }

  inspect(code: string, cursorPos: number, detailLevel: number): Promise<InspectResult> {
    return withOriginals(() => this.inner.inspect(code, cursorPos, detailLevel));
  }

  isComplete(code: string): IsCompleteResult {
    return withOriginals(() => this.inner.isComplete(code));
  }

  /**
   * While a cell awaits a context's termination, an interrupt stops that context gracefully and the
   * await resolves, so the cell ends normally; a second interrupt (or any other pending await)
   * abandons the cell as the interpreter does.
   */
  interrupt(): void {
    const awaited = preludeModule().contextsAwaited().filter((ctx) => ctx.state === "active");
    if (awaited.length === 0 || this.stopping !== undefined) {
      this.inner.interrupt();
      return;
    }
    this.running?.sink.stream("stderr", "Interrupted: stopping the StreamingContext gracefully (interrupt again to abandon the cell)\n");
    const stopping = Promise.all(awaited.map((ctx) => ctx.stop({ stopGracefully: true }).catch(() => {})));
    this.stopping = stopping;
    void stopping.finally(() => {
      if (this.stopping === stopping) this.stopping = undefined;
    });
  }

  /** A batch job cut off by a forced stop never completes: its context fails it and runs the next batch. */
  afterForcedStop(stopped: { engine: boolean }): void {
    if (!stopped.engine) return;
    const reason = new KeyboardInterruptError("the output operation's code was stopped by an interrupt; later batches run");
    for (const ctx of preludeModule().contextsNotStopped()) ctx.scheduler.abandonRunningJob(reason);
  }

  async shutdown(restart: boolean): Promise<void> {
    if (this.shutDown) return;
    this.shutDown = true;
    process.off("SIGINT", this.sigint);
    try {
      await this.inner.shutdown(restart); // calls the prelude's shutdown: stops the active context
    } finally {
      // Runs without a cell id are not kept: their streams stopped with the context above.
      for (const run of this.runs.values()) run.dispose();
      this.runs.clear();
      setPresenter(this.previousPresenter);
      // Ended here, not by the process's exit: a worker is never torn down while the process exits.
      await stopChartWorker();
    }
  }
}

/** Why an interrupted batch's output operation failed. */
export class KeyboardInterruptError extends Error {
  override name = "KeyboardInterrupt";
}

/** What main.ts runs: the TypeScript interpreter with the notebook's prelude and presenter. */
export function createNotebookInterpreter(options: NotebookOptions): NotebookInterpreter {
  const inner = createInterpreter({
    cwd: options.cwd,
    prelude: notebookPrelude(),
    handleSigint: false, // the wrapper's handler interrupts, so it can also stop an awaited context
    warmup: options.warmup,
    breakOnSigint: options.breakOnSigint,
  });
  return new NotebookInterpreter(inner, { minIntervalMs: options.minIntervalMs, handleSigint: options.handleSigint });
}
