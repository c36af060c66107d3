// Kill and recover, as a kernel: the real streambook kernel runs a checkpointed stateful word count over a
// file source, and separately over a Redis stream (cells with StreamingContext.getOrCreate), is SIGKILLed
// after chosen batches' outputs appear, and a new kernel runs the same cells; every batch's output must
// equal that of an uninterrupted kernel exactly.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KernelClient, type KernelSpec, type Message } from "../cli/client.js";
import { connect } from "../engine/sources/redis.js";
import { mulberry32 } from "./fixtures/recovery-harness.js";
import { RedisTestServer } from "./support/redis-server.js";

const ROOT = path.resolve(__dirname, "..");
const BATCHES = 50;
const DELAY_MS = 40;
// 10 points per case, as the log sources' kernel kill tests: a new kernel's first typed cell costs seconds
// (the checker's first program), and 20 points per case took four minutes of CI's thirty.
const KILLS = 10;

let work: string;
let spec: KernelSpec;

/**
 * The kernel runs from a private build (a concurrent rebuild of dist/ cannot hand it half-written files),
 * laid out as the package is: dist/ with declarations (the cell checker reads the prelude's types),
 * package.json, kernel.json, and node_modules linked to this checkout's.
 */
function buildKernel(into: string): KernelSpec {
  const pkg = path.join(into, "pkg");
  fs.mkdirSync(pkg, { recursive: true });
  spawnSync(process.execPath, [path.join(ROOT, "node_modules", "typescript", "bin", "tsc"), "-p", path.join(ROOT, "tsconfig.json"), "--outDir", path.join(pkg, "dist"), "--sourceMap", "false"], {
    cwd: ROOT,
    stdio: "ignore",
  });
  const main = path.join(pkg, "dist", "kernel", "main.js");
  for (const f of [main, path.join(pkg, "dist", "kernel", "notebook-prelude.d.ts"), path.join(pkg, "dist", "engine", "checkpoint", "index.js")]) {
    if (!fs.existsSync(f)) throw new Error(`building the kernel into ${pkg} failed (${f} is missing): run npx tsc -p tsconfig.json to see why`);
  }
  for (const f of ["package.json", "kernel.json"]) fs.copyFileSync(path.join(ROOT, f), path.join(pkg, f));
  fs.symlinkSync(path.join(ROOT, "node_modules"), path.join(pkg, "node_modules"), "dir");
  return { name: "streambook", argv: [process.execPath, main, "-f", "{connection_file}"], display_name: "TypeScript (streambook)", language: "typescript", interrupt_mode: "signal", env: {} };
}

interface Run {
  base: string;
  staging: string;
  input: string;
  out: string;
  cells: [string, string];
}

const LINES_PER_BATCH = 100;

/** The same input every run: BATCHES batches of LINES_PER_BATCH lines of 6 words. */
function batchLines(): string[][] {
  const rng = mulberry32(11);
  const batches: string[][] = [];
  for (let k = 1; k <= BATCHES; k++) {
    const lines: string[] = [];
    for (let l = 0; l < LINES_PER_BATCH; l++) {
      const words: string[] = [];
      for (let w = 0; w < 6; w++) words.push(`w${Math.floor(rng() * rng() * 200)}`);
      lines.push(words.join(" "));
    }
    batches.push(lines);
  }
  return batches;
}

function stage(dir: string): void {
  fs.mkdirSync(dir, { recursive: true });
  batchLines().forEach((lines, i) => fs.writeFileSync(path.join(dir, `input-${String(i + 1).padStart(4, "0")}.txt`), lines.join("\n")));
}

