// Interrupts that reach code spinning anywhere on the main thread: after a cell's first await, in a
// timer callback, in a foreachRDD function. SIGINT (or interrupt_request) first goes to the main
// thread's handler, which abandons a pending await; if that handler does not get to run (the thread is
// busy), the control thread asks the main thread's V8, through the inspector, what is running. If it is
// user code, the control thread stops it with Runtime.terminateExecution, and the main thread recovers.
//
// The two halves meet in a SharedArrayBuffer. The probe runs on the main thread inside V8's interrupt
// (nested in the spinning code), clears Node's async-context stack (which the terminated frames would
// otherwise leave corrupt: Node aborts the process on that), and waits until the control thread has
// queued the termination, so nothing else can run between the decision and the stop.
import * as path from "node:path";
import { healVitalBuiltins } from "./primordials.js";

/** Slots of the shared Int32Array. */
const REQUESTED = 0; // interrupts the control thread has seen
const HANDLED = 1; // interrupts the main thread's SIGINT handler has seen
const PROBE = 2; // probe handshake, below
const SHUTTING_DOWN = 3; // 1 once the main thread has begun to shut down
const PROBE_ID = 4; // the probe the control thread waits for; an older one that runs late does nothing
const SLOTS = 5;

// Probe handshake values.
const PROBE_ASKED = 1; // the control thread asked; the main thread has not answered yet
const PROBE_NOTHING = 2; // the main thread was idle: it will see the interrupt by itself
const PROBE_BUSY = 3; // kernel code is running (or stopping it is unsupported): ask again later
const PROBE_STOPPING = 4; // user code is running; the main thread waits for the termination request
const PROBE_QUEUED = 5; // the control thread has queued Runtime.terminateExecution

export type ProbeMode = "interrupt" | "shutdown";

/** What a probe found on the main thread's stack. */
export interface StackSummary {
  /** Frames of cells or of the notebook's own modules. */
  user: boolean;
  /** Frames of the engine (a batch job would be cut off). */
  engine: boolean;
  /** Frames of the request machinery (dispatch, display, wire): cutting them off would hang the kernel. */
  protocol: boolean;
  /** No JavaScript frames at all: the thread was idle. */
  idle: boolean;
}

/** The name the probe is published under on the main thread's global object (not writable, not configurable). */
export const PROBE_GLOBAL = "__streambookInterruptProbe";

export function createInterruptBuffer(): SharedArrayBuffer {
  return new SharedArrayBuffer(SLOTS * Int32Array.BYTES_PER_ELEMENT);
}

const ROOT = path.resolve(__dirname, "..", "..");
const DIST = path.join(ROOT, "dist") + path.sep;
const MODULES = path.join(ROOT, "node_modules") + path.sep;
/** Kernel files that serve requests: code called from them runs inside a request and cannot be cut off. */
const PROTOCOL_FILES = new Set(["dispatch.js", "main.js", "channels.js", "wire.js", "history.js", "display.js", "notebook-presenter.js", "language.js", "transform.js"]);
const CELL_FILE = /\[streambook-cell-\d+\]$/;

type FrameKind = "node" | "user" | "engine" | "protocol" | "kernel" | "library" | "unknown";

export function frameKind(file: string | null | undefined): FrameKind {
  if (!file) return "unknown";
  if (file.startsWith("node:")) return "node";
  if (CELL_FILE.test(file)) return "user";
  if (file.startsWith(path.join(DIST, "engine") + path.sep)) return "engine";
  if (file.startsWith(path.join(DIST, "kernel") + path.sep)) return PROTOCOL_FILES.has(path.basename(file)) ? "protocol" : "kernel";
  if (file.startsWith(DIST) || file.startsWith(MODULES)) return "library";
  return "user";
}

/** Reads a stack, top first, as the interrupt policy sees it. */
export function summarize(files: readonly (string | null | undefined)[]): StackSummary {
  const kinds = files.map(frameKind);
  const lowestUser = kinds.lastIndexOf("user");
  const below = lowestUser < 0 ? [] : kinds.slice(lowestUser + 1);
  return {
    user: lowestUser >= 0,
    engine: kinds.includes("engine"),
    protocol: below.includes("protocol"),
    idle: kinds.length === 0,
  };
}

