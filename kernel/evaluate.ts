// The interpreter: TypeScript cells type-checked against earlier cells, then run in the kernel's own
// realm (one JavaScript world: engine arrays and errors pass instanceof checks), their declarations
// persisting as globals. console, display, input, require, timers and process report to the cell that
// is running, or that scheduled the callback now running (AsyncLocalStorage).
import { Console } from "node:console";
import { createRequire } from "node:module";
import * as path from "node:path";
import { Writable } from "node:stream";
import { pathToFileURL } from "node:url";
import * as util from "node:util";
import * as vm from "node:vm";
import type {
  CompleteResult,
  ExecuteContext,
  ExecuteOutcome,
  InspectResult,
  Interpreter,
  IsCompleteResult,
} from "./interpreter.js";
import { currentCell, runInCell, type CellContext } from "./cell-context.js";
import { createDisplay, DISPLAY_DECLARATIONS, isDisplayHandle, toMimeBundle } from "./display.js";
import type { CellChecker } from "./checker.js";
import { createChecker } from "./checker-client.js";
import { isComplete, type CellDiagnostic } from "./language.js";
import { cellFilename, describeError, registerCell } from "./stack.js";
import { ProcessExitRefusedError } from "./process-guard.js";
import { healVitalBuiltins, KernelPromise, ReflectApply, SafeMap, SafePromiseRace, SafeSet, withOriginals } from "./primordials.js";
import { compileCell, IMPORT_HELPER, SCOPE_KEY, wrapBody, type CellBody } from "./transform.js";

/** A global the prelude adds, with the TypeScript type the checker gives it. */
export interface PreludeGlobal {
  /** A TypeScript type expression, e.g. `import("/abs/engine/index").StreamingContext`. */
  type: string;
  value?: unknown;
  /** Called on first use (lazy: e.g. `ssc`), then the value stays. Assigning the global replaces it. */
  get?: () => unknown;
}

/**
 * What a notebook has pre-bound (the notebook side fills it in):
 * - `module`: absolute path of a CommonJS module; each export becomes a global at start-up, and the
 *   checker resolves those names to the module's own declarations (types included, e.g. `DStream<T>`).
 * - `globals`: extra values with declared types (`sc`, `ssc`), lazily created when `get` is given.
 * - `declarations`: extra ambient TypeScript (script .d.ts text) for the checker.
 * - `shutdown`: called by `Interpreter.shutdown()` (stop streams, close sockets).
 */
export interface Prelude {
  module?: string;
  globals?: Record<string, PreludeGlobal>;
  declarations?: string;
  shutdown?: (restart: boolean) => Promise<void> | void;
}

export interface InterpreterOptions {
  /** The notebook's folder: `require`, `import` and the checker resolve from here. */
  cwd: string;
  prelude?: Prelude;
  /** Install process.on("SIGINT") to abandon a pending await (default true). */
  handleSigint?: boolean;
  /** Load TypeScript and warm the checker this many ms after creation (default 50); false: on first use. */
  warmup?: number | false;
  /**
   * Run a cell's synchronous part under Node's SIGINT watchdog (default true). The kernel turns it off:
   * its control thread stops spinning code itself (kernel/interrupts.ts), and the watchdog would take
   * SIGINT away from that thread; the part then runs in a macrotask of its own, so stopping it ends only that.
   */
  breakOnSigint?: boolean;
}

export { ProcessExitRefusedError };

export class InputOutsideCellError extends Error {
  constructor() {
    super("input() was called outside any cell: call it from cell code (await input(\"prompt\")).");
    this.name = "InputOutsideCellError";
  }
}

/** The extra surface of our interpreter beyond the seam (tests, the notebook side, main.ts). */
export interface StreambookInterpreter extends Interpreter {
  /** Loads TypeScript and warms the checker now (resolves when ready). */
  warm(): Promise<void>;
  /** The cells' global object. */
  readonly global: Record<string, unknown>;
}

/** Switches checking off (or on) for one cell, as its first line. */
const TYPECHECK_MAGIC = /^\s*\/\/%\s*typecheck\s+(off|on)\b/;

