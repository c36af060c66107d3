// ZeroMQ with the `zeromq` package the kernel already uses: zeromqStream() is a SUB or PULL receiver,
// saveToZeroMQ() a PUB or PUSH sink. ZeroMQ has no acknowledgements: see the README for the guarantee.
import { isUtf8 } from "node:buffer";
import type * as zmq from "zeromq";
import type { StreamingContext } from "../context.js";
import type { DStream } from "../dstream.js";
import { StreamingError } from "../errors.js";
import { Receiver, type ReceiverInputDStream, type ReceiverStreamOptions } from "./receiver.js";

/** A ZeroMQ source or sink could not do its job (the message says which endpoint and why). */
export class ZeroMQError extends StreamingError {}

/** One ZeroMQ message. A multipart message's first frame is its topic; `payload` is its last frame. */
export interface ZeroMQRecord<T extends string | Buffer = string> {
  /** The first frame of a message of two or more frames (a PUB topic), else undefined. */
  topic: string | undefined;
  payload: T;
  /** When it was received (milliseconds since the epoch). */
  time: number;
}

export interface ZeroMQStreamOptions extends Omit<ReceiverStreamOptions<ZeroMQRecord<string | Buffer>>, "blockStore"> {
  /** An endpoint: "tcp://127.0.0.1:5555", "ipc:///tmp/feed". */
  address: string;
  /** "sub" (default) receives what a PUB publishes, "pull" what PUSH sockets send. */
  type?: "sub" | "pull";
  /** SUB: topic prefixes to subscribe to (default: everything). */
  topics?: string[];
  /** Bind to the address instead of connecting to it (default false). */
  bind?: boolean;
  /** `payload` as a Buffer instead of a UTF-8 string. */
  bytes?: boolean;
}

function zeromq(): typeof import("zeromq") {
  return require("zeromq") as typeof import("zeromq");
}

/** The receiver behind zeromqStream: reads one message at a time and stores it before reading the next. */
export class ZeroMQReceiver<T extends string | Buffer = string> extends Receiver<ZeroMQRecord<T>> {
  private socket: zmq.Subscriber | zmq.Pull | undefined;
  /** Messages skipped (malformed UTF-8). */
  skipped = 0;

  constructor(private readonly options: ZeroMQStreamOptions) {
    super();
    if (!options.address) throw new ZeroMQError('zeromqStream: give an `address`, e.g. "tcp://127.0.0.1:5555"');
    this.name = `zeromq ${options.type ?? "sub"} ${options.address}`;
  }

  async onStart(): Promise<void> {
    const z = zeromq();
    const o = this.options;
    const socket = (o.type ?? "sub") === "pull" ? new z.Pull() : new z.Subscriber();
    this.socket = socket;
    try {
      if (o.bind) await socket.bind(o.address);
      else socket.connect(o.address);
    } catch (e) {
      socket.close();
      this.socket = undefined;
      throw new ZeroMQError(`zeromqStream: cannot ${o.bind ? "bind to" : "connect to"} ${o.address}: ${(e as Error).message}`, { cause: e });
    }
    if (socket instanceof z.Subscriber) {
      if (o.topics && o.topics.length > 0) socket.subscribe(...o.topics);
      else socket.subscribe();
    }
    void this.read(socket);
  }

  private async read(socket: zmq.Subscriber | zmq.Pull): Promise<void> {
    try {
      for await (const frames of socket) {
        const last = frames[frames.length - 1] ?? Buffer.alloc(0);
        if (!this.options.bytes && !isUtf8(last)) {
          this.skipped++;
          if (this.skipped <= 10 || this.skipped % 1000 === 0) this.reportError(`zeromqStream skipped a message that is not valid UTF-8 (${this.skipped} so far); read the stream with { bytes: true } to get Buffers`);
          continue;
        }
        const record: ZeroMQRecord<T> = {
          topic: frames.length >= 2 ? frames[0]!.toString("utf8") : undefined,
          payload: (this.options.bytes ? last : last.toString("utf8")) as T,
          time: Date.now(),
        };
        // Awaiting the store holds the next read: ZeroMQ queues (up to its high-water mark) meanwhile.
        await this.storeReliably([record]);
      }
    } catch (e) {
      if (this.socket === socket && !this.isStopped()) this.restart(`zeromqStream ${this.options.address}: ${(e as Error).message}`, e, 500);
    }
  }