/** Whether the probe may stop what runs: user code not called by the request machinery, or anything when shutting down. */
export function mayStop(summary: StackSummary, mode: ProbeMode): boolean {
  if (summary.idle) return false;
  return mode === "shutdown" || (summary.user && !summary.protocol);
}

// ---------------------------------------------------------------------------------------------
// Main thread

/** What the main thread learns after its running code was stopped by force. */
export interface ForcedStop<Context> {
  mode: ProbeMode;
  summary: StackSummary;
  /** What the kernel noted at the moment of the stop (e.g. which cell the code belonged to). */
  context: Context;
}

type CallSite = { getFileName(): string | null | undefined };

/**
 * Node keeps the async-context stack of the callback being run in its own fields; frames stopped by
 * force never pop theirs, and Node then aborts ("async hook stack has become corrupted"). Clearing it is
 * what Node does itself after an uncaught exception. The function lives in a deprecated binding, read
 * once at start with its deprecation warning silenced; without it, code is never stopped by force.
 */
function asyncStackClearer(): (() => void) | undefined {
  const proc = process as unknown as { binding?: (name: string) => Record<string, unknown>; noDeprecation?: boolean };
  const saved = proc.noDeprecation;
  try {
    proc.noDeprecation = true;
    const clear = proc.binding?.("async_wrap").clearAsyncIdStack;
    return typeof clear === "function" ? (clear as () => void) : undefined;
  } catch {
    return undefined;
  } finally {
    proc.noDeprecation = saved;
  }
}

export class MainThreadInterrupts<Context = undefined> {
  private readonly cells: Int32Array;
  private readonly clearAsyncStack = asyncStackClearer();
  private lastStop: ForcedStop<Context> | undefined;
  // Captured now: a cell may replace the globals these come from.
  private readonly atomics = { load: Atomics.load, store: Atomics.store, wait: Atomics.wait, notify: Atomics.notify };
  private readonly captureStackTrace = Error.captureStackTrace;
  private readonly intrinsicError = Error;

  /** `note` runs at the moment of a forced stop, inside the stopped code: it must only read state. */
  constructor(readonly buffer: SharedArrayBuffer, private readonly note: () => Context) {
    this.cells = new Int32Array(buffer);
    const probe = (mode: number, id: number): string => this.probe(mode === 1 ? "shutdown" : "interrupt", id);
    Object.defineProperty(globalThis, PROBE_GLOBAL, { value: probe, writable: false, configurable: false, enumerable: false });
  }

  /** Forced stops are possible only where Node lets us repair its async-context stack. */
  get supported(): boolean {
    return this.clearAsyncStack !== undefined;
  }

  /** The main thread's SIGINT handler ran: the control thread need not step in. */
  acknowledge(): void {
    this.atomics.store(this.cells, HANDLED, this.atomics.load(this.cells, REQUESTED));
  }

  /** Shutdown has begun on the main thread: it is not stuck. */
  markShuttingDown(): void {
    this.atomics.store(this.cells, SHUTTING_DOWN, 1);
  }

  /** The last forced stop, once: the main thread calls this when the control thread says it happened. */
  takeForcedStop(): ForcedStop<Context> | undefined {
    const stop = this.lastStop;
    this.lastStop = undefined;
    return stop;
  }