export function createInterpreter(options: InterpreterOptions): StreambookInterpreter {
  return new CellInterpreter(options);
}

// Process-wide handlers: errors that escape cells go to the cell that caused them, never kill us.
let processHandlersInstalled = false;
function installProcessHandlers(): void {
  if (processHandlersInstalled) return;
  processHandlersInstalled = true;
  kernelProcess.on("unhandledRejection", (reason) => reportAsyncError(reason, "Unhandled promise rejection", currentCell()));
  kernelProcess.on("uncaughtException", (err) => reportAsyncError(err, "Uncaught exception", currentCell()));
}

function reportAsyncError(err: unknown, what: string, cell: CellContext | undefined): void {
  const { traceback } = describeError(err);
  const text = `${what}: ${traceback.join("\n")}\n`;
  if (cell) cell.sink.stream("stderr", text);
  else kernelWrite("stderr", `[streambook] ${text}`);
}

// Private references: a cell may replace the global `console` or `process` (one realm), the kernel
// must keep writing to the real streams.
const kernelProcess = process;
const kernelWrite = (name: "stdout" | "stderr", text: string): void => {
  kernelProcess[name].write(text);
};
const defineProperty = Object.defineProperty;
const kernelSetImmediate = setImmediate;
/** Runs `fn` in a macrotask of its own: a forced stop of its code then cuts off nothing else. */
const runDetached = <T>(fn: () => T): Promise<T> =>
  new KernelPromise<T>((resolve, reject) => {
    kernelSetImmediate(() => {
      try {
        resolve(fn());
      } catch (err) {
        reject(err);
      }
    });
  });
/** Resolves after the event loop's poll phase, where pending signals are delivered to their handlers. */
const yieldToEventLoop = (): Promise<void> => new KernelPromise((resolve) => kernelSetImmediate(resolve));
const getOwnPropertyDescriptor = Object.getOwnPropertyDescriptor;

function textStream(write: (s: string) => void): Writable {
  return new Writable({
    decodeStrings: false,
    write(chunk: unknown, _enc, cb) {
      write(typeof chunk === "string" ? chunk : String(chunk));
      cb();
    },
  });
}

/** Writes to the running cell's output, or to the kernel's own stream outside cells. */
const route = (name: "stdout" | "stderr") => (text: string): void => {
  const cell = currentCell();
  if (cell) cell.sink.stream(name, text);
  else kernelWrite(name, text);
};

/**
 * The global console while any interpreter lives: libraries' and cells' logging lands under the cell
 * that caused it, as in IJavascript. Outside cells it writes to the process's streams, as before.
 */
let routingConsole: Console | undefined;
let consoleUsers = 0;
let savedConsole: PropertyDescriptor | undefined;
function claimConsole(): void {
  routingConsole ??= new Console({ stdout: textStream(route("stdout")), stderr: textStream(route("stderr")), colorMode: false });
  if (consoleUsers++ === 0) {
    savedConsole = getOwnPropertyDescriptor(globalThis, "console");
    defineProperty(globalThis, "console", { value: routingConsole, writable: true, configurable: true, enumerable: false });
  }
}
function releaseConsole(): void {
  if (--consoleUsers > 0) return;
  if ((globalThis as { console: unknown }).console === routingConsole && savedConsole) defineProperty(globalThis, "console", savedConsole);
}

class KeyboardInterrupt extends Error {
  constructor() {
    super("Execution was interrupted; every variable is kept.");
    this.name = "KeyboardInterrupt";
  }
}

class CellInterpreter implements StreambookInterpreter {
  /** Cells run in the kernel's own realm (one JavaScript world): their globals are the process's. */
  readonly global: Record<string, unknown> = globalThis as unknown as Record<string, unknown>;
  /**
   * Names each cell sees as its own (wrapper parameters shadowing the real globals): a `process`
   * that refuses exit(), a notebook-folder `require`, timers that report to their cell. A cell that
   * declares one of these names takes it over as an ordinary global from then on.
   */
  private readonly scope = new SafeMap<string, unknown>();
  /** Globals this interpreter defined or replaced, with what was there before (restored at shutdown). */
  private readonly claimed = new SafeMap<string, PropertyDescriptor | undefined>();
  private readonly cwd: string;
  private checker: CellChecker | undefined;
  private abort: ((err: Error) => void) | undefined;
  private lastCell: CellContext | undefined;
  private readonly timers = new SafeSet<NodeJS.Timeout | NodeJS.Immediate>();
  private warming: Promise<void> | undefined;
  private executing = false;
  private interruptRequested = false;
  private closed = false;
  private shuttingDown = false;
  private readonly sigint = (): void => this.interrupt();

