// Every tutorial in notebooks/ is executed twice, by Debian's nbclient and by the headless runner
// (`streambook run`), and each run's outputs are checked: the numbers the tutorial promises, not only "no error".
import * as fs from "node:fs";
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

async function executeWithNbclient(name: string): Promise<Notebook> {
  const out = path.join(work, `nbclient-${name}`);
  await runPython(NBCLIENT, [path.join(NOTEBOOKS, name), out, NOTEBOOKS], env, 150_000);
  return readNotebook(out);
}

async function executeWithRunner(name: string): Promise<Notebook> {
  const out = path.join(work, `runner-${name}`);
  await runProcess(process.execPath, [STREAMBOOK_BIN, "run", path.join(NOTEBOOKS, name), "--out", out], env, 150_000);
  return readNotebook(out);
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

function chartsOf(nb: Notebook, marker: string): { spec: Record<string, unknown>; svg: string }[] {
  return outputsOf(nb, marker)
    .filter((o) => o.data?.[VEGA_LITE] !== undefined)
    .map((o) => ({
      spec: o.data![VEGA_LITE] as Record<string, unknown>,
      svg: [o.data!["image/svg+xml"] ?? ""].flat().join(""),
    }));
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
    expect(charts[0].svg).toContain("<svg");
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
      expect(c.svg).toContain("<svg");
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
    }
  });

  // The two clients run side by side per tutorial: each tutorial takes a few seconds of stream time.
  for (const t of tutorials) {
    describe.concurrent(t, () => {
      it("runs under nbclient with the promised outputs", async () => {
        const nb = await executeWithNbclient(t);
        expect(errorsOf(nb)).toEqual([]);
        checks[t](nb);
      }, 150_000);
      it("runs under the headless runner with the promised outputs", async () => {
        const nb = await executeWithRunner(t);
        expect(errorsOf(nb)).toEqual([]);
        checks[t](nb);
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
    expect(c.svg).toContain("<svg");
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
  expect(regChart[0]!.svg).toContain("<svg");
}

describe("tutorial 10-streaming-ml", () => {
  const name = "10-streaming-ml.ipynb";
  it("is committed with its outputs and without errors", () => {
    const nb = readNotebook(path.join(NOTEBOOKS, name));
    expect(nb.metadata.kernelspec).toMatchObject({ name: "streambook", language: "typescript" });
    expect(errorsOf(nb)).toEqual([]);
    checkStreamingMl(nb);
  });
  describe.concurrent("runs", () => {
    it("under nbclient with the promised outputs", async () => {
      const nb = await executeWithNbclient(name);
      expect(errorsOf(nb)).toEqual([]);
      checkStreamingMl(nb);
    }, 150_000);
    it("under the headless runner with the promised outputs", async () => {
      const nb = await executeWithRunner(name);
      expect(errorsOf(nb)).toEqual([]);
      checkStreamingMl(nb);
    }, 150_000);
  });
});
