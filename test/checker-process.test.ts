// The type checker's own process: started from the V8 snapshot `npm run build` makes, it answers checks,
// completions and inspection; if it dies mid-session, checking moves into the kernel's process and every
// name an earlier cell declared is still known. A snapshot from another Node is refused, not loaded.
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import { createRequire } from "node:module";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";

const root = path.resolve(__dirname, "..");
const load = createRequire(__filename);
const client = load(path.join(root, "dist", "kernel", "checker-client.js")) as typeof import("../kernel/checker-client.js");
const config = { cwd: fs.mkdtempSync(path.join(os.tmpdir(), "sb-checker-")), globalDeclarations: "declare var answer: number;", preludeModule: path.join(root, "dist", "kernel", "notebook-prelude.js") };

afterAll(() => fs.rmSync(config.cwd, { recursive: true, force: true }));

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("the checker process", () => {
  it("runs from the snapshot npm run build made, and survives its own death without losing a declaration", async () => {
    expect(client.snapshotProblem()).toBeUndefined();
    const logs: string[] = [];
    const checker = client.createChecker(config, (t) => logs.push(t)) as ReturnType<typeof client.createChecker> & { processId?: number };
    try {
      const pid = checker.processId;
      expect(pid, "a checker process, not in-process checking").toBeGreaterThan(0);
      await checker.warm();

      const typed = await checker.check("function scale(x: number): number {\n  return x * answer;\n}\nscale(2)", true);
      expect(typed.diagnostics).toEqual([]);
      expect(typed.body?.code).toContain("return scale(2)");
      checker.commit();
      const wrong = await checker.check("const s: string = scale(3);", true);
      expect(wrong.diagnostics.map((d) => d.message)).toEqual(["Type 'number' is not assignable to type 'string'."]);
      checker.discard();
      // The prelude's types are there: a pair stream offers pair operations.
      const line = "new StreamingContext(new SparkContext(), 1000).queueStream([[[\"a\", 1]]] as [string, number][][]).reduceByK";
      const done = await checker.complete(line, line.length);
      expect(done.matches).toContain("reduceByKey");
      const shown = await checker.inspect("scale(1)", 2, 0);
      expect(String(shown.data["text/plain"])).toContain("scale(x: number): number");

      // The process dies (an OOM kill, say): checking continues here, with scale still declared.
      process.kill(pid as number, "SIGKILL");
      for (let i = 0; i < 200 && alive(pid as number); i++) await new Promise((r) => setTimeout(r, 25));
      const after = await checker.check("scale(4) + 1", true);
      expect(after.diagnostics).toEqual([]);
      checker.commit();
      expect(checker.processId).toBeUndefined();
      expect(logs.join("\n")).toMatch(/type checker process (exited|is gone).*checking cells in the kernel's process/);
      const still = await checker.check("const t: string = scale(5);", true);
      expect(still.diagnostics.map((d) => d.message)).toEqual(["Type 'number' is not assignable to type 'string'."]);
      checker.discard();
    } finally {
      checker.close();
    }
  }, 120_000);

  it("is not started from a snapshot another Node built: that one is refused with the reason", () => {
    const copy = fs.mkdtempSync(path.join(os.tmpdir(), "sb-checker-copy-"));
    try {
      fs.mkdirSync(path.join(copy, "kernel"));
      for (const f of fs.readdirSync(path.join(root, "dist", "kernel"))) {
        if (f.endsWith(".js")) fs.copyFileSync(path.join(root, "dist", "kernel", f), path.join(copy, "kernel", f));
      }
      const info = JSON.parse(fs.readFileSync(path.join(root, "dist", "checker.blob.json"), "utf8")) as { node: string };
      info.node = "v1.0.0";
      fs.writeFileSync(path.join(copy, "checker.blob.json"), JSON.stringify(info));
      fs.writeFileSync(path.join(copy, "checker.blob"), "");
      const script = `const c = require(${JSON.stringify(path.join(copy, "kernel", "checker-client.js"))}); process.stdout.write(String(c.snapshotProblem()));`;
      const out = execFileSync(process.execPath, ["-e", script], { encoding: "utf8", env: { ...process.env, NODE_PATH: path.join(root, "node_modules") } });
      expect(out).toContain(`built by Node v1.0.0`);
      expect(out).toContain(process.version);
    } finally {
      fs.rmSync(copy, { recursive: true, force: true });
    }
  });
});
