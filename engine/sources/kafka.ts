// Kafka with kafkajs (loaded on first use). kafkaStream() is Spark's DirectKafkaInputDStream: each batch
// is an offset range per topic-partition, chosen when the batch is generated and logged before its output
// runs, read with plain fetches from explicit offsets (no consumer group membership). saveToKafka() writes
// each batch with the idempotent producer and skips the records a replayed batch already wrote.
import { isUtf8 } from "node:buffer";
import type { Kafka, Producer } from "kafkajs";
import type { StreamingContext } from "../context.js";
import type { DStream } from "../dstream.js";
import type { PartitionRange } from "../listener.js";
import { RDD, type SparkContext } from "../rdd.js";
import { DirectLogInputDStream, PartitionedSourceError, type DirectLogOptions } from "./partitioned.js";

// ---- the client ---------------------------------------------------------------------------------

export interface KafkaConnectionOptions {
  /** Bootstrap brokers: "host:port", a comma-separated list, or an array. */
  brokers: string | string[];
  clientId?: string;
  /** Further kafkajs client settings (ssl, sasl, connectionTimeout, requestTimeout, logLevel), passed as they are. */
  kafkaConfig?: Record<string, unknown>;
}

/** A Kafka source or sink could not do its job (the message says which topic and why). */
export class KafkaError extends PartitionedSourceError {}

/** A topic named in `topics` (or a sink's `topic`) does not exist on the brokers. */
export class KafkaTopicNotFoundError extends KafkaError {}

interface FetchedMessage {
  offset: string;
  key: Buffer | null;
  value: Buffer | null;
  timestamp: string;
  headers?: Record<string, Buffer | Buffer[] | undefined>;
  isControlRecord?: boolean;
}
interface FetchResponse {
  responses: { topicName: string; partitions: { partition: number; errorCode: number; highWatermark: string; messages: FetchedMessage[] }[] }[];
}
interface KafkaBroker {
  fetch(request: {
    isolationLevel: number;
    maxWaitTime: number;
    minBytes: number;
    maxBytes: number;
    topics: { topic: string; partitions: { partition: number; fetchOffset: string; maxBytes: number }[] }[];
  }): Promise<FetchResponse>;
  offsetCommit(request: {
    groupId: string;
    groupGenerationId: number;
    memberId: string;
    topics: { topic: string; partitions: { partition: number; offset: string }[] }[];
  }): Promise<unknown>;
  offsetFetch(request: { groupId: string; topics: { topic: string; partitions: { partition: number }[] }[] }): Promise<{
    responses: { topic: string; partitions: { partition: number; offset: string }[] }[];
  }>;
}
/** The parts of kafkajs's Cluster (its internal connection pool and metadata cache) that a direct read needs. */
interface KafkaCluster {
  connect(): Promise<void>;
  disconnect(): Promise<void>;
  refreshMetadata(): Promise<void>;
  metadata(): Promise<{ topicMetadata: { topic: string; isInternal: boolean; partitionMetadata: { partitionId: number }[] }[] }>;
  addMultipleTargetTopics(topics: string[]): Promise<void>;
  findTopicPartitionMetadata(topic: string): { partitionId: number; leader: number }[];
  findLeaderForPartitions(topic: string, partitions: number[]): Record<string, number[]>;
  findBroker(request: { nodeId: string }): Promise<KafkaBroker>;
  findControllerBroker(): Promise<KafkaBroker>;
  findGroupCoordinator(request: { groupId: string }): Promise<KafkaBroker>;
  fetchTopicsOffset(topics: { topic: string; partitions: { partition: number }[]; fromBeginning: boolean }[]): Promise<
    { topic: string; partitions: { partition: number; offset: string }[] }[]
  >;
  brokerPool: { metadata?: { brokers: { nodeId: number }[] } };
}

function kafkajs(): typeof import("kafkajs") {
  return require("kafkajs") as typeof import("kafkajs");
}

function brokerList(brokers: string | string[]): string[] {
  const list = (Array.isArray(brokers) ? brokers : brokers.split(",")).map((b) => b.trim()).filter((b) => b.length > 0);
  if (list.length === 0) throw new KafkaError('give at least one broker, e.g. { brokers: "127.0.0.1:9092" }');
  return list;
}

const CREATE_CLUSTER = "private:Kafka:createCluster";

