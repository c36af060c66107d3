// A minimal Jupyter client over ZeroMQ for the headless runner: launches a kernel from its kernelspec,
// waits until it is ready, sends requests and routes every IOPub message to one listener. No Python needed.

import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { homedir, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import * as zmq from "zeromq";

import { decode, encode, MessageFactory, Signer, type ConnectionInfo, type JsonObject, type Message } from "../kernel/wire.js";

export type { ConnectionInfo, Header, JsonObject, Message } from "../kernel/wire.js";

export class KernelStartError extends Error {
  override name = "KernelStartError";
}

export class KernelDiedError extends Error {
  override name = "KernelDiedError";
}

export class KernelSpecNotFoundError extends Error {
  override name = "KernelSpecNotFoundError";
}

/** The kernel could not bind a port the client chose: another process took it in between. */
export class KernelPortInUseError extends KernelStartError {
  override name = "KernelPortInUseError";
  constructor(
    message: string,
    /** Which ports, e.g. "port 40123 (shell)". */
    readonly ports: string,
  ) {
    super(message);
  }
}

/** Launches tried, each with freshly chosen ports, when the kernel finds one of them taken. */
export const PORT_ATTEMPTS = 3;

export interface KernelSpec {
  name: string;
  argv: string[];
  display_name: string;
  language: string;
  interrupt_mode: "signal" | "message";
  env: Record<string, string>;
  /** The folder holding kernel.json ({resource_dir} in argv). */
  resourceDir?: string;
}

/** Jupyter's data dirs in its own order of precedence: user, JUPYTER_PATH, environment, system. */
export function jupyterDataDirs(env: NodeJS.ProcessEnv = process.env): string[] {
  const dirs: string[] = [];
  if (env.JUPYTER_DATA_DIR) dirs.push(env.JUPYTER_DATA_DIR);
  dirs.push(join(env.XDG_DATA_HOME ?? join(homedir(), ".local", "share"), "jupyter"));
  for (const p of (env.JUPYTER_PATH ?? "").split(":")) if (p !== "") dirs.push(p);
  dirs.push("/usr/local/share/jupyter", "/usr/share/jupyter");
  return [...new Set(dirs.map((d) => resolve(d)))];
}

/** Reads the kernelspec `name` from the first data dir that has it. */
export function findKernelSpec(name: string, env: NodeJS.ProcessEnv = process.env): KernelSpec | undefined {
  for (const dir of jupyterDataDirs(env)) {
    const resourceDir = join(dir, "kernels", name);
    const file = join(resourceDir, "kernel.json");
    if (!existsSync(file)) continue;
    let raw: JsonObject;
    try {
      raw = JSON.parse(readFileSync(file, "utf8")) as JsonObject;
    } catch (err) {
      throw new KernelSpecNotFoundError(`kernelspec ${file} is not valid JSON (${(err as Error).message}); reinstall the kernel`);
    }
    if (!Array.isArray(raw.argv) || raw.argv.length === 0 || !raw.argv.every((a) => typeof a === "string")) {
      throw new KernelSpecNotFoundError(`kernelspec ${file} has no argv list; reinstall the kernel`);
    }
    return {
      name,
      argv: raw.argv as string[],
      display_name: typeof raw.display_name === "string" ? raw.display_name : name,
      language: typeof raw.language === "string" ? raw.language : "",
      interrupt_mode: raw.interrupt_mode === "message" ? "message" : "signal",
      env: isStringRecord(raw.env) ? raw.env : {},
      resourceDir,
    };
  }
  return undefined;
}

function isStringRecord(v: unknown): v is Record<string, string> {
  return typeof v === "object" && v !== null && !Array.isArray(v) && Object.values(v).every((x) => typeof x === "string");
}

/** n distinct free TCP ports on 127.0.0.1 (held open together so they differ, then released). */
export async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: n }, () => new Promise<import("node:net").Server>((ok, fail) => {
      const s = createServer();
      s.once("error", fail);
      s.listen(0, "127.0.0.1", () => ok(s));
    })),
  );
  const ports = servers.map((s) => (s.address() as import("node:net").AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise<void>((ok) => s.close(() => ok()))));
  return ports;
}

/** One socket's sends go through a promise chain: zeromq 6 throws EBUSY on overlapping sends. */
class SendQueue {
  private tail: Promise<void> = Promise.resolve();
  constructor(private readonly socket: zmq.Dealer) {}
  send(frames: Buffer[]): Promise<void> {
    const next = this.tail.then(() => this.socket.send(frames));
    this.tail = next.catch(() => {});
    return next;
  }
}

