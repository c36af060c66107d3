// Partitioned logs as input streams: the engine's notion of a partition, and the direct-stream machinery
// (Spark's DirectKafkaInputDStream) that the Kafka and JetStream sources share.
//
// A partitioned input (PartitionedInput) is an input stream whose log is split into partitions with stable
// string ids: "clicks-3" for partition 3 of Kafka topic "clicks", the stream name for a JetStream stream,
// the stream key for Redis. The ids are the same across restarts, so the positions in checkpoints and the
// ranges in the batch-input log are keyed by them. Each batch reports, per partition, the range it read
// and the lag behind the log's end (BatchInfo.streamIdToInputInfo, see listener.ts), which ssc.ui() shows.
// An input can be restricted to a subset of its partitions (assignPartitions): it then reads and advances
// only those, and keeps the positions of the others untouched in its checkpoints, so whoever owns the
// other partitions (another instance of a group) can carry on from them.
//
// DirectLogInputDStream implements it for logs addressed by numeric positions (Kafka offsets, JetStream
// sequences): a fetcher loop (the subclass's) fills one buffer per assigned partition; batch T takes from
// each buffer (at most maxRatePerPartition x batch seconds, or its share of the backpressure estimate),
// and its selection, [from, until) per partition, goes to the checkpointer's batch-input log before its
// output runs. A batch generated again after a crash reads exactly its logged ranges (readRange), never
// what has arrived since. Positions live in checkpoints (checkpointPosition/restorePosition).
import type { StreamingContext } from "../context.js";
import { errorMessage, StreamingError } from "../errors.js";
import type { PartitionPosition, PartitionRange } from "../listener.js";
import { RDD } from "../rdd.js";
import { InputDStream } from "./input.js";
import { PIDRateEstimator, RateController, type PIDRateEstimatorOptions } from "./ratecontrol.js";

export type { PartitionPosition, PartitionRange } from "../listener.js";

/** One partition of a partitioned input, now. */
export interface PartitionStatus {
  partition: string;
  /** The position the next batch starts at (Kafka offset, JetStream sequence), or the last entry ID taken (Redis). */
  position?: PartitionPosition;
  /** Records after `position` in the log, as far as the source knows. */
  lag?: number;
  /** Records fetched and waiting for a batch. */
  buffered: number;
  /** Read by this input (see assignPartitions). */
  assigned: boolean;
}

/** An input stream over a partitioned log (see the comment at the top of this file). */
export interface PartitionedInput {
  /** Every partition id known now (assigned or not), in order; stable across restarts. */
  partitions(): string[];
  /**
   * Read only these partitions from the next batch on (undefined: all, the default). The positions of the
   * others stay as they are, in memory and in checkpoints.
   */
  assignPartitions(ids: readonly string[] | undefined): void;
  /** The partitions read now. */
  assignedPartitions(): string[];
  /** Per partition: position, lag and buffered records now. */
  partitionStatus(): PartitionStatus[];
}

export function isPartitionedInput(input: unknown): input is PartitionedInput & InputDStream<unknown> {
  return (
    input instanceof InputDStream &&
    typeof (input as Partial<PartitionedInput>).partitions === "function" &&
    typeof (input as Partial<PartitionedInput>).assignPartitions === "function"
  );
}

/** "clicks-10" after "clicks-9": ids in natural order. */
export function comparePartitions(a: string, b: string): number {
  return a.localeCompare(b, "en", { numeric: true });
}

/** A partitioned source could not do its job; the message says which log and what to do. */
export class PartitionedSourceError extends StreamingError {}

export interface DirectLogOptions {
  /** Stable name for checkpoints and the batch-input log (default `<kind>#<id>`). */
  name?: string;
  /** At most this many records per second from each partition (Spark's spark.streaming.kafka.maxRatePerPartition). */
  maxRatePerPartition?: number;
  /** Spark's PID rate estimator bounds each batch (default: the context's `backpressure`). */
  backpressure?: boolean;
  /** With backpressure, the total rate before the estimator has learnt one (Spark's backpressure.initialRate). */
  initialRate?: number;
  /** PID gains (Spark's defaults: 1.0, 0.2, 0.0, minRate 100). */
  pid?: PIDRateEstimatorOptions;
  /** Records fetched ahead per partition before fetching pauses (default: 200,000 shared by the partitions, at least 1000 each; 4 batches' worth under a rate limit). */
  bufferPerPartition?: number;
  /** How often the set of partitions is listed again, picking up new ones (default 2000 ms). */
  discoveryIntervalMs?: number;
}

