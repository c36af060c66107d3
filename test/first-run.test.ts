// The first ten minutes of a new user, through a real kernel over ZeroMQ (the runner's own client): the
// README's first example, a wrong port, a clean stderr, readable failure lines, the help text, and a
// runner that survives a port taken between choosing it and the kernel binding it.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KernelClient, type Message } from "../cli/client.js";
import { freePort } from "./support/ports.js";
import { REPO, STREAMBOOK_BIN, runProcess, tempDir } from "./support/notebook-server.js";

const VEGA_LITE = "application/vnd.vegalite.v5+json";
const README_LINES = ["hello world", "hello streambook", "to be or not to be", "hello spark streaming", "the world is a stream"];

let kernel: KernelClient;
let kernelStderr = "";
const work = tempDir("first-run");
/** The line server the README's example reads from (Spark's guide runs `nc -lk 9999`). */
let lineServer: net.Server;
let linePort: number;
/** Every IOPub message, in order. */
const iopub: Message[] = [];

beforeAll(async () => {
  // The lines go to the first connection, which then stays open, as `nc -lk` with one typist would.
  let sent = false;
  lineServer = net.createServer((socket) => {
    socket.on("error", () => {});
    if (!sent) socket.write(README_LINES.map((l) => l + "\n").join(""));
    sent = true;
  });
  await new Promise<void>((resolve) => lineServer.listen(0, "127.0.0.1", resolve));
  linePort = (lineServer.address() as net.AddressInfo).port;
  kernel = await KernelClient.launch(
    {
      name: "streambook",
      argv: [process.execPath, path.join(REPO, "dist", "kernel", "main.js"), "-f", "{connection_file}"],
      display_name: "streambook",
      language: "typescript",
      interrupt_mode: "signal",
      env: {},
    },
    { cwd: work, startTimeoutMs: 60_000, onKernelOutput: (text) => (kernelStderr += text) },
  );
  kernel.onIopub((m) => iopub.push(m));
}, 90_000);

afterAll(async () => {
  await kernel?.shutdown();
  await new Promise<void>((resolve) => lineServer?.close(() => resolve()));
  fs.rmSync(work, { recursive: true, force: true });
}, 30_000);

/** Runs a cell to its reply; returns its msg_id. Fails the test with the kernel's error if it has one. */
async function run(code: string, timeoutMs = 60_000): Promise<string> {
  const { msgId, reply } = kernel.send("shell", "execute_request", {
    code,
    silent: false,
    store_history: true,
    user_expressions: {},
    allow_stdin: false,
    stop_on_error: true,
  });
  let timer: NodeJS.Timeout | undefined;
  const r = await Promise.race([
    reply,
    new Promise<never>((_, fail) => (timer = setTimeout(() => fail(new Error(`cell timed out: ${code.slice(0, 80)}`)), timeoutMs))),
  ]).finally(() => clearTimeout(timer));
  const content = r.content as { status?: string; ename?: string; evalue?: string };
  if (content.status !== "ok") throw new Error(`cell failed: ${content.ename}: ${content.evalue}\n${code}`);
  return msgId;
}

function parentOf(m: Message): string | undefined {
  return (m.parent_header as { msg_id?: string }).msg_id;
}

/** The display ids a cell created, and the text each shows now (after its updates, wherever they came from). */
function displaysOf(cellMsgId: string): Map<string, { data: Record<string, unknown>; texts: string[] }> {
  const displays = new Map<string, { data: Record<string, unknown>; texts: string[] }>();
  for (const m of iopub) {
    const content = m.content as { data?: Record<string, unknown>; transient?: { display_id?: string } };
    const id = content.transient?.display_id;
    if (id === undefined || content.data === undefined) continue;
    if (m.header.msg_type === "display_data" && parentOf(m) === cellMsgId) displays.set(id, { data: content.data, texts: [] });
    const d = displays.get(id);
    if (m.header.msg_type === "update_display_data" && d !== undefined) d.data = content.data;
    if (d !== undefined) d.texts.push(String(content.data["text/plain"] ?? ""));
  }
  return displays;
}

