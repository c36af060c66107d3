// Charts in the notebook: the engine's ChartModel (rows across batches, the completed spec) rendered to SVG
// with vega (no canvas), and to PNG with resvg for a display's last state (nbconvert's HTML on Debian 12
// strips SVG, keeps PNG). Live charts render in one worker thread (kernel/chart-worker.ts), started on the
// first render: vega's work and garbage stay off the thread that answers the kernel's messages.

import * as fs from "node:fs";
import * as path from "node:path";
import { Worker } from "node:worker_threads";
import { ChartModel, isRecord, type VegaLiteSpec } from "../engine/chart.js";
import { KernelPromise, PromisePrototypeThen, SafeMap } from "./primordials.js";

export { ChartModel, ChartOptionsError, VEGA_LITE_SCHEMA, DEFAULT_MAX_ROWS, type VegaLiteSpec } from "../engine/chart.js";

/**
 * A chart's MIME bundle: JupyterLab and VS Code render the Vega-Lite; classic Notebook, nbconvert and
 * GitHub the image: the SVG while a chart is live, a PNG (base64) for its last state.
 */
export interface ChartBundle {
  "application/vnd.vegalite.v5+json": VegaLiteSpec;
  "image/svg+xml"?: string;
  "image/png"?: string;
  "text/plain": string;
  [mime: string]: unknown;
}

/** A rendered PNG: base64 data, and the size to show it at (it is drawn at PNG_SCALE times that, for sharp screens). */
export interface ChartPng {
  base64: string;
  width: number;
  height: number;
}

/** A chart's display: its bundle, and the PNG's display size as output metadata. */
export interface ChartOutput {
  data: ChartBundle;
  metadata: Record<string, unknown>;
}

export class ChartRenderError extends Error {
  override name = "ChartRenderError";
}

/** Renders a chart's specs to SVG, one after another, reusing what it compiled while the spec's shape holds. */
export interface SvgRenderer {
  svg(spec: VegaLiteSpec): Promise<string>;
  /** Frees what it keeps for the chart. */
  dispose(): void;
}

/** One live chart: feed it batches, ask it for the current spec, or its MIME bundle with the SVG rendered. */
export class LiveChart extends ChartModel {
  private readonly renderer: SvgRenderer = new WorkerChartRenderer();

  /** The MIME bundle with the SVG rendered (or without it, if rendering fails: the spec still shows). */
  async bundle(): Promise<ChartBundle> {
    const spec = this.spec();
    const svg = await this.renderer.svg(spec).catch(() => undefined);
    return chartBundle(spec, svg, this.summary());
  }

  /**
   * The display's content: while live, the spec and its SVG; for the last state (`final`), the spec and a
   * PNG in place of the SVG, since nbconvert prefers SVG over PNG and Debian 12's strips SVG to nothing.
   */
  async output(final = false): Promise<ChartOutput> {
    return renderOutput(this.renderer, this.spec(), this.summary(), final);
  }

  /** Renders the current spec (or `spec`) to SVG, reusing the compiled view while the spec's shape holds. */
  svg(spec: VegaLiteSpec = this.spec()): Promise<string> {
    return this.renderer.svg(spec);
  }
}

/**
 * Renders one chart again and again: the compiled vega view is reused while the spec's shape (everything
 * but the rows) stays the same, so a new batch costs a dataflow run and the SVG, not a compile and parse.
 */
export interface ChartRendererOptions {
  /** Renders of one compiled view before it is compiled afresh (default VIEW_RENDERS). */
  viewRenders?: number;
  /** Stale data-join entries a view keeps before cleaning them (default CLEAN_THRESHOLD; vega's own is 10,000). */
  cleanThreshold?: number;
}

export class ChartRenderer implements SvgRenderer {
  private cached: { shape: string; view: VegaView; renders: number } | undefined;
  private readonly viewRenders: number;
  private readonly cleanThreshold: number;

  constructor(options: ChartRendererOptions = {}) {
    this.viewRenders = options.viewRenders ?? VIEW_RENDERS;
    this.cleanThreshold = options.cleanThreshold ?? CLEAN_THRESHOLD;
  }

