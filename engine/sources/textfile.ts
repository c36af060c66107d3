// textFileStream: the lines of files that newly appear in a directory, each file once. The directory
// is scanned when a batch is generated, so with the manual clock what a batch holds is deterministic.

import * as fs from "node:fs";
import * as path from "node:path";
import type { StreamingContext } from "../context.js";
import { RDD } from "../rdd.js";
import { StreamingError } from "../errors.js";
import type { Sliced } from "../slicing.js";
import { InputDStream } from "./input.js";
import { LineSplitter } from "./lines.js";

/** Bytes read between two yields to the event loop. */
const READ_CHUNK = 1 << 20;

/** A file in the watched directory could not be read (other than vanishing, which is skipped). */
export class TextFileStreamError extends StreamingError {}

export interface TextFileStreamOptions {
  name?: string;
  /** Extra filter on file names (hidden and temporary files are always skipped). */
  filter?: (fileName: string) => boolean;
  /** Ignore the files already there at the first start (default true, as Spark). */
  newFilesOnly?: boolean;
}

/** A file as remembered: its inode tells a file moved over an old name apart from the old one. */
type SeenFile = [name: string, ino: number, mtimeMs: number];

export interface TextFilePosition {
  directory: string;
  files: SeenFile[];
}

/** Hadoop's hidden-file rule (".", "_"), plus the "._COPYING_" name `hdfs dfs -put` writes to. */
export function isHiddenFile(name: string): boolean {
  return name.startsWith(".") || name.startsWith("_") || name.endsWith("._COPYING_");
}

/**
 * Watches `dir`. Files must be moved (renamed) into it complete, as Spark expects: a file is read
 * once when first seen, and writes into it afterwards are not picked up. A file moved over an
 * existing name (a new inode) is new. Names are remembered while their files stay in the directory.
 */
export class TextFileInputDStream extends InputDStream<string> {
  readonly directory: string;
  private readonly fileFilter: ((fileName: string) => boolean) | undefined;
  private readonly newFilesOnly: boolean;
  private seen = new Map<string, { ino: number; mtimeMs: number }>();
  private initialised = false;
  /** The files each generated batch took, until it completes (Spark's batchTimeToSelectedFiles). */
  private readonly selected = new Map<number, SeenFile[]>();
  /** Recovery: batches generated before a crash take exactly these files when generated again. */
  private readonly replay = new Map<number, SeenFile[]>();

  constructor(ssc: StreamingContext, dir: string, options: TextFileStreamOptions = {}) {
    super(ssc, options.name !== undefined ? { name: options.name } : undefined);
    this.directory = path.resolve(dir);
    this.fileFilter = options.filter;
    this.newFilesOnly = options.newFilesOnly ?? true;
  }

  start(): void {
    // Only the first start ignores what is there: after stop and start again, files that arrived
    // in between are new, as they are after recovery from a checkpoint.
    if (this.initialised) return;
    this.initialised = true;
    if (!this.newFilesOnly) return;
    for (const f of this.list()) this.seen.set(f.name, { ino: f.ino, mtimeMs: f.mtimeMs });
  }

  stop(): void {}

