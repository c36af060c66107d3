// The headless runner: `streambook run NOTEBOOK [--out F] [--html F]` launches a kernel over ZeroMQ (no Python),
// executes every code cell, shows live output in the terminal, and writes the executed notebook and an HTML report.

import { randomUUID } from "node:crypto";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { findKernelSpec, KernelClient, KernelDiedError, type JsonObject, type KernelSpec, type Message } from "./client.js";
import { renderReport } from "./report.js";
import { groupEnvironment, perInstance, runInstances, type GroupRunArgs } from "./group.js";

// --- nbformat 4, as much as the runner needs -------------------------------------------------------

export type MultilineString = string | string[];
export type MimeData = Record<string, unknown>;

export type Output =
  | { output_type: "stream"; name: string; text: MultilineString }
  | { output_type: "display_data"; data: MimeData; metadata: JsonObject }
  | { output_type: "execute_result"; execution_count: number | null; data: MimeData; metadata: JsonObject }
  | { output_type: "error"; ename: string; evalue: string; traceback: string[] };

export interface Cell {
  cell_type: "code" | "markdown" | "raw";
  id?: string;
  source: MultilineString;
  metadata: JsonObject;
  outputs?: Output[];
  execution_count?: number | null;
  attachments?: JsonObject;
}

export interface Notebook {
  nbformat: number;
  nbformat_minor: number;
  metadata: JsonObject;
  cells: Cell[];
}

export class RunnerUsageError extends Error {
  override name = "RunnerUsageError";
}

export class NotebookFormatError extends Error {
  override name = "NotebookFormatError";
}

export function joinSource(s: MultilineString | undefined): string {
  return Array.isArray(s) ? s.join("") : s ?? "";
}

/** nbformat's on-disk form of text: a list of lines, each keeping its "\n". */
export function splitLines(text: string): string[] {
  const lines = text.split(/(?<=\n)/);
  return lines.length === 1 && lines[0] === "" ? [] : lines;
}

function isJsonMime(mime: string): boolean {
  return mime === "application/json" || mime.endsWith("+json");
}

/** Text MIME data as line lists, JSON MIME data as JSON: the form Jupyter itself writes. */
function diskData(data: MimeData): MimeData {
  const out: MimeData = {};
  for (const [mime, value] of Object.entries(data)) {
    out[mime] = !isJsonMime(mime) && typeof value === "string" ? splitLines(value) : value;
  }
  return out;
}

function diskOutput(o: Output): Output {
  switch (o.output_type) {
    case "stream":
      return { ...o, text: splitLines(joinSource(o.text)) };
    case "display_data":
    case "execute_result":
      return { ...o, data: diskData(o.data) };
    default:
      return o;
  }
}

export function readNotebook(path: string): Notebook {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    throw new NotebookFormatError(`cannot read notebook ${path}: ${(err as Error).message}`);
  }
  const nb = raw as Partial<Notebook>;
  if (typeof raw !== "object" || raw === null || nb.nbformat !== 4 || !Array.isArray(nb.cells)) {
    throw new NotebookFormatError(`${path} is not an nbformat 4 notebook (it needs "nbformat": 4 and a "cells" list); convert it with a recent Jupyter`);
  }
  const minor = nb.nbformat_minor ?? 4;
  // nbformat 4.5 requires cell ids; give the ones a hand-written notebook lacks, so the output validates.
  if (minor >= 5) for (const c of nb.cells) c.id ??= randomUUID().slice(0, 8);
  return { nbformat: 4, nbformat_minor: minor, metadata: nb.metadata ?? {}, cells: nb.cells };
}

export function notebookJson(nb: Notebook): string {
  const cells = nb.cells.map((c) =>
    c.cell_type === "code" ? { ...c, outputs: (c.outputs ?? []).map(diskOutput) } : c);
  return JSON.stringify({ ...nb, cells }, null, 1) + "\n";
}

// --- executing ----------------------------------------------------------------------------------

/** What the terminal (or a test) hears while a notebook runs. */
export interface RunEvents {
  cellStart(index: number, total: number, cellNumber: number, source: string): void;
  /** A new output; displayId is the transient display_id it can later be updated under. */
  output(index: number, output: Output, displayId?: string): void;
  /** A live display changed (possibly a display from an earlier cell). */
  displayUpdate(displayId: string, data: MimeData): void;
  cellEnd(index: number, total: number, cellNumber: number, status: "ok" | "error" | "timeout", ms: number): void;
}

