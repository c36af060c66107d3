// The kernel's side of the checker process: it starts the process from the V8 snapshot as soon as the
// kernel starts (so TypeScript is ready by the first cell), forwards each request over Node's IPC
// channel, and falls back to checking in the kernel's own process when there is no usable snapshot
// or the checker process dies (replaying the committed cells, so nothing a cell declared is lost).
import { spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import { LocalChecker, type CellChecker, type CheckerConfig, type CheckOutcome } from "./checker.js";
import type { CheckerReply, CheckerRequest } from "./checker-process.js";
import type { CompleteResult, InspectResult } from "./interpreter.js";
import { BLOB, BLOB_INFO, stampOf, type BlobInfo } from "./checker-snapshot.js";

/** Why the snapshot cannot be used, or undefined when it can (built by this Node, from today's files). */
export function snapshotProblem(): string | undefined {
  let info: BlobInfo;
  try {
    info = JSON.parse(fs.readFileSync(BLOB_INFO, "utf8")) as BlobInfo;
  } catch {
    return `${BLOB_INFO} is missing: run "npm run build"`;
  }
  if (!fs.existsSync(BLOB)) return `${BLOB} is missing: run "npm run build"`;
  if (info.node !== process.version || info.arch !== process.arch || info.platform !== process.platform) {
    return `the snapshot was built by Node ${info.node} (${info.platform}-${info.arch}), this is ${process.version}: run "npm run build"`;
  }
  for (const [file, stamp] of Object.entries(info.stamps)) {
    if (stampOf(file) !== stamp) return `${file} changed since the snapshot was built: run "npm run build"`;
  }
  return undefined;
}

/** Set STREAMBOOK_CHECKER=local to check in the kernel's process (no checker process). */
function wantsProcess(): boolean {
  return process.env.STREAMBOOK_CHECKER !== "local";
}

let prestarted: ChildProcess | undefined;

function spawnChecker(): ChildProcess {
  const child = spawn(process.execPath, ["--snapshot-blob", BLOB], { stdio: ["ignore", "ignore", "inherit", "ipc"] });
  // Never keeps the kernel alive, and never takes it down.
  child.unref();
  child.channel?.unref();
  child.on("error", () => {});
  // A kernel that exits (shutdown, or a failed start) takes its checker along at once: one still loading
  // its snapshot would only notice the closed channel once loaded, a second of CPU for nothing.
  const kill = (): void => {
    child.kill("SIGKILL");
  };
  process.once("exit", kill);
  child.once("exit", () => process.removeListener("exit", kill));
  return child;
}

/** Starts the checker process now (kernel start-up), so it is ready when the first cell comes. */
export function prestartChecker(): void {
  if (prestarted || !wantsProcess() || snapshotProblem() !== undefined) return;
  prestarted = spawnChecker();
}

/** A checker for a notebook: the checker process when the snapshot is usable, else in this process. */
export function createChecker(config: CheckerConfig, log: (text: string) => void = () => {}): CellChecker {
  if (wantsProcess()) {
    const problem = prestarted ? undefined : snapshotProblem();
    if (problem === undefined) {
      const child = prestarted ?? spawnChecker();
      prestarted = undefined;
      return new ProcessChecker(child, config, log);
    }
    log(`checking cells in the kernel's process: ${problem}`);
  }
  return new LocalChecker(config);
}

class CheckerExitedError extends Error {
  override name = "CheckerExitedError";
}

/** The checker process behind the CellChecker interface; becomes a LocalChecker if the process dies. */
class ProcessChecker implements CellChecker {
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  /** Cells committed so far: a replacement checker learns their names from them. */
  private readonly committed: string[] = [];
  private pendingCode: string | undefined;
  private local: LocalChecker | undefined;
  private exited = false;

  constructor(
    private readonly child: ChildProcess,
    private readonly config: CheckerConfig,
    private readonly log: (text: string) => void,
  ) {
    child.on("message", (reply: CheckerReply) => {
      const w = this.waiting.get(reply.id);
      if (!w) return;
      this.waiting.delete(reply.id);
      if (this.waiting.size === 0) this.child.channel?.unref();
      if (reply.error !== undefined) w.reject(new Error(reply.error));
      else w.resolve(reply.result);
    });
    child.on("exit", (code, signal) => {
      this.exited = true;
      const why = new CheckerExitedError(`the type checker process exited (${signal ?? `code ${code}`})`);
      for (const w of this.waiting.values()) w.reject(why);
      this.waiting.clear();
    });
    this.send({ op: "init", config });
  }

  /** The checker process's pid while it serves (undefined once checking moved into this process). */
  get processId(): number | undefined {
    return this.local || this.exited ? undefined : this.child.pid;
  }

  private send(msg: CheckerRequest): boolean {
    if (this.exited || !this.child.connected) return false;
    try {
      this.child.send(msg);
      return true;
    } catch {
      return false;
    }
  }

  /** From now on, this process checks (the committed cells' names replayed first). */
  private fallBack(reason: string): LocalChecker {
    if (!this.local) {
      this.log(`${reason}; checking cells in the kernel's process from now on`);
      this.local = new LocalChecker(this.config);
      this.local.replay(this.committed);
      this.child.kill();
    }
    return this.local;
  }

  private async request<T>(msg: CheckerRequest & { id: number }, local: (c: LocalChecker) => Promise<T>): Promise<T> {
    if (this.local) return local(this.local);
    const reply = new Promise<unknown>((resolve, reject) => this.waiting.set(msg.id, { resolve, reject }));
    // An awaited reply keeps the process alive; an idle checker never does.
    this.child.channel?.ref();
    if (!this.send(msg)) {
      this.waiting.delete(msg.id);
      return local(this.fallBack("the type checker process is gone"));
    }
    try {
      return (await reply) as T;
    } catch (err) {
      if (err instanceof CheckerExitedError) return local(this.fallBack(err.message));
      throw err;
    }
  }

  check(code: string, typecheck: boolean): Promise<CheckOutcome> {
    this.pendingCode = code;
    return this.request({ op: "check", id: this.nextId++, code, typecheck }, (c) => c.check(code, typecheck));
  }

  commit(): void {
    if (this.pendingCode !== undefined) this.committed.push(this.pendingCode);
    this.pendingCode = undefined;
    if (this.local) this.local.commit();
    else this.send({ op: "commit" });
  }

  discard(): void {
    this.pendingCode = undefined;
    if (this.local) this.local.discard();
    else this.send({ op: "discard" });
  }

  complete(code: string, cursorPos: number): Promise<CompleteResult> {
    return this.request({ op: "complete", id: this.nextId++, code, cursorPos }, (c) => c.complete(code, cursorPos));
  }

  inspect(code: string, cursorPos: number, detailLevel: number): Promise<InspectResult> {
    return this.request({ op: "inspect", id: this.nextId++, code, cursorPos, detailLevel }, (c) => c.inspect(code, cursorPos, detailLevel));
  }

  async warm(): Promise<void> {
    await this.request({ op: "warm", id: this.nextId++ }, (c) => c.warm());
  }

  close(): void {
    this.exited = true;
    this.child.kill();
    this.local?.close();
  }
}
