// JupyterLab 4 and VS Code draw the kernel's charts with vega-lite 5 (the v5 MIME type; they know no v6),
// while the kernel renders its SVG and PNG with vega-lite 6. Every spec the kernel emits must compile under
// vega-lite 5 without a warning, and draw the same marks and labels as the kernel's own rendering, so Lab
// shows what the image shows. vega-lite 5 and vega 5 come from test/jupyterlab: the very versions the
// JupyterLab front end of the browser test bundles.
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { SparkContext, StreamingContext } from "../engine/index.js";
import type { ChartMode } from "../engine/presenter.js";
import { LiveChart, loadVega, renderSvg, type VegaLiteSpec } from "../kernel/charts.js";
import type { OutputSink } from "../kernel/interpreter.js";
import { StatusPanel } from "../kernel/status-panel.js";
import { labRequire } from "./support/jupyterlab.js";
import { REPO, codeCells, readNotebook } from "./support/notebook-server.js";

const VEGA_LITE = "application/vnd.vegalite.v5+json";

interface Logger {
  level(): Logger;
  warn(...args: unknown[]): Logger;
  info(...args: unknown[]): Logger;
  debug(...args: unknown[]): Logger;
  error(...args: unknown[]): Logger;
}
interface VegaLite5 {
  version: string;
  compile(spec: unknown, options: { logger: Logger }): { spec: unknown };
}
interface Vega5 {
  version: string;
  parse(spec: unknown): unknown;
  View: new (runtime: unknown, options: { renderer: "none" }) => { toSVG(): Promise<string>; finalize(): void };
}

const vl5 = labRequire<VegaLite5>("vega-lite");
const vega5 = labRequire<Vega5>("vega");

/** A logger that keeps every warning and error: compiling must leave it empty. */
function collectingLogger(into: string[]): Logger {
  const logger: Logger = {
    level: () => logger,
    warn: (...args) => (into.push(`warning: ${args.join(" ")}`), logger),
    info: () => logger,
    debug: () => logger,
    error: (...args) => (into.push(`error: ${args.join(" ")}`), logger),
  };
  return logger;
}

/**
 * What a reader sees of an SVG: the data marks (the paths of each role-mark group: bars, lines, points)
 * and every text (titles, axis and legend labels), in order. Numeric labels compare as numbers: vega 6
 * writes a zero-width axis's only tick as "0.000000" where vega 5 writes "0". (Legend and axis box sizes
 * differ by a pixel between the two vega versions, so they are not compared.)
 */
function drawing(svg: string): { marks: string[]; texts: string[] } {
  const marks: string[] = [];
  for (const m of svg.matchAll(/<g class="mark-(\w+) role-mark[^"]*"[^>]*>/g)) {
    const body = svg.slice(m.index! + m[0].length, svg.indexOf("</g>", m.index!));
    marks.push(`${m[1]}: ${[...body.matchAll(/ d="([^"]*)"/g)].map((d) => d[1]).join(" ")}`);
  }
  const texts = [...svg.matchAll(/<text[^>]*>([^<]*)<\/text>/g)].map((m) => {
    const n = Number(m[1].replace(/,/g, ""));
    return m[1].trim() !== "" && Number.isFinite(n) ? String(n) : m[1];
  });
  return { marks, texts };
}

