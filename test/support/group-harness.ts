// Drives a group of real instance processes (test/fixtures/group-wordcount.js) for the scale-out tests: a
// live producer over a partitioned Redis log, instances started, SIGKILLed, SIGSTOPped, and the group's
// output read back per batch and key. One file per concern: servers live in etcd-server.ts / redis-server.ts.
import { spawn, type ChildProcess } from "node:child_process";
import * as path from "node:path";
import type Redis from "ioredis";

export const FIXTURE = path.resolve(__dirname, "..", "fixtures", "group-wordcount.js");
export const ROOT = path.resolve(__dirname, "..", "..");

export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export interface InstanceSettings {
  redis: string;
  etcd: string;
  group: string;
  input: string;
  output: string;
  partitions: number;
  batchMs: number;
  sessionMs: number;
  checkpointMs?: number;
  rejoin?: boolean;
  /** Run it through this command prefix (e.g. ip netns exec NS). */
  wrap?: string[];
  extraEnv?: Record<string, string>;
}

export interface Line {
  event?: string;
  unit?: number;
  epoch?: number;
  instance?: string;
  message?: string;
  done?: number;
  partitions?: number[];
  started?: string;
  error?: string;
}

/** One instance process and what it printed. */
export class Instance {
  readonly lines: Line[] = [];
  stderr = "";
  readonly exited: Promise<number | null>;
  private waiters: (() => void)[] = [];

  constructor(
    readonly name: string,
    readonly proc: ChildProcess,
  ) {
    let buf = "";
    proc.stdout!.on("data", (d: Buffer) => {
      buf += d.toString();
      let i: number;
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        try {
          this.lines.push(JSON.parse(line) as Line);
        } catch {
          this.lines.push({ message: line });
        }
        for (const w of this.waiters.splice(0)) w();
      }
    });
    proc.stderr!.on("data", (d: Buffer) => (this.stderr += d.toString()));
    this.exited = new Promise((resolve) => proc.once("exit", (code) => resolve(code)));
  }

  get pid(): number {
    return this.proc.pid!;
  }

  get alive(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** Waits (bounded) for a printed line that matches. */
  async waitFor(pred: (l: Line) => boolean, timeoutMs: number, what: string): Promise<Line> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.lines.find(pred);
      if (hit) return hit;
      if (Date.now() > deadline) throw new Error(`${this.name}: no ${what} within ${timeoutMs} ms; stdout:\n${this.lines.map((l) => JSON.stringify(l)).join("\n")}\nstderr:\n${this.stderr}`);
      await Promise.race([new Promise<void>((r) => this.waiters.push(r)), sleep(100)]);
    }
  }

  kill(signal: NodeJS.Signals = "SIGKILL"): void {
    if (this.alive) this.proc.kill(signal);
  }
}

export function startInstance(name: string, s: InstanceSettings): Instance {
  const env: Record<string, string> = {
    ...(process.env as Record<string, string>),
    SB_REDIS: s.redis,
    SB_ETCD: s.etcd,
    SB_GROUP: s.group,
    SB_IN: s.input,
    SB_OUT: s.output,
    SB_PARTITIONS: String(s.partitions),
    SB_BATCH_MS: String(s.batchMs),
    SB_SESSION_MS: String(s.sessionMs),
    SB_CHECKPOINT_MS: String(s.checkpointMs ?? 3 * s.batchMs),
    SB_REJOIN: s.rejoin === false ? "0" : "1",
    ...s.extraEnv,
  };
  const argv = [...(s.wrap ?? []), process.execPath, FIXTURE];
  const proc = spawn(argv[0]!, argv.slice(1), { env, stdio: ["ignore", "pipe", "pipe"] });
  return new Instance(name, proc);
}

/** Deterministic lines of words, written live to `partitions` stream keys at about `perTick` lines every `tickMs`. */
export async function produce(redis: Redis, input: string, partitions: number, opts: { lines: number; perTick: number; tickMs: number; seed: number; vocabulary: number }): Promise<Map<string, number>> {
  const rng = mulberry32(opts.seed);
  const counts = new Map<string, number>();
  let written = 0;
  while (written < opts.lines) {
    const pipe = redis.pipeline();
    for (let i = 0; i < opts.perTick && written < opts.lines; i++, written++) {
      const words = Array.from({ length: 5 }, () => `w${Math.floor(rng() * rng() * opts.vocabulary)}`);
      for (const w of words) counts.set(w, (counts.get(w) ?? 0) + 1);
      pipe.xadd(`${input}:${Math.floor(rng() * partitions)}`, "*", "line", words.join(" "));
    }
    await pipe.exec();
    await sleep(opts.tickMs);
  }
  return counts;
}

/** The newest entry time (ms of its ID) over the input partitions: the batch after it is the last with data. */
export async function lastInputTime(redis: Redis, input: string, partitions: number): Promise<number> {
  let last = 0;
  for (let p = 0; p < partitions; p++) {
    const rows = (await redis.xrevrange(`${input}:${p}`, "+", "-", "COUNT", 1)) as [string, string[]][];
    if (rows.length > 0) last = Math.max(last, Number(rows[0]![0].split("-")[0]));
  }
  return last;
}

export interface OutputEntry {
  time: number;
  key: string;
  value: string;
  writer: string;
  epoch: number;
}

/** Every entry of the group's output streams `<output>:<q>`. */
export async function readOutput(redis: Redis, output: string, partitions: number): Promise<OutputEntry[]> {
  const out: OutputEntry[] = [];
  for (let q = 0; q < partitions; q++) {
    const rows = (await redis.xrange(`${output}:${q}`, "-", "+")) as [string, string[]][];
    for (const [id, flat] of rows) {
      const f: Record<string, string> = {};
      for (let i = 0; i + 1 < flat.length; i += 2) f[flat[i]!] = flat[i + 1]!;
      out.push({ time: Number(id.split("-")[0]), key: f.key!, value: f.value!, writer: f.w ?? "", epoch: Number(f.e ?? 0) });
    }
  }
  return out;
}

/** Batch time -> key -> value, for batches up to `upTo`. */
export function byBatch(entries: OutputEntry[], upTo: number): Map<number, Map<string, string>> {
  const m = new Map<number, Map<string, string>>();
  for (const e of entries) {
    if (e.time > upTo) continue;
    let b = m.get(e.time);
    if (!b) m.set(e.time, (b = new Map()));
    if (b.has(e.key)) throw new Error(`key ${e.key} written twice in batch ${e.time}`);
    b.set(e.key, e.value);
  }
  return m;
}

/** Waits until every reduce-side partition's progress mark is at or past `time`. */
export async function waitForProgress(redis: Redis, group: string, stage: number, partitions: number, time: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const pipe = redis.pipeline();
    for (let q = 0; q < partitions; q++) pipe.hget(`streambook:${group}:cp:${stage}:${q}`, "p");
    const marks = ((await pipe.exec()) ?? []).map(([, v]) => (v === null || v === undefined ? 0 : Number(v)));
    if (marks.every((m) => m >= time)) return;
    if (Date.now() > deadline) throw new Error(`group ${group}: stage ${stage} did not reach batch ${time} within ${timeoutMs} ms (marks ${marks.join(", ")})`);
    await sleep(100);
  }
}
