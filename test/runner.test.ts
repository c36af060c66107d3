// The headless runner as a real client: it launches real kernels (Debian's ipykernel; streambook's own once built),
// executes notebooks, and we check the executed notebook, the HTML report, the exit codes and the kernel's end.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Writable } from "node:stream";
import { afterAll, describe, expect, test } from "vitest";
import { firstTutorial, main, newLines, TerminalReporter, parseArgs, splitCommand, type Notebook, type Output } from "../cli/run.js";
import { renderMarkdown, renderReport } from "../cli/report.js";
import { LiveChart } from "../kernel/charts.js";

const root = resolve(__dirname, "..");
const fixture = join(root, "test", "fixtures", "runner-python.ipynb");
const tsFixture = join(root, "test", "fixtures", "runner-typescript.ipynb");
const chartFixture = join(root, "test", "fixtures", "runner-typescript-chart.ipynb");
const work = mkdtempSync(join(tmpdir(), "streambook-runner-test-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const PYTHON = "/usr/bin/python3";
const hasIpykernel = existsSync(PYTHON) && spawnSync(PYTHON, ["-c", "import ipykernel"]).status === 0;
const hasNbformat = hasIpykernel && spawnSync(PYTHON, ["-c", "import nbformat"]).status === 0;
const ipykernelCmd = `${PYTHON} -m ipykernel_launcher -f {connection_file}`;

class Capture extends Writable {
  text = "";
  private waiters: { needle: string; ok: () => void }[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, done: () => void): void {
    this.text += chunk.toString();
    this.waiters = this.waiters.filter((w) => (this.text.includes(w.needle) ? (w.ok(), false) : true));
    done();
  }
  /** Resolves once the captured text contains `needle` (an event, not a sleep). */
  waitFor(needle: string): Promise<void> {
    return new Promise((ok) => (this.text.includes(needle) ? ok() : this.waiters.push({ needle, ok })));
  }
}

async function run(args: string[]) {
  const stdout = new Capture();
  const stderr = new Capture();
  const code = await main(args, { stdout, stderr });
  return { code, stdout: stdout.text, stderr: stderr.text };
}

function outputsOf(nb: Notebook): Output[][] {
  return nb.cells.filter((c) => c.cell_type === "code").map((c) => c.outputs ?? []);
}

const text = (v: unknown) => (Array.isArray(v) ? v.join("") : String(v));

function writeNotebook(name: string, cells: string[], kernel = "python3"): string {
  const nb = {
    nbformat: 4,
    nbformat_minor: 5,
    metadata: { kernelspec: { name: kernel, display_name: kernel, language: "python" } },
    cells: cells.map((source, i) => ({ cell_type: "code", id: `c${i}`, metadata: {}, source, outputs: [], execution_count: null })),
  };
  const path = join(work, name);
  writeFileSync(path, JSON.stringify(nb));
  return path;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("arguments", () => {
  test("parses the options", () => {
    expect(parseArgs(["nb.ipynb", "--out", "x.ipynb", "--html=r.html", "--timeout", "5", "--allow-errors"])).toMatchObject({
      notebook: "nb.ipynb", out: "x.ipynb", html: "r.html", timeoutMs: 5000, allowErrors: true,
    });
    expect(splitCommand(`node "a b.js" -f {connection_file}`)).toEqual(["node", "a b.js", "-f", "{connection_file}"]);
  });

  test("bad usage exits 2 with a message", async () => {
    const r = await run(["--bogus"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/unknown option --bogus/);
    const missing = await run([join(work, "nope.ipynb")]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/cannot read notebook/);
  });

  test("a pprint-style display shows only its new lines", () => {
    expect(newLines("Time: 1\na\nTime: 2\nb", "Time: 2\nb\nTime: 3\nc")).toBe("Time: 3\nc");
    expect(newLines("count 1", "count 2")).toBe("count 2");
  });

  test("the terminal shows a live display's latest state, not every update", () => {
    const stdout = new Capture();
    const term = new TerminalReporter({ stdout, stderr: new Capture() });
    for (let i = 1; i <= 5; i++) term.displayUpdate("abcdef0123", { "text/plain": `count ${i}` });
    expect(stdout.text).toBe("  [display abcdef01] count 1\n");
    term.flush();
    expect(stdout.text).toBe("  [display abcdef01] count 1\n  [display abcdef01] count 5\n");
  });

  test("markdown is rendered safely", () => {
    expect(renderMarkdown("# T <x>\n\nsee [a](javascript:alert(1)) and [b](https://x.org)")).toBe(
      `<h1>T &lt;x&gt;</h1>\n<p>see [a](javascript:alert(1)) and <a href="https://x.org">b</a></p>`);
    expect(renderMarkdown("```ts\nconst a = 1 < 2;\n```")).toBe(`<pre><code class="language-ts">const a = 1 &lt; 2;\n</code></pre>`.replace("\n</code>", "</code>"));
  });
});

describe("report", () => {
  test("a chart shows as its inline SVG; text is escaped; errors lose their ANSI codes", async () => {
    const chart = new LiveChart({ mark: "bar" }, { mode: "update", title: "Counts" });
    chart.batch(1000, [{ key: "hello", value: 2, time: 1000 }]);
    const bundle = await chart.bundle();
    const nb: Notebook = {
      nbformat: 4, nbformat_minor: 5, metadata: {},
      cells: [{
        cell_type: "code", metadata: {}, source: "counts.chart(...)", execution_count: 1,
        outputs: [
          { output_type: "display_data", data: bundle, metadata: {} },
          { output_type: "stream", name: "stdout", text: ["<b>not bold</b>\n"] },
          { output_type: "error", ename: "TypeError", evalue: "x", traceback: ["\u001b[31mTypeError\u001b[0m: x"] },
        ],
      }],
    };
    const html = renderReport(nb, { title: "t" });
    expect(html).toContain(bundle["image/svg+xml"]);
    expect(html).not.toContain("vega-lite/v5.json"); // the spec itself is not dumped
    expect(html).toContain("&lt;b&gt;not bold&lt;/b&gt;");
    expect(html).toContain("TypeError: x");
    expect(html).not.toContain("<script");
  }, 30_000);

  test("without arguments the first tutorial is notebooks/01-*.ipynb", () => {
    const dir = mkdtempSync(join(work, "tut-"));
    execFileSync("mkdir", ["-p", join(dir, "notebooks")]);
    for (const f of ["02-windows.ipynb", "01-wordcount.ipynb", "01-notes.md"]) writeFileSync(join(dir, "notebooks", f), "{}");
    expect(firstTutorial(dir)).toBe(join(dir, "notebooks", "01-wordcount.ipynb"));
  });
});

describe.skipIf(!hasIpykernel)("against Debian's ipykernel", () => {
  test("executes every cell, keeps the updated display, stops at the error", async () => {
    const out = join(work, "executed.ipynb");
    const html = join(work, "report.html");
    const r = await run([fixture, "--kernel-cmd", ipykernelCmd, "--out", out, "--html", html]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/cell 6 of runner-python.ipynb failed; stopped there/);
    // progress lines and live updates in the terminal
    expect(r.stdout).toMatch(/\[1\/7\] cell 1 \.\.\. ok \(\d+ ms\)/);
    expect(r.stdout).toContain("[display counter] count 3");
    expect(r.stdout).toMatch(/\[6\/7\] cell 6 \.\.\. error/);
    expect(r.stdout).not.toMatch(/\u001b\[/); // no colours: stdout is not a TTY

    const nb = JSON.parse(readFileSync(out, "utf8")) as Notebook;
    const outs = outputsOf(nb);
    expect(outs[0]).toEqual([{ output_type: "stream", name: "stdout", text: ["hello\n", "world\n"] }]);
    expect(outs[1].map((o) => o.output_type === "stream" && [o.name, text(o.text)])).toEqual([["stdout", "after\n"], ["stderr", "careful\n"]]);
    // the display created in cell 3 carries the last update sent from cell 4; no transient on disk
    expect(outs[2][0]).toEqual({ output_type: "display_data", data: { "text/plain": ["count 3"], "text/html": ["<b>count 3</b>"] }, metadata: {} });
    expect(outs[2][1]).toMatchObject({ output_type: "execute_result", execution_count: 3, data: { "text/plain": ["42"] } });
    expect(outs[3]).toEqual([{ output_type: "stream", name: "stdout", text: ["updated\n"] }]);
    // clear_output(wait=True): the output before it is gone, the one after stays
    expect(outs[4]).toEqual([{ output_type: "stream", name: "stdout", text: ["kept\n"] }]);
    expect(outs[5]).toHaveLength(1);
    expect(outs[5][0]).toMatchObject({ output_type: "error", ename: "ZeroDivisionError", evalue: "division by zero" });
    // stopped at the error: the last cell never ran
    expect(outs[6]).toEqual([]);
    expect(nb.cells.filter((c) => c.cell_type === "code").map((c) => c.execution_count)).toEqual([1, 2, 3, 4, 5, 6, null]);
    expect(nb.metadata.language_info).toMatchObject({ name: "python" });
    expect(nb.metadata.kernelspec).toMatchObject({ name: "python3" });

    const report = readFileSync(html, "utf8");
    expect(report).toContain("<h1>Runner fixture</h1>");
    expect(report).toContain(`<a href="https://jupyter.org">link</a>`);
    expect(report).toContain("print(&#39;hello&#39;)");
    expect(report).toContain("<b>count 3</b>");
    expect(report).toContain("ZeroDivisionError: division by zero");
    expect(report).not.toContain("\u001b[");
  }, 60_000);

  test.skipIf(!hasNbformat)("the executed notebook is valid nbformat 4", async () => {
    const out = join(work, "valid.ipynb");
    const r = await run([fixture, "--kernel-cmd", ipykernelCmd, "--out", out, "--allow-errors"]);
    expect(r.code).toBe(1); // an error cell still fails the run
    const check = execFileSync(PYTHON, ["-c", "import nbformat,sys; nb=nbformat.read(sys.argv[1], as_version=4); nbformat.validate(nb); print(len(nb.cells))", out]).toString();
    expect(check.trim()).toBe("8");
    // with --allow-errors the cell after the error ran too
    const nb = JSON.parse(readFileSync(out, "utf8")) as Notebook;
    expect(outputsOf(nb)[6]).toEqual([{ output_type: "stream", name: "stdout", text: ["never\n"] }]);
  }, 60_000);

  test("resolves the python3 kernelspec from the notebook's metadata", async () => {
    const nb = writeNotebook("spec.ipynb", ["print(1 + 1)"]);
    const out = join(work, "spec-out.ipynb");
    const r = await run([nb, "--out", out]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("kernel python3");
    expect(outputsOf(JSON.parse(readFileSync(out, "utf8")) as Notebook)[0]).toEqual([{ output_type: "stream", name: "stdout", text: ["2\n"] }]);
  }, 60_000);

  test("a cell over the timeout is interrupted and fails the run", async () => {
    const nb = writeNotebook("slow.ipynb", ["x = 1", "import time\nprint('sleeping', flush=True)\ntime.sleep(60)", "print('never')"]);
    const out = join(work, "slow-out.ipynb");
    const r = await run([nb, "--kernel-cmd", ipykernelCmd, "--timeout", "2", "--out", out]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/\[2\/3\] cell 2 \.\.\. timed out/);
    const outs = outputsOf(JSON.parse(readFileSync(out, "utf8")) as Notebook);
    expect(outs[1].some((o) => o.output_type === "error" && o.ename === "KeyboardInterrupt")).toBe(true);
    expect(outs[2]).toEqual([]);
  }, 60_000);

  test("Ctrl-C interrupts the kernel, shuts it down, and exits 130", async () => {
    const nb = writeNotebook("ctrlc.ipynb", ["import time\nprint('sleeping', flush=True)\ntime.sleep(60)", "print('never')"]);
    const stdout = new Capture();
    const stderr = new Capture();
    const done = main([nb, "--kernel-cmd", ipykernelCmd], { stdout, stderr });
    await stdout.waitFor("sleeping");
    const pid = Number(/pid (\d+)/.exec(stdout.text)![1]);
    expect(pidAlive(pid)).toBe(true);
    process.emit("SIGINT", "SIGINT");
    expect(await done).toBe(130);
    expect(stdout.text).toContain("KeyboardInterrupt");
    expect(pidAlive(pid)).toBe(false);
  }, 60_000);

  test("a kernel that dies in a cell fails the run and the notebook says so", async () => {
    const nb = writeNotebook("dies.ipynb", ["print('before', flush=True)", "import os\nos._exit(7)", "print('never')"]);
    const out = join(work, "dies-out.ipynb");
    const r = await run([nb, "--kernel-cmd", ipykernelCmd, "--out", out]);
    expect(r.code).toBe(1);
    const outs = outputsOf(JSON.parse(readFileSync(out, "utf8")) as Notebook);
    expect(outs[0]).toEqual([{ output_type: "stream", name: "stdout", text: ["before\n"] }]);
    expect(outs[1]).toMatchObject([{ output_type: "error", ename: "KernelDiedError" }]);
    expect(outs[2]).toEqual([]);
  }, 60_000);

  test("a kernel command that does not exist is a clear error", async () => {
    const nb = writeNotebook("nocmd.ipynb", ["1"]);
    const r = await run([nb, "--kernel-cmd", "/nonexistent/kernel -f {connection_file}"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/KernelStartError: cannot start kernel python3 \(\/nonexistent\/kernel -f .*\): spawn \/nonexistent\/kernel ENOENT/);
  }, 60_000);

  test("a kernel that cannot start is a clear error", async () => {
    const nb = writeNotebook("dead.ipynb", ["1"]);
    const r = await run([nb, "--kernel-cmd", `${process.execPath} -e process.exit(3) {connection_file}`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/KernelStartError: kernel python3 exited during start-up \(code 3\)/);
  }, 60_000);
});

const streambookBuilt = existsSync(join(root, "dist", "kernel", "main.js")) && existsSync(join(root, "dist", "kernel", "evaluate.js")) &&
  existsSync(join(root, "bin", "streambook.js"));

describe.skipIf(!streambookBuilt)("against the streambook kernel", () => {
  test("node bin/streambook.js run executes a TypeScript notebook and writes the report", () => {
    const out = join(work, "ts-out.ipynb");
    const html = join(work, "ts-report.html");
    // Empty Jupyter data dirs: the runner falls back to this package's own dist/kernel/main.js.
    const empty = mkdtempSync(join(work, "jupyter-"));
    const env = { ...process.env, JUPYTER_DATA_DIR: empty, XDG_DATA_HOME: empty, JUPYTER_PATH: "" };
    const r = spawnSync(process.execPath, [join(root, "bin", "streambook.js"), "run", tsFixture, "--out", out, "--html", html],
      { encoding: "utf8", timeout: 90_000, env });
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/\[3\/3\] cell 3 \.\.\. ok/);
    const nb = JSON.parse(readFileSync(out, "utf8")) as Notebook;
    const outs = outputsOf(nb);
    expect(outs[0]).toEqual([{ output_type: "stream", name: "stdout", text: ["hello from typescript\n"] }]);
    expect(outs[1][0]).toMatchObject({ output_type: "display_data", data: { "text/plain": ["tick 3"] } });
    expect(outs[2][0]).toMatchObject({ output_type: "execute_result", data: { "text/plain": ["42"] } });
    expect(nb.metadata.language_info).toMatchObject({ name: "typescript" });
    const report = readFileSync(html, "utf8");
    expect(report).toContain("hello from typescript");
    expect(report).toContain("tick 3");
  }, 120_000);

  // The notebook binding (engine globals, live stream displays) is built: a stream's chart runs headless.
  test.skipIf(!existsSync(join(root, "dist", "kernel", "notebook.js")))("a stream's live chart ends in the notebook and the report as a PNG of its last state", () => {
    const out = join(work, "chart-out.ipynb");
    const html = join(work, "chart-report.html");
    const empty = mkdtempSync(join(work, "jupyter-"));
    const env = { ...process.env, JUPYTER_DATA_DIR: empty, XDG_DATA_HOME: empty, JUPYTER_PATH: "" };
    const r = spawnSync(process.execPath, [join(root, "bin", "streambook.js"), "run", chartFixture, "--out", out, "--html", html],
      { encoding: "utf8", timeout: 90_000, env });
    expect(r.status, r.stdout + r.stderr).toBe(0);
    // the terminal saw the chart's final state
    expect(r.stdout).toContain("word counts: bar chart (update), 3 rows, time 2000: a=2, b=1, c=1");
    const nb = JSON.parse(readFileSync(out, "utf8")) as Notebook;
    const chart = outputsOf(nb)[0].find((o) => o.output_type === "display_data" && o.data["application/vnd.vegalite.v5+json"] !== undefined);
    if (chart?.output_type !== "display_data") throw new Error("no chart output under the defining cell");
    const spec = chart.data["application/vnd.vegalite.v5+json"] as { data: { values: Record<string, unknown>[] } };
    expect(spec.data.values).toEqual([
      { key: "a", value: 2, time: 1000 },
      { key: "b", value: 1, time: 2000 },
      { key: "c", value: 1, time: 2000 },
    ]);
    // The last state carries a PNG in place of the SVG (nbconvert would pick the SVG, and Debian 12's strips it).
    expect(chart.data["image/svg+xml"]).toBeUndefined();
    const png = text(chart.data["image/png"]);
    expect(Buffer.from(png, "base64").subarray(1, 4).toString()).toBe("PNG");
    expect(chart.metadata).toMatchObject({ "image/png": { width: expect.any(Number), height: expect.any(Number) } });
    expect(readFileSync(html, "utf8")).toContain(`data:image/png;base64,${png}`);
  }, 120_000);
});
