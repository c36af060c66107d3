// Kernel entry: `node dist/kernel/main.js -f connection.json`. Binds the sockets, starts the
// heartbeat/control thread, and loads the interpreter in the background so kernel_info is quick.
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { Worker } from "node:worker_threads";
import { MainChannels, receiveLoop } from "./channels.js";
import type { ControlThreadData, FromControl, ToControl } from "./control-thread.js";
import { Dispatcher, KernelTransport } from "./dispatch.js";
import type { Interpreter } from "./interpreter.js";
import { onShutdownRequest } from "./lifecycle.js";
import { ConnectionInfo, decode, DropLog, encode, Header, JsonObject, MessageFactory, PROTOCOL_VERSION, readConnectionFile, Signer, WireError } from "./wire.js";

// SIGINT is how interrupts arrive (signal mode from the client, message mode from the control
// thread); until the interpreter installs its handler, an interrupt must not kill the kernel.
const ignoreSigint = (): void => {};
process.on("SIGINT", ignoreSigint);

export type InterpreterFactory = (options: { cwd: string }) => Interpreter;

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
export async function runKernel(info: ConnectionInfo, createInterpreter: InterpreterFactory): Promise<void> {
  const signer = new Signer(info.key, info.signature_scheme);
  const factory = new MessageFactory();
  const channels = new MainChannels();
  await channels.bind(info);
  const info5 = kernelInfo();

  const publish = (msgType: string, content: JsonObject, parent?: Header | JsonObject, metadata?: JsonObject): void => {
    const message = factory.make(msgType, content, parent, metadata);
    channels.iopubQueue.send(encode(message, [Buffer.from(`kernel.${factory.session}.${msgType}`)], signer));
  };

  let interpreterPromise: Promise<Interpreter> | undefined;
  let interpreterInstance: Interpreter | undefined;
  const interpreter = (): Promise<Interpreter> => {
    interpreterPromise ??= new Promise<Interpreter>((resolve) => {
      interpreterInstance = createInterpreter({ cwd: process.cwd() });
      resolve(interpreterInstance);
    });
    return interpreterPromise;
  };

  // Heartbeat and control live in a worker thread: they answer while a cell keeps this thread busy.
  const workerData: ControlThreadData = { connection: info, session: factory.session, kernelInfo: info5, replayBuffer: signer.replays.buffer };
  const worker = new Worker(path.join(__dirname, "control-thread.js"), { workerData });
  let workerClosed = false;
  const workerClosedWaiters: (() => void)[] = [];
  const markWorkerClosed = (): void => {
    workerClosed = true;
    for (const resolve of workerClosedWaiters.splice(0)) resolve();
  };
  worker.on("exit", markWorkerClosed);
  worker.on("error", (err) => log(`control thread failed: ${err.stack ?? err.message}`));

  let shuttingDown: Promise<void> | undefined;
  const shutdown = (restart: boolean, viaControl = false): Promise<void> => {
    shuttingDown ??= (async () => {
      dispatcher.cancelInputs();
      if (interpreterInstance !== undefined) {
        // Bounded: clients kill a kernel that takes more than a few seconds to go.
        let timer: NodeJS.Timeout | undefined;
        const limit = new Promise<void>((resolve) => {
          timer = setTimeout(() => {
            log("interpreter shutdown took over 3 s; exiting anyway");
            resolve();
          }, 3000);
        });
        try {
          await Promise.race([interpreterInstance.shutdown(restart), limit]);
        } catch (err) {
          log(`interpreter shutdown failed: ${(err as Error).message}`);
        } finally {
          clearTimeout(timer);
        }
      }
      await channels.flush();
      if (!workerClosed) {
        const closed = new Promise<void>((resolve) => workerClosedWaiters.push(resolve));
        const message: ToControl = viaControl ? { kind: "shutdown-reply", restart } : { kind: "close" };
        worker.postMessage(message);
        await closed;
      }
      await channels.flush();
      channels.close();
      process.exit(0);
    })();
    return shuttingDown;
  };
  onShutdownRequest((restart) => shutdown(restart));

  worker.on("message", (message: FromControl) => {
    switch (message.kind) {
      case "iopub":
        publish(message.msgType, message.content, message.parent);
        break;
      case "shutdown":
        publish("shutdown_reply", { status: "ok", restart: message.restart }, message.parent);
        void shutdown(message.restart, true);
        break;
      case "closed":
        markWorkerClosed();
        break;
      case "ready":
        break;
    }
  });

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
  const dispatcher = new Dispatcher(transport, interpreter, info5);

  process.on("SIGTERM", () => void shutdown(false));
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
    if (warmed) return;
    warmed = true;
    clearTimeout(fallback);
    interpreter().catch((err: unknown) => log(`interpreter failed to load: ${String(err)}`));
  };
  const fallback = setTimeout(warmUp, 1000);
  await Promise.all([
    receiveLoop(channels.shell, (frames) => {
      const received = decodeOrLog(frames, "shell");
      if (!received) return;
      dispatcher.receiveShell(received);
      if (!warmed) void dispatcher.whenIdle().then(() => channels.flush()).then(() => setImmediate(warmUp));
    }),
    receiveLoop(channels.stdin, (frames) => {
      const received = decodeOrLog(frames, "stdin");
      if (received) dispatcher.receiveStdin(received);
    }),
  ]);
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
export function startFromCommandLine(argv: readonly string[], createInterpreter: InterpreterFactory): void {
  keepAlive();
  let info: ConnectionInfo;
  try {
    info = readConnectionFile(parseArgs(argv).connectionFile);
  } catch (err) {
    log((err as Error).message);
    process.exit(2);
  }
  runKernel(info, createInterpreter).catch((err: unknown) => {
    log(`kernel failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
    process.exit(1);
  });
}

if (require.main === module) {
  // The type checker's process starts from its snapshot now, on the other core, while the sockets bind.
  (require("./checker-client.js") as typeof import("./checker-client.js")).prestartChecker();
  // Loaded only when needed so that `import`ing this module (e.g. with a test interpreter) stays light.
  const load = (options: { cwd: string }): Interpreter =>
    (require("./notebook.js") as typeof import("./notebook.js")).createNotebookInterpreter(options);
  startFromCommandLine(process.argv.slice(2), load);
}
