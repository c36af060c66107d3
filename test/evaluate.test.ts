// The interpreter in-process: persistence, redeclaration, top-level await, results and MIME, type
// errors, runtime errors mapped to cell lines, async output routing, imports, interrupts.
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import ts from "typescript";
import { afterAll, beforeAll, describe, expect, test, vi } from "vitest";

// Generous: two shared cores, and the first cells load TypeScript.
vi.setConfig({ testTimeout: 60_000 });
import { createInterpreter, type StreambookInterpreter } from "../kernel/evaluate.js";
import type { ExecuteContext, ExecuteOutcome, MimeBundle, OutputSink } from "../kernel/interpreter.js";

type Message =
  | { type: "stream"; name: string; text: string }
  | { type: "display"; data: MimeBundle; transient?: { display_id?: string } }
  | { type: "update"; data: MimeBundle; transient: { display_id: string } }
  | { type: "clear"; wait: boolean };

/** A sink that records messages, and lets a test wait for one. */
function recorder() {
  const messages: Message[] = [];
  const waiters: Array<{ test: (m: Message) => boolean; resolve: (m: Message) => void }> = [];
  const push = (m: Message): void => {
    messages.push(m);
    for (const w of [...waiters]) if (w.test(m)) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve(m);
    }
  };
  const sink: OutputSink = {
    stream: (name, text) => push({ type: "stream", name, text }),
    displayData: (data, _metadata, transient) => push({ type: "display", data, transient }),
    updateDisplayData: (data, _metadata, transient) => push({ type: "update", data, transient }),
    clearOutput: (wait) => push({ type: "clear", wait }),
  };
  const text = (name: string): string =>
    messages.filter((m): m is Extract<Message, { type: "stream" }> => m.type === "stream" && m.name === name).map((m) => m.text).join("");
  const waitFor = (t: (m: Message) => boolean): Promise<Message> => {
    const found = messages.find(t);
    if (found) return Promise.resolve(found);
    return new Promise((resolve) => waiters.push({ test: t, resolve }));
  };
  const waitForText = (name: string, needle: string): Promise<Message> =>
    waitFor((m) => m.type === "stream" && m.name === name && text(name).includes(needle));
  return { messages, sink, text, waitFor, waitForText };
}

let project: string;
let it: StreambookInterpreter;
let count = 0;
const ctxFor = (sink: OutputSink): ExecuteContext => ({
  sink,
  executionCount: ++count,
  input: async (prompt) => `answer to ${prompt}`,
  silent: false,
});

async function run(code: string, sink: OutputSink = recorder().sink): Promise<ExecuteOutcome> {
  return it.execute(code, ctxFor(sink));
}

async function value(code: string): Promise<string | undefined> {
  const out = await run(code);
  if (out.status !== "ok") throw new Error(`cell failed: ${JSON.stringify(out)}`);
  return out.result?.["text/plain"] as string | undefined;
}

/** A notebook folder with a CommonJS package, an ESM-only package and a local ES module. */
function makeProject(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "streambook-eval-"));
  const pkg = (name: string, json: object, files: Record<string, string>): void => {
    const d = path.join(dir, "node_modules", name);
    fs.mkdirSync(d, { recursive: true });
    fs.writeFileSync(path.join(d, "package.json"), JSON.stringify({ name, version: "1.0.0", ...json }));
    for (const [f, t] of Object.entries(files)) fs.writeFileSync(path.join(d, f), t);
  };
  pkg("cjs-pkg", { main: "index.js" }, { "index.js": "exports.twice = (n) => n * 2;\n" });
  // Engine-like: arrays and errors made by a module, and checks a module makes on a cell's values.
  pkg("engine-like", { main: "index.js" }, {
    "index.js": [
      "class EngineStateError extends Error { constructor(m) { super(m); this.name = 'EngineStateError'; } }",
      "exports.EngineStateError = EngineStateError;",
      "exports.collect = () => [1, 2];",
      "exports.fail = () => { throw new EngineStateError('stopped'); };",
      "exports.later = () => Promise.resolve({ ok: true });",
      "exports.kinds = (v) => [v instanceof Array, v instanceof Object, v instanceof Error, v instanceof Promise];",
      "exports.callAndCatch = (fn) => { try { fn(); return 'no throw'; } catch (e) { return e instanceof Error ? 'Error ' + e.message : 'not an Error'; } };",
      "",
    ].join("\n"),
  });
  pkg("esm-only", { type: "module", exports: { import: "./index.js" } }, {
    "index.js": "export const hello = (n) => 'hi ' + n;\nexport default 42;\n",
  });
  fs.writeFileSync(path.join(dir, "local.mjs"), "export const local = 7;\n");
  return dir;
}

