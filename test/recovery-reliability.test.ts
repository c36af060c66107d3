// Data safety under stops and crashes, through real processes on a private build of the engine:
// a plain stop in the middle of a sliced state update leaves the batch wholly applied or not at all,
// in memory and in every checkpoint, also after a restart and after getOrCreate.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildEngine } from "./fixtures/recovery-build.js";
import { runOnce } from "./fixtures/recovery-harness.js";

const STOP_FIXTURE = path.resolve(__dirname, "fixtures", "recovery-stop.js");

let work: string;
let dist: string;

beforeAll(() => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), "sb-reliability-"));
  dist = buildEngine(work);
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