/** Every spec of a kind the kernel emits, named. */
async function kernelSpecs(): Promise<[string, VegaLiteSpec][]> {
  const specs: [string, VegaLiteSpec][] = [];
  // 1. The committed tutorials' charts: stream charts, the status panel, display.vegaLite.
  for (const file of fs.readdirSync(path.join(REPO, "notebooks")).filter((f) => f.endsWith(".ipynb")).sort()) {
    codeCells(readNotebook(path.join(REPO, "notebooks", file))).forEach((cell, i) =>
      (cell.outputs ?? []).forEach((o) => {
        if (o.data?.[VEGA_LITE] !== undefined) specs.push([`${file} cell ${i + 1}`, o.data[VEGA_LITE] as VegaLiteSpec]);
      }));
  }
  // 2. Stream charts in each mode, for pairs, objects and plain values, on the manual clock and on the wall clock.
  const userSpecs: Record<string, VegaLiteSpec> = {
    "no spec": {},
    "the README's bar": { mark: "bar", encoding: { x: { field: "key", type: "nominal" }, y: { field: "value", type: "quantitative" } } },
    "a line with its own time axis": { mark: "line", encoding: { x: { field: "time", title: "batch" }, y: { field: "value", type: "quantitative" } } },
    "a point with a title": { mark: { type: "point", filled: true }, title: "points" },
  };
  const rowsOf = {
    pairs: (t: number) => [["a", 1], ["b", t % 7]].map(([key, value]) => ({ key, value, time: t })),
    objects: (t: number) => [{ user: "ada", clicks: t % 5, time: t }],
    values: (t: number) => [{ value: t % 11, time: t }],
  };
  for (const [specName, userSpec] of Object.entries(userSpecs)) {
    for (const mode of ["append", "update", "complete"] as ChartMode[]) {
      for (const [shape, rows] of Object.entries(rowsOf)) {
        for (const [clock, t0] of [["manual clock", 0], ["wall clock", 1_800_000_000_000]] as const) {
          const chart = new LiveChart(userSpec, { mode, title: specName === "no spec" ? undefined : "t" });
          for (let i = 1; i <= 4; i++) chart.batch(t0 + i * 1000, rows(t0 + i * 1000));
          specs.push([`${specName}, ${mode}, ${shape}, ${clock}`, chart.spec()]);
        }
      }
    }
  }
  // 3. The status panel (ssc.ui()) with few batches (points drawn) and many, on both clocks.
  for (const [clock, batches] of [["manual", 5], ["manual", 70], ["system", 3]] as const) {
    specs.push([`status panel, ${clock} clock, ${batches} batches`, await statusPanelSpec(clock, batches)]);
  }
  return specs;
}

/** A status panel watching a real context through `batches` batches. */
async function statusPanelSpec(clock: "manual" | "system", batches: number): Promise<VegaLiteSpec> {
  const sc = new SparkContext();
  const ssc = new StreamingContext(sc, 100, { clock });
  const quiet: OutputSink = { stream() {}, displayData() {}, updateDisplayData() {}, clearOutput() {} };
  const panel = new StatusPanel(ssc, quiet, { minIntervalMs: 60_000 });
  ssc.queueStream([], true, sc.parallelize([1, 2, 3])).count().foreachRDD(() => {});
  await ssc.start();
  if (clock === "manual") for (let i = 0; i < batches; i++) await ssc.advance(100);
  else while (panel.summary().completedBatches < batches) await new Promise((r) => setTimeout(r, 20));
  await ssc.stop();
  const spec = panel.spec();
  panel.close();
  return spec;
}

describe("the kernel's Vega-Lite under vega-lite 5 (what JupyterLab and VS Code draw with)", () => {
  it("uses the vega-lite 5 and vega 5 that the JupyterLab front end bundles", () => {
    expect(vl5.version).toMatch(/^5\./);
    expect(vega5.version).toMatch(/^5\./);
  });

  it("every spec compiles without a warning under vega-lite 5 and 6, and draws the same marks and labels", async () => {
    const { vl: vl6, vega: vega6 } = await loadVega();
    const specs = await kernelSpecs();
    expect(specs.length).toBeGreaterThan(80);
    const problems: string[] = [];
    for (const [name, spec] of specs) {
      const warnings5: string[] = [];
      const warnings6: string[] = [];
      const compiled5 = vl5.compile(spec, { logger: collectingLogger(warnings5) }).spec;
      vl6.compile(spec as unknown as Parameters<typeof vl6.compile>[0], { logger: collectingLogger(warnings6) as unknown as ReturnType<typeof vega6.logger> });
      if (warnings5.length > 0) problems.push(`${name}: vega-lite 5 says ${warnings5.join("; ")}`);
      if (warnings6.length > 0) problems.push(`${name}: vega-lite 6 says ${warnings6.join("; ")}`);
      const view5 = new vega5.View(vega5.parse(compiled5), { renderer: "none" });
      const lab = drawing(await view5.toSVG());
      view5.finalize();
      const kernel = drawing(await renderSvg(spec));
      if (JSON.stringify(lab) !== JSON.stringify(kernel)) {
        problems.push(`${name}: vega-lite 5 draws ${JSON.stringify(lab)}, the kernel ${JSON.stringify(kernel)}`);
      }
    }
    expect(problems).toEqual([]);
  }, 120_000);
});
