// The checkpoint store on its own: round trip, fallback from a damaged newest file, version errors.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import {
  CHECKPOINT_VERSION,
  CheckpointSerializationError,
  CheckpointVersionError,
  decodeCheckpoint,
  encodeCheckpoint,
  type CheckpointData,
} from "../engine/checkpoint/format.js";
import { CheckpointStore, CheckpointUnreadableError } from "../engine/checkpoint/store.js";

const dirs: string[] = [];
function tmpDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), "sb-ckpt-store-"));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function sample(batchTime: number, extra: Record<string, unknown> = {}): CheckpointData {
  return {
    batchTime,
    batchDuration: 1000,
    zeroTime: 0,
    lastCompletedBatch: batchTime - 1000,
    pendingBatches: [batchTime],
    graph: { inputs: ["input-0"], stateful: ["updateStateByKey-0"] },
    state: { "updateStateByKey-0": [["a", 1], ["b", 2]], ...extra },
    positions: { "input-0": { files: ["x.txt"] } },
    unmatched: { state: {}, positions: {} },
    writtenAt: new Date(0).toISOString(),
  };
}

describe("checkpoint format", () => {
  it("round-trips plain data and the tagged non-JSON values", () => {
    const data = sample(5000, {
      rich: {
        map: new Map<string, number>([["k", 1]]),
        set: new Set([1, 2]),
        date: new Date(1234),
        big: 12345678901234567890n,
        inf: Infinity,
        nan: NaN,
        undef: [1, undefined, 3],
      },
    });
    const back = decodeCheckpoint(encodeCheckpoint(data));
    expect(back).toEqual(data);
    const rich = back.state.rich as Record<string, unknown>;
    expect(rich.map).toBeInstanceOf(Map);
    expect(rich.set).toBeInstanceOf(Set);
    expect(rich.date).toBeInstanceOf(Date);
    expect(rich.big).toBe(12345678901234567890n);
    expect(rich.undef).toEqual([1, undefined, 3]);
  });

  it("refuses to store code", () => {
    expect(() => encodeCheckpoint(sample(1000, { f: { fn: () => 1 } }))).toThrow(CheckpointSerializationError);
  });

  it("writes a header with the version, batch time and a SHA-256 of the body", () => {
    const bytes = encodeCheckpoint(sample(7000));
    const header = JSON.parse(bytes.subarray(0, bytes.indexOf(10)).toString()) as Record<string, unknown>;
    expect(header).toMatchObject({ format: "streambook-checkpoint", version: CHECKPOINT_VERSION, batchTime: 7000 });
    expect(header.sha256).toMatch(/^[0-9a-f]{64}$/);
  });
});

describe("CheckpointStore", () => {
  it("round-trips through the directory and keeps only the newest files", async () => {
    const dir = tmpDir();
    const store = new CheckpointStore(dir, { keep: 2 });
    expect(store.read()).toBeUndefined();
    for (const t of [1000, 2000, 3000]) await store.write(sample(t));
    expect(store.files().map((f) => f.batchTime)).toEqual([3000, 2000]);
    const loaded = store.read();
    expect(loaded?.data).toEqual(sample(3000));
    expect(loaded?.warnings).toEqual([]);
    // A new store on the same directory continues the sequence instead of overwriting.
    const again = new CheckpointStore(dir);
    again.writeSync(sample(4000));
    expect(again.read()?.data.batchTime).toBe(4000);
    expect(fs.readdirSync(dir).filter((n) => n.startsWith(".tmp"))).toEqual([]);
  });

  it.each([
    ["truncated", (b: Buffer) => b.subarray(0, Math.floor(b.length / 2))],
    ["one byte flipped", (b: Buffer) => { const c = Buffer.from(b); c[c.length - 5] ^= 0x01; return c; }],
    ["empty", () => Buffer.alloc(0)],
    ["header garbage", (b: Buffer) => Buffer.concat([Buffer.from("{not json\n"), b])],
  ])("falls back to the previous checkpoint when the newest is %s, with a warning", async (_label, damage) => {
    const dir = tmpDir();
    const warnings: string[] = [];
    const store = new CheckpointStore(dir, { onWarning: (m) => warnings.push(m) });
    await store.write(sample(1000));
    const newest = await store.write(sample(2000));
    fs.writeFileSync(newest, damage(fs.readFileSync(newest)));
    const loaded = store.read();
    expect(loaded?.data.batchTime).toBe(1000);
    expect(loaded?.warnings.length).toBe(1);
    expect(warnings.length).toBe(1);
    expect(warnings[0]).toMatch(/fell back to checkpoint-\d+-1000\.sbcp/);
  });

  it("sets a damaged newest checkpoint aside, so the next write keeps the good one it fell back to", async () => {
    const dir = tmpDir();
    const store = new CheckpointStore(dir, { onWarning: () => {} });
    const good = await store.write(sample(1000));
    const newest = await store.write(sample(2000));
    fs.writeFileSync(newest, "torn");
    expect(store.read()?.file).toBe(good);
    const next = await store.write(sample(3000));
    expect(store.files().map((f) => f.file)).toEqual([next, good]);
    expect(fs.existsSync(`${newest}.damaged`)).toBe(true);
    // With the next write damaged too, the fallback is still there.
    fs.writeFileSync(next, "torn again");
    expect(store.read()?.data.batchTime).toBe(1000);
  });

  it("says clearly when every checkpoint is damaged", async () => {
    const dir = tmpDir();
    const store = new CheckpointStore(dir, { onWarning: () => {} });
    const a = await store.write(sample(1000));
    const b = await store.write(sample(2000));
    fs.writeFileSync(a, "x");
    fs.writeFileSync(b, "y");
    expect(() => store.read()).toThrow(CheckpointUnreadableError);
  });

  it("stops with a clear error on another format version rather than falling back", async () => {
    const dir = tmpDir();
    const store = new CheckpointStore(dir);
    await store.write(sample(1000));
    const newest = await store.write(sample(2000));
    const bytes = fs.readFileSync(newest);
    const nl = bytes.indexOf(10);
    const header = JSON.parse(bytes.subarray(0, nl).toString()) as Record<string, unknown>;
    header.version = 99;
    fs.writeFileSync(newest, Buffer.concat([Buffer.from(JSON.stringify(header)), bytes.subarray(nl)]));
    expect(() => store.read()).toThrow(CheckpointVersionError);
    expect(() => store.read()).toThrow(/version 99 is not supported.*delete the checkpoint directory/);
  });

  it("ignores and removes a dead writer's temp file", async () => {
    const dir = tmpDir();
    fs.writeFileSync(path.join(dir, ".tmp-checkpoint-999999-abc"), "torn");
    const store = new CheckpointStore(dir);
    await store.write(sample(1000));
    expect(fs.readdirSync(dir).filter((n) => n.startsWith(".tmp"))).toEqual([]);
    expect(store.read()?.data.batchTime).toBe(1000);
  });
});
