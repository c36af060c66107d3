// The heartbeat and control channel, in a worker thread so they answer while user code keeps the
// main thread busy. Interrupts become SIGINT to our own process; shutdown is done by the main thread.
import { parentPort, workerData } from "node:worker_threads";
import * as zmq from "zeromq";
import { bindChannel, pollingReceiveLoop, SendQueue } from "./channels.js";
import { ConnectionInfo, decode, DropLog, encode, Header, JsonObject, MessageFactory, ReplayGuard, Signer, WireError } from "./wire.js";

export interface ControlThreadData {
  connection: ConnectionInfo;
  session: string;
  kernelInfo: JsonObject;
  /** Shared with the main thread's signer: a replay is caught whichever channel it comes back on. */
  replayBuffer: SharedArrayBuffer;
}

/** Worker -> main thread. */
export type FromControl =
  | { kind: "ready" }
  | { kind: "iopub"; msgType: string; content: JsonObject; parent: Header }
  | { kind: "shutdown"; restart: boolean; parent: Header }
  | { kind: "closed" };

/** Main thread -> worker. */
export type ToControl = { kind: "shutdown-reply"; restart: boolean } | { kind: "close" };

function log(text: string): void {
  process.stderr.write(`streambook control: ${text}\n`);
}

async function main(): Promise<void> {
  const port = parentPort;
  if (port === null) throw new Error("control-thread.js must run as a worker thread");
  const data = workerData as ControlThreadData;
  const info = data.connection;
  const signer = new Signer(info.key, info.signature_scheme, new ReplayGuard(data.replayBuffer));
  const factory = new MessageFactory(data.session);
  const post = (message: FromControl): void => port.postMessage(message);

  const hb = new zmq.Reply({ linger: 0 });
  const control = new zmq.Router({ linger: 0 });
  await Promise.all([bindChannel(hb, info, info.hb_port, "heartbeat"), bindChannel(control, info, info.control_port, "control")]);
  const controlQueue = new SendQueue(control, "control");
  let stopped = false;
  let pendingShutdown: { identities: Buffer[]; parent: Header } | undefined;

  const reply = (identities: Buffer[], parent: Header, msgType: string, content: JsonObject): void => {
    controlQueue.send(encode(factory.make(msgType, content, parent), identities, signer));
  };
  const status = (parent: Header, state: "busy" | "idle"): void =>
    post({ kind: "iopub", msgType: "status", content: { execution_state: state }, parent });

  const close = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await controlQueue.drained();
    hb.close();
    control.close();
    post({ kind: "closed" });
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
    const header = message.header;
    switch (header.msg_type) {
      case "interrupt_request":
        status(header, "busy");
        // The interpreter's SIGINT handling stops a synchronous loop (breakOnSigint) or abandons an await.
        process.kill(process.pid, "SIGINT");
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
        // A cell spinning on the main thread would keep it from ever seeing the request: interrupt it.
        process.kill(process.pid, "SIGINT");
        break;
      default:
        drops.dropped("control", `unknown msg_type ${JSON.stringify(header.msg_type)}`);
    }
  };

  post({ kind: "ready" });
  await Promise.all([
    pollingReceiveLoop(hb, async (frames) => {
      await hb.send(frames);
    }, () => stopped),
    pollingReceiveLoop(control, handleControl, () => stopped),
  ]);
}

main().catch((err: unknown) => {
  log(`failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
  process.exitCode = 1;
});
