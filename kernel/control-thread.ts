// The heartbeat and control channel, in a worker thread so they answer while user code keeps the
// main thread busy. Interrupts become SIGINT to our own process; shutdown is done by the main thread.
import { MessagePort, parentPort, workerData } from "node:worker_threads";
import * as zmq from "zeromq";
import { bindChannel, pollingReceiveLoop, SendQueue } from "./channels.js";
import { InterruptEscalator } from "./interrupts.js";
import { ConnectionInfo, decode, DropLog, encode, Header, JsonObject, MessageFactory, ReplayGuard, Signer, WireError } from "./wire.js";

export interface ControlThreadData {
  /** Where this thread's messages to the main thread go (FromControl). */
  toMain: MessagePort;
  connection: ConnectionInfo;
  session: string;
  kernelInfo: JsonObject;
  /** Shared with the main thread's signer: a replay is caught whichever channel it comes back on. */
  replayBuffer: SharedArrayBuffer;
  /** zeromq's maxMessageSize for the control and heartbeat sockets. */
  maxMessageSize: number;
  /** Shared with the main thread's MainThreadInterrupts. */
  interruptBuffer: SharedArrayBuffer;
  /** Stop code spinning on the main thread when an interrupt or a shutdown cannot reach it (kernel/interrupts.ts). */
  forcedInterrupts: boolean;
}

/** Worker -> main thread. */
export type FromControl =
  | { kind: "ready" }
  | { kind: "iopub"; msgType: string; content: JsonObject; parent: Header }
  | { kind: "shutdown"; restart: boolean; parent: Header }
  /** Code on the main thread was stopped by force: the main thread recovers. */
  | { kind: "stopped" };

/** Main thread -> worker. */
export type ToControl = { kind: "shutdown-reply"; restart: boolean } | { kind: "close" };

function log(text: string): void {
  process.stderr.write(`streambook control: ${text}\n`);
}

/**
 * zeromq lends a Buffer of more than 128 bytes to its I/O thread, which hands it back to this thread's
 * addon instance once sent, possibly after this thread is gone: that corrupted the heap at shutdown
 * ("corrupted double-linked list"). Strings and small buffers are copied, so this thread sends only those.
 */
const MAX_LENT_BYTES = 128;

function copiedFrames(frames: Buffer[], identities: number): (Buffer | string)[] {
  return frames.map((frame, i) => (i < identities ? frame : frame.toString("utf8")));
}

async function main(): Promise<void> {
  const port = parentPort;
  if (port === null) throw new Error("control-thread.js must run as a worker thread");
  const data = workerData as ControlThreadData;
  const info = data.connection;
  const signer = new Signer(info.key, info.signature_scheme, new ReplayGuard(data.replayBuffer));
  const factory = new MessageFactory(data.session);
  const post = (message: FromControl): void => data.toMain.postMessage(message);

  const hb = new zmq.Reply({ linger: 0, maxMessageSize: data.maxMessageSize });
  // Lingers so that a shutdown_reply sent just before closing still goes out.
  const control = new zmq.Router({ linger: 1000, maxMessageSize: data.maxMessageSize });
  await Promise.all([bindChannel(hb, info, info.hb_port, "heartbeat"), bindChannel(control, info, info.control_port, "control")]);
  const controlQueue = new SendQueue(control, "control");
  let stopped = false;
  let pendingShutdown: { identities: Buffer[]; parent: Header } | undefined;
  const escalator = data.forcedInterrupts
    ? new InterruptEscalator({ buffer: data.interruptBuffer, log, stopped: () => post({ kind: "stopped" }) })
    : undefined;
  // SIGINT (signal mode, or our own below) also reaches this thread, however busy the main thread is.
  const watchingSigint = escalator?.watchSigint() ?? false;

  const reply = (identities: Buffer[], parent: Header, msgType: string, content: JsonObject): void => {
    // Identities are at most MAX_LENT_BYTES long (checked on receipt); the rest is UTF-8 text.
    controlQueue.send(copiedFrames(encode(factory.make(msgType, content, parent), identities, signer), identities.length));
  };
  const status = (parent: Header, state: "busy" | "idle"): void =>
    post({ kind: "iopub", msgType: "status", content: { execution_state: state }, parent });

  const close = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    escalator?.close();
    await controlQueue.drained();
    hb.close();
    control.close();
    // Nothing is left to keep this thread alive: it ends, and the main thread waits for that.
    data.toMain.close();
    port.close();
  };

  port.on("message", (message: ToControl) => {
    if (message.kind === "shutdown-reply") {
      if (pendingShutdown) {
        reply(pendingShutdown.identities, pendingShutdown.parent, "shutdown_reply", { status: "ok", restart: message.restart });
        status(pendingShutdown.parent, "idle");
      }
      void close();
    } else if (message.kind === "close") {
      void close();
    }
  });

  const drops = new DropLog(log);
  const handleControl = (frames: Buffer[]): void => {
    let received;
    try {
      received = decode(frames, signer);
    } catch (err) {
      drops.dropped("control", err instanceof WireError ? err.message : String(err));
      return;
    }
    const { identities, message } = received;
    if (identities.some((id) => id.length > MAX_LENT_BYTES)) {
      drops.dropped("control", `a routing id longer than ${MAX_LENT_BYTES} bytes`);
      return;
    }
    const header = message.header;
    switch (header.msg_type) {
      case "interrupt_request":
        status(header, "busy");
        // The main thread's SIGINT handler abandons a pending await; code that keeps that thread busy is
        // stopped by the escalator, which hears the same signal.
        process.kill(process.pid, "SIGINT");
        if (escalator && !watchingSigint) escalator.interrupted();
        reply(identities, header, "interrupt_reply", { status: "ok" });
        status(header, "idle");
        break;
      case "kernel_info_request":
        status(header, "busy");
        reply(identities, header, "kernel_info_reply", data.kernelInfo);
        status(header, "idle");
        break;
      case "shutdown_request":
        status(header, "busy");
        pendingShutdown = { identities, parent: header };
        post({ kind: "shutdown", restart: message.content.restart === true, parent: header });
        // Code keeping the main thread busy would keep it from ever seeing the request: stop it (or,
        // without forced stops, interrupt it and hope it yields).
        if (escalator) escalator.shutdownRequested();
        else process.kill(process.pid, "SIGINT");
        break;
      default:
        drops.dropped("control", `unknown msg_type ${JSON.stringify(header.msg_type)}`);
    }
  };

  post({ kind: "ready" });
  await Promise.all([
    pollingReceiveLoop(hb, async (frames) => {
      // A heartbeat is a short ping (jupyter_client sends "ping"): a long one is not echoed (see MAX_LENT_BYTES).
      if (frames.some((frame) => frame.length > MAX_LENT_BYTES)) drops.dropped("heartbeat", `a frame longer than ${MAX_LENT_BYTES} bytes`);
      else await hb.send(frames);
    }, () => stopped),
    pollingReceiveLoop(control, handleControl, () => stopped),
  ]);
}

main().catch((err: unknown) => {
  log(`failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
  process.exitCode = 1;
});
