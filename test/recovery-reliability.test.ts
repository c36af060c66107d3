// Data safety under stops and crashes, through real processes on a private build of the engine:
// - a plain stop in the middle of a sliced state update leaves the batch wholly applied or not at all,
//   in memory and in every checkpoint, also after a restart and after getOrCreate;
// - once the context has started with a checkpoint directory, a SIGKILL at any moment loses nothing, even
//   before the first checkpoint and for files that arrive while the program is down (the batch log
//   records where each source started); a pipeline without state does not run completed batches again;
// - a batch log whose checkpoint files were deleted is refused with a named error, not half-recovered;
// - checkpoint writes that fail (a file-size limit, as a full disk) leave no temp files, and old ones go.
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { transpileEngine } from "./fixtures/recovery-build.js";
import { killRepeatedly, mulberry32, runOnce } from "./fixtures/recovery-harness.js";

const STOP_FIXTURE = path.resolve(__dirname, "fixtures", "recovery-stop.js");
const META_FIXTURE = path.resolve(__dirname, "fixtures", "recovery-metadata.js");
const DISKFULL_FIXTURE = path.resolve(__dirname, "fixtures", "recovery-diskfull.js");

let work: string;
let dist: string;

beforeAll(() => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), "sb-reliability-"));
  dist = transpileEngine(work);
}, 120_000);

