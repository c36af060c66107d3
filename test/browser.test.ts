// Headless Chromium against Debian's classic Notebook: open tutorial 02, run all its cells, and check
// that the live chart's SVG (classic Notebook shows the image/svg+xml beside the Vega-Lite) changes.
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chromium, type Browser, type Page } from "playwright-core";
import {
  REPO,
  requireFile,
  startNotebookServer,
  tempDir,
  type NotebookServer,
} from "./support/notebook-server.js";

const TUTORIAL = "02-windowed-top-words.ipynb";

let server: NotebookServer;
let browser: Browser;
const shots = tempDir("screenshots");

beforeAll(async () => {
  requireFile("/usr/bin/chromium", "apt-get install -y chromium (Debian's Chromium; never `playwright install`)");
  server = await startNotebookServer();
  // A copy without outputs, so what the page shows is what this run produced.
  const nb = JSON.parse(fs.readFileSync(path.join(REPO, "notebooks", TUTORIAL), "utf8")) as {
    cells: { cell_type: string; outputs?: unknown[]; execution_count?: number | null }[];
  };
  for (const c of nb.cells) {
    if (c.cell_type === "code") {
      c.outputs = [];
      c.execution_count = null;
      // 60 batches (15 s) in place of 16: on a loaded machine the 4 s stream could end between screenshots.
      const source = c as { source?: string | string[] };
      source.source = [source.source ?? ""].flat().join("").replace("{ length: 16 }", "{ length: 60 }");
    }
  }
  fs.writeFileSync(path.join(server.notebookDir, TUTORIAL), JSON.stringify(nb));
  browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
  });
}, 90_000);

afterAll(async () => {
  await browser?.close();
  await server?.stop();
}, 60_000);

/** The chart outputs' SVG markup (vega's SVGs carry class "marks"). */
async function chartSvgs(page: Page): Promise<string[]> {
  return page.$$eval(".output_area svg.marks", (els) => els.map((e) => e.outerHTML));
}

describe("classic Notebook in headless Chromium", () => {
  it("runs tutorial 02 and its live chart's SVG changes between two screenshots a second apart", async () => {
    const page = await browser.newPage({ viewport: { width: 1200, height: 2400 } });
    const consoleErrors: string[] = [];
    page.on("pageerror", (err) => consoleErrors.push(err.message));
    await page.goto(`${server.url}/notebooks/${TUTORIAL}?token=${server.token}`);
    // The kernel must be connected and idle before Run All, or the first cells queue behind start-up.
    await page.waitForFunction(
      () => {
        const j = (window as unknown as { Jupyter?: { notebook?: { kernel?: { is_connected(): boolean; info_reply?: { status?: string } } | null } } }).Jupyter;
        const k = j?.notebook?.kernel;
        return k != null && k.is_connected() && k.info_reply?.status === "ok";
      },
      undefined,
      { timeout: 60_000 },
    );
    await page.evaluate(() => {
      (window as unknown as { Jupyter: { notebook: { execute_all_cells(): void } } }).Jupyter.notebook.execute_all_cells();
    });
    // The first chart SVG arrives with the display's first update; then the stream keeps moving it.
    await page.waitForFunction(() => document.querySelectorAll(".output_area svg.marks").length > 0, undefined, {
      timeout: 60_000,
    });
    // Wait for rows: an empty chart has no mark paths yet.
    await page.waitForFunction(
      () => Array.from(document.querySelectorAll(".output_area svg.marks")).some((s) => s.querySelectorAll("path, rect").length > 8),
      undefined,
      { timeout: 60_000 },
    );
    const first = await chartSvgs(page);
    await page.screenshot({ path: path.join(shots, "chart-1.png"), fullPage: true });
    // A second apart; a loaded machine spaces chart updates further, so a few more seconds are allowed.
    let second = first;
    for (let i = 0; i < 10 && second.join("\n") === first.join("\n"); i++) {
      await page.waitForTimeout(1000);
      second = await chartSvgs(page);
    }
    await page.screenshot({ path: path.join(shots, "chart-2.png"), fullPage: true });
    expect(first.length).toBeGreaterThan(0);
    expect(second.length).toBeGreaterThan(0);
    expect(second.join("\n")).not.toEqual(first.join("\n"));
    expect(fs.statSync(path.join(shots, "chart-1.png")).size).toBeGreaterThan(1000);
    expect(fs.statSync(path.join(shots, "chart-2.png")).size).toBeGreaterThan(1000);
    // Let the notebook finish, so the server's shutdown does not race a running cell.
    await page.waitForFunction(
      () => {
        const j = (window as unknown as { Jupyter: { notebook: { kernel: { _msg_callbacks?: object } ; get_cells(): { get_text(): string; input_prompt_number?: unknown }[] } } }).Jupyter;
        return j.notebook.get_cells().every((c) => c.input_prompt_number !== "*");
      },
      undefined,
      { timeout: 90_000 },
    );
    const errorOutputs = await page.$$eval(".output_error", (els) => els.map((e) => e.textContent ?? ""));
    expect(errorOutputs).toEqual([]);
    expect(consoleErrors).toEqual([]);
    await page.close();
  }, 180_000);
});
