// A write-ahead log: length- and CRC-framed records appended (and fsync'd) to numbered segment files,
// read back in order (stopping cleanly at a torn tail) on recovery, and deleted segment by segment.
import * as fs from "node:fs";
import * as path from "node:path";
import { decodeValue, encodeValue } from "./format.js";
import { fsyncDir } from "./store.js";

export interface WriteAheadLogOptions {
  /** Start a new segment when the current one reaches this many bytes (default 8 MiB). */
  segmentBytes?: number;
  /** fsync after every append (default true: a record survives a crash once append returns). */
  fsync?: boolean;
}

export interface LogRecord {
  /** The segment the record is in. */
  segment: number;
  record: unknown;
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32(buf: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < buf.length; i++) c = CRC_TABLE[(c ^ buf[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

const SEGMENT_RE = /^log-(\d{12})\.wal$/;

export class WriteAheadLog {
  readonly dir: string;
  private readonly segmentBytes: number;
  private readonly fsync: boolean;
  private fd: number | undefined;
  private currentIndex: number | undefined;
  private currentBytes = 0;
  /** Highest segment number used, so a sealed and deleted segment's number is never reused. */
  private lastIndex = 0;
  private closed = false;

  constructor(dir: string, options: WriteAheadLogOptions = {}) {
    this.dir = path.resolve(dir);
    this.segmentBytes = options.segmentBytes ?? 8 * 1024 * 1024;
    this.fsync = options.fsync ?? true;
    fs.mkdirSync(this.dir, { recursive: true });
  }

  /** Segment numbers on disk, oldest first. */
  segments(): number[] {
    const out: number[] = [];
    for (const name of fs.readdirSync(this.dir)) {
      const m = SEGMENT_RE.exec(name);
      if (m) out.push(Number(m[1]));
    }
    return out.sort((a, b) => a - b);
  }

  private file(index: number): string {
    return path.join(this.dir, `log-${String(index).padStart(12, "0")}.wal`);
  }

  /** The segment appends go to now (undefined before the first append). */
  get currentSegment(): number | undefined {
    return this.currentIndex;
  }

  /**
   * Every intact record, oldest first. A torn or corrupt record ends its segment's reading: a crash
   * during append means it was never acknowledged, so nothing acknowledged is lost.
   */
  readAll(): LogRecord[] {
    const out: LogRecord[] = [];
    for (const segment of this.segments()) {
      const buf = fs.readFileSync(this.file(segment));
      let off = 0;
      while (off + 8 <= buf.length) {
        const len = buf.readUInt32LE(off);
        const crc = buf.readUInt32LE(off + 4);
        if (off + 8 + len > buf.length) break;
        const body = buf.subarray(off + 8, off + 8 + len);
        if (crc32(body) !== crc) break;
        out.push({ segment, record: decodeValue(body.toString("utf8")) });
        off += 8 + len;
      }
    }
    return out;
  }

  /** Start a new segment now (recovery writes its summary first thing in a fresh one). */
  roll(): number {
    if (this.closed) throw new WriteAheadLogClosedError("WriteAheadLog: append after close; create a new log");
    if (this.fd !== undefined) fs.closeSync(this.fd);
    // Never append after a previous run's tail: it may end in a torn record.
    const index = Math.max(this.segments().at(-1) ?? 0, this.currentIndex ?? 0, this.lastIndex) + 1;
    this.lastIndex = index;
    this.fd = fs.openSync(this.file(index), "a");
    fsyncDir(this.dir);
    this.currentIndex = index;
    this.currentBytes = 0;
    return index;
  }

  /** Close the open segment, so that the next append starts a new one and this one can be deleted. */
  seal(): void {
    if (this.fd !== undefined) fs.closeSync(this.fd);
    this.fd = undefined;
    this.currentIndex = undefined;
  }

  /** Append a record durably; returns its segment. With fsync on, it survives a crash once this returns. */
  append(record: unknown): number {
    if (this.fd === undefined || this.currentBytes >= this.segmentBytes) this.roll();
    const body = Buffer.from(encodeValue(record), "utf8");
    const frame = Buffer.allocUnsafe(8 + body.length);
    frame.writeUInt32LE(body.length, 0);
    frame.writeUInt32LE(crc32(body), 4);
    body.copy(frame, 8);
    let written = 0;
    while (written < frame.length) written += fs.writeSync(this.fd!, frame, written);
    if (this.fsync) fs.fdatasyncSync(this.fd!);
    this.currentBytes += frame.length;
    return this.currentIndex!;
  }

  /** Delete the given segments (never the open one). */
  deleteSegments(indices: Iterable<number>): number {
    let n = 0;
    for (const i of indices) {
      if (i === this.currentIndex) continue;
      fs.rmSync(this.file(i), { force: true });
      n++;
    }
    if (n > 0) fsyncDir(this.dir);
    return n;
  }

  close(): void {
    if (this.fd !== undefined) fs.closeSync(this.fd);
    this.fd = undefined;
    this.closed = true;
  }
}

export class WriteAheadLogClosedError extends Error {
  override name = "WriteAheadLogClosedError";
}