  constructor(private readonly options: InterpreterOptions) {
    this.cwd = path.resolve(options.cwd);
    claimConsole();
    this.installGlobals();
    installProcessHandlers();
    if (options.handleSigint !== false) kernelProcess.on("SIGINT", this.sigint);
    if (options.warmup !== false) {
      setTimeout(() => void this.warm().catch((e: unknown) => reportAsyncError(e, "Type checker warm-up failed", undefined)), options.warmup ?? 50).unref();
    }
  }

  /** Remembers what a global was before this interpreter first touched it. */
  private claim(name: string): void {
    if (!this.claimed.has(name)) this.claimed.set(name, getOwnPropertyDescriptor(globalThis, name));
  }

  private defineGlobal(name: string, descriptor: PropertyDescriptor): void {
    this.claim(name);
    defineProperty(globalThis, name, descriptor);
  }

  private installGlobals(): void {
    const scope = this.scope;
    const stdout = textStream(route("stdout"));
    const stderr = textStream(route("stderr"));
    const refuse = (key: string) => (): never => {
      throw new ProcessExitRefusedError(`process.${key}()`);
    };
    scope.set("process", new Proxy(kernelProcess, {
      get: (target, key) => {
        if (key === "exit" || key === "abort" || key === "reallyExit") return refuse(key);
        if (key === "stdout") return stdout;
        if (key === "stderr") return stderr;
        return Reflect.get(target, key);
      },
    }));
    const cwdRequire = createRequire(path.join(this.cwd, "__notebook__.js"));
    const kernelRequire = createRequire(__filename);
    const cellRequire = Object.assign(
      (id: string): unknown => {
        try {
          return cwdRequire(id);
        } catch (e) {
          // Not in the notebook's folder: the kernel's own packages (e.g. the engine) are next.
          if ((e as NodeJS.ErrnoException).code === "MODULE_NOT_FOUND" && String((e as Error).message).includes(`'${id}'`)) {
            return kernelRequire(id);
          }
          throw e;
        }
      },
      { resolve: cwdRequire.resolve, cache: cwdRequire.cache, main: undefined },
    );
    scope.set("require", cellRequire);
    scope.set("__dirname", this.cwd);
    scope.set("__filename", path.join(this.cwd, "__notebook__.js"));
    scope.set(IMPORT_HELPER, async (spec: string, importer: (s: string) => Promise<unknown>): Promise<unknown> => {
      try {
        return await importer(spec);
      } catch (e) {
        const bare = !/^(\.|\/|[a-z]+:)/i.test(spec);
        if (bare && (e as NodeJS.ErrnoException).code === "ERR_MODULE_NOT_FOUND") {
          let resolved: string;
          try {
            resolved = kernelRequire.resolve(spec);
          } catch {
            throw e;
          }
          return importer(pathToFileURL(resolved).href);
        }
        throw e;
      }
    });
    this.installTimers();
    const plain = (value: unknown, enumerable = false): PropertyDescriptor => ({ value, writable: true, configurable: true, enumerable });
    this.defineGlobal("display", plain(createDisplay()));
    const input = (prompt: unknown = "", password = false): Promise<string> => {
      const cell = currentCell();
      if (!cell) return Promise.reject(new InputOutsideCellError());
      return cell.input(String(prompt), password);
    };
    this.defineGlobal("input", plain(Object.assign((prompt?: unknown) => input(prompt, false), { password: (prompt?: unknown) => input(prompt, true) })));
    this.defineGlobal("streambook", plain({ typecheck: true }));
    const prelude = this.options.prelude;
    if (prelude?.module) {
      const mod = kernelRequire(prelude.module) as Record<string, unknown>;
      for (const [name, value] of Object.entries(mod)) {
        if (name !== "default" && name !== "__esModule") this.defineGlobal(name, plain(value, true));
      }
    }
    for (const [name, spec] of Object.entries(prelude?.globals ?? {})) {
      if (!spec.get) {
        this.defineGlobal(name, plain(spec.value, true));
        continue;
      }
      const get = spec.get;
      this.defineGlobal(name, {
        configurable: true,
        enumerable: true,
        get: () => {
          const value = get();
          defineProperty(globalThis, name, plain(value, true));
          return value;
        },
        set: (value: unknown) => {
          defineProperty(globalThis, name, plain(value, true));
        },
      });
    }
  }

