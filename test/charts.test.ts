// LiveChart's row bookkeeping per mode (hand-worked batches), the completed spec, SVG rendering and the bundle,
// and the worker thread live charts render in (shared, started by the first render, replaced when it dies).
import { describe, expect, test } from "vitest";
import { CHART_WORKER_RETRIES, ChartOptionsError, ChartWorker, ChartWorkerError, LiveChart, WorkerChartRenderer, chartBundle, renderSvg, VEGA_LITE_SCHEMA } from "../kernel/charts.js";
import type { ChartRow } from "../engine/presenter.js";

const bar = {
  mark: "bar",
  encoding: { x: { field: "key", type: "nominal" }, y: { field: "value", type: "quantitative" } },
};

const kv = (time: number, pairs: [string, number][]): ChartRow[] => pairs.map(([key, value]) => ({ key, value, time }));

/** The items of the SVG group holding the chart's marks of one kind (e.g. "rect", "line", "symbol"). */
function markItems(svg: string, kind: string): number {
  const start = svg.indexOf(`class="mark-${kind} role-mark`);
  if (start < 0) return 0;
  // A role-mark group holds only its items, and items of these kinds are single <path> elements.
  const end = svg.indexOf("</g>", start);
  return (svg.slice(start, end).match(/<path/g) ?? []).length;
}

function elements(svg: string): string[] {
  return (svg.match(/<[^>]+>[^<]*/g) ?? []).sort();
}

function textLabels(svg: string): string[] {
  return [...svg.matchAll(/<text[^>]*>([^<]*)<\/text>/g)].map((m) => m[1]);
}

describe("append mode", () => {
  test("keeps rows across batches, drops the oldest beyond maxRows", () => {
    const c = new LiveChart({}, { mode: "append", maxRows: 5 });
    c.batch(1000, kv(1000, [["a", 1], ["b", 2]]));
    c.batch(2000, kv(2000, [["a", 3], ["b", 4]]));
    expect(c.rows().map((r) => r.value)).toEqual([1, 2, 3, 4]);
    c.batch(3000, kv(3000, [["a", 5], ["b", 6]]));
    // 6 rows > 5: the oldest (a=1 at 1000) goes
    expect(c.rows().map((r) => [r.time, r.key, r.value])).toEqual([
      [1000, "b", 2], [2000, "a", 3], [2000, "b", 4], [3000, "a", 5], [3000, "b", 6],
    ]);
  });

  test("without an x encoding, x is the time, on a scale spanning only the kept rows", async () => {
    const c = new LiveChart({ mark: "line" }, { mode: "append", maxRows: 4 });
    c.batch(1000, kv(1000, [["a", 1], ["b", 2]]));
    c.batch(2000, kv(2000, [["a", 3], ["b", 4]]));
    const x = (c.spec().encoding as Record<string, Record<string, unknown>>).x;
    expect(x).toEqual({ field: "time", type: "quantitative", title: "time", scale: { nice: false, zero: false } });
    const before = textLabels(await c.svg());
    expect(before).toContain("1,000");
    c.batch(3000, kv(3000, [["a", 5], ["b", 6]]));
    const after = textLabels(await c.svg());
    // the axis slid: it now starts at 2,000 and ends at 3,000
    expect(after).not.toContain("1,000");
    expect(after).toEqual(expect.arrayContaining(["2,000", "3,000"]));
  }, 30_000);

  test("epoch times make a temporal axis; the user's own x on time keeps its settings", () => {
    const t0 = 1_700_000_000_000;
    const c = new LiveChart({ mark: "line", encoding: { x: { field: "time", title: "batch" }, y: { field: "value", type: "quantitative" } } });
    c.batch(t0, kv(t0, [["a", 1]]));
    c.batch(t0 + 1000, kv(t0 + 1000, [["a", 2]]));
    const enc = c.spec().encoding as Record<string, Record<string, unknown>>;
    expect(enc.x).toMatchObject({ field: "time", type: "temporal", title: "batch", scale: { nice: false } });
    expect(enc.y).toEqual({ field: "value", type: "quantitative" });
  });

  test("rows without a time get the batch time", () => {
    const c = new LiveChart({}, { mode: "append" });
    c.batch(5000, [{ value: 7 } as unknown as ChartRow]);
    expect(c.rows()).toEqual([{ value: 7, time: 5000 }]);
  });
});

