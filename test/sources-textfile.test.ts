// textFileStream: files moved (renamed) into the watched directory appear exactly once; files
// there before the start, hidden and temporary files are ignored; \n and \r\n both end lines.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { TextFileInputDStream, isHiddenFile } from "../engine/sources/textfile.js";
import { collectBatches, manualContext } from "./sources-helpers.js";

const dirs: string[] = [];
function tmpDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), "sb-textfile-"));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

/** Writes the file elsewhere, then renames it into `dir`: the atomic move Spark expects. */
function moveIn(staging: string, dir: string, name: string, text: string): void {
  const tmp = path.join(staging, name);
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, path.join(dir, name));
}

describe("textFileStream", () => {
  it("reads each new file once, ignores files already there, splits \\n and \\r\\n", async () => {
    const root = tmpDir();
    const dir = path.join(root, "in");
    const staging = path.join(root, "staging");
    fs.mkdirSync(dir);
    fs.mkdirSync(staging);
    fs.writeFileSync(path.join(dir, "old.txt"), "already here\n");
    const ssc = manualContext(1000);
    const batches = collectBatches(ssc.textFileStream(dir));
    await ssc.start();

    moveIn(staging, dir, "a.txt", "hello world\r\nsecond line\n");
    await ssc.advance(1000);
    await ssc.advance(1000); // nothing new
    moveIn(staging, dir, "b.txt", "x\n\ny"); // an empty line inside, no newline at the end
    fs.mkdirSync(path.join(dir, "subdir")); // directories are not files
    await ssc.advance(1000);
    await ssc.stop();
    expect(batches).toEqual([
      [1000, ["hello world", "second line"]],
      [2000, []],
      [3000, ["x", "", "y"]],
    ]);
  });

  it("skips hidden and temporary files (., _, ._COPYING_) until they are renamed to a visible name", async () => {
    const dir = tmpDir();
    const ssc = manualContext(1000);
    const batches = collectBatches(ssc.textFileStream(dir));
    await ssc.start();
    fs.writeFileSync(path.join(dir, ".part-0"), "being written\n");
    fs.writeFileSync(path.join(dir, "_SUCCESS"), "");
    fs.writeFileSync(path.join(dir, "data.txt._COPYING_"), "copying\n");
    await ssc.advance(1000);
    fs.renameSync(path.join(dir, ".part-0"), path.join(dir, "part-0"));
    await ssc.advance(1000);
    await ssc.stop();
    expect(batches).toEqual([
      [1000, []],
      [2000, ["being written"]],
    ]);
    expect([".x", "_x", "a._COPYING_"].every(isHiddenFile)).toBe(true);
    expect(isHiddenFile("a.txt")).toBe(false);
  });

  it("several files in one batch come in modification order; a file moved over an old name is new", async () => {
    const root = tmpDir();
    const dir = path.join(root, "in");
    const staging = path.join(root, "staging");
    fs.mkdirSync(dir);
    fs.mkdirSync(staging);
    const ssc = manualContext(1000);
    const batches = collectBatches(ssc.textFileStream(dir));
    await ssc.start();
    moveIn(staging, dir, "2.txt", "two\n");
    moveIn(staging, dir, "1.txt", "one\n");
    fs.utimesSync(path.join(dir, "2.txt"), new Date(1_000_000), new Date(1_000_000));
    fs.utimesSync(path.join(dir, "1.txt"), new Date(2_000_000), new Date(2_000_000));
    await ssc.advance(1000);
    moveIn(staging, dir, "1.txt", "one again\n"); // a new file (new inode) under the same name
    fs.appendFileSync(path.join(dir, "2.txt"), "appended later\n"); // written in place: not picked up, as in Spark
    await ssc.advance(1000);
    await ssc.stop();
    expect(batches).toEqual([
      [1000, ["two", "one"]],
      [2000, ["one again"]],
    ]);
  });

  it("files that arrive while the context is stopped are read after it starts again", async () => {
    const root = tmpDir();
    const dir = path.join(root, "in");
    const staging = path.join(root, "staging");
    fs.mkdirSync(dir);
    fs.mkdirSync(staging);
    const ssc = manualContext(1000);
    const batches = collectBatches(ssc.textFileStream(dir));
    await ssc.start();
    moveIn(staging, dir, "a.txt", "a\n");
    await ssc.advance(1000);
    await ssc.stop();
    moveIn(staging, dir, "b.txt", "b\n");
    await ssc.start();
    await ssc.advance(1000);
    await ssc.stop();
    expect(batches.flatMap(([, xs]) => xs)).toEqual(["a", "b"]);
  });

  it("checkpointPosition lists the files seen; a stream restored from it reads only the others", async () => {
    const root = tmpDir();
    const dir = path.join(root, "in");
    const staging = path.join(root, "staging");
    fs.mkdirSync(dir);
    fs.mkdirSync(staging);
    const ssc = manualContext(1000);
    const stream = ssc.textFileStream(dir) as TextFileInputDStream;
    collectBatches(stream);
    await ssc.start();
    moveIn(staging, dir, "a.txt", "a\n");
    await ssc.advance(1000);
    await ssc.stop();
    const position = JSON.parse(JSON.stringify(stream.checkpointPosition()));
    expect(position.files.map((f: unknown[]) => f[0])).toEqual(["a.txt"]);

    // A new process: files a.txt (seen) and b.txt (arrived while down) are in the directory.
    moveIn(staging, dir, "b.txt", "b\n");
    const ssc2 = manualContext(1000);
    const again = ssc2.textFileStream(dir) as TextFileInputDStream;
    again.restorePosition(position);
    const batches = collectBatches(again);
    await ssc2.start();
    await ssc2.advance(1000);
    await ssc2.stop();
    expect(batches).toEqual([[1000, ["b"]]]);
  });

  it("a large file is read in chunks, with \\r\\n and UTF-8 characters across chunk boundaries", { timeout: 60_000 }, async () => {
    const root = tmpDir();
    const dir = path.join(root, "in");
    const staging = path.join(root, "staging");
    fs.mkdirSync(dir);
    fs.mkdirSync(staging);
    const lines: string[] = [];
    for (let i = 0; i < 250_000; i++) lines.push(i % 7 === 0 ? `zeile ${i} größe €` : `line ${i}`);
    const ssc = manualContext(1000);
    const stream = ssc.textFileStream(dir);
    const counts: number[] = [];
    let last: string[] = [];
    stream.foreachRDD((rdd) => {
      last = rdd.collect();
      counts.push(last.length);
    });
    await ssc.start();
    moveIn(staging, dir, "big.txt", lines.join("\r\n") + "\r\n");
    await ssc.advance(1000);
    await ssc.stop();
    expect(counts).toEqual([lines.length]);
    expect(last).toEqual(lines);
  });

  it("a directory that does not exist yet is empty until it appears", async () => {
    const root = tmpDir();
    const dir = path.join(root, "later");
    const ssc = manualContext(1000);
    const batches = collectBatches(ssc.textFileStream(dir, { filter: (name) => name.endsWith(".txt") }));
    await ssc.start();
    await ssc.advance(1000);
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, "a.txt"), "a\n");
    fs.writeFileSync(path.join(dir, "a.csv"), "filtered out\n");
    await ssc.advance(1000);
    await ssc.stop();
    expect(batches).toEqual([
      [1000, []],
      [2000, ["a"]],
    ]);
  });
});