/** A batch's selection: [from, until) per partition. */
type Selection = Record<string, [number, number]>;

/** Records fetched from one partition and not yet in a batch. */
class PartitionBuffer<R> {
  private recs: R[] = [];
  private pos: number[] = [];
  private head = 0;
  /** Position after the last item fetched (records, skipped records, markers): where the next fetch starts. */
  next: number;
  /** Records in the log after `next`, as the last fetch reported (undefined: unknown). */
  unfetched: number | undefined;
  /** The log's end position, as the last fetch reported (undefined: unknown). */
  logEnd: number | undefined;

  constructor(next: number) {
    this.next = next;
  }

  get size(): number {
    return this.recs.length - this.head;
  }

  append(records: readonly R[], positions: readonly number[], next: number): void {
    for (let i = 0; i < records.length; i++) {
      this.recs.push(records[i]!);
      this.pos.push(positions[i]!);
    }
    this.next = next;
  }

  /** Takes up to `limit` records; `until` is the position of the first record left (or `next` if none). */
  take(limit: number): { records: R[]; until: number } {
    const n = Math.min(limit, this.size);
    const records = this.recs.slice(this.head, this.head + n);
    this.head += n;
    const until = this.head < this.recs.length ? this.pos[this.head]! : this.next;
    if (this.head === this.recs.length) {
      this.recs = [];
      this.pos = [];
      this.head = 0;
    } else if (this.head > 4096 && this.head * 2 > this.recs.length) {
      this.recs = this.recs.slice(this.head);
      this.pos = this.pos.slice(this.head);
      this.head = 0;
    }
    return { records, until };
  }
}

/** What a subclass's fetcher hands over for one partition. */
export interface FetchedRecords<R> {
  partition: string;
  /** The position the fetch started at (must equal the buffer's `next`, else the result is stale and dropped). */
  from: number;
  records: readonly R[];
  /** Each record's position (same length as records). */
  positions: readonly number[];
  /** Position after everything this fetch read, skipped items included. */
  next: number;
  /** The log's end position (Kafka's high watermark), if known. */
  logEnd?: number;
  /** Records in the log after `next`, if known (JetStream's pending count). */
  unfetched?: number;
}

/**
 * The direct-stream base (see the top of this file). A subclass connects (openLog/closeLog), lists its
 * partitions, resolves starting positions, runs a fetcher loop that hands records to fetched(), and reads an
 * exact range again for recovery (readRange).
 */
export abstract class DirectLogInputDStream<R> extends InputDStream<R> implements PartitionedInput {
  /** Next position to take, per partition (the batch after the last generated one starts here). */
  private readonly positions = new Map<string, number>();
  private readonly known = new Set<string>();
  private assigned: Set<string> | undefined;
  private readonly buffers = new Map<string, PartitionBuffer<R>>();
  /** Each generated batch's selection, until it completes (the checkpointer logs it). */
  private readonly selected = new Map<number, Selection>();
  /** Recovery: logged selections of batches generated before the crash, until start() reads them. */
  private readonly replay = new Map<number, Selection>();
  /** Recovery: those batches' records, read exactly, until each batch is generated again. */
  private readonly replayed = new Map<number, { selection: Selection; records: Map<string, R[]> }>();
  /** A listing of partitions has happened or positions were restored: partitions seen later are new ones. */
  private listedOnce = false;
  private running = false;
  private generation = 0;
  private supervisor: Promise<void> | undefined;
  private opened = false;
  private lastDiscovery = 0;
  private readonly discoveryIntervalMs: number;
  private readonly bufferOption: number | undefined;
  private maxRatePerPartition: number | undefined;
  private readonly initialRate: number | undefined;
  private estimatedRate: number | undefined;
  readonly rateController: RateController | undefined;
  private wakers: (() => void)[] = [];
  /** Fetches that moved a buffer on (the supervisor's backoff restarts after one). */
  private fetchCount = 0;
  private skippedReports = 0;
  /** Errors reported since creation (tests, the panel). */
  errors = 0;
  /** The last error reported, as text. */
  lastErrorMessage: string | undefined;
  /** Records skipped because they could not be decoded or were too large. */
  skippedRecords = 0;

