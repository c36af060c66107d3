// Streams to Vega-Lite: keeps a chart's rows across batches (append / update / complete),
// completes the user's partial spec, and renders it to SVG in-process with vega (no canvas).

import { ChartModel, isRecord, type VegaLiteSpec } from "../engine/chart.js";

export { ChartModel, ChartOptionsError, VEGA_LITE_SCHEMA, DEFAULT_MAX_ROWS, type VegaLiteSpec } from "../engine/chart.js";

/** A chart's MIME bundle: JupyterLab renders the Vega-Lite, classic Notebook and GitHub the SVG. */
export interface ChartBundle {
  "application/vnd.vegalite.v5+json": VegaLiteSpec;
  "image/svg+xml"?: string;
  "text/plain": string;
  [mime: string]: unknown;
}

export class ChartRenderError extends Error {
  override name = "ChartRenderError";
}

/** One live chart: feed it batches, ask it for the current spec, or its MIME bundle with the SVG rendered. */
export class LiveChart extends ChartModel {
  /** The MIME bundle with the SVG rendered (or without it, if rendering fails: the spec still shows). */
  async bundle(): Promise<ChartBundle> {
    const spec = this.spec();
    let svg: string | undefined;
    try {
      svg = await this.svg(spec);
    } catch {
      svg = undefined;
    }
    return chartBundle(spec, svg, this.summary());
  }

  private cached: { shape: string; view: VegaView } | undefined;

  /**
   * Renders the spec to SVG, reusing the compiled view while the spec's shape (everything but the rows)
   * stays the same: a new batch then costs a dataflow run and the SVG, not a compile and parse.
   */
  async svg(spec: VegaLiteSpec = this.spec()): Promise<string> {
    const { data, ...rest } = spec;
    const rows = isRecord(data) && Array.isArray(data.values) ? data.values : [];
    const shape = JSON.stringify(rest);
    if (this.cached?.shape !== shape) {
      this.cached?.view.finalize();
      this.cached = undefined;
      // resize: a reused view must redo its layout when new rows change the axis labels' widths.
      const autosize = rest.autosize ?? { type: "pad", resize: true };
      const view = await compileView({ ...rest, autosize, data: { name: ROWS } });
      this.cached = { shape, view };
    }
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
