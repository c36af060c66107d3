// A real kernel process driven by a raw ZeroMQ client that signs its own messages: for protocol tests
// that send what jupyter_client never would (deep JSON, odd msg_types, huge frames, unsigned bytes).
// ipc transport in a temporary folder by default, so parallel test files never race for TCP ports.
import { spawn, type ChildProcess } from "node:child_process";
import { createHmac, randomBytes, randomUUID } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as zmq from "zeromq";

export const ROOT = path.resolve(__dirname, "..", "..");
export const KERNEL_MAIN = path.join(ROOT, "dist", "kernel", "main.js");
export const JS_KERNEL = path.join(ROOT, "test", "support", "js-kernel.cjs");

export type Channel = "shell" | "control" | "stdin";
export type Json = Record<string, unknown>;

export interface RawMessage {
  header: Json & { msg_id: string; msg_type: string };
  parent_header: Json;
  metadata: Json;
  content: Json;
}

export interface RawKernelOptions {
  /** The kernel entry: dist/kernel/main.js (default) or test/support/js-kernel.cjs. */
  script?: string;
  transport?: "ipc" | "tcp";
  /** Extra environment (e.g. JUPYTER_DATA_DIR). */
  env?: NodeJS.ProcessEnv;
  /** Changes the connection file before it is written (e.g. delete its key). */
  connection?: (info: Json) => void;
  cwd?: string;
  /** Extra node flags before the script. */
  nodeArgs?: string[];
}

const PORTS = ["shell_port", "iopub_port", "stdin_port", "control_port", "hb_port"] as const;

function sign(key: string, parts: Buffer[]): Buffer {
  if (key === "") return Buffer.alloc(0);
  const hmac = createHmac("sha256", key);
  for (const p of parts) hmac.update(p);
  return Buffer.from(hmac.digest("hex"));
}

/** Frames of a signed message; `header` may be a raw string (for JSON the encoder would refuse). */
export function frames(key: string, header: Json | string, content: Json | string = {}, parent: Json = {}): Buffer[] {
  const parts = [typeof header === "string" ? header : JSON.stringify(header), JSON.stringify(parent), "{}", typeof content === "string" ? content : JSON.stringify(content)].map((s) => Buffer.from(s));
  return [Buffer.from("<IDS|MSG>"), sign(key, parts), ...parts];
}

export function header(msgType: string, extra: Json = {}): Json & { msg_id: string; msg_type: string } {
  return { msg_id: randomUUID(), msg_type: msgType, session: "raw-client", username: "test", date: new Date().toISOString(), version: "5.3", ...extra };
}

/** One DEALER per channel plus an iopub subscriber; every parsed message is kept in arrival order. */
export class RawClient {
  readonly shell = new zmq.Dealer({ linger: 0 });
  readonly control = new zmq.Dealer({ linger: 0 });
  readonly stdin = new zmq.Dealer({ linger: 0 });
  readonly iopub = new zmq.Subscriber({ linger: 0 });
  readonly received: { channel: Channel | "iopub"; message: RawMessage }[] = [];
  private readonly tails = new Map<zmq.Dealer, Promise<void>>();
  private readonly waiters = new Set<() => void>();
  private closed = false;

  constructor(readonly endpoint: (port: number) => string, readonly info: Json) {
    this.shell.connect(endpoint(info.shell_port as number));
    this.control.connect(endpoint(info.control_port as number));
    this.stdin.connect(endpoint(info.stdin_port as number));
    this.iopub.connect(endpoint(info.iopub_port as number));
    this.iopub.subscribe();
    for (const [channel, socket] of [["shell", this.shell], ["control", this.control], ["stdin", this.stdin], ["iopub", this.iopub]] as const) {
      void this.read(channel, socket);
    }
  }

  get key(): string {
    return this.info.key as string;
  }

  private async read(channel: Channel | "iopub", socket: zmq.Dealer | zmq.Subscriber): Promise<void> {
    try {
      for await (const raw of socket) {
        const at = raw.findIndex((f) => f.toString() === "<IDS|MSG>");
        if (at < 0) continue;
        const [h, p, m, c] = raw.slice(at + 2, at + 6).map((f) => JSON.parse(f.toString()) as Json);
        this.received.push({ channel, message: { header: h as RawMessage["header"], parent_header: p, metadata: m, content: c } });
        for (const wake of [...this.waiters]) wake();
      }
    } catch {
      // closed
    }
  }

  /** Sends raw frames, one send at a time per socket (zeromq 6 refuses overlapping sends). */
  sendFrames(channel: Channel, parts: Buffer[]): Promise<void> {
    const socket = this[channel];
    const next = (this.tails.get(socket) ?? Promise.resolve()).then(() => socket.send(parts));
    this.tails.set(socket, next.catch(() => {}));
    return next;
  }

  /** Sends a signed request and returns its msg_id. */
  send(channel: Channel, msgType: string, content: Json = {}, extraHeader: Json = {}): string {
    const h = header(msgType, extraHeader);
    void this.sendFrames(channel, frames(this.key, h, content));
    return h.msg_id;
  }

  /** Resolves with the first message matching `match` (already received or arriving within `ms`), else undefined. */
  async waitFor(match: (m: { channel: Channel | "iopub"; message: RawMessage }) => boolean, ms = 20_000): Promise<RawMessage | undefined> {
    const deadline = Date.now() + ms;
    for (;;) {
      const found = this.received.find(match);
      if (found) return found.message;
      const left = deadline - Date.now();
      if (left <= 0 || this.closed) return undefined;
      await new Promise<void>((resolve) => {
        const wake = (): void => {
          clearTimeout(timer);
          this.waiters.delete(wake);
          resolve();
        };
        const timer = setTimeout(wake, left);
        this.waiters.add(wake);
      });
    }
  }

