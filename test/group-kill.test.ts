// Kill and recover a group: a stateful word count with a re-key over a live 8-partition Redis log, run as
// 1, 2 and 4 instances (real processes, a real etcd, a real redis-server on loopback). Instances are
// SIGKILLed at 10 points in all and new ones started at other points; afterwards every batch's output
// per key must equal what one uninterrupted instance writes over the same log, and the final counts
// must be the words the producer wrote.
import type Redis from "ioredis";
import { describe, expect, it } from "vitest";
import { connect } from "../engine/sources/redis.js";
import { EtcdTestServer, etcdAvailable } from "./support/etcd-server.js";
import { RedisTestServer, redisServerAvailable } from "./support/redis-server.js";
import {
  byBatch,
  lastInputTime,
  mulberry32,
  produce,
  readOutput,
  sleep,
  startInstance,
  waitForProgress,
  type Instance,
  type InstanceSettings,
} from "./support/group-harness.js";

const PARTITIONS = 8;
const BATCH = 100;

interface Outcome {
  instances: number;
  kills: number;
  started: number;
  batches: number;
}

async function scenario(instances: number, kills: number, seed: number): Promise<Outcome> {
  const etcd = await EtcdTestServer.start();
  const server = await RedisTestServer.start();
  const redis: Redis = connect({ url: server.url });
  const all: Instance[] = [];
  const rng = mulberry32(seed);
  try {
    const base: InstanceSettings = {
      redis: server.url,
      etcd: etcd.url,
      group: "wc",
      input: "lines",
      output: "counts",
      partitions: PARTITIONS,
      batchMs: BATCH,
      sessionMs: 1000,
    };
    let n = 0;
    const launch = (settings = base): Instance => {
      const inst = startInstance(`${settings.group}-${instances}x-${n++}`, settings);
      all.push(inst);
      return inst;
    };
    for (let i = 0; i < instances; i++) launch();
    const producing = produce(redis, "lines", PARTITIONS, { lines: 1400, perTick: 40, tickMs: 100, seed, vocabulary: 60 });
    // Kill points spread over the run; a new instance comes at another point after each.
    let killed = 0;
    const schedule = (async () => {
      await sleep(700 + rng() * 300);
      for (let k = 0; k < kills; k++) {
        const live = all.filter((i) => i.alive);
        const victim = live[Math.floor(rng() * live.length)];
        if (victim) {
          // Only once it has joined and worked, so the kill lands in the middle of processing.
          await victim.waitFor((l) => l.done !== undefined || l.event === "assigned", 60_000, "a first batch");
          await sleep(rng() * 250);
          victim.kill("SIGKILL");
          killed++;
        }
        await sleep(150 + rng() * 500);
        launch();
        await sleep(200 + rng() * 400);
      }
    })();
    const expected = await producing;
    await schedule;
    const last = await lastInputTime(redis, "lines", PARTITIONS);
    const end = Math.ceil(last / BATCH) * BATCH + BATCH;
    await waitForProgress(redis, "wc", 1, PARTITIONS, end, 90_000);
    for (const i of all) i.kill("SIGTERM");
    await Promise.all(all.map((i) => Promise.race([i.exited, sleep(5000)])));
    const got = byBatch(await readOutput(redis, "counts", PARTITIONS), end);

    // The reference: one instance, never interrupted, over the same log (a new group, its own output).
    const ref = launch({ ...base, group: "reference", output: "reference" });
    await waitForProgress(redis, "reference", 1, PARTITIONS, end, 90_000);
    ref.kill("SIGTERM");
    await Promise.race([ref.exited, sleep(5000)]);
    const want = byBatch(await readOutput(redis, "reference", PARTITIONS), end);

    expect(want.size).toBeGreaterThan(20);
    expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
    for (const [t, kv] of want) expect(Object.fromEntries(got.get(t) ?? []), `batch ${t}`).toEqual(Object.fromEntries(kv));
    // The last batch holds every word the producer wrote, counted once.
    const final = got.get(Math.max(...got.keys()))!;
    expect(Object.fromEntries([...final].map(([k, v]) => [k, Number(v)]))).toEqual(Object.fromEntries(expected));
    for (const i of all) expect(i.lines.filter((l) => l.error), `${i.name} reported an error`).toEqual([]);
    return { instances, kills: killed, started: all.length, batches: want.size };
  } finally {
    for (const i of all) i.kill("SIGKILL");
    redis.disconnect();
    await Promise.all([etcd.stop(), server.stop()]);
  }
}

describe.skipIf(!etcdAvailable() || !redisServerAvailable())("a group over a partitioned log survives SIGKILLs (real etcd, redis-server, processes)", () => {
  it("1, 2 and 4 instances with 10 SIGKILLs and new instances: every batch's output per key equals one uninterrupted instance's", async () => {
    const outcomes = await Promise.all([scenario(1, 3, 101), scenario(2, 3, 202), scenario(4, 4, 303)]);
    expect(outcomes.reduce((n, o) => n + o.kills, 0)).toBe(10);
    if (process.env.SB_GROUP_LOG) console.log(outcomes);
  }, 200_000);
});
