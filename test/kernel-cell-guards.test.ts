// What a cell cannot do to the real kernel (dist/kernel/main.js, TypeScript cells), through a raw
// ZeroMQ client: end its process by any path, or break it by replacing the built-ins its own code
// uses. Each case: the cell runs (or is refused), kernel_info still answers on shell and on control,
// the next cell runs (or its error names what was replaced), and the session recovers once the cell's
// change is undone.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RawKernel, type RawMessage } from "./support/raw-kernel.js";

let kernel: RawKernel;

beforeAll(async () => {
  kernel = await RawKernel.start();
  expect(await kernel.ready(60_000)).toBe(true);
  expect((await kernel.client.execute("1", 60_000)).reply?.content.status).toBe("ok"); // TypeScript loaded
}, 90_000);

afterAll(async () => {
  const exit = await kernel.stop();
  expect(exit).toEqual({ code: 0, signal: null });
});

const cell = async (code: string): Promise<{ reply: RawMessage | undefined; text: string; iopub: RawMessage[] }> =>
  kernel.client.execute(`//% typecheck off\n${code}`, 20_000);

async function alive(): Promise<void> {
  expect((await kernel.client.request("control", "kernel_info_request", {}, 10_000))?.header.msg_type).toBe("kernel_info_reply");
  expect((await kernel.client.request("shell", "kernel_info_request", {}, 10_000))?.header.msg_type).toBe("kernel_info_reply");
}

describe("exit paths", () => {
  const paths = [
    "process.exit()",
    "globalThis.process.exit(3)",
    'require("process").exit(4)',
    'require("node:process").reallyExit(5)',
    "globalThis.process.abort()",
    'process.kill(process.pid, "SIGTERM")',
    'process.kill(process.pid, "SIGKILL")',
    "process.kill(0)",
  ];
  for (const path of paths) {
    it(`${path} is refused and the kernel lives on`, async () => {
      const done = await cell(path);
      expect(done.reply?.content.status).toBe("error");
      expect(done.reply?.content.ename).toBe("ProcessExitRefusedError");
      expect(String(done.reply?.content.evalue)).toMatch(/would stop the kernel, so it is refused/);
      await alive();
    }, 30_000);
  }

  it("signals that do not end the kernel still work: 0 asks whether it exists", async () => {
    const done = await cell("process.kill(process.pid, 0)");
    expect(done.reply?.content.status).toBe("ok");
    expect(done.text).toBe("true");
  }, 30_000);
});

