// Kernel entry: `node dist/kernel/main.js -f connection.json`. Binds the sockets, starts the
// heartbeat/control thread, and loads the interpreter in the background so kernel_info is quick.
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { MessageChannel, Worker } from "node:worker_threads";
import { rmSync } from "node:fs";
import { KernelBindError, MainChannels, maxMessageBytes } from "./channels.js";
import type { ControlThreadData, FromControl, ToControl } from "./control-thread.js";
import { Dispatcher, KernelTransport } from "./dispatch.js";
import type { Interpreter } from "./interpreter.js";
import { onShutdownRequest } from "./lifecycle.js";
import { guardProcessExits } from "./process-guard.js";
import { openHistory } from "./history.js";
import { createInterruptBuffer, MainThreadInterrupts } from "./interrupts.js";
import { currentCell } from "./cell-context.js";
import {
  BufferFrom,
  guardObjectPrototypeThen,
  healVitalBuiltins,
  KernelClearTimeout,
  KernelPromise,
  KernelSetImmediate,
  KernelSetTimeout,
  PromisePrototypeThen,
  SafePromiseRace,
} from "./primordials.js";
import { jupyterDataDir } from "./install.js";
import { silenceVmLoaderWarning } from "./warnings.js";
import { ConnectionInfo, decode, DropLog, encode, Header, ipcSocketFiles, JsonObject, MessageFactory, PROTOCOL_VERSION, readConnectionFile, Signer, WireError } from "./wire.js";

// SIGINT is how interrupts arrive (signal mode from the client, message mode from the control
// thread); until the interpreter installs its handler, an interrupt must not kill the kernel.
const ignoreSigint = (): void => {};
process.on("SIGINT", ignoreSigint);

/**
 * `kernelHandlesSigint`: the kernel calls interrupt() on SIGINT and stops spinning code itself
 * (kernel/interrupts.ts), so the interpreter installs no SIGINT handler and must not run code under
 * Node's SIGINT watchdog (vm's breakOnSigint), which would take SIGINT away from the control thread.
 */
export type InterpreterFactory = (options: { cwd: string; kernelHandlesSigint: boolean }) => Interpreter;

export interface KernelOptions {
  /**
   * Stop code that spins on the main thread (after a cell's first await, in a timer, in a foreachRDD
   * function) from the control thread, kernel/interrupts.ts, where Node allows it.
   */
  forcedInterrupts?: boolean;
}

export class KernelUsageError extends Error {
  override name = "KernelUsageError";
}

function log(text: string): void {
  process.stderr.write(`streambook: ${text}\n`);
}

function packageVersion(file: string): string {
  try {
    const version = (JSON.parse(readFileSync(file, "utf8")) as { version?: unknown }).version;
    return typeof version === "string" ? version : "unknown";
  } catch {
    return "unknown";
  }
}

/** kernel_info_reply content; reads version numbers from package.json files, not by loading TypeScript. */
export function kernelInfo(): JsonObject {
  const own = packageVersion(path.join(__dirname, "..", "..", "package.json"));
  let tsVersion = "5";
  try {
    tsVersion = packageVersion(require.resolve("typescript/package.json"));
  } catch {
    // TypeScript missing is the interpreter's problem to report; kernel_info still answers.
  }
  return {
    status: "ok",
    protocol_version: PROTOCOL_VERSION,
    implementation: "streambook",
    implementation_version: own,
    language_info: {
      name: "typescript",
      version: tsVersion,
      mimetype: "text/typescript",
      file_extension: ".ts",
      // A name both CodeMirror 5 (classic Notebook) and JupyterLab's language registry resolve to TypeScript.
      codemirror_mode: "typescript",
      pygments_lexer: "typescript",
    },
    banner: `streambook ${own}: TypeScript ${tsVersion} on Node.js ${process.versions.node}`,
    help_links: [
      { text: "TypeScript handbook", url: "https://www.typescriptlang.org/docs/handbook/intro.html" },
      { text: "Node.js API", url: "https://nodejs.org/api/" },
    ],
    debugger: false,
  };
}