export interface ExecuteOptions {
  timeoutMs: number;
  allowErrors: boolean;
  /** Aborts the run: the current cell is interrupted, the rest are skipped. */
  signal?: AbortSignal;
  /**
   * Keep applying update_display_data until this settles (e.g. until the kernel has shut down), so a
   * kernel that flushes its live displays on shutdown gets their final state recorded.
   */
  listenUntil?: Promise<unknown>;
}

export interface ExecuteResult {
  status: "ok" | "error" | "interrupted";
  /** The code cell (0-based index into nb.cells) that failed first, if any. */
  failedCell?: number;
  /** Its number among the code cells, as the progress lines count (1-based). */
  failedNumber?: number;
  executed: number;
}

interface CellRun {
  outputs: Output[];
  clearPending: boolean;
  idle: boolean;
  reply?: Message;
  settle?: () => void;
}

/**
 * Executes the notebook's code cells in order, filling in outputs and execution counts in place.
 * IOPub messages are matched to cells by parent msg_id; update_display_data replaces every output
 * carrying that display_id, whichever cell it is in.
 */
export async function executeNotebook(client: KernelClient, nb: Notebook, events: RunEvents, opts: ExecuteOptions): Promise<ExecuteResult> {
  const runs = new Map<string, CellRun>();
  const displays = new Map<string, Output[]>();
  let current: CellRun | undefined;

  const add = (run: CellRun, index: number, o: Output, displayId?: string) => {
    if (run.clearPending) {
      run.outputs.length = 0;
      run.clearPending = false;
    }
    const last = run.outputs[run.outputs.length - 1];
    if (o.output_type === "stream" && last?.output_type === "stream" && last.name === o.name) {
      last.text = joinSource(last.text) + joinSource(o.text);
    } else {
      run.outputs.push(o);
    }
    events.output(index, o, displayId);
  };

  const cellIndexOf = new Map<CellRun, number>();
  const remove = client.onIopub((msg) => {
    const type = msg.header.msg_type;
    const c = msg.content;
    if (type === "update_display_data") {
      const id = transientId(c);
      if (id === undefined) return;
      const data = asRecord(c.data);
      const metadata = asRecord(c.metadata);
      for (const o of displays.get(id) ?? []) {
        if (o.output_type === "display_data" || o.output_type === "execute_result") {
          o.data = data;
          o.metadata = metadata;
        }
      }
      events.displayUpdate(id, data);
      return;
    }
    const parentId = (msg.parent_header as JsonObject).msg_id;
    const run = typeof parentId === "string" ? runs.get(parentId) : undefined;
    // Output after a cell went idle is dropped, as JupyterLab drops it: live output updates a display.
    if (run === undefined || run !== current || run.idle) return;
    const index = cellIndexOf.get(run)!;
    switch (type) {
      case "status":
        if (c.execution_state === "idle") {
          run.idle = true;
          run.settle?.();
        }
        break;
      case "stream":
        add(run, index, { output_type: "stream", name: String(c.name ?? "stdout"), text: String(c.text ?? "") });
        break;
      case "display_data":
      case "execute_result": {
        const o: Output = type === "display_data"
          ? { output_type: "display_data", data: asRecord(c.data), metadata: asRecord(c.metadata) }
          : { output_type: "execute_result", execution_count: typeof c.execution_count === "number" ? c.execution_count : null, data: asRecord(c.data), metadata: asRecord(c.metadata) };
        const id = transientId(c);
        add(run, index, o, id);
        if (id !== undefined) {
          const list = displays.get(id) ?? [];
          list.push(o);
          displays.set(id, list);
        }
        break;
      }
      case "error":
        add(run, index, {
          output_type: "error",
          ename: String(c.ename ?? "Error"),
          evalue: String(c.evalue ?? ""),
          traceback: Array.isArray(c.traceback) ? c.traceback.map(String) : [],
        });
        break;
      case "clear_output":
        if (c.wait === true) run.clearPending = true;
        else {
          run.outputs.length = 0;
          run.clearPending = false;
        }
        break;
    }
  });

  const codeCells = nb.cells.map((c, i) => [c, i] as const).filter(([c]) => c.cell_type === "code");
  for (const [c] of codeCells) {
    c.outputs = [];
    c.execution_count = null;
  }
  let executed = 0;
  try {
    for (let k = 0; k < codeCells.length; k++) {
      const [cell, index] = codeCells[k];
      const source = joinSource(cell.source);
      if (opts.signal?.aborted) return { status: "interrupted", failedCell: index, failedNumber: k + 1, executed };
      if (source.trim() === "") continue;
      const started = Date.now();
      events.cellStart(index, codeCells.length, k + 1, source);
      const run: CellRun = { outputs: cell.outputs!, clearPending: false, idle: false };
      cellIndexOf.set(run, index);
      current = run;
      const { msgId, reply } = client.send("shell", "execute_request", {
        code: source,
        silent: false,
        store_history: true,
        user_expressions: {},
        allow_stdin: false,
        stop_on_error: !opts.allowErrors,
      });
      runs.set(msgId, run);
      let outcome: "done" | "timeout" | "aborted";
      try {
        outcome = await awaitCell(client, run, reply, opts);
      } catch (err) {
        if (!(err instanceof KernelDiedError)) throw err;
        // The notebook still gets written: the cell shows why the run ended.
        add(run, index, { output_type: "error", ename: "KernelDiedError", evalue: err.message, traceback: [] });
        events.cellEnd(index, codeCells.length, k + 1, "error", Date.now() - started);
        return { status: "error", failedCell: index, failedNumber: k + 1, executed: executed + 1 };
      }
      executed++;
      const content = run.reply?.content ?? {};
      if (typeof content.execution_count === "number") cell.execution_count = content.execution_count;
      for (const o of run.outputs) if (o.output_type === "execute_result" && o.execution_count === null) o.execution_count = cell.execution_count ?? null;
      let status: "ok" | "error" | "timeout" = outcome === "timeout" ? "timeout" : content.status === "ok" ? "ok" : "error";
      if (outcome === "timeout" && !run.outputs.some((o) => o.output_type === "error")) {
        add(run, index, {
          output_type: "error",
          ename: "CellTimeoutError",
          evalue: `the cell did not finish within ${Math.round(opts.timeoutMs / 1000)} s and was interrupted; raise --timeout if it needs longer`,
          traceback: [],
        });
      } else if (status === "error" && !run.outputs.some((o) => o.output_type === "error")) {
        // Some kernels report the error only in the reply.
        add(run, index, {
          output_type: "error",
          ename: String(content.ename ?? "Error"),
          evalue: String(content.evalue ?? (content.status === "aborted" ? "execution aborted" : "")),
          traceback: Array.isArray(content.traceback) ? content.traceback.map(String) : [],
        });
      }
      if (outcome === "aborted") status = "error";
      events.cellEnd(index, codeCells.length, k + 1, status, Date.now() - started);
      if (opts.signal?.aborted) return { status: "interrupted", failedCell: index, failedNumber: k + 1, executed };
      if (status !== "ok" && (!opts.allowErrors || !client.alive)) {
        return { status: "error", failedCell: index, failedNumber: k + 1, executed };
      }
    }
    return { status: "ok", executed };
  } finally {
    current = undefined;
    if (opts.listenUntil === undefined) remove();
    else void opts.listenUntil.finally(remove);
  }
}