afterAll(() => {
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

/** Runs a fixture to its end; its stdout lines by their first word ("stopped 200000 200000" -> stopped: "200000 200000"). */
async function runToEnd(args: string[]): Promise<Map<string, string[]>> {
  const inc = await runOnce(args, dist, undefined);
  expect(inc.stderr).toBe("");
  expect(inc.code).toBe(0);
  const out = new Map<string, string[]>();
  for (const line of inc.lines) {
    const [word, ...rest] = line.split(" ");
    out.set(word!, [...(out.get(word!) ?? []), rest.join(" ")]);
  }
  return out;
}

describe("a plain stop during a sliced updateStateByKey / mapWithState over 200k keys", () => {
  // Each batch adds 1 to each of 200k keys: 200000 per completed batch, per stateful stream.
  it("leaves batch 2 not applied in memory and in the checkpoint; getOrCreate then runs it whole", async () => {
    const ckpt = path.join(work, "stop-run");
    const run = await runToEnd([STOP_FIXTURE, ckpt, "run"]);
    expect(run.get("stopped")).toEqual(["200000 200000"]);
    expect(run.get("checkpoint")).toEqual(["200000 200000 through 1000"]);
    const recovered = await runToEnd([STOP_FIXTURE, ckpt, "recover"]);
    expect(recovered.get("restored")).toEqual(["200000 200000"]);
    // Batches 2000 (the abandoned one, run again), 3000 and 4000.
    expect(recovered.get("final")).toEqual(["800000 800000"]);
  }, 60_000);

  it("a restart in the same process applies the abandoned batch once; so does getOrCreate afterwards", async () => {
    const ckpt = path.join(work, "stop-restart");
    const run = await runToEnd([STOP_FIXTURE, ckpt, "restart"]);
    expect(run.get("stopped")).toEqual(["200000 200000"]);
    // Batch 2000's update runs whole before batch 3000's.
    expect(run.get("restarted")).toEqual(["600000 600000"]);
    expect(run.get("checkpoint")).toEqual(["200000 200000 through 1000", "600000 600000 through 3000"]);
    const recovered = await runToEnd([STOP_FIXTURE, ckpt, "recover"]);
    expect(recovered.get("restored")).toEqual(["600000 600000"]);
    expect(recovered.get("final")).toEqual(["800000 800000"]);
  }, 60_000);
});

/** Lines of words; every file has words of its own and shared ones. */
function fileText(name: string, rng: () => number): string {
  const lines: string[] = [];
  for (let l = 0; l < 20; l++) {
    const words: string[] = [`${name}-${l}`];
    for (let w = 0; w < 6; w++) words.push(`w${Math.floor(rng() * rng() * 60)}`);
    lines.push(words.join(" "));
  }
  return lines.join("\n") + "\n";
}

function wordCounts(texts: string[]): string[] {
  const m = new Map<string, number>();
  for (const t of texts) for (const w of t.split(/\s+/).filter(Boolean)) m.set(w, (m.get(w) ?? 0) + 1);
  return [...m].map(([w, n]) => `(${w},${n})`).sort();
}

function readParts(dir: string): string[] {
  return fs
    .readdirSync(dir)
    .filter((n) => n.startsWith("part-"))
    .flatMap((p) => fs.readFileSync(path.join(dir, p), "utf8").split("\n").filter((l) => l.length > 0))
    .sort();
}

/** A run's directories: `batches` files staged (one per batch), an input folder holding a file from before the start. */
function stageRun(name: string, batches: number): { ckpt: string; staging: string; input: string; out: string; base: string; texts: string[] } {
  const base = path.join(work, name);
  const [ckpt, staging, input, out] = ["ckpt", "staging", "input", "out"].map((d) => path.join(base, d)) as [string, string, string, string];
  for (const d of [staging, input, out]) fs.mkdirSync(d, { recursive: true });
  const rng = mulberry32(name.length * 7919);
  const texts: string[] = [];
  for (let k = 1; k <= batches; k++) {
    const text = fileText(`f${k}`, rng);
    texts.push(text);
    fs.writeFileSync(path.join(staging, `input-${String(k).padStart(4, "0")}.txt`), text);
  }
  // There before the first start: a new-files-only stream must never count it.
  fs.writeFileSync(path.join(input, "before-start.txt"), "old old old\n");
  return { ckpt, staging, input, out, base, texts };
}

/** Moves a file into `input` the way producers must (complete, by rename), while the program is down. */
function arriveWhileDown(run: { base: string; input: string; texts: string[] }, name: string): void {
  const text = fileText(name, mulberry32(name.length * 31 + run.texts.length));
  fs.writeFileSync(path.join(run.base, name), text);
  fs.renameSync(path.join(run.base, name), path.join(run.input, name));
  run.texts.push(text);
}

describe("a SIGKILL at any moment after start loses nothing (default checkpoint interval: most kills come before any checkpoint)", () => {
  it("stateful word count over textFileStream, killed at 8 points with files arriving while down, ends with every file counted once", async () => {
    const BATCHES = 24;
    const run = stageRun("kill-stateful", BATCHES);
    const args = [META_FIXTURE, run.ckpt, run.staging, run.input, run.out, String(BATCHES), "25", "stateful"];
    const log = await killRepeatedly(args, dist, {
      kills: 8,
      batches: BATCHES,
      delayMs: 25,
      seed: 11,
      between: (i) => arriveWhileDown(run, `down-${i}.txt`),
    });
    if (process.env.SB_KILL_LOG) console.log(log.join("\n"));
    const last = await runOnce(args, dist, undefined);
    expect(last.stderr).toBe("");
    expect(last.lines.at(-1)).toBe("DONE");
    // Several kills came before any checkpoint file existed (the first is written at 10 s of batch time).
    expect(log.filter((l) => l.includes('"checkpointTime":0')).length + log.filter((l) => l.includes("-> fresh")).length).toBeGreaterThanOrEqual(2);
    expect(readParts(path.join(run.out, `counts-${BATCHES * 1000}`))).toEqual(wordCounts(run.texts));
  }, 110_000);

  it("a pipeline without state resumes after its last completed batch: none runs twice, the file that arrived while down is read", async () => {
    const run = stageRun("kill-stateless", 10);
    const args = (hang: number, batches: number) => [META_FIXTURE, run.ckpt, run.staging, run.input, run.out, String(batches), "0", "stateless", String(hang)];
    // Killed while batch 6000 is the last completed one: no checkpoint file yet, only the batch log.
    const first = await runOnce(args(6000, 10), dist, { afterBatch: 6000, delayMs: 0 });
    expect(first.signal).toBe("SIGKILL");
    expect(fs.readdirSync(run.ckpt).filter((n) => n.endsWith(".sbcp"))).toEqual([]);
    arriveWhileDown(run, "down.txt");
    const second = await runOnce(args(-1, 10), dist, undefined);
    expect(second.stderr).toBe("");
    expect(second.lines.at(-1)).toBe("DONE");
    expect(JSON.parse(second.lines[0]!.replace(/^recovered /, ""))).toEqual({ checkpointTime: 0, pending: [], skipped: [1000, 2000, 3000, 4000, 5000, 6000] });
    const journal = fs.readFileSync(path.join(run.out, "journal.txt"), "utf8").split("\n").filter(Boolean);
    // Each batch ran once...
    const ends = journal.filter((l) => l.endsWith(" .")).map((l) => Number(l.split(" ")[0]));
    expect(ends).toEqual([1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000, 10000]);
    // ...and every line of every file (the one from before the start excepted) was read exactly once.
    const read = journal.filter((l) => !l.endsWith(" .")).map((l) => l.slice(l.indexOf(" ") + 1)).sort();
    expect(read).toEqual(run.texts.flatMap((t) => t.split("\n").filter(Boolean)).sort());
  }, 60_000);
});

describe("checkpoint files deleted while batches/ is kept", () => {
  it("recovers exactly while the log still reaches back to the start, and refuses with CheckpointMissingError once it does not", async () => {
    const run = stageRun("deleted", 50);
    const args = (hang: number) => [META_FIXTURE, run.ckpt, run.staging, run.input, run.out, "50", "0", "stateful", String(hang)];
    const deleteCheckpoints = () => {
      const files = fs.readdirSync(run.ckpt).filter((n) => n.endsWith(".sbcp"));
      for (const f of files) fs.rmSync(path.join(run.ckpt, f));
      return files.length;
    };
    // One checkpoint (10 s) so far: the batch log still holds everything since the first start.
    const first = await runOnce(args(15000), dist, { afterBatch: 15000, delayMs: 0 });
    expect(first.signal).toBe("SIGKILL");
    expect(deleteCheckpoints()).toBe(1);
    const second = await runOnce(args(45000), dist, { afterBatch: 45000, delayMs: 0 });
    expect(second.stderr).toBe("");
    expect(second.lines[0]).toMatch(/^recovered \{"checkpointTime":0,/);
    expect(readParts(path.join(run.out, "counts-45000"))).toEqual(wordCounts(run.texts.slice(0, 45)));
    // Checkpoints at 25, 35 and 45 s since: the log no longer reaches back to where the sources started.
    expect(deleteCheckpoints()).toBe(2);
    const third = await runOnce(args(-1), dist, undefined);
    expect(third.code).toBe(1);
    expect(third.stderr).toMatch(/CheckpointMissingError: checkpoint: .*batches logs batches from \d+ ms on, but no checkpoint file/);
    expect(third.lines).toEqual([]);
  }, 60_000);
});

describe("checkpoint writes that fail half way (a file-size limit stands in for a full disk)", () => {
  it("leave no .tmp-checkpoint files; those of dead processes go at start; the batch log still recovers everything", async () => {
    const ckpt = path.join(work, "diskfull");
    fs.mkdirSync(ckpt, { recursive: true });
    // A temp file a process that no longer runs left behind.
    const dead = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], { encoding: "utf8" });
    const stale = path.join(ckpt, `.tmp-checkpoint-${dead.stdout}-leftover`);
    fs.writeFileSync(stale, "torn");
    // RLIMIT_FSIZE below one checkpoint (2,000 keys): each write fails with EFBIG part way, as ENOSPC would.
    const limited = await new Promise<{ lines: string[]; stderr: string; code: number | null }>((resolve) => {
      const child = spawn("prlimit", ["--fsize=16384", process.execPath, DISKFULL_FIXTURE, ckpt, "6"], {
        stdio: ["ignore", "pipe", "pipe"],
        env: { ...process.env, SB_DIST: dist },
      });
      let out = "";
      let stderr = "";
      child.stdout.on("data", (d: Buffer) => (out += d.toString()));
      child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
      child.on("exit", (code) => resolve({ lines: out.split("\n").filter(Boolean), stderr, code }));
    });
    expect(limited.stderr).toBe("");
    expect(limited.code).toBe(0);
    expect(limited.lines.filter((l) => /^warning checkpoint: could not write to .*EFBIG/.test(l)).length).toBe(6);
    expect(limited.lines.slice(-2)).toEqual(["tmp 0", "DONE"]);
    expect(fs.existsSync(stale)).toBe(false);
    expect(fs.readdirSync(ckpt).filter((n) => n.startsWith(".tmp-checkpoint-") || n.endsWith(".sbcp"))).toEqual([]);
    // Without the limit: no checkpoint file, but the batch log since the start rebuilds all 6 batches.
    const again = await runOnce([DISKFULL_FIXTURE, ckpt, "8"], dist, undefined);
    expect(again.stderr).toBe("");
    expect(again.lines.filter((l) => l.startsWith("total ")).at(-1)).toBe("total 16000");
    expect(again.lines.slice(-2)).toEqual(["tmp 0", "DONE"]);
  }, 60_000);
});
