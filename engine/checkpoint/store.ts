// The checkpoint directory: atomic writes (temp file, fsync, rename, fsync dir), the newest few files
// kept, and reads that fall back to an older file, with a warning, when the newest is torn or corrupt.
import * as fs from "node:fs";
import * as path from "node:path";
import {
  CheckpointCorruptError,
  CheckpointVersionError,
  decodeCheckpoint,
  encodeCheckpoint,
  type CheckpointData,
} from "./format.js";

export interface CheckpointStoreOptions {
  /** How many checkpoint files to keep (at least 2, so a torn newest one has a fallback). Default 2. */
  keep?: number;
  /** Where fallback warnings go; default console.warn. */
  onWarning?: (message: string) => void;
}

export interface LoadedCheckpoint {
  data: CheckpointData;
  file: string;
  /** Newer files that were skipped because they were damaged, with why. */
  warnings: string[];
}

/** No checkpoint file in the directory can be read. */
export class CheckpointUnreadableError extends Error {
  override name = "CheckpointUnreadableError";
}

const FILE_RE = /^checkpoint-(\d{12})-(\d+)\.sbcp$/;
const TMP_PREFIX = ".tmp-checkpoint-";

export function fsyncDir(dir: string): void {
  // Makes the rename itself durable; some platforms cannot open a directory for fsync, which is harmless there.
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, "r");
    fs.fsyncSync(fd);
  } catch {
    /* not supported on this platform */
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/** fsyncDir without blocking the event loop. */
export async function fsyncDirAsync(dir: string): Promise<void> {
  let fh: fs.promises.FileHandle | undefined;
  try {
    fh = await fs.promises.open(dir, "r");
    await fh.sync();
  } catch {
    /* not supported on this platform */
  } finally {
    await fh?.close();
  }
}

/** Write bytes to `file` atomically and durably: a reader sees the old file or the new one, never a mix. */
export async function atomicWrite(file: string, bytes: Buffer): Promise<void> {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `${TMP_PREFIX}${process.pid}-${Math.random().toString(36).slice(2)}`);
  try {
    const fh = await fs.promises.open(tmp, "w");
    try {
      await fh.writeFile(bytes);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fs.promises.rename(tmp, file);
  } catch (e) {
    // A failed write (a full disk) must not leave its half-written temp file behind.
    await fs.promises.rm(tmp, { force: true }).catch(() => {});
    throw e;
  }
  await fsyncDirAsync(dir);
}

export function atomicWriteSync(file: string, bytes: Buffer): void {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `${TMP_PREFIX}${process.pid}-${Math.random().toString(36).slice(2)}`);
  try {
    const fd = fs.openSync(tmp, "w");
    try {
      let written = 0;
      while (written < bytes.length) written += fs.writeSync(fd, bytes, written);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  fsyncDir(dir);
}

/** The process id in a temp file's name, if it has one. */
function tmpOwner(name: string): number | undefined {
  const m = /^\.tmp-checkpoint-(\d+)-/.exec(name);
  return m ? Number(m[1]) : undefined;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Removes temp files that processes no longer running left in `dir` (torn writes that were never renamed). */
export function removeStaleTempFiles(dir: string): void {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) {
    if (!name.startsWith(TMP_PREFIX)) continue;
    const pid = tmpOwner(name);
    if (pid === process.pid || (pid !== undefined && isAlive(pid))) continue;
    fs.rmSync(path.join(dir, name), { force: true });
  }
}

export class CheckpointStore {
  readonly dir: string;
  private readonly keep: number;
  private readonly onWarning: (message: string) => void;
  private seq: number;

  constructor(dir: string, options: CheckpointStoreOptions = {}) {
    this.dir = path.resolve(dir);
    this.keep = Math.max(2, options.keep ?? 2);
    this.onWarning = options.onWarning ?? ((m) => console.warn(m));
    fs.mkdirSync(this.dir, { recursive: true });
    removeStaleTempFiles(this.dir);
    this.seq = this.files().reduce((max, f) => Math.max(max, f.seq), 0);
  }

  /** Checkpoint files, newest first. */
  files(): { file: string; seq: number; batchTime: number }[] {
    const out: { file: string; seq: number; batchTime: number }[] = [];
    for (const name of fs.readdirSync(this.dir)) {
      const m = FILE_RE.exec(name);
      if (m) out.push({ file: path.join(this.dir, name), seq: Number(m[1]), batchTime: Number(m[2]) });
    }
    return out.sort((a, b) => b.seq - a.seq);
  }

  private nextFile(batchTime: number): string {
    this.seq += 1;
    return path.join(this.dir, `checkpoint-${String(this.seq).padStart(12, "0")}-${batchTime}.sbcp`);
  }

  /** Write a checkpoint durably, then drop all but the newest `keep` files. Returns the file written. */
  async write(data: CheckpointData): Promise<string> {
    return this.writeEncoded(data.batchTime, encodeCheckpoint(data));
  }

  /** As write(), for bytes encodeCheckpoint() made earlier (a snapshot taken while the batch loop waited). */
  async writeEncoded(batchTime: number, bytes: Buffer): Promise<string> {
    const file = this.nextFile(batchTime);
    await atomicWrite(file, bytes);
    await this.pruneAsync();
    return file;
  }

  writeSync(data: CheckpointData): string {
    const file = this.nextFile(data.batchTime);
    atomicWriteSync(file, encodeCheckpoint(data));
    this.prune();
    return file;
  }

  private async pruneAsync(): Promise<void> {
    const names = await fs.promises.readdir(this.dir);
    const files: { file: string; seq: number }[] = [];
    for (const name of names) {
      const m = FILE_RE.exec(name);
      if (m) files.push({ file: path.join(this.dir, name), seq: Number(m[1]) });
      else if (name.startsWith(TMP_PREFIX) && !name.startsWith(`${TMP_PREFIX}${process.pid}-`)) {
        await fs.promises.rm(path.join(this.dir, name), { force: true });
      }
    }
    files.sort((a, b) => b.seq - a.seq);
    for (const f of files.slice(this.keep)) await fs.promises.rm(f.file, { force: true });
  }

  private prune(): void {
    for (const f of this.files().slice(this.keep)) fs.rmSync(f.file, { force: true });
    for (const name of fs.readdirSync(this.dir)) {
      // A temp file of a dead process is a torn write that never got renamed; ours are in flight.
      if (name.startsWith(TMP_PREFIX) && !name.startsWith(`${TMP_PREFIX}${process.pid}-`)) {
        fs.rmSync(path.join(this.dir, name), { force: true });
      }
    }
  }

  /**
   * The newest readable checkpoint, or undefined if the directory has none. A damaged newest file is
   * skipped with a warning; a file of another format version stops with CheckpointVersionError.
   */
  read(): LoadedCheckpoint | undefined {
    const files = this.files();
    if (files.length === 0) return undefined;
    const warnings: string[] = [];
    const damaged: string[] = [];
    for (const f of files) {
      let bytes: Buffer;
      try {
        bytes = fs.readFileSync(f.file);
      } catch (err) {
        warnings.push(`${f.file}: cannot read (${(err as Error).message})`);
        damaged.push(f.file);
        continue;
      }
      try {
        const data = decodeCheckpoint(bytes, f.file);
        for (const w of warnings) {
          this.onWarning(`checkpoint: skipped a damaged checkpoint and fell back to ${path.basename(f.file)}: ${w}`);
        }
        // Set the damaged files aside (kept for inspection): left in place, they would count among the
        // `keep` newest and the next write would prune the good file this recovery depends on.
        for (const file of damaged) fs.renameSync(file, `${file}.damaged`);
        return { data, file: f.file, warnings };
      } catch (err) {
        if (err instanceof CheckpointVersionError) throw err;
        if (err instanceof CheckpointCorruptError) {
          warnings.push(err.message);
          damaged.push(f.file);
          continue;
        }
        throw err;
      }
    }
    throw new CheckpointUnreadableError(
      `checkpoint: every checkpoint in ${this.dir} is damaged (${warnings.join("; ")}); ` +
        `delete the directory to start fresh`,
    );
  }
}
