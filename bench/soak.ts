// Soak: a real kernel runs a stateful stream with a live chart and pprint for 10 minutes (by default);
// the kernel's RSS is printed every minute. Goal: flat. Not part of CI.
// Usage: node dist/bench/soak.js [minutes=10]
import * as fs from "node:fs";
import * as path from "node:path";
import { KernelClient } from "../cli/client.js";
import { execute, notebookKernelSpec } from "./charts.js";

const ROOT = path.resolve(__dirname, "..", "..");
const MINUTES = Number(process.argv[2] ?? 10);

/** The kernel process's resident set size in MB, from /proc (Linux). */
function rssMb(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN);
  return kb / 1024;
}

async function main(): Promise<void> {
  // --expose-gc: each minute's heap figure is taken after a full collection, so a leak shows as growth.
  const spec = notebookKernelSpec();
  spec.argv = [spec.argv[0], "--expose-gc", ...spec.argv.slice(1)];
  const kernel = await KernelClient.launch(spec, { cwd: ROOT, startTimeoutMs: 60_000 });
  const pid = kernel.child.pid;
  if (pid === undefined) throw new Error("the kernel process has no pid");
  let updates = 0;
  const off = kernel.onIopub((m) => {
    if (m.header.msg_type === "update_display_data") updates++;
  });
  try {
    await execute(kernel, `
const soak = new StreamingContext(sc, Milliseconds(100));
const words = soak.rateStream(5000).map((r) => ["w" + (r.value % 5000), 1] as [string, number]);
const counts = words.reduceByKey((a, b) => a + b).updateStateByKey((v: number[], s?: number) => v.reduce((a, b) => a + b, 0) + (s ?? 0));
counts.pprint();
counts.count().chart({ mark: "line" }, { title: "distinct words" });
words.countByWindow(Seconds(2), Milliseconds(100)).chart({ mark: "line" }, { title: "words in the last 2 s", maxRows: 500 });
soak.start();
`);
    const start = Date.now();
    /** Heap after a full GC, in MB, measured inside the kernel. */
    const heapMb = async (): Promise<number> => {
      const out = await execute(kernel, "gc!();\nconsole.log(process.memoryUsage().heapUsed);");
      const text = out.filter((m) => m.header.msg_type === "stream").map((m) => String((m.content as { text?: string }).text)).join("");
      return Number(text.trim()) / 1024 / 1024;
    };
    console.log(`soak: ${MINUTES} min, 10 batches/s, 5,000 records/s, 5,000 keys of state, 2 charts + pprint`);
    const firstRss = rssMb(pid);
    const firstHeap = await heapMb();
    console.log(`minute  0: RSS ${firstRss.toFixed(1)} MB, heap after GC ${firstHeap.toFixed(1)} MB`);
    let lastRss = firstRss;
    let lastHeap = firstHeap;
    for (let minute = 1; minute <= MINUTES; minute++) {
      await new Promise((r) => setTimeout(r, start + minute * 60_000 - Date.now()));
      const t0 = performance.now();
      await kernel.request("shell", "kernel_info_request", {}, 10_000);
      const infoMs = performance.now() - t0;
      lastHeap = await heapMb();
      lastRss = rssMb(pid);
      console.log(
        `minute ${String(minute).padStart(2)}: RSS ${lastRss.toFixed(1)} MB, heap after GC ${lastHeap.toFixed(1)} MB, ` +
          `${updates} display updates so far, kernel_info ${infoMs.toFixed(1)} ms`,
      );
    }
    console.log(
      `growth over the run: RSS ${(lastRss - firstRss).toFixed(1)} MB (ratio ${(lastRss / firstRss).toFixed(2)}), ` +
        `heap after GC ${(lastHeap - firstHeap).toFixed(1)} MB (ratio ${(lastHeap / firstHeap).toFixed(2)})`,
    );
    await execute(kernel, "await soak.stop();");
  } finally {
    off();
    await kernel.shutdown();
  }
}

if (require.main === module) {
  main().catch((err: unknown) => {
    console.error(err instanceof Error ? err.stack ?? err.message : String(err));
    process.exitCode = 1;
  });
}