export function parseArgs(argv: readonly string[]): { connectionFile: string } {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if ((arg === "-f" || arg === "--f" || arg === "--connection-file") && i + 1 < argv.length) return { connectionFile: argv[i + 1] };
    const eq = /^--?(?:f|connection-file)=(.+)$/.exec(arg);
    if (eq) return { connectionFile: eq[1] };
  }
  throw new KernelUsageError("usage: node dist/kernel/main.js -f <connection file> (Jupyter passes {connection_file})");
}

/** Runs a kernel until shutdown; the process exits at the end. */
export async function runKernel(info: ConnectionInfo, createInterpreter: InterpreterFactory, options: KernelOptions = {}): Promise<void> {
  // From here on a cell cannot end the process; only the shutdown below can.
  const kernelExit = guardProcessExits();
  // Object.prototype.then would make every object a promise-like: the kernel's own awaits would hang.
  guardObjectPrototypeThen();
  // Noted when code is stopped by force (inside that code, so it only reads): was a cell running, and
  // whose code was stopped (a timer's cell)? With no cell running, the stop was the whole interrupt.
  let sigintsServed = 0;
  const interrupts = new MainThreadInterrupts(createInterruptBuffer(), () => {
    const cellRunning = dispatcher.executing;
    if (!cellRunning) sigintsServed = 1;
    return { cellRunning, cell: currentCell() };
  });
  const forcedInterrupts = options.forcedInterrupts === true && interrupts.supported;
  const maxMessageSize = maxMessageBytes(process.env, log);
  const signer = new Signer(info.key, info.signature_scheme);
  const factory = new MessageFactory();
  const channels = new MainChannels(maxMessageSize);
  await channels.bind(info);
  const info5 = kernelInfo();

  const publish = (msgType: string, content: JsonObject, parent?: Header | JsonObject, metadata?: JsonObject): void => {
    healVitalBuiltins();
    const message = factory.make(msgType, content, parent, metadata);
    channels.iopubQueue.send(encode(message, [BufferFrom(`kernel.${factory.session}.${msgType}`)], signer));
  };

  let interpreterPromise: Promise<Interpreter> | undefined;
  let interpreterInstance: Interpreter | undefined;
  const interpreter = (): Promise<Interpreter> => {
    interpreterPromise ??= new KernelPromise<Interpreter>((resolve) => {
      interpreterInstance = createInterpreter({ cwd: process.cwd(), kernelHandlesSigint: forcedInterrupts });
      resolve(interpreterInstance);
    });
    return interpreterPromise;
  };

  // Heartbeat and control live in a worker thread: they answer while a cell keeps this thread busy.
  // The control thread talks to this one over a port of its own: a MessagePort's onmessage does not go
  // through EventEmitter.emit, which a cell that replaces Function.prototype.apply would break.
  const { port1: fromControl, port2: toMain } = new MessageChannel();
  const workerData: ControlThreadData = {
    toMain,
    connection: info,
    session: factory.session,
    kernelInfo: info5,
    replayBuffer: signer.replays.buffer,
    maxMessageSize,
    interruptBuffer: interrupts.buffer,
    forcedInterrupts,
  };
  const worker = new Worker(path.join(__dirname, "control-thread.js"), { workerData, transferList: [toMain] });
  // The control thread must have ended by itself before the process exits: exiting while it still
  // tears down its zeromq sockets aborts the process ("corrupted double-linked list", zeromq.js #411).
  const workerExited = new KernelPromise<void>((resolve) => worker.once("exit", () => resolve()));
  // Heartbeat and control are part of the kernel: if they cannot start (a port taken), neither can it.
  let controlReady = false;
  worker.on("exit", () => {
    // "ready" comes over the port, the exit as an event: after a quick shutdown the exit may come first.
    if (controlReady || shuttingDown !== undefined) return;
    log("the heartbeat and control thread could not start (see above); the kernel exits");
    kernelExit.exit(1);
  });
  worker.on("error", (err) => log(`control thread failed: ${err.stack ?? err.message}`));

  let shuttingDown: Promise<void> | undefined;
  const shutdown = (restart: boolean, viaControl = false): Promise<void> => {
    shuttingDown ??= (async () => {
      healVitalBuiltins();
      interrupts.markShuttingDown();
      dispatcher.cancelInputs();
      if (interpreterInstance !== undefined) {
        // Bounded: clients kill a kernel that takes more than a few seconds to go.
        let timer: NodeJS.Timeout | undefined;
        const limit = new KernelPromise<void>((resolve) => {
          timer = KernelSetTimeout(() => {
            log("interpreter shutdown took over 3 s; exiting anyway");
            resolve();
          }, 3000);
        });
        try {
          await SafePromiseRace([interpreterInstance.shutdown(restart), limit]);
        } catch (err) {
          log(`interpreter shutdown failed: ${(err as Error).message}`);
        } finally {
          KernelClearTimeout(timer);
        }
      }
      await channels.flush();
      const message: ToControl = viaControl ? { kind: "shutdown-reply", restart } : { kind: "close" };
      worker.postMessage(message);
      if (!(await within(workerExited, 5000))) {
        log("the control thread did not end within 5 s; stopping it");
        await worker.terminate();
      }
      await channels.flush();
      channels.close();
      fromControl.close();
      for (const file of ipcSocketFiles(info)) rmSync(file, { force: true });
      kernelExit.exit(0);
    })();
    return shuttingDown;
  };
  onShutdownRequest((restart) => shutdown(restart));

  (fromControl as unknown as { onmessage: (event: { data: unknown }) => void }).onmessage = (event) => {
    const message = event.data as FromControl;
    switch (message.kind) {
      case "iopub":
        publish(message.msgType, message.content, message.parent);
        break;
      case "shutdown":
        publish("shutdown_reply", { status: "ok", restart: message.restart }, message.parent);
        void shutdown(message.restart, true);
        break;
      case "stopped": {
        // The control thread stopped code here by force: V8 dropped the microtasks queued behind it, so
        // the socket loops resume from where they were, and the interpreter repairs what it can.
        channels.recover();
        const stop = interrupts.takeForcedStop();
        if (stop === undefined) break;
        if (!stop.context.cellRunning && stop.mode === "interrupt") {
          // Said under the cell whose code it was (a timer it set, a batch function it defined).
          stop.context.cell?.sink.stream("stderr", "KeyboardInterrupt: code this cell left running (a timer or a batch function) was stopped; every variable is kept.\n");
        }
        interpreterInstance?.afterForcedStop?.({ engine: stop.summary.engine });
        break;
      }
      case "ready":
        controlReady = true;
        break;
    }
  };

  const transport: KernelTransport = {
    reply: (identities, parent, msgType, content, metadata) => {
      channels.shellQueue.send(encode(factory.make(msgType, content, parent, metadata), identities, signer));
    },
    publish,
    inputRequest: (identities, parent, content) => {
      const message = factory.make("input_request", content, parent);
      channels.stdinQueue.send(encode(message, identities, signer));
      return message.header.msg_id;
    },
    shutdown: (restart) => shutdown(restart),
  };
  // History survives restarts in the Jupyter data directory; a damaged store is said, never fatal.
  const history = openHistory(jupyterDataDir(), process.env, (text) => log(text));
  const dispatcher = new Dispatcher(transport, interpreter, info5, undefined, history);

  process.on("SIGTERM", () => void shutdown(false));
  // SIGINT (from the client, or from the control thread for an interrupt_request) interrupts the running
  // cell. When the control thread had to stop code by force and no cell was running, that stop was the
  // interrupt: the signal, handled late, must not hit a cell that started after it.
  process.on("SIGINT", () => {
    interrupts.acknowledge();
    if (!forcedInterrupts) return; // the interpreter handles SIGINT itself
    if (sigintsServed > 0) sigintsServed--;
    else interpreterInstance?.interrupt();
  });
  // Like ipykernel's parent poller: a kernel whose launcher died (JPY_PARENT_PID) shuts itself down.
  const parentPid = Number(process.env.JPY_PARENT_PID);
  if (process.platform !== "win32" && parentPid > 1 && process.ppid === parentPid) {
    setInterval(() => {
      if (process.ppid !== parentPid) void shutdown(false);
    }, 1000).unref();
  }

  const drops = new DropLog(log);
  const decodeOrLog = (frames: Buffer[], channel: string): ReturnType<typeof decode> | undefined => {
    try {
      return decode(frames, signer);
    } catch (err) {
      drops.dropped(channel, err instanceof WireError ? err.message : String(err));
      return undefined;
    }
  };

  publish("status", { execution_state: "starting" });
  // Warm the interpreter (it loads TypeScript) only after the first request has been answered, so the
  // client's first kernel_info_reply is not kept waiting; a request that needs it earlier just waits for it.
  let warmed = false;
  const warmUp = (): void => {
    if (warmed || shuttingDown !== undefined) return;
    warmed = true;
    clearTimeout(fallback);
    interpreter().catch((err: unknown) => log(`interpreter failed to load: ${String(err)}`));
  };
  const fallback = setTimeout(warmUp, 1000);
  await channels.receive(
    (frames) => {
      const received = decodeOrLog(frames, "shell");
      if (!received) return;
      dispatcher.receiveShell(received);
      if (!warmed) void PromisePrototypeThen(PromisePrototypeThen(dispatcher.whenIdle(), () => channels.flush()), () => KernelSetImmediate(warmUp));
    },
    (frames) => {
      const received = decodeOrLog(frames, "stdin");
      if (received) dispatcher.receiveStdin(received);
    },
  );
}

