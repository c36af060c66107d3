// JupyterLab 4 in headless Chromium (the front end of test/jupyterlab, served by Debian's Jupyter Server):
// tutorial 02 run from the page, its chart drawn by JupyterLab's own Vega renderer and moving, the
// completer fed by the kernel, and the toolbar's interrupt ending an awaited stream.
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Locator, Page } from "playwright-core";
import { ensureLabFrontend, launchChromium, type Chromium } from "./support/jupyterlab.js";
import { REPO, startNotebookServer, type NotebookServer } from "./support/notebook-server.js";

const TUTORIAL = "02-windowed-top-words.ipynb";

let server: NotebookServer | undefined;
let browser: Chromium | undefined;

beforeAll(async () => {
  ensureLabFrontend();
  server = await startNotebookServer({ kind: "lab" });
  // A copy without outputs, so what the page shows is what this run produced.
  const nb = JSON.parse(fs.readFileSync(path.join(REPO, "notebooks", TUTORIAL), "utf8")) as {
    cells: { cell_type: string; outputs?: unknown[]; execution_count?: number | null }[];
  };
  for (const c of nb.cells) {
    if (c.cell_type === "code") {
      c.outputs = [];
      c.execution_count = null;
    }
  }
  fs.writeFileSync(path.join(server.notebookDir, TUTORIAL), JSON.stringify(nb));
  // JupyterLab drops a completion reply that takes over 1 s (its default providerTimeout); on a loaded
  // 2-core CI machine the kernel's first reply can take longer, so this user allows 20 s.
  const settings = path.join(server.dataDir, "lab-state", "user_settings", "@jupyterlab", "completer-extension");
  fs.mkdirSync(settings, { recursive: true });
  fs.writeFileSync(path.join(settings, "manager.jupyterlab-settings"), JSON.stringify({ providerTimeout: 20_000 }));
  browser = await launchChromium();
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await server?.stop();
  if (server !== undefined) for (const dir of [server.notebookDir, server.dataDir]) fs.rmSync(dir, { recursive: true, force: true });
}, 60_000);

/** What the page's JupyterLab exposes to the test (index.js sets window.streambookLab once restored). */
interface LabHandle {
  commands: { execute(id: string, args?: unknown): Promise<unknown> };
  shell: { currentWidget: NotebookPanelHandle | null };
}
interface NotebookPanelHandle {
  sessionContext: { session: { kernel: { status: string; name: string } | null } | null };
  content: {
    widgets: { model: { type: string; executionCount: number | null; sharedModel: { getSource(): string; setSource(s: string): void } } }[];
    activeCellIndex: number;
  };
}
type LabWindow = Window & { streambookLab?: LabHandle };

/** Pixels of the chart's canvas that are coloured (vega's marks), not white, grey or black (axes, text). */
async function colouredPixels(page: Page, index: number): Promise<number> {
  return page.evaluate((i) => {
    const canvas = document.querySelectorAll<HTMLCanvasElement>(".jp-OutputArea-output .vega-embed canvas")[i];
    if (canvas === undefined || canvas.width === 0) return 0;
    const data = canvas.getContext("2d")!.getImageData(0, 0, canvas.width, canvas.height).data;
    let n = 0;
    for (let p = 0; p < data.length; p += 4) {
      const [r, g, b, a] = [data[p], data[p + 1], data[p + 2], data[p + 3]];
      if (a > 0 && Math.max(r, g, b) - Math.min(r, g, b) > 40) n++;
    }
    return n;
  }, index);
}

/**
 * A screenshot of an element that vega keeps redrawing (so never "stable" for Playwright's element
 * screenshot): scrolled into view, then its box cut out of the page.
 */
async function shotOf(page: Page, element: Locator): Promise<Buffer> {
  await element.evaluate((e) => e.scrollIntoView({ block: "center" }));
  const box = await element.boundingBox();
  if (box === null) throw new Error("the chart is not visible");
  return page.screenshot({ clip: box, animations: "disabled", caret: "hide" });
}

async function codeCellsIdle(page: Page): Promise<boolean> {
  return page.evaluate(() => {
    const panel = (window as LabWindow).streambookLab?.shell.currentWidget;
    const cells = panel?.content.widgets.filter((c) => c.model.type === "code") ?? [];
    return cells.length > 0 && cells.every((c) => c.model.executionCount !== null) && panel?.sessionContext.session?.kernel?.status === "idle";
  });
}

