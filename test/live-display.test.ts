// Through a real client (Debian's jupyter_client): the live displays of pprint and chart keep receiving
// update_display_data with their display_id after the defining cell's execute_reply, parented to that cell.
import * as path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { REPO, jupyterEnv, makeJupyterDataDir, requirePythonModules, runProcess, runPython, PYTHON } from "./support/notebook-server.js";

const DRIVER = path.join(REPO, "test", "python", "test_live_display.py");
const VEGA_LITE = "application/vnd.vegalite.v5+json";

interface Update {
  count: number;
  mimes: string[];
  parents: string[];
  last_text: string;
}
interface Report {
  reply_status: string;
  live_msg_id: string;
  created: Record<string, string[]>;
  after_reply: Record<string, Update>;
  before_reply: Record<string, Update>;
  errors: unknown[];
  stop_reply: string | null;
}

let env: NodeJS.ProcessEnv;

beforeAll(() => {
  requirePythonModules("jupyter_client");
  env = jupyterEnv(makeJupyterDataDir());
});

// A cell that defines outputs and returns while its stream keeps running on the system clock.
const LIVE_CELL = `
const live = new StreamingContext(sc, Milliseconds(100));
let tick = 0;
const ticks = live.queueStream<number>([], true, sc.parallelize([1, 2, 3])).map((x) => [\`k\${x}\`, x * ++tick] as [string, number]);
ticks.pprint();
ticks.chart({ mark: "bar" }, { mode: "update", title: "ticks" });
live.start();
`;
const STOP_CELL = "await live.stop();";

describe("live displays through jupyter_client", () => {
  it("pprint and chart displays keep updating after the cell's reply, by display_id, under the defining cell", async () => {
    const out = await runProcess(PYTHON, [DRIVER, LIVE_CELL, STOP_CELL, "3", "30"], env, 120_000);
    const report = JSON.parse(out.trim().split("\n").pop() ?? "{}") as Report;
    expect(report.errors).toEqual([]);
    expect(report.reply_status).toBe("ok");
    // pprint, chart, and the cell's log display (its context keeps running after the reply).
    const ids = Object.keys(report.created);
    expect(ids.length).toBe(3);
    const chartId = ids.find((id) => report.created[id].includes(VEGA_LITE));
    const printId = ids.find((id) => report.after_reply[id]?.last_text.includes("Time: "));
    expect(printId).toBeDefined();
    expect(chartId).toBeDefined();

    const print = report.after_reply[printId!];
    expect(print?.count).toBeGreaterThanOrEqual(3);
    expect(print.parents).toEqual([report.live_msg_id]);
    expect(print.last_text).toContain("Time: ");
    expect(print.last_text).toMatch(/\(k1,\d+\)/);

    const chart = report.after_reply[chartId!];
    expect(chart?.count).toBeGreaterThanOrEqual(3);
    expect(chart.parents).toEqual([report.live_msg_id]);
    expect(chart.mimes).toEqual(expect.arrayContaining([VEGA_LITE, "image/svg+xml", "text/plain"]));
    expect(chart.last_text).toContain("ticks: bar chart (update), 3 rows");

    expect(report.stop_reply).toBe("ok");
  }, 120_000);

  it("an interrupt (SIGINT, as Jupyter sends it) during awaitTermination() stops the context and the cell ends normally", async () => {
    const script = `
import json, sys, threading
from jupyter_client.manager import start_new_kernel
km, kc = start_new_kernel(kernel_name="streambook", startup_timeout=60)
try:
    outs = []
    def hook(m):
        c = m["content"]
        outs.append([m["header"]["msg_type"], c.get("text") or c.get("data", {}).get("text/plain")])
        # Interrupt once the first batch has run: the cell is then waiting in awaitTermination().
        if m["header"]["msg_type"] == "stream" and "first batch" in (c.get("text") or ""):
            threading.Timer(0.3, km.interrupt_kernel).start()
    code = sys.argv[1]
    reply = kc.execute_interactive(code, timeout=60, output_hook=hook)
    print(json.dumps({"status": reply["content"]["status"], "outputs": outs}))
finally:
    kc.stop_channels()
    km.shutdown_kernel(now=True)
`;
    const cell = [
      "const c = new StreamingContext(sc, Milliseconds(100));",
      "let logged = false;",
      "c.queueStream<number>([], true, sc.parallelize([1])).foreachRDD(() => { if (!logged) console.log('first batch'); logged = true; });",
      "c.start();",
      "await c.awaitTermination();",
      '"after: " + c.state',
    ].join("\n");
    const out = await runPython(script, [cell], env, 90_000);
    const line = out.trim().split("\n").find((l) => l.startsWith("{")) ?? "{}";
    const report = JSON.parse(line) as { status: string; outputs: [string, string | null][] };
    expect(report.status).toBe("ok");
    expect(report.outputs).toContainEqual(["stream", "Interrupted: stopping the StreamingContext gracefully (interrupt again to abandon the cell)\n"]);
    expect(report.outputs).toContainEqual(["execute_result", "'after: stopped'"]);
  }, 120_000);
});
