// nbconvert's HTML has no Vega-Lite renderer: the charts a tutorial commits must show there as their SVG.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";

const NOTEBOOK = path.resolve(__dirname, "..", "notebooks", "02-windowed-top-words.ipynb");

describe("charts in nbconvert's HTML", () => {
  it("shows each committed chart of tutorial 02 as an inline SVG", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sb-nbconvert-"));
    try {
      const r = spawnSync("/usr/bin/jupyter", ["nbconvert", "--to", "html", "--output-dir", dir, NOTEBOOK], { encoding: "utf8" });
      expect(r.status, `jupyter nbconvert failed (apt-get install -y jupyter-nbconvert):\n${r.stderr}`).toBe(0);
      const html = fs.readFileSync(path.join(dir, "02-windowed-top-words.html"), "utf8");
      const nb = JSON.parse(fs.readFileSync(NOTEBOOK, "utf8")) as { cells: { outputs?: { data?: Record<string, unknown> }[] }[] };
      const charts = nb.cells.flatMap((c) => c.outputs ?? []).filter((o) => o.data?.["application/vnd.vegalite.v5+json"] !== undefined);
      expect(charts.length).toBeGreaterThanOrEqual(2);
      expect(html.match(/<svg[\s>]/g)?.length).toBe(charts.length);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