  async svg(spec: VegaLiteSpec): Promise<string> {
    const { data, ...rest } = spec;
    const rows = isRecord(data) && Array.isArray(data.values) ? data.values : [];
    const shape = JSON.stringify(rest);
    // A view is also rebuilt after VIEW_RENDERS renders: vega's dataflow keeps a little per tuple it ever saw
    // (a Relay's lookup table never shrinks), so a view reused forever grows without bound.
    if (this.cached?.shape !== shape || this.cached.renders >= this.viewRenders) {
      this.dispose();
      // resize: a reused view must redo its layout when new rows change the axis labels' widths.
      const autosize = rest.autosize ?? { type: "pad", resize: true };
      const view = await compileView({ ...rest, autosize, data: { name: ROWS } });
      // A reused view's data joins keep an entry per row and axis tick ever drawn until cleanThreshold of
      // them are stale: with vega's default (10,000) a live chart's heap climbs by megabytes. Clean early.
      (view as unknown as { cleanThreshold: number }).cleanThreshold = this.cleanThreshold;
      this.cached = { shape, view, renders: 0 };
    }
    this.cached.renders++;
    const view = this.cached.view;
    try {
      view.data(ROWS, rows);
      return await view.toSVG();
    } catch (err) {
      view.finalize();
      if (this.cached?.view === view) this.cached = undefined;
      throw new ChartRenderError(`could not render the chart to SVG: ${err instanceof Error ? err.message : String(err)}; check the Vega-Lite spec`);
    }
  }

  /** The spec with its SVG, or (final) with a PNG; without either if rendering fails, so the spec still shows. */
  output(spec: VegaLiteSpec, text: string, final: boolean): Promise<ChartOutput> {
    return renderOutput(this, spec, text, final);
  }

  /** Frees the compiled view. */
  dispose(): void {
    this.cached?.view.finalize();
    this.cached = undefined;
  }
}

const ROWS = "rows";

/** The spec with its SVG, or (final) with a PNG; without either if rendering fails, so the spec still shows. */
export async function renderOutput(renderer: SvgRenderer, spec: VegaLiteSpec, text: string, final: boolean): Promise<ChartOutput> {
  const svg = await renderer.svg(spec).catch(() => undefined);
  // resvg renders on libuv's thread pool: the PNG, too, stays off the main thread.
  const png = final && svg !== undefined ? await renderPng(svg).catch(() => undefined) : undefined;
  return chartOutput(spec, png !== undefined ? { png } : { svg }, text);
}

// --- the chart worker ------------------------------------------------------------------------

/** Main thread -> chart worker. */
export type ToChartWorker =
  | { kind: "render"; id: number; chart: number; spec: VegaLiteSpec }
  | { kind: "heap"; id: number }
  | { kind: "dispose"; chart: number };

/** Chart worker -> main thread: the answer to the request with the same id. */
export type FromChartWorker =
  | { kind: "rendered"; id: number; svg: string }
  | { kind: "failed"; id: number; message: string }
  | { kind: "heap"; id: number; heapUsed: number; charts: number };

type ChartWorkerRequest = { kind: "render"; chart: number; spec: VegaLiteSpec } | { kind: "heap" };

/** The chart worker stopped (crashed, ran out of its heap, or was shut down) with the render in flight. */
export class ChartWorkerError extends ChartRenderError {
  override name = "ChartWorkerError";
}

/** The worker's own heap limit: a runaway chart stops the worker (a new one starts), never the kernel. */
export const CHART_WORKER_HEAP_MB = 512;

/** A render in flight when its worker stops is sent again, to a new worker, this many times. */
export const CHART_WORKER_RETRIES = 1;

export interface ChartWorkerOptions {
  /** The worker's old-generation heap limit in MB (default CHART_WORKER_HEAP_MB). */
  heapMb?: number;
}

interface PendingRequest {
  message: ChartWorkerRequest & { id: number };
  resolve: (reply: FromChartWorker) => void;
  reject: (err: Error) => void;
  retries: number;
}

/** The built worker script: beside this file, or in dist/ when this file runs from its TypeScript source (vitest). */
function chartWorkerScript(): string {
  const beside = path.join(__dirname, "chart-worker.js");
  if (fs.existsSync(beside)) return beside;
  const built = path.resolve(__dirname, "..", "dist", "kernel", "chart-worker.js");
  if (fs.existsSync(built)) return built;
  throw new ChartWorkerError(`${beside} is missing: run "npm run build"`);
}

/**
 * One worker thread that renders charts to SVG, started by the first render (a kernel that never charts
 * never starts it). It keeps a process alive only while a render is in flight. If it stops, the renders
 * it had are sent to a new one (once); the next render after that starts a new one again.
 */