/** True when `promise` settles within `ms`. */
async function within(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new KernelPromise<false>((resolve) => (timer = KernelSetTimeout(() => resolve(false), ms)));
  try {
    return await SafePromiseRace([PromisePrototypeThen(promise, () => true), timedOut]);
  } finally {
    KernelClearTimeout(timer);
  }
}

/** Errors that escape user code must not end the kernel; the interpreter may route them to a cell. */
function keepAlive(): void {
  process.on("uncaughtException", (err) => {
    if (process.listenerCount("uncaughtException") === 1) log(`uncaught exception: ${err.stack ?? err.message}`);
  });
  process.on("unhandledRejection", (reason) => {
    if (process.listenerCount("unhandledRejection") === 1) log(`unhandled rejection: ${reason instanceof Error ? reason.stack ?? reason.message : String(reason)}`);
  });
}

/** Starts a kernel for the connection file named on the command line. */
export function startFromCommandLine(argv: readonly string[], createInterpreter: InterpreterFactory, options: KernelOptions = {}): void {
  keepAlive();
  silenceVmLoaderWarning();
  let info: ConnectionInfo;
  try {
    info = readConnectionFile(parseArgs(argv).connectionFile);
  } catch (err) {
    log((err as Error).message);
    process.exit(2);
  }
  runKernel(info, createInterpreter, options).catch((err: unknown) => {
    // A taken port is a known condition with its own message; anything else gets its stack.
    log(`kernel failed: ${err instanceof KernelBindError ? `${err.name}: ${err.message}` : err instanceof Error ? err.stack ?? err.message : String(err)}`);
    // runKernel has refused process.exit for cells; the kernel's own way out is what it keeps for itself.
    guardProcessExits().exit(1);
  });
}

if (require.main === module) {
  // The type checker's process starts from its snapshot now, on the other core, while the sockets bind.
  (require("./checker-client.js") as typeof import("./checker-client.js")).prestartChecker();
  // Loaded only when needed so that `import`ing this module (e.g. with a test interpreter) stays light.
  const load = (options: { cwd: string; kernelHandlesSigint: boolean }): Interpreter =>
    (require("./notebook.js") as typeof import("./notebook.js")).createNotebookInterpreter({
      cwd: options.cwd,
      breakOnSigint: !options.kernelHandlesSigint,
      handleSigint: !options.kernelHandlesSigint,
    });
  startFromCommandLine(process.argv.slice(2), load, { forcedInterrupts: true });
}