  /** Timers that report their callback's exceptions to the scheduling cell, and stop at shutdown. */
  private installTimers(): void {
    const timers = this.timers;
    const guard = (fn: (...a: unknown[]) => unknown, args: unknown[], cell: CellContext | undefined, once: () => void) =>
      function (this: unknown): void {
        once();
        try {
          ReflectApply(fn, this, args);
        } catch (err) {
          reportAsyncError(err, "Uncaught exception in a timer", cell);
        } finally {
          healVitalBuiltins(); // a callback that replaced Function.prototype.apply would break Node's next event
        }
      };
    const wrap = <H extends NodeJS.Timeout | NodeJS.Immediate>(
      schedule: (cb: () => void, ms?: number) => H,
      repeat: boolean,
    ) => {
      const wrapped = (fn: unknown, ms?: number, ...args: unknown[]): H => {
        if (typeof fn !== "function") throw new TypeError(`The "callback" argument must be of type function. Received ${util.inspect(fn)}`);
        let handle: H | undefined = undefined;
        handle = schedule(guard(fn as (...a: unknown[]) => unknown, args, currentCell(), () => {
          if (!repeat && handle) timers.delete(handle);
        }), ms);
        timers.add(handle);
        return handle;
      };
      return wrapped;
    };
    const st = wrap((cb, ms) => setTimeout(cb, ms), false);
    const si = wrap((cb, ms) => setInterval(cb, ms), true);
    const sim = wrap((cb) => setImmediate(cb), false);
    Object.assign(st, { [util.promisify.custom]: (setTimeout as unknown as Record<symbol, unknown>)[util.promisify.custom] });
    Object.assign(sim, { [util.promisify.custom]: (setImmediate as unknown as Record<symbol, unknown>)[util.promisify.custom] });
    const setImm = (fn: unknown, ...args: unknown[]) => sim(fn, undefined, ...args);
    Object.assign(setImm, { [util.promisify.custom]: (setImmediate as unknown as Record<symbol, unknown>)[util.promisify.custom] });
    const define = (name: string, value: unknown): void => {
      this.scope.set(name, value);
    };
    define("setTimeout", st);
    define("setInterval", si);
    define("setImmediate", setImm);
    const clear = (h: unknown): void => {
      timers.delete(h as NodeJS.Timeout);
      if (h && typeof h === "object" && "_onImmediate" in h) clearImmediate(h as NodeJS.Immediate);
      else clearTimeout(h as NodeJS.Timeout);
    };
    define("clearTimeout", clear);
    define("clearInterval", clear);
    define("clearImmediate", clear);
  }

  warm(): Promise<void> {
    this.warming ??= (async () => {
      if (this.shuttingDown) return; // loading the checker would only delay the exit
      await new Promise((r) => setImmediate(r));
      if (this.shuttingDown) return;
      await this.cellChecker().warm();
    })();
    return this.warming;
  }

  private cellChecker(): CellChecker {
    if (!this.checker) {
      const p = this.options.prelude;
      const globals = Object.entries(p?.globals ?? {}).map(([n, g]) => `declare var ${n}: ${g.type};`);
      this.checker = createChecker({
        cwd: this.cwd,
        preludeModule: p?.module,
        globalDeclarations: [
          DISPLAY_DECLARATIONS,
          "declare function input(prompt?: string): Promise<string>;",
          "declare namespace input { function password(prompt?: string): Promise<string>; }",
          "/** Kernel settings: `streambook.typecheck = false` switches type checking off for later cells. */",
          "declare var streambook: { typecheck: boolean };",
          ...globals,
          p?.declarations ?? "",
        ].join("\n"),
      }, (text) => kernelWrite("stderr", `[streambook] ${text}\n`));
    }
    return this.checker;
  }

