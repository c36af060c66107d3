// Received data in blocks, buffered until a batch takes it. This is the seam for a write-ahead log:
// every block passes through a BlockStore's put() before any batch can take it.

import { estimateRecordSize } from "./sizes.js";

/** A run of records a receiver stored together. */
export interface ReceivedBlock<T> {
  /** Increasing within its stream; unique within one run of the stream. */
  readonly id: number;
  readonly streamId: number;
  /** Clock time (ms) of the block's first record: it belongs to the first batch at or after this time. */
  readonly time: number;
  readonly items: readonly T[];
}

/** The part of a block one batch took (a rate limit can split a block across batches). */
export interface BlockSlice {
  readonly blockId: number;
  readonly start: number;
  readonly end: number;
}

/**
 * Where received blocks are made durable before they enter a batch; the in-memory default does
 * nothing. A write-ahead log implements put() (it may be async: the block waits for it) and
 * allocated() (which records which slices a batch took, for replay after a crash).
 */
export interface BlockStore<T> {
  put(block: ReceivedBlock<T>): void | Promise<void>;
  allocated?(batchTime: number, slices: readonly BlockSlice[]): void;
  /**
   * put() may be called again before the previous put settled (it keeps blocks in call order itself, as
   * a log whose group commit makes many blocks durable at once). Otherwise puts run one at a time.
   */
  concurrentPuts?: boolean;
}

interface Entry<T> {
  block: ReceivedBlock<T>;
  offset: number;
  /** Estimated bytes per record of this block. */
  recordBytes: number;
}

/** A FIFO of ready blocks with per-batch takes capped at a record count; it knows its size in records and bytes. */
export class BlockQueue<T> {
  private entries: Entry<T>[] = [];
  private head = 0;
  private count = 0;
  private byteCount = 0;

  get size(): number {
    return this.count;
  }

  /** Estimated bytes of the records buffered. */
  get bytes(): number {
    return this.byteCount;
  }

  push(block: ReceivedBlock<T>, recordBytes = estimateRecordSize(block.items)): void {
    if (block.items.length === 0) return;
    this.entries.push({ block, offset: 0, recordBytes });
    this.count += block.items.length;
    this.byteCount += recordBytes * block.items.length;
  }

  /** Puts blocks back at the front (recovery), ahead of everything buffered. */
  unshift(blocks: readonly ReceivedBlock<T>[]): void {
    const fresh = blocks.filter((b) => b.items.length > 0).map((block) => ({ block, offset: 0, recordBytes: estimateRecordSize(block.items) }));
    this.entries = [...fresh, ...this.entries.slice(this.head)];
    this.head = 0;
    for (const e of fresh) {
      this.count += e.block.items.length;
      this.byteCount += e.recordBytes * e.block.items.length;
    }
  }

  /** Takes records from blocks whose time is <= `upTo`, in order, at most `limit` of them. */
  take(upTo: number, limit: number): { items: T[]; slices: BlockSlice[]; bytes: number } {
    const items: T[] = [];
    const slices: BlockSlice[] = [];
    let room = limit;
    let bytes = 0;
    while (this.head < this.entries.length && room > 0) {
      const e = this.entries[this.head]!;
      if (e.block.time > upTo) break;
      const all = e.block.items;
      const end = Math.min(all.length, e.offset + room);
      for (let i = e.offset; i < end; i++) items.push(all[i]!);
      slices.push({ blockId: e.block.id, start: e.offset, end });
      room -= end - e.offset;
      this.count -= end - e.offset;
      bytes += (end - e.offset) * e.recordBytes;
      if (end === all.length) {
        this.entries[this.head] = undefined as never;
        this.head++;
      } else {
        e.offset = end;
      }
    }
    if (this.head > 1024 && this.head * 2 > this.entries.length) {
      this.entries = this.entries.slice(this.head);
      this.head = 0;
    }
    this.byteCount = this.count === 0 ? 0 : Math.max(0, this.byteCount - bytes);
    return { items, slices, bytes };
  }

  clear(): void {
    this.entries = [];
    this.head = 0;
    this.count = 0;
    this.byteCount = 0;
  }
}
