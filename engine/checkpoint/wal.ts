// A write-ahead log: length- and CRC-framed records appended to numbered segment files, made durable
// by a group commit (one fdatasync in the thread pool covers every record written before it, so the
// event loop never waits on the disk), read back in order (stopping cleanly at a torn tail) on
// recovery, and deleted segment by segment.
import * as fs from "node:fs";
import * as path from "node:path";
import { promisify } from "node:util";
import { decodeValue, encodeValue } from "./format.js";
import { fsyncDir, fsyncDirAsync } from "./store.js";

const fdatasync = promisify(fs.fdatasync);

export interface WriteAheadLogOptions {
  /** Start a new segment when the current one reaches this many bytes (default 8 MiB). */
  segmentBytes?: number;
  /** fsync in append() (default true: a record survives a crash once append returns). write() + sync() never blocks. */
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
  /** Records written so far, and how many of them a finished sync() made durable. */
  private writtenSeq = 0;
  private syncedSeq = 0;
  /** Segments written to since their last sync, and rolled ones to close once synced (an fsync may be in flight on them). */
  private readonly unsynced = new Set<number>();
  private readonly retired = new Set<number>();
  /** A new segment file whose directory entry is not yet durable. */
  private dirDirty = false;
  private syncing: Promise<void> | undefined;

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
    this.retire();
    // Never append after a previous run's tail: it may end in a torn record.
    const index = Math.max(this.segments().at(-1) ?? 0, this.currentIndex ?? 0, this.lastIndex) + 1;
    this.lastIndex = index;
    this.fd = fs.openSync(this.file(index), "a");
    this.dirDirty = true;
    this.currentIndex = index;
    this.currentBytes = 0;
    return index;
  }

  /** Close the open segment, so that the next append starts a new one and this one can be deleted. */
  seal(): void {
    this.retire();
    this.currentIndex = undefined;
  }

  /** The open segment's descriptor leaves: closed now if nothing of it awaits a sync, else once synced. */
  private retire(): void {
    const fd = this.fd;
    this.fd = undefined;
    if (fd === undefined) return;
    if (this.unsynced.has(fd) || this.syncing) this.retired.add(fd);
    else fs.closeSync(fd);
  }

  /**
   * Writes a record to the open segment (the OS has it: it survives the process being killed) and
   * returns its segment. It survives a machine crash once a later sync() resolves.
   */
  write(record: unknown): number {
    if (this.closed) throw new WriteAheadLogClosedError("WriteAheadLog: append after close; create a new log");
    if (this.fd === undefined || this.currentBytes >= this.segmentBytes) this.roll();
    const body = Buffer.from(encodeValue(record), "utf8");
    const frame = Buffer.allocUnsafe(8 + body.length);
    frame.writeUInt32LE(body.length, 0);
    frame.writeUInt32LE(crc32(body), 4);
    body.copy(frame, 8);
    let written = 0;
    try {
      while (written < frame.length) written += fs.writeSync(this.fd!, frame, written);
    } catch (e) {
      // A frame cut short (a full disk) ends this segment's readable records: never append after it.
      this.unsynced.add(this.fd!);
      this.seal();
      throw e;
    }
    this.currentBytes += frame.length;
    this.writtenSeq++;
    this.unsynced.add(this.fd!);
    return this.currentIndex!;
  }

  /** Append a record durably, blocking until it is on disk (recovery's one-off records); returns its segment. */
  append(record: unknown): number {
    const seg = this.write(record);
    if (this.fsync) {
      fs.fdatasyncSync(this.fd!);
      if (this.dirDirty) fsyncDir(this.dir);
      this.dirDirty = false;
    }
    return seg;
  }

  /** True when every record written so far is durable. */
  get isSynced(): boolean {
    return this.syncedSeq >= this.writtenSeq;
  }

  /**
   * Resolves once every record written before the call is durable (fdatasync in the thread pool, plus
   * the directory when a segment was created). Calls while one is in flight share the next one.
   */
  async sync(): Promise<void> {
    const target = this.writtenSeq;
    while (this.syncedSeq < target) {
      if (!this.syncing) this.syncing = this.syncOnce().finally(() => (this.syncing = undefined));
      await this.syncing;
    }
  }

  private async syncOnce(): Promise<void> {
    const upTo = this.writtenSeq;
    const fds = [...this.unsynced];
    this.unsynced.clear();
    const dir = this.dirDirty;
    this.dirDirty = false;
    try {
      await Promise.all(fds.map((fd) => fdatasync(fd)));
      if (dir) await fsyncDirAsync(this.dir);
    } catch (e) {
      for (const fd of fds) this.unsynced.add(fd);
      this.dirDirty ||= dir;
      throw e;
    } finally {
      for (const fd of [...this.retired]) {
        if (this.unsynced.has(fd)) continue;
        this.retired.delete(fd);
        fs.closeSync(fd);
      }
    }
    this.syncedSeq = Math.max(this.syncedSeq, upTo);
  }

  /** Delete the given segments (never the open one). */
  deleteSegments(indices: Iterable<number>): number {
    let n = 0;
    for (const i of indices) {
      if (i === this.currentIndex) continue;
      fs.rmSync(this.file(i), { force: true });
      n++;
    }
    // A deletion lost in a machine crash only leaves records recovery skips: no need to wait for it.
    if (n > 0) void fsyncDirAsync(this.dir);
    return n;
  }

  close(): void {
    this.closed = true;
    this.retire();
    this.currentIndex = undefined;
    const closeRetired = () => {
      for (const fd of this.retired) fs.closeSync(fd);
      this.retired.clear();
    };
    // Descriptors an in-flight sync still uses are closed when it settles.
    if (this.syncing) void this.syncing.then(closeRetired, closeRetired);
    else closeRetired();
  }
}

export class WriteAheadLogClosedError extends Error {
  override name = "WriteAheadLogClosedError";
}
