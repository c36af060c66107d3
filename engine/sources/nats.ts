// NATS JetStream with @nats-io/transport-node and @nats-io/jetstream (loaded on first use). natsStream()
// reads a stream directly, as kafkaStream reads Kafka: each batch is a range of stream sequences, logged
// before its output runs and read again exactly after a crash. saveToNats() publishes with a Nats-Msg-Id
// made of the batch time and the record's index, so JetStream drops what a replayed batch publishes again.
import { isUtf8 } from "node:buffer";
import type { NatsConnection, MsgHdrs } from "@nats-io/transport-node";
import type { Consumer, ConsumerMessages, JetStreamClient, JetStreamManager, JsMsg } from "@nats-io/jetstream";
import type { StreamingContext } from "../context.js";
import type { DStream } from "../dstream.js";
import { DirectLogInputDStream, PartitionedSourceError, type DirectLogOptions } from "./partitioned.js";

export interface NatsConnectionOptions {
  /** "host:port", a comma-separated list, or an array. */
  servers: string | string[];
  /** Further connection settings (user, pass, token, tls, name). */
  natsOptions?: Record<string, unknown>;
}

/** A NATS source or sink could not do its job (the message says which stream and why). */
export class NatsError extends PartitionedSourceError {}

/** The JetStream stream named (or a stream capturing the sink's subject) does not exist. */
export class NatsStreamNotFoundError extends NatsError {}

function serverList(servers: string | string[]): string[] {
  const list = (Array.isArray(servers) ? servers : servers.split(",")).map((s) => s.trim()).filter((s) => s.length > 0);
  if (list.length === 0) throw new NatsError('give at least one server, e.g. { servers: "127.0.0.1:4222" }');
  return list;
}

async function connectNats(options: NatsConnectionOptions): Promise<NatsConnection> {
  const { connect } = require("@nats-io/transport-node") as typeof import("@nats-io/transport-node");
  return connect({
    // Reconnect for ever, quickly: a restarting server is ridden out; our loops report what fails meanwhile.
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    timeout: 2000,
    ...options.natsOptions,
    servers: serverList(options.servers),
  });
}

function jetstreamModule(): typeof import("@nats-io/jetstream") {
  return require("@nats-io/jetstream") as typeof import("@nats-io/jetstream");
}

function isStreamNotFound(e: unknown): boolean {
  return e instanceof Error && (e.name === "StreamNotFoundError" || /stream not found/i.test(e.message));
}

/** One JetStream message. `data` is a UTF-8 string, or a Uint8Array when the stream was asked for `bytes`. */
export interface NatsRecord<T extends string | Uint8Array = string> {
  subject: string;
  /** The stream sequence. */
  seq: number;
  /** Milliseconds since the epoch, when the server stored it. */
  timestamp: number;
  data: T;
  /** Header values (a header repeated under one name keeps its first value). */
  headers: Record<string, string>;
}

export interface NatsStreamOptions extends NatsConnectionOptions, DirectLogOptions {
  /** The JetStream stream to read; its partition id is this name. */
  stream: string;
  /** Only messages on these subjects (wildcards allowed); default: all of the stream's. */
  subjects?: string | string[];
  /** Where to start without a checkpoint: "first", "new" (default: what is stored from now on), or a stream sequence. */
  start?: "first" | "new" | number;
  /** `data` as a Uint8Array instead of a UTF-8 string. */
  bytes?: boolean;
  /** Messages larger than this are reported and skipped (default 1 MiB, the server's default max_payload). */
  maxMessageBytes?: number;
}

/**
 * A JetStream stream as a direct stream: one partition (the stream), read with an ordered consumer from
 * explicit sequences that live in checkpoints and in the batch-input log. Nothing is acknowledged.
 */
export class NatsInputDStream<T extends string | Uint8Array = string> extends DirectLogInputDStream<NatsRecord<T>> {
  readonly options: NatsStreamOptions;
  private nc: NatsConnection | undefined;
  private js: JetStreamClient | undefined;
  private jsm: JetStreamManager | undefined;
  private messages: ConsumerMessages | undefined;
  private readonly maxMessageBytes: number;
  private readonly filters: string[];

