// Charts in nbconvert's HTML, as a user sees them: Debian 12's nbconvert (6.5.3) strips everything inside
// <svg>, so the kernel ends each chart with a PNG. Tutorials 02 and 06 are executed and converted by
// `jupyter nbconvert --to html --execute`, the page is opened in Chromium, and every chart's area must
// have drawn marks: coloured pixels, not tags.
import * as fs from "node:fs";
import * as path from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { launchChromium, type Chromium } from "./support/jupyterlab.js";
import {
  REPO,
  jupyterEnv,
  makeJupyterDataDir,
  readNotebook,
  requireFile,
  runProcess,
  tempDir,
} from "./support/notebook-server.js";

const VEGA_LITE = "application/vnd.vegalite.v5+json";
const TUTORIALS = ["02-windowed-top-words", "06-monitoring-status-panel"];

let browser: Chromium | undefined;
const work = tempDir("nbconvert");
let env: NodeJS.ProcessEnv;

beforeAll(async () => {
  requireFile("/usr/bin/jupyter-nbconvert", "apt-get install -y jupyter-nbconvert");
  env = jupyterEnv(makeJupyterDataDir());
  browser = await launchChromium();
}, 60_000);

afterAll(async () => {
  await browser?.close();
  fs.rmSync(work, { recursive: true, force: true });
});

/**
 * Runs what a user runs, `jupyter nbconvert --to html --execute`, on a copy of the tutorial; returns the HTML
 * file and how many charts the tutorial has (its committed outputs).
 */
async function convert(name: string): Promise<{ html: string; charts: number }> {
  const out = path.join(work, name);
  fs.mkdirSync(out);
  const copy = path.join(out, `${name}.ipynb`);
  fs.copyFileSync(path.join(REPO, "notebooks", `${name}.ipynb`), copy);
  await runProcess("/usr/bin/jupyter", ["nbconvert", "--to", "html", "--execute", copy], env, 150_000, out);
  const committed = readNotebook(path.join(REPO, "notebooks", `${name}.ipynb`));
  const charts = committed.cells.flatMap((c) => c.outputs ?? []).filter((o) => o.data?.[VEGA_LITE] !== undefined).length;
  return { html: path.join(out, `${name}.html`), charts };
}

interface ImageMarks {
  width: number;
  height: number;
  /** Coloured pixels (the marks: not white, grey or black) in each horizontal third of the image. */
  colouredByThird: number[];
}

/** Every image an output shows, with its coloured pixels counted in the page. */
async function imagesOf(html: string): Promise<ImageMarks[]> {
  const page = await browser!.context.newPage();
  try {
    await page.goto(pathToFileURL(html).href, { waitUntil: "load" });
    return await page.$$eval(".jp-OutputArea-output img", (imgs) =>
      (imgs as HTMLImageElement[]).map((img) => {
        const canvas = document.createElement("canvas");
        canvas.width = img.naturalWidth;
        canvas.height = img.naturalHeight;
        const ctx = canvas.getContext("2d")!;
        ctx.drawImage(img, 0, 0);
        const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
        const thirds = [0, 0, 0];
        for (let y = 0; y < canvas.height; y++) {
          for (let x = 0; x < canvas.width; x++) {
            const p = (y * canvas.width + x) * 4;
            const [r, g, b] = [data[p], data[p + 1], data[p + 2]];
            if (Math.max(r, g, b) - Math.min(r, g, b) > 60) thirds[Math.min(2, Math.floor((3 * y) / canvas.height))]++;
          }
        }
        return { width: img.width, height: img.height, colouredByThird: thirds };
      }),
    );
  } finally {
    await page.close();
  }
}

describe("charts in nbconvert's HTML (Debian 12's nbconvert, Chromium)", () => {
  const converted = new Map<string, Promise<{ html: string; charts: number }>>();
  beforeAll(() => {
    // Both tutorials execute side by side.
    for (const t of TUTORIALS) {
      const p = convert(t);
      p.catch(() => {});
      converted.set(t, p);
    }
  });

  it("tutorial 02: both charts show drawn marks", async () => {
    const { html, charts } = await converted.get(TUTORIALS[0])!;
    expect(charts).toBe(2);
    const images = await imagesOf(html);
    expect(images.length).toBe(charts);
    for (const image of images) {
      expect(image.width).toBeGreaterThan(200); // shown at its own size, not a broken-image icon
      expect(image.colouredByThird.reduce((a, b) => a + b, 0)).toBeGreaterThan(500);
    }
  }, 180_000);

  it("tutorial 06: the status panel's three charts each show drawn marks", async () => {
    const { html, charts } = await converted.get(TUTORIALS[1])!;
    expect(charts).toBe(1);
    const [panel, ...rest] = await imagesOf(html);
    expect(rest).toEqual([]);
    expect(panel.width).toBeGreaterThan(200);
    // Input rate, processing time and scheduling delay, stacked: each third of the image has its line.
    for (const n of panel.colouredByThird) expect(n).toBeGreaterThan(200);
  }, 180_000);
});