/** A run's folders (input files staged) and its two cells: define-or-recover, then drive the batches. */
function makeRun(name: string, redisUrl?: string): Run {
  const base = path.join(work, name);
  const [ckpt, staging, input, out] = ["ckpt", "staging", "input", "out"].map((d) => path.join(base, d)) as [string, string, string, string];
  stage(staging);
  fs.mkdirSync(input, { recursive: true });
  fs.mkdirSync(out, { recursive: true });
  const define = `
import * as fs from "node:fs";
import * as path from "node:path";
const dirs = ${JSON.stringify({ ckpt, staging, input, out })};
let source: RedisInputDStream | undefined;
function setup(): StreamingContext {
  const ctx = new StreamingContext(sc, 1000, { clock: "manual" });
  ctx.checkpoint(dirs.ckpt, { interval: 1000 });
  // The input folder starts empty, so every file in it is new, even one moved in before the first checkpoint.
  ${redisUrl === undefined
    ? `ctx.textFileStream(dirs.input, { newFilesOnly: false, name: "lines" })`
    : `(source = redisStream(ctx, { url: ${JSON.stringify(redisUrl)}, streams: ${JSON.stringify(`in-${name}`)}, startId: "0", count: ${LINES_PER_BATCH}, name: "lines" }))
    .map((entry) => String(entry.fields.line))`}
    .flatMap((line) => line.split(" "))
    .filter((w) => w.length > 0)
    .map((w) => [w, 1] as [string, number])
    .reduceByKey((a, b) => a + b)
    .updateStateByKey((values: number[], last?: number) => values.reduce((a, b) => a + b, 0) + (last ?? 0), { name: "counts" })
    .saveAsTextFiles(path.join(dirs.out, "counts"));
  return ctx;
}
const job = StreamingContext.getOrCreate(dirs.ckpt, setup);
console.log(job.recoveryReport ? \`recovered \${job.recoveryReport.checkpointTime}\` : "fresh");
`;
  const drive = `
await job.start();
while (job.now() < ${BATCHES * 1000}) {
  // The next batch's file goes in just before its batch (after a crash it may be there already).
  const name = \`input-\${String(job.now() / 1000 + 1).padStart(4, "0")}.txt\`;
  if (fs.existsSync(path.join(dirs.staging, name))) fs.renameSync(path.join(dirs.staging, name), path.join(dirs.input, name));
  await source?.sync(); // Redis: everything in the stream is buffered, so each batch takes exactly its lines
  await job.advance(1000);
  await new Promise((resolve) => setTimeout(resolve, ${DELAY_MS})); // room for a kill between batches
}
await job.stop();
console.log("DONE");
`;
  return { base, staging, input, out, cells: [define, drive] };
}

/** Runs a cell: resolves with its stdout text, rejects with its error (or when the kernel dies). */
function execute(client: KernelClient, code: string): Promise<string> {
  const { msgId, reply } = client.send("shell", "execute_request", { code, silent: false, store_history: true, user_expressions: {}, allow_stdin: false, stop_on_error: true });
  let text = "";
  let error = "";
  const off = client.onIopub((m: Message) => {
    if (m.parent_header.msg_id !== msgId) return;
    if (m.header.msg_type === "stream") text += String(m.content.text);
    if (m.header.msg_type === "error") error += `${String(m.content.ename)}: ${String(m.content.evalue)}\n${(m.content.traceback as string[]).join("\n")}`;
  });
  return reply.then(
    (r) => {
      off();
      if (r.content.status !== "ok") throw new Error(`cell failed: ${error || JSON.stringify(r.content)}`);
      return text;
    },
    (err: unknown) => {
      off();
      throw err;
    },
  );
}

function highestOutput(out: string): number {
  let max = 0;
  for (const n of fs.readdirSync(out)) {
    const m = /^counts-(\d+)$/.exec(n);
    if (m) max = Math.max(max, Number(m[1]) / 1000);
  }
  return max;
}

function outputOf(out: string, batch: number): string[] {
  const dir = path.join(out, `counts-${batch * 1000}`);
  const parts = fs.readdirSync(dir).filter((n) => n.startsWith("part-"));
  return parts.flatMap((p) => fs.readFileSync(path.join(dir, p), "utf8").split("\n").filter((l) => l.length > 0)).sort();
}

/** A kernel that runs the cells to the end; returns what the define cell printed. */
async function runToEnd(run: Run): Promise<string> {
  const client = await KernelClient.launch(spec, { cwd: run.base, startTimeoutMs: 60_000 });
  try {
    const said = await execute(client, run.cells[0]);
    expect(await execute(client, run.cells[1])).toContain("DONE");
    return said;
  } finally {
    await client.shutdown();
  }
}

/**
 * A kernel that runs the cells until the output of batch `killAt` appears (plus `delayMs`), then is
 * SIGKILLed. Returns what the define cell printed.
 */
