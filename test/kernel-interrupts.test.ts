// Runs test/python/test_interrupts.py with Debian's jupyter_client against the real kernel, installed
// as a kernelspec in a temporary JUPYTER_DATA_DIR: a loop after a cell's first await (SIGINT and
// interrupt_request), a loop in a timer callback, a foreachRDD function that never returns.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const root = path.resolve(__dirname, "..");
let dataDir: string;
let env: NodeJS.ProcessEnv;

function runProcess(command: string, args: string[], cwd: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (d: Buffer) => (output += d.toString()));
    child.stderr.on("data", (d: Buffer) => (output += d.toString()));
    // Bounded: a kernel that never answers must fail the test, not hang it.
    const killer = setTimeout(() => child.kill("SIGKILL"), 240_000);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(killer);
      resolve({ code, output });
    });
  });
}

beforeAll(async () => {
  dataDir = mkdtempSync(path.join(tmpdir(), "streambook-interrupts-"));
  env = {
    ...process.env,
    JUPYTER_DATA_DIR: dataDir,
    JUPYTER_CONFIG_DIR: path.join(dataDir, "config"),
    JUPYTER_RUNTIME_DIR: path.join(dataDir, "runtime"),
    PYDEVD_DISABLE_FILE_VALIDATION: "1",
    PYTHONDONTWRITEBYTECODE: "1",
  };
  const installed = await runProcess(process.execPath, [path.join(root, "bin", "streambook.js"), "install", "--quiet"], root);
  expect(installed.code, installed.output).toBe(0);
});

afterAll(() => {
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

describe("interrupts through jupyter_client", () => {
  it("stop a loop after the first await, in a timer callback and in foreachRDD, keeping every variable", async () => {
    const run = await runProcess("/usr/bin/python3", ["-m", "unittest", "-v", "test_interrupts"], path.join(root, "test", "python"));
    const summary = `exit code ${run.code}\n${run.output}`;
    expect(run.output, summary).toMatch(/Ran 4 tests in/);
    expect(run.output, summary).toMatch(/\nOK\s*$/);
    expect(run.code, summary).toBe(0);
  }, 250_000);
});