beforeAll(async () => {
  project = makeProject();
  it = createInterpreter({ cwd: project, warmup: false, handleSigint: false });
  await it.warm();
}, 60_000);

afterAll(async () => {
  await it.shutdown(false);
  fs.rmSync(project, { recursive: true, force: true });
});

describe("declarations", () => {
  test("every kind persists into later cells, for the runtime and the checker", async () => {
    await value(`
let a = 1;
const b = 2;
var c = 3;
function f(): number { return 4 }
class K { v = 5 }
type T = { n: number };
interface I { m: number }
enum E { X = 6 }
namespace NS { export const y = 7 }
const { d, e: [g] } = { d: 1, e: [1] };
import fs from "fs";
import * as pathNs from "path";
import { join as joinPath } from "node:path";`);
    expect(await value(`
const t: T = { n: a + b + c + f() + new K().v + E.X + NS.y + d + g };
const i: I = { m: t.n };
[i.m, typeof fs.readFileSync, pathNs.basename("/x/y"), joinPath("p", "q")]`)).toBe("[ 30, 'function', 'y', 'p/q' ]");
    // A let from an earlier cell can be assigned; a const cannot (the checker says so).
    expect(await value("a = 10; a++; a")).toBe("11");
    expect(await run("a = 'not a number'")).toMatchObject({ status: "error", ename: "TypeScriptError" });
    const out = await run("b = 3");
    expect(out).toMatchObject({ status: "error", ename: "TypeScriptError" });
    expect(out.status === "error" && out.evalue).toContain("constant");
  });

  test("a re-run cell may redeclare its names, with new types", async () => {
    await value("const r = 1");
    expect(await value("r + 1")).toBe("2");
    await value('const r = "text"');
    expect(await value("r.toUpperCase()")).toBe("'TEXT'");
    await value("let counter = 5; function counterPlus(n: number) { return counter + n }");
    await value("let counter = 7");
    expect(await value("counterPlus(1)")).toBe("8");
    await value("class Shape { sides = 3 }");
    await value("class Shape { sides = 4; name = 'square' }");
    expect(await value("new Shape().name + new Shape().sides")).toBe("'square4'");
  });
});

describe("many cells", () => {
  test("redefinitions past the checker's file pool keep every type right", async () => {
    await value("let total: number = 0; type Pair = [string, number];");
    for (let i = 0; i < 80; i++) {
      // Alternate the type of `v`; keep a chain of dependent declarations alive.
      await value(i % 2 ? `const v = ${i}; total += v` : `const v = "s${i}"; total += v.length`);
      if (i % 10 === 0) await value(`const keep${i}: Pair = ["k", total]; function useKeep${i}(): number { return keep${i}[1] }`);
    }
    expect(await value("typeof v")).toBe("'number'");
    expect((await run("const wrong: string = v")).status).toBe("error");
    expect(Number(await value("useKeep0() + useKeep70()"))).toBeGreaterThan(0);
    expect((await run("const bad: string = useKeep30()")).status).toBe("error");
    expect(await value("total")).toBe(String(eval("let t = 0; for (let i = 0; i < 80; i++) t += i % 2 ? i : `s${i}`.length; t")));
  });
});

describe("results", () => {
  test("top-level await", async () => {
    expect(await value("await new Promise<number>((r) => setTimeout(() => r(42), 5))")).toBe("42");
    expect(await value("const late = await Promise.resolve('ok'); late")).toBe("'ok'");
  });

  test("the last expression is the result, in inspect style; undefined gives none", async () => {
    expect(await value("'quoted'")).toBe("'quoted'");
    expect(await value("({ a: [1, 2], s: new Set([1]) })")).toBe("{ a: [ 1, 2 ], s: Set(1) { 1 } }");
    expect(await value("undefined")).toBeUndefined();
    expect(await value("const notAResult = 3")).toBeUndefined();
    expect(await value("console.log('x')")).toBeUndefined();
  });

  test("an object with Symbol.for('Jupyter.display') is shown by its bundle", async () => {
    const out = await run(`({ [Symbol.for("Jupyter.display")]() { return { "text/html": "<b>hi</b>" }; } })`);
    expect(out.status).toBe("ok");
    const result = out.status === "ok" ? out.result : undefined;
    expect(result?.["text/html"]).toBe("<b>hi</b>");
    expect(typeof result?.["text/plain"]).toBe("string");
  });
});