/** Waits for a cell's reply and its idle; on timeout or abort interrupts, then waits a bounded while more. */
async function awaitCell(client: KernelClient, run: CellRun, reply: Promise<Message>, opts: ExecuteOptions): Promise<"done" | "timeout" | "aborted"> {
  const idle = new Promise<void>((ok) => {
    if (run.idle) ok();
    run.settle = ok;
  });
  const done = Promise.all([reply.then((m) => (run.reply = m)), idle]).then(() => "done" as const);
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  const stop = new Promise<"timeout" | "aborted">((ok) => {
    timer = setTimeout(() => ok("timeout"), opts.timeoutMs);
    onAbort = () => ok("aborted");
    if (opts.signal?.aborted) ok("aborted");
    opts.signal?.addEventListener("abort", onAbort, { once: true });
  });
  try {
    const first = await Promise.race([done, stop]);
    if (first === "done") return "done";
    await client.interrupt();
    // An interrupted cell still replies (KeyboardInterrupt); a wedged kernel gets a bounded grace period.
    let grace: NodeJS.Timeout | undefined;
    await Promise.race([done, new Promise<void>((ok) => (grace = setTimeout(ok, 10_000)))]).catch(() => {});
    clearTimeout(grace);
    return first;
  } finally {
    clearTimeout(timer);
    if (onAbort) opts.signal?.removeEventListener("abort", onAbort);
  }
}

