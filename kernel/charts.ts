// Streams to Vega-Lite: keeps a chart's rows across batches (append / update / complete),
// completes the user's partial spec, and renders it to SVG in-process with vega (no canvas), and to PNG
// with resvg for a display's last state (nbconvert's HTML on Debian 12 strips SVG, keeps PNG).

import * as fs from "node:fs";
import type { ChartMode, ChartOptions, ChartRow } from "../engine/presenter.js";

/** A Vega-Lite spec as plain JSON (vega-lite's own TopLevelSpec type is too strict for partial user specs). */
export type VegaLiteSpec = Record<string, unknown>;

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

export const VEGA_LITE_SCHEMA = "https://vega.github.io/schema/vega-lite/v5.json";
export const DEFAULT_MAX_ROWS = 1000;
const DEFAULT_WIDTH = 400;
const DEFAULT_HEIGHT = 200;

export class ChartOptionsError extends Error {
  override name = "ChartOptionsError";
}

export class ChartRenderError extends Error {
  override name = "ChartRenderError";
}

type Encoding = Record<string, Record<string, unknown> | undefined>;

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Times below this are a manual clock's small numbers (0, 1000, ...), not epoch milliseconds. */
const EPOCH_THRESHOLD = 1e11;

/**
 * One live chart: feed it batches, ask it for the current spec or MIME bundle.
 * Row bookkeeping is O(rows in the batch) per batch; the spec is built on demand.
 */
export class LiveChart {
  readonly mode: ChartMode;
  readonly maxRows: number;
  readonly title: string | undefined;
  private readonly userSpec: VegaLiteSpec;
  /** append: oldest first; complete: the latest batch. */
  private list: ChartRow[] = [];
  /** update: latest row per key, least recently updated first. */
  private byKey = new Map<string, ChartRow>();
  private latestTime: number | undefined;
  private batches = 0;

  constructor(spec: VegaLiteSpec = {}, options: ChartOptions = {}) {
    if (!isRecord(spec)) throw new ChartOptionsError("chart(spec): spec must be a Vega-Lite object such as { mark: \"bar\", encoding: {...} }");
    const mode = options.mode ?? "append";
    if (mode !== "append" && mode !== "update" && mode !== "complete") {
      throw new ChartOptionsError(`chart(): mode must be "append", "update" or "complete", not ${JSON.stringify(mode)}`);
    }
    const maxRows = options.maxRows ?? DEFAULT_MAX_ROWS;
    if (!Number.isInteger(maxRows) || maxRows < 1) {
      throw new ChartOptionsError(`chart(): maxRows must be a positive integer, not ${String(maxRows)}`);
    }
    this.userSpec = spec;
    this.mode = mode;
    this.maxRows = maxRows;
    this.title = options.title ?? (typeof spec.title === "string" ? spec.title : undefined);
  }

  /** Adds one batch's rows. Rows without `time` get the batch time. */
  batch(time: number, rows: readonly ChartRow[]): void {
    this.batches++;
    this.latestTime = time;
    const stamped = rows.map((r) => (typeof r.time === "number" ? r : { ...r, time }));
    switch (this.mode) {
      case "append": {
        for (const r of stamped) this.list.push(r);
        const excess = this.list.length - this.maxRows;
        if (excess > 0) this.list.splice(0, excess);
        break;
      }
      case "update": {
        for (const r of stamped) {
          const k = rowKey(r);
          // delete + set moves the key to the most recent end, so eviction drops the stalest key
          this.byKey.delete(k);
          this.byKey.set(k, r);
        }
        while (this.byKey.size > this.maxRows) {
          const first = this.byKey.keys().next().value as string;
          this.byKey.delete(first);
        }
        break;
      }
      case "complete":
        this.list = stamped.length > this.maxRows ? stamped.slice(stamped.length - this.maxRows) : stamped;
        break;
    }
  }

  /** The rows the chart currently shows. */
  rows(): ChartRow[] {
    return this.mode === "update" ? [...this.byKey.values()] : [...this.list];
  }

  get batchCount(): number {
    return this.batches;
  }