describe("type checking", () => {
  test("a type error stops the cell before it runs, naming the cell's line and column", async () => {
    await value("let hits = 0");
    const out = await run('hits = 1;\nconst bad: number = "x";');
    expect(out.status).toBe("error");
    if (out.status !== "error") return;
    expect(out.ename).toBe("TypeScriptError");
    expect(out.evalue).toMatch(/^<cell \d+>:2:7 Type 'string' is not assignable to type 'number'\./);
    expect(out.traceback.join("\n")).toContain("TS2322");
    expect(await value("hits")).toBe("0");
    // The failed cell's names are not visible later.
    expect((await run("bad")).status).toBe("error");
  });

  test("column counts code points after astral characters", async () => {
    const out = await run('const emoji = "😀😀"; const n: number = emoji;');
    expect(out.status === "error" && out.evalue).toMatch(/:1:27 /);
  });

  test("checking can be switched off per cell and per session", async () => {
    expect(await value('//% typecheck off\nconst loose: number = "text" as any as string as unknown as number; (loose as any).length')).toBe("4");
    expect(await value('//% typecheck off\nconst looser: number = "abc"; looser')).toBe("'abc'");
    await value("streambook.typecheck = false");
    expect(await value('const l2: number = "y"; l2')).toBe("'y'");
    await value("streambook.typecheck = true");
    expect((await run('const l3: number = "z"')).status).toBe("error");
    // A syntax error never runs, checked or not.
    const syntax = await run("//% typecheck off\nconst = 1");
    expect(syntax).toMatchObject({ status: "error", ename: "TypeScriptError" });
  });
});

describe("runtime errors", () => {
  test("ename, evalue and a traceback in the cell's own lines, without kernel frames", async () => {
    const out = await run(`
function inner(n: number): number {
  if (n > 1) throw new RangeError("too big");
  return n;
}
inner(5);`);
    expect(out.status).toBe("error");
    if (out.status !== "error") return;
    expect(out.ename).toBe("RangeError");
    expect(out.evalue).toBe("too big");
    expect(out.traceback[0]).toBe("RangeError: too big");
    const frames = out.traceback.slice(1).join("\n");
    expect(frames).toMatch(/at inner \(<cell \d+>:3:20\)/);
    expect(frames).toMatch(/<cell \d+>:6:1/);
    expect(frames).not.toMatch(/evaluate|cell-context|node:|vitest|streambook-cell/);
  });

  test("a subclass of Error is named by its class; non-errors are shown", async () => {
    const out = await run("class MyProblem extends Error {}\nthrow new MyProblem('custom');");
    expect(out).toMatchObject({ status: "error", ename: "MyProblem", evalue: "custom" });
    expect(await run("throw 'plain'")).toMatchObject({ status: "error", evalue: "'plain'" });
  });

  test("process.exit() from a cell is refused and the kernel lives on", async () => {
    const out = await run("process.exit(1)");
    expect(out).toMatchObject({ status: "error", ename: "ProcessExitRefusedError" });
    expect(await value("1 + 1")).toBe("2");
  });
});

