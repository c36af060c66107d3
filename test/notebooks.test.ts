// Every tutorial in notebooks/ is executed twice, by Debian's nbclient and by the headless runner
// (`streambook run`), and each run's outputs are checked: the numbers the tutorial promises, not only "no error".
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import {
  REPO,
  STREAMBOOK_BIN,
  codeCells,
  errorsOf,
  jupyterEnv,
  makeJupyterDataDir,
  outputText,
  readNotebook,
  requirePythonModules,
  runProcess,
  runPython,
  tempDir,
  type Notebook,
  type NotebookOutput,
} from "./support/notebook-server.js";

const NOTEBOOKS = path.join(REPO, "notebooks");
const VEGA_LITE = "application/vnd.vegalite.v5+json";

const NBCLIENT = `
import sys, nbformat
from nbclient import NotebookClient
nb = nbformat.read(sys.argv[1], as_version=4)
client = NotebookClient(nb, kernel_name="streambook", timeout=90, startup_timeout=60,
                        resources={"metadata": {"path": sys.argv[3]}})
client.execute()
nbformat.write(nb, sys.argv[2])
`;

let dataDir: string;
let env: NodeJS.ProcessEnv;
const work = tempDir("notebooks");

beforeAll(() => {
  requirePythonModules("nbclient", "nbformat", "jupyter_client");
  dataDir = makeJupyterDataDir();
  env = jupyterEnv(dataDir);
});

/**
 * Runs a client with its own TMPDIR (the kernel's os.tmpdir()); the tutorial must leave nothing there.
 * Returns what was left behind.
 */
