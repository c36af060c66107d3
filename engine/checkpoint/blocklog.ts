// The receivers' write-ahead log (Spark's ReceivedBlockTracker + WAL): each block is logged before it
// can enter a batch, each batch's take of blocks is logged when the batch is generated; recovery gives
// pending batches exactly their records again and puts untaken records back in the receiver's queue.
import { randomBytes } from "node:crypto";
import type { StreamingContext } from "../context.js";
import { ReceiverInputDStream, type BlockSlice, type BlockStore, type ReceivedBlock } from "../sources/receiver.js";
import { WriteAheadLog } from "./wal.js";

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

  constructor(dir: string, ssc: StreamingContext) {
    this.wal = new WriteAheadLog(dir);
    this.ssc = ssc;
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
      put: (block) => {
        const rec: BlockRecord = { k: "b", s: stream, r: this.run, i: block.id, t: block.time, items: block.items.slice() };
        const seg = this.wal.append(rec);
        const key = `${stream}\u0000${this.run}:${block.id}`;
        this.blocks.set(key, { size: block.items.length, allocated: 0, maxAllocTime: -Infinity });
        this.trackSegment(seg, key);
      },
      allocated: (batchTime: number, slices: readonly BlockSlice[]) => {
        const rec: AllocRecord = { k: "a", s: stream, r: this.run, bt: batchTime, sl: slices.map((x) => [x.blockId, x.start, x.end]) };
        const seg = this.wal.append(rec);
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
   * CRC), which supersedes, and lets us delete, every older segment.
   */
  recover(lastCompleted: number | undefined): { batchTimes: number[]; replayed: Record<string, number> } {
    const all = this.wal.readAll();
    let sup = -1;
    for (const { record } of all) if ((record as Record_).k === "rec") sup = Math.max(sup, (record as RecoveredRecord).sup);
    const maxSegment = all.reduce((m, r) => Math.max(m, r.segment), 0);
    type Blk = { time: number; items: unknown[]; taken: Uint8Array };
    const perStream = new Map<string, { order: string[]; blocks: Map<string, Blk>; batches: Map<number, unknown[]> }>();
    const streamOf = (s: string) => {
      let v = perStream.get(s);
      if (!v) perStream.set(s, (v = { order: [], blocks: new Map(), batches: new Map() }));
      return v;
    };
    const addBlock = (s: string, key: string, time: number, items: unknown[]) => {
      const st = streamOf(s);
      st.order.push(key);
      st.blocks.set(key, { time, items, taken: new Uint8Array(items.length) });
    };
    const toBatch = (s: string, bt: number, items: unknown[]) => {
      if (lastCompleted !== undefined && bt <= lastCompleted) return;
      const st = streamOf(s);
      const list = st.batches.get(bt) ?? [];
      for (const it of items) list.push(it);
      st.batches.set(bt, list);
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
      if (rec.batches.size === 0 && rec.blocks.length === 0) continue;
      for (const t of rec.batches.keys()) batchTimes.add(t);
      replayed[s] = n;
      this.recovered.set(s, rec);
      summary.streams[s] = { batches: [...rec.batches], blocks: rec.blocks.map((b) => [b.id, b.time, b.items.slice()]) };
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

  /** A checkpoint through batch `lastCompleted` is durable: delete segments it makes unnecessary. */
  checkpointed(lastCompleted: number): void {
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

  /** Segments on disk (for tests). */
  segments(): number[] {
    return this.wal.segments();
  }

  close(): void {
    this.wal.close();
  }
}
