// The receivers' write-ahead log (Spark's ReceivedBlockTracker + WAL): each block is logged before it
// can enter a batch, each batch's take of blocks is logged when the batch is generated; recovery gives
// pending batches exactly their records again and puts untaken records back in the receiver's queue.
// The log keeps everything after the OLDEST checkpoint the store still keeps, so a fallback from a
// damaged newest checkpoint to an older one still replays every block after it exactly once.
import { randomBytes } from "node:crypto";
import * as path from "node:path";
import type { StreamingContext } from "../context.js";
import { ReceiverInputDStream, type BlockSlice, type BlockStore, type ReceivedBlock } from "../sources/receiver.js";
import { WriteAheadLog } from "./wal.js";
import { CheckpointStore } from "./store.js";

type BlockRecord = { k: "b"; s: string; r: string; i: number; t: number; items: unknown[] };
type AllocRecord = { k: "a"; s: string; r: string; bt: number; sl: [number, number, number][] };
/** Written first thing after a recovery: everything still needed from older segments, which it supersedes. */
type RecoveredRecord = {
  k: "rec";
  sup: number;
  r: string;
  streams: Record<string, { batches: [number, unknown[]][]; blocks: [number, number, unknown[]][] }>;
};
type Record_ = BlockRecord | AllocRecord | RecoveredRecord;

interface TrackedBlock {
  size: number;
  allocated: number;
  maxAllocTime: number;
}

interface Recovered {
  batches: Map<number, unknown[]>;
  blocks: ReceivedBlock<unknown>[];
}

export class ReceivedBlockLog {
  private readonly wal: WriteAheadLog;
  private readonly ssc: StreamingContext;
  /** Block ids are unique only within one run of a stream, so records carry the run. */
  readonly run = randomBytes(6).toString("hex");
  private readonly installed = new WeakSet<object>();
  private readonly blocks = new Map<string, TrackedBlock>();
  private readonly segBlocks = new Map<number, string[]>();
  private readonly segMaxBatch = new Map<number, number>();
  private recovered = new Map<string, Recovered>();
  /** The checkpoint files this log backs (the parent directory: the checkpointer's layout is <dir>/receivedBlocks). */
  private readonly checkpoints: CheckpointStore;

  constructor(dir: string, ssc: StreamingContext) {
    this.wal = new WriteAheadLog(dir);
    this.ssc = ssc;
    this.checkpoints = new CheckpointStore(path.dirname(this.wal.dir));
  }

  /**
   * The batch time the log may forget through: no later than `lastCompleted` nor than any checkpoint file
   * still on disk (one of them may be the fallback). A file's batch time is at most its lastCompletedBatch,
   * and a damaged file counts too, so this errs on keeping more.
   */
  private floor(lastCompleted: number): number {
    let f = lastCompleted;
    for (const file of this.checkpoints.files()) f = Math.min(f, file.batchTime);
    return f;
  }

  /** Puts a logging block store on every receiver stream that has none yet. */
  install(_time?: number): void {
    for (const input of this.ssc.graph.inputStreams()) {
      if (!(input instanceof ReceiverInputDStream) || this.installed.has(input)) continue;
      this.installed.add(input);
      input.setBlockStore(this.storeFor(input.name));
    }
  }

  private trackSegment(segment: number, key?: string, batchTime?: number): void {
    if (key !== undefined) {
      const list = this.segBlocks.get(segment) ?? [];
      list.push(key);
      this.segBlocks.set(segment, list);
    } else if (!this.segBlocks.has(segment)) this.segBlocks.set(segment, []);
    if (batchTime !== undefined) this.segMaxBatch.set(segment, Math.max(this.segMaxBatch.get(segment) ?? -Infinity, batchTime));
  }