describe("output routing", () => {
  test("console output from timers and promises goes to the cell that started them, after its reply", async () => {
    const a = recorder();
    const b = recorder();
    const outA = await run(
      "setTimeout(() => console.log('late A'), 20);\nPromise.resolve().then(() => console.error('micro A'));\nconsole.log('now A', { n: 1 });",
      a.sink,
    );
    expect(outA.status).toBe("ok");
    const outB = await run("await new Promise((r) => setTimeout(r, 40));\nconsole.log('B');", b.sink);
    expect(outB.status).toBe("ok");
    await a.waitForText("stdout", "late A");
    await a.waitForText("stderr", "micro A");
    expect(a.text("stdout")).toBe("now A { n: 1 }\nlate A\n");
    expect(b.text("stdout")).toBe("B\n");
    expect(b.text("stderr")).toBe("");
  });

  test("an exception in a timer is reported to its cell and does not kill the kernel", async () => {
    const a = recorder();
    await run("setTimeout(() => { throw new Error('timer boom') }, 5);", a.sink);
    await a.waitForText("stderr", "timer boom");
    expect(a.text("stderr")).toMatch(/<cell \d+>:1:/);
    expect(await value("2 + 2")).toBe("4");
  });

  test("an unhandled rejection is reported to its cell and does not kill the kernel", async () => {
    // vitest fails a run on unhandled rejections: let only the kernel's handler see this one.
    const saved = process.listeners("unhandledRejection");
    for (const l of saved) if (!String(l).includes("reportAsyncError")) process.off("unhandledRejection", l);
    try {
      const a = recorder();
      // (Not the last expression: that would be the cell's own result, and an ordinary cell error.)
      await run("Promise.reject(new Error('nobody catches'));\nnull;", a.sink);
      await a.waitForText("stderr", "nobody catches");
      expect(a.text("stderr")).toContain("Unhandled promise rejection");
      expect(await value("3 + 3")).toBe("6");
    } finally {
      for (const l of saved) if (!process.listeners("unhandledRejection").includes(l)) process.on("unhandledRejection", l);
    }
  });

  test("input() asks through the cell's context", async () => {
    expect(await value("await input('name?')")).toBe("'answer to name?'");
    expect(await value("await input.password('pw?')")).toBe("'answer to pw?'");
  });
});

describe("modules", () => {
  test("require of a built-in and of a package in the notebook's folder", async () => {
    expect(await value("require('path').join('a', 'b')")).toBe("'a/b'");
    expect(await value("require('cjs-pkg').twice(21)")).toBe("42");
  });

  test("static import of an ESM-only package, a local module and a CommonJS package", async () => {
    expect(await value("import { hello } from 'esm-only';\nhello('x')")).toBe("'hi x'");
    expect(await value("hello('again')")).toBe("'hi again'");
    expect(await value("import esmDefault from 'esm-only'; esmDefault")).toBe("42");
    expect(await value("import { local } from './local.mjs'; local")).toBe("7");
    expect(await value("import cjs from 'cjs-pkg'; cjs.twice(2)")).toBe("4");
    expect(await value("(await import('esm-only')).default")).toBe("42");
  });
});

/** The kernel's files as CommonJS in `dir`, so a plain node child can run them. */
function writeKernelCopy(dir: string): void {
  const kernelDir = path.join(__dirname, "..", "kernel");
  for (const f of ["evaluate", "language", "transform", "stack", "display", "cell-context", "interpreter", "process-guard", "primordials", "checker", "checker-client", "checker-process", "checker-snapshot"]) {
    const src = fs.readFileSync(path.join(kernelDir, `${f}.ts`), "utf8");
    const js = ts.transpileModule(src, {
      compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
    }).outputText;
    fs.writeFileSync(path.join(dir, `${f}.js`), js);
  }
}

