// socketTextStream: a TCP client receiver that turns the bytes it reads into UTF-8 text lines, and
// reconnects with a bounded backoff when the server is not there yet or goes away.

import * as net from "node:net";
import type { StreamingContext } from "../context.js";
import { IllegalArgumentError } from "../errors.js";
import { LineSplitter } from "./lines.js";
import { Receiver, ReceiverInputDStream, type ReceiverStreamOptions } from "./receiver.js";

export interface SocketStreamOptions extends ReceiverStreamOptions<string> {
  /** First delay before reconnecting (default 100 ms); it doubles after each failure in a row. */
  reconnectDelayMs?: number;
  /** Upper bound of the reconnect delay (default 2000 ms, Spark's receiver restart delay). */
  maxReconnectDelayMs?: number;
  /** A connection attempt that has not succeeded after this long fails and is retried (default 10000 ms). */
  connectTimeoutMs?: number;
  /**
   * Lines longer than this many characters are skipped and reported as dropped records, so one line
   * with no newline cannot take all memory (default 64 Mi characters).
   */
  maxLineLength?: number;
}

export const DEFAULT_MAX_LINE_LENGTH = 64 * 1024 * 1024;

/**
 * Reads lines from host:port. Lines end at \n or \r\n; a line cut across chunks is joined, and a last
 * line without a newline is kept when the connection ends. A line past maxLineLength is skipped and
 * reported (onRecordsDropped, and under the cell in a notebook). Every failure (refused, reset, closed by
 * the server) becomes a restart: reported through onReceiverError, then a new connection after the backoff.
 * While a rate limit holds records back, reading pauses so that TCP pushes back on the sender.
 */
export class SocketReceiver extends Receiver<string> {
  private socket: net.Socket | undefined;
  private paused = false;
  private failures = 0;
  private readonly initialDelay: number;
  private readonly maxDelay: number;
  private readonly connectTimeout: number;
  private readonly maxLineLength: number;

  constructor(
    readonly host: string,
    readonly port: number,
    options: Pick<SocketStreamOptions, "reconnectDelayMs" | "maxReconnectDelayMs" | "connectTimeoutMs" | "maxLineLength"> = {},
  ) {
    super();
    this.name = `socket ${host}:${port}`;
    this.initialDelay = options.reconnectDelayMs ?? 100;
    this.maxDelay = Math.max(this.initialDelay, options.maxReconnectDelayMs ?? 2000);
    this.connectTimeout = options.connectTimeoutMs ?? 10_000;
    this.maxLineLength = options.maxLineLength ?? DEFAULT_MAX_LINE_LENGTH;
    if (!(this.maxLineLength >= 1)) throw new IllegalArgumentError(`socketTextStream: maxLineLength must be >= 1 character, got ${this.maxLineLength}`);
  }

  onStart(): void {
    const socket = net.connect({ host: this.host, port: this.port });
    const max = this.maxLineLength;
    const splitter = new LineSplitter(max, (length) =>
      this.reportDropped(1, `a line of ${length} characters from ${this.host}:${this.port} is longer than maxLineLength (${max}); it was skipped`),
    );
    this.socket = socket;
    this.paused = false;
    let connected = false;
    let finished = false;
    const where = `${this.host}:${this.port}`;
    const finish = (reason: string, error?: unknown) => {
      if (finished || this.socket !== socket) return;
      finished = true;
      const rest = splitter.end();
      if (rest.length > 0) this.store(rest);
      const delay = Math.min(this.maxDelay, this.initialDelay * 2 ** Math.min(this.failures, 30));
      this.failures++;
      this.restart(reason, error, delay);
    };
    // Without it, a host that drops packets leaves the attempt hanging for the OS's minutes-long timeout.
    socket.setTimeout(this.connectTimeout);
    socket.on("timeout", () => finish(`Timed out connecting to ${where} after ${this.connectTimeout} ms`));
    socket.on("connect", () => {
      connected = true;
      this.failures = 0;
      socket.setTimeout(0);
    });
    socket.on("data", (chunk: Buffer) => {
      if (this.socket !== socket) return;
      const lines = splitter.push(chunk);
      if (lines.length > 0) this.store(lines);
      if (!this.paused && this.isBufferFull()) {
        this.paused = true;
        socket.pause();
      }
    });
    socket.on("end", () => finish(`Socket data stream from ${where} had no more data`));
    socket.on("error", (e) => finish(connected ? `Error receiving data from ${where}` : `Error connecting to ${where}`, e));
    socket.on("close", () => finish(`Connection to ${where} closed`));
  }

  /** True while reading is paused because a rate limit holds several batches back. */
  get isPaused(): boolean {
    return this.paused;
  }

  onStop(): void {
    const socket = this.socket;
    this.socket = undefined;
    this.paused = false;
    socket?.destroy();
  }

  override onBufferDrained(): void {
    if (this.paused && this.socket) {
      this.paused = false;
      this.socket.resume();
    }
  }
}

/** ssc.socketTextStream(host, port): a DStream<string> of the lines a TCP server sends. */
export class SocketInputDStream extends ReceiverInputDStream<string> {
  constructor(ssc: StreamingContext, host: string, port: number, options: SocketStreamOptions = {}) {
    super(ssc, new SocketReceiver(host, port, options), options);
  }
}
