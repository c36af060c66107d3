// A test-only kernel: the real protocol side (dist/kernel/main.js) with a tiny JavaScript
// interpreter (vm), so the transport can be tested without the TypeScript interpreter.
"use strict";
const vm = require("node:vm");
const util = require("node:util");
const path = require("node:path");
const { startFromCommandLine } = require(path.join(__dirname, "..", "..", "dist", "kernel", "main.js"));

function createJsInterpreter() {
  let current; // ExecuteContext of the running cell
  let abandon; // rejects the running cell's pending await
  const out = (name) => (...args) => current && current.sink.stream(name, util.format(...args) + "\n");
  let displayCounter = 0;
  const display = (value) => showBundle({ "text/plain": util.inspect(value) });
  const showBundle = (data) => {
    const id = `js-${++displayCounter}`;
    const ctx = current;
    ctx.sink.displayData(data, {}, { display_id: id });
    return { id, update: (value) => ctx.sink.updateDisplayData(typeof value === "string" ? { "text/plain": value } : value, {}, { display_id: id }) };
  };
  display.html = (html) => showBundle({ "text/html": html, "text/plain": html });
  display.clear = (wait = false) => current.sink.clearOutput(wait);
  const sandbox = {
    console: { log: out("stdout"), info: out("stdout"), error: out("stderr"), warn: out("stderr") },
    display,
    input: (prompt = "") => current.input(prompt, false),
    password: (prompt = "") => current.input(prompt, true),
    require,
    process,
    setTimeout,
    clearTimeout,
    setInterval,
    clearInterval,
    Buffer,
  };
  const context = vm.createContext(sandbox);
  process.on("SIGINT", () => {
    if (abandon) abandon(Object.assign(new Error("interrupted"), { name: "Interrupted" }));
  });

  return {
    async execute(code, ctx) {
      current = ctx;
      try {
        let value;
        if (/\bawait\b/.test(code)) {
          const script = new vm.Script(`(async () => { ${code}\n })()`);
          const pending = script.runInContext(context, { breakOnSigint: true });
          value = await new Promise((resolve, reject) => {
            abandon = reject;
            pending.then(resolve, reject);
          });
        } else {
          value = new vm.Script(code).runInContext(context, { breakOnSigint: true });
        }
        if (value === undefined) return { status: "ok" };
        return { status: "ok", result: { "text/plain": util.inspect(value) } };
      } catch (err) {
        const e = err instanceof Error ? err : new Error(String(err));
        const name = /Script execution interrupted/.test(e.message) ? "Interrupted" : e.name;
        return { status: "error", ename: name, evalue: e.message, traceback: [`${name}: ${e.message}`] };
      } finally {
        abandon = undefined;
      }
    },
    async evaluateExpressions(expressions) {
      const result = {};
      for (const [key, code] of Object.entries(expressions)) {
        try {
          result[key] = { status: "ok", data: { "text/plain": util.inspect(vm.runInContext(code, context)) }, metadata: {} };
        } catch (err) {
          result[key] = { status: "error", ename: err.name, evalue: err.message, traceback: [] };
        }
      }
      return result;
    },
    async complete(code, cursorPos) {
      const before = [...code].slice(0, cursorPos).join("");
      const word = /[A-Za-z_$][\w$]*$/.exec(before)?.[0] ?? "";
      const names = Object.getOwnPropertyNames(context).filter((n) => n.startsWith(word));
      return { matches: names, cursor_start: cursorPos - [...word].length, cursor_end: cursorPos, metadata: {} };
    },
    async inspect(code) {
      const word = /[A-Za-z_$][\w$.]*/.exec(code)?.[0];
      try {
        const value = vm.runInContext(word ?? "undefined", context);
        return { found: value !== undefined, data: { "text/plain": util.inspect(value) } };
      } catch {
        return { found: false, data: {} };
      }
    },
    isComplete(code) {
      try {
        new vm.Script(code);
        return { status: "complete" };
      } catch (err) {
        return /Unexpected end of input|missing \)/.test(err.message) ? { status: "incomplete", indent: "" } : { status: "invalid" };
      }
    },
    interrupt() {
      if (abandon) abandon(new Error("interrupted"));
    },
    async shutdown() {},
  };
}

startFromCommandLine(process.argv.slice(2), createJsInterpreter);