describe("interrupt", () => {
  test("interrupt() abandons a pending await; variables survive and the next cell runs", async () => {
    await value("let kept = 5");
    const cell = recorder();
    const pending = run("kept = 6;\nconsole.log('waiting');\nawait new Promise(() => {});\nkept = 7;", cell.sink);
    await cell.waitForText("stdout", "waiting");
    it.interrupt();
    const out = await pending;
    expect(out).toMatchObject({ status: "error", ename: "KeyboardInterrupt" });
    expect(await value("kept")).toBe("6");
  });

  test("an interrupt that comes before the cell starts running (while it is checked) stops it unrun", async () => {
    await value("let ranEarly = false");
    // execute() checks synchronously up to its first await: this interrupt lands before the cell runs.
    const pending = run("ranEarly = true;\n'ran'");
    it.interrupt();
    expect(await pending).toMatchObject({ status: "error", ename: "KeyboardInterrupt" });
    expect(await value("ranEarly")).toBe("false");
    // The interrupt is used up: the next cell runs.
    expect(await value("ranEarly = true")).toBe("true");
  });

  test("a SIGINT queued while a cell is type-checked ends it with KeyboardInterrupt unrun, in a child process", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "streambook-sigint-"));
    try {
      writeKernelCopy(dir);
      fs.writeFileSync(
        path.join(dir, "driver.js"),
        `const { createInterpreter } = require("./evaluate.js");
const sink = { stream: () => {}, displayData() {}, updateDisplayData() {}, clearOutput() {} };
const it = createInterpreter({ cwd: ${JSON.stringify(dir)}, warmup: false });
let n = 0;
const ctx = () => ({ sink, executionCount: ++n, input: async () => "", silent: false });
(async () => {
  await it.execute("let ran = false", ctx());
  // Sent to ourselves just before execute: like a SIGINT during the synchronous type check, its
  // handler cannot run before the event loop turns. Unhandled, the cell would run (and spin).
  process.kill(process.pid, "SIGINT");
  const stopped = await it.execute("ran = true;\\nwhile (ran) {}", ctx());
  const after = await it.execute("ran", ctx());
  process.stdout.write(JSON.stringify({ stopped, after }) + "\\n");
  await it.shutdown(false);
})();
`,
      );
      const child = spawn(process.execPath, [path.join(dir, "driver.js")], {
        env: { ...process.env, NODE_PATH: path.join(__dirname, "..", "node_modules") },
        stdio: ["ignore", "pipe", "pipe"],
      });
      let stdout = "";
      child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
      // A kernel that lost the signal spins: bound the wait, then fail on the missing result.
      const killer = setTimeout(() => child.kill("SIGKILL"), 45_000);
      const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
      clearTimeout(killer);
      const line = stdout.split("\n").find((l) => l.startsWith("{"));
      expect(line, "the cell spun: the interrupt was lost").toBeDefined();
      expect(code).toBe(0);
      const result = JSON.parse(line ?? "{}") as { stopped: ExecuteOutcome; after: ExecuteOutcome };
      expect(result.stopped).toMatchObject({ status: "error", ename: "KeyboardInterrupt" });
      expect(result.after).toMatchObject({ status: "ok", result: { "text/plain": "false" } });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test("SIGINT stops a synchronous infinite loop (breakOnSigint), in a child process", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "streambook-sigint-"));
    try {
      writeKernelCopy(dir);
      fs.writeFileSync(
        path.join(dir, "driver.js"),
        `const { createInterpreter } = require("./evaluate.js");
const sink = { stream: () => {}, displayData() {}, updateDisplayData() {}, clearOutput() {} };
const it = createInterpreter({ cwd: ${JSON.stringify(dir)}, warmup: false });
let n = 0;
const ctx = () => ({ sink, executionCount: ++n, input: async () => "", silent: false });
(async () => {
  await it.execute("let survivor = 41", ctx());
  const looped = await it.execute('require("fs").writeSync(1, "looping\\\\n");\\nwhile (true) {}', ctx());
  const after = await it.execute("survivor + 1", ctx());
  process.stdout.write(JSON.stringify({ looped, after }) + "\\n");
  await it.shutdown(false);
})();
`,
      );
      const child = spawn(process.execPath, [path.join(dir, "driver.js")], {
        env: { ...process.env, NODE_PATH: path.join(__dirname, "..", "node_modules") },
        stdio: ["ignore", "pipe", "pipe"],
      });
      let stdout = "";
      let stderr = "";
      child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
      const done = new Promise<number | null>((resolve) => child.on("exit", resolve));
      await new Promise<void>((resolve) => {
        child.stdout.on("data", (d: Buffer) => {
          const had = stdout.includes("looping");
          stdout += d.toString();
          if (!had && stdout.includes("looping")) {
            child.kill("SIGINT");
            resolve();
          }
        });
        void done.then(() => resolve());
      });
      const code = await done;
      expect(stderr).not.toMatch(/Error(?!.*ExperimentalWarning)/);
      expect(code).toBe(0);
      const line = stdout.split("\n").find((l) => l.startsWith("{"));
      const result = JSON.parse(line ?? "{}") as { looped: ExecuteOutcome; after: ExecuteOutcome };
      expect(result.looped).toMatchObject({ status: "error", ename: "KeyboardInterrupt" });
      expect(result.after).toMatchObject({ status: "ok", result: { "text/plain": "42" } });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("prelude", () => {
  test("a module's exports and typed lazy globals are pre-bound, for the runtime and the checker", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "streambook-prelude-"));
    const mod = path.join(dir, "engine.js");
    fs.writeFileSync(mod, "class Greeter { greet() { return 'hello'; } }\nexports.Greeter = Greeter;\nexports.twice = (n) => n * 2;\n");
    fs.writeFileSync(path.join(dir, "engine.d.ts"), "export declare class Greeter { greet(): string }\nexport declare function twice(n: number): number;\nexport interface Shape { sides: number }\n");
    let made = 0;
    const p = createInterpreter({
      cwd: dir,
      warmup: false,
      handleSigint: false,
      prelude: {
        module: mod,
        globals: { answer: { type: 'import("./engine.js").Greeter', get: () => (made++, new (require(mod).Greeter)()) } },
      },
    });
    const ctx = () => ({ sink: recorder().sink, executionCount: 1, input: async () => "", silent: false });
    try {
      await p.warm();
      expect(made).toBe(0); // lazy
      expect(await p.execute("const s: Shape = { sides: twice(2) }; new Greeter().greet() + s.sides", ctx())).toMatchObject({
        status: "ok",
        result: { "text/plain": "'hello4'" },
      });
      expect(await p.execute("answer.greet()", ctx())).toMatchObject({ status: "ok", result: { "text/plain": "'hello'" } });
      expect(made).toBe(1);
      expect(await p.execute("twice('x')", ctx())).toMatchObject({ status: "error", ename: "TypeScriptError" });
      expect(await p.execute("const twice = (s: string) => s + s; twice('x')", ctx())).toMatchObject({ status: "ok", result: { "text/plain": "'xx'" } });
      expect((await p.complete("Gree", 4)).matches).toContain("Greeter");
    } finally {
      await p.shutdown(false);
      fs.rmSync(dir, { recursive: true, force: true });
    }
    // Its globals are gone with it (a restart starts clean), the other interpreter's display stays.
    expect("Greeter" in globalThis || "answer" in globalThis).toBe(false);
    expect(await value("typeof display")).toBe("'function'");
  });
});