  private storeFor(stream: string): BlockStore<unknown> {
    return {
      // Written at once, in order: one group commit covers every block written before it.
      concurrentPuts: true,
      // The block enters the queue once a group commit made it durable; the event loop does not wait.
      put: (block) => {
        const rec: BlockRecord = { k: "b", s: stream, r: this.run, i: block.id, t: block.time, items: block.items.slice() };
        const seg = this.wal.write(rec);
        const key = `${stream}\u0000${this.run}:${block.id}`;
        this.blocks.set(key, { size: block.items.length, allocated: 0, maxAllocTime: -Infinity });
        this.trackSegment(seg, key);
        return this.wal.sync();
      },
      // Durable before the batch's output runs: the checkpointer's batch gate syncs the log.
      allocated: (batchTime: number, slices: readonly BlockSlice[]) => {
        const rec: AllocRecord = { k: "a", s: stream, r: this.run, bt: batchTime, sl: slices.map((x) => [x.blockId, x.start, x.end]) };
        const seg = this.wal.write(rec);
        this.trackSegment(seg, undefined, batchTime);
        for (const x of slices) {
          const b = this.blocks.get(`${stream}\u0000${this.run}:${x.blockId}`);
          if (!b) continue;
          b.allocated += x.end - x.start;
          b.maxAllocTime = Math.max(b.maxAllocTime, batchTime);
        }
      },
    };
  }

  /**
   * Reads the log after a crash. Slices taken by batches up to `lastCompleted` are in the checkpointed
   * state already; later batches get their exact records again; records no batch took go back to the
   * front of their receiver's queue. The result is logged as one record in a fresh segment (atomic by its
   * CRC), which supersedes, and lets us delete, every older segment. The summary also keeps the batches
   * between the oldest checkpoint on disk and `lastCompleted`, unreplayed, for a later fallback to it.
   */
  recover(lastCompleted: number | undefined): { batchTimes: number[]; replayed: Record<string, number> } {
    const all = this.wal.readAll();
    let sup = -1;
    for (const { record } of all) if ((record as Record_).k === "rec") sup = Math.max(sup, (record as RecoveredRecord).sup);
    const maxSegment = all.reduce((m, r) => Math.max(m, r.segment), 0);
    type Blk = { time: number; items: unknown[]; taken: Uint8Array };
    const perStream = new Map<
      string,
      { order: string[]; blocks: Map<string, Blk>; batches: Map<number, unknown[]>; kept: Map<number, unknown[]> }
    >();
    const streamOf = (s: string) => {
      let v = perStream.get(s);
      if (!v) perStream.set(s, (v = { order: [], blocks: new Map(), batches: new Map(), kept: new Map() }));
      return v;
    };
    // Batches through `lastCompleted` are in the state recovered from; those after `keepAfter` are still
    // needed if an older checkpoint kept on disk is recovered from next time.
    const keepAfter = lastCompleted === undefined ? undefined : this.floor(lastCompleted);
    const addBlock = (s: string, key: string, time: number, items: unknown[]) => {
      const st = streamOf(s);
      st.order.push(key);
      st.blocks.set(key, { time, items, taken: new Uint8Array(items.length) });
    };
    const toBatch = (s: string, bt: number, items: unknown[]) => {
      if (keepAfter !== undefined && bt <= keepAfter) return;
      const st = streamOf(s);
      const into = lastCompleted !== undefined && bt <= lastCompleted ? st.kept : st.batches;
      const list = into.get(bt) ?? [];
      for (const it of items) list.push(it);
      into.set(bt, list);
    };
    for (const { segment, record } of all) {
      const rec = record as Record_;
      if (rec.k === "rec") {
        if (rec.sup !== sup) continue;
        for (const [s, v] of Object.entries(rec.streams)) {
          for (const [bt, items] of v.batches) toBatch(s, bt, items);
          for (const [id, time, items] of v.blocks) addBlock(s, `${rec.r}:${id}`, time, items);
        }
        continue;
      }
      if (segment <= sup) continue;
      if (rec.k === "b") addBlock(rec.s, `${rec.r}:${rec.i}`, rec.t, rec.items);
      else if (rec.k === "a") {
        const st = streamOf(rec.s);
        for (const [id, start, end] of rec.sl) {
          const b = st.blocks.get(`${rec.r}:${id}`);
          if (!b) continue; // its segment was cleaned: it was all taken by checkpointed batches
          b.taken.fill(1, start, end);
          toBatch(rec.s, rec.bt, b.items.slice(start, end));
        }
      }
    }
    const summary: RecoveredRecord = { k: "rec", sup: maxSegment, r: this.run, streams: {} };
    const batchTimes = new Set<number>();
    const replayed: Record<string, number> = {};
    this.recovered = new Map();
    for (const [s, st] of perStream) {
      const rec: Recovered = { batches: st.batches, blocks: [] };
      let n = 0;
      for (const items of st.batches.values()) n += items.length;
      for (const key of st.order) {
        const b = st.blocks.get(key)!;
        const rest = b.items.filter((_, i) => b.taken[i] === 0);
        if (rest.length === 0) continue;
        rec.blocks.push({ id: rec.blocks.length, streamId: -1, time: b.time, items: rest });
        n += rest.length;
      }
      if (rec.batches.size === 0 && rec.blocks.length === 0 && st.kept.size === 0) continue;
      summary.streams[s] = {
        batches: [...st.kept, ...rec.batches].sort((a, b) => a[0] - b[0]),
        blocks: rec.blocks.map((b) => [b.id, b.time, b.items.slice()]),
      };
      if (rec.batches.size === 0 && rec.blocks.length === 0) continue;
      for (const t of rec.batches.keys()) batchTimes.add(t);
      replayed[s] = n;
      this.recovered.set(s, rec);
    }
    if (all.length > 0) {
      const seg = this.wal.roll();
      this.wal.append(summary);
      for (const [s, v] of Object.entries(summary.streams)) {
        for (const [bt] of v.batches) this.trackSegment(seg, undefined, bt);
        for (const [id, , items] of v.blocks) {
          const key = `${s}\u0000${this.run}:${id}`;
          this.blocks.set(key, { size: items.length, allocated: 0, maxAllocTime: -Infinity });
          this.trackSegment(seg, key);
        }
      }
      this.trackSegment(seg);
      // The summary is durable (fsync'd) before the segments it replaces go.
      this.wal.deleteSegments(this.wal.segments().filter((i) => i <= maxSegment));
    }
    return { batchTimes: [...batchTimes].sort((a, b) => a - b), replayed };
  }

