// notebooks/07-recovery.ipynb through the headless runner: the job it SIGKILLs is recovered by the kernel,
// and the outputs show the recovered counts carrying on (never from zero) to exactly the expected total.
import { execFile } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const ROOT = path.resolve(__dirname, "..");
const NOTEBOOK = path.join(ROOT, "notebooks", "07-recovery.ipynb");
const VEGA_LITE = "application/vnd.vegalite.v5+json";

interface Output {
  output_type: string;
  name?: string;
  text?: string | string[];
  data?: Record<string, unknown>;
}
interface Cell {
  cell_type: string;
  source: string | string[];
  outputs?: Output[];
}

const joined = (s: string | string[] | undefined): string => (Array.isArray(s) ? s.join("") : (s ?? ""));

let work: string;
let run: { code: number; stdout: string; stderr: string };
let nbclientRun: { code: number; stdout: string; stderr: string };
const executed: { cells: Cell[] } = { cells: [] };
const byNbclient: { cells: Cell[] } = { cells: [] };
const committed: { cells: Cell[] } = { cells: [] };

// Debian's nbclient, as JupyterLab's own execution would: a real Jupyter client starting the kernelspec.
const NBCLIENT = `
import sys, nbformat
from nbclient import NotebookClient
nb = nbformat.read(sys.argv[1], as_version=4)
NotebookClient(nb, kernel_name="streambook", timeout=90, startup_timeout=60, resources={"metadata": {"path": sys.argv[3]}}).execute()
nbformat.write(nb, sys.argv[2])
`;

function runFile(file: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { cwd: ROOT, env, timeout: 100_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? (typeof err.code === "number" ? err.code : 1) : 0, stdout, stderr }),
    );
  });
}

function readCells(file: string): Cell[] {
  return fs.existsSync(file) ? (JSON.parse(fs.readFileSync(file, "utf8")) as { cells: Cell[] }).cells : [];
}

/** The outputs of the code cell whose source contains `marker` (exactly one must). */
function outputsOf(cells: Cell[], marker: string): Output[] {
  const found = cells.filter((c) => c.cell_type === "code" && joined(c.source).includes(marker));
  if (found.length !== 1) throw new Error(`${found.length} code cells contain ${JSON.stringify(marker)}`);
  return found[0].outputs ?? [];
}

function textOf(cells: Cell[], marker: string): string {
  return outputsOf(cells, marker)
    .map((o) => (o.text !== undefined ? joined(o.text) : joined(o.data?.["text/plain"] as string | string[] | undefined)))
    .join("\n");
}

/** Chart outputs: their rows, and their image (an SVG while live, a PNG in base64 for the last state). */
function chartsOf(cells: Cell[], marker: string): { rows: Record<string, unknown>[]; image: string }[] {
  return outputsOf(cells, marker)
    .filter((o) => o.data?.[VEGA_LITE] !== undefined)
    .map((o) => ({
      rows: ((o.data![VEGA_LITE] as { data?: { values?: Record<string, unknown>[] } }).data?.values ?? []),
      image: joined((o.data!["image/png"] ?? o.data!["image/svg+xml"]) as string | string[] | undefined),
    }));
}

/** An SVG, or a PNG in base64 ("iVBOR" is its signature's encoding). */
const IMAGE = /^(iVBOR|<svg)/;

function numberAfter(text: string, re: RegExp): number {
  const m = re.exec(text);
  if (!m) throw new Error(`${re} not found in:\n${text}`);
  return Number(m[1]);
}

const KILL_CELL = 'job.kill("SIGKILL")';
const RECOVERY_CELL = "recovered = StreamingContext.getOrCreate";

beforeAll(async () => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), "sb-nb07-"));
  const out = path.join(work, "07-recovery.ipynb");
  // A Jupyter data dir whose streambook kernelspec is this checkout's kernel with the notebook binding.
  const data = path.join(work, "jupyter");
  fs.mkdirSync(path.join(data, "kernels", "streambook"), { recursive: true });
  const kernelspec = { argv: [process.execPath, path.join(ROOT, "dist", "kernel", "main.js"), "-f", "{connection_file}"], display_name: "TypeScript (streambook)", language: "typescript", interrupt_mode: "signal" };
  fs.writeFileSync(path.join(data, "kernels", "streambook", "kernel.json"), JSON.stringify(kernelspec));
  const jupyterEnv = { ...process.env, JUPYTER_DATA_DIR: data, JUPYTER_RUNTIME_DIR: path.join(data, "runtime"), JUPYTER_CONFIG_DIR: path.join(data, "config"), PYTHONNOUSERSITE: "1", PYDEVD_DISABLE_FILE_VALIDATION: "1" };
  const nbclientOut = path.join(work, "07-recovery.nbclient.ipynb");
  [run, nbclientRun] = await Promise.all([
    runFile(process.execPath, [path.join(ROOT, "bin", "streambook.js"), "run", NOTEBOOK, "--out", out], process.env),
    runFile("/usr/bin/python3", ["-c", NBCLIENT, NOTEBOOK, nbclientOut, path.dirname(NOTEBOOK)], jupyterEnv),
  ]);
  executed.cells = readCells(out);
  byNbclient.cells = readCells(nbclientOut);
  committed.cells = readCells(NOTEBOOK);
}, 110_000);

