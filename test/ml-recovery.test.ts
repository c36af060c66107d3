// A model survives a crash: a plain Node program training StreamingKMeans and streaming regression
// (test/fixtures/ml-recovery.js, on the built engine) is SIGKILLed mid-training and restarted with
// getOrCreate. Each restart must begin from the model the reference run had at the checkpointed batch
// (not the initial one), and the final models must equal an uninterrupted run's exactly.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { transpileEngine } from "./fixtures/recovery-build.js";
import { mulberry32, runOnce } from "./fixtures/recovery-harness.js";

const FIXTURE = path.resolve(__dirname, "fixtures", "ml-recovery.js");
const BATCHES = 16;
const DELAY_MS = 20;

let work: string;
let dist: string;

beforeAll(() => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), "sb-ml-kill-"));
  dist = transpileEngine(work);
}, 120_000);

afterAll(() => {
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

describe("models are checkpointed state", () => {
  it("SIGKILLed mid-training and recovered, training resumes from the checkpointed model and ends where an uninterrupted run ends", async () => {
    const reference = await runOnce([FIXTURE, path.join(work, "reference"), String(BATCHES)], dist, undefined);
    expect(reference.stderr).toBe("");
    const modelAt = new Map<number, string>();
    for (const l of reference.lines) {
      const m = /^model (\d+) (.*)$/.exec(l);
      if (m) modelAt.set(Number(m[1]), m[2]!);
    }
    const initial = reference.lines.find((l) => l.startsWith("start "))!.slice(6);
    const finalRef = reference.lines.find((l) => l.startsWith("final "))!.slice(6);
    expect(modelAt.size).toBe(BATCHES);

    const ckpt = path.join(work, "killed");
    const rng = mulberry32(7);
    const recoveries: number[] = [];
    let progress = 0;
    for (let kill = 0; kill < 3; kill++) {
      // Killed at a random moment while the batch after `afterBatch` trains (8k points per batch).
      const inc = await runOnce([FIXTURE, ckpt, String(BATCHES), String(DELAY_MS)], dist, {
        afterBatch: (progress + 2 + Math.floor(rng() * 3)) * 1000,
        delayMs: Math.floor(rng() * DELAY_MS * 2),
      });
      expect(inc.signal, `incarnation ${kill}: ${inc.stderr}`).toBe("SIGKILL");
      const first = inc.lines[0] ?? "";
      if (kill > 0) {
        const m = /^recovered (\d+) restored (.*)$/.exec(first);
        expect(m, first).not.toBeNull();
        expect(m![2]!.split(",")).toEqual(expect.arrayContaining(["clusters", "regression"]));
        const at = Number(m![1]);
        recoveries.push(at);
        const start = inc.lines[1]!.slice(6);
        expect(start).toBe(modelAt.get(at));
        expect(start).not.toBe(initial);
      }
      for (const l of inc.lines) {
        const m = /^batch (\d+)$/.exec(l);
        if (m) progress = Math.max(progress, Number(m[1]) / 1000);
      }
    }
    const last = await runOnce([FIXTURE, ckpt, String(BATCHES)], dist, undefined);
    expect(last.stderr).toBe("");
    const m = /^recovered (\d+)/.exec(last.lines[0] ?? "");
    expect(m, last.lines[0]).not.toBeNull();
    expect(last.lines[1]!.slice(6)).toBe(modelAt.get(Number(m![1])));
    expect(last.lines.find((l) => l.startsWith("final "))!.slice(6)).toBe(finalRef);
    expect(recoveries.length).toBe(2);
  }, 120_000);
});
