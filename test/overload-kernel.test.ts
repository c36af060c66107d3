// A real streambook kernel under 4x overload for 60 s: rateStream at four times what its pipeline (two
// live charts, as in the probe that killed the kernel) processes, 50 ms batches, on the system clock.
// kernel_info on shell must be answered within 100 ms at p99, RSS must stay bounded, and every row
// the source produced must be processed or reported as dropped.
// SB_OVERLOAD_LOG=1 prints the measurements; SB_NODE_ARGS passes flags to the kernel's node (--cpu-prof ...).
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KernelClient, type Message } from "../cli/client.js";

const ROOT = path.resolve(__dirname, "..");
const SECONDS = 60;
const OVERLOAD = 4;

let work: string;
let kernel: KernelClient | undefined;

beforeAll(async () => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), "sb-overload-"));
  const main = path.join(ROOT, "dist", "kernel", "main.js");
  if (!fs.existsSync(main)) throw new Error(`${main} is missing: run "npm run build" first`);
  kernel = await KernelClient.launch(
    { name: "streambook", argv: [process.execPath, ...(process.env.SB_NODE_ARGS ? process.env.SB_NODE_ARGS.split(" ") : []), main, "-f", "{connection_file}"], display_name: "streambook", language: "typescript", interrupt_mode: "signal", env: {} },
    { cwd: work, startTimeoutMs: 60_000 },
  );
}, 90_000);

afterAll(async () => {
  await kernel?.shutdown().catch(() => kernel?.kill());
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

/** Runs a cell; resolves with its stdout and stderr text, rejects with its error. */
async function run(code: string, timeoutMs = 120_000): Promise<{ stdout: string; stderr: string }> {
  const k = kernel!;
  const { msgId, reply } = k.send("shell", "execute_request", { code, silent: false, store_history: true, user_expressions: {}, allow_stdin: false, stop_on_error: true });
  const out = { stdout: "", stderr: "" };
  let error = "";
  let idle!: () => void;
  // The cell's output comes on IOPub, which may arrive after the reply on shell: its busy/idle brackets it.
  const settled = new Promise<void>((resolve) => (idle = resolve));
  const off = k.onIopub((m: Message) => {
    if (m.parent_header.msg_id !== msgId) return;
    if (m.header.msg_type === "stream") out[m.content.name === "stderr" ? "stderr" : "stdout"] += String(m.content.text);
    if (m.header.msg_type === "error") error = `${String(m.content.ename)}: ${String(m.content.evalue)}`;
    if (m.header.msg_type === "status" && m.content.execution_state === "idle") idle();
  });
  let timer: NodeJS.Timeout | undefined;
  try {
    const timeout = new Promise<never>((_, fail) => (timer = setTimeout(() => fail(new Error("cell timed out")), timeoutMs)));
    const [r] = await Promise.race([Promise.all([reply, settled]), timeout]);
    if (r.content.status !== "ok") throw new Error(`cell failed: ${error}`);
    return out;
  } finally {
    clearTimeout(timer);
    off();
  }
}

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) * 1024 : NaN;
}

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}

// The probe's shape: rate rows, a bar chart of counts per key and a line chart of values, 50 ms batches.
const PIPELINE = `
function overloadPipeline(ctx: StreamingContext, rowsPerSecond: number, throttle = true) {
  const rows = ctx.rateStream(rowsPerSecond, { throttle });
  const counted = { rows: 0, dropped: 0 };
  rows.foreachRDD((rdd) => { counted.rows += rdd.count(); });
  rows.map((r) => [\`k\${r.value % 8}\`, 1] as [string, number]).reduceByKey((a, b) => a + b)
    .chart({ mark: "bar", encoding: { x: { field: "key", type: "nominal" }, y: { field: "value", type: "quantitative" } } }, { mode: "update" });
  rows.map((r) => ({ t: r.timestamp, v: r.value % 100 }))
    .chart({ mark: "line", encoding: { x: { field: "t", type: "quantitative" }, y: { field: "v", type: "quantitative" } } }, { mode: "append", maxRows: 500 });
  ctx.addStreamingListener({ onRecordsDropped: (e) => { counted.dropped += e.droppedInfo.count; } });
  return { rows, counted };
}
`;

/** Chart worker threads the kernel has started so far (kernel/charts.ts starts one on the first chart render). */
async function chartWorkerStarts(): Promise<number> {
  const charts = JSON.stringify(path.join(ROOT, "dist", "kernel", "charts.js"));
  const { stdout } = await run(`console.log(require(${charts}).chartWorker().starts);`);
  return Number(stdout.trim());
}

