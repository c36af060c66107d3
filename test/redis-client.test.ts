// Redis Streams plumbing against a real redis-server: explicit-ID reads, exact range re-reads, the
// idempotent batch writer, and a server restart (with an append-only file) that loses nothing.
import type Redis from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  RedisStreamFetcher,
  compareIds,
  connect,
  readRange,
  resolveStartId,
  writeBatchIdempotent,
} from "../engine/sources/redis.js";
import { RedisTestServer, redisServerAvailable } from "./support/redis-server.js";

describe.skipIf(!redisServerAvailable())("Redis Streams plumbing (real redis-server)", () => {
  let server: RedisTestServer;
  let redis: Redis;

  beforeAll(async () => {
    server = await RedisTestServer.start({ persistent: true });
    redis = connect({ url: server.url });
  }, 30_000);

  afterAll(async () => {
    redis?.disconnect();
    await server?.stop();
  });

  it("orders stream IDs numerically", () => {
    expect(compareIds("10-0", "9-5")).toBeGreaterThan(0);
    expect(compareIds("5-10", "5-9")).toBeGreaterThan(0);
    expect(compareIds("0", "0-0")).toBe(0);
  });

  it("fetches from an explicit ID, caps per round, and re-reads an exact range", async () => {
    for (let i = 0; i < 5; i++) await redis.xadd("s1", `${i + 1}-0`, "n", String(i));
    const f = new RedisStreamFetcher(redis, { streams: ["s1"], count: 3 }, new Map([["s1", "2-0"]]));
    expect(await f.fetchOnce()).toBe(3);
    expect(f.take().map((e) => e.fields.n)).toEqual(["2", "3", "4"]);
    expect(f.fetched.get("s1")).toBe("5-0");
    expect(await f.fetchOnce()).toBe(0);
    expect((await readRange(redis, "s1", "1-0", "3-0")).map((e) => e.id)).toEqual(["2-0", "3-0"]);
    expect(await resolveStartId(redis, "s1", "$")).toBe("5-0");
    expect(await resolveStartId(redis, "nope", "$")).toBe("0-0");
  });

  it("writes a batch once: a replay of the same batch time adds nothing", async () => {
    const batch = [{ word: "a", n: "1" }, { word: "b", n: "2" }];
    expect(await writeBatchIdempotent(redis, "out", 1000, batch)).toBe(2);
    expect(await writeBatchIdempotent(redis, "out", 1000, batch)).toBe(-1);
    expect(await writeBatchIdempotent(redis, "out", 2000, [{ word: "c", n: "3" }])).toBe(1);
    expect(await writeBatchIdempotent(redis, "out", 1000, batch)).toBe(-1); // older than the top: also a replay
    const rows = (await redis.xrange("out", "-", "+")) as [string, string[]][];
    expect(rows.map(([id]) => id)).toEqual(["1000-0", "1000-1", "2000-0"]);
    expect(rows[1]![1]).toEqual(["word", "b", "n", "2"]);
  });

  it("survives a server restart: nothing acknowledged is lost and the fetcher carries on", async () => {
    const errors: Error[] = [];
    const f = new RedisStreamFetcher(
      redis,
      { streams: ["live"], count: 100, blockMs: 50, onError: (e) => errors.push(e) },
      new Map(),
    );
    f.start();
    const seen: string[] = [];
    const collect = async (n: number): Promise<void> => {
      for (let guard = 0; seen.length < n && guard < 200; guard++) {
        const more = f.whenData();
        for (const e of f.take()) seen.push(e.fields.i!);
        if (seen.length >= n) break;
        await more;
      }
    };
    for (let i = 0; i < 10; i++) await redis.xadd("live", "*", "i", String(i));
    await collect(10);
    await server.restart();
    // Written after the restart through the same client: ioredis reconnects and the fetcher resumes.
    for (let i = 10; i < 20; i++) await redis.xadd("live", "*", "i", String(i));
    await collect(20);
    await f.stop();
    expect(seen).toEqual(Array.from({ length: 20 }, (_, i) => String(i)));
    expect(await redis.xlen("live")).toBe(20);
    expect(await redis.xlen("out")).toBe(3); // the earlier test's stream came back from the append-only file
  }, 60_000);
});