function transientId(c: JsonObject): string | undefined {
  const t = c.transient;
  if (typeof t === "object" && t !== null && typeof (t as JsonObject).display_id === "string") return (t as JsonObject).display_id as string;
  return undefined;
}

function asRecord(v: unknown): JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as JsonObject) : {};
}

// --- the terminal --------------------------------------------------------------------------------

const ANSI = /\u001b\[[0-9;?]*[ -/]*[@-~]/g;
export function stripAnsi(s: string): string {
  return s.replace(ANSI, "");
}

export interface Io {
  stdout: NodeJS.WritableStream & { isTTY?: boolean };
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
}

/** How often the terminal shows one live display's latest state. */
export const TERMINAL_UPDATE_INTERVAL_MS = 1000;

/** Prints progress lines, outputs indented under their cell, and live display updates only when they change. */
export class TerminalReporter implements RunEvents {
  private atLineStart = true;
  private readonly lastText = new Map<string, string>();
  private readonly lastPrinted = new Map<string, number>();
  private readonly pending = new Map<string, string>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly color: boolean;

  constructor(private readonly io: Io, private readonly quiet = false) {
    this.color = io.stdout.isTTY === true && !process.env.NO_COLOR;
  }

  private write(s: string): void {
    this.io.stdout.write(s);
  }

  private line(s: string): void {
    if (!this.atLineStart) this.write("\n");
    this.write(s + "\n");
    this.atLineStart = true;
  }

  /** Writes text indented under the cell's progress line. */
  private indented(text: string): void {
    if (this.quiet || text === "") return;
    let out = "";
    for (const ch of text.split(/(?<=\n)/)) {
      if (this.atLineStart) out += "  ";
      out += ch;
      this.atLineStart = ch.endsWith("\n");
    }
    this.write(out);
  }

  private red(s: string): string {
    return this.color ? `\u001b[31m${s}\u001b[0m` : stripAnsi(s);
  }

  cellStart(_index: number, total: number, n: number, source: string): void {
    const head = source.trim().split("\n")[0];
    this.line(`[${n}/${total}] cell ${n}: ${head.length > 60 ? head.slice(0, 59) + "…" : head}`);
  }

  output(_index: number, o: Output, displayId?: string): void {
    switch (o.output_type) {
      case "stream":
        this.indented(o.name === "stderr" ? this.red(joinSource(o.text)) : joinSource(o.text));
        break;
      case "display_data":
      case "execute_result": {
        const text = plainText(o.data);
        if (displayId !== undefined) {
          // later updates print only what changed from here
          this.lastText.set(displayId, text);
          this.lastPrinted.set(displayId, Date.now());
        }
        if (text.trim() === "") break; // an empty live display (e.g. a log waiting for lines)
        const prefix = o.output_type === "execute_result" ? `Out[${o.execution_count ?? " "}]: ` : "";
        this.indented(prefix + text + "\n");
        break;
      }
      case "error": {
        const tb = o.traceback.length > 0 ? o.traceback.join("\n") : `${o.ename}: ${o.evalue}`;
        this.indented(this.red(tb) + "\n");
        break;
      }
    }
  }

  /**
   * Live displays change up to ~10 times a second; the terminal shows each at most once a second
   * (the latest state), and flush() prints what is still pending when the run ends.
   */
  displayUpdate(displayId: string, data: MimeData): void {
    const text = plainText(data);
    const since = Date.now() - (this.lastPrinted.get(displayId) ?? 0);
    if (since >= TERMINAL_UPDATE_INTERVAL_MS) {
      this.printUpdate(displayId, text);
      return;
    }
    const waiting = this.pending.has(displayId);
    this.pending.set(displayId, text);
    if (!waiting) {
      const timer = setTimeout(() => {
        this.timers.delete(timer);
        const latest = this.pending.get(displayId);
        this.pending.delete(displayId);
        if (latest !== undefined) this.printUpdate(displayId, latest);
      }, TERMINAL_UPDATE_INTERVAL_MS - since);
      timer.unref();
      this.timers.add(timer);
    }
  }

  private printUpdate(displayId: string, text: string): void {
    this.lastPrinted.set(displayId, Date.now());
    const before = this.lastText.get(displayId);
    if (before === text) return;
    this.lastText.set(displayId, text);
    const fresh = newLines(before ?? "", text).replace(/^\n+/, "").replace(/\n+$/, "");
    if (fresh.trim() === "") return;
    this.indented(`[display ${displayId.slice(0, 8)}] ${fresh.includes("\n") ? "\n" + fresh : fresh}\n`);
  }

  /** Prints the pending display updates now (at the end of a run). */
  flush(): void {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    for (const [id, text] of this.pending) this.printUpdate(id, text);
    this.pending.clear();
  }

  cellEnd(_index: number, total: number, n: number, status: "ok" | "error" | "timeout", ms: number): void {
    this.flush(); // the cell's displays as they stand when it ends
    const word = status === "ok" ? "ok" : this.red(status === "timeout" ? "timed out" : "error");
    this.line(`[${n}/${total}] cell ${n} ... ${word} (${ms} ms)`);
  }

  info(s: string): void {
    this.line(s);
  }
}

function plainText(data: MimeData): string {
  const t = data["text/plain"];
  if (typeof t === "string") return t;
  if (Array.isArray(t)) return t.join("");
  const mimes = Object.keys(data);
  return mimes.length > 0 ? `<${mimes.join(", ")}>` : "<empty display>";
}

/**
 * The lines of `after` that `before` did not already end with: a pprint display keeping the last few
 * batches shows only the newest batch in the terminal instead of repeating the others.
 */
export function newLines(before: string, after: string): string {
  const a = before.split("\n");
  const b = after.split("\n");
  for (let k = Math.min(a.length, b.length); k > 0; k--) {
    let same = true;
    for (let i = 0; i < k && same; i++) same = a[a.length - k + i] === b[i];
    if (same && a.slice(a.length - k).join("\n").trim() !== "") return b.slice(k).join("\n");
  }
  return after;
}

// --- the command ---------------------------------------------------------------------------------

export interface RunArgs {
  notebook?: string;
  out?: string;
  html?: string;
  timeoutMs: number;
  kernel?: string;
  kernelCmd?: string[];
  allowErrors: boolean;
  quiet: boolean;
  help: boolean;
  /** Scale-out: --instances N, --group NAME, --coordinator URL, --instance I, --session-timeout S. */
  group: GroupRunArgs;
}

export const USAGE = `usage: streambook run [NOTEBOOK.ipynb] [--out EXECUTED.ipynb] [--html REPORT.html]
                      [--timeout SECONDS] [--kernel NAME] [--kernel-cmd "CMD ... {connection_file}"]
                      [--allow-errors] [--quiet]
                      [--instances N] [--group NAME] [--coordinator etcd://HOST:PORT] [--session-timeout S]

Runs every code cell of the notebook in a fresh kernel (default: the notebook's kernelspec, else
streambook), prints each cell's output and live display updates, and stops at the first error.
Without NOTEBOOK it runs the first tutorial, notebooks/01-*.ipynb.
  --out F          write the executed notebook (nbformat 4) to F
  --html F         write a self-contained HTML report (charts as SVG or PNG) to F
  --timeout S      per-cell timeout in seconds (default 60); the cell is interrupted, the run fails
  --kernel NAME    the kernelspec to start (searched in Jupyter's data dirs)
  --kernel-cmd C   start this command instead; {connection_file} is replaced by the connection file
  --allow-errors   keep going after a failing cell (the exit code is still 1)
  --quiet          print progress lines only
  --instances N    run N instances of the notebook as one group (each its own kernel; output lines prefixed
                   [i]; --out/--html get .instance-i before the extension); the group is named after the
                   notebook unless --group is given, and uses --coordinator, else etcd://127.0.0.1:2379, else
                   a private etcd started for the run
  --group NAME     run as one instance of group NAME (same notebook on other machines: same NAME and URL)
  --coordinator U  the group's etcd, etcd://HOST:PORT
  --session-timeout S  seconds an instance may be silent before its partitions move (default 10)
Exit code: 0 when every cell ran, 1 on a cell error or timeout, 2 on bad usage, 130 when interrupted.`;

export function parseArgs(args: readonly string[]): RunArgs {
  const out: RunArgs = { timeoutMs: 60_000, allowErrors: false, quiet: false, help: false, group: {} };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const [flag, inline] = a.startsWith("--") && a.includes("=") ? [a.slice(0, a.indexOf("=")), a.slice(a.indexOf("=") + 1)] : [a, undefined];
    const value = () => {
      if (inline !== undefined) return inline;
      const v = args[++i];
      if (v === undefined) throw new RunnerUsageError(`${flag} needs a value\n\n${USAGE}`);
      return v;
    };
    switch (flag) {
      case "--out": case "-o": out.out = value(); break;
      case "--html": out.html = value(); break;
      case "--timeout": {
        const s = Number(value());
        if (!(s > 0)) throw new RunnerUsageError(`--timeout takes a positive number of seconds`);
        out.timeoutMs = s * 1000;
        break;
      }
      case "--kernel": out.kernel = value(); break;
      case "--kernel-cmd": out.kernelCmd = splitCommand(value()); break;
      case "--allow-errors": out.allowErrors = true; break;
      case "--quiet": case "-q": out.quiet = true; break;
      case "--instances": {
        const n = Number(value());
        if (!Number.isInteger(n) || n < 1) throw new RunnerUsageError(`--instances takes a whole number of instances, at least 1`);
        out.group.instances = n;
        break;
      }
      case "--group": out.group.group = value(); break;
      case "--coordinator": out.group.coordinator = value(); break;
      case "--instance": out.group.instance = Number(value()); break;
      case "--session-timeout": {
        const s = Number(value());
        if (!(s > 0)) throw new RunnerUsageError(`--session-timeout takes a positive number of seconds`);
        out.group.sessionTimeoutMs = s * 1000;
        break;
      }
      case "--help": case "-h": out.help = true; break;
      default:
        if (a.startsWith("-")) throw new RunnerUsageError(`unknown option ${a}\n\n${USAGE}`);
        if (out.notebook !== undefined) throw new RunnerUsageError(`one notebook at a time (got ${out.notebook} and ${a})`);
        out.notebook = a;
    }
  }
  return out;
}