describe("a kernel under 4x overload (rateStream, 2 charts, 50 ms batches) for 60 s", () => {
  it("has not started its chart worker before a cell defines a chart", async () => {
    await run(PIPELINE);
    expect(await chartWorkerStarts()).toBe(0);
  }, 60_000);

  it("answers kernel_info within 100 ms at p99, keeps RSS bounded, and accounts for every row", async () => {
    const k = kernel!;
    const pid = k.child.pid!;
    // What the pipeline processes per second, measured in the kernel on the manual clock (unthrottled).
    const cal = await run(`
const cal = new StreamingContext(sc, Milliseconds(50), { clock: "manual" });
const calPipe = overloadPipeline(cal, 1_000_000, false);
await cal.start();
await cal.advance(50); // warm-up
const calStart = performance.now();
for (let i = 0; i < 20; i++) await cal.advance(50);
const calMs = performance.now() - calStart;
await cal.stop();
console.log(JSON.stringify({ capacity: Math.round((20 * 50_000) / (calMs / 1000)) }));
`);
    const capacity = (JSON.parse(cal.stdout.trim().split("\n").pop()!) as { capacity: number }).capacity;
    expect(capacity).toBeGreaterThan(0);
    const rate = OVERLOAD * capacity;

    await run(`
const overloaded = new StreamingContext(sc, Milliseconds(50));
const ov = overloadPipeline(overloaded, ${rate});
const loopDelay = require("node:perf_hooks").monitorEventLoopDelay({ resolution: 10 });
loopDelay.enable();
overloaded.start();
`);
    const latencies: number[] = [];
    const rss: number[] = [];
    const end = Date.now() + SECONDS * 1000;
    let nextRss = 0;
    while (Date.now() < end) {
      const t0 = performance.now();
      await k.request("shell", "kernel_info_request", {}, 30_000);
      latencies.push(performance.now() - t0);
      if (Date.now() >= nextRss) {
        rss.push(rssBytes(pid));
        nextRss = Date.now() + 1000;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    const final = await run(`
await overloaded.stop({ stopGracefully: true });
loopDelay.disable();
const loopMs = (q: number) => Math.round(loopDelay.percentile(q) / 1e6);
const mem = process.memoryUsage();
console.log(JSON.stringify({ processed: ov.counted.rows, dropped: ov.counted.dropped, produced: ov.rows.rowsProduced, owed: ov.rows.rowsOwed, loop: [loopMs(50), loopMs(99), Math.round(loopDelay.max / 1e6)], heapMB: Math.round(mem.heapUsed / 1e6), heapTotalMB: Math.round(mem.heapTotal / 1e6) }));
`);
    const result = JSON.parse(final.stdout.trim().split("\n").pop()!) as { processed: number; dropped: number; produced: number; owed: number };
    const p99 = percentile(latencies, 99);
    const maxRss = Math.max(...rss);
    const firstHalfMax = Math.max(...rss.slice(0, Math.floor(rss.length / 2)));
    const secondHalfMax = Math.max(...rss.slice(Math.floor(rss.length / 2)));
    if (process.env.SB_OVERLOAD_LOG) {
      const worst = latencies.map((l, i) => [Math.round(l), i]).sort((a, b) => b[0]! - a[0]!).slice(0, 12);
      console.log("worst kernel_info (ms, sample #):", JSON.stringify(worst));
      console.log(JSON.stringify({ rssStartMB: rss[0]! / 1e6, capacity, rate, p50: percentile(latencies, 50), p99, max: Math.max(...latencies), n: latencies.length, maxRssMB: maxRss / 1e6, firstHalfMax: firstHalfMax / 1e6, secondHalfMax: secondHalfMax / 1e6, ...result }));
    }

    expect(k.alive).toBe(true);
    expect(latencies.length).toBeGreaterThan(SECONDS * 4);
    // Issue 14's goal. Run alone on a 2-core machine: 58-63 ms once charts render in the chart worker and the
    // type checker lives in its own process (the kernel's heap no longer holds TypeScript's), 138-206 ms before.
    console.log(`kernel_info p99 under 4x overload: ${p99.toFixed(1)} ms (goal 100 ms)`);
    expect(p99).toBeLessThanOrEqual(100);
    // Bounded: well under a gigabyte, and not growing (the second half's peak within 25% of the first's).
    expect(maxRss).toBeLessThan(1024 ** 3);
    expect(secondHalfMax).toBeLessThan(firstHalfMax * 1.25);
    // The overload was real: the source could not produce at the rate asked, so rows are owed.
    expect(result.owed).toBeGreaterThan(0);
    expect(result.produced).toBeGreaterThan(capacity * SECONDS * 0.25);
    // Every row produced was processed, or reported as dropped (under the cell, and counted here).
    expect(result.processed + result.dropped).toBe(result.produced);
    // Both charts (and the calibration's) rendered in the one chart worker, which never had to be replaced.
    expect(await chartWorkerStarts()).toBe(1);
  }, 150_000);
});
