// ZeroMQ sockets of the kernel and the one rule that keeps them lossless: every socket's sends
// go through one ordered queue (zeromq 6 throws EBUSY when a send starts while one is in flight).
import * as zmq from "zeromq";
import { ArrayPrototypePush, ArrayPrototypeShift, healVitalBuiltins, KernelPromise, PromisePrototypeThen, PromiseReject, PromiseResolve, SafePromiseAll } from "./primordials.js";
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
/** Outgoing frames: zeromq copies strings (and buffers of up to 128 bytes) instead of lending them. */
type OutgoingFrames = (Buffer | string)[];

interface Sender {
  send(frames: OutgoingFrames): Promise<void>;
}

/**
 * Sends strictly one after another; a failed send is logged and the queue carries on. After the main
 * thread's code was stopped by force (kernel/interrupts.ts) the continuation of an awaited send may be
 * lost with the microtasks V8 drops: recover() picks the queue up again from the send in flight.
 */
export class SendQueue {
  private readonly pending: OutgoingFrames[] = [];
  private running = false;
  private inflight: Promise<void> | undefined;
  private generation = 0;
  private drainedWaiters: (() => void)[] = [];

  constructor(private readonly socket: Sender, private readonly name: string) {}

  send(frames: OutgoingFrames): void {
    ArrayPrototypePush(this.pending, frames);
    if (!this.running) void this.pump(this.generation);
  }

  /** Resolves once everything queued so far has been handed to zeromq. */
  drained(): Promise<void> {
    if (!this.running && this.pending.length === 0) return PromiseResolve(undefined);
    return new KernelPromise((resolve) => ArrayPrototypePush(this.drainedWaiters, resolve));
  }

  get length(): number {
    return this.pending.length;
  }

  recover(): void {
    if (this.running) void this.pump(++this.generation);
  }

  private async pump(generation: number): Promise<void> {
    this.running = true;
    for (;;) {
      if (this.inflight) {
        let failure: unknown;
        try {
          await this.inflight;
        } catch (err) {
          failure = err;
        }
        if (generation !== this.generation) return; // recover() started another pump
        this.inflight = undefined;
        if (failure !== undefined) process.stderr.write(`streambook: send on ${this.name} failed: ${(failure as Error).message}\n`);
      }
      const frames = ArrayPrototypeShift(this.pending);
      if (frames === undefined) break;
      try {
        this.inflight = this.socket.send(frames);
      } catch (err) {
        this.inflight = PromiseReject(err);
      }
    }
    this.running = false;
    const waiters = this.drainedWaiters;
    this.drainedWaiters = [];
    for (let i = 0; i < waiters.length; i++) waiters[i]();
  }
}

/** Inbound frames larger than this disconnect their sender, unless STREAMBOOK_MAX_MESSAGE_BYTES says otherwise. */
export const DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024 * 1024;

/**
 * The largest inbound frame the kernel accepts (zeromq's ZMQ_MAXMSGSIZE, which libzmq checks per frame
 * and answers by disconnecting the peer). STREAMBOOK_MAX_MESSAGE_BYTES sets it in bytes; -1 means no limit.
 */
export function maxMessageBytes(env: NodeJS.ProcessEnv = process.env, warn: (text: string) => void = () => {}): number {
  const raw = env.STREAMBOOK_MAX_MESSAGE_BYTES;
  if (raw === undefined || raw.trim() === "") return DEFAULT_MAX_MESSAGE_BYTES;
  const value = Number(raw);
  if (Number.isSafeInteger(value) && (value === -1 || value > 0)) return value;
  warn(`STREAMBOOK_MAX_MESSAGE_BYTES=${JSON.stringify(raw)} is not a byte count (a positive integer, or -1 for no limit); using ${DEFAULT_MAX_MESSAGE_BYTES}`);
  return DEFAULT_MAX_MESSAGE_BYTES;
}

/** The sockets that live on the main thread, next to user code. */
export class MainChannels {
  readonly shell: zmq.Router;
  readonly stdin: zmq.Router;
  readonly iopub: zmq.Publisher;
  readonly shellQueue: SendQueue;
  readonly stdinQueue: SendQueue;
  readonly iopubQueue: SendQueue;

