// The write-ahead log under SIGKILL: a reliable custom receiver (test/fixtures/recovery-receiver.js)
// deletes each spool file once its records are logged, so after a kill only the log has them. Killed at
// 10 points and recovered with getOrCreate each time, the final state must hold every record.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildEngine } from "./fixtures/recovery-build.js";
import { killRepeatedly, runOnce } from "./fixtures/recovery-harness.js";

const FIXTURE = path.resolve(__dirname, "fixtures", "recovery-receiver.js");
const FILES = 300;
const PER_FILE = 10;
const KILLS = 10;
const DELAY_MS = 20;

let work: string;
let dist: string;

beforeAll(() => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), "sb-kill-wal-"));
  dist = buildEngine(work);
}, 120_000);

afterAll(() => {
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

describe("write-ahead log: a custom receiver's acknowledged data survives SIGKILL", () => {
  it(`killed at ${KILLS} points, the final state counts every record (a kill inside the ack window may repeat one file)`, async () => {
    const base = path.join(work, "run");
    const [ckpt, spool, out] = ["ckpt", "spool", "out"].map((d) => path.join(base, d)) as [string, string, string];
    for (const d of [spool, out]) fs.mkdirSync(d, { recursive: true });
    for (let f = 0; f < FILES; f++) {
      const ids = Array.from({ length: PER_FILE }, (_, i) => `r${f * PER_FILE + i}`);
      fs.writeFileSync(path.join(spool, `f${String(f).padStart(4, "0")}.txt`), ids.join("\n") + "\n");
    }
    const args = [FIXTURE, ckpt, spool, out, String(DELAY_MS)];
    const log = await killRepeatedly(args, dist, { kills: KILLS, batches: 10_000, delayMs: DELAY_MS, seed: 5 });
    if (process.env.SB_KILL_LOG) console.log(log.join("\n"));
    expect(fs.readdirSync(spool).length).toBeLessThan(FILES); // the kills happened while it was draining
    const last = await runOnce(args, dist, undefined);
    expect(last.stderr).toBe("");
    expect(last.lines.at(-1)).toBe("DONE");
    expect(log.some((l) => /replayed \{"spool":[1-9]/.test(l))).toBe(true);
    const state = new Map(
      fs.readFileSync(path.join(out, "final.txt"), "utf8").trim().split("\n").map((l) => l.split(" ") as [string, string]),
    );
    // Nothing lost: every record is there.
    const missing = Array.from({ length: FILES * PER_FILE }, (_, i) => `r${i}`).filter((id) => !state.has(id));
    expect(missing).toEqual([]);
    expect(state.size).toBe(FILES * PER_FILE);
    // At least once: a kill between a file's logging and its deletion re-reads that one file.
    const repeated = [...state.values()].filter((v) => v !== "1").length;
    expect(repeated).toBeLessThanOrEqual(KILLS * PER_FILE);
    if (process.env.SB_KILL_LOG) console.log(`records counted twice: ${repeated}`);
  }, 110_000);
});
