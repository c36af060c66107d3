// History as IPython keeps it, through real kernel processes and a raw ZeroMQ client: it survives a
// restart (a new kernel process on the same Jupyter data directory), keeps session numbers, answers
// tail, range and search across sessions, gives kernels started together distinct sessions, survives a
// damaged store with a warning, and searches with a glob in time linear in the input.
// The protocol side is the real one; cells run in test/support/js-kernel.cjs (no TypeScript to load).
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { globMatcher } from "../kernel/history.js";
import { JS_KERNEL, RawKernel, type Json } from "./support/raw-kernel.js";

let dataDir: string;
const kernels: RawKernel[] = [];

beforeAll(() => {
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "sb-history-"));
});

afterAll(async () => {
  await Promise.all(kernels.map((k) => k.stop()));
  fs.rmSync(dataDir, { recursive: true, force: true });
});

async function kernel(dir = dataDir): Promise<RawKernel> {
  const k = await RawKernel.start({ script: JS_KERNEL, env: { JUPYTER_DATA_DIR: dir } });
  kernels.push(k);
  expect(await k.ready()).toBe(true);
  return k;
}

async function history(k: RawKernel, content: Json): Promise<unknown[]> {
  const reply = await k.client.request("shell", "history_request", { output: false, raw: true, ...content });
  expect(reply?.content.status, `history_request ${JSON.stringify(content)}: ${k.stderr}`).toBe("ok");
  return reply?.content.history as unknown[];
}

async function run(k: RawKernel, code: string): Promise<void> {
  const done = await k.client.execute(code);
  expect(done.reply?.content.status, done.text).toBe("ok");
}