/** Splits a command line on spaces, honouring single and double quotes. */
export function splitCommand(cmd: string): string[] {
  const parts: string[] = [];
  const re = /"([^"]*)"|'([^']*)'|(\S+)/g;
  for (const m of cmd.matchAll(re)) parts.push(m[1] ?? m[2] ?? m[3]);
  if (parts.length === 0) throw new RunnerUsageError("--kernel-cmd is empty");
  return parts;
}

/** The package root (the folder whose package.json is streambook's), from this file's location. */
export function packageRoot(): string {
  let dir = __dirname;
  for (let i = 0; i < 6; i++) {
    const pj = join(dir, "package.json");
    if (existsSync(pj)) {
      try {
        if ((JSON.parse(readFileSync(pj, "utf8")) as { name?: string }).name === "streambook") return dir;
      } catch {
        // not ours; keep climbing
      }
    }
    dir = dirname(dir);
  }
  return resolve(__dirname, "..", "..");
}

/** notebooks/01-*.ipynb under the working directory, else under the package. */
export function firstTutorial(cwd = process.cwd()): string {
  for (const root of [cwd, packageRoot()]) {
    const dir = join(root, "notebooks");
    if (!existsSync(dir)) continue;
    const first = readdirSync(dir).filter((f) => /^01-.*\.ipynb$/.test(f)).sort()[0];
    if (first !== undefined) return join(dir, first);
  }
  throw new RunnerUsageError(`no notebook given and no notebooks/01-*.ipynb found under ${cwd} or ${packageRoot()}; pass a notebook: streambook run NOTEBOOK.ipynb`);
}

