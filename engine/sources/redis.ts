// Redis Streams with ioredis: redisStream() reads with XREAD from explicit IDs that live in the checkpoint,
// saveToRedis() writes each batch with XADD under IDs derived from the batch time, so a replay adds nothing.
import type Redis from "ioredis";
import type { RedisOptions } from "ioredis";
import type { StreamingContext } from "../context.js";
import type { DStream, NameOption } from "../dstream.js";
import type { RDD } from "../rdd.js";
import { StreamingError, errorMessage } from "../errors.js";
import { InputDStream } from "./input.js";
import { comparePartitions, type PartitionedInput, type PartitionStatus } from "./partitioned.js";
import type { PartitionRange } from "../listener.js";
import { makeRDD } from "./rddof.js";
import { groupTaskOf, PARTITIONED_SINK } from "../group/scope.js";
import type { GroupSourceSpec } from "../group/log.js";

export interface RedisConnectionOptions {
  /** `redis://host:port/db`; takes precedence over host/port. */
  url?: string;
  host?: string;
  port?: number;
  /** Extra ioredis options (password, tls, ...). */
  redisOptions?: RedisOptions;
}

export interface RedisStreamEntry {
  stream: string;
  id: string;
  fields: Record<string, string>;
}

/** A Redis stream ID as [ms, seq], for ordering; "0" and "0-0" are the start. */
export function parseId(id: string): [number, number] {
  const [ms, seq] = id.split("-");
  return [Number(ms), seq === undefined ? 0 : Number(seq)];
}

export function compareIds(a: string, b: string): number {
  const [am, as] = parseId(a);
  const [bm, bs] = parseId(b);
  return am !== bm ? am - bm : as - bs;
}

/** ioredis is loaded on first use, so importing the engine does not pay for it. */
function ioredis(): typeof import("ioredis").default {
  return (require("ioredis") as typeof import("ioredis")).default;
}

export function connect(options: RedisConnectionOptions): Redis {
  const Redis = ioredis();
  const base: RedisOptions = {
    // Keep retrying (bounded backoff) and queue commands while down, so a server restart is ridden out.
    retryStrategy: (times) => Math.min(50 * times, 1000),
    maxRetriesPerRequest: null,
    enableOfflineQueue: true,
    lazyConnect: false,
    ...options.redisOptions,
  };
  if (options.url !== undefined) return new Redis(options.url, base);
  return new Redis({ host: options.host ?? "127.0.0.1", port: options.port ?? 6379, ...base });
}

type XReadReply = [string, [string, string[] | null][]][] | null;

function toFields(flat: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) out[flat[i]!] = flat[i + 1]!;
  return out;
}

/** Resolve "$" (only entries added from now on) to the stream's current last ID, so it can be checkpointed. */
export async function resolveStartId(redis: Redis, stream: string, startId: string): Promise<string> {
  if (startId !== "$") return startId;
  const last = (await redis.xrevrange(stream, "+", "-", "COUNT", 1)) as [string, string[]][];
  return last.length > 0 ? last[0]![0] : "0-0";
}

/**
 * Entries of `stream` with afterId < id <= toId, exactly: how a batch is read again after recovery.
 * With `pageSize`, read in XRANGE pages of that many, so a large batch is not one huge reply.
 */
export async function readRange(redis: Redis, stream: string, afterId: string, toId: string, pageSize?: number): Promise<RedisStreamEntry[]> {
  const out: RedisStreamEntry[] = [];
  let from = afterId;
  for (let round = 0; round < 10_000_000 && compareIds(toId, from) > 0; round++) {
    const rows = (
      pageSize === undefined ? await redis.xrange(stream, `(${from}`, toId) : await redis.xrange(stream, `(${from}`, toId, "COUNT", pageSize)
    ) as [string, string[]][];
    for (const [id, flat] of rows) out.push({ stream, id, fields: toFields(flat) });
    if (pageSize === undefined || rows.length < pageSize) break;
    from = rows[rows.length - 1]![0];
  }
  return out;
}