describe("history across restarts", () => {
  it("keeps each session's lines and numbers; tail, range and search reach every session", async () => {
    const first = await kernel();
    await run(first, "var a = 1");
    await run(first, "a + 1");
    await run(first, "var banana = 'b'");
    const firstSession = ((await history(first, { hist_access_type: "tail", n: 1 }))[0] as [number])[0];
    expect(await first.stop()).toEqual({ code: 0, signal: null });

    // The restart: a new kernel process on the same data directory.
    const second = await kernel();
    await run(second, "var a = 10");
    await run(second, "a * 2");
    const tail = await history(second, { hist_access_type: "tail", n: 4 });
    const s1 = firstSession;
    const s2 = s1 + 1;
    expect(tail).toEqual([[s1, 2, "a + 1"], [s1, 3, "var banana = 'b'"], [s2, 1, "var a = 10"], [s2, 2, "a * 2"]]);
    // range: 0 is this session, -1 the one before, a positive number is absolute; negative lines count from the end.
    expect(await history(second, { hist_access_type: "range", session: 0, start: 1, stop: 0 })).toEqual([[s2, 1, "var a = 10"], [s2, 2, "a * 2"]]);
    expect(await history(second, { hist_access_type: "range", session: -1, start: 2, stop: 4 })).toEqual([[s1, 2, "a + 1"], [s1, 3, "var banana = 'b'"]]);
    expect(await history(second, { hist_access_type: "range", session: s1, start: -1 })).toEqual([[s1, 3, "var banana = 'b'"]]);
    // search: sqlite GLOB over every session, unique keeps the latest, n the last n.
    expect(await history(second, { hist_access_type: "search", pattern: "var a*" })).toEqual([[s1, 1, "var a = 1"], [s2, 1, "var a = 10"]]);
    expect(await history(second, { hist_access_type: "search", pattern: "*a*", n: 2 })).toEqual([[s2, 1, "var a = 10"], [s2, 2, "a * 2"]]);
    expect(await history(second, { hist_access_type: "search", pattern: "?ar b*", unique: true })).toEqual([[s1, 3, "var banana = 'b'"]]);
    // Outputs are kept with their line.
    const withOutput = await history(second, { hist_access_type: "tail", n: 1, output: true });
    expect(withOutput).toEqual([[s2, 2, ["a * 2", "20"]]]);
  }, 60_000);

  it("gives kernels started at the same moment distinct session numbers", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sb-history-race-"));
    try {
      const started = await Promise.all([1, 2, 3, 4].map(() => kernel(dir)));
      await Promise.all(started.map((k, i) => run(k, `var mine = ${i}`)));
      const sessions = await Promise.all(started.map(async (k) => ((await history(k, { hist_access_type: "range", session: 0, start: 1 }))[0] as [number])[0]));
      expect(new Set(sessions).size).toBe(4);
      expect([...sessions].sort()).toEqual([1, 2, 3, 4]);
      const all = await history(started[0], { hist_access_type: "search", pattern: "var mine*" });
      expect(all).toHaveLength(4);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});

describe("a damaged store", () => {
  it("is read around its damaged lines, with a warning in the log and under the next cell", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sb-history-damaged-"));
    try {
      const store = path.join(dir, "streambook");
      fs.mkdirSync(store, { recursive: true });
      fs.writeFileSync(path.join(store, "sessions.jsonl"), `{"session":1,"token":"t1"}\n\u0000\u0000garbage\n{"session":2,"tok`);
      fs.writeFileSync(path.join(store, "history.jsonl"), [
        `{"session":1,"line":1,"input":"kept = 1"}`,
        `this is not json`,
        `{"session":1,"line":2,"input":"also kept"}`,
        `{"session":1,"line":3,"input":"cut sho`, // a crash mid-write, no newline
      ].join("\n"));
      const k = await kernel(dir);
      await run(k, "var fresh = 1");
      const all = await history(k, { hist_access_type: "search", pattern: "*" });
      expect(all).toEqual([[1, 1, "kept = 1"], [1, 2, "also kept"], [2, 1, "var fresh = 1"]]);
      expect(k.stderr).toMatch(/damaged line.* skipped/);
      const next = await k.client.execute("var after = 2");
      expect(next.iopub.some((m) => m.header.msg_type === "stream" && /damaged line/.test(String(m.content.text)))).toBe(true);
      // The cut line was ended before the next record: what this kernel wrote reads back whole.
      expect(await history(k, { hist_access_type: "range", session: 0, start: 1 })).toEqual([[2, 1, "var fresh = 1"], [2, 2, "var after = 2"]]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it("that cannot be opened at all leaves history in memory, and the kernel starts", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sb-history-blocked-"));
    try {
      fs.writeFileSync(path.join(dir, "streambook"), "a file where the folder should be");
      const k = await kernel(dir);
      await run(k, "var x = 1");
      expect(await history(k, { hist_access_type: "tail", n: 5 })).toEqual([[1, 1, "var x = 1"]]);
      expect(k.stderr).toMatch(/history is kept in memory only/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});

describe("glob search", () => {
  it("answers *a*a*a*a*a*a*b against a cell of 200 a's at once (a backtracking RegExp took minutes)", async () => {
    const k = await kernel(fs.mkdtempSync(path.join(os.tmpdir(), "sb-history-glob-")));
    await run(k, `"${"a".repeat(200)}"`);
    const id = k.client.send("shell", "history_request", { output: false, raw: true, hist_access_type: "search", pattern: "*a*a*a*a*a*a*b" });
    // Bounded wait: the kernel answers this and the next request promptly.
    const reply = await k.client.reply(id, 10_000);
    expect(reply?.content.history).toEqual([]);
    expect(await k.client.request("shell", "kernel_info_request", {}, 10_000)).toBeDefined();
  }, 60_000);

  it("follows sqlite GLOB and stays linear: 8 stars over 20,000 characters cost what 1 star costs, within 20x", () => {
    const matches = (p: string, s: string): boolean => globMatcher(p)(s);
    expect(matches("*a*b", "xaxb")).toBe(true);
    expect(matches("a*", "ba")).toBe(false);
    expect(matches("[a-c]?z", "bqz")).toBe(true);
    expect(matches("[]x]", "]")).toBe(true);
    expect(matches("[^a-c]", "d")).toBe(true);
    expect(matches("[abc", "a")).toBe(false); // an unclosed class matches nothing, as in sqlite
    expect(matches("🙂?", "🙂é")).toBe(true); // ? is one character, not one UTF-16 unit
    const input = "a".repeat(20_000);
    const time = (pattern: string): number => {
      const m = globMatcher(pattern);
      const start = performance.now();
      for (let i = 0; i < 5; i++) m(input);
      return performance.now() - start;
    };
    time("*b");
    const one = time("*b");
    const eight = time("*a*a*a*a*a*a*a*b");
    // Work grows with pattern length times input length: 16 tokens against 2, never exponentially.
    expect(eight / one).toBeLessThan(20);
  });
});