/**
 * A kafkajs client whose clusters survive one quirk: librdkafka's mock cluster reports controller id 0,
 * a broker it does not have, and kafkajs sends InitProducerId (the idempotent producer) to the controller.
 * When the controller is not among the brokers, any broker serves (a real broker forwards as needed).
 */
function makeKafka(options: KafkaConnectionOptions): Kafka {
  const { Kafka, logLevel } = kafkajs();
  const kafka = new Kafka({
    clientId: options.clientId ?? "streambook",
    logLevel: logLevel.NOTHING,
    // Generous: a busy event loop (a notebook rendering charts) must not turn a slow handshake into an outage.
    connectionTimeout: 10_000,
    requestTimeout: 30_000,
    // Our own loops retry (and report each failure); kafkajs's own retries would hide a dead broker for ~30 s.
    retry: { retries: 1, initialRetryTime: 100, maxRetryTime: 1000 },
    ...options.kafkaConfig,
    brokers: brokerList(options.brokers),
  });
  const key = Object.getOwnPropertySymbols(kafka).find((s) => s.description === CREATE_CLUSTER);
  const holder = kafka as unknown as Record<symbol, (o: Record<string, unknown>) => KafkaCluster>;
  if (key !== undefined) {
    const create = holder[key]!;
    holder[key] = (o) => {
      const cluster = create(o);
      const findController = cluster.findControllerBroker.bind(cluster);
      cluster.findControllerBroker = async () => {
        try {
          return await findController();
        } catch (e) {
          const ids = cluster.brokerPool.metadata?.brokers.map((b) => b.nodeId) ?? [];
          if (ids.length === 0) throw e;
          return cluster.findBroker({ nodeId: String(ids[0]) });
        }
      };
      return cluster;
    };
  }
  return kafka;
}

/** The Cluster kafkajs builds for its consumers, for fetching explicit offsets without joining a group. */
function makeCluster(kafka: Kafka): KafkaCluster {
  const key = Object.getOwnPropertySymbols(kafka).find((s) => s.description === CREATE_CLUSTER);
  if (key === undefined) throw new KafkaError("this kafkajs version has no cluster factory; streambook needs kafkajs ~2.2");
  const create = (kafka as unknown as Record<symbol, (o: Record<string, unknown>) => KafkaCluster>)[key]!;
  return create({ allowAutoTopicCreation: false, isolationLevel: 0 });
}

/** Kafka's partition id as Spark's TopicPartition prints it: "clicks-3". */
export function topicPartitionId(topic: string, partition: number): string {
  return `${topic}-${partition}`;
}

function parseTopicPartition(id: string): { topic: string; partition: number } {
  const i = id.lastIndexOf("-");
  return { topic: id.slice(0, i), partition: Number(id.slice(i + 1)) };
}

/** Topics that exist on the brokers (a metadata request for all topics, which never creates one). */
async function existingTopics(cluster: KafkaCluster): Promise<{ topic: string; isInternal: boolean }[]> {
  const md = await cluster.metadata();
  return md.topicMetadata.map((t) => ({ topic: t.topic, isInternal: t.isInternal }));
}

/** One fetch per partition leader, in parallel; calls `each` per partition response. */
async function fetchFrom(
  cluster: KafkaCluster,
  wanted: { topic: string; partition: number; from: number }[],
  options: { maxWaitMs: number; partitionBytes: number },
  each: (topic: string, partition: number, from: number, hw: number, messages: FetchedMessage[]) => void,
): Promise<void> {
  const byTopic = new Map<string, Map<number, number>>();
  for (const w of wanted) {
    let m = byTopic.get(w.topic);
    if (!m) byTopic.set(w.topic, (m = new Map()));
    m.set(w.partition, w.from);
  }
  const perLeader = new Map<string, { topic: string; partitions: { partition: number; fetchOffset: string; maxBytes: number }[] }[]>();
  for (const [topic, parts] of byTopic) {
    const leaders = cluster.findLeaderForPartitions(topic, [...parts.keys()]);
    for (const [node, ps] of Object.entries(leaders)) {
      const list = perLeader.get(node) ?? [];
      list.push({ topic, partitions: ps.map((p) => ({ partition: p, fetchOffset: String(parts.get(p)), maxBytes: options.partitionBytes })) });
      perLeader.set(node, list);
    }
  }
  await Promise.all(
    [...perLeader].map(async ([node, topics]) => {
      const broker = await cluster.findBroker({ nodeId: node });
      const res = await broker.fetch({ isolationLevel: 0, maxWaitTime: options.maxWaitMs, minBytes: 1, maxBytes: 64 * 1024 * 1024, topics });
      for (const t of res.responses) {
        for (const p of t.partitions) each(t.topicName, p.partition, byTopic.get(t.topicName)!.get(p.partition)!, Number(p.highWatermark), p.messages);
      }
    }),
  );
}