  constructor(maxMessageSize = DEFAULT_MAX_MESSAGE_BYTES) {
    this.shell = new zmq.Router({ linger: 0, maxMessageSize });
    this.stdin = new zmq.Router({ linger: 0, maxMessageSize });
    // A generous bound: a slow subscriber must not silently lose status messages of a long session.
    this.iopub = new zmq.Publisher({ linger: 1000, sendHighWaterMark: 100_000, maxMessageSize });
    this.shellQueue = new SendQueue(this.shell, "shell");
    this.stdinQueue = new SendQueue(this.stdin, "stdin");
    this.iopubQueue = new SendQueue(this.iopub, "iopub");
  }

  async bind(info: ConnectionInfo): Promise<void> {
    await Promise.all([
      bindChannel(this.shell, info, info.shell_port, "shell"),
      bindChannel(this.stdin, info, info.stdin_port, "stdin"),
      bindChannel(this.iopub, info, info.iopub_port, "iopub"),
    ]);
  }

  private loops: ReceiveLoop[] = [];

  /** Serves shell and stdin until their sockets close. */
  async receive(shell: (frames: Frames) => void, stdin: (frames: Frames) => void): Promise<void> {
    this.loops = [new ReceiveLoop(this.shell, shell), new ReceiveLoop(this.stdin, stdin)];
    await SafePromiseAll([this.loops[0].done, this.loops[1].done]);
  }

  /** After a forced stop: every loop and queue carries on from its operation in flight. */
  recover(): void {
    for (const loop of this.loops) loop.recover();
    for (const queue of [this.shellQueue, this.stdinQueue, this.iopubQueue]) queue.recover();
  }

  async flush(): Promise<void> {
    await SafePromiseAll([this.shellQueue.drained(), this.stdinQueue.drained(), this.iopubQueue.drained()]);
  }

  close(): void {
    for (const socket of [this.shell, this.stdin, this.iopub]) if (!socket.closed) socket.close();
  }
}

/** A message whose handling throws is logged and dropped: the channel keeps serving the next one. */
function handleSafely(handle: (frames: Frames) => Promise<void> | void, frames: Frames): Promise<void> | void {
  const failed = (err: unknown): void => {
    process.stderr.write(`streambook: dropped a message whose handling failed: ${err instanceof Error ? err.message : String(err)}\n`);
  };
  healVitalBuiltins(); // before anything else, as with every message
  try {
    const result = handle(frames);
    if (result !== undefined) return PromisePrototypeThen(result, undefined, failed);
  } catch (err) {
    failed(err);
  }
}

/**
 * Calls `handle` for every message until the socket closes. Like SendQueue, recover() resumes the loop
 * from the receive in flight when a forced stop may have dropped its continuation.
 */
export class ReceiveLoop {
  private inflight: Promise<Frames> | undefined;
  private generation = 0;
  private ended: (() => void) | undefined;
  readonly done: Promise<void>;

  constructor(private readonly socket: zmq.Router, private readonly handle: (frames: Frames) => void) {
    this.done = new KernelPromise((resolve) => (this.ended = resolve));
    void this.run(this.generation);
  }

  recover(): void {
    if (!this.socket.closed) void this.run(++this.generation);
  }

  private async run(generation: number): Promise<void> {
    while (!this.socket.closed) {
      let frames: Frames;
      try {
        this.inflight ??= this.socket.receive();
        frames = await this.inflight;
      } catch (err) {
        if (generation !== this.generation) return;
        this.inflight = undefined;
        if (!this.socket.closed) process.stderr.write(`streambook: receive failed: ${(err as Error).message}\n`);
        break;
      }
      if (generation !== this.generation) return;
      this.inflight = undefined;
      handleSafely(this.handle, frames);
    }
    this.ended?.();
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
      await handleSafely(handle, frames);
    } else {
      idleMs = Math.min(idleMs + 1, 10);
      await new Promise((resolve) => setTimeout(resolve, idleMs));
    }
  }
}