  constructor(ssc: StreamingContext, options: NatsStreamOptions) {
    super(ssc, options);
    serverList(options.servers);
    if (!options.stream) throw new NatsError("natsStream: give the JetStream stream to read in `stream`");
    this.options = options;
    this.filters = options.subjects === undefined ? [] : Array.isArray(options.subjects) ? options.subjects.slice() : [options.subjects];
    this.maxMessageBytes = options.maxMessageBytes ?? 1024 * 1024;
  }

  protected describeLog(): string {
    return `natsStream ${this.options.stream}${this.filters.length > 0 ? ` (${this.filters.join(",")})` : ""}`;
  }

  protected override isFatal(e: unknown): boolean {
    return e instanceof NatsStreamNotFoundError || (e instanceof NatsError && /need nats-server/.test(e.message));
  }

  protected async openLog(): Promise<void> {
    const nc = await connectNats(this.options);
    this.nc = nc;
    // Reconnection errors are the connection's business; our loops see failed requests and report them.
    void (async () => {
      for await (const _ of nc.status()) {
        // drained so the status iterator never holds memory
      }
    })().catch(() => {});
    if (this.filters.length > 1 && /^2\.[0-9]\./.test(nc.info?.version ?? "")) {
      throw new NatsError(`natsStream: several subjects (${this.filters.join(", ")}) need nats-server 2.10 or later (this one is ${nc.info?.version}); give one subject, wildcards allowed`);
    }
    const { jetstream, jetstreamManager } = jetstreamModule();
    this.jsm = await jetstreamManager(nc);
    this.js = jetstream(nc);
    try {
      await this.jsm.streams.info(this.options.stream);
    } catch (e) {
      if (!isStreamNotFound(e)) throw e;
      const names: string[] = [];
      for await (const n of this.jsm.streams.names()) names.push(n);
      throw new NatsStreamNotFoundError(
        `JetStream stream "${this.options.stream}" does not exist on ${serverList(this.options.servers).join(",")} ` +
          `(streams there: ${names.sort().join(", ") || "none"}); create it (jsm.streams.add) or fix the name`,
      );
    }
  }

  protected async closeLog(): Promise<void> {
    const nc = this.nc;
    const jsm = this.jsm;
    const consumer = this.consumerName;
    this.consumerName = undefined;
    if (jsm && consumer !== undefined) await jsm.consumers.delete(this.options.stream, consumer).catch(() => {});
    this.nc = undefined;
    this.js = undefined;
    this.jsm = undefined;
    this.messages?.stop();
    this.messages = undefined;
    await nc?.close();
  }

  override async stop(): Promise<void> {
    // A pending pull waits up to a second for messages: end it now.
    this.messages?.stop();
    await super.stop();
  }

  protected async listPartitions(): Promise<string[]> {
    return [this.options.stream];
  }

  protected async startingPosition(_partition: string, configured: boolean): Promise<number> {
    const info = await this.jsm!.streams.info(this.options.stream);
    const start = configured ? (this.options.start ?? "new") : "first";
    if (start === "first") return Math.max(1, info.state.first_seq);
    if (start === "new") return info.state.last_seq + 1;
    if (!Number.isSafeInteger(start) || start < 1) throw new NatsError(`natsStream: start must be "first", "new" or a stream sequence >= 1, got ${String(start)}`);
    return start;
  }

