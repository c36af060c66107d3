// display(): MIME bundles, handles with display_id, rate-limited updates that keep the last one,
// clear_output, the Vega-Lite hook, and routing through the cell that created a display.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterEach, describe, expect, test, vi } from "vitest";
import { runInCell, type CellContext } from "../kernel/cell-context.js";
import {
  createDisplay,
  DisplayOutsideCellError,
  JUPYTER_DISPLAY,
  setVegaLiteRenderer,
  toMimeBundle,
  UPDATE_INTERVAL_MS,
  VEGA_LITE_MIME,
} from "../kernel/display.js";
import { createInterpreter } from "../kernel/evaluate.js";
import type { MimeBundle, OutputSink } from "../kernel/interpreter.js";

vi.setConfig({ testTimeout: 60_000 });

interface Sent {
  kind: "display" | "update" | "clear" | "stream";
  data?: MimeBundle;
  metadata?: Record<string, unknown>;
  id?: string;
  wait?: boolean;
  text?: string;
}

function recorder(): { sent: Sent[]; sink: OutputSink } {
  const sent: Sent[] = [];
  const sink: OutputSink = {
    stream: (_name, text) => sent.push({ kind: "stream", text }),
    displayData: (data, _m, transient) => sent.push({ kind: "display", data, id: transient?.display_id }),
    updateDisplayData: (data, metadata, transient) => sent.push({ kind: "update", data, metadata, id: transient.display_id }),
    clearOutput: (wait) => sent.push({ kind: "clear", wait }),
  };
  return { sent, sink };
}

afterEach(() => {
  vi.useRealTimers();
  setVegaLiteRenderer(undefined);
});

describe("bundles", () => {
  test("any value shows as text/plain in inspect style; raw bundles go as they are", () => {
    const { sent, sink } = recorder();
    const display = createDisplay(() => sink);
    const h = display({ a: 1, b: "two" });
    display({ "text/html": "<i>x</i>", "text/plain": "x" }, { raw: true });
    expect(sent[0]).toMatchObject({ kind: "display", data: { "text/plain": "{ a: 1, b: 'two' }" }, id: h.displayId });
    expect(sent[1].data).toEqual({ "text/html": "<i>x</i>", "text/plain": "x" });
    expect(sent[1].id).toMatch(/^[0-9a-f-]{36}$/);
    expect(sent[1].id).not.toBe(h.displayId);
  });

  test("objects render themselves through Symbol.for('Jupyter.display')", () => {
    const rich = { [JUPYTER_DISPLAY]: () => ({ "text/markdown": "**hi**" }) };
    const bundle = toMimeBundle(rich);
    expect(bundle["text/markdown"]).toBe("**hi**");
    expect(typeof bundle["text/plain"]).toBe("string");
    expect(() => toMimeBundle({ [JUPYTER_DISPLAY]: () => 5 })).toThrow(/must return a MIME bundle/);
  });

  test("html, markdown, svg, json and vegaLite send their MIME type with text/plain", () => {
    const { sent, sink } = recorder();
    const display = createDisplay(() => sink);
    display.html("<b>b</b>");
    display.markdown("# m");
    display.svg("<svg/>");
    display.json({ k: [1] });
    display.vegaLite({ mark: "bar" });
    expect(sent.map((s) => Object.keys(s.data ?? {}).sort())).toEqual([
      ["text/html", "text/plain"],
      ["text/markdown", "text/plain"],
      ["image/svg+xml", "text/plain"],
      ["application/json", "text/plain"],
      [VEGA_LITE_MIME, "text/plain"].sort(),
    ]);
    expect(sent[3].data?.["application/json"]).toEqual({ k: [1] });
    expect(sent[4].data?.[VEGA_LITE_MIME]).toEqual({ mark: "bar" });
  });

  test("the Vega-Lite hook adds renderings, now or as an update when it is asynchronous", async () => {
    const { sent, sink } = recorder();
    const display = createDisplay(() => sink);
    setVegaLiteRenderer(() => ({ data: { "image/svg+xml": "<svg>sync</svg>" } }));
    display.vegaLite({ mark: "line" });
    expect(sent[0].data?.["image/svg+xml"]).toBe("<svg>sync</svg>");
    let release!: (b: { data: MimeBundle; metadata: Record<string, unknown> }) => void;
    setVegaLiteRenderer(() => new Promise((r) => (release = r)));
    const h = display.vegaLite({ mark: "point" });
    expect(sent[1].data?.["image/png"]).toBeUndefined();
    release({ data: { "image/png": "iVBOR" }, metadata: { "image/png": { width: 400, height: 200 } } });
    await vi.waitFor(() => expect(sent).toHaveLength(3));
    expect(sent[2]).toMatchObject({ kind: "update", id: h.displayId });
    expect(sent[2].data?.["image/png"]).toBe("iVBOR");
    expect(sent[2].data?.[VEGA_LITE_MIME]).toEqual({ mark: "point" });
    // The image's display size travels as output metadata.
    expect(sent[2].metadata).toEqual({ "image/png": { width: 400, height: 200 } });
  });
});