describe("a cell that replaces a built-in breaks only itself", () => {
  // [what, the cell that replaces it, the cell that puts it back]
  const cases: [string, string, string][] = [
    ["JSON", "var saved = JSON; (globalThis as any).JSON = undefined;", "(globalThis as any).JSON = saved;"],
    ["JSON.stringify", "var saved = JSON.stringify; JSON.stringify = () => { throw new Error('broken'); };", "JSON.stringify = saved;"],
    ["JSON.parse", "var saved = JSON.parse; JSON.parse = () => ({});", "JSON.parse = saved;"],
    ["Map", "var saved = Map; (globalThis as any).Map = class {};", "(globalThis as any).Map = saved;"],
    ["Map.prototype.set", "var saved = Map.prototype.set; Map.prototype.set = function () { throw new Error('broken'); };", "Map.prototype.set = saved;"],
    ["Date", "var saved = Date; (globalThis as any).Date = class {};", "(globalThis as any).Date = saved;"],
    ["Date.now", "var saved = Date.now; Date.now = () => { throw new Error('broken'); };", "Date.now = saved;"],
    ["Buffer", "var saved = Buffer; (globalThis as any).Buffer = undefined;", "(globalThis as any).Buffer = saved;"],
    ["Buffer.from", "var saved = Buffer.from; (Buffer as any).from = () => { throw new Error('broken'); };", "(Buffer as any).from = saved;"],
    ["Promise", "var saved = Promise; (globalThis as any).Promise = class { constructor() {} };", "(globalThis as any).Promise = saved;"],
    ["Promise.prototype.then", "var saved = Promise.prototype.then; (Promise.prototype as any).then = function () { return this; };", "(Promise.prototype as any).then = saved;"],
    ["Promise.resolve", "var saved = Promise.resolve; (Promise as any).resolve = () => { throw new Error('broken'); };", "(Promise as any).resolve = saved;"],
    ["Array.prototype.push", "var saved = Array.prototype.push; Array.prototype.push = function () { throw new Error('broken'); };", "Array.prototype.push = saved;"],
    ["Array.prototype.push (quietly)", "var saved = Array.prototype.push; Array.prototype.push = function () { return 0; };", "Array.prototype.push = saved;"],
    ["Array.prototype.map", "var saved = Array.prototype.map; Array.prototype.map = function () { throw new Error('broken'); };", "Array.prototype.map = saved;"],
    ["Function.prototype.call", "var saved = Function.prototype.call; (Function.prototype as any).call = function () { throw new Error('broken'); };", "(Function.prototype as any).call = saved;"],
    ["Function.prototype.apply", "var saved = Function.prototype.apply; (Function.prototype as any).apply = function () { throw new Error('broken'); };", "(Function.prototype as any).apply = saved;"],
    ["String.prototype.split", "var saved = String.prototype.split; (String.prototype as any).split = function () { return []; };", "(String.prototype as any).split = saved;"],
    ["Object.prototype.toJSON", "(Object.prototype as any).toJSON = function () { return 'hijacked'; };", "delete (Object.prototype as any).toJSON;"],
    ["Object.defineProperty", "var saved = Object.defineProperty; Object.defineProperty = (() => { throw new Error('broken'); }) as any;", "Object.defineProperty = saved;"],
    ["Array.prototype[Symbol.iterator]", "var saved = Array.prototype[Symbol.iterator]; (Array.prototype as any)[Symbol.iterator] = function () { throw new Error('broken'); };", "(Array.prototype as any)[Symbol.iterator] = saved;"],
  ];
  for (const [what, replace, restore] of cases) {
    it(what, async () => {
      const replaced = await cell(replace);
      expect(replaced.reply, `no reply to the cell replacing ${what}`).toBeDefined();
      // The cell is told what it replaced: put back at once (Node.js needs it), or kept with a warning.
      expect(replaced.text).toMatch(/streambook: (this cell replaced .*|.* put back: Node\.js itself relies on)/);
      expect(replaced.text).toContain(what.replace(/ \(.*\)$/, ""));
      await alive();
      const next = await cell("1 + 1");
      expect(next.reply, `no reply to the cell after replacing ${what}`).toBeDefined();
      if (next.reply?.content.status === "ok") expect(next.text).toMatch(/2$/);
      else expect(`${String(next.reply?.content.evalue)}\n${(next.reply?.content.traceback as string[]).join("\n")}`).toContain(what.replace(/ \(.*\)$/, ""));
      // Every message still parses (nothing of the kernel's went through a replaced JSON or toJSON).
      expect(next.iopub.map((m) => m.header.msg_type)).toEqual(expect.arrayContaining(["status", "execute_input"]));
      const back = await cell(restore);
      expect(back.reply?.content.status, `the cell putting ${what} back: ${back.text}`).toBe("ok");
      const after = await cell("2 + 2");
      expect(after.reply?.content.status).toBe("ok");
      expect(after.text).toBe("4");
    }, 30_000);
  }

  it("Object.prototype.then is refused where it is defined: it would make every object a promise-like", async () => {
    const defined = await cell("(Object.prototype as any).then = function () {};");
    expect(defined.reply?.content.status).toBe("error");
    expect(String(defined.reply?.content.evalue)).toMatch(/Object\.prototype\.then is refused/);
    await alive();
    // then on ordinary objects and classes is untouched: thenables of one's own still work.
    const own = await cell("const p: any = {}; p.then = (ok: (v: number) => void) => ok(7); await p");
    expect(own.text).toBe("7");
    expect((await cell("'then' in {}")).reply?.content.status).toBe("ok");
  }, 30_000);

  it("a vital built-in (Node.js relies on it) is put back after the cell, and said so", async () => {
    const replacing = await cell("(Function.prototype as any).apply = function () { throw new Error('broken'); };");
    expect(replacing.text).toMatch(/Function\.prototype\.apply was put back: Node\.js itself relies on it/);
    const next = await cell("[1, 2, 3].length");
    expect(next.text).toBe("3");
  }, 30_000);

  it("an error while built-ins stay replaced names them", async () => {
    await cell("var keep = String.prototype.trim; String.prototype.trim = function () { return 'x'; };");
    const failing = await cell("throw new Error('mine')");
    expect(failing.reply?.content.status).toBe("error");
    expect(String(failing.reply?.content.evalue)).toMatch(/mine \(this session replaced built-ins .*String\.prototype\.trim \(cell \d+\)/);
    await cell("String.prototype.trim = keep;");
    const clean = await cell("throw new Error('mine again')");
    expect(String(clean.reply?.content.evalue)).toBe("mine again");
  }, 30_000);
});
