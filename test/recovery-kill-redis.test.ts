// Kill and recover over Redis: a plain Node program (test/fixtures/recovery-redis.js) reads a Redis stream
// and writes its running word count to another with saveToRedis; SIGKILLed at 20 points and restarted with
// getOrCreate, its whole output stream must equal an uninterrupted run's: no batch lost, none doubled.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type Redis from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect } from "../engine/sources/redis.js";
import { RedisTestServer, redisServerAvailable } from "./support/redis-server.js";
import { buildEngine } from "./fixtures/recovery-build.js";
import { killRepeatedly, mulberry32, runOnce } from "./fixtures/recovery-harness.js";

const FIXTURE = path.resolve(__dirname, "fixtures", "recovery-redis.js");
const BATCHES = 80;
const PER_BATCH = 50;
const DELAY_MS = 25;
const KILLS = 20;

describe.skipIf(!redisServerAvailable())("kill and recover over a Redis source and sink (real redis-server)", () => {
  let work: string;
  let dist: string;
  let server: RedisTestServer;
  let redis: Redis;

  beforeAll(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), "sb-kill-redis-"));
    dist = buildEngine(work);
    server = await RedisTestServer.start();
    redis = connect({ url: server.url });
  }, 120_000);

  afterAll(async () => {
    redis?.disconnect();
    await server?.stop();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  async function stage(stream: string): Promise<void> {
    const rng = mulberry32(99);
    const pipe = redis.pipeline();
    for (let i = 0; i < BATCHES * PER_BATCH; i++) {
      const words = Array.from({ length: 6 }, () => `w${Math.floor(rng() * rng() * 100)}`);
      pipe.xadd(stream, "*", "line", words.join(" "));
    }
    await pipe.exec();
  }

  async function output(stream: string): Promise<string[]> {
    const rows = (await redis.xrange(stream, "-", "+")) as [string, string[]][];
    return rows.map(([id, f]) => `${id} ${f.join(" ")}`);
  }

  function args(name: string, group = ""): string[] {
    return [FIXTURE, server.url, path.join(work, name, "ckpt"), `${name}:in`, `${name}:out`, String(BATCHES), String(PER_BATCH), String(DELAY_MS), group];
  }

  it(`SIGKILLed at ${KILLS} points, its output stream equals an uninterrupted run's entry for entry`, async () => {
    await stage("reference:in");
    const ref = await runOnce(args("reference"), dist, undefined);
    expect(ref.stderr).toBe("");
    expect(ref.lines.at(-1)).toBe("DONE");
    const expected = await output("reference:out");
    expect(expected.length).toBeGreaterThan(BATCHES);

    await stage("victim:in");
    const log = await killRepeatedly(args("victim"), dist, { kills: KILLS, batches: BATCHES, delayMs: DELAY_MS, seed: 11 });
    if (process.env.SB_KILL_LOG) console.log(log.join("\n"));
    const last = await runOnce(args("victim"), dist, undefined);
    expect(last.stderr).toBe("");
    expect(last.lines.at(-1)).toBe("DONE");
    expect(log.filter((l) => l.includes("-> recovered")).length).toBeGreaterThanOrEqual(10);
    // Every batch's output, entry IDs included: each batch written exactly once, with the same content.
    expect(await output("victim:out")).toEqual(expected);
  }, 110_000);

  it("as a consumer group (XREADGROUP), SIGKILLed at 10 points, its output equals the uninterrupted run's and nothing stays pending", async () => {
    const expected = (await output("reference:out")).map((l) => l.replace(/^\S+ /, ""));
    expect(expected.length).toBeGreaterThan(BATCHES);
    await stage("grouped:in");
    const log = await killRepeatedly(args("grouped", "g"), dist, { kills: 10, batches: BATCHES, delayMs: DELAY_MS, seed: 13 });
    if (process.env.SB_KILL_LOG) console.log(log.join("\n"));
    const last = await runOnce(args("grouped", "g"), dist, undefined);
    expect(last.stderr).toBe("");
    expect(last.lines.at(-1)).toBe("DONE");
    const got = await output("grouped:out");
    // Same batches, same content (entry IDs are batch times, so they match too).
    expect(got.map((l) => l.replace(/^\S+ /, ""))).toEqual(expected);
    expect(got.map((l) => l.split(" ")[0])).toEqual((await output("reference:out")).map((l) => l.split(" ")[0]));
    const pending = (await redis.xpending("grouped:in", "g")) as [number, ...unknown[]];
    expect(Number(pending[0])).toBe(0);
  }, 110_000);
});