  protected constructor(ssc: StreamingContext, options: DirectLogOptions) {
    super(ssc, { name: options.name });
    this.discoveryIntervalMs = options.discoveryIntervalMs ?? 2000;
    this.bufferOption = options.bufferPerPartition;
    this.maxRatePerPartition = options.maxRatePerPartition !== undefined && options.maxRatePerPartition > 0 ? options.maxRatePerPartition : undefined;
    this.initialRate = options.initialRate;
    if (options.backpressure ?? ssc.conf.backpressure) {
      const estimator = new PIDRateEstimator(ssc.batchDuration, options.pid);
      this.rateController = new RateController(estimator, (rate) => {
        this.estimatedRate = rate;
      });
      ssc.addStreamingListener(this.rateController);
    }
  }

  // ---- what a subclass implements ------------------------------------------------------------

  /** Connects; throws a fatal error (isFatal) for what retrying cannot fix, such as an unknown topic. */
  protected abstract openLog(): Promise<void>;
  /** Disconnects (also after an error, before the next openLog). */
  protected abstract closeLog(): Promise<void>;
  /** The partition ids of the log now. */
  protected abstract listPartitions(): Promise<string[]>;
  /** Where a partition starts: `configured` for the partitions of the first listing (startingOffsets), else the earliest. */
  protected abstract startingPosition(partition: string, configured: boolean): Promise<number>;
  /** Fetches while isFetching(generation) holds, handing records to fetched(); returns when it no longer holds; throws on errors. */
  protected abstract runFetcher(generation: number): Promise<void>;
  /** Exactly the records of `partition` in [from, until) (skipping what decoding skips), for a batch generated again. */
  protected abstract readRange(partition: string, from: number, until: number): Promise<R[]>;
  /** The position each partition's buffer must reach to hold everything in the log now (for sync()). */
  protected abstract logEnds(partitions: string[]): Promise<Map<string, number>>;
  /** Errors that retrying cannot fix: reported and start() fails. */
  protected isFatal(_e: unknown): boolean {
    return false;
  }
  /** A readable name of the log for messages ("kafka clicks", "jetstream ORDERS"). */
  protected abstract describeLog(): string;
  /** The batch's RDD: one partition per log partition, in order (a subclass may return a richer RDD). */
  protected makeBatchRDD(parts: R[][], _ranges: PartitionRange[]): RDD<R> {
    return new RDD<R>(this.ssc.sc, { parts });
  }

  // ---- PartitionedInput ---------------------------------------------------------------------

  partitions(): string[] {
    return [...this.known].sort(comparePartitions);
  }

  assignPartitions(ids: readonly string[] | undefined): void {
    this.assigned = ids === undefined ? undefined : new Set(ids);
    // Records of partitions no longer read are fetched again by whoever reads them: drop them here.
    for (const p of [...this.buffers.keys()]) if (!this.isAssigned(p)) this.buffers.delete(p);
    this.wake();
  }

  assignedPartitions(): string[] {
    return this.partitions().filter((p) => this.isAssigned(p));
  }

  partitionStatus(): PartitionStatus[] {
    return this.partitions().map((p) => {
      const position = this.positions.get(p);
      const buf = this.buffers.get(p);
      return { partition: p, position, lag: position === undefined ? undefined : this.lagAfter(p, position), buffered: buf?.size ?? 0, assigned: this.isAssigned(p) };
    });
  }

  private isAssigned(p: string): boolean {
    return this.assigned === undefined || this.assigned.has(p);
  }

  // ---- for the subclass's fetcher ------------------------------------------------------------

  /** True while the fetcher of `generation` should go on. */
  protected isFetching(generation: number): boolean {
    return this.running && generation === this.generation;
  }

  /** Assigned partitions whose buffer has room, with the position to fetch from. */
  protected wantedPartitions(): { partition: string; from: number }[] {
    const out: { partition: string; from: number }[] = [];
    for (const p of this.assignedPartitions()) {
      const buf = this.bufferOf(p);
      if (buf && buf.size < this.bufferCap()) out.push({ partition: p, from: buf.next });
    }
    return out;
  }