function streamText(cellMsgId: string): string {
  return iopub
    .filter((m) => m.header.msg_type === "stream" && parentOf(m) === cellMsgId)
    .map((m) => String((m.content as { text?: string }).text))
    .join("");
}

describe("the first ten minutes", () => {
  it("the README's first example charts each word's running count once, as counts.state() has it", async () => {
    const readme = fs.readFileSync(path.join(REPO, "README.md"), "utf8");
    const example = /```ts\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(example).toContain(".chart(");
    // The example reads Spark's `nc -lk 9999`; here the test's line server.
    expect(example).toContain('socketTextStream("localhost", 9999)');
    const defining = await run(example!.replace('socketTextStream("localhost", 9999)', `socketTextStream("127.0.0.1", ${linePort})`));
    await run(`
for (let i = 0; i < 300 && (counts.state().collectAsMap().get("hello") ?? 0) < 4; i++) await new Promise((r) => setTimeout(r, 50));
await new Promise((r) => setTimeout(r, 1500)); // more batches restate the same totals
await ssc.stop();
`);
    const state = JSON.parse(await evaluate("JSON.stringify(counts.state().collect())")) as [string, number][];
    expect(new Map(state).get("hello")).toBe(4); // 3 from the lines, 1 from initialRDD
    const chart = [...displaysOf(defining).values()].find((d) => d.data[VEGA_LITE] !== undefined);
    expect(chart).toBeDefined();
    const rows = ((chart!.data[VEGA_LITE] as { data: { values: { key: string; value: number }[] } }).data.values);
    // One row per word, with the state's value: batches that restate a total are not stacked.
    expect(rows.map((r) => [r.key, r.value]).sort()).toEqual([...state].sort());
  }, 120_000);

  it("a wrong port shows the receiver's error and retry state under the cell that defined the stream", async () => {
    const closed = await freePort(); // nothing listens there
    const defining = await run(`
const bad = new StreamingContext(sc, Milliseconds(200));
bad.socketTextStream("127.0.0.1", ${closed}).pprint();
`);
    await run("bad.start();\nawait bad.awaitTerminationOrTimeout(2000);\nawait bad.stop();");
    const texts = () => [...displaysOf(defining).values()].flatMap((d) => d.texts).join("\n");
    expect(texts()).toContain(`ECONNREFUSED 127.0.0.1:${closed}`);
    expect(texts()).toMatch(/failures? so far, retrying/);
    // The stop's own line follows (display updates are rate-limited, so it may come just after the reply).
    const stopped = new RegExp(`receiver 0 \\(socket 127\\.0\\.0\\.1:${closed}\\): stopped after \\d+ failures?; last error: .*ECONNREFUSED`);
    await expect.poll(texts, { timeout: 10_000 }).toMatch(stopped);
  }, 60_000);

  it("stderr shows other warnings, but not the vm loader's ExperimentalWarning", async () => {
    await run(`
const p = await import("node:path");
process.emitWarning("streambook test: another experimental feature", "ExperimentalWarning");
p.sep`);
    const deadline = Date.now() + 10_000;
    while (!kernelStderr.includes("another experimental feature") && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(kernelStderr).toContain("ExperimentalWarning: streambook test: another experimental feature");
    expect(kernelStderr).not.toContain("USE_MAIN_CONTEXT_DEFAULT_LOADER");
  }, 30_000);

  it("a failed batch names its time as the Time: headers do", async () => {
    const cell = await run(`
const failing = new StreamingContext(sc, Milliseconds(200), { clock: "manual" });
const one = failing.queueStream([sc.parallelize([1])]);
one.pprint();
one.foreachRDD(() => { throw new Error("boom"); });
failing.start();
await failing.advance(200);
await failing.stop();
`);
    const printed = [...displaysOf(cell).values()].map((d) => String(d.data["text/plain"] ?? "")).join("\n");
    const header = /Time: (.+)/.exec(printed)?.[1];
    expect(header).toBe("200 ms");
    expect(streamText(cell)).toMatch(/batch 200 ms: output operation \d+ \(foreachRDD\) failed: .*boom/);
  }, 60_000);
});

/** The value of an expression as text (its text/plain result, quotes removed). */
async function evaluate(expression: string): Promise<string> {
  const id = await run(expression);
  const result = iopub.find((m) => m.header.msg_type === "execute_result" && parentOf(m) === id);
  const text = String((result?.content as { data?: Record<string, unknown> } | undefined)?.data?.["text/plain"] ?? "");
  return text.replace(/^'|'$/g, "").replace(/\\'/g, "'");
}

describe("the command line", () => {
  it("says that `streambook run` runs a notebook", () => {
    const r = spawnSync(process.execPath, [STREAMBOOK_BIN, "help"], { encoding: "utf8" });
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/streambook run .*run a notebook/);
    expect(r.stdout).not.toContain("streaming program");
  });

  it("relaunches a kernel whose port was taken before it could bind it, and names the port when it keeps failing", async () => {
    const dir = tempDir("port-race");
    try {
      const notebook = path.join(dir, "one.ipynb");
      fs.writeFileSync(notebook, JSON.stringify({
        nbformat: 4, nbformat_minor: 5, metadata: { kernelspec: { name: "streambook", display_name: "streambook", language: "typescript" } },
        cells: [{ cell_type: "code", id: "c1", source: "1 + 1", metadata: {}, outputs: [], execution_count: null }],
      }));
      // Another process takes the shell port between the runner choosing it and the kernel binding it:
      // this wrapper listens on it first (the first launch only, or every launch), then starts the kernel.
      const wrapper = path.join(dir, "wrapper.cjs");
      fs.writeFileSync(wrapper, `
const fs = require("node:fs"), net = require("node:net");
const [connection, marker, cli, port = "shell_port"] = process.argv.slice(2);
const info = JSON.parse(fs.readFileSync(connection, "utf8"));
const start = () => require(cli).main(["kernel", "-f", connection]);
if (marker === "every launch" || !fs.existsSync(marker)) {
  if (marker !== "every launch") fs.writeFileSync(marker, "");
  net.createServer().listen(info[port], "127.0.0.1", start);
} else start();
`);
      const cli = path.join(REPO, "dist", "cli", "streambook.js");
      const runner = (marker: string, port = "shell_port") => [STREAMBOOK_BIN, "run", notebook, "--kernel-cmd", `${process.execPath} ${wrapper} {connection_file} "${marker}" ${cli} ${port}`];
      const once = await runProcess(process.execPath, runner(path.join(dir, "taken-once")), process.env, 90_000, dir);
      expect(once).toContain("done: 1 cell(s)");
      // The heartbeat port, bound by the kernel's control thread: shell may answer before that bind fails, and
      // the launch must still see the failure and launch again, not leave it to the first cell.
      const hbOnce = await runProcess(process.execPath, runner(path.join(dir, "hb-taken-once"), "hb_port"), process.env, 90_000, dir);
      expect(hbOnce).toContain("done: 1 cell(s)");
      const every = spawnSync(process.execPath, runner("every launch"), { encoding: "utf8", cwd: dir, timeout: 90_000 });
      expect(every.status).toBe(1);
      expect(every.stderr).toMatch(/was taken before the kernel could bind it; launching the kernel again with other ports/);
      expect(every.stderr).toMatch(/KernelPortInUseError: kernel streambook could not bind port \d+ \(shell\) on 127\.0\.0\.1: address already in use/);
      expect(every.stderr).toMatch(/cannot bind the shell channel to tcp:\/\/127\.0\.0\.1:\d+ \(port \d+\): Address already in use/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 180_000);
});