  async execute(code: string, ctx: ExecuteContext): Promise<ExecuteOutcome> {
    const cell: CellContext = { sink: ctx.sink, cellId: ctx.cellId, executionCount: ctx.executionCount, input: ctx.input };
    this.lastCell = cell;
    const label = `<cell ${ctx.executionCount}>`;

    this.interruptRequested = false;
    this.executing = true;
    try {
      return await this.executeCell(code, ctx, cell, label);
    } finally {
      this.executing = false;
    }
  }

  private async executeCell(code: string, ctx: ExecuteContext, cell: CellContext, label: string): Promise<ExecuteOutcome> {
    const magic = TYPECHECK_MAGIC.exec(code);
    const typecheck = magic ? magic[1] === "on" : this.global.streambook === undefined || (this.global.streambook as { typecheck?: unknown }).typecheck !== false;
    const checker = this.cellChecker();
    // An interrupt while the checker works ends the cell before it runs (the check may be in another process).
    const interrupted = new Promise<never>((_, reject) => (this.abort = reject));
    let checked;
    try {
      checked = await Promise.race([checker.check(code, typecheck), interrupted]);
    } catch (err) {
      checker.discard();
      if (err instanceof KeyboardInterrupt) return interruptedOutcome();
      return { status: "error", ...describeError(err) };
    } finally {
      this.abort = undefined;
    }
    if (checked.diagnostics.length) {
      checker.discard();
      return typeScriptError(label, checked.diagnostics);
    }
    // A check in this process is synchronous, so a SIGINT that came meanwhile waits in the event loop:
    // let its handler run now (it calls interrupt()), or the signal would be lost and the cell would run.
    await yieldToEventLoop();
    if (this.interruptRequested) {
      // Interrupted between the start of execute and the start of running: the cell never starts.
      checker.discard();
      return interruptedOutcome();
    }
    withOriginals(() => checker.commit()); // checker and compiler run on the built-ins they started with

    const body = checked.body as CellBody;
    let compiled = withOriginals(() => wrapBody(body, [...this.scope.keys()]));
    const taken = compiled.globals.filter((n) => this.scope.has(n));
    if (taken.length) {
      // The cell declares `require`, `setTimeout`, ...: from now on that name is an ordinary global.
      for (const n of taken) this.scope.delete(n);
      compiled = withOriginals(() => wrapBody(body, [...this.scope.keys()]));
    }
    const id = registerCell({ label, ...compiled.map });
    const g = this.global;
    for (const name of compiled.globals) {
      this.claim(name);
      if (!(name in g)) g[name] = undefined;
    }
    let value: unknown;
    try {
      const script = new vm.Script(compiled.js, {
        filename: cellFilename(this.cwd, id),
        importModuleDynamically: vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER,
      });
      // An interrupt that lands before the detached script's turn comes abandons the cell: it must not start.
      let abandoned = false;
      const interrupted = new KernelPromise<never>((_, reject) => (this.abort = (err) => ((abandoned = true), reject(err))));
      const run = this.options.breakOnSigint === false
        ? runDetached(() => (abandoned ? undefined : runInCell(cell, () => this.runScript(script, false))))
        : runInCell(cell, () => this.runScript(script, true));
      run.then(undefined, () => undefined); // an abandoned cell's later failure is not "unhandled"
      value = await SafePromiseRace([run, interrupted]);
    } catch (err) {
      if (err instanceof KeyboardInterrupt || (err as NodeJS.ErrnoException)?.code === "ERR_SCRIPT_EXECUTION_INTERRUPTED") {
        return interruptedOutcome();
      }
      return { status: "error", ...describeError(err) };
    } finally {
      this.abort = undefined;
    }
    // A display handle as the last expression: its display_data went out already, the handle is no result.
    if (value === undefined || ctx.silent || isDisplayHandle(value)) return { status: "ok" };
    try {
      return { status: "ok", result: runInCell(cell, () => withOriginals(() => toMimeBundle(value))) };
    } catch (err) {
      return { status: "error", ...describeError(err) };
    }
  }

