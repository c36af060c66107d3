// Cell latency of the interpreter, in-process: never-seen `1+N` cells and typed-function cells, for the
// working tree's kernel and a git revision's (default HEAD), interleaved in one run so load hits both.
// `npm run build && node dist/bench/cell-latency.js [--baseline=REV] [--cells=60] [--only=after] [--profile=FILE]`
// `--session=2000`: instead, session growth: a fresh interpreter per variant runs that many cells, each
// declaring a new typed function and calling it (bench/kernel_driver.py's session cell); first 20 vs last 20.
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as inspector from "node:inspector";
import * as os from "node:os";
import * as path from "node:path";
import ts from "typescript";
import type { ExecuteContext, OutputSink } from "../kernel/interpreter.js";
import type { StreambookInterpreter } from "../kernel/evaluate.js";

const FILES = ["evaluate", "language", "transform", "stack", "display", "cell-context", "interpreter", "checker", "checker-client", "checker-process", "checker-snapshot"];
const root = path.resolve(__dirname, "..", "..");

/** The kernel files of `rev` (or of the working tree) as CommonJS in a temporary folder. */
function materialise(rev: string | undefined, dir: string): string {
  fs.mkdirSync(dir, { recursive: true });
  for (const f of FILES) {
    const rel = `kernel/${f}.ts`;
    let src: string;
    try {
      src = rev ? execFileSync("git", ["show", `${rev}:${rel}`], { cwd: root, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }) : fs.readFileSync(path.join(root, rel), "utf8");
    } catch {
      continue; // a file that revision does not have
    }
    const js = ts.transpileModule(src, {
      compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
    }).outputText;
    fs.writeFileSync(path.join(dir, `${f}.js`), js);
  }
  return dir;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const baseline = args.find((a) => a.startsWith("--baseline="))?.slice(11) ?? "HEAD";
  const cells = Number(args.find((a) => a.startsWith("--cells="))?.slice(8) ?? 60);
  const only = args.find((a) => a.startsWith("--only="))?.slice(7);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "streambook-latency-"));
  const notebook = path.join(tmp, "notebook");
  fs.mkdirSync(notebook);
  const sink: OutputSink = { stream: () => {}, displayData: () => {}, updateDisplayData: () => {}, clearOutput: () => {} };
  let count = 0;
  const ctx = (): ExecuteContext => ({ sink, executionCount: ++count, input: async () => "", silent: false });
  const variants: Array<{ name: string; it: StreambookInterpreter; plus: number[]; typed: number[] }> = [];
  try {
    // NODE_PATH lets the copies find typescript and @types/node.
    process.env.NODE_PATH = path.join(root, "node_modules");
    (require("node:module") as { Module: { _initPaths(): void } }).Module._initPaths();
    const dirs: Array<[string, string]> = [];
    if (only !== "after") dirs.push([`before (${baseline})`, materialise(baseline, path.join(tmp, "before"))]);
    if (only !== "before") dirs.push(["after (working tree)", materialise(undefined, path.join(tmp, "after"))]);
    for (const [name, dir] of dirs) {
      const mod = require(path.join(dir, "evaluate.js")) as typeof import("../kernel/evaluate.js");
      const it = mod.createInterpreter({ cwd: notebook, warmup: false, handleSigint: false });
      await it.warm();
      // Warm the path itself (first emit, first rewrite) before measuring.
      for (let i = 0; i < 5; i++) await it.execute(`${1000 + i} + 1`, ctx());
      variants.push({ name, it, plus: [], typed: [] });
    }
    // --profile=FILE: a CPU profile of the measured loop only (open it in Chrome's DevTools).
    const profileFile = args.find((a) => a.startsWith("--profile="))?.slice(10);
    const session = profileFile ? new inspector.Session() : undefined;
    const post = (method: string, params?: object): Promise<unknown> =>
      new Promise((resolve, reject) => session!.post(method, params, (err, res) => (err ? reject(err) : resolve(res))));
    if (session) {
      session.connect();
      await post("Profiler.enable");
      await post("Profiler.setSamplingInterval", { interval: 100 });
      await post("Profiler.start");
    }
    const stopProfile = async (): Promise<void> => {
      if (!session || !profileFile) return;
      const { profile } = (await post("Profiler.stop")) as { profile: object };
      fs.writeFileSync(profileFile, JSON.stringify(profile));
      session.disconnect();
    };
    const sessionCells = Number(args.find((a) => a.startsWith("--session="))?.slice(10) ?? 0);
    if (sessionCells > 0) {
      const times = new Map(variants.map((v) => [v, [] as number[]]));
      for (let i = 0; i < sessionCells; i++) {
        for (const v of i % 2 ? [...variants].reverse() : variants) {
          const t = process.hrtime.bigint();
          const out = await v.it.execute(`function adds${i}(a: number, b: number): number {\n  return a + b;\n}\nadds${i}(1, 2)`, ctx());
          times.get(v)!.push(Number(process.hrtime.bigint() - t) / 1e6);
          if (out.status !== "ok" || out.result?.["text/plain"] !== "3") throw new Error(`${v.name}: ${JSON.stringify(out)}`);
        }
        if (args.includes("--progress") && (i + 1) % 250 === 0) console.error(`cell ${i + 1}`);
      }
      await stopProfile();
      for (const v of variants) {
        const xs = times.get(v)!;
        const early = median(xs.slice(0, 20));
        const late = median(xs.slice(-20));
        console.log(`${v.name.padEnd(22)} session of ${sessionCells} typed cells: cells 1-20 median ${early.toFixed(2)} ms, cells ${sessionCells - 19}-${sessionCells} median ${late.toFixed(2)} ms, growth ${(late / early).toFixed(2)}x`);
      }
      return;
    }
    for (let i = 0; i < cells; i++) {
      for (const v of i % 2 ? [...variants].reverse() : variants) {
        let t = process.hrtime.bigint();
        let out = await v.it.execute(`1 + ${i}`, ctx());
        v.plus.push(Number(process.hrtime.bigint() - t) / 1e6);
        if (out.status !== "ok") throw new Error(`${v.name}: ${JSON.stringify(out)}`);
        t = process.hrtime.bigint();
        out = await v.it.execute(`function scale${i}(xs: number[], k: number): number[] {\n  return xs.map((x) => x * k + ${i});\n}`, ctx());
        v.typed.push(Number(process.hrtime.bigint() - t) / 1e6);
        if (out.status !== "ok") throw new Error(`${v.name}: ${JSON.stringify(out)}`);
      }
    }
    await stopProfile();
    const first = variants[0];
    for (const v of variants) {
      const plus = median(v.plus);
      const typed = median(v.typed);
      const ratio = v === first ? "" : `   ratio to ${first.name}: 1+N ${(plus / median(first.plus)).toFixed(2)}, typed ${(typed / median(first.typed)).toFixed(2)}`;
      console.log(`${v.name.padEnd(22)} new 1+N cell median ${plus.toFixed(2)} ms, new typed-function cell median ${typed.toFixed(2)} ms${ratio}`);
    }
  } finally {
    for (const v of variants) await v.it.shutdown(false);
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
