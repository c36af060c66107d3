// MQTT with the `mqtt` package (loaded on first use): mqttStream() is a receiver. Each message is stored
// before the broker is acknowledged, so with the write-ahead log on (ssc.checkpoint(dir, { writeAheadLog:
// true })) no acknowledged QoS 1/2 message is lost in a crash; see the README for the guarantee.
import { isUtf8 } from "node:buffer";
import type { IClientOptions, IPublishPacket, MqttClient } from "mqtt";
import type { StreamingContext } from "../context.js";
import { StreamingError } from "../errors.js";
import { Receiver, type ReceiverInputDStream, type ReceiverStreamOptions } from "./receiver.js";

/** An MQTT source could not do its job (the message says which broker or topic and why). */
export class MqttError extends StreamingError {}

/** One MQTT message. `payload` is a UTF-8 string, or a Buffer when the stream was asked for `bytes`. */
export interface MqttRecord<T extends string | Buffer = string> {
  topic: string;
  payload: T;
  /** When it was received (the clock's milliseconds). */
  time: number;
  qos: 0 | 1 | 2;
  retain: boolean;
}

export interface MqttStreamOptions extends Omit<ReceiverStreamOptions<MqttRecord<string | Buffer>>, "blockStore"> {
  /** The broker: "mqtt://host:port" (also mqtts://, ws://). */
  url: string;
  /** Topic filters ("sensors/+/temperature", "alerts/#"). */
  topics: string | string[];
  /** The subscriptions' QoS (default 1: the broker redelivers what was not acknowledged). */
  qos?: 0 | 1 | 2;
  /**
   * A stable client id gives a persistent session (clean: false): the broker keeps QoS 1/2 messages published
   * while the job is down and delivers them when it is back. Default: a fresh id and a clean session.
   */
  clientId?: string;
  /** `payload` as a Buffer instead of a UTF-8 string. */
  bytes?: boolean;
  /** Messages larger than this are reported and skipped (default 1 MiB). */
  maxMessageBytes?: number;
  /** Further mqtt client settings (username, password, protocolVersion, tls), passed as they are. */
  mqttOptions?: Record<string, unknown>;
}

function mqttModule(): typeof import("mqtt") {
  return require("mqtt") as typeof import("mqtt");
}

/**
 * The receiver behind mqttStream. A message is acknowledged (PUBACK/PUBREC) only once stored; with the WAL
 * that means durable. While a rate limit holds records back and the buffer is full, acknowledgements wait,
 * so the broker slows down instead of the buffer growing.
 */
export class MqttReceiver<T extends string | Buffer = string> extends Receiver<MqttRecord<T>> {
  private client: MqttClient | undefined;
  private readonly topics: string[];
  private waiting: (() => void)[] = [];
  private lastReported: string | undefined;
  /** Messages skipped (malformed UTF-8, too large). */
  skipped = 0;

  constructor(private readonly options: MqttStreamOptions) {
    super();
    this.topics = Array.isArray(options.topics) ? options.topics.slice() : [options.topics];
    if (this.topics.length === 0) throw new MqttError("mqttStream: give at least one topic filter in `topics`");
    if (!options.url) throw new MqttError('mqttStream: give the broker\'s `url`, e.g. "mqtt://127.0.0.1:1883"');
    this.name = `mqtt ${options.url} ${this.topics.join(",")}`;
  }

