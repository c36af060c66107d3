// A live chart's retained heap stays flat: the kernel re-renders one chart many times a second for hours,
// and vega's dataflow keeps a little for every row and axis tick a reused view ever drew. Measured in
// process, side by side with a renderer that reuses one view forever with vega's defaults (the old way),
// and in the chart worker's own heap, where the kernel's live charts render.
import * as v8 from "node:v8";
import * as vm from "node:vm";
import { describe, expect, it } from "vitest";
import { ChartRenderer, ChartWorker, LiveChart, WorkerChartRenderer, type SvgRenderer } from "../kernel/charts.js";

v8.setFlagsFromString("--expose-gc");
const gc = vm.runInNewContext("gc") as () => void;

/** Heap in use after full collections, with turns of the event loop between them for finalizers. */
async function settledHeap(): Promise<number> {
  for (let i = 0; i < 3; i++) {
    await new Promise((resolve) => setImmediate(resolve));
    gc();
  }
  return process.memoryUsage().heapUsed;
}

/** Heap growth over `measured` renders of an append-mode line chart, after `warmup` renders (`heap`: the heap measured). */
async function growth(renderer: SvgRenderer, warmup: number, measured: number, heap: () => Promise<number> = settledHeap): Promise<number> {
  // Five keys a batch at 100 ms, 100 rows kept: the time axis slides and rows come and go, as in a live chart.
  const chart = new LiveChart({ mark: "line" }, { maxRows: 100 });
  let time = 1_700_000_000_000;
  const render = async (n: number): Promise<void> => {
    for (let i = 0; i < n; i++) {
      time += 100;
      chart.batch(time, ["a", "b", "c", "d", "e"].map((key, j) => ({ key, value: (time / 100 * (j + 1)) % 17, time })));
      await renderer.svg(chart.spec());
    }
  };
  await render(warmup);
  const before = await heap();
  await render(measured);
  const after = await heap();
  renderer.dispose();
  return after - before;
}

describe("a live chart's heap", () => {
  it("stays flat over repeated renders, where a view reused forever with vega's defaults grows", async () => {
    const mb = (bytes: number) => `${(bytes / 1e6).toFixed(2)} MB`;
    const kernel = await growth(new ChartRenderer(), 300, 900);
    const reference = await growth(new ChartRenderer({ viewRenders: Infinity, cleanThreshold: 10_000 }), 300, 900);
    const worker = new ChartWorker();
    const inWorker = await growth(new WorkerChartRenderer(worker), 300, 900, async () => (await worker.heap()).heapUsed);
    await worker.stop();
    console.log(`heap growth over 900 renders: kernel's renderer ${mb(kernel)}, in the chart worker ${mb(inWorker)}, one view forever ${mb(reference)}`);
    // The scenario does exercise the growth: the old way keeps megabytes ...
    expect(reference).toBeGreaterThan(2e6);
    // ... and the kernel's renderer keeps a small fraction of that, in process and in the chart worker.
    expect(kernel).toBeLessThan(reference / 4);
    expect(inWorker).toBeLessThan(reference / 4);
  }, 300_000); // about 20 s on an idle 2-core machine; minutes when it is shared
});