describe("handles", () => {
  test("update sends update_display_data with the same display_id, in the handle's own kind", () => {
    const { sent, sink } = recorder();
    const display = createDisplay(() => sink);
    const h = display.html("<p>1</p>");
    h.update("<p>2</p>");
    expect(sent[1]).toMatchObject({ kind: "update", id: h.displayId, data: { "text/html": "<p>2</p>" } });
  });

  test("updates are rate-limited per display, coalesced, and the last one is always delivered", () => {
    vi.useFakeTimers();
    const { sent, sink } = recorder();
    const display = createDisplay(() => sink);
    const a = display("a0");
    const b = display("b0");
    a.update("a1"); // immediate: nothing sent for this display yet
    for (let i = 2; i <= 6; i++) a.update(`a${i}`); // coalesced
    b.update("b1"); // another display has its own budget
    const updates = () => sent.filter((s) => s.kind === "update").map((s) => s.data?.["text/plain"]);
    expect(updates()).toEqual(["'a1'", "'b1'"]);
    vi.advanceTimersByTime(UPDATE_INTERVAL_MS);
    expect(updates()).toEqual(["'a1'", "'b1'", "'a6'"]);
    vi.advanceTimersByTime(10 * UPDATE_INTERVAL_MS);
    expect(updates()).toHaveLength(3); // nothing pending: nothing more sent
    // At most one update per interval over a burst of 50 updates spread over 1 s.
    for (let i = 0; i < 50; i++) {
      a.update(`burst${i}`);
      vi.advanceTimersByTime(20);
    }
    vi.advanceTimersByTime(UPDATE_INTERVAL_MS);
    const burst = updates().slice(3);
    expect(burst.length).toBeLessThanOrEqual(11);
    expect(burst.at(-1)).toBe("'burst49'");
  });

  test("flush sends a pending update at once", () => {
    vi.useFakeTimers();
    const { sent, sink } = recorder();
    const h = createDisplay(() => sink)("x");
    h.update(1);
    h.update(2);
    h.flush();
    expect(sent.filter((s) => s.kind === "update").map((s) => s.data?.["text/plain"])).toEqual(["1", "2"]);
  });

  test("clear sends clear_output", () => {
    const { sent, sink } = recorder();
    const display = createDisplay(() => sink);
    display.clear();
    display.clear(true);
    expect(sent).toEqual([{ kind: "clear", wait: false }, { kind: "clear", wait: true }]);
  });
});

describe("routing", () => {
  test("the default display follows the current cell; outside any cell it refuses", () => {
    const a = recorder();
    const cell: CellContext = { sink: a.sink, executionCount: 1, input: async () => "" };
    const display = createDisplay();
    const h = runInCell(cell, () => display.markdown("*x*"));
    h.update("*y*");
    expect(a.sent.map((s) => s.kind)).toEqual(["display", "update"]);
    expect(() => display("nowhere")).toThrow(DisplayOutsideCellError);
  });

  test("a display created by a cell keeps updating under it after the cell's reply", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "streambook-display-"));
    const it = createInterpreter({ cwd: dir, warmup: false, handleSigint: false });
    try {
      await it.warm();
      const first = recorder();
      const second = recorder();
      const ctx = (sink: OutputSink, n: number) => ({ sink, executionCount: n, input: async () => "", silent: false });
      expect((await it.execute("const live = display.html('<b>0</b>');\nlet ticks = 0;", ctx(first.sink, 1))).status).toBe("ok");
      const out = await it.execute("live.update('<b>1</b>'); live.flush(); display('in second')", ctx(second.sink, 2));
      expect(out.status).toBe("ok");
      expect(first.sent.map((s) => s.kind)).toEqual(["display", "update"]);
      expect(first.sent[1].data?.["text/html"]).toBe("<b>1</b>");
      expect(second.sent.map((s) => s.kind)).toEqual(["display"]);
    } finally {
      await it.shutdown(false);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a display call as a cell's last expression shows the display only, with no handle result", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "streambook-display-"));
    const it = createInterpreter({ cwd: dir, warmup: false, handleSigint: false });
    try {
      await it.warm();
      const ctx = (sink: OutputSink, n: number) => ({ sink, executionCount: n, input: async () => "", silent: false });
      const cell = recorder();
      const out = await it.execute('display.html("<b>x</b>");', ctx(cell.sink, 1));
      expect(out).toEqual({ status: "ok" });
      expect(cell.sent.map((s) => s.kind)).toEqual(["display"]);
      expect(cell.sent[0].data?.["text/html"]).toBe("<b>x</b>");
      for (const call of ['display("v")', 'display.markdown("*m*")', "display.json({ a: 1 })"]) {
        expect(await it.execute(call, ctx(recorder().sink, 2))).toEqual({ status: "ok" });
      }
      // Assigned, the handle stays usable, and other values are still results.
      const kept = recorder();
      expect((await it.execute('const h = display.html("<b>0</b>");\nh.update("<b>1</b>");\nh.flush();\nh.displayId.length', ctx(kept.sink, 3)))).toMatchObject({
        status: "ok",
        result: { "text/plain": "36" },
      });
      expect(kept.sent.map((s) => s.kind)).toEqual(["display", "update"]);
      expect(kept.sent[1]).toMatchObject({ data: { "text/html": "<b>1</b>" }, id: kept.sent[0].id });
    } finally {
      await it.shutdown(false);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
