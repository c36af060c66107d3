// The write-ahead log on its own: append and read back, torn tails, segment rotation and cleanup.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { WriteAheadLog, crc32 } from "../engine/checkpoint/wal.js";

const dirs: string[] = [];
function tmpDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), "sb-wal-"));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

describe("WriteAheadLog", () => {
  it("computes the standard CRC-32", () => {
    expect(crc32(Buffer.from("123456789"))).toBe(0xcbf43926);
  });

  const recs = (dir: string) => new WriteAheadLog(dir).readAll().map((r) => r.record);

  it("reads back what was appended, across a reopen, in order", () => {
    const dir = tmpDir();
    const wal = new WriteAheadLog(dir);
    wal.append({ seq: 1, items: ["a", "b"] });
    wal.append({ seq: 2, items: [{ x: 1 }] });
    wal.close();
    expect(recs(dir)).toEqual([{ seq: 1, items: ["a", "b"] }, { seq: 2, items: [{ x: 1 }] }]);
    const again = new WriteAheadLog(dir);
    again.append({ seq: 3 });
    expect(again.segments().length).toBe(2); // a reopened log never appends after a possibly torn tail
    again.close();
    expect(recs(dir)).toEqual([{ seq: 1, items: ["a", "b"] }, { seq: 2, items: [{ x: 1 }] }, { seq: 3 }]);
  });

  it("stops at a torn or corrupt tail record and keeps everything before it", () => {
    const dir = tmpDir();
    const wal = new WriteAheadLog(dir);
    for (let i = 1; i <= 3; i++) wal.append({ seq: i });
    wal.close();
    const seg = path.join(dir, fs.readdirSync(dir)[0]!);
    const bytes = fs.readFileSync(seg);
    fs.writeFileSync(seg, bytes.subarray(0, bytes.length - 3));
    expect(recs(dir)).toEqual([{ seq: 1 }, { seq: 2 }]);
    const flipped = Buffer.from(bytes);
    flipped[flipped.length - 2] ^= 0xff;
    fs.writeFileSync(seg, flipped);
    expect(recs(dir)).toEqual([{ seq: 1 }, { seq: 2 }]);
  });

  it("rolls segments by size and deletes all but the open one on request", () => {
    const dir = tmpDir();
    const wal = new WriteAheadLog(dir, { segmentBytes: 1 }); // every append starts a new segment
    const segs = [1, 2, 3].map((i) => wal.append({ seq: i }));
    expect(segs).toEqual([1, 2, 3]);
    expect(wal.deleteSegments([1, 3])).toBe(1); // 3 is open
    expect(wal.readAll()).toEqual([{ segment: 2, record: { seq: 2 } }, { segment: 3, record: { seq: 3 } }]);
    wal.close();
  });
});