afterAll(() => {
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

it("streambook run executes notebooks/07-recovery.ipynb unattended", () => {
  expect(run.code, `streambook run failed:\n${run.stderr}`).toBe(0);
});

it("Debian's nbclient executes it too (python3-nbclient must be installed)", () => {
  expect(nbclientRun.code, `nbclient failed:\n${nbclientRun.stderr}`).toBe(0);
});

describe.each([
  ["run now by `streambook run`", executed],
  ["run now by nbclient", byNbclient],
  ["as committed", committed],
])("notebooks/07-recovery.ipynb %s", (_, nb) => {
  it("has its outputs and no errors", () => {
    const outputs = nb.cells.flatMap((c) => c.outputs ?? []);
    expect(outputs.length).toBeGreaterThan(5);
    expect(outputs.filter((o) => o.output_type === "error")).toEqual([]);
  });

  it("kills the job with SIGKILL after it has counted five files", () => {
    const text = textOf(nb.cells, KILL_CELL);
    expect(text).toContain("the job was killed by SIGKILL");
    const before = numberAfter(text, /before the kill: (\d+) words counted/);
    expect(before).toBe(numberAfter(text, /files 1-5 hold (\d+)\)/));
    // The job's own chart: its running total, batch by batch, never decreasing.
    const [chart] = chartsOf(nb.cells, KILL_CELL);
    const totals = chart.rows.map((r) => r.total as number);
    expect(totals.at(-1)).toBe(before);
    expect(totals).toEqual([...totals].sort((a, b) => a - b));
    expect(chart.image).toMatch(IMAGE);
    // What the dead job left: at least one complete checkpoint file.
    expect(textOf(nb.cells, "readdirSync(checkpointDir)")).toMatch(/checkpoint-\d+-\d+\.sbcp/);
  });

  it("recovers in the kernel, and its live chart carries on from the recovered counts to exactly the total", () => {
    const before = numberAfter(textOf(nb.cells, KILL_CELL), /before the kill: (\d+) words counted/);
    const text = textOf(nb.cells, RECOVERY_CELL);
    expect(text).toContain("state restored: counts; source positions restored: lines");
    const first = numberAfter(text, /first batch after recovery: (\d+) words/);
    const after = numberAfter(text, /^after recovery: (\d+) words counted/m);
    const expected = numberAfter(text, /expected (\d+)/);
    // The first recovered batch is either a replay of the batch the kill cut short (exactly its original
    // input, so the total it had) or the first new batch, which finds the file that arrived while nothing ran.
    expect(first).toBeGreaterThanOrEqual(before);
    expect(after).toBe(expected);
    expect(expected).toBeGreaterThan(first);

    const charts = chartsOf(nb.cells, RECOVERY_CELL);
    expect(charts.length).toBe(2);
    // The line chart: the dead job's history, then the recovered stream's, which starts where it left off.
    const line = charts.find((c) => c.rows.some((r) => "counted_by" in r))!;
    const pre = line.rows.filter((r) => r.counted_by === "job (killed)").map((r) => r.total as number);
    const post = line.rows.filter((r) => r.counted_by === "notebook (recovered)").map((r) => r.total as number);
    expect(pre.length).toBeGreaterThanOrEqual(5);
    expect(pre.at(-1)).toBe(before);
    expect(post[0]).toBe(first);
    expect(post[0]).toBeGreaterThanOrEqual(pre.at(-1)!);
    expect(post.at(-1)).toBe(expected);
    expect(post).toEqual([...post].sort((a, b) => a - b));
    expect(line.image).toMatch(IMAGE);
    // The engine's bar chart of the recovered state: per-word counts that add up to the total.
    const bars = charts.find((c) => c.rows.some((r) => "key" in r))!;
    expect(bars.rows.reduce((n, r) => n + (r.value as number), 0)).toBe(expected);
  });

  it("counts every word exactly once, as a direct count of the files does", () => {
    expect(textOf(nb.cells, "exactly once")).toContain("exactly once: true");
  });
});