async function withOwnTmp(_label: string, runIt: (env: NodeJS.ProcessEnv) => Promise<unknown>): Promise<string[]> {
  // A short path with /tmp's permissions: tutorial 09 runs PostgreSQL as the postgres user with its Unix
  // socket in a folder under TMPDIR, and a socket's path must stay under 108 bytes.
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "sbnb-"));
  fs.chmodSync(tmp, 0o1777);
  try {
    await runIt({ ...env, TMPDIR: tmp });
    return fs.readdirSync(tmp);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

async function executeWithNbclient(name: string): Promise<{ nb: Notebook; leftovers: string[] }> {
  const out = path.join(work, `nbclient-${name}`);
  const leftovers = await withOwnTmp(`nbclient-${name}`, (e) => runPython(NBCLIENT, [path.join(NOTEBOOKS, name), out, NOTEBOOKS], e, 150_000));
  return { nb: readNotebook(out), leftovers };
}

async function executeWithRunner(name: string): Promise<{ nb: Notebook; leftovers: string[] }> {
  const out = path.join(work, `runner-${name}`);
  const leftovers = await withOwnTmp(`runner-${name}`, (e) =>
    runProcess(process.execPath, [STREAMBOOK_BIN, "run", path.join(NOTEBOOKS, name), "--out", out], e, 150_000));
  return { nb: readNotebook(out), leftovers };
}

/** All outputs of the last code cell whose source contains `marker`. */
function outputsOf(nb: Notebook, marker: string): NotebookOutput[] {
  const cell = codeCells(nb).findLast((c) => (Array.isArray(c.source) ? c.source.join("") : c.source).includes(marker));
  if (cell === undefined) throw new Error(`no code cell contains ${JSON.stringify(marker)}`);
  return cell.outputs ?? [];
}

function textOf(nb: Notebook, marker: string): string {
  return outputsOf(nb, marker).map(outputText).join("\n");
}

/** A chart output: its spec, and the image beside it (an SVG while live, a PNG for its last state). */
function chartsOf(nb: Notebook, marker: string): { spec: Record<string, unknown>; svg: string; png: string }[] {
  return outputsOf(nb, marker)
    .filter((o) => o.data?.[VEGA_LITE] !== undefined)
    .map((o) => ({
      spec: o.data![VEGA_LITE] as Record<string, unknown>,
      svg: [o.data!["image/svg+xml"] ?? ""].flat().join(""),
      png: [o.data!["image/png"] ?? ""].flat().join(""),
    }));
}

/** The chart shows an image where no Vega-Lite renderer runs: its SVG, or its PNG (a PNG starts "iVBOR" in base64). */
function hasImage(chart: { svg: string; png: string }): boolean {
  return chart.svg.includes("<svg") || chart.png.startsWith("iVBOR");
}

function rowsOf(spec: Record<string, unknown>): Record<string, unknown>[] {
  const data = spec.data as { values?: Record<string, unknown>[] } | undefined;
  return data?.values ?? [];
}

/** What each tutorial must show, whichever client ran it. */
const checks: Record<string, (nb: Notebook) => void> = {
  "01-stateful-network-wordcount.ipynb": (nb) => {
    // The pprint display under the defining cell, in Spark's layout, with the running counts.
    const live = textOf(nb, "updateStateByKey");
    expect(live).toContain("Time: ");
    expect(live).toMatch(/\('hello', 4\)|\[ ?'hello', 4 ?\]|\(hello,4\)/);
    const charts = chartsOf(nb, "updateStateByKey");
    expect(charts.length).toBe(1);
    const rows = rowsOf(charts[0].spec);
    expect(rows).toContainEqual(expect.objectContaining({ key: "hello", value: 4 }));
    expect(rows).toContainEqual(expect.objectContaining({ key: "world", value: 3 }));
    expect(hasImage(charts[0])).toBe(true);
    // The final state, asked for from another cell.
    const final = textOf(nb, "finalCounts");
    expect(final).toContain("[ 'hello', 4 ]");
    expect(final).toContain("[ 'world', 3 ]");
    expect(final).toContain("[ 'be', 2 ]");
  },
  "02-windowed-top-words.ipynb": (nb) => {
    const charts = chartsOf(nb, "reduceByKeyAndWindow");
    expect(charts.length).toBe(2);
    for (const c of charts) {
      expect(rowsOf(c.spec).length).toBeGreaterThan(0);
      expect(hasImage(c)).toBe(true);
    }
    const check = textOf(nb, "windowsCompared");
    expect(check).toMatch(/agree: true/);
    const compared = Number(/windowsCompared: (\d+)/.exec(check)?.[1]);
    expect(compared).toBeGreaterThanOrEqual(16);
  },
  "03-stream-batch-join.ipynb": (nb) => {
    const totals = textOf(nb, "revenueByCategory");
    expect(totals).toContain("[ 'books', 114 ]");
    expect(totals).toContain("[ 'games', 150 ]");
    expect(totals).toContain("[ 'music', 48 ]");
    expect(textOf(nb, "unknownProducts")).toContain("[ 'p9', 1 ]");
    const charts = chartsOf(nb, "chart(");
    expect(charts.length).toBeGreaterThan(0);
    expect(rowsOf(charts[0].spec).length).toBeGreaterThan(0);
  },
  "04-sessions-mapwithstate.ipynb": (nb) => {
    const ended = textOf(nb, "endedSessions");
    expect(ended).toContain("user: 'ada', clicks: 4");
    expect(ended).toContain("user: 'bob', clicks: 2");
    expect(ended).toContain("user: 'cyd', clicks: 3");
    expect(textOf(nb, "isTimingOut")).toContain("Time: ");
  },
  "05-custom-receiver-backpressure.ipynb": (nb) => {
    const capped = textOf(nb, "maxPerBatch");
    const max = Number(/maxPerBatch: (\d+)/.exec(capped)?.[1]);
    const limit = Number(/limitPerBatch: (\d+)/.exec(capped)?.[1]);
    expect(max).toBeGreaterThan(0);
    expect(max).toBeLessThanOrEqual(limit);
    expect(chartsOf(nb, "chart(").length).toBeGreaterThan(0);
  },
  "06-monitoring-status-panel.ipynb": (nb) => {
    const panel = outputsOf(nb, "ssc.ui()");
    const spec = panel.find((o) => o.data?.[VEGA_LITE] !== undefined)?.data?.[VEGA_LITE] as Record<string, unknown> | undefined;
    expect(spec).toBeDefined();
    expect(rowsOf(spec!).length).toBeGreaterThan(0);
    expect(panel.some((o) => String(o.data?.["text/html"] ?? "").includes("completed batches"))).toBe(true);
    const summary = textOf(nb, "summary()");
    expect(summary).toMatch(/completedBatches: [1-9]/);
  },
  "09-sql-history-sinks.ipynb": (nb) => {
    // The customers' Parquet history shows as a DataFrame table.
    const history = outputsOf(nb, "customers.createOrReplaceTempView");
    expect(history.some((o) => String([o.data?.["text/html"] ?? ""].flat().join("")).includes("<table"))).toBe(true);
    expect(textOf(nb, "customers.createOrReplaceTempView")).toContain("|          4| Dee|     UK|");
    // SQL from another cell while the stream ran: a table of partial revenue.
    const partial = textOf(nb, "whileRunning");
    expect(partial).toMatch(/\|country\|revenue\|/);
    expect(partial).not.toContain("|     UK|    560|");
    // After the drain: the final revenue, and every order exactly once in Parquet and PostgreSQL (or a clear skip).
    const final = textOf(nb, "finalRevenue");
    expect(final).toContain("|     FR|    260|");
    expect(final).toContain("|     SE|    250|");
    expect(final).toContain("|     UK|    560|");
    expect(final).toContain("Parquet: 36 orders");
    const pg = textOf(nb, "postgresBin");
    if (pg.includes("not installed")) expect(pg).toContain("skipping the PostgreSQL sink");
    else expect(final).toContain('PostgreSQL: {"orders":36,"distinct_orders":36,"amount":1070}');
  },
};

const tutorials = fs.readdirSync(NOTEBOOKS).filter((f) => /^0[1-6]-.*\.ipynb$/.test(f) || /^09-.*\.ipynb$/.test(f)).sort();

describe("tutorials", () => {
  it("are the ones the README promises", () => {
    expect(tutorials.map((t) => t.slice(0, 2))).toEqual(["01", "02", "03", "04", "05", "06", "09"]);
    for (const t of tutorials) expect(Object.keys(checks)).toContain(t);
  });

  it("are committed with their outputs and without errors", () => {
    for (const t of tutorials) {
      const nb = readNotebook(path.join(NOTEBOOKS, t));
      expect(nb.metadata.kernelspec).toMatchObject({ name: "streambook", language: "typescript" });
      expect(errorsOf(nb), t).toEqual([]);
      expect(codeCells(nb).some((c) => (c.outputs ?? []).length > 0), `${t} has no outputs`).toBe(true);
      checks[t](nb);
      // Every committed chart ends with its PNG: nbconvert's HTML on Debian 12 and GitHub show that.
      for (const c of codeCells(nb).flatMap((cell) => cell.outputs ?? []).filter((o) => o.data?.[VEGA_LITE] !== undefined)) {
        expect([c.data?.["image/png"] ?? ""].flat().join("").startsWith("iVBOR"), `${t}: a chart without its PNG`).toBe(true);
      }
    }
  });

  it("do not claim that updateStateByKey or inverse windows need a checkpoint directory (they do not here)", () => {
    for (const t of tutorials) {
      const text = readNotebook(path.join(NOTEBOOKS, t)).cells.filter((c) => c.cell_type === "markdown").map((c) => [c.source].flat().join("")).join("\n");
      expect(text, t).not.toMatch(/needs? a checkpoint directory, as in Spark/);
    }
  });

  // The two clients run side by side per tutorial: each tutorial takes a few seconds of stream time.
  for (const t of tutorials) {
    describe.concurrent(t, () => {
      it("runs under nbclient with the promised outputs, leaving nothing in the temp folder", async () => {
        const { nb, leftovers } = await executeWithNbclient(t);
        expect(errorsOf(nb)).toEqual([]);
        checks[t](nb);
        expect(leftovers).toEqual([]);
      }, 150_000);
      it("runs under the headless runner with the promised outputs, leaving nothing in the temp folder", async () => {
        const { nb, leftovers } = await executeWithRunner(t);
        expect(errorsOf(nb)).toEqual([]);
        checks[t](nb);
        expect(leftovers).toEqual([]);
      }, 150_000);
    });
  }
});

// Tutorial 10 (streaming ML) is checked on its own, so the tutorials above keep their list.
function checkStreamingMl(nb: Notebook): void {
  const kmCharts = chartsOf(nb, "forgetful.chart");
  expect(kmCharts.length).toBe(2);
  for (const c of kmCharts) {
    const rows = rowsOf(c.spec);
    expect(rows.filter((r) => r.kind === "centre")).toHaveLength(3);
    expect(rows.filter((r) => r.kind === "point").length).toBeGreaterThan(100);
    expect(hasImage(c), "a chart without its image").toBe(true);
  }
  // The half-life model follows the drift more closely than the one that remembers everything.
  const lag = textOf(nb, "centreLag");
  const half = Number(/halfLife2: ([\d.]+)/.exec(lag)?.[1]);
  const all = Number(/decay1: ([\d.]+)/.exec(lag)?.[1]);
  expect(half).toBeLessThan(1.0);
  expect(half).toBeLessThan(all);
  // The regression's error before each update falls by orders of magnitude and the weights are learned.
  const result = textOf(nb, "errorsPerBatch");
  const errors = (/errorsPerBatch: \[([^\]]*)\]/.exec(result)?.[1] ?? "").split(",").map(Number);
  expect(errors.length).toBe(15);
  expect(errors[0]!).toBeGreaterThan(100 * errors[errors.length - 1]!);
  expect(errors[1]!).toBeLessThan(errors[0]!);
  expect(errors[2]!).toBeLessThan(errors[1]!);
  const learned = (/learned: \[([^\]]*)\]/.exec(result)?.[1] ?? "").split(",").map(Number);
  [2.0, -3.0, 0.5].forEach((w, i) => expect(Math.abs(learned[i]! - w)).toBeLessThan(0.1));
  const regChart = chartsOf(nb, "regression.chart()");
  expect(regChart.length).toBe(1);
  expect(rowsOf(regChart[0]!.spec).filter((r) => r.panel === "error")).toHaveLength(15);
  expect(hasImage(regChart[0]!), "a chart without its image").toBe(true);
}