async function runAndKill(run: Run, killAt: number, delayMs: number): Promise<string> {
  const client = await KernelClient.launch(spec, { cwd: run.base, startTimeoutMs: 60_000 });
  const target = path.join(run.out, `counts-${killAt * 1000}`);
  let watcher: fs.FSWatcher | undefined;
  try {
    const killed = new Promise<void>((resolve) => {
      let armed = false;
      const check = () => {
        if (armed || !fs.existsSync(target)) return;
        armed = true;
        const kill = () => {
          client.child.kill("SIGKILL");
          resolve();
        };
        if (delayMs === 0) kill();
        else setTimeout(kill, delayMs);
      };
      // A rename into the folder is an event; the check also runs once, in case it already happened.
      watcher = fs.watch(run.out, check);
      check();
    });
    const said = await execute(client, run.cells[0]);
    const driving = execute(client, run.cells[1]).then(
      (text) => {
        throw new Error(`the drive cell finished before the kill after batch ${killAt} (${text.trim()}); use more batches`);
      },
      () => undefined, // the kernel died under it: expected
    );
    await Promise.race([killed, driving]);
    await driving;
    return said;
  } finally {
    watcher?.close();
    await client.kill();
  }
}

beforeAll(() => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), "sb-kill-kernel-"));
  spec = buildKernel(work);
}, 150_000);

afterAll(() => {
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

/** Kills the victim run at KILLS points, recovering each time; every batch's output must equal the reference's. */
async function killAndRecover(reference: Run, victim: Run): Promise<void> {
  expect(await runToEnd(reference)).toContain("fresh");
  const expected = outputOf(reference.out, BATCHES);
  expect(expected.length).toBeGreaterThan(100);

  const rng = mulberry32(5);
  const log: string[] = [];
  let progress = 0;
  for (let i = 0; i < KILLS; i++) {
    // After the next batch's output or the one after; at once, or a moment later (mid-batch, mid-checkpoint).
    const killAt = progress + 1 + Math.floor(rng() * 2);
    const delayMs = i % 2 === 0 ? 0 : Math.floor(rng() * DELAY_MS * 1.5);
    const said = await runAndKill(victim, killAt, delayMs);
    progress = highestOutput(victim.out);
    expect(progress).toBeGreaterThanOrEqual(killAt);
    expect(progress).toBeLessThan(BATCHES);
    log.push(`kill ${i}: after batch ${killAt} + ${delayMs} ms; began ${said.trim()}; outputs up to ${progress}`);
  }
  const last = await runToEnd(victim);
  log.push(`last: began ${last.trim()}`);
  // Every batch has its output, and each equals the reference's: a batch generated again after a crash
  // reads exactly the input it read the first time (its input selection was logged before it ran).
  const differing: number[] = [];
  for (let b = 1; b <= BATCHES; b++) if (JSON.stringify(outputOf(victim.out, b)) !== JSON.stringify(outputOf(reference.out, b))) differing.push(b);
  log.push(`intermediate outputs that differ from the reference's: ${differing.join(", ") || "none"}`);
  if (process.env.SB_KILL_LOG) console.log(log.join("\n"));
  // Every kernel after the first recovered from a checkpoint.
  expect(log.filter((l) => l.includes("began recovered")).length).toBe(KILLS);
  expect(differing).toEqual([]);
  expect(outputOf(victim.out, BATCHES)).toEqual(expected);
}

describe("kill and recover a kernel (updateStateByKey and saveAsTextFiles in cells)", () => {
  it(`over textFileStream: SIGKILLed at ${KILLS} points and re-run with getOrCreate in a new kernel, every output equals an uninterrupted run's`, async () => {
    await killAndRecover(makeRun("reference"), makeRun("victim"));
  }, 300_000);

  it(`over a Redis stream (real redis-server): SIGKILLed at ${KILLS} points, every output equals an uninterrupted run's`, async () => {
    const server = await RedisTestServer.start();
    const redis = connect({ url: server.url });
    try {
      const lines = batchLines().flat();
      for (const name of ["redis-reference", "redis-victim"]) {
        const pipeline = redis.pipeline();
        for (const line of lines) pipeline.xadd(`in-${name}`, "*", "line", line);
        await pipeline.exec();
      }
      await killAndRecover(makeRun("redis-reference", server.url), makeRun("redis-victim", server.url));
    } finally {
      redis.disconnect();
      await server.stop();
    }
  }, 300_000);
});