// ---- the source ---------------------------------------------------------------------------------

/** Spark's OffsetRange: partition `partition` of `topic`, offsets [fromOffset, untilOffset). */
export interface OffsetRange {
  topic: string;
  partition: number;
  fromOffset: number;
  untilOffset: number;
}

/** One Kafka record. Key, value and headers are UTF-8 strings, or Buffers when the stream was asked for `bytes`. */
export interface KafkaRecord<T extends string | Buffer = string> {
  topic: string;
  partition: number;
  offset: number;
  /** Milliseconds since the epoch (CreateTime or LogAppendTime, as the topic says). */
  timestamp: number;
  key: T | null;
  value: T | null;
  /** A header repeated under one name keeps its last value. */
  headers: Record<string, T>;
}

/** Spark's KafkaRDD: one RDD partition per Kafka partition, and the offset ranges it holds (HasOffsetRanges). */
export class KafkaRDD<T extends string | Buffer = string> extends RDD<KafkaRecord<T>> {
  constructor(
    sc: SparkContext,
    parts: KafkaRecord<T>[][],
    readonly offsetRanges: readonly OffsetRange[],
  ) {
    super(sc, { parts });
  }
}

/** Spark's "-2" and "-1" in explicit starting offsets. */
export const EARLIEST = -2;
export const LATEST = -1;

export interface KafkaStreamOptions extends KafkaConnectionOptions, DirectLogOptions {
  /** Topic names, or a pattern: topics that match it (now and later) are read, internal topics excepted. */
  topics: string | string[] | RegExp;
  /**
   * Where partitions start without a checkpoint: "earliest", "latest" (default, as Spark), or per topic and
   * partition `{ clicks: { 0: 42, 1: -2 } }` (-2 earliest, -1 latest; unlisted partitions: latest). With
   * `groupId`, a partition the group has committed an offset for starts there instead. Partitions that
   * appear later (a new topic matching the pattern, partitions added) start at the earliest offset.
   */
  startingOffsets?: "earliest" | "latest" | Record<string, Record<string, number>>;
  /** Commit the offsets each durable checkpoint (or, without checkpoints, each completed batch) covers to this group, so Kafka's tools see the lag. */
  groupId?: string;
  /** Keys, values and headers as Buffers instead of UTF-8 strings. */
  bytes?: boolean;
  /** Records whose key and value together are larger are reported and skipped (default 1 MiB, Kafka's default). */
  maxMessageBytes?: number;
  /** Longest wait of one fetch for new records (default 100 ms). */
  fetchMaxWaitMs?: number;
}

/**
 * Spark's DirectKafkaInputDStream on kafkajs. Offsets are ours (in checkpoints and the batch-input log);
 * with `groupId` they are also committed to that group, but the group is never joined.
 */
export class KafkaInputDStream<T extends string | Buffer = string> extends DirectLogInputDStream<KafkaRecord<T>> {
  readonly options: KafkaStreamOptions;
  private kafka: Kafka | undefined;
  private cluster: KafkaCluster | undefined;
  private readonly maxMessageBytes: number;
  /** Topics read now (the named ones, or those matching the pattern). */
  private topics: string[] = [];
  /** Without checkpoints: the offsets each generated batch ends at, committed once it completes. */
  private readonly batchEnds = new Map<number, Record<string, number>>();
  private commits: Promise<void> = Promise.resolve();
  /** The last offset commit failed (the next failure in a row is reported). */
  private commitFailed = false;

  constructor(ssc: StreamingContext, options: KafkaStreamOptions) {
    super(ssc, options);
    this.options = options;
    brokerList(options.brokers);
    if (!(options.topics instanceof RegExp) && (Array.isArray(options.topics) ? options.topics : [options.topics]).length === 0) {
      throw new KafkaError("kafkaStream: give at least one topic in `topics` (a name, a list, or a RegExp)");
    }
    this.maxMessageBytes = options.maxMessageBytes ?? 1024 * 1024;
    if (options.groupId !== undefined) {
      ssc.addBatchCompletionHook((time) => {
        const ends = this.batchEnds.get(time);
        for (const t of this.batchEnds.keys()) if (t <= time) this.batchEnds.delete(t);
        // Without checkpoints nothing replays a batch: its offsets are done once it completes.
        if (ends && this.ssc.checkpointDir === undefined) this.queueCommit(ends);
      });
    }
  }