export class ChartWorker {
  private worker: Worker | undefined;
  private lastError: Error | undefined;
  private nextId = 1;
  private readonly pending = new SafeMap<number, PendingRequest>();
  /** Workers started so far (a restart after a crash counts). */
  starts = 0;
  /** Renders sent to a worker (a retry after a crash counts). */
  rendersSent = 0;

  constructor(private readonly options: ChartWorkerOptions = {}) {}

  /** The running worker thread, if any (diagnostics and tests). */
  get thread(): Worker | undefined {
    return this.worker;
  }

  /** Starts the worker (and its loading of vega) ahead of a first render, e.g. when a chart is defined. */
  warm(): void {
    try {
      this.start();
      if (this.pending.size === 0) this.worker?.unref();
    } catch {
      // No worker script: the first render says so.
    }
  }

  /** Renders `spec` with the worker's renderer for `chart` (its compiled view is reused while the shape holds). */
  async render(chart: number, spec: VegaLiteSpec): Promise<string> {
    const reply = await this.request({ kind: "render", chart, spec });
    if (reply.kind === "rendered") return reply.svg;
    throw new ChartRenderError(reply.kind === "failed" ? reply.message : `unexpected reply ${reply.kind} from the chart worker`);
  }

  /** The worker's heap in use after full collections, and how many charts it keeps a renderer for. */
  async heap(): Promise<{ heapUsed: number; charts: number }> {
    const reply = await this.request({ kind: "heap" });
    if (reply.kind !== "heap") throw new ChartWorkerError(`unexpected reply ${reply.kind} from the chart worker`);
    return { heapUsed: reply.heapUsed, charts: reply.charts };
  }

  /** Frees the worker's renderer for `chart`. */
  dispose(chart: number): void {
    this.worker?.postMessage({ kind: "dispose", chart } satisfies ToChartWorker);
  }

  /** Stops the worker; renders in flight fail with ChartWorkerError. A later render starts a new one. */
  async stop(): Promise<void> {
    const worker = this.worker;
    this.worker = undefined;
    this.failAll(new ChartWorkerError("the chart worker was stopped"));
    if (worker !== undefined) await worker.terminate();
  }

  private request(request: ChartWorkerRequest): Promise<FromChartWorker> {
    return new KernelPromise<FromChartWorker>((resolve, reject) => {
      const pending: PendingRequest = { message: { ...request, id: this.nextId++ }, resolve, reject, retries: 0 };
      this.pending.set(pending.message.id, pending);
      this.send(pending);
    });
  }

  private send(pending: PendingRequest): void {
    try {
      const worker = this.start();
      worker.ref();
      worker.postMessage(pending.message satisfies ToChartWorker);
      if (pending.message.kind === "render") this.rendersSent++;
    } catch (err) {
      // No worker script, or a spec that cannot be copied to another thread (a function in it, say).
      this.pending.delete(pending.message.id);
      this.idleIfDone();
      pending.reject(err instanceof ChartRenderError ? err : new ChartRenderError(`could not send the chart to its worker: ${err instanceof Error ? err.message : String(err)}`));
    }
  }

  private start(): Worker {
    if (this.worker !== undefined) return this.worker;
    // Its console goes to the kernel's own stdout and stderr (the kernel's log), never under a cell.
    const worker = new Worker(chartWorkerScript(), { resourceLimits: { maxOldGenerationSizeMb: this.options.heapMb ?? CHART_WORKER_HEAP_MB } });
    worker.on("message", (reply: FromChartWorker) => this.received(reply));
    worker.on("error", (err) => (this.lastError = err));
    worker.on("exit", (code) => this.exited(worker, code));
    this.worker = worker;
    this.lastError = undefined;
    this.starts++;
    return worker;
  }

  private received(reply: FromChartWorker): void {
    const pending = this.pending.get(reply.id);
    if (pending === undefined) return;
    this.pending.delete(reply.id);
    this.idleIfDone();
    pending.resolve(reply);
  }

  private idleIfDone(): void {
    if (this.pending.size === 0) this.worker?.unref();
  }

