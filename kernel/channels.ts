// ZeroMQ sockets of the kernel and the one rule that keeps them lossless: every socket's sends
// go through one ordered queue (zeromq 6 throws EBUSY when a send starts while one is in flight).
import * as zmq from "zeromq";
import { ConnectionInfo, endpoint } from "./wire.js";

/** A port of the connection file could not be bound (usually: another process has it). */
export class KernelBindError extends Error {
  override name = "KernelBindError";
}

/** Binds one channel's socket; a failure names the channel, the port and what to do. */
export async function bindChannel(socket: zmq.Socket, info: ConnectionInfo, port: number, channel: string): Promise<void> {
  const address = endpoint(info, port);
  try {
    await socket.bind(address);
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new KernelBindError(
      `cannot bind the ${channel} channel to ${address} (port ${port}): ${reason}; another process may have taken the port: start the kernel again, which chooses new ports`,
    );
  }
}

type Frames = Buffer[];

interface Sender {
  send(frames: Frames): Promise<void>;
}

/** Sends strictly one after another; a failed send is logged and the queue carries on. */
export class SendQueue {
  private readonly pending: Frames[] = [];
  private running = false;
  private drainedWaiters: (() => void)[] = [];

  constructor(private readonly socket: Sender, private readonly name: string) {}

  send(frames: Frames): void {
    this.pending.push(frames);
    if (!this.running) void this.pump();
  }

  /** Resolves once everything queued so far has been handed to zeromq. */
  drained(): Promise<void> {
    if (!this.running && this.pending.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.drainedWaiters.push(resolve));
  }

  get length(): number {
    return this.pending.length;
  }

  private async pump(): Promise<void> {
    this.running = true;
    while (this.pending.length > 0) {
      const frames = this.pending.shift()!;
      try {
        await this.socket.send(frames);
      } catch (err) {
        process.stderr.write(`streambook: send on ${this.name} failed: ${(err as Error).message}\n`);
      }
    }
    this.running = false;
    const waiters = this.drainedWaiters;
    this.drainedWaiters = [];
    for (const resolve of waiters) resolve();
  }
}

/** The sockets that live on the main thread, next to user code. */
export class MainChannels {
  readonly shell = new zmq.Router({ linger: 0 });
  readonly stdin = new zmq.Router({ linger: 0 });
  // A generous bound: a slow subscriber must not silently lose status messages of a long session.
  readonly iopub = new zmq.Publisher({ linger: 1000, sendHighWaterMark: 100_000 });
  readonly shellQueue = new SendQueue(this.shell, "shell");
  readonly stdinQueue = new SendQueue(this.stdin, "stdin");
  readonly iopubQueue = new SendQueue(this.iopub, "iopub");

  async bind(info: ConnectionInfo): Promise<void> {
    await Promise.all([
      bindChannel(this.shell, info, info.shell_port, "shell"),
      bindChannel(this.stdin, info, info.stdin_port, "stdin"),
      bindChannel(this.iopub, info, info.iopub_port, "iopub"),
    ]);
  }

  async flush(): Promise<void> {
    await Promise.all([this.shellQueue.drained(), this.stdinQueue.drained(), this.iopubQueue.drained()]);
  }

  close(): void {
    for (const socket of [this.shell, this.stdin, this.iopub]) if (!socket.closed) socket.close();
  }
}

/** Calls `handle` for every message until the socket closes. */
export async function receiveLoop(socket: zmq.Router, handle: (frames: Frames) => void): Promise<void> {
  try {
    for await (const frames of socket) handle(frames);
  } catch (err) {
    if (!socket.closed) process.stderr.write(`streambook: receive failed: ${(err as Error).message}\n`);
  }
}

/**
 * Receives without keeping a receive pending while idle: a worker thread that exits with a pending
 * zeromq receive aborts the whole process (measured with zeromq 6.8 on Node 20), so worker sockets poll.
 */
export async function pollingReceiveLoop(
  socket: zmq.Router | zmq.Reply,
  handle: (frames: Frames) => Promise<void> | void,
  isStopped: () => boolean,
): Promise<void> {
  let idleMs = 0;
  while (!isStopped() && !socket.closed) {
    if (socket.readable) {
      idleMs = 0;
      let frames: Frames;
      try {
        frames = await socket.receive();
      } catch (err) {
        if (!socket.closed) process.stderr.write(`streambook: receive failed: ${(err as Error).message}\n`);
        continue;
      }
      await handle(frames);
    } else {
      idleMs = Math.min(idleMs + 1, 10);
      await new Promise((resolve) => setTimeout(resolve, idleMs));
    }
  }
}