  protected describeLog(): string {
    const t = this.options.topics;
    return `kafkaStream ${t instanceof RegExp ? String(t) : (Array.isArray(t) ? t : [t]).join(",")}`;
  }

  protected override isFatal(e: unknown): boolean {
    return e instanceof KafkaTopicNotFoundError;
  }

  protected async openLog(): Promise<void> {
    const kafka = (this.kafka ??= makeKafka(this.options));
    const cluster = makeCluster(kafka);
    this.cluster = cluster;
    await cluster.connect();
    const existing = await existingTopics(cluster);
    const t = this.options.topics;
    if (t instanceof RegExp) {
      this.topics = existing.filter((x) => !x.isInternal && t.test(x.topic)).map((x) => x.topic);
    } else {
      const wanted = Array.isArray(t) ? t : [t];
      const names = new Set(existing.map((x) => x.topic));
      const missing = wanted.filter((w) => !names.has(w));
      if (missing.length > 0) {
        throw new KafkaTopicNotFoundError(
          `topic ${missing.map((m) => `"${m}"`).join(", ")} does not exist on ${brokerList(this.options.brokers).join(",")} ` +
            `(topics there: ${[...names].filter((n) => !n.startsWith("__")).sort().join(", ") || "none"}); create it first or fix the name`,
        );
      }
      this.topics = wanted.slice();
    }
    if (this.topics.length > 0) await cluster.addMultipleTargetTopics(this.topics);
  }

  protected async closeLog(): Promise<void> {
    const c = this.cluster;
    this.cluster = undefined;
    await c?.disconnect();
  }

  private need(): KafkaCluster {
    if (!this.cluster) throw new KafkaError("not connected");
    return this.cluster;
  }

  protected async listPartitions(): Promise<string[]> {
    const cluster = this.need();
    if (this.options.topics instanceof RegExp) {
      const re = this.options.topics;
      const now = (await existingTopics(cluster)).filter((x) => !x.isInternal && re.test(x.topic)).map((x) => x.topic);
      const added = now.filter((x) => !this.topics.includes(x));
      if (added.length > 0) {
        this.topics = [...this.topics, ...added];
        await cluster.addMultipleTargetTopics(this.topics);
      }
    }
    await cluster.refreshMetadata();
    const ids: string[] = [];
    for (const topic of this.topics) for (const p of cluster.findTopicPartitionMetadata(topic)) ids.push(topicPartitionId(topic, p.partitionId));
    return ids;
  }

  private async offsetsOf(ids: string[], fromBeginning: boolean): Promise<Map<string, number>> {
    const byTopic = new Map<string, { partition: number }[]>();
    for (const id of ids) {
      const { topic, partition } = parseTopicPartition(id);
      const l = byTopic.get(topic) ?? [];
      l.push({ partition });
      byTopic.set(topic, l);
    }
    const res = await this.need().fetchTopicsOffset([...byTopic].map(([topic, partitions]) => ({ topic, partitions, fromBeginning })));
    const out = new Map<string, number>();
    for (const t of res) for (const p of t.partitions) out.set(topicPartitionId(t.topic, p.partition), Number(p.offset));
    return out;
  }

  private async committedOffset(id: string): Promise<number | undefined> {
    const groupId = this.options.groupId;
    if (groupId === undefined) return undefined;
    const { topic, partition } = parseTopicPartition(id);
    const coordinator = await this.need().findGroupCoordinator({ groupId });
    const res = await coordinator.offsetFetch({ groupId, topics: [{ topic, partitions: [{ partition }] }] });
    const o = Number(res.responses.find((r) => r.topic === topic)?.partitions.find((p) => p.partition === partition)?.offset ?? -1);
    return o >= 0 ? o : undefined;
  }