describe("update mode", () => {
  test("keeps the latest value per key", () => {
    const c = new LiveChart(bar, { mode: "update" });
    c.batch(1000, kv(1000, [["hello", 1], ["world", 1]]));
    c.batch(2000, kv(2000, [["hello", 3], ["spark", 2]]));
    const byKey = Object.fromEntries(c.rows().map((r) => [r.key, [r.value, r.time]]));
    expect(byKey).toEqual({ hello: [3, 2000], world: [1, 1000], spark: [2, 2000] });
    expect(c.rows()).toHaveLength(3);
  });

  test("rows without a key are keyed by the whole row minus time", () => {
    const c = new LiveChart({ mark: "point" }, { mode: "update" });
    c.batch(1000, [{ word: "x", n: 1, time: 1000 }, { word: "y", n: 1, time: 1000 }]);
    c.batch(2000, [{ n: 1, word: "x", time: 2000 }]);
    expect(c.rows().map((r) => [r.word, r.time])).toEqual([["y", 1000], ["x", 2000]]);
  });

  test("beyond maxRows the least recently updated key goes", () => {
    const c = new LiveChart(bar, { mode: "update", maxRows: 2 });
    c.batch(1000, kv(1000, [["a", 1], ["b", 1]]));
    c.batch(2000, kv(2000, [["a", 2], ["c", 1]]));
    expect(c.rows().map((r) => r.key).sort()).toEqual(["a", "c"]);
  });
});

describe("complete mode", () => {
  test("shows only the latest batch", () => {
    const c = new LiveChart(bar, { mode: "complete" });
    c.batch(1000, kv(1000, [["a", 1], ["b", 2]]));
    c.batch(2000, kv(2000, [["c", 9]]));
    expect(c.rows()).toEqual([{ key: "c", value: 9, time: 2000 }]);
    c.batch(3000, []);
    expect(c.rows()).toEqual([]);
  });
});

describe("spec", () => {
  test("completes the user's spec with schema, size, title and inline data", () => {
    const c = new LiveChart(bar, { mode: "update", title: "Word counts" });
    c.batch(1000, kv(1000, [["a", 1]]));
    const spec = c.spec();
    expect(spec).toMatchObject({ $schema: VEGA_LITE_SCHEMA, title: "Word counts", width: 400, height: 200, mark: "bar" });
    expect(spec.data).toEqual({ values: [{ key: "a", value: 1, time: 1000 }] });
    expect(spec.encoding).toEqual(bar.encoding);
  });

  test("the user's width wins; a bare spec gets a bar chart of key/value in update mode", () => {
    const c = new LiveChart({ width: 120 }, { mode: "update" });
    c.batch(1000, kv(1000, [["a", 1]]));
    const spec = c.spec();
    expect(spec.width).toBe(120);
    expect(spec.mark).toBe("bar");
    expect(spec.encoding).toMatchObject({ x: { field: "key" }, y: { field: "value" } });
  });

  test("bad options are named errors", () => {
    expect(() => new LiveChart({}, { mode: "sideways" as "append" })).toThrow(ChartOptionsError);
    expect(() => new LiveChart({}, { maxRows: 0 })).toThrow(/maxRows/);
  });
});