  onStart(): void {
    const o = this.options;
    const client = mqttModule().connect(o.url, {
      reconnectPeriod: 500,
      connectTimeout: 2000,
      ...(o.clientId !== undefined ? { clientId: o.clientId, clean: false } : { clean: true }),
      ...(o.mqttOptions as IClientOptions | undefined),
    });
    this.client = client;
    client.handleMessage = (packet: IPublishPacket, callback: (error?: Error) => void) => {
      this.receive(packet).then(
        () => callback(),
        (e: unknown) => callback(e as Error),
      );
    };
    client.on("connect", (ack) => {
      this.lastReported = undefined;
      // A resumed persistent session keeps its subscriptions; subscribing again is harmless.
      if (ack.sessionPresent && o.clientId !== undefined) return;
      client.subscribe(this.topics, { qos: o.qos ?? 1 }, (err, granted) => {
        if (err) {
          this.reportOnce(`could not subscribe to ${this.topics.join(", ")}: ${err.message}`, err);
          return;
        }
        const refused = (granted ?? []).filter((g) => g.qos === 128).map((g) => g.topic);
        if (refused.length > 0) this.reportOnce(`the broker refused the subscription to ${refused.join(", ")} (check the topic filter and the broker's ACLs)`, undefined);
      });
    });
    client.on("error", (err) => this.reportOnce(`${o.url}: ${err.message}; retrying every 500 ms`, err));
    client.on("offline", () => this.reportOnce(`${o.url} is unreachable; retrying every 500 ms`, undefined));
  }

  /** One error per distinct message until the next successful connect, so a long outage is one line. */
  private reportOnce(message: string, err: unknown): void {
    if (message === this.lastReported) return;
    this.lastReported = message;
    this.reportError(`mqttStream ${message}`, err);
  }

  private async receive(packet: IPublishPacket): Promise<void> {
    const o = this.options;
    const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
    if (payload.length > (o.maxMessageBytes ?? 1024 * 1024)) {
      this.skip(`a message on ${packet.topic} of ${payload.length} bytes is more than maxMessageBytes (${o.maxMessageBytes ?? 1024 * 1024})`);
      return;
    }
    if (!o.bytes && !isUtf8(payload)) {
      this.skip(`a message on ${packet.topic} is not valid UTF-8; read the stream with { bytes: true } to get Buffers`);
      return;
    }
    const record: MqttRecord<T> = {
      topic: packet.topic,
      payload: (o.bytes ? payload : payload.toString("utf8")) as T,
      time: Date.now(),
      qos: packet.qos,
      retain: packet.retain,
    };
    if (this.isBufferFull()) await new Promise<void>((resolve) => this.waiting.push(resolve));
    await this.storeReliably([record]);
  }

  private skip(reason: string): void {
    this.skipped++;
    if (this.skipped <= 10 || this.skipped % 1000 === 0) this.reportError(`mqttStream skipped ${reason} (${this.skipped} skipped so far)`);
  }

  override onBufferDrained(): void {
    const w = this.waiting;
    this.waiting = [];
    for (const f of w) f();
  }

  async onStop(): Promise<void> {
    const c = this.client;
    this.client = undefined;
    this.onBufferDrained();
    if (c) await c.endAsync(true).catch(() => {});
  }
}

/** A DStream of MQTT messages on `topics` (a receiver: see MqttStreamOptions and the README's guarantees). */
export function mqttStream(ssc: StreamingContext, options: MqttStreamOptions & { bytes: true }): ReceiverInputDStream<MqttRecord<Buffer>>;
export function mqttStream(ssc: StreamingContext, options: MqttStreamOptions): ReceiverInputDStream<MqttRecord<string>>;
export function mqttStream(ssc: StreamingContext, options: MqttStreamOptions): ReceiverInputDStream<MqttRecord<string>> | ReceiverInputDStream<MqttRecord<Buffer>> {
  const { url: _url, topics: _topics, qos: _qos, clientId: _clientId, bytes: _bytes, maxMessageBytes: _max, mqttOptions: _mo, ...streamOptions } = options;
  return options.bytes
    ? ssc.receiverStream(new MqttReceiver<Buffer>(options), streamOptions as ReceiverStreamOptions<MqttRecord<Buffer>>)
    : ssc.receiverStream(new MqttReceiver<string>(options), streamOptions as ReceiverStreamOptions<MqttRecord<string>>);
}