  /** Hands recovered records to the receiver streams of the new pipeline (by name); returns names with none. */
  restoreBatches(pending: readonly number[]): string[] {
    const unmatched: string[] = [];
    const byName = new Map<string, ReceiverInputDStream<unknown>>();
    for (const input of this.ssc.graph.inputStreams()) if (input instanceof ReceiverInputDStream) byName.set(input.name, input);
    const pendingSet = new Set(pending);
    for (const [s, rec] of this.recovered) {
      const input = byName.get(s);
      if (!input) {
        unmatched.push(s);
        continue;
      }
      const back: ReceivedBlock<unknown>[] = [];
      for (const [bt, items] of rec.batches) {
        if (pendingSet.has(bt)) input.restoreBatch(bt, items);
        else back.push({ id: -1, streamId: input.id, time: bt, items });
      }
      input.restoreBlocks(rec.blocks.map((b) => ({ ...b, streamId: input.id })));
      if (back.length > 0) input.restoreBlocks(back.map((b, i) => ({ ...b, id: rec.blocks.length + i })));
    }
    this.recovered = new Map();
    return unmatched;
  }

  /**
   * A checkpoint through batch `lastCompleted` is durable: delete the segments that neither it nor any
   * older checkpoint still on disk (a fallback if it turns out damaged) needs.
   */
  checkpointed(lastCompleted: number): void {
    lastCompleted = this.floor(lastCompleted);
    const current = this.wal.currentSegment;
    const doomed: number[] = [];
    for (const [seg, keys] of this.segBlocks) {
      if (seg === current) continue;
      if ((this.segMaxBatch.get(seg) ?? -Infinity) > lastCompleted) continue;
      let done = true;
      for (const k of keys) {
        const b = this.blocks.get(k);
        if (b && (b.allocated < b.size || b.maxAllocTime > lastCompleted)) done = false;
      }
      if (!done) continue;
      doomed.push(seg);
    }
    for (const seg of doomed) {
      for (const k of this.segBlocks.get(seg) ?? []) this.blocks.delete(k);
      this.segBlocks.delete(seg);
      this.segMaxBatch.delete(seg);
    }
    this.wal.deleteSegments(doomed);
  }

  /** True when every record written so far is durable. */
  get isSynced(): boolean {
    return this.wal.isSynced;
  }

  /** Resolves once every record written so far is durable. */
  sync(): Promise<void> {
    return this.wal.sync();
  }

  /** Segments on disk (for tests). */
  segments(): number[] {
    return this.wal.segments();
  }

  close(): void {
    this.wal.close();
  }
}
