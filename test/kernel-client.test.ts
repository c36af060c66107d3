// Runs the real-client suites (Debian's jupyter_client, jupyter_kernel_test, nbconvert) against the
// kernel, installed as a kernelspec into a temporary JUPYTER_DATA_DIR.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const root = path.resolve(__dirname, "..");
const python = "/usr/bin/python3";
let dataDir: string;
let env: NodeJS.ProcessEnv;

interface Run {
  code: number | null;
  output: string;
}

function runProcess(command: string, args: string[], cwd: string): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (d: Buffer) => (output += d.toString()));
    child.stderr.on("data", (d: Buffer) => (output += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, output }));
  });
}

/** unittest's summary lines: "Ran N tests" and "OK" (with no skips when none are allowed). */
function expectUnittestPassed(run: Run, tests: number): void {
  const summary = `exit code ${run.code}\n${run.output}`;
  expect(run.output, summary).toMatch(new RegExp(`Ran ${tests} tests? in`));
  expect(run.output, summary).toMatch(/\nOK\s*$/);
  expect(run.code, summary).toBe(0);
}

beforeAll(async () => {
  dataDir = mkdtempSync(path.join(tmpdir(), "streambook-jupyter-"));
  env = {
    ...process.env,
    JUPYTER_DATA_DIR: dataDir,
    // Keep the client side quiet and off the user's real Jupyter config.
    JUPYTER_CONFIG_DIR: path.join(dataDir, "config"),
    JUPYTER_RUNTIME_DIR: path.join(dataDir, "runtime"),
    PYDEVD_DISABLE_FILE_VALIDATION: "1",
    PYTHONDONTWRITEBYTECODE: "1",
  };
  // STREAMBOOK_TEST_JS_KERNEL=1 swaps in test/support/js-kernel.cjs (protocol side only, plain JS cells).
  const installer = process.env.STREAMBOOK_TEST_JS_KERNEL === "1"
    ? ["-e", `require(${JSON.stringify(path.join(root, "dist/kernel/install.js"))}).install({ argv: [process.execPath, ${JSON.stringify(path.join(root, "test/support/js-kernel.cjs"))}, "-f", "{connection_file}"] })`]
    : [path.join(root, "bin", "streambook.js"), "install", "--quiet"];
  const installed = await runProcess(process.execPath, installer, root);
  expect(installed.code, installed.output).toBe(0);
  expect(existsSync(path.join(dataDir, "kernels", "streambook", "kernel.json"))).toBe(true);
});

afterAll(() => {
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

describe("real Jupyter clients", () => {
  it("lists the kernelspec with jupyter kernelspec list", async () => {
    const run = await runProcess(python, ["-m", "jupyter_client.kernelspecapp", "list", "--json"], root);
    expect(run.code, run.output).toBe(0);
    const specs = JSON.parse(run.output.slice(run.output.indexOf("{"))) as { kernelspecs: Record<string, { spec: { display_name: string; language: string } }> };
    expect(specs.kernelspecs.streambook.spec.display_name).toBe("TypeScript (streambook)");
    expect(specs.kernelspecs.streambook.spec.language).toBe("typescript");
  }, 60_000);

  it("passes jupyter_kernel_test's conformance suite", async () => {
    const run = await runProcess(python, ["-m", "unittest", "-v", "test_conformance"], path.join(root, "test", "python"));
    expectUnittestPassed(run, 12);
    expect(run.output, run.output).not.toMatch(/skipped/);
  }, 180_000);

  it("passes the jupyter_client suite (interrupt, stdin, signatures, displays, 2,000 cells, restart, flood)", async () => {
    const run = await runProcess(python, ["-m", "unittest", "-v", "test_client"], path.join(root, "test", "python"));
    expectUnittestPassed(run, 20);
  }, 300_000);

  it("executes a notebook with jupyter nbconvert --execute", async () => {
    const out = path.join(dataDir, "executed.ipynb");
    const run = await runProcess("/usr/bin/jupyter", [
      "nbconvert", "--to", "notebook", "--execute", "--ExecutePreprocessor.kernel_name=streambook",
      "--ExecutePreprocessor.timeout=120", "--output", out, path.join(root, "test", "fixtures", "kernel-smoke.ipynb"),
    ], root);
    expect(run.code, run.output).toBe(0);
    const notebook = JSON.parse(readFileSync(out, "utf8")) as { cells: { outputs?: { output_type: string; text?: string | string[]; data?: Record<string, unknown> }[] }[] };
    const outputs = notebook.cells.flatMap((cell) => cell.outputs ?? []);
    // nbformat stores multi-line strings as lists of lines.
    const joined = (v: unknown): string => (Array.isArray(v) ? v.join("") : typeof v === "string" ? v : "");
    const text = (o: { text?: string | string[] }): string => joined(o.text);
    expect(outputs.some((o) => o.output_type === "stream" && text(o).includes("hello from streambook"))).toBe(true);
    expect(outputs.some((o) => o.output_type === "execute_result" && joined(o.data?.["text/plain"]) === "'HELLO'")).toBe(true);
    expect(outputs.some((o) => o.output_type === "display_data" && joined(o.data?.["text/html"]) === "<p>streambook</p>")).toBe(true);
    expect(outputs.some((o) => o.output_type === "execute_result" && joined(o.data?.["text/plain"]) === "42")).toBe(true);
    expect(outputs.some((o) => o.output_type === "error")).toBe(false);
  }, 180_000);
});