describe("JupyterLab 4 in headless Chromium", () => {
  it("runs tutorial 02 with Lab's Vega renderer, completes from the kernel, and interrupts an awaited stream", async () => {
    const page = await browser!.context.newPage();
    const pageErrors: string[] = [];
    page.on("pageerror", (err) => pageErrors.push(err.message));
    await page.goto(`${server!.url}/lab/tree/${TUTORIAL}?token=${server!.token}`);
    await page.waitForFunction(
      () => {
        const panel = (window as LabWindow).streambookLab?.shell.currentWidget;
        return panel?.sessionContext?.session?.kernel?.name === "streambook" && panel.sessionContext.session.kernel.status === "idle";
      },
      undefined,
      { timeout: 60_000 },
    );

    // Run all, as from the Run menu.
    await page.evaluate(() => void (window as LabWindow).streambookLab!.commands.execute("notebook:run-all-cells"));

    // The charts are drawn by JupyterLab's Vega-Lite renderer (a canvas), not from the kernel's SVG or PNG.
    await page.waitForFunction(() => document.querySelectorAll(".jp-OutputArea-output .vega-embed canvas").length >= 2, undefined, { timeout: 60_000 });
    expect(await page.locator(".jp-OutputArea-output.jp-RenderedVegaLite").count()).toBe(2);
    expect(await page.locator(".jp-OutputArea-output.jp-RenderedSVG, .jp-OutputArea-output.jp-RenderedImage").count()).toBe(0);
    await expect.poll(() => codeCellsIdle(page), { timeout: 90_000, interval: 250 }).toBe(true);
    const outputText = await page.locator(".jp-Notebook").innerText();
    expect(outputText).toMatch(/agree: true/);

    // The completer: a new cell, `words` is the notebook's pair stream, and Tab asks the kernel.
    await page.evaluate(async () => {
      const lab = (window as LabWindow).streambookLab!;
      const panel = lab.shell.currentWidget!;
      panel.content.activeCellIndex = panel.content.widgets.length - 1;
      await lab.commands.execute("notebook:insert-cell-below");
      await lab.commands.execute("notebook:change-cell-to-code");
    });
    const newCell = page.locator(".jp-Notebook .jp-Cell").last();
    await newCell.locator(".cm-content").click();
    await page.keyboard.type("words.reduceByK");
    await expect.poll(() => newCell.locator(".cm-content").innerText()).toBe("words.reduceByK");
    await page.keyboard.press("Tab");
    const items = page.locator(".jp-Completer .jp-Completer-item .jp-Completer-match");
    await expect.poll(() => items.allInnerTexts(), { timeout: 30_000 }).toContain("reduceByKey");
    await page.keyboard.press("Escape");

    // The tutorial's context again (a stopped context can be started again), with input for minutes and
    // awaited: its line chart ("Words in the window") moves in Lab, then the toolbar's interrupt ends the
    // cell and stops the context.
    const lineChart = page.locator(".jp-OutputArea-child:has(.jp-RenderedVegaLite)").nth(1);
    const before = await shotOf(page, lineChart);
    await page.evaluate(async () => {
      const lab = (window as LabWindow).streambookLab!;
      const panel = lab.shell.currentWidget!;
      panel.content.widgets[panel.content.activeCellIndex].model.sharedModel.setSource(
        "queue.push(...Array.from({ length: 2000 }, (_, i) => sc.parallelize(vocabulary.slice(0, 1 + (i % 8)))));\n" +
          "wc.start();\n" +
          "await wc.awaitTermination();\n" +
          '"the await ended"',
      );
      void lab.commands.execute("notebook:run-cell");
    });
    await expect.poll(async () => (await shotOf(page, lineChart)).equals(before), { timeout: 60_000, interval: 200 }).toBe(false);
    // It keeps moving: it changes again after that first change (polled: a loaded machine may space updates
    // more than a second apart, since a display waits ten times its last render before the next).
    const first = await shotOf(page, lineChart);
    await expect.poll(async () => (await shotOf(page, lineChart)).equals(first), { timeout: 20_000, interval: 250 }).toBe(false);
    expect(await colouredPixels(page, 1)).toBeGreaterThan(50);

    // The cell's outputs only: its source contains the very words the result shows.
    const liveOutputs = page.locator(".jp-Cell").last().locator(".jp-OutputArea");
    expect(await liveOutputs.innerText()).not.toContain("the await ended");
    await page.locator('.jp-NotebookPanel-toolbar [data-command="notebook:interrupt-kernel"]').click();
    await expect.poll(() => liveOutputs.innerText(), { timeout: 60_000 }).toContain("the await ended");
    expect(await liveOutputs.innerText()).toContain("stopping the StreamingContext gracefully");

    await page.evaluate(async () => {
      const lab = (window as LabWindow).streambookLab!;
      await lab.commands.execute("notebook:insert-cell-below");
      const panel = lab.shell.currentWidget!;
      panel.content.widgets[panel.content.activeCellIndex].model.sharedModel.setSource("`context: ${wc.state}`");
      void lab.commands.execute("notebook:run-cell");
    });
    await expect.poll(() => page.locator(".jp-Cell").last().locator(".jp-OutputArea").innerText(), { timeout: 30_000 }).toContain("context: stopped");
    expect(pageErrors).toEqual([]);
    await page.close();
  }, 240_000); // about 45 s on a quiet 2-core machine; Chromium draws in software, slowly when the machine is loaded
});