  reply(msgId: string, ms = 20_000): Promise<RawMessage | undefined> {
    return this.waitFor((m) => m.channel !== "iopub" && m.message.parent_header.msg_id === msgId, ms);
  }

  idle(msgId: string, ms = 20_000): Promise<RawMessage | undefined> {
    return this.waitFor((m) => m.channel === "iopub" && m.message.parent_header.msg_id === msgId && m.message.header.msg_type === "status" && m.message.content.execution_state === "idle", ms);
  }

  /** Every iopub message parented to msgId so far. */
  iopubOf(msgId: string): RawMessage[] {
    return this.received.filter((m) => m.channel === "iopub" && m.message.parent_header.msg_id === msgId).map((m) => m.message);
  }

  async request(channel: Channel, msgType: string, content: Json = {}, ms = 20_000): Promise<RawMessage | undefined> {
    return this.reply(this.send(channel, msgType, content), ms);
  }

  /** Runs a cell; resolves with its reply and its iopub messages up to idle. */
  async execute(code: string, ms = 30_000, extra: Json = {}): Promise<{ reply: RawMessage | undefined; iopub: RawMessage[]; text: string }> {
    const id = this.send("shell", "execute_request", { code, silent: false, store_history: true, user_expressions: {}, allow_stdin: false, stop_on_error: false, ...extra });
    const reply = await this.reply(id, ms);
    if (reply) await this.idle(id, ms);
    const iopub = this.iopubOf(id);
    const text = iopub.map((m) => {
      if (m.header.msg_type === "stream") return String(m.content.text);
      if (m.header.msg_type === "execute_result") return String((m.content.data as Json)["text/plain"]);
      if (m.header.msg_type === "error") return `${m.content.ename}: ${m.content.evalue}`;
      return "";
    }).join("");
    return { reply, iopub, text };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const s of [this.shell, this.control, this.stdin, this.iopub]) s.close();
    for (const wake of [...this.waiters]) wake();
  }
}

/** A kernel process with its own temporary folder (connection file, ipc sockets) and a connected RawClient. */
export class RawKernel {
  stderr = "";
  stdout = "";
  exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  client!: RawClient;

  private constructor(readonly dir: string, readonly child: ChildProcess, readonly info: Json, readonly endpoint: (port: number) => string) {
    child.stdout?.on("data", (d: Buffer) => (this.stdout += d.toString()));
    child.stderr?.on("data", (d: Buffer) => (this.stderr += d.toString()));
    this.exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve((this.exit = { code, signal }))));
  }

  static async start(options: RawKernelOptions = {}): Promise<RawKernel> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sb-raw-"));
    const transport = options.transport ?? "ipc";
    const info: Json = { transport, ip: transport === "ipc" ? path.join(dir, "k") : "127.0.0.1", key: randomBytes(16).toString("hex"), signature_scheme: "hmac-sha256" };
    const ports = transport === "ipc" ? [1, 2, 3, 4, 5] : await tcpPorts();
    PORTS.forEach((name, i) => (info[name] = ports[i]));
    options.connection?.(info);
    const file = path.join(dir, "connection.json");
    fs.writeFileSync(file, JSON.stringify(info));
    const child = spawn(process.execPath, [...(options.nodeArgs ?? []), options.script ?? KERNEL_MAIN, "-f", file], {
      cwd: options.cwd ?? dir,
      env: { ...process.env, JUPYTER_DATA_DIR: path.join(dir, "jupyter-data"), ...options.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const endpoint = (port: number): string => (transport === "ipc" ? `ipc://${info.ip as string}-${port}` : `tcp://127.0.0.1:${port}`);
    const kernel = new RawKernel(dir, child, info, endpoint);
    kernel.client = new RawClient(endpoint, { ...info, key: typeof info.key === "string" ? info.key : "" });
    return kernel;
  }

  /** kernel_info on shell until the kernel answers and iopub is live; false if it never did. */
  async ready(ms = 20_000): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline && this.exit === undefined) {
      const id = this.client.send("shell", "kernel_info_request");
      if (await this.client.idle(id, 500)) return true;
    }
    return false;
  }

  /** shutdown_request on control, a bounded wait for exit, then SIGKILL; removes the folder. */
  async stop(ms = 10_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.exit === undefined) this.client.send("control", "shutdown_request", { restart: false });
    const result = await this.waitExit(ms);
    if (result === undefined) {
      this.child.kill("SIGKILL");
      await this.exited;
    }
    this.dispose();
    return this.exit!;
  }

  async waitExit(ms: number): Promise<{ code: number | null; signal: NodeJS.Signals | null } | undefined> {
    let wake!: (value: undefined) => void;
    const timedOut = new Promise<undefined>((resolve) => (wake = resolve));
    const timer = setTimeout(() => wake(undefined), ms);
    const result = await Promise.race([this.exited, timedOut]);
    clearTimeout(timer);
    return result;
  }

  /** Closes the client and removes the kernel's folder; kills a kernel still running. */
  dispose(): void {
    this.client.close();
    if (this.exit === undefined) this.child.kill("SIGKILL");
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

async function tcpPorts(): Promise<number[]> {
  const { createServer } = await import("node:net");
  const servers = await Promise.all(PORTS.map(() => new Promise<import("node:net").Server>((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => resolve(s));
  })));
  const ports = servers.map((s) => (s.address() as import("node:net").AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  return ports;
}