  /** Called by the control thread through the inspector, usually inside V8's interrupt of running code. */
  private probe(mode: ProbeMode, id: number): string {
    const { load, store, wait, notify } = this.atomics;
    if (load(this.cells, PROBE_ID) !== id || load(this.cells, PROBE) !== PROBE_ASKED) return "stale";
    healVitalBuiltins(); // the thread is about to need them (events, signals)
    const sites = this.stack();
    // Skip this file's frames, then the evaluated expression that called the probe.
    let top = 0;
    while (top < sites.length && sites[top].getFileName() === __filename) top++;
    top++;
    const summary = summarize(sites.slice(top).map((s) => s.getFileName()));
    const answer = (value: number): string => {
      store(this.cells, PROBE, value);
      notify(this.cells, PROBE);
      return JSON.stringify(summary);
    };
    if (summary.idle) return answer(PROBE_NOTHING);
    if (!this.clearAsyncStack || !mayStop(summary, mode)) return answer(PROBE_BUSY);
    answer(PROBE_STOPPING);
    // Until the termination is queued: V8 then runs it as soon as this returns, still inside the interrupt,
    // so nothing else runs between this decision and the stop.
    wait(this.cells, PROBE, PROBE_STOPPING, 2000);
    if (load(this.cells, PROBE) === PROBE_QUEUED) {
      this.lastStop = { mode, summary, context: this.note() };
      this.clearAsyncStack();
    }
    return JSON.stringify(summary);
  }