  /** Runs a compiled cell in the main realm, its scope's values handed over through the global slot. */
  private runScript(script: vm.Script, breakOnSigint: boolean): Promise<unknown> {
    defineProperty(globalThis, SCOPE_KEY, { value: [...this.scope.values()], configurable: true, writable: true, enumerable: false });
    try {
      return script.runInThisContext({ breakOnSigint }) as Promise<unknown>;
    } finally {
      // The wrapper read its arguments before its first statement: the slot is not needed any more.
      delete (globalThis as Record<symbol, unknown>)[SCOPE_KEY];
      healVitalBuiltins(); // a cell that replaced Function.prototype.apply would break Node's next event
    }
  }

  async evaluateExpressions(expressions: Record<string, string>): Promise<Record<string, unknown>> {
    const out: Record<string, unknown> = {};
    for (const [key, expr] of Object.entries(expressions)) {
      try {
        const compiled = compileCell(`(${expr})`, [...this.scope.keys()]);
        const script = new vm.Script(compiled.js, { importModuleDynamically: vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER });
        const run = (): Promise<unknown> => this.runScript(script, false);
        const value = await (this.lastCell ? runInCell(this.lastCell, run) : run());
        out[key] = { status: "ok", data: toMimeBundle(value), metadata: {} };
      } catch (err) {
        out[key] = { status: "error", ...describeError(err) };
      }
    }
    return out;
  }

  async complete(code: string, cursorPos: number): Promise<CompleteResult> {
    return this.cellChecker().complete(code, cursorPos);
  }

  async inspect(code: string, cursorPos: number, detailLevel: number): Promise<InspectResult> {
    return this.cellChecker().inspect(code, cursorPos, detailLevel);
  }

  isComplete(code: string): IsCompleteResult {
    return isComplete(code);
  }

  interrupt(): void {
    // Noted even while an await can be abandoned: a check that finished just before still must not run.
    if (this.executing) this.interruptRequested = true;
    if (this.abort) this.abort(new KeyboardInterrupt());
  }

  async shutdown(restart: boolean): Promise<void> {
    this.shuttingDown = true;
    for (const t of this.timers) {
      clearTimeout(t as NodeJS.Timeout);
      clearImmediate(t as NodeJS.Immediate);
    }
    this.timers.clear();
    kernelProcess.off("SIGINT", this.sigint);
    try {
      await this.options.prelude?.shutdown?.(restart);
    } finally {
      this.checker?.close();
      this.restoreGlobals();
    }
  }

  /** A restarted (or second) interpreter starts from the globals the process had before this one. */
  private restoreGlobals(): void {
    if (this.closed) return;
    this.closed = true;
    for (const [name, before] of this.claimed) {
      if (before) defineProperty(globalThis, name, before);
      else delete (globalThis as Record<string, unknown>)[name];
    }
    this.claimed.clear();
    releaseConsole();
  }
}

function interruptedOutcome(): ExecuteOutcome {
  const e = new KeyboardInterrupt();
  return { status: "error", ename: e.name, evalue: e.message, traceback: [`${e.name}: ${e.message}`] };
}

function typeScriptError(label: string, diagnostics: CellDiagnostic[]): ExecuteOutcome {
  const first = diagnostics[0];
  const traceback: string[] = [];
  for (const d of diagnostics) {
    traceback.push(`${label}:${d.line}:${d.column} - error TS${d.code}: ${d.message}`);
    traceback.push(`    ${d.sourceLine}`);
    traceback.push(`    ${" ".repeat(Math.max(0, d.column - 1))}^`);
  }
  return {
    status: "error",
    ename: "TypeScriptError",
    evalue: `${label}:${first.line}:${first.column} ${first.message}`,
    traceback: [`TypeScriptError: ${diagnostics.length} type error${diagnostics.length > 1 ? "s" : ""} (the cell did not run)`, ...traceback],
  };
}

