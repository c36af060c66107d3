// Test support: a temporary Jupyter data dir with the streambook kernelspec, Debian's classic
// Notebook server on a free 127.0.0.1 port, and small helpers to run Python and the runner.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { randomBytes } from "node:crypto";
import { freePort } from "./ports.js";

export const REPO = path.resolve(__dirname, "..", "..");
export const PYTHON = "/usr/bin/python3";
export const STREAMBOOK_BIN = path.join(REPO, "bin", "streambook.js");

/** A precondition of this machine is missing: the message says what to install. */
export class TestEnvironmentError extends Error {
  override name = "TestEnvironmentError";
}

export function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `streambook-${prefix}-`));
}

export function requireFile(file: string, hint: string): void {
  if (!fs.existsSync(file)) throw new TestEnvironmentError(`${file} is missing: ${hint}`);
}

/** Checks that Debian's Python can import the modules a test needs. */
export function requirePythonModules(...modules: string[]): void {
  requireFile(PYTHON, "apt-get install -y python3 (the tests use Debian's /usr/bin/python3)");
  const r = spawnSync(PYTHON, ["-c", modules.map((m) => `import ${m}`).join("; ")], { encoding: "utf8" });
  if (r.status !== 0) {
    throw new TestEnvironmentError(
      `/usr/bin/python3 cannot import ${modules.join(", ")}: install them with apt (see .ci/run).\n${r.stderr}`,
    );
  }
}

/**
 * Registers the streambook kernelspec in a fresh JUPYTER_DATA_DIR through the project's own
 * installer, so the tests exercise the same path a user takes.
 */
export function makeJupyterDataDir(): string {
  requireFile(STREAMBOOK_BIN, "bin/streambook.js is missing; build the project with `npm run build`");
  const dataDir = tempDir("jupyter-data");
  const r = spawnSync(process.execPath, [STREAMBOOK_BIN, "install", "--user"], {
    env: { ...process.env, JUPYTER_DATA_DIR: dataDir },
    encoding: "utf8",
  });
  const spec = path.join(dataDir, "kernels", "streambook", "kernel.json");
  if (r.status !== 0 || !fs.existsSync(spec)) {
    throw new TestEnvironmentError(
      `\`streambook install --user\` with JUPYTER_DATA_DIR=${dataDir} did not write ${spec} (exit ${r.status}):\n${r.stdout}${r.stderr}`,
    );
  }
  return dataDir;
}


export function jupyterEnv(dataDir: string): NodeJS.ProcessEnv {
  return {
    ...process.env,
    JUPYTER_DATA_DIR: dataDir,
    JUPYTER_RUNTIME_DIR: path.join(dataDir, "runtime"),
    JUPYTER_CONFIG_DIR: path.join(dataDir, "config"),
    PYDEVD_DISABLE_FILE_VALIDATION: "1",
    // Debian's Python must not pick up a pyenv's site-packages.
    PYTHONNOUSERSITE: "1",
  };
}


export interface NotebookServer {
  url: string;
  token: string;
  port: number;
  notebookDir: string;
  dataDir: string;
  log(): string;
  stop(): Promise<void>;
}

/** The JupyterLab front end of test/jupyterlab (see test/support/jupyterlab.ts), served by jupyterlab_server. */
export const LAB_SERVER = path.join(REPO, "test", "jupyterlab", "server.py");

/**
 * Debian's servers: the classic Notebook (a page to drive), Jupyter Server (JupyterLab's backend), and
 * Jupyter Server with the test JupyterLab front end.
 */
const SERVERS = {
  notebook: { bin: "/usr/bin/jupyter-notebook", args: [], app: "NotebookApp", dirFlag: "--notebook-dir", apt: "jupyter-notebook" },
  server: { bin: "/usr/bin/jupyter-server", args: [], app: "ServerApp", dirFlag: "--ServerApp.root_dir", apt: "jupyter-server" },
  lab: { bin: PYTHON, args: [LAB_SERVER], app: "ServerApp", dirFlag: "--ServerApp.root_dir", apt: "jupyter-server python3-jupyterlab-server" },
} as const;