export interface LaunchOptions {
  /** Directory the kernel runs in (the notebook's folder). */
  cwd?: string;
  /** Bounded wait for the first kernel_info_reply and IOPub traffic. */
  startTimeoutMs?: number;
  /** Called with the kernel's own stdout/stderr text (its logs). */
  onKernelOutput?: (text: string) => void;
  /** Gives up waiting for the kernel (e.g. Ctrl-C during start-up); the kernel is then killed. */
  signal?: AbortSignal;
}

type Pending = { resolve: (m: Message) => void; reject: (e: Error) => void };

/** A running kernel process plus the client sockets connected to it. */
export class KernelClient {
  readonly info: ConnectionInfo;
  kernelInfo: JsonObject = {};
  private readonly signer: Signer;
  private readonly factory = new MessageFactory(randomUUID(), "streambook-runner");
  private readonly shell = new zmq.Dealer({ linger: 0 });
  private readonly control = new zmq.Dealer({ linger: 0 });
  private readonly iopub = new zmq.Subscriber({ linger: 0 });
  private readonly shellQ = new SendQueue(this.shell);
  private readonly controlQ = new SendQueue(this.control);
  private readonly pending = new Map<string, Pending>();
  private iopubListeners: ((m: Message) => void)[] = [];
  private iopubSeen = 0;
  private closed = false;
  private exitInfo: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  private readonly exited: Promise<void>;
  private readonly logTail: string[] = [];
  private cleanupDir: string;

  private constructor(
    readonly spec: KernelSpec,
    readonly child: ChildProcess,
    info: ConnectionInfo,
    dir: string,
    onKernelOutput?: (text: string) => void,
  ) {
    this.info = info;
    this.cleanupDir = dir;
    if (info.signature_scheme !== "hmac-sha256") throw new KernelStartError(`unsupported signature_scheme ${info.signature_scheme}; use hmac-sha256`);
    this.signer = new Signer(info.key);
    const log = (chunk: Buffer) => {
      const text = chunk.toString("utf8");
      this.logTail.push(text);
      if (this.logTail.length > 200) this.logTail.shift();
      onKernelOutput?.(text);
    };
    child.stdout?.on("data", log);
    child.stderr?.on("data", log);
    this.exited = new Promise((ok) => {
      // A command that cannot be spawned emits "error" and never "exit".
      child.once("error", () => {
        if (child.pid === undefined && this.exitInfo === undefined) {
          this.exitInfo = { code: null, signal: null };
          ok();
        }
      });
      child.once("exit", (code, signal) => {
        this.exitInfo = { code, signal };
        const err = new KernelDiedError(`the kernel exited (${signal ?? `code ${code}`}) while a request was pending${this.logText() ? `; its last output:\n${this.logText()}` : ""}`);
        for (const p of this.pending.values()) p.reject(err);
        this.pending.clear();
        ok();
      });
    });
    const at = (port: number) => `${info.transport}://${info.ip}:${port}`;
    this.shell.connect(at(info.shell_port));
    this.control.connect(at(info.control_port));
    this.iopub.connect(at(info.iopub_port));
    this.iopub.subscribe();
    void this.readReplies(this.shell);
    void this.readReplies(this.control);
    void this.readIopub();
  }