  /** The full Vega-Lite spec with the current rows inline. */
  spec(): VegaLiteSpec {
    const rows = this.rows();
    const user = this.userSpec;
    const hasKey = rows.some((r) => "key" in r);
    const hasValue = rows.some((r) => "value" in r);
    const encoding: Encoding = isRecord(user.encoding) ? { ...(user.encoding as Encoding) } : {};
    const layered = Array.isArray(user.layer) || isRecord(user.spec) || Array.isArray(user.concat) ||
      Array.isArray(user.hconcat) || Array.isArray(user.vconcat);

    const out: VegaLiteSpec = { $schema: VEGA_LITE_SCHEMA };
    if (this.title !== undefined) out.title = this.title;
    if (!layered) {
      out.width = DEFAULT_WIDTH;
      out.height = DEFAULT_HEIGHT;
    }
    Object.assign(out, user);
    if (this.title !== undefined) out.title = this.title;
    out.$schema = VEGA_LITE_SCHEMA;

    if (!layered) {
      if (out.mark === undefined) out.mark = this.mode === "append" ? "line" : "bar";
      if (this.mode === "append") {
        // A stream over time: x is the batch time unless the user chose another field.
        const x = encoding.x;
        if (x === undefined) {
          encoding.x = this.timeAxis(rows, {});
        } else if (x.field === "time") {
          encoding.x = this.timeAxis(rows, x);
        }
        if (encoding.y === undefined && hasValue) encoding.y = { field: "value", type: "quantitative" };
        if (encoding.color === undefined && hasKey && encoding.x?.field !== "key") {
          encoding.color = { field: "key", type: "nominal" };
        }
      } else {
        if (encoding.x === undefined && encoding.y === undefined) {
          if (hasKey) encoding.x = { field: "key", type: "nominal" }; // sorted by key: bars keep their places
          if (hasValue) encoding.y = { field: "value", type: "quantitative" };
        }
      }
      out.encoding = encoding;
    }
    out.data = { values: rows };
    return out;
  }

  private timeAxis(rows: readonly ChartRow[], userX: Record<string, unknown>): Record<string, unknown> {
    const latest = this.latestTime ?? rows[rows.length - 1]?.time ?? 0;
    const epoch = latest >= EPOCH_THRESHOLD;
    // No explicit domain: the scale spans exactly the rows kept, so the axis slides as old rows drop out,
    // and the spec's shape stays the same from batch to batch (which lets renderers reuse a compiled view).
    return {
      field: "time",
      type: epoch ? "temporal" : "quantitative",
      title: "time",
      scale: epoch ? { nice: false } : { nice: false, zero: false },
      // Wall-clock labels: vega's default multi-format shows sub-second batches as ".500".
      ...(epoch ? { axis: { format: "%H:%M:%S", labelAngle: 0 } } : {}),
      ...userX,
    };
  }

  /** A short human summary for text/plain: title, mark, row count, the latest values. */
  summary(): string {
    const rows = this.rows();
    const mark = this.userSpec.mark ?? (this.mode === "append" ? "line" : "bar");
    const markName = typeof mark === "string" ? mark : isRecord(mark) && typeof mark.type === "string" ? mark.type : "layered";
    const head = `${this.title !== undefined ? `${this.title}: ` : ""}${markName} chart (${this.mode}), ${rows.length} row${rows.length === 1 ? "" : "s"}`;
    if (this.latestTime === undefined) return `${head}, no batch yet`;
    const latest = this.mode === "append" ? rows.filter((r) => r.time === this.latestTime) : rows;
    const shown = latest.slice(-8).map(describeRow);
    const more = latest.length > shown.length ? `, … ${latest.length - shown.length} more` : "";
    const when = this.latestTime >= EPOCH_THRESHOLD ? new Date(this.latestTime).toISOString() : String(this.latestTime);
    return `${head}, time ${when}${shown.length > 0 ? `: ${shown.join(", ")}${more}` : ""}`;
  }

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

function rowKey(r: ChartRow): string {
  if ("key" in r) return "k:" + stableJson(r.key);
  const { time: _time, ...rest } = r;
  return "r:" + stableJson(rest);
}

function stableJson(v: unknown): string {
  if (typeof v !== "object" || v === null) return JSON.stringify(v) ?? String(v);
  if (Array.isArray(v)) return "[" + v.map(stableJson).join(",") + "]";
  const o = v as Record<string, unknown>;
  return "{" + Object.keys(o).sort().map((k) => JSON.stringify(k) + ":" + stableJson(o[k])).join(",") + "}";
}

function describeRow(r: ChartRow): string {
  if ("key" in r && "value" in r) return `${fmt(r.key)}=${fmt(r.value)}`;
  if ("value" in r) return fmt(r.value);
  const { time: _time, ...rest } = r;
  return Object.entries(rest).map(([k, v]) => `${k}=${fmt(v)}`).join(" ");
}

function fmt(v: unknown): string {
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toPrecision(4);
  if (typeof v === "string") return v.length > 24 ? v.slice(0, 23) + "…" : v;
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 24 ? s.slice(0, 23) + "…" : s;
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