  private stack(): CallSite[] {
    const E = this.intrinsicError as unknown as { prepareStackTrace?: unknown; stackTraceLimit: number };
    const savedPrepare = E.prepareStackTrace;
    const savedLimit = E.stackTraceLimit;
    E.prepareStackTrace = (_: unknown, sites: CallSite[]) => sites;
    E.stackTraceLimit = 200;
    try {
      const holder: { stack?: unknown } = {};
      this.captureStackTrace(holder);
      return Array.isArray(holder.stack) ? (holder.stack as CallSite[]) : [];
    } finally {
      E.prepareStackTrace = savedPrepare;
      E.stackTraceLimit = savedLimit;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Control thread

interface InspectorSession {
  connectToMainThread(): void;
  post(method: string, params: object, callback: (err: Error | null, result?: unknown) => void): void;
  disconnect(): void;
}

export interface EscalatorOptions {
  buffer: SharedArrayBuffer;
  /** The main thread's handler gets this long to see an interrupt before the control thread looks. */
  graceMs?: number;
  /** How long the control thread keeps looking while kernel code runs. */
  giveUpMs?: number;
  log: (text: string) => void;
  /** Called after the main thread's code was stopped. */
  stopped: (mode: ProbeMode) => void;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * The control thread's half: notices SIGINT itself (a worker gets no process.on("SIGINT"), so it holds a
 * signal handle of its own), and stops the main thread's code when the main thread cannot.
 */
interface Target {
  mode: ProbeMode;
  /** The main thread has dealt with it by itself. */
  handled: () => boolean;
  notBefore: number;
  deadline: number;
}

/**
 * The control thread's half: notices SIGINT itself (a worker gets no process.on("SIGINT"), so it holds a
 * signal handle of its own), and stops the main thread's code when the main thread cannot. One
 * escalation runs at a time; a shutdown takes over from an interrupt.
 */
export class InterruptEscalator {
  private readonly cells: Int32Array;
  private readonly graceMs: number;
  private readonly giveUpMs: number;
  private probes = 0;
  private target: Target | undefined;
  private running = false;
  private signal: { close(): void } | undefined;

  constructor(private readonly options: EscalatorOptions) {
    this.cells = new Int32Array(options.buffer);
    this.graceMs = options.graceMs ?? 300;
    this.giveUpMs = options.giveUpMs ?? 30_000;
  }

  /** Watches SIGINT from this thread; false where Node offers no signal handle to workers. */
  watchSigint(): boolean {
    const proc = process as unknown as { binding?: (name: string) => Record<string, unknown>; noDeprecation?: boolean };
    const saved = proc.noDeprecation;
    try {
      proc.noDeprecation = true;
      const Signal = proc.binding?.("signal_wrap").Signal as (new () => { onsignal: (n: number) => void; start(n: number): number; close(): void; unref(): void }) | undefined;
      if (typeof Signal !== "function") return false;
      const handle = new Signal();
      handle.onsignal = () => this.interrupted();
      if (handle.start(2) !== 0) return false;
      handle.unref(); // the thread still ends when the kernel shuts down
      this.signal = handle;
      return true;
    } catch (err) {
      this.options.log(`cannot watch SIGINT from the control thread (${(err as Error).message}); interrupts reach only code that yields`);
      return false;
    } finally {
      proc.noDeprecation = saved;
    }
  }

  /** SIGINT arrived (signal mode, or our own for an interrupt_request). */
  interrupted(): void {
    const request = Atomics.add(this.cells, REQUESTED, 1) + 1;
    if (this.target?.mode === "shutdown") return;
    const now = Date.now();
    this.start({ mode: "interrupt", handled: () => Atomics.load(this.cells, HANDLED) >= request, notBefore: now + this.graceMs, deadline: now + this.graceMs + this.giveUpMs });
  }

  /** A shutdown_request came: if the main thread does not begin it soon, stop whatever it runs. */
  shutdownRequested(): void {
    const now = Date.now();
    this.start({ mode: "shutdown", handled: () => Atomics.load(this.cells, SHUTTING_DOWN) === 1, notBefore: now + 1500, deadline: now + 1500 + this.giveUpMs });
  }

  close(): void {
    this.target = undefined;
    this.signal?.close();
    this.signal = undefined;
  }

  private start(target: Target): void {
    this.target = target;
    if (!this.running) void this.run();
  }

  private async run(): Promise<void> {
    this.running = true;
    let session: InspectorSession | undefined;
    try {
      for (;;) {
        const target = this.target;
        if (!target || target.handled() || Date.now() > target.deadline) break;
        if (Date.now() < target.notBefore) {
          await sleep(10);
          continue;
        }
        session ??= connect();
        const outcome = await this.probe(session, target.mode);
        if (outcome === PROBE_NOTHING || outcome === PROBE_QUEUED) {
          // Idle: its own handlers run now. Stopped: it recovers when told.
          if (outcome === PROBE_QUEUED) this.options.stopped(target.mode);
          if (this.target === target) this.target = undefined;
          continue;
        }
        await sleep(250); // kernel code is running: look again soon
      }
    } catch (err) {
      this.options.log(`could not stop the main thread's code: ${(err as Error).message}`);
    } finally {
      this.target = undefined;
      this.running = false;
      session?.disconnect();
    }
  }

  /** One probe; resolves with PROBE_NOTHING, PROBE_BUSY, PROBE_QUEUED, or PROBE_ASKED when the thread never answered. */
  private async probe(session: InspectorSession, mode: ProbeMode): Promise<number> {
    const id = ++this.probes;
    Atomics.store(this.cells, PROBE_ID, id);
    Atomics.store(this.cells, PROBE, PROBE_ASKED);
    session.post("Runtime.evaluate", { expression: `${PROBE_GLOBAL}(${mode === "shutdown" ? 1 : 0}, ${id})`, silent: true }, () => {});
    // A thread in native code (not JavaScript) answers only when it returns to JavaScript.
    const answered = await waitUntil(() => Atomics.load(this.cells, PROBE) !== PROBE_ASKED, 1000);
    if (!answered) {
      Atomics.store(this.cells, PROBE_ID, 0); // if it runs late, it does nothing
      return PROBE_ASKED;
    }
    const outcome = Atomics.load(this.cells, PROBE);
    if (outcome !== PROBE_STOPPING) return outcome;
    // Queued behind the probe's own evaluation: V8 runs it as soon as the probe returns.
    session.post("Runtime.terminateExecution", {}, () => {});
    Atomics.store(this.cells, PROBE, PROBE_QUEUED);
    Atomics.notify(this.cells, PROBE);
    return PROBE_QUEUED;
  }
}

function connect(): InspectorSession {
  // Loaded only when needed: the inspector is not part of a kernel that is never interrupted.
  const inspector = require("node:inspector") as { Session: new () => InspectorSession };
  const session = new inspector.Session();
  session.connectToMainThread();
  return session;
}

/** Polls `done` until it holds or `ms` pass; true if it held. */
async function waitUntil(done: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!done()) {
    if (Date.now() >= deadline) return false;
    await sleep(Math.min(10, Math.max(1, deadline - Date.now())));
  }
  return true;
}