describe("one JavaScript world", () => {
  test("arrays, objects and promises from main-realm code pass instanceof in cells", async () => {
    expect(await value("const { collect, later } = require('engine-like') as { collect(): number[]; later(): Promise<object> };\n[collect() instanceof Array, Array.isArray(collect()), later() instanceof Promise]")).toBe("[ true, true, true ]");
    // Node's own results: an array of util's and of fs's making, an object of JSON's.
    expect(await value("[require('util').inspect([1, 2]).split(' ') instanceof Array, require('fs').readdirSync('.') instanceof Array, require('path').parse('/a/b') instanceof Object]")).toBe("[ true, true, true ]");
  });

  test("errors cross both ways: new Error() in a cell is an Error to modules, and an engine error class is caught by instanceof", async () => {
    expect(await value("require('engine-like').kinds([1, 2])")).toBe("[ true, true, false, false ]");
    expect(await value("require('engine-like').kinds(new Error('x'))")).toBe("[ false, true, true, false ]");
    expect(await value("require('engine-like').kinds(Promise.resolve(1))")).toBe("[ false, true, false, true ]");
    expect(await value("require('engine-like').callAndCatch(() => { throw new Error('from a cell') })")).toBe("'Error from a cell'");
    expect(await value(`
import { EngineStateError, fail } from "engine-like";
let caught = "nothing";
try { fail() } catch (e) { caught = e instanceof EngineStateError && e instanceof Error ? "engine error: " + e.message : "missed" }
caught`)).toBe("'engine error: stopped'");
  });

  test("the kernel's process and console are not the cells': exit() stays real for the kernel", async () => {
    const realExit = process.exit;
    expect(await run("process.exit(0)")).toMatchObject({ status: "error", ename: "ProcessExitRefusedError" });
    expect(process.exit).toBe(realExit);
    const a = recorder();
    expect(await run("console.log(typeof process.exit, globalThis.process === process)", a.sink)).toMatchObject({ status: "ok" });
    expect(a.text("stdout")).toBe("function false\n");
  });
});

describe("user expressions", () => {
  test("are evaluated after the cell, errors become error entries", async () => {
    await value("const ux = 20");
    const out = await it.evaluateExpressions({ ok: "ux + 1", bad: "nope.x" });
    expect(out.ok).toMatchObject({ status: "ok", data: { "text/plain": "21" } });
    expect(out.bad).toMatchObject({ status: "error", ename: "ReferenceError" });
  });
});
