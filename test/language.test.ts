// Completions, inspection and is_complete from the TypeScript language service, knowing earlier cells;
// cursor positions in Unicode code points.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, test, vi } from "vitest";
import { createInterpreter, type StreambookInterpreter } from "../kernel/evaluate.js";
import type { OutputSink } from "../kernel/interpreter.js";
import { codePointsToUtf16, LanguageServer, utf16ToCodePoints } from "../kernel/language.js";

vi.setConfig({ testTimeout: 60_000 });

const sink: OutputSink = { stream() {}, displayData() {}, updateDisplayData() {}, clearOutput() {} };
let dir: string;
let it: StreambookInterpreter;
let n = 0;
async function ok(code: string): Promise<void> {
  const out = await it.execute(code, { sink, executionCount: ++n, input: async () => "", silent: false });
  expect(out.status).toBe("ok");
}

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "streambook-lang-"));
  it = createInterpreter({ cwd: dir, warmup: false, handleSigint: false });
  await it.warm();
}, 60_000);

afterAll(async () => {
  await it.shutdown(false);
  fs.rmSync(dir, { recursive: true, force: true });
});

describe("completions", () => {
  test("know the types of earlier cells: s.toU -> toUpperCase", async () => {
    await ok('const s = "x"');
    const r = await it.complete("s.toU", 5);
    expect(r.matches).toContain("toUpperCase");
    expect(r.matches.every((m) => m.toLowerCase().startsWith("tou"))).toBe(true);
    expect(r.cursor_start).toBe(2);
    expect(r.cursor_end).toBe(5);
  });

  test("offer earlier cells' names, and members after a dot", async () => {
    await ok("const streamCount = 3; function streamTotal(): number { return 1 }");
    const r = await it.complete("stream", 6);
    expect(r.matches).toEqual(expect.arrayContaining(["streamCount", "streamTotal"]));
    const members = await it.complete("Math.", 5);
    expect(members.matches).toEqual(expect.arrayContaining(["max", "min", "PI"]));
    expect(members.cursor_start).toBe(5);
  });

  test("cursor positions count code points: astral characters before the cursor", async () => {
    const code = 'const e = "😀😀"; e.toU';
    const cursor = [...code].length; // 20 code points, 22 UTF-16 units
    expect(code.length).toBe(cursor + 2);
    const r = await it.complete(code, cursor);
    expect(r.matches).toContain("toUpperCase");
    expect(r.cursor_end).toBe(cursor);
    expect(r.cursor_start).toBe(cursor - 3);
    // A cursor in the middle of a line after an emoji: `😀.length` then more text.
    const mid = '"😀".len + 1';
    const at = [...'"😀".len'].length;
    const m = await it.complete(mid, at);
    expect(m.matches).toContain("length");
    expect(m.cursor_start).toBe(at - 3);
  });

  test("code point <-> UTF-16 conversion", () => {
    const s = "a😀b";
    expect(codePointsToUtf16(s, 2)).toBe(3);
    expect(utf16ToCodePoints(s, 3)).toBe(2);
    expect(codePointsToUtf16(s, 99)).toBe(s.length);
  });
});

describe("inspection", () => {
  test("Math.max shows its signature and doc comment", async () => {
    const r = await it.inspect("Math.max", 8, 0);
    expect(r.found).toBe(true);
    const text = r.data["text/plain"] as string;
    expect(text).toContain("max(...values: number[]): number");
    expect(text).toContain("Returns the larger of a set of supplied numeric expressions");
    expect(r.data["text/markdown"]).toContain("```ts");
  });

  test("inside a call and on earlier cells' names", async () => {
    expect((await it.inspect("Math.max(", 9, 0)).data["text/plain"]).toContain("max(");
    await ok("/** The answer. */\nconst answer: number = 42");
    const r = await it.inspect("answer", 3, 0);
    expect(r.data["text/plain"]).toContain("const answer: number");
    expect(r.data["text/plain"]).toContain("The answer.");
    expect((await it.inspect("   ", 1, 0)).found).toBe(false);
  });
});