export interface FetcherOptions {
  streams: string[];
  /** Entries fetched per XREAD round per stream. */
  count: number;
  /** XREAD BLOCK timeout in ms while idle; short so stop() is prompt. */
  blockMs?: number;
  onError?: (err: Error) => void;
  /**
   * Read as a consumer of a group (XREADGROUP): first this consumer's pending entries after the start
   * IDs (delivered before but never acknowledged), then new ones (">").
   */
  group?: { name: string; consumer: string };
}

/**
 * Reads new entries continuously from explicit IDs (never from a consumer group's server-side cursor), so
 * the position is data we own and checkpoint. Entries wait in `buffer` until a batch takes them.
 */
export class RedisStreamFetcher {
  readonly buffer: RedisStreamEntry[] = [];
  /** Last ID fetched per stream (the buffer's end). */
  readonly fetched = new Map<string, string>();
  private running = false;
  private loop: Promise<void> | undefined;
  /** One XREAD at a time on the reader connection (the loop's and sync()'s). */
  private lock: Promise<unknown> = Promise.resolve();
  private readonly reader: Redis;
  private readonly options: FetcherOptions;
  /** Resolved whenever a fetch round adds entries; lets tests and callers await data without sleeping. */
  private waiters: (() => void)[] = [];

  /** Group mode: streams still being read from this consumer's pending entries. */
  private readonly history = new Set<string>();

  constructor(reader: Redis, options: FetcherOptions, from: ReadonlyMap<string, string>) {
    this.reader = reader;
    this.options = options;
    for (const s of options.streams) this.fetched.set(s, from.get(s) ?? "0-0");
    if (options.group) for (const s of options.streams) this.history.add(s);
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }

  /** Resolves after the next fetch round that added entries (or when stopped). */
  whenData(): Promise<void> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** One XREAD round (blocking up to blockMs if given); returns how many entries were added. */
  fetchOnce(blockMs?: number): Promise<number> {
    const run = this.lock.then(() => this.xread(blockMs));
    this.lock = run.catch(() => {});
    return run;
  }

  /** Fetches until caught up with the server: afterwards the buffer holds everything added before the call. */
  async sync(): Promise<void> {
    for (let i = 0; i < 1_000_000; i++) {
      const before = this.history.size;
      if ((await this.fetchOnce()) === 0 && this.history.size === before) return;
    }
  }