  protected async startingPosition(id: string, configured: boolean): Promise<number> {
    if (!configured) return (await this.offsetsOf([id], true)).get(id) ?? 0;
    const committed = await this.committedOffset(id);
    if (committed !== undefined) return committed;
    const s = this.options.startingOffsets ?? "latest";
    let want: number = s === "earliest" ? EARLIEST : LATEST;
    if (typeof s === "object") {
      const { topic, partition } = parseTopicPartition(id);
      const explicit = s[topic]?.[String(partition)];
      if (explicit !== undefined) want = explicit;
    }
    if (want >= 0) return want;
    return (await this.offsetsOf([id], want === EARLIEST)).get(id) ?? 0;
  }

  protected async logEnds(partitions: string[]): Promise<Map<string, number>> {
    return partitions.length === 0 ? new Map() : this.offsetsOf(partitions, false);
  }

  /** Decodes one fetched message; undefined (reported) when it is skipped. */
  private decode(topic: string, partition: number, offset: number, m: FetchedMessage): KafkaRecord<T> | undefined {
    const key = m.key;
    const value = m.value;
    const size = (key === null ? 0 : key.length) + (value === null ? 0 : value.length);
    if (size > this.maxMessageBytes) {
      this.skipped(topicPartitionId(topic, partition), offset, `${size} bytes is more than maxMessageBytes (${this.maxMessageBytes}); raise maxMessageBytes to read it`);
      return undefined;
    }
    let headers: Record<string, T> = NO_HEADERS as Record<string, T>;
    for (const _ in m.headers) {
      headers = {};
      break;
    }
    const timestamp = Number(m.timestamp);
    if (this.options.bytes) {
      for (const k in m.headers) {
        const v = m.headers[k];
        if (v !== undefined) headers[k] = (Array.isArray(v) ? v[v.length - 1]! : v) as T;
      }
      return { topic, partition, offset, timestamp, key: key as T | null, value: value as T | null, headers };
    }
    const k = key === null ? null : key.toString("utf8");
    const v = value === null ? null : value.toString("utf8");
    // A replacement character in the text may be a malformed byte: only then is the whole buffer checked.
    const badValue = v !== null && v.includes("\uFFFD") && !isUtf8(value!);
    if (badValue || (k !== null && k.includes("\uFFFD") && !isUtf8(key!))) {
      this.skipped(topicPartitionId(topic, partition), offset, `its ${badValue ? "value" : "key"} is not valid UTF-8; read the stream with { bytes: true } to get Buffers`);
      return undefined;
    }
    for (const name in m.headers) {
      const h = m.headers[name];
      if (h === undefined) continue;
      const b = Array.isArray(h) ? h[h.length - 1]! : h;
      const text = b.toString("utf8");
      headers[name] = (text.includes("\uFFFD") && !isUtf8(b) ? b.toString("latin1") : text) as T;
    }
    return { topic, partition, offset, timestamp, key: k as T | null, value: v as T | null, headers };
  }

  /** Decodes messages at or after `from` (a fetch returns whole record batches) and before `until`. */
  private decodeAll(topic: string, partition: number, from: number, until: number, messages: FetchedMessage[]) {
    const records: KafkaRecord<T>[] = [];
    const positions: number[] = [];
    let next = from;
    for (let i = 0; i < messages.length; i++) {
      const m = messages[i]!;
      const offset = Number(m.offset);
      if (offset < from || offset >= until) continue;
      next = offset + 1;
      if (m.isControlRecord) continue;
      const r = this.decode(topic, partition, offset, m);
      if (r === undefined) continue;
      records.push(r);
      positions.push(offset);
    }
    return { records, positions, next };
  }

  protected async runFetcher(generation: number): Promise<void> {
    const maxWaitMs = this.options.fetchMaxWaitMs ?? 100;
    while (this.isFetching(generation)) {
      await this.discoverIfDue();
      const wanted = this.wantedPartitions();
      if (wanted.length === 0) {
        await this.idle(50);
        continue;
      }
      const cluster = this.need();
      await fetchFrom(
        cluster,
        wanted.map((w) => ({ ...parseTopicPartition(w.partition), from: w.from })),
        { maxWaitMs, partitionBytes: Math.max(1024 * 1024, this.maxMessageBytes + 1024) },
        (topic, partition, from, hw, messages) => {
          const d = this.decodeAll(topic, partition, from, Infinity, messages);
          this.fetched({ partition: topicPartitionId(topic, partition), from, ...d, logEnd: hw });
        },
      );
    }
  }