  /**
   * Lists the directory now (so the batch's files are fixed when it is generated) and reads them
   * when the batch runs, a megabyte at a time between turns of the event loop, so a large file does
   * not block it. One partition per file. As in Spark, the batch's record count is not known up front.
   */
  compute(time: number): RDD<string> | undefined {
    if (!this.initialised) this.start();
    let fresh: { name: string; ino: number; mtimeMs: number }[];
    const recorded = this.replay.get(time);
    if (recorded) {
      // Regenerated after a crash: exactly the files the batch took before, not what is there now,
      // so its output is the one already emitted; files that arrived meanwhile go to later batches.
      this.replay.delete(time);
      fresh = recorded.map(([name, ino, mtimeMs]) => ({ name, ino, mtimeMs }));
      for (const f of fresh) this.seen.set(f.name, { ino: f.ino, mtimeMs: f.mtimeMs });
    } else {
      const present = this.list();
      fresh = present.filter((f) => this.seen.get(f.name)?.ino !== f.ino);
      fresh.sort((a, b) => a.mtimeMs - b.mtimeMs || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      for (const f of fresh) this.seen.set(f.name, { ino: f.ino, mtimeMs: f.mtimeMs });
      // Forget files that left the directory: a file that comes back under the same name is new.
      const names = new Set(present.map((f) => f.name));
      for (const name of this.seen.keys()) if (!names.has(name)) this.seen.delete(name);
    }
    this.selected.set(time, fresh.map((f) => [f.name, f.ino, f.mtimeMs] as SeenFile));
    if (fresh.length === 0) return this.ssc.sc.emptyRDD<string>();
    const files = fresh.map((f) => path.join(this.directory, f.name));
    return new RDD<string>(this.ssc.sc, {
      gen: function* (): Sliced<string[][]> {
        const parts: string[][] = [];
        for (const file of files) parts.push(yield* readLines(file));
        return parts;
      },
    });
  }

  checkpointPosition(): TextFilePosition {
    return { directory: this.directory, files: [...this.seen].map(([name, f]) => [name, f.ino, f.mtimeMs] as SeenFile) };
  }

  restorePosition(position: unknown): void {
    const p = position as Partial<TextFilePosition> | undefined;
    if (!p || !Array.isArray(p.files)) return;
    this.seen = new Map(p.files.map(([name, ino, mtimeMs]) => [name, { ino, mtimeMs }]));
    this.initialised = true;
  }

  /** The files batch `time` took (logged by the checkpointer before the batch's output runs). */
  selectionFor(time: number): SeenFile[] | undefined {
    return this.selected.get(time);
  }

  restoreSelection(time: number, selection: unknown): void {
    this.replay.set(time, selectedFiles(selection));
  }

  /** Recovery: batch `time` took these files and completed; they count as seen. */
  skipSelection(_time: number, selection: unknown): void {
    for (const [name, ino, mtimeMs] of selectedFiles(selection)) this.seen.set(name, { ino, mtimeMs });
    this.initialised = true;
  }

  override clearMetadata(time: number): void {
    super.clearMetadata(time);
    // Batch `time` is done: its selection was logged when it was generated, if it was to be.
    for (const t of this.selected.keys()) if (t <= time) this.selected.delete(t);
  }

  private list(): { name: string; ino: number; mtimeMs: number }[] {
    let names: string[];
    try {
      names = fs.readdirSync(this.directory);
    } catch (e) {
      // A directory that does not exist yet is empty: files moved into it once created are new.
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw new TextFileStreamError(`textFileStream: cannot list ${this.directory}: ${(e as Error).message}`, { cause: e });
    }
    const out: { name: string; ino: number; mtimeMs: number }[] = [];
    for (const name of names) {
      if (isHiddenFile(name) || (this.fileFilter && !this.fileFilter(name))) continue;
      let st: fs.Stats;
      try {
        st = fs.statSync(path.join(this.directory, name));
      } catch {
        continue;
      }
      if (st.isFile()) out.push({ name, ino: st.ino, mtimeMs: st.mtimeMs });
    }
    return out;
  }
}

/** The files of a logged selection (malformed entries are ignored). */
function selectedFiles(selection: unknown): SeenFile[] {
  const files: SeenFile[] = [];
  if (!Array.isArray(selection)) return files;
  for (const f of selection as unknown[]) {
    if (Array.isArray(f) && typeof f[0] === "string" && typeof f[1] === "number" && typeof f[2] === "number") files.push([f[0], f[1], f[2]]);
  }
  return files;
}

/** A file's lines (\n or \r\n, no empty last line), read in chunks; a file gone by now has none. */
function* readLines(file: string): Sliced<string[]> {
  let fd: number;
  try {
    fd = fs.openSync(file, "r");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw new TextFileStreamError(`textFileStream: cannot read ${file}: ${(e as Error).message}; check its permissions`, { cause: e });
  }
  try {
    const buf = Buffer.allocUnsafe(READ_CHUNK);
    const splitter = new LineSplitter();
    const out: string[] = [];
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      for (const line of splitter.push(buf.subarray(0, n))) out.push(line);
      yield;
    }
    for (const line of splitter.end()) out.push(line);
    return out;
  } finally {
    fs.closeSync(fd);
  }
}
