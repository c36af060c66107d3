// Live chart benchmark: one chart fed by a 20 batches/s stream in a real streambook kernel, driven through
// the ZeroMQ client. Prints updates/s, bytes and SVG ms per update, and kernel_info latency idle vs. streaming.
// Usage: node dist/bench/charts.js [seconds=15]
import * as fs from "node:fs";
import * as path from "node:path";
import { KernelClient, type KernelSpec, type Message } from "../cli/client.js";

const ROOT = path.resolve(__dirname, "..", "..");
const SECONDS = Number(process.argv[2] ?? 15);
const BATCH_MS = 50;
const VEGA_LITE = "application/vnd.vegalite.v5+json";

export class BenchSetupError extends Error {
  override name = "BenchSetupError";
}

/** The streambook kernel as built in dist/. */
export function notebookKernelSpec(): KernelSpec {
  const main = path.join(ROOT, "dist", "kernel", "main.js");
  if (!fs.existsSync(main)) throw new BenchSetupError(`${main} is missing: run "npm run build" first`);
  return {
    name: "streambook",
    argv: [process.execPath, main, "-f", "{connection_file}"],
    display_name: "streambook (bench)",
    language: "typescript",
    interrupt_mode: "signal",
    env: {},
  };
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

export async function execute(kernel: KernelClient, code: string, timeoutMs = 60_000): Promise<Message[]> {
  const outputs: Message[] = [];
  const { msgId, reply } = kernel.send("shell", "execute_request", {
    code,
    silent: false,
    store_history: true,
    user_expressions: {},
    allow_stdin: false,
    stop_on_error: true,
  });
  const off = kernel.onIopub((m) => {
    if ((m.parent_header as { msg_id?: string }).msg_id === msgId) outputs.push(m);
  });
  let timer: NodeJS.Timeout | undefined;
  try {
    const r = await Promise.race([
      reply,
      new Promise<never>((_, fail) => (timer = setTimeout(() => fail(new Error(`cell timed out: ${code.slice(0, 80)}`)), timeoutMs))),
    ]);
    const content = r.content as { status?: string; ename?: string; evalue?: string };
    if (content.status !== "ok") throw new Error(`cell failed: ${content.ename}: ${content.evalue}\n${code}`);
  } finally {
    clearTimeout(timer);
    off();
  }
  return outputs;
}

/** kernel_info round trips, one after another, for `ms`; returns each latency in ms. */
async function kernelInfoLatencies(kernel: KernelClient, ms: number, gapMs = 20): Promise<number[]> {
  const out: number[] = [];
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const t0 = performance.now();
    await kernel.request("shell", "kernel_info_request", {}, 10_000);
    out.push(performance.now() - t0);
    await new Promise((r) => setTimeout(r, gapMs));
  }
  return out;
}

const fmt = (n: number, digits = 1): string => (Number.isFinite(n) ? n.toFixed(digits) : "n/a");

async function main(): Promise<void> {
  const kernel = await KernelClient.launch(notebookKernelSpec(), { cwd: ROOT, startTimeoutMs: 60_000 });
  try {
    await execute(kernel, "1 + 1"); // loads the type checker before anything is measured
    const idle = await kernelInfoLatencies(kernel, 3000);

    // The chart's display id comes from its display_data; updates are counted from then on.
    let chartId: string | undefined;
    const updates: { at: number; bytes: number }[] = [];
    const off = kernel.onIopub((m) => {
      const content = m.content as { data?: Record<string, unknown>; transient?: { display_id?: string } };
      const id = content.transient?.display_id;
      if (m.header.msg_type === "display_data" && content.data?.[VEGA_LITE] !== undefined) chartId = id;
      if (m.header.msg_type === "update_display_data" && id !== undefined && id === chartId) {
        updates.push({ at: performance.now(), bytes: Buffer.byteLength(JSON.stringify(content.data)) });
      }
    });

    await execute(kernel, `
const bench = new StreamingContext(sc, Milliseconds(${BATCH_MS}));
const points = bench.rateStream(2000).map((r) => [r.value % 4 === 0 ? "a" : "b", r.value % 97] as [string, number]);
points.reduceByKey((x, y) => x + y).chart({ mark: "line" }, { mode: "append", maxRows: 1000, title: "bench" });
bench.start();
`);
    const t0 = performance.now();
    const busy = await kernelInfoLatencies(kernel, SECONDS * 1000);
    const elapsed = (performance.now() - t0) / 1000;
    const sent = updates.filter((u) => u.at >= t0);

    const statsOut = await execute(kernel, `
await bench.stop();
const { liveDisplayStats } = require(${JSON.stringify(path.join(ROOT, "dist", "kernel", "notebook-presenter.js"))});
console.log(JSON.stringify(liveDisplayStats()));
`);
    off();
    const printed = statsOut
      .filter((m) => m.header.msg_type === "stream")
      .map((m) => String((m.content as { text?: string }).text ?? ""))
      .join("");
    const stats = JSON.parse(printed.trim().split("\n").pop() ?? "{}") as {
      updatesSent: number;
      produceMs: number;
      produceMsMax: number;
      coalesced: number;
      finalsSent: number;
      finalMs: number;
    };

    const perSecond = sent.length / elapsed;
    const bytes = sent.reduce((a, u) => a + u.bytes, 0) / Math.max(1, sent.length);
    // Live updates carry the SVG; the last state's update carries a PNG instead (rendered once per display).
    const svgMs = (stats.produceMs - stats.finalMs) / Math.max(1, stats.updatesSent - stats.finalsSent);
    const pngMs = stats.finalMs / Math.max(1, stats.finalsSent);
    const idleP99 = percentile(idle, 99);
    const busyP99 = percentile(busy, 99);
    console.log(`chart benchmark: ${1000 / BATCH_MS} batches/s for ${fmt(elapsed)} s, one append-mode chart (1000 rows max), updates limited to 10/s`);
    console.log(`updates sent:             ${sent.length} = ${fmt(perSecond)} updates/s (ratio to the 10/s goal: ${fmt(perSecond / 10, 2)}); ${stats.coalesced} batch updates coalesced`);
    console.log(`bytes per update:         ${fmt(bytes / 1024)} kB (Vega-Lite spec with rows + SVG + text)`);
    console.log(`SVG rendering per update: ${fmt(svgMs)} ms mean, ${fmt(stats.produceMsMax)} ms max (ratio to the 100 ms budget: ${fmt(svgMs / 100, 2)})`);
    console.log(`PNG of the last state:    ${stats.finalsSent} rendered, ${fmt(pngMs)} ms each with its SVG (ratio to the 100 ms budget: ${fmt(pngMs / 100, 2)}); per update over the run: ${fmt(stats.produceMs / Math.max(1, stats.updatesSent))} ms`);
    console.log(`kernel_info latency idle:      p50 ${fmt(percentile(idle, 50), 2)} ms, p99 ${fmt(idleP99, 2)} ms (${idle.length} requests)`);
    console.log(`kernel_info latency streaming: p50 ${fmt(percentile(busy, 50), 2)} ms, p99 ${fmt(busyP99, 2)} ms (${busy.length} requests); ratio streaming/idle p99 ${fmt(busyP99 / idleP99, 2)}; goal p99 < 100 ms: ${busyP99 < 100 ? "met" : "NOT met"}`);
  } finally {
    await kernel.shutdown();
  }
}

if (require.main === module) {
  main().catch((err: unknown) => {
    console.error(err instanceof Error ? err.stack ?? err.message : String(err));
    process.exitCode = 1;
  });
}