  protected async readRange(id: string, from: number, until: number): Promise<KafkaRecord<T>[]> {
    const { topic, partition } = parseTopicPartition(id);
    const out: KafkaRecord<T>[] = [];
    let at = from;
    for (let round = 0; at < until && round < 1_000_000; round++) {
      let hw = Infinity;
      let progressed = false;
      await fetchFrom(this.need(), [{ topic, partition, from: at }], { maxWaitMs: 100, partitionBytes: Math.max(1024 * 1024, this.maxMessageBytes + 1024) }, (_t, _p, _f, high, messages) => {
        hw = high;
        const d = this.decodeAll(topic, partition, at, until, messages);
        for (const r of d.records) out.push(r);
        if (d.next > at) {
          at = d.next;
          progressed = true;
        }
      });
      if (!progressed && hw <= at) {
        // The log ends before the logged range does (records deleted since): rebuild from what is left.
        this.report(new KafkaError(`batch range ${id} [${from}, ${until}) is rebuilt after recovery, but the log ends at ${hw}; its output may differ from the first run's`));
        break;
      }
    }
    return out;
  }

  protected override makeBatchRDD(parts: KafkaRecord<T>[][], ranges: PartitionRange[]): RDD<KafkaRecord<T>> {
    return new KafkaRDD<T>(this.ssc.sc, parts, ranges.map((r) => toOffsetRange(r)));
  }

  protected override inputMetadata(ranges: PartitionRange[]): Record<string, unknown> {
    const offsets = ranges.map((r) => toOffsetRange(r));
    // Spark's DirectKafkaInputDStream description, line for line.
    const Description = offsets.map((o) => `topic: ${o.topic}\tpartition: ${o.partition}\toffsets: ${o.fromOffset} to ${o.untilOffset}`).join("\n");
    return { offsets, Description };
  }

  override compute(time: number): RDD<KafkaRecord<T>> | undefined {
    const rdd = super.compute(time);
    if (this.options.groupId !== undefined) {
      const sel = this.selectionFor(time);
      if (sel) this.batchEnds.set(time, Object.fromEntries(Object.entries(sel).map(([p, [, until]]) => [p, until])));
    }
    return rdd;
  }

  /** Called by the checkpointer once a checkpoint holding `position` is durable: its offsets go to the group. */
  onCheckpointDurable(position: unknown): void {
    const p = (position as { positions?: Record<string, number> } | undefined)?.positions;
    if (this.options.groupId !== undefined && p) this.queueCommit(p);
  }

  /** Spark's CanCommitOffsets.commitAsync: commits each range's untilOffset to `groupId`. */
  commitAsync(offsetRanges: readonly OffsetRange[]): Promise<void> {
    if (this.options.groupId === undefined) return Promise.reject(new KafkaError("commitAsync needs the stream's groupId option"));
    const ends: Record<string, number> = {};
    for (const o of offsetRanges) ends[topicPartitionId(o.topic, o.partition)] = o.untilOffset;
    return this.queueCommit(ends, true);
  }

  private queueCommit(ends: Record<string, number>, rethrow = false): Promise<void> {
    const run = this.commits.then(() => this.commit(ends));
    // Offsets are cumulative: a commit lost to a dropped connection is made good by the next checkpoint's.
    // One failure is only noted (ssc.ui() shows it); a second in a row goes under the cell too.
    this.commits = run.then(
      () => {
        this.commitFailed = false;
      },
      (e: unknown) => {
        if (this.commitFailed) this.report(e);
        else this.note(e);
        this.commitFailed = true;
      },
    );
    return rethrow ? run : this.commits;
  }

  /** Commits offsets to the group without joining it (generation -1), as a standalone consumer does. */
  private async commit(ends: Record<string, number>): Promise<void> {
    const groupId = this.options.groupId!;
    const assigned = new Set(this.assignedPartitions());
    const byTopic = new Map<string, { partition: number; offset: string }[]>();
    for (const [id, offset] of Object.entries(ends)) {
      // Another owner commits the partitions not assigned here.
      if (!assigned.has(id)) continue;
      const { topic, partition } = parseTopicPartition(id);
      const l = byTopic.get(topic) ?? [];
      l.push({ partition, offset: String(offset) });
      byTopic.set(topic, l);
    }
    if (byTopic.size === 0) return;
    // The last checkpoint of a stop() is durable after the source closed: commit on a short-lived cluster.
    const own = this.cluster === undefined;
    const cluster = this.cluster ?? makeCluster((this.kafka ??= makeKafka(this.options)));
    try {
      if (own) await cluster.connect();
      const coordinator = await cluster.findGroupCoordinator({ groupId });
      await coordinator.offsetCommit({ groupId, groupGenerationId: -1, memberId: "", topics: [...byTopic].map(([topic, partitions]) => ({ topic, partitions })) });
    } finally {
      if (own) await cluster.disconnect().catch(() => {});
    }
  }