describe("tutorial 10-streaming-ml", () => {
  const name = "10-streaming-ml.ipynb";
  it("is committed with its outputs and without errors", () => {
    const nb = readNotebook(path.join(NOTEBOOKS, name));
    expect(nb.metadata.kernelspec).toMatchObject({ name: "streambook", language: "typescript" });
    expect(errorsOf(nb)).toEqual([]);
    checkStreamingMl(nb);
    for (const c of codeCells(nb).flatMap((cell) => cell.outputs ?? []).filter((o) => o.data?.[VEGA_LITE] !== undefined)) {
      expect([c.data?.["image/png"] ?? ""].flat().join("").startsWith("iVBOR"), "a chart without its PNG").toBe(true);
    }
  });
  describe.concurrent("runs", () => {
    it("under nbclient with the promised outputs", async () => {
      const { nb, leftovers } = await executeWithNbclient(name);
      expect(errorsOf(nb)).toEqual([]);
      checkStreamingMl(nb);
      expect(leftovers).toEqual([]);
    }, 150_000);
    it("under the headless runner with the promised outputs", async () => {
      const { nb, leftovers } = await executeWithRunner(name);
      expect(errorsOf(nb)).toEqual([]);
      checkStreamingMl(nb);
      expect(leftovers).toEqual([]);
    }, 150_000);
  });
});

