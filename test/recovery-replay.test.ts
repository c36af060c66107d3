// Exactly-once replays: a batch generated but not checkpointed when the process was SIGKILLed is generated
// again after recovery with exactly the files it took before (the batch-input log), so its output is the
// one already emitted, and a file that arrived while the program was down goes to a later batch.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { spawn } from "node:child_process";
import * as readline from "node:readline";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildEngine } from "./fixtures/recovery-build.js";
import { SparkContext, StreamingContext } from "../engine/index.js";
import { checkpointerOf, recoveryReportOf } from "../engine/checkpoint/index.js";

const FIXTURE = path.resolve(__dirname, "fixtures", "recovery-replay.js");
const ROOT = path.resolve(__dirname, "..");

let work: string;
let dist: string;

beforeAll(() => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), "sb-replay-"));
  dist = buildEngine(work);
}, 120_000);

afterAll(() => {
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

/** Words of file k: some shared between files, so state carries over batches. */
function fileText(k: number): string {
  const lines: string[] = [];
  for (let l = 0; l < 4; l++) lines.push(`w${k} w${l} f${k}l${l} shared`);
  return lines.join("\n") + "\n";
}

/** Runs the fixture; with `killOn`, SIGKILLs it once a stdout line matches and `ready()` holds. */
function run(args: string[], killOn?: { line: RegExp; ready: () => boolean }): Promise<{ lines: string[]; stderr: string; signal: NodeJS.Signals | null }> {
  const child = spawn(process.execPath, [FIXTURE, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, SB_DIST: dist, NODE_PATH: path.join(ROOT, "node_modules") },
  });
  const lines: string[] = [];
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  readline.createInterface({ input: child.stdout }).on("line", (line) => {
    lines.push(line);
    if (killOn && killOn.line.test(line)) {
      // The hang line is printed by the batch's last output, after the others were renamed into place.
      if (!killOn.ready()) throw new Error(`kill point reached but the batch's output is missing (${lines.join("|")})`);
      child.kill("SIGKILL");
    }
  });
  return new Promise((resolve) => child.on("exit", (_code, signal) => resolve({ lines, stderr, signal })));
}

function readOutput(dir: string): string {
  return fs
    .readdirSync(dir)
    .filter((n) => n.startsWith("part-"))
    .sort()
    .map((n) => fs.readFileSync(path.join(dir, n), "utf8"))
    .join("");
}

describe("a batch generated but not checkpointed before SIGKILL is replayed with exactly its input", () => {
  it("replayed batch T's output equals the original; file 6 (arrived while down) lands in batch T+1", async () => {
    const base = path.join(work, "run");
    const [ckpt, staging, input, out] = ["ckpt", "staging", "input", "out"].map((d) => path.join(base, d)) as [string, string, string, string];
    for (const d of [staging, input, out]) fs.mkdirSync(d, { recursive: true });
    for (let k = 1; k <= 5; k++) fs.writeFileSync(path.join(staging, `input-${k}.txt`), fileText(k));
    const T = 2500; // file k goes in just before batch 500k: file 5 is batch T's

    const first = await run([ckpt, staging, input, out, String(T), "10000"], {
      line: new RegExp(`^hang ${T}$`),
      ready: () => fs.existsSync(path.join(out, `lines-${T}`)) && fs.existsSync(path.join(out, `counts-${T}`)),
    });
    expect(first.stderr).toBe("");
    expect(first.signal).toBe("SIGKILL");
    expect(first.lines).toContain("batch 2000");
    const originalLines = readOutput(path.join(out, `lines-${T}`));
    const originalCounts = readOutput(path.join(out, `counts-${T}`));
    expect(originalLines).toBe(fileText(5));

    // While the program is down, file 6 arrives.
    fs.writeFileSync(path.join(base, "input-6.txt"), fileText(6));
    fs.renameSync(path.join(base, "input-6.txt"), path.join(input, "input-6.txt"));
    // Tell a replayed output from the original one by their directories, not their contents.
    const originalIno = fs.statSync(path.join(out, `lines-${T}`)).ino;

    const second = await run([ckpt, staging, input, out, "-1", "4000"]);
    expect(second.stderr).toBe("");
    expect(second.lines.at(-1)).toBe("DONE");
    const report = JSON.parse(second.lines[0]!.replace(/^recovered /, "")) as { checkpointTime: number; pending: number[]; replayed: number[] };
    expect(report).toEqual({ checkpointTime: 2000, pending: [T], replayed: [T] });

    // Batch T ran again (its output was written anew) and wrote exactly what it wrote the first time.
    expect(fs.statSync(path.join(out, `lines-${T}`)).ino).not.toBe(originalIno);
    expect(readOutput(path.join(out, `lines-${T}`))).toBe(originalLines);
    expect(readOutput(path.join(out, `counts-${T}`))).toBe(originalCounts);
    // File 6 is in the next batch, and only there.
    expect(readOutput(path.join(out, `lines-${T + 500}`))).toBe(fileText(6));
    expect(readOutput(path.join(out, `lines-${T + 1000}`))).toBe("");

    // The final state is that of an uninterrupted run: every word of files 1..6 counted once.
    const expected = new Map<string, number>();
    for (let k = 1; k <= 6; k++) for (const w of fileText(k).split(/\s+/).filter(Boolean)) expected.set(w, (expected.get(w) ?? 0) + 1);
    const final = readOutput(path.join(out, "counts-4000")).split("\n").filter(Boolean).sort();
    expect(final).toEqual([...expected].map(([w, n]) => `(${w},${n})`).sort());
  }, 110_000);
});

/** Stages files 1..5, runs the fixture until batch `hangAt` hangs, SIGKILLs it; returns the run's directories. */
async function killAt(name: string, hangAt: number): Promise<{ ckpt: string; staging: string; input: string; out: string; base: string }> {
  const base = path.join(work, name);
  const [ckpt, staging, input, out] = ["ckpt", "staging", "input", "out"].map((d) => path.join(base, d)) as [string, string, string, string];
  for (const d of [staging, input, out]) fs.mkdirSync(d, { recursive: true });
  for (let k = 1; k <= 5; k++) fs.writeFileSync(path.join(staging, `input-${k}.txt`), fileText(k));
  const first = await run([ckpt, staging, input, out, String(hangAt), "10000"], {
    line: new RegExp(`^hang ${hangAt}$`),
    ready: () => fs.existsSync(path.join(out, `lines-${hangAt}`)),
  });
  expect(first.stderr).toBe("");
  expect(first.signal).toBe("SIGKILL");
  fs.writeFileSync(path.join(base, "late.txt"), "late arrival\n");
  fs.renameSync(path.join(base, "late.txt"), path.join(input, "late.txt"));
  return { ckpt, staging, input, out, base };
}

describe("replays stay exact in the corner cases", () => {
  it("a corrupt newest checkpoint falls back to the previous one, and both batches after it replay exactly", async () => {
    const { ckpt, staging, input, out } = await killAt("fallback", 2500);
    const original = [2000, 2500].map((t) => readOutput(path.join(out, `lines-${t}`)));
    const newest = fs.readdirSync(ckpt).filter((n) => n.endsWith(".sbcp")).sort().at(-1)!;
    expect(newest).toMatch(/-2000\.sbcp$/);
    const file = path.join(ckpt, newest);
    const bytes = fs.readFileSync(file);
    bytes[bytes.length >> 1] ^= 0xff;
    fs.writeFileSync(file, bytes);
    const second = await run([ckpt, staging, input, out, "-1", "3500"]);
    expect(second.lines.at(-1)).toBe("DONE");
    expect(second.lines[0]).toBe(`recovered ${JSON.stringify({ checkpointTime: 1500, pending: [2000, 2500], replayed: [2000, 2500] })}`);
    expect([2000, 2500].map((t) => readOutput(path.join(out, `lines-${t}`)))).toEqual(original);
    expect(readOutput(path.join(out, "lines-3000"))).toBe("late arrival\n");
  }, 60_000);

  it("a kill before the first checkpoint replays the logged batches from the start", async () => {
    const { ckpt, staging, input, out } = await killAt("early", 500);
    expect(fs.readdirSync(ckpt).filter((n) => n.endsWith(".sbcp"))).toEqual([]);
    const original = readOutput(path.join(out, "lines-500"));
    expect(original).toBe(fileText(1));
    const second = await run([ckpt, staging, input, out, "-1", "1500"]);
    expect(second.stderr).toBe("");
    expect(second.lines.at(-1)).toBe("DONE");
    expect(second.lines[0]).toBe(`recovered ${JSON.stringify({ checkpointTime: 0, pending: [500], replayed: [500] })}`);
    expect(readOutput(path.join(out, "lines-500"))).toBe(original);
    // File 2 goes in before batch 1000, as it would have; the late file arrived before that batch too.
    expect(readOutput(path.join(out, "lines-1000")).split("\n").sort()).toEqual((fileText(2) + "late arrival\n").split("\n").sort());
  }, 60_000);
});

describe("the batch-input log stays small", () => {
  it("keeps only segments not yet covered by the oldest checkpoint kept, and logs one record per batch", async () => {
    const dir = path.join(work, "small");
    const input = path.join(dir, "input");
    fs.mkdirSync(input, { recursive: true });
    const ssc = new StreamingContext(new SparkContext(), 500, { clock: "manual" });
    ssc.checkpoint(path.join(dir, "ckpt"), { interval: 500 });
    const seen: string[] = [];
    ssc.textFileStream(input, { name: "files" }).foreachRDD((rdd) => {
      for (const l of rdd.collect()) seen.push(l);
    });
    await ssc.start();
    const cp = checkpointerOf(ssc)!;
    for (let k = 1; k <= 20; k++) {
      fs.writeFileSync(path.join(input, `f${k}.txt`), `line ${k}\n`);
      await ssc.advance(500);
      await cp.flush();
      expect(cp.batchLog.segments().length).toBeLessThanOrEqual(3);
    }
    await ssc.stop();
    expect(seen).toEqual(Array.from({ length: 20 }, (_, i) => `line ${i + 1}`));
    expect(cp.batchLog.appended).toBe(20);
    expect(recoveryReportOf(ssc)).toBeUndefined();
  }, 30_000);
});

describe("a logged selection the new pipeline cannot match", () => {
  it("is reported, and that batch reads its input afresh", async () => {
    const dir = path.join(work, "unmatched");
    const input = path.join(dir, "input");
    fs.mkdirSync(input, { recursive: true });
    const make = (name: string, sink: string[]) => {
      const ssc = new StreamingContext(new SparkContext(), 500, { clock: "manual" });
      ssc.checkpoint(path.join(dir, "ckpt"), { interval: 1000, onWarning: () => {} });
      ssc.textFileStream(input, { name, newFilesOnly: false }).foreachRDD((rdd) => {
        for (const l of rdd.collect()) sink.push(l);
      });
      return ssc;
    };
    const first: string[] = [];
    const a = make("files", first);
    await a.start();
    for (let k = 1; k <= 3; k++) {
      fs.writeFileSync(path.join(input, `f${k}.txt`), `line ${k}\n`);
      await a.advance(500);
    }
    await a.stop(); // the checkpoint at 1000 is on disk; batch 1500 only in the batch-input log
    const second: string[] = [];
    const b = StreamingContext.getOrCreate(path.join(dir, "ckpt"), () => make("renamed", second));
    const report = recoveryReportOf(b)!;
    expect(report.checkpointTime).toBe(1000);
    expect(report.pendingBatches).toEqual([1500]);
    expect(report.replayedBatches).toEqual([]);
    expect(report.unmatchedBatchInputs).toEqual(["files"]);
    expect(report.warnings.some((w) => w.includes('"files"') && w.includes("batch-input log"))).toBe(true);
    await b.start();
    await b.advance(500);
    await b.stop();
    expect(first).toEqual(["line 1", "line 2", "line 3"]);
    // No position for "renamed" either: it reads every file as new.
    expect(second.sort()).toEqual(["line 1", "line 2", "line 3"]);
  }, 30_000);
});