  private exited(worker: Worker, code: number): void {
    if (this.worker !== worker) return; // stopped on purpose
    this.worker = undefined;
    const why = this.lastError?.message ?? `exit code ${code}`;
    const requests = [...this.pending.values()];
    for (const pending of requests) {
      if (pending.retries < CHART_WORKER_RETRIES) {
        pending.retries++;
        this.send(pending);
      } else {
        this.pending.delete(pending.message.id);
        pending.reject(new ChartWorkerError(`the chart worker stopped (${why}); the chart keeps its spec, and its next update renders in a new worker`));
      }
    }
    this.idleIfDone();
  }

  private failAll(err: Error): void {
    const requests = [...this.pending.values()];
    this.pending.clear();
    for (const pending of requests) pending.reject(err);
  }
}

let sharedWorker: ChartWorker | undefined;

/** The process's chart worker (created here, started by its first render). */
export function chartWorker(): ChartWorker {
  return (sharedWorker ??= new ChartWorker());
}

/** Stops the process's chart worker if it runs (kernel shutdown). */
export async function stopChartWorker(): Promise<void> {
  await sharedWorker?.stop();
}

let nextChartKey = 1;
const forgetChart = new FinalizationRegistry<{ worker: ChartWorker; chart: number }>(({ worker, chart }) => worker.dispose(chart));

/**
 * A chart's renderer in the chart worker. One render at a time per chart: a spec asked for while one
 * renders waits, and a newer one replaces it, so only the latest is rendered and every caller since
 * gets that SVG (a live display wants the newest state, never a backlog).
 */
export class WorkerChartRenderer implements SvgRenderer {
  private readonly chart = nextChartKey++;
  private rendering = false;
  private next: { spec: VegaLiteSpec; svg: Promise<string>; resolve: (svg: string) => void; reject: (err: unknown) => void } | undefined;

  constructor(private readonly worker: ChartWorker = chartWorker()) {
    forgetChart.register(this, { worker, chart: this.chart }, this);
  }

  svg(spec: VegaLiteSpec): Promise<string> {
    if (!this.rendering) return this.run(spec);
    if (this.next !== undefined) {
      this.next.spec = spec;
      return this.next.svg;
    }
    let resolve!: (svg: string) => void;
    let reject!: (err: unknown) => void;
    const svg = new KernelPromise<string>((res, rej) => ((resolve = res), (reject = rej)));
    this.next = { spec, svg, resolve, reject };
    return svg;
  }

  output(spec: VegaLiteSpec, text: string, final: boolean): Promise<ChartOutput> {
    return renderOutput(this, spec, text, final);
  }

  dispose(): void {
    forgetChart.unregister(this);
    this.worker.dispose(this.chart);
  }

  private run(spec: VegaLiteSpec): Promise<string> {
    this.rendering = true;
    const svg = this.worker.render(this.chart, spec);
    const done = (): void => {
      this.rendering = false;
      const next = this.next;
      if (next === undefined) return;
      this.next = undefined;
      PromisePrototypeThen(this.run(next.spec), next.resolve, next.reject);
    };
    PromisePrototypeThen(svg, done, done);
    return svg;
  }
}

// --- rendering -------------------------------------------------------------------------------

async function loadModules() {
  // vega and vega-lite are ESM-only (one dependency uses top-level await), so require() cannot load them.
  const [vega, vl] = await Promise.all([import("vega"), import("vega-lite")]);
  return { vega, vl };
}

let modules: ReturnType<typeof loadModules> | undefined;

/** Loads vega and vega-lite once (about 130 ms); later calls share the same modules. */
export function loadVega(): ReturnType<typeof loadModules> {
  if (modules === undefined) {
    modules = loadModules();
    modules.catch(() => {
      modules = undefined; // let a later call try again
    });
  }
  return modules;
}

/** Stale data-join entries a reused view may keep before it drops them (vega's default is 10,000). */
export const CLEAN_THRESHOLD = 100;

/** Renders of one compiled view before it is compiled afresh: one compile (tens of ms) per ~20 s at 10 updates/s. */
export const VIEW_RENDERS = 200;

type VegaView = InstanceType<Awaited<ReturnType<typeof loadModules>>["vega"]["View"]>;

async function compileView(spec: VegaLiteSpec): Promise<VegaView> {
  const { vega, vl } = await loadVega();
  try {
    // Quiet loggers: a compile warning must not land as stderr in whichever cell runs at the time.
    const quiet = vega.logger(vega.None);
    const compiled = vl.compile(spec as unknown as Parameters<typeof vl.compile>[0], { logger: quiet }).spec;
    return new vega.View(vega.parse(compiled), { renderer: "none", logLevel: vega.None });
  } catch (err) {
    throw new ChartRenderError(`could not compile the chart: ${err instanceof Error ? err.message : String(err)}; check the Vega-Lite spec`);
  }
}