  /** Resolves when every commit asked for so far has been tried. */
  async committed(): Promise<void> {
    await this.commits;
  }
}

/** The headers of every record that has none (shared: records are not to be changed). */
const NO_HEADERS: Readonly<Record<string, never>> = Object.freeze({});

function toOffsetRange(r: PartitionRange): OffsetRange {
  const { topic, partition } = parseTopicPartition(r.partition);
  return { topic, partition, fromOffset: Number(r.from), untilOffset: Number(r.until) };
}

/** Spark's KafkaUtils.createDirectStream: a DStream of Kafka records (see KafkaStreamOptions). */
export function kafkaStream(ssc: StreamingContext, options: KafkaStreamOptions & { bytes: true }): KafkaInputDStream<Buffer>;
export function kafkaStream(ssc: StreamingContext, options: KafkaStreamOptions): KafkaInputDStream<string>;
export function kafkaStream(ssc: StreamingContext, options: KafkaStreamOptions): KafkaInputDStream<string> | KafkaInputDStream<Buffer> {
  return options.bytes ? new KafkaInputDStream<Buffer>(ssc, options) : new KafkaInputDStream<string>(ssc, options);
}

// ---- the sink -----------------------------------------------------------------------------------

/** What saveToKafka writes for one record. */
export interface KafkaMessage {
  key?: string | Buffer | null;
  value: string | Buffer | null;
  headers?: Record<string, string | Buffer>;
}

export interface KafkaSinkOptions<T> extends KafkaConnectionOptions {
  /** The topic written to; it must exist, and only this sink may write to it (see saveToKafka). */
  topic: string;
  /** A record's key, value and headers. Default: a pair gives key and value, anything else a value; non-strings as JSON. */
  toMessage?: (record: T) => KafkaMessage;
}

/** Headers saveToKafka adds to each record: which batch and which record of it. */
export const BATCH_HEADER = "streambook-batch";
export const INDEX_HEADER = "streambook-index";

function text(v: unknown): string {
  return typeof v === "string" ? v : (JSON.stringify(v) ?? String(v));
}

export function defaultKafkaMessage(r: unknown): KafkaMessage {
  if (Array.isArray(r) && r.length === 2) return { key: r[0] === null || r[0] === undefined ? null : text(r[0]), value: text(r[1]) };
  return { value: r === null || r === undefined ? null : text(r) };
}

/** The last record of this sink per partition: (batch time, index). */
type Tails = Map<number, { time: number; index: number }>;

/**
 * Writes each batch of `dstream` to a Kafka topic, exactly once per record, also when a batch is generated
 * again after a crash: the producer is idempotent (no duplicates from its own retries), every record carries
 * its batch time and index in headers, and before the first batch after a (re)start the sink reads the last
 * record of each partition of the topic and skips what is already there. Records go to partitions by
 * murmur2 of the key (Kafka's default) or, without a key, by index, so a replay puts them where they went
 * the first time. The sink must be the only writer of its topic; see the README for what is guaranteed.
 */