  onStop(): void {
    const s = this.socket;
    this.socket = undefined;
    s?.close();
  }
}

/** A DStream of the messages a SUB or PULL socket receives (a receiver: see the README's guarantees). */
export function zeromqStream(ssc: StreamingContext, options: ZeroMQStreamOptions & { bytes: true }): ReceiverInputDStream<ZeroMQRecord<Buffer>>;
export function zeromqStream(ssc: StreamingContext, options: ZeroMQStreamOptions): ReceiverInputDStream<ZeroMQRecord<string>>;
export function zeromqStream(ssc: StreamingContext, options: ZeroMQStreamOptions): ReceiverInputDStream<ZeroMQRecord<string>> | ReceiverInputDStream<ZeroMQRecord<Buffer>> {
  const { address: _a, type: _t, topics: _topics, bind: _b, bytes: _bytes, ...streamOptions } = options;
  return options.bytes
    ? ssc.receiverStream(new ZeroMQReceiver<Buffer>(options), streamOptions as ReceiverStreamOptions<ZeroMQRecord<Buffer>>)
    : ssc.receiverStream(new ZeroMQReceiver<string>(options), streamOptions as ReceiverStreamOptions<ZeroMQRecord<string>>);
}

export interface ZeroMQSinkOptions<T> {
  address: string;
  /** "pub" (default) publishes to SUB sockets, "push" sends to PULL sockets (blocking when none is there). */
  type?: "pub" | "push";
  /** Bind to the address (default for "pub") or connect to it (default for "push"). */
  bind?: boolean;
  /** Frames sent before each record's payload (a PUB topic). */
  topic?: string | ((record: T) => string);
  /** A record's payload (default: strings as they are, anything else as JSON). */
  toPayload?: (record: T) => string | Buffer;
}

/**
 * Sends each batch of `dstream` to a ZeroMQ socket, one record per message, in order, one send at a time
 * (a zeromq socket refuses a send while the previous one is unfinished). A batch generated again after a
 * crash is sent again: ZeroMQ has no de-duplication.
 */
export function saveToZeroMQ<T>(dstream: DStream<T>, options: ZeroMQSinkOptions<T>): void {
  const type = options.type ?? "pub";
  const bind = options.bind ?? type === "pub";
  const toPayload = options.toPayload ?? ((r: T) => (typeof r === "string" || Buffer.isBuffer(r) ? r : (JSON.stringify(r) ?? String(r))));
  let socket: zmq.Publisher | zmq.Push | undefined;
  let opening: Promise<zmq.Publisher | zmq.Push> | undefined;
  const open = (): Promise<zmq.Publisher | zmq.Push> => {
    if (socket) return Promise.resolve(socket);
    opening ??= (async () => {
      const z = zeromq();
      const s = type === "push" ? new z.Push() : new z.Publisher();
      try {
        if (bind) await s.bind(options.address);
        else s.connect(options.address);
      } catch (e) {
        s.close();
        throw new ZeroMQError(`saveToZeroMQ: cannot ${bind ? "bind to" : "connect to"} ${options.address}: ${(e as Error).message}`, { cause: e });
      }
      socket = s;
      return s;
    })().finally(() => (opening = undefined));
    return opening;
  };
  dstream.ssc.addStreamingListener({
    onStreamingStopped: () => {
      socket?.close();
      socket = undefined;
    },
  });
  dstream.foreachRDD(
    async (rdd) => {
      const s = await open();
      for (const r of rdd.collect()) {
        const payload = toPayload(r);
        const topic = typeof options.topic === "function" ? options.topic(r) : options.topic;
        await s.send(topic === undefined ? payload : [topic, payload]);
      }
    },
    { name: `saveToZeroMQ(${options.address})` },
  );
}