  protected async logEnds(partitions: string[]): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    if (partitions.length === 0) return out;
    let end = 0;
    if (this.filters.length === 0) end = (await this.jsm!.streams.info(this.options.stream)).state.last_seq + 1;
    else {
      for (const subject of this.filters) {
        const m = await this.jsm!.streams.getMessage(this.options.stream, { last_by_subj: subject });
        if (m) end = Math.max(end, m.seq + 1);
      }
    }
    out.set(this.options.stream, end);
    return out;
  }

  /**
   * An ephemeral pull consumer from `seq` (no acknowledgements: positions are ours). Not an ordered consumer:
   * nats.js gives those `filter_subjects`, which needs nats-server 2.10; `filter_subject` works from 2.9.
   */
  private async consumerAt(seq: number): Promise<Consumer> {
    const { AckPolicy, DeliverPolicy } = jetstreamModule();
    const filter = this.filters.length === 1 ? { filter_subject: this.filters[0] } : this.filters.length > 1 ? { filter_subjects: this.filters } : {};
    const info = await this.jsm!.consumers.add(this.options.stream, {
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: Math.max(1, seq),
      ack_policy: AckPolicy.None,
      mem_storage: true,
      num_replicas: 1,
      // Gone a while after its last pull (a stopped or killed job leaves nothing behind for long).
      inactive_threshold: 30_000_000_000,
      ...filter,
    });
    const previous = this.consumerName;
    this.consumerName = info.name;
    if (previous !== undefined) void this.jsm?.consumers.delete(this.options.stream, previous).catch(() => {});
    return this.js!.consumers.get(this.options.stream, info.name);
  }

  private consumerName: string | undefined;

  /** The record of one message (whose delivery info is `seq` and `timestamp`); undefined (reported) when it is skipped. */
  private decode(m: JsMsg, seq: number, timestamp: number): NatsRecord<T> | undefined {
    const size = m.data.length;
    if (size > this.maxMessageBytes) {
      this.skipped(this.options.stream, seq, `${size} bytes is more than maxMessageBytes (${this.maxMessageBytes}); raise maxMessageBytes to read it`);
      return undefined;
    }
    let data: T;
    if (this.options.bytes) data = m.data as T;
    else {
      const text = UTF8.decode(m.data);
      // A replacement character in the text may be a malformed byte: only then is the whole message checked.
      if (text.includes("\uFFFD") && !isUtf8(m.data)) {
        this.skipped(this.options.stream, seq, "its data is not valid UTF-8; read the stream with { bytes: true } to get Uint8Arrays");
        return undefined;
      }
      data = text as T;
    }
    return { subject: m.subject, seq, timestamp, data, headers: headersOf(m.headers) };
  }

  protected async runFetcher(generation: number): Promise<void> {
    let consumer: Consumer | undefined;
    let at = -1;
    while (this.isFetching(generation)) {
      const wanted = this.wantedPartitions()[0];
      if (wanted === undefined) {
        await this.idle(50);
        continue;
      }
      // An ordered consumer goes on where the last fetch ended; a new one starts where the buffer ends.
      if (!consumer || at !== wanted.from) consumer = await this.consumerAt(wanted.from);
      const messages = await consumer.fetch({ max_messages: 2000, expires: 1000 });
      this.messages = messages;
      const records: NatsRecord<T>[] = [];
      const positions: number[] = [];
      let next = wanted.from;
      let unfetched = 0;
      const hand = (): void => {
        if (next === wanted.from && records.length === 0) return;
        this.fetched({ partition: this.options.stream, from: wanted.from, records: records.splice(0), positions: positions.splice(0), next, unfetched });
        wanted.from = next;
      };
      for await (const m of messages) {
        const d = deliveryOf(m);
        next = d.seq + 1;
        unfetched = d.pending;
        const r = this.decode(m, d.seq, d.timestamp);
        if (r !== undefined) {
          records.push(r);
          positions.push(d.seq);
        }
        // Hand over as they come (a pull holds on for a second when the stream is quiet).
        if (records.length >= 500 || unfetched === 0) hand();
      }
      hand();
      this.messages = undefined;
      at = next;
      if (!this.isFetching(generation)) break;
      const err = await messages.closed();
      if (err instanceof Error) throw err;
    }
  }

  protected async readRange(partition: string, from: number, until: number): Promise<NatsRecord<T>[]> {
    const out: NatsRecord<T>[] = [];
    // The fetcher creates its own afterwards (consumerAt replaces this one).
    const consumer = await this.consumerAt(from);
    let at = from;
    for (let round = 0; at < until && round < 1_000_000; round++) {
      const messages = await consumer.fetch({ max_messages: Math.min(2000, until - at), expires: 1000 });
      let got = 0;
      let pending = 0;
      for await (const m of messages) {
        got++;
        const d = deliveryOf(m);
        pending = d.pending;
        if (d.seq >= until) {
          at = until;
          break;
        }
        at = d.seq + 1;
        const r = this.decode(m, d.seq, d.timestamp);
        if (r !== undefined) out.push(r);
      }
      messages.stop();
      if (got === 0 || (pending === 0 && at < until)) {
        if (got === 0) {
          this.report(new NatsError(`the range ${partition} [${from}, ${until}) is rebuilt after recovery, but the stream ends at ${at}; its output may differ from the first run's`));
        }
        break;
      }
    }
    return out;
  }
}