  private async xread(blockMs?: number): Promise<number> {
    const streams = this.options.streams;
    const group = this.options.group;
    let reply: XReadReply;
    if (group) {
      const ids = streams.map((s) => (this.history.has(s) ? this.fetched.get(s)! : ">"));
      const args: (string | number)[] = ["GROUP", group.name, group.consumer, "COUNT", this.options.count];
      // Pending entries are there or not: only new ones are worth waiting for.
      if (blockMs !== undefined && this.history.size === 0) args.push("BLOCK", blockMs);
      reply = (await this.reader.call("XREADGROUP", ...args, "STREAMS", ...streams, ...ids)) as XReadReply;
      for (const [stream, rows] of reply ?? []) if (this.history.has(stream) && rows.length === 0) this.history.delete(stream);
    } else {
      const ids = streams.map((s) => this.fetched.get(s)!);
      const args: (string | number)[] = ["COUNT", this.options.count];
      if (blockMs !== undefined) args.push("BLOCK", blockMs);
      reply = (await this.reader.call("XREAD", ...args, "STREAMS", ...streams, ...ids)) as XReadReply;
    }
    let added = 0;
    for (const [stream, rows] of reply ?? []) {
      for (const [id, flat] of rows) {
        // A pending entry deleted since (XDEL) comes back without fields: nothing to process.
        if (flat === null) {
          this.fetched.set(stream, id);
          continue;
        }
        this.buffer.push({ stream, id, fields: toFields(flat) });
        this.fetched.set(stream, id);
        added++;
      }
    }
    if (added > 0) this.wake();
    return added;
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  private async run(): Promise<void> {
    while (this.running) {
      try {
        await this.fetchOnce(this.options.blockMs ?? 100);
      } catch (err) {
        if (!this.running) break;
        this.options.onError?.(err as Error);
        // ioredis reconnects by itself; pause briefly so a down server is not hammered.
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    this.wake();
  }

  /** Remove and return up to `max` buffered entries per stream, in ID order per stream. */
  take(max = Infinity): RedisStreamEntry[] {
    if (max === Infinity) return this.buffer.splice(0);
    const taken: RedisStreamEntry[] = [];
    const kept: RedisStreamEntry[] = [];
    const per = new Map<string, number>();
    for (const e of this.buffer) {
      const n = per.get(e.stream) ?? 0;
      if (n < max) {
        taken.push(e);
        per.set(e.stream, n + 1);
      } else kept.push(e);
    }
    this.buffer.splice(0, this.buffer.length, ...kept);
    return taken;
  }
}

// Atomic and idempotent per batch: if the stream already holds an entry of this batch time or a later one,
// the batch was written before (all of it: a script runs whole) and is skipped. IDs are `<batchTime>-<n>`.
const WRITE_BATCH_LUA = `
local key = KEYS[1]
local t = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local maxlen = ARGV[3]
local info = redis.pcall('XINFO', 'STREAM', key)
if type(info) == 'table' and info.err == nil then
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then
      local ms = tonumber(string.match(info[i + 1], '^(%d+)'))
      if ms >= t then return -1 end
    end
  end
end
local idx = 4
for e = 0, n - 1 do
  local nf = tonumber(ARGV[idx]); idx = idx + 1
  local args = {}
  if maxlen ~= '' then
    args = {'XADD', key, 'MAXLEN', '~', maxlen, string.format('%d-%d', t, e)}
  else
    args = {'XADD', key, string.format('%d-%d', t, e)}
  end
  for j = 1, nf * 2 do args[#args + 1] = ARGV[idx]; idx = idx + 1 end
  redis.call(unpack(args))
end
return n
`;

/**
 * Write one batch's entries to `stream` with IDs `<batchTime>-0`, `<batchTime>-1`, ... atomically. Returns
 * the number written, or -1 when the batch (or a later one) is already there: a replayed batch adds nothing.
 * The stream must be written only by this sink, since Redis requires IDs to increase.
 */
export async function writeBatchIdempotent(
  redis: Redis,
  stream: string,
  batchTime: number,
  entries: Record<string, string>[],
  maxLen?: number,
): Promise<number> {
  if (entries.length === 0) return 0;
  const argv: string[] = [String(batchTime), String(entries.length), maxLen === undefined ? "" : String(maxLen)];
  for (const fields of entries) {
    const keys = Object.keys(fields);
    argv.push(String(keys.length));
    for (const k of keys) argv.push(k, fields[k]!);
  }
  return (await redis.eval(WRITE_BATCH_LUA, 1, stream, ...argv)) as number;
}

// ---- DStreams -----------------------------------------------------------------------------------

/** A Redis source or sink could not do its job (the message says which stream and why). */
export class RedisStreamError extends StreamingError {}

export interface RedisStreamOptions extends RedisConnectionOptions {
  /** The stream key(s) to read. */
  streams: string | string[];
  /**
   * Where to start when there is no checkpoint: an entry ID (read what follows it), "0" (everything), or
   * "$" (only entries added after start; default, like Kafka's "latest").
   */
  startId?: string;
  /** At most this many entries per stream per batch (the rest wait for later batches). Default: no limit. */
  count?: number;
  /** Stable name for checkpoints (default `redis#<id>`). */
  name?: string;
  /** Entries fetched per XREAD round (default 1000). */
  fetchCount?: number;
  /** XREAD BLOCK timeout while idle (default 50 ms). */
  blockMs?: number;
  /**
   * Read as a consumer of this consumer group (XREADGROUP), created at startId if missing. Entries are
   * acknowledged (XACK) once a durable checkpoint covers them, or when their batch completes without
   * checkpointing; after a crash this consumer's unacknowledged entries are read again from the position.
   */
  group?: string;
  /** The consumer's name within `group` (default "streambook"); keep it stable across restarts. */
  consumer?: string;
}

/** The checkpointed position: the last entry ID per stream that a batch took. */
export interface RedisStreamPosition {
  lastIds: Record<string, string>;
}

/**
 * Entries of Redis streams, read with XREAD from explicit IDs (no consumer group: the position is ours
 * and lives in the checkpoint). A background loop fetches into a buffer; batch T takes what is buffered
 * (at most `count` per stream), so recovery resumes exactly after the last entry a checkpointed batch took.
 * Each batch's selection (its last ID per stream) goes to the checkpointer's batch-input log, so a batch
 * generated again after a crash reads exactly its range with XRANGE, not what has arrived since.
 */
export class RedisInputDStream extends InputDStream<RedisStreamEntry> implements PartitionedInput {
  readonly streams: string[];
  private readonly ctx: StreamingContext;
  private readonly conn: RedisConnectionOptions;
  private readonly startId: string;
  private readonly perBatch: number;
  private readonly fetchCount: number;
  private readonly blockMs: number;
  private redis: Redis | undefined;
  private writer: Redis | undefined;
  private fetcher: RedisStreamFetcher | undefined;
  private readonly group: { name: string; consumer: string } | undefined;
  /** Group mode: IDs delivered and not yet acknowledged, per stream, in order. */
  private readonly unacked = new Map<string, string[]>();
  /** Group mode: the position after each generated batch, until it completes. */
  private readonly batchPositions = new Map<number, Record<string, string>>();
  /** Last ID taken into a batch, per stream (undefined before start without a restored position). */
  private taken = new Map<string, string>();
  /** The position after each generated batch (its selection: the last ID it took per stream), until it completes. */
  private readonly selected = new Map<number, Record<string, string>>();
  /** Recovery: the logged selection of each batch generated before the crash, until start() reads it. */
  private readonly replay = new Map<number, Record<string, string>>();
  /** Recovery: those batches' entries, read exactly by start() with XRANGE, until each is generated again. */
  private readonly replayed = new Map<number, { items: RedisStreamEntry[]; upTo: Record<string, string> }>();
  errors = 0;

  constructor(ssc: StreamingContext, options: RedisStreamOptions) {
    super(ssc, { name: options.name });
    this.ctx = ssc;
    this.streams = Array.isArray(options.streams) ? options.streams.slice() : [options.streams];
    if (this.streams.length === 0) throw new RedisStreamError("redisStream: give at least one stream key in `streams`");
    this.conn = { url: options.url, host: options.host, port: options.port, redisOptions: options.redisOptions };
    this.startId = options.startId ?? "$";
    this.perBatch = options.count !== undefined && options.count > 0 ? options.count : Infinity;
    this.fetchCount = options.fetchCount ?? 1000;
    this.blockMs = options.blockMs ?? 50;
    this.group = options.group !== undefined ? { name: options.group, consumer: options.consumer ?? "streambook" } : undefined;
    if (this.group) {
      ssc.addBatchCompletionHook((time) => {
        const pos = this.batchPositions.get(time);
        for (const t of this.batchPositions.keys()) if (t <= time) this.batchPositions.delete(t);
        // Without checkpoints nothing else can replay an entry: acknowledge once its batch is done.
        if (pos && this.ctx.checkpointDir === undefined) this.queueAck(pos);
      });
    }
  }

  async start(): Promise<void> {
    if (this.fetcher) return;
    const redis = connect(this.conn);
    // A failed command is retried after reconnecting; these errors are reported, never thrown.
    redis.on("error", () => {});
    this.redis = redis;
    if (this.group) {
      this.writer = redis.duplicate();
      this.writer.on("error", () => {});
    }
    await this.prepareStreams(redis, this.assignedPartitions());
    // Batches generated before a crash take exactly their logged ranges, read now; the fetcher goes on after them.
    const from = await this.readReplays(redis);
    await this.startFetcher(redis, from);
  }

  /** Positions (and the consumer group) of streams about to be read: a stream the checkpoint does not know starts at startId. */
  private async prepareStreams(redis: Redis, streams: string[]): Promise<void> {
    for (const s of streams) {
      if (this.group) {
        // The group's own cursor (last delivered) starts at startId; our position re-reads pending entries.
        try {
          await redis.call("XGROUP", "CREATE", s, this.group.name, this.startId, "MKSTREAM");
        } catch (e) {
          if (!/BUSYGROUP/.test((e as Error).message)) throw e;
        }
        if (!this.taken.has(s)) this.taken.set(s, "0-0");
        // Entries up to the position are in checkpointed state; their XACK may have been lost in a crash.
        const upTo = this.taken.get(s)!;
        if (compareIds(upTo, "0-0") <= 0) continue;
        for (let round = 0; round < 1000; round++) {
          const rows = (await redis.xpending(s, this.group.name, "-", upTo, 1000, this.group.consumer)) as [string, ...unknown[]][];
          if (rows.length === 0) break;
          await redis.xack(s, this.group.name, ...rows.map((r) => r[0]));
        }
        continue;
      }
      if (!this.taken.has(s)) this.taken.set(s, await resolveStartId(redis, s, this.startId));
    }
  }

  /** A fetcher of the assigned streams from `from`, caught up before the first batch (a recovered run's first batches read as they were). */
  private async startFetcher(redis: Redis, from: ReadonlyMap<string, string>): Promise<void> {
    const fetcher = new RedisStreamFetcher(
      redis,
      { streams: this.assignedPartitions(), count: this.fetchCount, blockMs: this.blockMs, onError: (e) => this.report(e), group: this.group },
      from,
    );
    this.fetcher = fetcher;
    await fetcher.sync().catch((e: unknown) => this.report(e as Error));
    fetcher.start();
  }

  // ---- PartitionedInput: each stream key is a partition ---------------------------------------

  private assigned: Set<string> | undefined;
  private reassigning: Promise<void> = Promise.resolve();

  /** The stream keys, in order (each is a partition with its own position). */
  partitions(): string[] {
    return this.streams.slice().sort(comparePartitions);
  }

  /**
   * Reads only these stream keys from now on (undefined: all). Entries fetched from the others and not yet in a
   * batch are dropped (their positions stay where the last batch left them); a running fetcher is replaced.
   */
  assignPartitions(ids: readonly string[] | undefined): void {
    const unknown = (ids ?? []).filter((id) => !this.streams.includes(id));
    if (unknown.length > 0) throw new RedisStreamError(`redisStream ${this.name}: ${unknown.join(", ")} not among its streams (${this.streams.join(", ")})`);
    this.assigned = ids === undefined ? undefined : new Set(ids);
    if (!this.redis) return;
    this.reassigning = this.reassigning.then(async () => {
      const redis = this.redis;
      const old = this.fetcher;
      if (!redis || !old) return;
      this.fetcher = undefined;
      await old.stop();
      try {
        await this.prepareStreams(redis, this.assignedPartitions());
      } catch (e) {
        this.report(e as Error);
      }
      const from = new Map(this.taken);
      for (const r of this.replayed.values()) for (const [st, id] of Object.entries(r.upTo)) from.set(st, id);
      if (this.redis === redis) await this.startFetcher(redis, from);
    });
  }

  assignedPartitions(): string[] {
    return this.partitions().filter((s) => this.assigned === undefined || this.assigned.has(s));
  }

  /** Resolves once the last assignPartitions() has taken effect. */
  async reassigned(): Promise<void> {
    await this.reassigning;
  }

  partitionStatus(): PartitionStatus[] {
    const buffered = new Map<string, number>();
    for (const e of this.fetcher?.buffer ?? []) buffered.set(e.stream, (buffered.get(e.stream) ?? 0) + 1);
    return this.partitions().map((s) => {
      const assigned = this.assigned === undefined || this.assigned.has(s);
      const n = buffered.get(s) ?? 0;
      // The fetcher reads continuously, so what waits for a batch is what is buffered (XREAD cannot count further).
      return { partition: s, position: this.taken.get(s), lag: assigned && this.fetcher ? n : undefined, buffered: n, assigned };
    });
  }

  /**
   * Reads each restored batch's entries, (previous position, logged last ID] per stream, with XRANGE: exactly
   * what it took before the crash, whatever the fetcher would find now. Returns the position after the last.
   */
  private async readReplays(redis: Redis): Promise<Map<string, string>> {
    const cursor = new Map(this.taken);
    for (const t of [...this.replay.keys()].sort((a, b) => a - b)) {
      const upTo = this.replay.get(t)!;
      const items: RedisStreamEntry[] = [];
      for (const s of this.streams) {
        const last = upTo[s];
        const after = cursor.get(s);
        if (last === undefined || after === undefined || compareIds(last, after) <= 0) continue;
        const rows = await readRange(redis, s, after, last, this.fetchCount);
        if (rows[rows.length - 1]?.id !== last) {
          // Trimmed (MAXLEN) or deleted since: the batch can only be rebuilt from what is left.
          this.report(
            new RedisStreamError(
              `batch ${t} is rebuilt after recovery, but entries of stream "${s}" in (${after}, ${last}] are no longer in Redis ` +
                `(trimmed or deleted); its output may differ from the first run's. Trim input streams only behind the checkpoint`,
            ),
          );
        }
        for (const e of rows) items.push(e);
        cursor.set(s, last);
      }
      this.replayed.set(t, { items, upTo });
    }
    this.replay.clear();
    return cursor;
  }

  async stop(): Promise<void> {
    const f = this.fetcher;
    const r = this.redis;
    const w = this.writer;
    this.fetcher = undefined;
    this.redis = undefined;
    this.writer = undefined;
    await f?.stop();
    r?.disconnect();
    await this.acks;
    w?.disconnect();
    // Entries fetched but not taken are read again from the position after a restart.
  }

  private report(e: Error): void {
    this.errors++;
    this.ctx.notifyListeners("onReceiverError", {
      receiverInfo: {
        streamId: this.id,
        name: this.name,
        active: true,
        lastErrorMessage: `redisStream ${this.streams.join(",")}: ${e.message}; reconnecting`,
        lastError: errorMessage(e),
        lastErrorTime: this.ctx.now(),
      },
    });
  }

  /** Waits until everything in Redis now is buffered (tests and manual-clock programs call it before advance()). */
  async sync(): Promise<void> {
    await this.fetcher?.sync();
  }

  /** Entries fetched and not yet taken by a batch. */
  buffered(): number {
    return this.fetcher?.buffer.length ?? 0;
  }

  compute(time: number): RDD<RedisStreamEntry> | undefined {
    let items: RedisStreamEntry[];
    let upTo: Record<string, string> | undefined;
    if (this.replayed.size > 0) {
      // Recovery: a batch generated before the crash takes exactly its logged range. (One not generated
      // again, which recovery does not do, joins the next batch rather than being lost.) The buffer starts
      // after the last replayed batch, so a batch before it that is not in the log takes nothing.
      items = [];
      for (const t of [...this.replayed.keys()].sort((a, b) => a - b)) {
        if (t > time) break;
        const r = this.replayed.get(t)!;
        this.replayed.delete(t);
        for (const e of r.items) items.push(e);
        upTo = { ...upTo, ...r.upTo };
      }
    } else {
      items = this.fetcher ? this.fetcher.take(this.perBatch).filter((e) => this.assigned === undefined || this.assigned.has(e.stream)) : [];
    }
    const before = new Map(this.taken);
    // Stream by stream, each in ID order: the batch's order is a function of its selection, so a replay matches.
    if (this.streams.length > 1) items = this.inStreamOrder(items);
    for (const e of items) {
      this.taken.set(e.stream, e.id);
      if (this.group) {
        const list = this.unacked.get(e.stream) ?? [];
        list.push(e.id);
        this.unacked.set(e.stream, list);
      }
    }
    // The logged position, even where entries of the range are gone from Redis since.
    if (upTo) for (const [s, id] of Object.entries(upTo)) if (this.streams.includes(s)) this.taken.set(s, id);
    if (this.group) this.batchPositions.set(time, Object.fromEntries(this.taken));
    this.selected.set(time, Object.fromEntries(this.taken));
    const counts = new Map<string, number>();
    for (const e of items) counts.set(e.stream, (counts.get(e.stream) ?? 0) + 1);
    const status = new Map(this.partitionStatus().map((p) => [p.partition, p]));
    const ranges: PartitionRange[] = [];
    for (const st of this.partitions()) {
      const until = this.taken.get(st);
      if (until === undefined || (!counts.has(st) && !(this.assigned === undefined || this.assigned.has(st)))) continue;
      ranges.push({ partition: st, from: before.get(st) ?? until, until, count: counts.get(st) ?? 0, lag: status.get(st)?.lag });
    }
    this.reportInput(time, items.length, {
      partitions: ranges,
      metadata: { Description: ranges.map((r) => `stream: ${r.partition}\tIDs: (${r.from}, ${r.until}]`).join("\n") },
    });
    return makeRDD(this.ctx, items);
  }

  private inStreamOrder(items: RedisStreamEntry[]): RedisStreamEntry[] {
    const by = new Map<string, RedisStreamEntry[]>(this.streams.map((s) => [s, []]));
    for (const e of items) by.get(e.stream)?.push(e);
    return this.streams.flatMap((s) => by.get(s)!);
  }

  /** What batch `time` took: the last entry ID per stream (logged by the checkpointer before its output runs). */
  selectionFor(time: number): Record<string, string> | undefined {
    return this.selected.get(time);
  }

  /** Recovery (before start): batch `time` takes exactly the entries up to `selection`'s IDs after the previous batch's. */
  restoreSelection(time: number, selection: unknown): void {
    if (selection === null || typeof selection !== "object" || Array.isArray(selection)) return;
    const upTo = selectionIds(selection);
    if (this.fetcher) throw new RedisStreamError(`redisStream ${this.name}: restoreSelection after start; recover before starting the context`);
    this.replay.set(time, upTo);
  }

  /** Recovery (before start): batch `time` took entries up to `selection`'s IDs and completed; the position moves past them. */
  skipSelection(_time: number, selection: unknown): void {
    if (this.fetcher) throw new RedisStreamError(`redisStream ${this.name}: skipSelection after start; recover before starting the context`);
    for (const [s, id] of Object.entries(selectionIds(selection))) {
      const had = this.taken.get(s);
      if (had === undefined || compareIds(id, had) > 0) this.taken.set(s, id);
    }
  }

  override clearMetadata(time: number): void {
    super.clearMetadata(time);
    // Batch `time` is done: its selection was logged when it was generated, if it was to be.
    for (const t of this.selected.keys()) if (t <= time) this.selected.delete(t);
  }

  override hasPendingData(): boolean {
    return this.buffered() > 0 || this.replayed.size > 0;
  }

  checkpointPosition(): RedisStreamPosition {
    return { lastIds: Object.fromEntries(this.taken) };
  }

  private acks: Promise<void> = Promise.resolve();

  /** Acknowledgements run one after another; pendingCount() waits for them. */
  private queueAck(upTo: Record<string, string>): void {
    this.acks = this.acks.then(() => this.acknowledge(upTo));
  }

  /** Group mode: XACK every delivered entry up to `upTo` (per stream). */
  private async acknowledge(upTo: Record<string, string>): Promise<void> {
    if (!this.group) return;
    // The last checkpoint of a stop() is written after the source stopped: acknowledge on a short-lived connection.
    const own = this.writer === undefined;
    const w = this.writer ?? connect(this.conn);
    if (own) w.on("error", () => {});
    try {
      await this.acknowledgeOn(w, upTo);
    } finally {
      if (own) w.disconnect();
    }
  }

  private async acknowledgeOn(w: Redis, upTo: Record<string, string>): Promise<void> {
    if (!this.group) return;
    for (const [stream, last] of Object.entries(upTo)) {
      const list = this.unacked.get(stream);
      if (!list) continue;
      let n = 0;
      while (n < list.length && compareIds(list[n]!, last) <= 0) n++;
      if (n === 0) continue;
      const ids = list.splice(0, n);
      try {
        for (let i = 0; i < ids.length; i += 1000) await w.xack(stream, this.group.name, ...ids.slice(i, i + 1000));
      } catch (e) {
        // Unacknowledged entries are only re-read after a restart, and the position skips them: harmless.
        this.report(e as Error);
      }
    }
  }

  /** Called by the checkpointer once a checkpoint holding `position` is durable. */
  onCheckpointDurable(position: unknown): void {
    const p = position as Partial<RedisStreamPosition> | undefined;
    if (this.group && p?.lastIds) this.queueAck(p.lastIds);
  }

  /** Group mode: entries delivered to this consumer and not acknowledged yet (XPENDING count). */
  async pendingCount(): Promise<number> {
    if (!this.group || !this.redis) return 0;
    await this.acks;
    let n = 0;
    for (const s of this.streams) {
      const r = (await this.redis.xpending(s, this.group.name)) as [number, ...unknown[]];
      n += Number(r[0]);
    }
    return n;
  }

  /**
   * In a group (engine/group): each stream key is one partition, read by log time (the entry IDs' clock).
   * A consumer group (`group`) and `count` are single-process options; a group ignores them.
   */
  groupSource(): GroupSourceSpec {
    return { kind: "redis", partitionIds: this.streams.slice(), connection: { ...this.conn }, startId: this.startId };
  }

  restorePosition(position: unknown): void {
    const p = position as Partial<RedisStreamPosition> | undefined;
    if (!p || typeof p.lastIds !== "object" || p.lastIds === null) return;
    this.taken = new Map(Object.entries(p.lastIds));
    if (this.fetcher) throw new RedisStreamError(`redisStream ${this.name}: restorePosition after start; recover before starting the context`);
  }
}

/** The last IDs per stream of a logged selection (malformed entries are ignored). */
function selectionIds(selection: unknown): Record<string, string> {
  const upTo: Record<string, string> = {};
  if (selection === null || typeof selection !== "object" || Array.isArray(selection)) return upTo;
  for (const [s, id] of Object.entries(selection as Record<string, unknown>)) if (typeof id === "string" && /^\d+(-\d+)?$/.test(id)) upTo[s] = id;
  return upTo;
}

/** ssc.redisStream(...) until the context has it: a DStream of Redis stream entries. */
export function redisStream(ssc: StreamingContext, options: RedisStreamOptions): RedisInputDStream {
  return new RedisInputDStream(ssc, options);
}

export interface RedisSinkOptions<T> extends RedisConnectionOptions {
  /** The stream key written to; only this sink may write to it (entry IDs are `<batchTime>-<n>`). */
  stream: string;
  /** A record's fields. Default: pairs give { key, value }, objects their fields, others { value } (non-strings as JSON). */
  toFields?: (record: T) => Record<string, string>;
  /** Trim the stream to about this many entries (XADD MAXLEN ~). */
  maxLen?: number;
}

function fieldString(v: unknown): string {
  return typeof v === "string" ? v : JSON.stringify(v) ?? String(v);
}

export function defaultFields(r: unknown): Record<string, string> {
  if (Array.isArray(r) && r.length === 2) return { key: fieldString(r[0]), value: fieldString(r[1]) };
  if (r !== null && typeof r === "object") {
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(r as Record<string, unknown>)) out[k] = fieldString(v);
    return out;
  }
  return { value: fieldString(r) };
}

/**
 * Writes each batch of `dstream` to a Redis stream, atomically and idempotently per batch time: entry IDs
 * are `<batchTime>-0`, `<batchTime>-1`, ... written by one script that skips a batch already there. A batch
 * replayed after recovery therefore adds nothing.
 * In a group, each partition writes its own stream `<stream>:<partition>`, under the partition's epoch: a
 * write by an instance that lost the partition is refused (its entries carry `w`, the writer, and `e`, the epoch).
 */
export function saveToRedis<T>(dstream: DStream<T>, options: RedisSinkOptions<T>): void {
  let redis: Redis | undefined;
  const toFields = options.toFields ?? defaultFields;
  dstream.ssc.addStreamingListener({
    onStreamingStopped: () => {
      redis?.disconnect();
      redis = undefined;
    },
  });
  const connection: RedisConnectionOptions = { url: options.url, host: options.host, port: options.port, redisOptions: options.redisOptions };
  const write = async (rdd: RDD<T>, time: number): Promise<void> => {
    const rows = rdd.collect().map((r) => toFields(r));
    const task = groupTaskOf(rdd);
    if (task) {
      await task.writeRedisOutput(connection, `${options.stream}:${task.partition}`, time, rows, options.maxLen);
      return;
    }
    if (!redis) {
      redis = connect(options);
      redis.on("error", () => {});
    }
    await writeBatchIdempotent(redis, options.stream, time, rows, options.maxLen);
  };
  dstream.foreachRDD(write, { name: `saveToRedis(${options.stream})`, [PARTITIONED_SINK]: connection } as NameOption);
}