/** The kernel to start: --kernel-cmd, else the named kernelspec, else streambook from this package. */
export function resolveKernel(args: RunArgs, nb: Notebook): KernelSpec {
  if (args.kernelCmd !== undefined) {
    if (!args.kernelCmd.some((a) => a.includes("{connection_file}"))) {
      throw new RunnerUsageError(`--kernel-cmd must contain {connection_file}, e.g. --kernel-cmd "python3 -m ipykernel_launcher -f {connection_file}"`);
    }
    // The notebook keeps naming its own kernelspec: --kernel-cmd only says how to start it.
    const ks = asRecord(nb.metadata.kernelspec);
    const name = args.kernel ?? (typeof ks.name === "string" ? ks.name : "custom");
    return {
      name,
      // The kernel runs in the notebook's folder: relative paths given here mean the runner's folder.
      argv: args.kernelCmd.map((a) => (!a.startsWith("-") && !a.includes("{") && a.includes("/") && existsSync(a) ? resolve(a) : a)),
      display_name: typeof ks.display_name === "string" && args.kernel === undefined ? ks.display_name : name,
      language: typeof ks.language === "string" ? ks.language : "",
      interrupt_mode: "signal",
      env: {},
    };
  }
  const ks = asRecord(nb.metadata.kernelspec);
  const name = args.kernel ?? (typeof ks.name === "string" ? ks.name : "streambook");
  const found = findKernelSpec(name);
  if (found !== undefined) return found;
  if (name === "streambook") {
    const root = packageRoot();
    const main = join(root, "dist", "kernel", "main.js");
    if (!existsSync(main)) {
      throw new RunnerUsageError(`the streambook kernel is neither installed nor built (${main} is missing); run npm install (or npm run build) first`);
    }
    let interrupt: "signal" | "message" = "message";
    try {
      const kj = JSON.parse(readFileSync(join(root, "kernel.json"), "utf8")) as { interrupt_mode?: string };
      if (kj.interrupt_mode === "signal") interrupt = "signal";
    } catch {
      // no kernel.json: interrupt by message, which every 5.3 kernel understands
    }
    return {
      name: "streambook",
      argv: [process.execPath, main, "-f", "{connection_file}"],
      display_name: "TypeScript (streambook)",
      language: "typescript",
      interrupt_mode: interrupt,
      env: {},
    };
  }
  throw new RunnerUsageError(`no kernelspec named ${name} in ${"Jupyter's data dirs"}; install it, pass --kernel NAME, or --kernel-cmd`);
}