/** Starts a server of that kind with a temp notebook dir; resolves once /api answers. */
export async function startNotebookServer(options: { timeoutMs?: number; kind?: keyof typeof SERVERS } = {}): Promise<NotebookServer> {
  const server = SERVERS[options.kind ?? "notebook"];
  requireFile(server.bin, `apt-get install -y ${server.apt}`);
  const dataDir = makeJupyterDataDir();
  const notebookDir = tempDir("nbdir");
  const port = await freePort();
  const token = randomBytes(16).toString("hex");
  let output = "";
  const child: ChildProcess = spawn(
    server.bin,
    [
      ...server.args,
      "--no-browser",
      "--ip=127.0.0.1",
      `--port=${port}`,
      "--port-retries=0",
      "--allow-root",
      `--${server.app}.token=${token}`,
      `${server.dirFlag}=${notebookDir}`,
    ],
    // The lab server keeps its user settings and workspaces in the temp data dir, not in its build.
    { env: { ...jupyterEnv(dataDir), STREAMBOOK_LAB_STATE_DIR: path.join(dataDir, "lab-state") }, stdio: ["ignore", "pipe", "pipe"] },
  );
  child.stdout?.on("data", (d: Buffer) => (output += d.toString()));
  child.stderr?.on("data", (d: Buffer) => (output += d.toString()));
  let exited = false;
  child.once("exit", () => (exited = true));

  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + (options.timeoutMs ?? 30_000);
  for (;;) {
    if (exited) throw new TestEnvironmentError(`${server.bin} exited before answering:\n${output}`);
    try {
      const res = await fetch(`${url}/api?token=${token}`);
      if (res.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new TestEnvironmentError(`${server.bin} did not answer on ${url}/api in time:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }

  return {
    url,
    token,
    port,
    notebookDir,
    dataDir,
    log: () => output,
    stop: async () => {
      if (exited) return;
      const gone = new Promise<void>((resolve) => child.once("exit", () => resolve()));
      // The REST shutdown stops kernels cleanly; SIGTERM/SIGKILL are fallbacks.
      try {
        await fetch(`${url}/api/shutdown?token=${token}`, { method: "POST" });
      } catch {
        child.kill("SIGTERM");
      }
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await gone;
      clearTimeout(timer);
    },
  };
}

/** Runs a Python script with Debian's interpreter; rejects with its stderr on failure. */
export async function runPython(
  script: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  timeoutMs = 120_000,
): Promise<string> {
  return runProcess(PYTHON, ["-c", script, ...args], env, timeoutMs);
}

export async function runProcess(
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  timeoutMs = 120_000,
  cwd = REPO,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env, cwd, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${path.basename(command)} ${args.filter((a) => a.length < 200).join(" ")} timed out after ${timeoutMs} ms\n${out}\n${err}`));
    }, timeoutMs);
    child.on("exit", (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`${path.basename(command)} exited with ${code}\nstdout:\n${out}\nstderr:\n${err}`));
    });
  });
}

/** The nbformat 4 shapes the tests read. */
export interface NotebookOutput {
  output_type: string;
  name?: string;
  text?: string | string[];
  data?: Record<string, unknown>;
  ename?: string;
  evalue?: string;
  traceback?: string[];
}
export interface NotebookCell {
  cell_type: string;
  source: string | string[];
  outputs?: NotebookOutput[];
  metadata?: Record<string, unknown>;
}
export interface Notebook {
  cells: NotebookCell[];
  metadata: Record<string, unknown>;
}

export function readNotebook(file: string): Notebook {
  return JSON.parse(fs.readFileSync(file, "utf8")) as Notebook;
}

export function joined(x: string | string[] | undefined): string {
  return Array.isArray(x) ? x.join("") : (x ?? "");
}

/** Every text an output shows: stream text, text/plain and text/markdown/html data. */
export function outputText(o: NotebookOutput): string {
  if (o.output_type === "stream") return joined(o.text);
  if (o.output_type === "error") return `${o.ename}: ${o.evalue}`;
  const data = o.data ?? {};
  return ["text/plain", "text/markdown", "text/html"]
    .map((k) => (typeof data[k] === "string" || Array.isArray(data[k]) ? joined(data[k] as string | string[]) : ""))
    .join("\n");
}

export function codeCells(nb: Notebook): NotebookCell[] {
  return nb.cells.filter((c) => c.cell_type === "code");
}

export function errorsOf(nb: Notebook): string[] {
  return codeCells(nb).flatMap((c, i) =>
    (c.outputs ?? [])
      .filter((o) => o.output_type === "error" || (o.output_type === "stream" && o.name === "stderr"))
      .map((o) => `code cell ${i + 1}: ${outputText(o)}\n${(o.traceback ?? []).join("\n")}`),
  );
}