describe("rendering", () => {
  test("a bar chart renders one rect per key, with the keys as axis labels", async () => {
    const c = new LiveChart(bar, { mode: "update" });
    c.batch(1000, kv(1000, [["hello", 3], ["world", 1], ["spark", 2]]));
    const svg = await renderSvg(c.spec());
    expect(svg.startsWith("<svg")).toBe(true);
    expect(markItems(svg, "rect")).toBe(3);
    expect(textLabels(svg)).toEqual(expect.arrayContaining(["hello", "world", "spark"]));
  }, 30_000);

  test("an append chart draws one line per key and follows the rows", async () => {
    const c = new LiveChart({ mark: "line" }, { mode: "append" });
    for (let t = 1000; t <= 5000; t += 1000) c.batch(t, kv(t, [["a", t / 1000], ["b", t / 500]]));
    const svg = await renderSvg(c.spec());
    // Vega facets a multi-series line into one group per series, each holding one path
    expect(svg.match(/class="mark-line role-mark/g)).toHaveLength(2);
    expect(textLabels(svg)).toEqual(expect.arrayContaining(["a", "b", "time", "value"]));
  }, 30_000);

  test("a reused view renders exactly what a fresh render of the same spec gives", async () => {
    const c = new LiveChart(bar, { mode: "append", maxRows: 6 });
    for (let t = 1000; t <= 6000; t += 1000) {
      c.batch(t, kv(t, [[`k${t % 3000}`, t / 1000]]));
      // A reused scenegraph may emit unchanged axis ticks in another order: compare the elements as a multiset.
      expect(elements(await c.svg())).toEqual(elements(await renderSvg(c.spec())));
    }
  }, 30_000);

  test("the bundle carries the spec, the SVG and a text summary", async () => {
    const c = new LiveChart(bar, { mode: "update", title: "Counts" });
    c.batch(2000, kv(2000, [["hello", 3], ["world", 1]]));
    const b = await c.bundle();
    expect(Object.keys(b).sort()).toEqual(["application/vnd.vegalite.v5+json", "image/svg+xml", "text/plain"]);
    expect(b["application/vnd.vegalite.v5+json"]).toEqual(c.spec());
    expect(b["image/svg+xml"]).toMatch(/^<svg/);
    expect(b["text/plain"]).toBe("Counts: bar chart (update), 2 rows, time 2000: hello=3, world=1");
  });

  test("chartBundle without an SVG, and a summary read from a static spec", () => {
    const b = chartBundle({ mark: "point", data: { values: [{ a: 1 }, { a: 2 }] } });
    expect(b).toEqual({
      "application/vnd.vegalite.v5+json": { mark: "point", data: { values: [{ a: 1 }, { a: 2 }] } },
      "text/plain": "point chart, 2 rows (Vega-Lite)",
    });
  });

  test("an invalid spec still yields a bundle without the SVG", async () => {
    const c = new LiveChart({ mark: "no-such-mark" }, { mode: "complete" });
    c.batch(1000, kv(1000, [["a", 1]]));
    const b = await c.bundle();
    expect(b["image/svg+xml"]).toBeUndefined();
    expect(b["application/vnd.vegalite.v5+json"]).toMatchObject({ mark: "no-such-mark" });
  });
});

describe("the chart worker", () => {
  const spec = (t: number, pairs: [string, number][]) => {
    const c = new LiveChart(bar, { mode: "update" });
    c.batch(t, kv(t, pairs));
    return c.spec();
  };

  test("charts render in one worker thread, started by the first render and shared by every chart", async () => {
    const worker = new ChartWorker();
    const first = new WorkerChartRenderer(worker);
    const second = new WorkerChartRenderer(worker);
    expect(worker.thread).toBeUndefined(); // nothing started before a chart renders
    const a = spec(1000, [["hello", 3], ["world", 1]]);
    const b = spec(2000, [["spark", 2]]);
    const [svgA, svgB] = await Promise.all([first.svg(a), second.svg(b)]);
    expect(elements(svgA)).toEqual(elements(await renderSvg(a)));
    expect(elements(svgB)).toEqual(elements(await renderSvg(b)));
    expect(worker.starts).toBe(1);
    await worker.stop();
    expect(worker.thread).toBeUndefined();
  }, 60_000);

  test("specs asked for while one renders coalesce: only the latest is rendered, and every caller since gets it", async () => {
    const worker = new ChartWorker();
    const renderer = new WorkerChartRenderer(worker);
    const specs = [1, 2, 3, 4, 5].map((i) => spec(i * 1000, [[`k${i}`, i]]));
    const svgs = await Promise.all(specs.map((s) => renderer.svg(s)));
    expect(worker.rendersSent).toBe(2);
    expect(elements(svgs[0]!)).toEqual(elements(await renderSvg(specs[0]!)));
    for (const svg of svgs.slice(1)) expect(svg).toBe(svgs[4]);
    expect(elements(svgs[4]!)).toEqual(elements(await renderSvg(specs[4]!)));
    await worker.stop();
  }, 60_000);

  test("a worker that dies during a render is replaced, and the render is done by the new one", async () => {
    const worker = new ChartWorker();
    const renderer = new WorkerChartRenderer(worker);
    await renderer.svg(spec(1000, [["a", 1]]));
    const later = spec(2000, [["a", 1], ["b", 2]]);
    const rendering = renderer.svg(later);
    await worker.thread!.terminate(); // as a crash: the thread ends with the render in flight
    expect(elements(await rendering)).toEqual(elements(await renderSvg(later)));
    expect(worker.starts).toBe(2);
    await worker.stop();
  }, 60_000);

  test("a worker that keeps dying (here: out of its heap) leaves the chart its spec and text, and each render tries a new one", async () => {
    const worker = new ChartWorker({ heapMb: 4 }); // too small to load vega: the thread runs out of heap
    const renderer = new WorkerChartRenderer(worker);
    const s = spec(1000, [["a", 1]]);
    const out = await renderer.output(s, "a bar chart", false);
    expect(out.data).toEqual({ "application/vnd.vegalite.v5+json": s, "text/plain": "a bar chart" });
    const startsAfterFirst = worker.starts;
    expect(startsAfterFirst).toBe(1 + CHART_WORKER_RETRIES);
    const failure = await renderer.svg(s).catch((err: unknown) => err);
    expect(failure).toBeInstanceOf(ChartWorkerError);
    expect((failure as Error).message).toMatch(/memory/);
    expect(worker.starts).toBe(startsAfterFirst * 2);
  }, 60_000);
});