// Tutorial 08 (a Kafka clickstream: lag, a kill, a recovery) is checked on its own, like tutorial 10.
function checkKafkaClickstream(nb: Notebook): void {
  expect(textOf(nb, "sendClicks(1600)")).toMatch(/the job was killed by SIGKILL after counting 1200 page views/);
  // The line chart carries on from the killed job's line.
  const lines = chartsOf(nb, "recovered.ui()").filter((c) => JSON.stringify(c.spec).includes("Page views counted so far"));
  expect(lines.length).toBe(1);
  const by = new Set(rowsOf(lines[0]!.spec).map((r) => r.counted_by));
  expect(by).toEqual(new Set(["job (killed)", "notebook (recovered)"]));
  // The live bar chart of page views.
  const bars = chartsOf(nb, "recovered.ui()").filter((c) => JSON.stringify(c.spec).includes("Page views (recovered)"));
  expect(bars.length).toBe(1);
  expect(rowsOf(bars[0]!.spec).map((r) => r.key).sort()).toEqual(["cart", "checkout", "home", "product", "search"]);
  expect(hasImage(bars[0]!)).toBe(true);
  // The status panel: a lag chart per partition and a table of the four partitions.
  const panel = chartsOf(nb, "recovered.ui()").find((c) => JSON.stringify(c.spec).includes("Lag behind the log's end"));
  expect(panel).toBeDefined();
  const lagChart = (panel!.spec.vconcat as { title: string; data?: { values: { partition: string }[] } }[]).find((c) => c.title.startsWith("Lag behind"))!;
  expect(new Set(lagChart.data!.values.map((r) => r.partition))).toEqual(new Set(["clicks-0", "clicks-1", "clicks-2", "clicks-3"]));
  const html = outputsOf(nb, "recovered.ui()").map((o) => [o.data?.["text/html"] ?? ""].flat().join("")).join("\n");
  expect(html).toContain("Input partitions");
  for (const p of [0, 1, 2, 3]) expect(html).toContain(`<td>clicks-${p}</td>`);
  // The lag drained: from the backlog down to zero, never up; every click counted once; the group's lag is zero.
  const summary = textOf(nb, "panel.summary()");
  expect(summary).toMatch(/verdict: (keeping up|catching up|falling behind): /);
  const lagHistory = (/lagHistory: \[([^\]]*)\]/.exec(summary)?.[1] ?? "").split(",").map(Number);
  expect(lagHistory[0]).toBeGreaterThanOrEqual(800);
  expect(lagHistory.at(-1)).toBe(0);
  for (let i = 1; i < lagHistory.length; i++) expect(lagHistory[i]!).toBeLessThanOrEqual(lagHistory[i - 1]!);
  expect(summary).toContain("totalLag: 0");
  const check = textOf(nb, "exactly once");
  expect(check).toContain("exactly once: true");
  expect(check).toContain("group lag: 0, 0, 0, 0");
}

describe("tutorial 08-kafka-clickstream", () => {
  const name = "08-kafka-clickstream.ipynb";
  it("is committed with its outputs and without errors", () => {
    const nb = readNotebook(path.join(NOTEBOOKS, name));
    expect(nb.metadata.kernelspec).toMatchObject({ name: "streambook", language: "typescript" });
    expect(errorsOf(nb)).toEqual([]);
    checkKafkaClickstream(nb);
  });
  describe.concurrent("runs", () => {
    it("under nbclient with the promised outputs", async () => {
      const { nb, leftovers } = await executeWithNbclient(name);
      expect(errorsOf(nb)).toEqual([]);
      expect(leftovers).toEqual([]);
      checkKafkaClickstream(nb);
    }, 150_000);
    it("under the headless runner with the promised outputs", async () => {
      const { nb, leftovers } = await executeWithRunner(name);
      expect(errorsOf(nb)).toEqual([]);
      expect(leftovers).toEqual([]);
      checkKafkaClickstream(nb);
    }, 150_000);
  });
});
