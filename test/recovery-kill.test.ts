// Kill and recover, end to end: a plain Node program (test/fixtures/recovery-wordcount.js, on the built
// engine) is SIGKILLed at 20 points and restarted with getOrCreate each time; its final output must equal
// that of an uninterrupted run exactly.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildEngine } from "./fixtures/recovery-build.js";
import { killRepeatedly, mulberry32, runOnce } from "./fixtures/recovery-harness.js";

const FIXTURE = path.resolve(__dirname, "fixtures", "recovery-wordcount.js");
const BATCHES = 80;
const DELAY_MS = 25;
const KILLS = 20;

let work: string;
let dist: string;

function stage(dir: string): void {
  const rng = mulberry32(42);
  fs.mkdirSync(dir, { recursive: true });
  for (let k = 1; k <= BATCHES; k++) {
    const lines: string[] = [];
    for (let l = 0; l < 200; l++) {
      const words: string[] = [];
      for (let w = 0; w < 8; w++) words.push(`w${Math.floor(rng() * rng() * 300)}`);
      lines.push(words.join(" "));
    }
    fs.writeFileSync(path.join(dir, `input-${String(k).padStart(4, "0")}.txt`), lines.join(k % 2 ? "\n" : "\r\n"));
  }
}

/** A run's directories, with the input files staged, and the program's arguments. */
function makeRun(name: string): { args: string[]; out: string } {
  const base = path.join(work, name);
  const [ckpt, staging, input, out] = ["ckpt", "staging", "input", "out"].map((d) => path.join(base, d)) as [string, string, string, string];
  stage(staging);
  fs.mkdirSync(input, { recursive: true });
  fs.mkdirSync(out, { recursive: true });
  return { args: [FIXTURE, ckpt, staging, input, out, String(BATCHES), String(DELAY_MS)], out };
}

function finalOutput(out: string): string[] {
  const dir = path.join(out, `counts-${BATCHES * 1000}`);
  const parts = fs.readdirSync(dir).filter((n) => n.startsWith("part-"));
  return parts.flatMap((p) => fs.readFileSync(path.join(dir, p), "utf8").split("\n").filter((l) => l.length > 0)).sort();
}

beforeAll(() => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), "sb-kill-"));
  dist = buildEngine(work);
}, 120_000);

afterAll(() => {
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

describe("kill and recover a plain Node program (textFileStream, updateStateByKey, saveAsTextFiles)", () => {
  it(`SIGKILLed at ${KILLS} points and restarted with getOrCreate, it ends with exactly the uninterrupted output`, async () => {
    const reference = makeRun("reference");
    const ref = await runOnce(reference.args, dist, undefined);
    expect(ref.stderr).toBe("");
    expect(ref.lines.at(-1)).toBe("DONE");
    const expected = finalOutput(reference.out);
    expect(expected.length).toBeGreaterThan(100);

    const victim = makeRun("victim");
    const log = await killRepeatedly(victim.args, dist, { kills: KILLS, batches: BATCHES, delayMs: DELAY_MS, seed: 7 });
    if (process.env.SB_KILL_LOG) console.log(log.join("\n"));
    const last = await runOnce(victim.args, dist, undefined);
    expect(last.stderr).toBe("");
    expect(last.lines.at(-1)).toBe("DONE");
    expect(log.filter((l) => l.includes("-> recovered")).length).toBeGreaterThanOrEqual(10);
    expect(finalOutput(victim.out)).toEqual(expected);
  }, 110_000);
});