describe("is_complete", () => {
  test.each([
    ["1 + 1", "complete", undefined],
    ["const x = [1,\n  2]", "complete", undefined],
    ["function f() {", "incomplete", "  "],
    ["foo(1, [2,", "incomplete", "    "],
    ["const s = `abc ${", "incomplete", ""],
    ["const s = `abc", "incomplete", ""],
    ['const s = "abc', "incomplete", ""],
    ["/* a comment", "incomplete", ""],
    ["const x = )", "invalid", undefined],
    ["1 + * 2", "invalid", undefined],
    ["if (x) {} else else {}", "invalid", undefined],
    // An unexpected closing token is an error, not an unexpected end: no more text can fix it.
    ["}", "invalid", undefined],
    [")", "invalid", undefined],
    ["]", "invalid", undefined],
    ["}\n", "invalid", undefined],
    ["foo(\n}", "invalid", undefined],
    ["const a = [1, 2}", "invalid", undefined],
    ["let x = ;", "invalid", undefined],
    ["function f() {\n  if (x) {", "incomplete", "    "],
    ["const s = `a ${b} c", "incomplete", ""],
    ["const t = `${a}}", "incomplete", ""],
    // Brackets in a regular expression are not code.
    ["const r = /[)}]/.test(s)", "complete", undefined],
    ["const q = a / b / (c)", "complete", undefined],
  ])("%j is %s", (code, status, indent) => {
    const r = it.isComplete(code);
    expect(r.status).toBe(status);
    if (indent !== undefined) expect(r.indent).toBe(indent);
  });
});

describe("the types cells see", () => {
  // The ES lib is one combined file (fewer files per program): it must still be all of ES2023, and
  // Node's types must still be there, globals and modules alike.
  test("ES2023's library and Node's types, and no more", async () => {
    const run = (code: string) => it.execute(code, { sink, executionCount: ++n, input: async () => "", silent: false });
    await ok(`
const last: number | undefined = [1, 2, 3].findLast((x) => x < 3);
const copy: Map<string, number[]> = structuredClone(new Map([["a", [1]]]));
const ok1: boolean = Object.hasOwn({ a: 1 }, "a") && Number.isInteger(2 ** 3);
const big: bigint = 10n ** 20n;
const weak = new WeakRef({});
const buf: Buffer = require("fs").readFileSync(__filename === "" ? "x" : ${JSON.stringify(__filename)});
import { readFileSync } from "node:fs";
const text: string = readFileSync(${JSON.stringify(__filename)}, "utf8");
const res: Promise<Response> | undefined = typeof fetch === "function" ? undefined : undefined;`);
    // A typo in a Node module's API and a lib type misuse are both caught (`require()` returns `any`,
    // as in TypeScript itself: imports carry the module's types).
    expect(await run('import { readFileSyncc } from "node:fs";')).toMatchObject({ status: "error", ename: "TypeScriptError" });
    expect(await run("const wrong: string = [1].findLast((x) => x > 0);")).toMatchObject({ status: "error", ename: "TypeScriptError" });
    // A DOM-only global is not there (Node is not a browser).
    expect(await run("document.title")).toMatchObject({ status: "error", ename: "TypeScriptError" });
  });
});

describe("a long session", () => {
  // Every cell declares a new function that stays visible (the kernel bench's session). What a new
  // cell's program holds must grow with the number of names, not with their square, and a new cell's
  // footer must not list every earlier cell's file.
  test("600 cells: the checker's source grows linearly, a new footer stays short, and every type stays right", () => {
    const ls = new LanguageServer({ cwd: dir, globalDeclarations: "" });
    const cells = 600;
    const run = (code: string): void => {
      const pending = ls.checkCell(code);
      expect(pending.diagnostics()).toEqual([]);
      pending.emit();
      pending.commit();
    };
    for (let i = 0; i < cells; i++) run(`function f${i}(x: number): number {\n  return x * ${i};\n}\nf${i}(1)`);
    const size = ls.sourceSize;
    expect(ls.poolUsage.live).toBe(cells);
    // About 70 characters of code and footer per cell; squared growth would be megabytes.
    expect(size.chars).toBeLessThan(cells * 200);
    expect(size.footerImports).toBeLessThanOrEqual(Math.ceil(size.files / 32) + 1);
    // The first and the latest cells' types are still what they declared.
    const last = ls.checkCell("const total: number = f0(2) + f599(3);\nconst wrong: string = f300(1);");
    const diagnostics = last.diagnostics();
    last.discard();
    expect(diagnostics.map((d) => [d.line, d.code])).toEqual([[2, 2322]]);
  });
});