/** Non-fatal: a malformed byte becomes U+FFFD, and only then is the message checked with isUtf8. */
const UTF8 = new TextDecoder("utf-8");

/** Dot positions of the reply subject being read (deliveryOf reuses it: one per message would be garbage). */
const DOTS = new Int32Array(16);

/** The decimal number in r[a, b). */
function digits(r: string, a: number, b: number): number {
  let n = 0;
  for (let i = a; i < b; i++) n = n * 10 + (r.charCodeAt(i) - 48);
  return n;
}

/**
 * A message's stream sequence, timestamp (ms) and pending count, read from its reply subject
 * ($JS.ACK.[<domain>.<hash>.]<stream>.<consumer>.<delivered>.<seq>.<dseq>.<nanos>.<pending>[.<token>]) without
 * splitting it: nats.js's JsMsg.info splits the whole subject, which cost more than all else done per message.
 */
function deliveryOf(m: JsMsg): { seq: number; timestamp: number; pending: number } {
  // JsMsg's implementation has the reply subject (its acks go there); its type does not say so.
  const r = (m as JsMsg & { reply?: string }).reply ?? "";
  let dots = 0;
  for (let i = 0; i < r.length && dots < 16; i++) if (r.charCodeAt(i) === 46) DOTS[dots++] = i;
  // 8 dots: the old form; 11: with domain, account hash and a trailing token.
  if ((dots !== 8 && dots !== 11) || !r.startsWith("$JS.ACK.")) {
    const info = m.info;
    return { seq: info.streamSequence, timestamp: Math.floor(info.timestampNanos / 1e6), pending: info.pending };
  }
  const k = dots === 8 ? 8 : 10;
  const end = dots === 8 ? r.length : DOTS[10]!;
  return {
    seq: digits(r, DOTS[k - 4]! + 1, DOTS[k - 3]!),
    // Nanoseconds have more digits than a double holds exactly: drop the last six, which are below a millisecond.
    timestamp: digits(r, DOTS[k - 2]! + 1, DOTS[k - 1]! - 6),
    pending: digits(r, DOTS[k - 1]! + 1, end),
  };
}

/** The headers of every message that has none (shared: records are not to be changed). */
const NO_HEADERS: Readonly<Record<string, string>> = Object.freeze({});

function headersOf(h: MsgHdrs | undefined): Record<string, string> {
  if (!h) return NO_HEADERS as Record<string, string>;
  const out: Record<string, string> = {};
  for (const k of h.keys()) out[k] = h.get(k);
  return out;
}

/** A DStream of the messages of a JetStream stream (see NatsStreamOptions). */
export function natsStream(ssc: StreamingContext, options: NatsStreamOptions & { bytes: true }): NatsInputDStream<Uint8Array>;
export function natsStream(ssc: StreamingContext, options: NatsStreamOptions): NatsInputDStream<string>;
export function natsStream(ssc: StreamingContext, options: NatsStreamOptions): NatsInputDStream<string> | NatsInputDStream<Uint8Array> {
  return options.bytes ? new NatsInputDStream<Uint8Array>(ssc, options) : new NatsInputDStream<string>(ssc, options);
}

// ---- the sink -----------------------------------------------------------------------------------

