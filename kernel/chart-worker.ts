// The chart worker's thread: renders the kernel's live charts to SVG with vega, off the kernel's main
// thread, so a render (up to ~100 ms) and the garbage it makes never delay a shell or IOPub message.
// One ChartRenderer per chart, so each keeps its compiled view between updates as it did in-process.
import * as v8 from "node:v8";
import * as vm from "node:vm";
import { parentPort } from "node:worker_threads";
import { ChartRenderer, loadVega, type FromChartWorker, type ToChartWorker } from "./charts.js";

const port = parentPort;
if (port === null) throw new Error("chart-worker.js runs only as a worker thread (ChartWorker in kernel/charts.ts starts it)");

const renderers = new Map<number, ChartRenderer>();

// The worker is started for a chart about to render: load vega now, while the first spec is on its way.
loadVega().catch(() => {}); // a failure is reported with the first render, which loads again

port.on("message", (message: ToChartWorker) => {
  switch (message.kind) {
    case "render":
      void render(message.id, message.chart, message.spec);
      break;
    case "dispose":
      renderers.get(message.chart)?.dispose();
      renderers.delete(message.chart);
      break;
    case "heap":
      void settledHeap().then((heapUsed) => reply({ kind: "heap", id: message.id, heapUsed, charts: renderers.size }));
      break;
  }
});

async function render(id: number, chart: number, spec: Record<string, unknown>): Promise<void> {
  let renderer = renderers.get(chart);
  if (renderer === undefined) renderers.set(chart, (renderer = new ChartRenderer()));
  try {
    reply({ kind: "rendered", id, svg: await renderer.svg(spec) });
  } catch (err) {
    reply({ kind: "failed", id, message: err instanceof Error ? err.message : String(err) });
  }
}

/** This thread's heap in use after full collections (for the heap test: a live chart's renders stay flat). */
async function settledHeap(): Promise<number> {
  v8.setFlagsFromString("--expose-gc");
  const gc = vm.runInNewContext("gc") as () => void;
  for (let i = 0; i < 3; i++) {
    await new Promise((resolve) => setImmediate(resolve));
    gc();
  }
  return process.memoryUsage().heapUsed;
}

function reply(message: FromChartWorker): void {
  port!.postMessage(message);
}