export function saveToKafka<T>(dstream: DStream<T>, options: KafkaSinkOptions<T>): void {
  const toMessage = options.toMessage ?? defaultKafkaMessage;
  const ssc = dstream.ssc;
  let kafka: Kafka | undefined;
  let producer: Producer | undefined;
  let cluster: KafkaCluster | undefined;
  let tails: Tails | undefined;
  let partitionCount = 0;
  const close = async (): Promise<void> => {
    const p = producer;
    const c = cluster;
    producer = undefined;
    cluster = undefined;
    tails = undefined;
    await p?.disconnect().catch(() => {});
    await c?.disconnect().catch(() => {});
  };
  ssc.addStreamingListener({ onStreamingStopped: () => void close() });

  const open = async (): Promise<void> => {
    if (producer && cluster && tails) return;
    await close();
    kafka ??= makeKafka(options);
    const c = makeCluster(kafka);
    cluster = c;
    await c.connect();
    const existing = await existingTopics(c);
    if (!existing.some((x) => x.topic === options.topic)) {
      throw new KafkaTopicNotFoundError(`saveToKafka: topic "${options.topic}" does not exist on ${brokerList(options.brokers).join(",")}; create it first`);
    }
    await c.addMultipleTargetTopics([options.topic]);
    partitionCount = c.findTopicPartitionMetadata(options.topic).length;
    tails = await readTails(c, options.topic, partitionCount);
    const { Partitioners } = kafkajs();
    producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false, createPartitioner: Partitioners.DefaultPartitioner });
    await producer.connect();
  };

  const partitioner = kafkajs().Partitioners.DefaultPartitioner();
  const write = async (rows: KafkaMessage[], time: number): Promise<void> => {
    await open();
    const meta = Array.from({ length: partitionCount }, (_, i) => ({ partitionId: i, leader: 0, partitionErrorCode: 0, replicas: [], isr: [] }));
    const messages: { partition: number; key: string | Buffer | null; value: string | Buffer | null; headers: Record<string, string | Buffer> }[] = [];
    const last = new Map<number, number>();
    rows.forEach((m, i) => {
      const key = m.key ?? null;
      const partition = key === null ? i % partitionCount : partitioner({ topic: options.topic, partitionMetadata: meta, message: { key, value: m.value } });
      const tail = tails!.get(partition);
      // Written before (this batch replayed, or a failed attempt that got this far): per partition, a prefix.
      if (tail && (time < tail.time || (time === tail.time && i <= tail.index))) return;
      messages.push({ partition, key, value: m.value, headers: { ...m.headers, [BATCH_HEADER]: String(time), [INDEX_HEADER]: String(i) } });
      last.set(partition, i);
    });
    if (messages.length === 0) return;
    await producer!.send({ topic: options.topic, messages });
    for (const [p, index] of last) tails!.set(p, { time, index });
  };

  dstream.foreachRDD(
    async (rdd, time) => {
      const rows = rdd.collect().map((r) => toMessage(r));
      let backoff = 100;
      for (let attempt = 1; ; attempt++) {
        try {
          await write(rows, time);
          return;
        } catch (e) {
          await close();
          // A missing topic needs the user; anything else (a broker down or restarting) is retried until it
          // works or the context stops, so the batch is never half written and forgotten.
          if (e instanceof KafkaTopicNotFoundError || ssc.isStopping || ssc.state !== "active") throw e;
          ssc.notifyListeners("onReceiverError", {
            receiverInfo: {
              streamId: -1,
              name: `saveToKafka(${options.topic})`,
              active: false,
              lastErrorMessage: `saveToKafka ${options.topic}: batch ${time}, attempt ${attempt} failed: ${(e as Error).message}; retrying`,
              lastError: String(e),
              lastErrorTime: ssc.now(),
            },
          });
          await new Promise((r) => setTimeout(r, backoff));
          backoff = Math.min(2 * backoff, 2000);
        }
      }
    },
    { name: `saveToKafka(${options.topic})` },
  );
}

/** The (batch, index) headers of the last record of each partition of `topic`, where this sink wrote one. */
async function readTails(cluster: KafkaCluster, topic: string, partitions: number): Promise<Tails> {
  const tails: Tails = new Map();
  const ends = await cluster.fetchTopicsOffset([{ topic, partitions: Array.from({ length: partitions }, (_, p) => ({ partition: p })), fromBeginning: false }]);
  const wanted: { topic: string; partition: number; from: number }[] = [];
  for (const t of ends) for (const p of t.partitions) if (Number(p.offset) > 0) wanted.push({ topic, partition: p.partition, from: Number(p.offset) - 1 });
  if (wanted.length === 0) return tails;
  await fetchFrom(cluster, wanted, { maxWaitMs: 100, partitionBytes: 1024 * 1024 }, (_t, partition, from, _hw, messages) => {
    for (const m of messages) {
      if (Number(m.offset) < from) continue;
      const b = m.headers?.[BATCH_HEADER];
      const i = m.headers?.[INDEX_HEADER];
      if (b === undefined || i === undefined) continue;
      const time = Number(String(Array.isArray(b) ? b[0] : b));
      const index = Number(String(Array.isArray(i) ? i[0] : i));
      if (Number.isFinite(time) && Number.isFinite(index)) tails.set(partition, { time, index });
    }
  });
  return tails;
}