export interface NatsSinkOptions<T> extends NatsConnectionOptions {
  /** The subject published to; a JetStream stream must capture it. */
  subject: string;
  /** A record's data (default: strings as they are, anything else as JSON). */
  toData?: (record: T) => string | Uint8Array;
  /** Extra headers per record. */
  headers?: (record: T) => Record<string, string>;
  /** Publishes in flight at once (default 256). */
  inFlight?: number;
}

/** The Nats-Msg-Id of record `index` of batch `time`: JetStream drops a second message with the same id. */
export function natsMsgId(subject: string, time: number, index: number): string {
  return `${subject}:${time}:${index}`;
}

/**
 * Publishes each batch of `dstream` to a JetStream subject with Nats-Msg-Id `<subject>:<batch time>:<index>`:
 * a batch generated again after a crash publishes the same ids, and JetStream drops them as duplicates (within
 * the stream's duplicate window, 2 minutes by default). A failed publish (a server down or restarting) is
 * retried with the same id until it is stored or the context stops.
 */
export function saveToNats<T>(dstream: DStream<T>, options: NatsSinkOptions<T>): void {
  const ssc = dstream.ssc;
  const toData = options.toData ?? ((r: T) => (typeof r === "string" || r instanceof Uint8Array ? r : (JSON.stringify(r) ?? String(r))));
  const inFlight = Math.max(1, options.inFlight ?? 256);
  let nc: NatsConnection | undefined;
  let js: JetStreamClient | undefined;
  let checked = false;
  const close = async (): Promise<void> => {
    const c = nc;
    nc = undefined;
    js = undefined;
    await c?.close().catch(() => {});
  };
  ssc.addStreamingListener({ onStreamingStopped: () => void close() });

  const open = async (): Promise<JetStreamClient> => {
    if (js) return js;
    nc = await connectNats(options);
    const mod = jetstreamModule();
    if (!checked) {
      const jsm = await mod.jetstreamManager(nc);
      try {
        await jsm.streams.find(options.subject);
      } catch (e) {
        if (!/no stream matches subject/i.test((e as Error).message) && !isStreamNotFound(e)) throw e;
        throw new NatsStreamNotFoundError(`saveToNats: no JetStream stream captures subject "${options.subject}"; add one whose subjects include it`);
      }
      checked = true;
    }
    js = mod.jetstream(nc);
    return js;
  };

  dstream.foreachRDD(
    async (rdd, time) => {
      const records = rdd.collect();
      const { headers: natsHeaders } = require("@nats-io/transport-node") as typeof import("@nats-io/transport-node");
      let done = 0;
      let backoff = 100;
      for (let attempt = 1; done < records.length; attempt++) {
        try {
          const client = await open();
          // In order, `inFlight` at a time; on a failure the batch resumes at the first record not stored.
          while (done < records.length) {
            const end = Math.min(records.length, done + inFlight);
            const acks: Promise<unknown>[] = [];
            for (let i = done; i < end; i++) {
              const r = records[i]!;
              let h: MsgHdrs | undefined;
              if (options.headers) {
                h = natsHeaders();
                for (const [k, v] of Object.entries(options.headers(r))) h.set(k, v);
              }
              acks.push(client.publish(options.subject, toData(r), { msgID: natsMsgId(options.subject, time, i), ...(h ? { headers: h } : {}) }));
            }
            await Promise.all(acks);
            done = end;
          }
        } catch (e) {
          await close();
          if (e instanceof NatsStreamNotFoundError || ssc.isStopping || ssc.state !== "active") throw e;
          ssc.notifyListeners("onReceiverError", {
            receiverInfo: {
              streamId: -1,
              name: `saveToNats(${options.subject})`,
              active: false,
              lastErrorMessage: `saveToNats ${options.subject}: batch ${time}, attempt ${attempt} failed: ${(e as Error).message}; retrying`,
              lastError: String(e),
              lastErrorTime: ssc.now(),
            },
          });
          await new Promise((r) => setTimeout(r, backoff));
          backoff = Math.min(2 * backoff, 2000);
        }
      }
    },
    { name: `saveToNats(${options.subject})` },
  );
}