/** `streambook run ...`: returns the exit code. */
export async function main(args: string[], io: Io = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  let parsed: RunArgs;
  try {
    parsed = parseArgs(args);
    if (parsed.help) {
      io.stdout.write(USAGE + "\n");
      return 0;
    }
  } catch (err) {
    io.stderr.write(`${(err as Error).message}\n`);
    return 2;
  }
  let nbPath: string;
  let nb: Notebook;
  let spec: KernelSpec;
  try {
    nbPath = resolve(parsed.notebook ?? firstTutorial());
    nb = readNotebook(nbPath);
    spec = resolveKernel(parsed, nb);
  } catch (err) {
    io.stderr.write(`streambook run: ${(err as Error).message}\n`);
    return 2;
  }
  if (parsed.group.instances !== undefined) {
    if (parsed.group.instance !== undefined) {
      io.stderr.write("streambook run: --instances starts the instances itself; give --instance only to one instance's run\n");
      return 2;
    }
    return runInstances(parsed.group.instances, nbPath, instanceArgs(args), parsed.group, io, join(packageRoot(), "bin", "streambook.js"));
  }
  if ((parsed.group.group === undefined) !== (parsed.group.coordinator === undefined)) {
    io.stderr.write("streambook run: --group and --coordinator go together (a group name and etcd://HOST:PORT)\n");
    return 2;
  }
  if (parsed.group.group !== undefined) {
    spec = { ...spec, env: { ...spec.env, ...groupEnvironment(parsed.group, Number(process.env.STREAMBOOK_INSTANCES) || undefined) } };
    if (parsed.group.instance !== undefined) {
      if (parsed.out !== undefined) parsed.out = perInstance(parsed.out, parsed.group.instance);
      if (parsed.html !== undefined) parsed.html = perInstance(parsed.html, parsed.group.instance);
    }
  }

  const term = new TerminalReporter(io, parsed.quiet);
  term.info(`streambook run ${basename(nbPath)} (kernel ${spec.name})`);
  const abort = new AbortController();
  let client: KernelClient | undefined;
  let sigints = 0;
  const onSigint = () => {
    sigints++;
    if (sigints === 1) {
      term.info("interrupted: stopping the kernel (Ctrl-C again to kill it)");
      abort.abort();
    } else {
      client?.child.kill("SIGKILL");
    }
  };
  // The kernel never outlives the runner, whatever way the runner ends.
  const onExit = () => {
    if (client?.alive) client.child.kill("SIGKILL");
  };
  // SIGTERM/SIGHUP would end Node without running "exit" handlers: take the kernel down first.
  const onTerm = (signal: NodeJS.Signals) => {
    onExit();
    process.exit(signal === "SIGTERM" ? 143 : 129);
  };
  process.on("SIGINT", onSigint);
  process.on("SIGTERM", onTerm);
  process.on("SIGHUP", onTerm);
  process.on("exit", onExit);
  const started = Date.now();
  try {
    client = await KernelClient.launch(spec, {
      cwd: dirname(nbPath),
      signal: abort.signal,
      onKernelOutput: parsed.quiet ? undefined : (text) => io.stderr.write(text),
    });
    term.info(`kernel ${spec.name} started (pid ${client.child.pid}, ${client.info.transport}://${client.info.ip})`);
    let shutDown!: () => void;
    const listenUntil = new Promise<void>((ok) => (shutDown = ok));
    const result = await executeNotebook(client, nb, term, { timeoutMs: parsed.timeoutMs, allowErrors: parsed.allowErrors, signal: abort.signal, listenUntil });
    nb.metadata = {
      ...nb.metadata,
      kernelspec: { name: spec.name, display_name: spec.display_name, language: spec.language || languageOf(client.kernelInfo) },
      language_info: client.kernelInfo.language_info ?? nb.metadata.language_info ?? {},
    };
    await client.shutdown().finally(shutDown);
    term.flush();
    const failed = nb.cells.filter((c) => c.outputs?.some((o) => o.output_type === "error")).length;
    if (parsed.out !== undefined) {
      writeFileSync(parsed.out, notebookJson(nb));
      term.info(`wrote ${parsed.out}`);
    }
    if (parsed.html !== undefined) {
      writeFileSync(parsed.html, renderReport(nb, { title: basename(nbPath) }));
      term.info(`wrote ${parsed.html}`);
    }
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    if (result.status === "interrupted" || abort.signal.aborted) {
      term.info(`interrupted after ${result.executed} cell(s) in ${seconds} s`);
      return 130;
    }
    if (result.status === "error") {
      io.stderr.write(`streambook run: cell ${result.failedNumber} of ${basename(nbPath)} failed${parsed.allowErrors ? "" : "; stopped there (pass --allow-errors to run the rest)"}\n`);
      return 1;
    }
    term.info(`done: ${result.executed} cell(s) in ${seconds} s${failed > 0 ? `, ${failed} with errors` : ""}`);
    return failed > 0 ? 1 : 0;
  } catch (err) {
    const e = err as Error;
    io.stderr.write(`streambook run: ${e instanceof KernelDiedError ? "" : `${e.name}: `}${e.message}\n`);
    return abort.signal.aborted ? 130 : 1;
  } finally {
    term.flush();
    await client?.kill();
    process.off("SIGINT", onSigint);
    process.off("SIGTERM", onTerm);
    process.off("SIGHUP", onTerm);
    process.off("exit", onExit);
  }
}

/** A --instances command line for one instance: everything but the notebook and the group options. */
function instanceArgs(args: readonly string[]): string[] {
  const out: string[] = [];
  const valued = new Set(["--instances", "--group", "--coordinator", "--instance", "--session-timeout"]);
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const flag = a.startsWith("--") && a.includes("=") ? a.slice(0, a.indexOf("=")) : a;
    if (valued.has(flag)) {
      if (!a.includes("=")) i++;
      continue;
    }
    if (!a.startsWith("-") && (i === 0 || !["--out", "-o", "--html", "--timeout", "--kernel", "--kernel-cmd"].includes(args[i - 1]!))) continue;
    out.push(a);
  }
  return out;
}

function languageOf(info: JsonObject): string {
  const li = asRecord(info.language_info);
  return typeof li.name === "string" ? li.name : "";
}

if (typeof require !== "undefined" && require.main === module) {
  main(process.argv.slice(2)).then((code) => process.exit(code));
}