  /**
   * Writes a connection file, spawns the kernelspec's argv and waits until the kernel answers on shell and
   * IOPub. The ports are free when chosen but the kernel binds them later, as with every Jupyter client: if
   * another process took one in between, the kernel fails to bind and is launched again with new ports.
   */
  static async launch(spec: KernelSpec, options: LaunchOptions = {}): Promise<KernelClient> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await KernelClient.launchOnce(spec, options);
      } catch (err) {
        if (!(err instanceof KernelPortInUseError) || attempt >= PORT_ATTEMPTS || options.signal?.aborted) {
          if (err instanceof KernelPortInUseError) err.message += ` (${attempt} launches, each with new ports)`;
          throw err;
        }
        options.onKernelOutput?.(`streambook: ${err.ports} was taken before the kernel could bind it; launching the kernel again with other ports\n`);
      }
    }
  }

  private static async launchOnce(spec: KernelSpec, options: LaunchOptions): Promise<KernelClient> {
    const [shell, iopub, stdin, control, hb] = await freePorts(5);
    const info: ConnectionInfo = {
      transport: "tcp",
      ip: "127.0.0.1",
      key: randomBytes(32).toString("hex"),
      signature_scheme: "hmac-sha256",
      shell_port: shell,
      iopub_port: iopub,
      stdin_port: stdin,
      control_port: control,
      hb_port: hb,
      kernel_name: spec.name,
    };
    const dir = mkdtempSync(join(tmpdir(), "streambook-run-"));
    const file = join(dir, `kernel-${randomUUID()}.json`);
    writeFileSync(file, JSON.stringify(info, null, 2), { mode: 0o600 });
    const argv = spec.argv.map((a) =>
      a.replaceAll("{connection_file}", file).replaceAll("{resource_dir}", spec.resourceDir ?? dir));
    let child: ChildProcess;
    try {
      child = spawn(argv[0], argv.slice(1), {
        cwd: options.cwd,
        env: { ...process.env, ...spec.env, PYDEVD_DISABLE_FILE_VALIDATION: "1", JPY_PARENT_PID: String(process.pid) },
        stdio: ["ignore", "pipe", "pipe"],
        // Its own process group, as jupyter_client does: a terminal's Ctrl-C reaches the runner, which
        // interrupts the kernel the kernelspec's way, instead of signalling the kernel directly.
        detached: process.platform !== "win32",
      });
    } catch (err) {
      rmSync(dir, { recursive: true, force: true });
      throw new KernelStartError(`cannot start kernel ${spec.name} (${argv.join(" ")}): ${(err as Error).message}`);
    }
    const client = new KernelClient(spec, child, info, dir, options.onKernelOutput);
    const spawnError = new Promise<never>((_, fail) => child.once("error", (err) =>
      fail(new KernelStartError(`cannot start kernel ${spec.name} (${argv.join(" ")}): ${err.message}; check the kernelspec's argv`))));
    spawnError.catch(() => {});
    try {
      await Promise.race([client.waitForReady(options.startTimeoutMs ?? 30_000, options.signal), spawnError]);
    } catch (err) {
      await client.kill();
      throw client.portInUse(info) ?? err;
    }
    return client;
  }

  /** If the kernel's output says a port was taken, the error naming it (which port, which channel). */
  private portInUse(info: ConnectionInfo): KernelPortInUseError | undefined {
    const log = this.logText();
    if (!/address already in use|EADDRINUSE/i.test(log)) return undefined;
    const channels = { shell: info.shell_port, iopub: info.iopub_port, stdin: info.stdin_port, control: info.control_port, heartbeat: info.hb_port };
    const taken = Object.entries(channels).filter(([, port]) => new RegExp(`\\b${port}\\b`).test(log));
    const which = taken.length > 0 ? taken.map(([channel, port]) => `port ${port} (${channel})`).join(", ") : `one of ports ${Object.values(channels).join(", ")}`;
    return new KernelPortInUseError(`kernel ${this.spec.name} could not bind ${which} on ${info.ip}: address already in use; its output:\n${log}`, which);
  }

  private logText(): string {
    return this.logTail.join("").split("\n").slice(-20).join("\n").trim();
  }

  get alive(): boolean {
    return this.exitInfo === undefined;
  }

  /** kernel_info until a reply comes back AND IOPub has delivered something (the subscription is live). */
  private async waitForReady(timeoutMs: number, signal?: AbortSignal): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let replied = false;
    while (Date.now() < deadline) {
      if (signal?.aborted) throw new KernelStartError(`start-up of kernel ${this.spec.name} was interrupted`);
      if (!this.alive) {
        throw new KernelStartError(`kernel ${this.spec.name} exited during start-up (${this.exitInfo?.signal ?? `code ${this.exitInfo?.code}`})${this.logText() ? `; its output:\n${this.logText()}` : ""}`);
      }
      const attempt = Math.min(1000, deadline - Date.now());
      try {
        const reply = await this.request("shell", "kernel_info_request", {}, attempt);
        this.kernelInfo = reply.content;
        replied = true;
      } catch (err) {
        if (err instanceof KernelDiedError) continue; // reported at the loop's top with the kernel's output
        if (!(err instanceof RequestTimeoutError)) throw err;
      }
      if (replied) {
        // The reply's busy/idle travel on IOPub; once one arrives, later cells' output will too.
        if (this.iopubSeen === 0) await this.waitIopub(Math.min(500, Math.max(0, deadline - Date.now())));
        if (this.iopubSeen > 0 && (await this.controlAnswers(Math.min(1000, Math.max(1, deadline - Date.now()))))) return;
      }
    }
    throw new KernelStartError(
      `kernel ${this.spec.name} did not become ready within ${Math.round(timeoutMs / 1000)} s${this.logText() ? `; its output:\n${this.logText()}` : ""}; check that ${this.spec.argv[0]} runs`,
    );
  }

  /**
   * Whether the control channel answers kernel_info. Another thread of the kernel binds control and heartbeat,
   * and a port taken there ends the kernel after shell has already answered: launch() must see that failure
   * (and launch again with new ports) rather than the first request after it.
   */
  private async controlAnswers(ms: number): Promise<boolean> {
    try {
      await this.request("control", "kernel_info_request", {}, ms);
      return true;
    } catch (err) {
      if (err instanceof KernelDiedError || err instanceof RequestTimeoutError) return false;
      throw err;
    }
  }

  private waitIopub(ms: number): Promise<void> {
    return new Promise((ok) => {
      const done = () => {
        clearTimeout(timer);
        remove();
        ok();
      };
      const timer = setTimeout(done, ms);
      const remove = this.onIopub(done);
    });
  }

  /** Registers a listener for every IOPub message; returns a function that removes it. */
  onIopub(listener: (m: Message) => void): () => void {
    this.iopubListeners.push(listener);
    return () => {
      this.iopubListeners = this.iopubListeners.filter((l) => l !== listener);
    };
  }

  /** Sends a request; resolves with its reply, or rejects after timeoutMs (the request is then abandoned). */
  send(channel: "shell" | "control", msgType: string, content: JsonObject): { msgId: string; reply: Promise<Message> } {
    const msg = this.factory.make(msgType, content);
    const msgId = msg.header.msg_id;
    const reply = new Promise<Message>((resolve, reject) => {
      if (!this.alive) return reject(new KernelDiedError(`the kernel is not running; cannot send ${msgType}`));
      this.pending.set(msgId, { resolve, reject });
    });
    const queue = channel === "shell" ? this.shellQ : this.controlQ;
    queue.send(encode(msg, [], this.signer)).catch((err: Error) => {
      const p = this.pending.get(msgId);
      this.pending.delete(msgId);
      p?.reject(new KernelDiedError(`could not send ${msgType}: ${err.message}`));
    });
    return { msgId, reply };
  }

  async request(channel: "shell" | "control", msgType: string, content: JsonObject, timeoutMs: number): Promise<Message> {
    const { msgId, reply } = this.send(channel, msgType, content);
    return withTimeout(reply, timeoutMs, () => {
      this.pending.delete(msgId);
      return new RequestTimeoutError(`no ${msgType.replace("_request", "_reply")} within ${timeoutMs} ms`);
    });
  }

  /** Interrupts the running cell the way the kernelspec asks: SIGINT, or interrupt_request on control. */
  async interrupt(): Promise<void> {
    if (!this.alive) return;
    if (this.spec.interrupt_mode === "message") {
      await this.request("control", "interrupt_request", {}, 5000).catch(() => {});
    } else {
      this.child.kill("SIGINT");
    }
  }

  /** shutdown_request, then a bounded wait for the process to exit, then SIGTERM, then SIGKILL. */
  async shutdown(timeoutMs = 5000): Promise<void> {
    if (this.alive) {
      await this.request("control", "shutdown_request", { restart: false }, timeoutMs).catch(() => {});
      if (!(await this.waitExit(timeoutMs))) await this.kill();
    }
    this.close();
  }

  /** Ends the kernel process now (SIGTERM, then SIGKILL), bounded. */
  async kill(): Promise<void> {
    if (this.alive) {
      this.child.kill("SIGTERM");
      if (!(await this.waitExit(2000))) {
        this.child.kill("SIGKILL");
        await this.waitExit(2000);
      }
    }
    this.close();
  }

  private async waitExit(ms: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<boolean>((ok) => (timer = setTimeout(() => ok(false), ms)));
    const result = await Promise.race([this.exited.then(() => true), timedOut]);
    clearTimeout(timer);
    return result;
  }

  /** Closes the sockets and removes the connection file. Safe to call twice. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const s of [this.shell, this.control, this.iopub]) s.close();
    rmSync(this.cleanupDir, { recursive: true, force: true });
  }

  private async readReplies(socket: zmq.Dealer): Promise<void> {
    try {
      for await (const frames of socket) {
        const msg = this.parse(frames);
        if (msg === undefined) continue;
        const parentId = (msg.parent_header as JsonObject).msg_id;
        if (typeof parentId !== "string") continue;
        const p = this.pending.get(parentId);
        if (p !== undefined) {
          this.pending.delete(parentId);
          p.resolve(msg);
        }
      }
    } catch {
      // the socket was closed
    }
  }

  private async readIopub(): Promise<void> {
    try {
      for await (const frames of this.iopub) {
        const msg = this.parse(frames);
        if (msg === undefined) continue;
        this.iopubSeen++;
        for (const l of [...this.iopubListeners]) l(msg);
      }
    } catch {
      // the socket was closed
    }
  }

  /** A malformed or wrongly signed message is never trusted: it is dropped. */
  private parse(frames: Buffer[]): Message | undefined {
    try {
      return decode(frames, this.signer).message;
    } catch {
      return undefined;
    }
  }
}

export class RequestTimeoutError extends Error {
  override name = "RequestTimeoutError";
}

function withTimeout<T>(p: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<T>((_, fail) => {
      timer = setTimeout(() => fail(onTimeout()), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