/** Renders a complete Vega-Lite spec to an SVG string, headless (renderer "none", no canvas package). */
export async function renderSvg(spec: VegaLiteSpec): Promise<string> {
  const view = await compileView(spec);
  try {
    return await view.toSVG();
  } catch (err) {
    throw new ChartRenderError(`could not render the chart to SVG: ${err instanceof Error ? err.message : String(err)}; check the Vega-Lite spec`);
  } finally {
    view.finalize();
  }
}

/** Renders a complete Vega-Lite spec to an SVG string in the chart worker (one spec, nothing kept). */
export async function renderSvgInWorker(spec: VegaLiteSpec): Promise<string> {
  const renderer = new WorkerChartRenderer();
  try {
    return await renderer.svg(spec);
  } finally {
    renderer.dispose();
  }
}

/** The PNG is drawn at this many pixels per CSS pixel, and shown at the SVG's size. */
export const PNG_SCALE = 2;

/** Fonts resvg reads (vega's charts ask for sans-serif): Debian's Liberation Sans or DejaVu Sans. */
const FONT_FILES = [
  "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
  "/usr/share/fonts/truetype/liberation/LiberationSans-Bold.ttf",
  "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
  "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
];

type ResvgModule = typeof import("@resvg/resvg-js");
let resvg: ResvgModule | undefined;
let fontOptions: NonNullable<import("@resvg/resvg-js").ResvgRenderOptions["font"]> | undefined;

/**
 * Renders an SVG to PNG with resvg (a native addon shipped in npm packages: no canvas, no browser), off the
 * event loop. Loaded on first use, so a kernel that never renders a PNG pays nothing.
 */
export async function renderPng(svg: string): Promise<ChartPng> {
  resvg ??= require("@resvg/resvg-js") as ResvgModule;
  if (fontOptions === undefined) {
    const files = FONT_FILES.filter((f) => fs.existsSync(f));
    const family = files.some((f) => f.includes("Liberation")) ? "Liberation Sans" : "DejaVu Sans";
    fontOptions = files.length > 0
      ? { loadSystemFonts: false, fontFiles: files, defaultFontFamily: family, sansSerifFamily: family }
      : { loadSystemFonts: true };
  }
  try {
    const image = await resvg.renderAsync(svg, { fitTo: { mode: "zoom", value: PNG_SCALE }, background: "white", font: fontOptions });
    return { base64: image.asPng().toString("base64"), width: image.width / PNG_SCALE, height: image.height / PNG_SCALE };
  } catch (err) {
    throw new ChartRenderError(`could not render the chart to PNG: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** The display of a chart with an SVG or a PNG beside the spec; a PNG gets its display size as metadata. */
export function chartOutput(spec: VegaLiteSpec, image: { svg?: string; png?: ChartPng }, text?: string): ChartOutput {
  const data = chartBundle(spec, image.svg, text);
  if (image.png === undefined) return { data, metadata: {} };
  data["image/png"] = image.png.base64;
  return { data, metadata: { "image/png": { width: image.png.width, height: image.png.height } } };
}

/** The chart's MIME bundle. `text` defaults to a summary read from the spec. */
export function chartBundle(spec: VegaLiteSpec, svg?: string, text?: string): ChartBundle {
  const bundle: ChartBundle = {
    "application/vnd.vegalite.v5+json": spec,
    "text/plain": text ?? summarizeSpec(spec),
  };
  if (svg !== undefined) bundle["image/svg+xml"] = svg;
  return bundle;
}

function summarizeSpec(spec: VegaLiteSpec): string {
  const mark = spec.mark;
  const markName = typeof mark === "string" ? mark : isRecord(mark) && typeof mark.type === "string" ? mark.type : "chart";
  const data = spec.data;
  const values = isRecord(data) && Array.isArray(data.values) ? data.values : undefined;
  const title = typeof spec.title === "string" ? `${spec.title}: ` : "";
  return `${title}${markName} chart${values !== undefined ? `, ${values.length} row${values.length === 1 ? "" : "s"}` : ""} (Vega-Lite)`;
}
