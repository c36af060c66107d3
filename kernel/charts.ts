// Charts in the notebook: the engine's ChartModel (rows across batches, the completed spec) rendered to SVG
// in-process with vega (no canvas), and to PNG with resvg for a display's last state (nbconvert's HTML on
// Debian 12 strips SVG, keeps PNG).

import * as fs from "node:fs";
import { ChartModel, isRecord, type VegaLiteSpec } from "../engine/chart.js";

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

/** One live chart: feed it batches, ask it for the current spec, or its MIME bundle with the SVG rendered. */
export class LiveChart extends ChartModel {
  private readonly renderer = new ChartRenderer();

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
    return this.renderer.output(this.spec(), this.summary(), final);
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

export class ChartRenderer {
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
  async output(spec: VegaLiteSpec, text: string, final: boolean): Promise<ChartOutput> {
    const svg = await this.svg(spec).catch(() => undefined);
    const png = final && svg !== undefined ? await renderPng(svg).catch(() => undefined) : undefined;
    return chartOutput(spec, png !== undefined ? { png } : { svg }, text);
  }

  /** Frees the compiled view. */
  dispose(): void {
    this.cached?.view.finalize();
    this.cached = undefined;
  }
}

const ROWS = "rows";

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