  /** Hands fetched records over; stale results (the buffer moved meanwhile) are dropped. Returns false then. */
  protected fetched(f: FetchedRecords<R>): boolean {
    const buf = this.buffers.get(f.partition);
    if (!buf || !this.isAssigned(f.partition) || buf.next !== f.from) return false;
    buf.append(f.records, f.positions, f.next);
    if (f.next > f.from) this.fetchCount++;
    if (f.logEnd !== undefined) buf.logEnd = f.logEnd;
    buf.unfetched = f.unfetched ?? (f.logEnd !== undefined ? Math.max(0, f.logEnd - f.next) : buf.unfetched);
    this.wake();
    return true;
  }

  /** Resolves when a fetch adds records, the assignment changes or `ms` pass (an idle fetcher waits here). */
  protected idle(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.wakers.push(done);
    });
  }

  private wake(): void {
    const w = this.wakers;
    this.wakers = [];
    for (const f of w) f();
  }

  /** Lists partitions again if due (the fetcher calls it each round), picking up new ones. */
  protected async discoverIfDue(): Promise<void> {
    if (Date.now() - this.lastDiscovery < this.discoveryIntervalMs) return;
    await this.discover();
  }

  /** A record that cannot be given to a batch (malformed, too large): reported, and skipped by every read of its range. */
  protected skipped(partition: string, position: number, reason: string): void {
    this.skippedRecords++;
    // The first few individually, then every 1000th: a log full of bad records must not flood the cell.
    if (this.skippedReports < 10 || this.skippedRecords % 1000 === 0) {
      this.skippedReports++;
      this.report(new PartitionedSourceError(`skipped the record at ${partition}@${position}: ${reason} (${this.skippedRecords} skipped so far)`));
    }
  }

  /** Reports an error to the listeners (onReceiverError): the notebook shows it under the cell, ssc.ui() in its table. */
  protected report(e: unknown, retryInMs?: number): void {
    this.note(e, retryInMs);
    this.ssc.notifyListeners("onReceiverError", {
      receiverInfo: {
        streamId: this.id,
        name: this.name,
        active: this.opened,
        lastErrorMessage: this.lastErrorMessage,
        lastError: errorMessage(e),
        lastErrorTime: this.ssc.now(),
      },
    });
  }

  /** Counts an error and keeps it for ssc.ui(), without telling the listeners. */
  protected note(e: unknown, retryInMs?: number): void {
    this.errors++;
    // The error's class name leads, so it can be searched for (KafkaTopicNotFoundError, ...).
    this.lastErrorMessage = `${this.describeLog()}: ${errorMessage(e)}${retryInMs !== undefined ? `; retrying in ${retryInMs} ms` : ""}`;
  }

  // ---- lifecycle ----------------------------------------------------------------------------

  /**
   * Connects and lists the partitions; reads the ranges of batches to be generated again (waiting for the
   * log if it is down: those batches must get exactly their records); then starts the fetcher. A log that
   * cannot be reached is reported and retried in the background; a fatal error (unknown topic) is thrown.
   */
  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    const gen = ++this.generation;
    // Records fetched before a stop are fetched again from the positions.
    this.buffers.clear();
    try {
      await this.connect();
    } catch (e) {
      if (this.isFatal(e)) {
        this.running = false;
        this.report(e);
        throw e;
      }
      this.report(e, 100);
    }
    if (this.replay.size > 0) await this.readReplays(gen);
    this.supervisor = this.supervise(gen);
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.generation++;
    this.wake();
    await this.supervisor;
    this.supervisor = undefined;
    await this.disconnect();
    // The buffers stay: a graceful stop's last batches take from them.
  }

  private async connect(): Promise<void> {
    await this.openLog();
    this.opened = true;
    await this.discover();
    this.ssc.notifyListeners("onReceiverStarted", { receiverInfo: { streamId: this.id, name: this.name, active: true } });
  }

  private async disconnect(): Promise<void> {
    this.opened = false;
    try {
      await this.closeLog();
    } catch {
      // closing a broken connection: nothing more to do
    }
  }

  private async discover(): Promise<void> {
    const ids = await this.listPartitions();
    this.lastDiscovery = Date.now();
    const configured = !this.listedOnce;
    for (const p of ids) {
      this.known.add(p);
      if (!this.positions.has(p)) this.positions.set(p, await this.startingPosition(p, configured));
    }
    this.listedOnce = true;
    for (const p of this.assignedPartitions()) this.bufferOf(p);
    // Until a partition's first fetch answers, its lag is the distance to the log's end now.
    const unknown = this.assignedPartitions().filter((p) => this.buffers.get(p)?.unfetched === undefined && this.buffers.get(p)?.logEnd === undefined);
    if (unknown.length === 0) return;
    try {
      for (const [p, end] of await this.logEnds(unknown)) {
        const buf = this.buffers.get(p);
        if (buf && buf.unfetched === undefined && buf.logEnd === undefined) buf.unfetched = Math.max(0, end - buf.next);
      }
    } catch {
      // only the lag shown before the first fetch is unknown
    }
  }

  /** The buffer of an assigned partition with a position (created at that position). */
  private bufferOf(p: string): PartitionBuffer<R> | undefined {
    let buf = this.buffers.get(p);
    if (buf) return buf;
    const pos = this.positions.get(p);
    if (pos === undefined || !this.isAssigned(p)) return undefined;
    buf = new PartitionBuffer<R>(pos);
    this.buffers.set(p, buf);
    return buf;
  }

  /**
   * Runs the fetcher; after an error: reported, disconnected, reconnected after a backoff that doubles from
   * 100 ms to 2 s while errors come without records fetched in between.
   */
  private async supervise(gen: number): Promise<void> {
    let backoff = 100;
    let fetchedAtError = -1;
    while (this.isFetching(gen)) {
      try {
        if (!this.opened) await this.connect();
        await this.runFetcher(gen);
      } catch (e) {
        if (!this.isFetching(gen)) break;
        const repeated = this.fetchCount === fetchedAtError;
        if (!repeated) backoff = 100;
        fetchedAtError = this.fetchCount;
        // A connection that drops once after records flowed and comes back at the first retry is only noted
        // (ssc.ui() shows it); an error that repeats with nothing fetched in between goes under the cell too.
        if (repeated) this.report(e, backoff);
        else this.note(e, backoff);
        await this.disconnect();
        await this.idleFor(backoff, gen);
        backoff = Math.min(backoff * 2, 2000);
      }
    }
  }

  private async idleFor(ms: number, gen: number): Promise<void> {
    const end = Date.now() + ms;
    while (this.isFetching(gen) && Date.now() < end) await this.idle(end - Date.now());
  }

  /** Reads every restored batch's ranges, retrying (reported) until the log answers or the stream stops. */
  private async readReplays(gen: number): Promise<void> {
    let backoff = 100;
    while (this.isFetching(gen)) {
      try {
        if (!this.opened) await this.connect();
        for (const t of [...this.replay.keys()].sort((a, b) => a - b)) {
          const selection = this.replay.get(t)!;
          const records = new Map<string, R[]>();
          for (const p of Object.keys(selection).sort(comparePartitions)) {
            const [from, until] = selection[p]!;
            records.set(p, until > from ? await this.readRange(p, from, until) : []);
          }
          this.replayed.set(t, { selection, records });
          this.replay.delete(t);
        }
        // The fetcher goes on after the last replayed range of each partition.
        const after = new Map<string, number>();
        for (const { selection } of this.replayed.values()) for (const [p, [, until]] of Object.entries(selection)) after.set(p, Math.max(after.get(p) ?? until, until));
        for (const [p, at] of after) if (this.isAssigned(p)) this.buffers.set(p, new PartitionBuffer<R>(at));
        return;
      } catch (e) {
        if (!this.isFetching(gen)) return;
        this.report(e, backoff);
        await this.disconnect();
        await this.idleFor(backoff, gen);
        backoff = Math.min(backoff * 2, 2000);
      }
    }
  }

  /**
   * Waits until each assigned partition's buffer holds everything in the log now (or is full), so the next
   * batch takes a predictable amount: for tests and programs on the manual clock. Bounded by `timeoutMs`.
   */
  async sync(timeoutMs = 30_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    let targets: Map<string, number> | undefined;
    while (Date.now() < end) {
      // Only once the partitions are listed: between connecting and listing, there are none to wait for.
      if (this.opened && this.listedOnce) {
        try {
          targets ??= await this.logEnds(this.assignedPartitions());
        } catch {
          targets = undefined;
        }
      }
      if (targets && [...targets].every(([p, at]) => this.caughtUp(p, at))) return;
      await new Promise((r) => setTimeout(r, 5));
    }
    throw new PartitionedSourceError(`${this.describeLog()}: sync() did not catch up with the log within ${timeoutMs} ms (is it reachable?)`);
  }

  private caughtUp(p: string, at: number): boolean {
    if (!this.isAssigned(p)) return true;
    const buf = this.buffers.get(p);
    if (!buf) return false;
    return buf.next >= at || buf.size >= this.bufferCap();
  }

  // ---- batches ------------------------------------------------------------------------------

  /** Records buffered and not yet in a batch. */
  buffered(): number {
    let n = 0;
    for (const b of this.buffers.values()) n += b.size;
    return n;
  }

  override hasPendingData(): boolean {
    return this.buffered() > 0 || this.replayed.size > 0;
  }

  /** Changes maxRatePerPartition while running (undefined or <= 0 removes the limit). */
  setMaxRatePerPartition(recordsPerSecond: number | undefined): void {
    this.maxRatePerPartition = recordsPerSecond !== undefined && recordsPerSecond > 0 ? recordsPerSecond : undefined;
  }

  private bufferCap(): number {
    if (this.bufferOption !== undefined) return Math.max(1, this.bufferOption);
    const rate = this.maxRatePerPartition;
    if (rate !== undefined) return Math.max(1000, Math.ceil((4 * rate * this.ssc.batchDuration) / 1000));
    // About 200,000 records fetched ahead in all, however many partitions share them.
    return Math.max(1000, Math.floor(200_000 / Math.max(1, this.assigned?.size ?? this.known.size)));
  }

  /** Records after `position` in partition `p`'s log, as far as known. */
  private lagAfter(p: string, position: number): number | undefined {
    const buf = this.buffers.get(p);
    if (!buf) return undefined;
    if (buf.logEnd !== undefined) return Math.max(0, buf.logEnd - position);
    return buf.unfetched === undefined ? undefined : buf.size + buf.unfetched;
  }

  /** Spark's maxMessagesPerPartition: per partition, the most records this batch may take (Infinity: no limit). */
  private limits(partitions: string[]): Map<string, number> {
    const out = new Map<string, number>();
    const secs = this.ssc.batchDuration / 1000;
    const latest = this.rateController ? (this.estimatedRate ?? this.initialRate) : undefined;
    const max = this.maxRatePerPartition;
    if (latest !== undefined && latest > 0) {
      // The estimate is shared in proportion to each partition's lag, as Spark does.
      const lags = partitions.map((p) => Math.max(0, this.lagAfter(p, this.positions.get(p)!) ?? this.buffers.get(p)?.size ?? 0));
      const total = lags.reduce((a, b) => a + b, 0);
      partitions.forEach((p, i) => {
        const share = total > 0 ? (lags[i]! / total) * latest : latest / partitions.length;
        const rate = max !== undefined ? Math.min(share, max) : share;
        out.set(p, Math.max(Math.floor(secs * rate), 1));
      });
    } else {
      for (const p of partitions) out.set(p, max !== undefined ? Math.max(Math.floor(secs * max), 1) : Infinity);
    }
    return out;
  }

  compute(time: number): RDD<R> | undefined {
    const parts = new Map<string, { records: R[]; from: number; until: number }>();
    if (this.replayed.size > 0) {
      // Recovery: a batch generated before the crash takes exactly its logged ranges (one not generated
      // again joins the next, rather than being lost); the buffers start after the last of them.
      for (const t of [...this.replayed.keys()].sort((a, b) => a - b)) {
        if (t > time) break;
        const r = this.replayed.get(t)!;
        this.replayed.delete(t);
        for (const [p, [from, until]] of Object.entries(r.selection)) {
          const had = parts.get(p);
          const records = r.records.get(p) ?? [];
          if (had) {
            for (const x of records) had.records.push(x);
            had.until = until;
          } else parts.set(p, { records: records.slice(), from, until });
        }
      }
      for (const [p, { until }] of parts) this.positions.set(p, until);
    } else {
      const assigned = this.assignedPartitions().filter((p) => this.bufferOf(p) !== undefined);
      const limits = this.limits(assigned);
      for (const p of assigned) {
        const from = this.positions.get(p)!;
        const { records, until } = this.bufferOf(p)!.take(limits.get(p) ?? Infinity);
        parts.set(p, { records, from, until });
        this.positions.set(p, until);
      }
      if (this.buffered() < this.bufferCap()) this.wake();
    }
    const order = [...parts.keys()].sort(comparePartitions);
    const selection: Selection = {};
    const ranges: PartitionRange[] = [];
    const rddParts: R[][] = [];
    let count = 0;
    for (const p of order) {
      const { records, from, until } = parts.get(p)!;
      selection[p] = [from, until];
      ranges.push({ partition: p, from, until, count: records.length, lag: this.lagAfter(p, until) });
      rddParts.push(records);
      count += records.length;
    }
    this.selected.set(time, selection);
    this.reportInput(time, count, { partitions: ranges, metadata: this.inputMetadata(ranges) });
    this.rateController?.recordBatch(time, count);
    return this.makeBatchRDD(rddParts, ranges);
  }

  /** Spark's StreamInputInfo metadata: "Description", one line per partition (a subclass may add entries). */
  protected inputMetadata(ranges: PartitionRange[]): Record<string, unknown> {
    return { Description: ranges.map((r) => `${r.partition}\tpositions: ${r.from} to ${r.until}`).join("\n") };
  }

  /** What batch `time` took: [from, until) per partition (logged by the checkpointer before its output runs). */
  selectionFor(time: number): Selection | undefined {
    return this.selected.get(time);
  }

  /** Recovery (before start): batch `time` takes exactly the records in `selection`'s ranges. */
  restoreSelection(time: number, selection: unknown): void {
    if (this.running) throw new PartitionedSourceError(`${this.describeLog()}: restoreSelection after start; recover before starting the context`);
    if (selection === null || typeof selection !== "object" || Array.isArray(selection)) return;
    const s: Selection = {};
    for (const [p, r] of Object.entries(selection as Record<string, unknown>)) {
      if (Array.isArray(r) && r.length === 2 && Number.isSafeInteger(r[0]) && Number.isSafeInteger(r[1])) s[p] = [r[0] as number, r[1] as number];
    }
    this.replay.set(time, s);
    for (const p of Object.keys(s)) this.known.add(p);
    this.listedOnce = true;
  }

  /** Recovery (before start): batch `time` took `selection` and completed; each partition's position moves past it. */
  skipSelection(_time: number, selection: unknown): void {
    if (this.running) throw new PartitionedSourceError(`${this.describeLog()}: skipSelection after start; recover before starting the context`);
    if (selection === null || typeof selection !== "object" || Array.isArray(selection)) return;
    for (const [p, r] of Object.entries(selection as Record<string, unknown>)) {
      if (!Array.isArray(r) || r.length !== 2 || !Number.isSafeInteger(r[1])) continue;
      const until = r[1] as number;
      if ((this.positions.get(p) ?? -Infinity) < until) this.positions.set(p, until);
      this.known.add(p);
    }
    this.listedOnce = true;
  }

  override clearMetadata(time: number): void {
    super.clearMetadata(time);
    for (const t of this.selected.keys()) if (t <= time) this.selected.delete(t);
  }

  /** Checkpoint: the next position of every partition ever known (assigned or not). */
  checkpointPosition(): { positions: Record<string, number> } {
    return { positions: Object.fromEntries(this.positions) };
  }

  restorePosition(position: unknown): void {
    const p = (position as { positions?: unknown } | undefined)?.positions;
    if (p === null || typeof p !== "object") return;
    if (this.running) throw new PartitionedSourceError(`${this.describeLog()}: restorePosition after start; recover before starting the context`);
    let restored = false;
    for (const [id, pos] of Object.entries(p as Record<string, unknown>)) {
      if (!Number.isSafeInteger(pos)) continue;
      this.positions.set(id, pos as number);
      this.known.add(id);
      restored = true;
    }
    // No position (the batch log's start record of a stream killed before it listed its partitions): the
    // configured starting offsets still apply, as for a fresh start.
    if (restored) this.listedOnce = true;
  }

  /** The next position per partition (what the next batch starts at). */
  currentPositions(): Record<string, number> {
    return Object.fromEntries(this.positions);
  }
}
