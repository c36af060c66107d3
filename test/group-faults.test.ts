// The bad situations of a group, each against real processes, a real etcd and a real redis-server:
// more instances than partitions (one stands by, and works once an owner is gone), an instance paused past its session
// timeout that then resumes (it must find itself fenced and write no output and no checkpoint), a second
// claimant raising a partition's fence under a running owner (its next commit is refused), and the
// coordinator unreachable at start and mid-run. After each, the output must equal an uninterrupted run's.
import type Redis from "ioredis";
import { Etcd3 } from "etcd3";
import { describe, expect, it } from "vitest";
import { connect } from "../engine/sources/redis.js";
import { GroupMonitor } from "../engine/group/monitor.js";
import { EtcdTestServer, etcdAvailable } from "./support/etcd-server.js";
import { RedisTestServer, redisServerAvailable } from "./support/redis-server.js";
import { freePort } from "./support/ports.js";
import {
  byBatch,
  lastInputTime,
  produce,
  readOutput,
  sleep,
  startInstance,
  waitForProgress,
  type Instance,
  type InstanceSettings,
} from "./support/group-harness.js";

const BATCH = 100;

async function until<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined> | T | undefined): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(100);
  }
}

/** The entries `writer` wrote (output and repartition streams) and the checkpoints it holds, as "key id" strings. */
async function writesBy(redis: Redis, group: string, output: string, partitions: number, writer: string): Promise<Set<string>> {
  const out = new Set<string>();
  const keys = [...Array.from({ length: partitions }, (_, q) => `${output}:${q}`), ...((await redis.keys(`streambook:${group}:x:*`)) as string[])];
  for (const key of keys) {
    for (const [id, flat] of (await redis.xrange(key, "-", "+")) as [string, string[]][]) if (flat[flat.indexOf("w") + 1] === writer) out.add(`${key} ${id}`);
  }
  for (const key of (await redis.keys(`streambook:${group}:cp:*`)) as string[]) {
    if ((await redis.hget(key, "w")) === writer) out.add(`${key} checkpoint ${await redis.hget(key, "t")}`);
  }
  return out;
}

async function compareWithReference(redis: Redis, base: InstanceSettings, end: number, expected: Map<string, number>, launch: (s: InstanceSettings) => Instance): Promise<number> {
  const got = byBatch(await readOutput(redis, base.output, base.partitions), end);
  const ref = launch({ ...base, group: `${base.group}-reference`, output: `${base.output}-reference` });
  await waitForProgress(redis, `${base.group}-reference`, 1, base.partitions, end, 90_000);
  ref.kill("SIGTERM");
  const want = byBatch(await readOutput(redis, `${base.output}-reference`, base.partitions), end);
  expect(want.size).toBeGreaterThan(20);
  expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
  for (const [t, kv] of want) expect(Object.fromEntries(got.get(t) ?? []), `batch ${t}`).toEqual(Object.fromEntries(kv));
  const final = got.get(Math.max(...got.keys()))!;
  expect(Object.fromEntries([...final].map(([k, v]) => [k, Number(v)]))).toEqual(Object.fromEntries(expected));
  return want.size;
}

async function pausedAndSecondClaimant(): Promise<void> {
  const etcd = await EtcdTestServer.start();
  const server = await RedisTestServer.start();
  const redis = connect({ url: server.url });
  const all: Instance[] = [];
  let monitor: GroupMonitor | undefined;
  const etcdClient = new Etcd3({ hosts: `http://127.0.0.1:${etcd.clientPort}` });
  try {
    const base: InstanceSettings = { redis: server.url, etcd: etcd.url, group: "few", input: "lines", output: "counts", partitions: 2, batchMs: BATCH, sessionMs: 1000, rejoin: false };
    const launch = (s: InstanceSettings = base): Instance => {
      const i = startInstance(`${s.group}-${all.length}`, s);
      all.push(i);
      return i;
    };
    const producing = produce(redis, "lines", 2, { lines: 900, perTick: 15, tickMs: 100, seed: 5, vocabulary: 40 });
    for (let i = 0; i < 3; i++) launch();
    monitor = await GroupMonitor.connect({ name: "few", coordinator: etcd.url, timeout: 60_000 });

    // Two partitions, three instances: two own one unit each, the third stands by.
    const settled = await until("3 members, 2 owned units", 60_000, async () => {
      const s = await monitor!.status();
      return s.members.length === 3 && s.members.filter((m) => m.partitions.length > 0).length === 2 ? s : undefined;
    });
    const standby = settled.members.find((m) => m.partitions.length === 0)!;
    expect(settled.members.filter((m) => m.partitions.length === 1)).toHaveLength(2);
    await until("batches done", 60_000, async () => ((await monitor!.status()).completedBatch ?? 0) > settled.zeroTime + 5 * BATCH || undefined);

    // Pause one owner past its session timeout: its unit moves, and the stand-by gets work.
    const owner = settled.members.find((m) => m.partitions.length === 1)!;
    const zombie = all.find((i) => i.pid === owner.pid)!;
    const unit = owner.partitions[0]!;
    zombie.kill("SIGSTOP");
    await until(`unit ${unit} owned by another instance, and the stand-by working`, 30_000, async () => {
      const s = await monitor!.status();
      const byOther = s.members.some((m) => m.instanceId !== owner.instanceId && m.partitions.includes(unit));
      return (byOther && (s.members.find((m) => m.instanceId === standby.instanceId)?.partitions.length ?? 0) > 0) || undefined;
    });
    // Let the new owner commit a few batches under its epoch before the old one wakes up.
    const taken = (await monitor.status()).partitions.filter((p) => p.partition === unit).map((p) => p.progress ?? 0);
    await until("the new owner's batches", 30_000, async () => {
      const s = await monitor!.status();
      return s.partitions.filter((p) => p.partition === unit).every((p, i) => (p.progress ?? 0) >= taken[i]! + 3 * BATCH) || undefined;
    });
    const zid = zombie.lines.find((l) => l.started)?.started ?? "";
    expect(zid).not.toBe("");
    const before = await writesBy(redis, "few", "counts", 2, zid);
    expect(before.size).toBeGreaterThan(0);
    zombie.kill("SIGCONT");
    const exit = await Promise.race([zombie.exited, sleep(30_000).then(() => "still running")]);
    expect(exit).toBe(3);
    const err = zombie.lines.find((l) => l.error);
    expect(err?.error).toBe("GroupSessionExpiredError");
    expect(err?.message).toMatch(/session timeout/);

    // A second claimant: someone raises unit's fence in the store under a newer epoch, behind the running owner's back.
    const victimId = (await monitor.status()).members.find((m) => m.partitions.length > 0)!;
    const victim = all.find((i) => i.pid === victimId.pid)!;
    const victimUnit = victimId.partitions[0]!;
    const rogueEpoch = Number((await etcdClient.put("/rogue/claim").value("x")).header.revision);
    await redis.set(`streambook:few:fence:${victimUnit}`, String(rogueEpoch));
    const fenced = await victim.waitFor((l) => l.event === "fenced" && l.unit === victimUnit, 30_000, "a fenced commit");
    expect(fenced.message).toMatch(/refused/);
    await victim.waitFor((l) => l.event === "assigned" && l.unit === victimUnit && (l.epoch ?? 0) > rogueEpoch, 30_000, "the unit claimed again under a newer epoch");

    const expected = await producing;
    const end = Math.ceil((await lastInputTime(redis, "lines", 2)) / BATCH) * BATCH + BATCH;
    await waitForProgress(redis, "few", 1, 2, end, 90_000);
    for (const i of all) i.kill("SIGTERM");
    await Promise.all(all.map((i) => Promise.race([i.exited, sleep(5000)])));

    // The paused instance wrote nothing after it resumed: not one output entry, repartition entry or checkpoint.
    // (Repartition entries it wrote before its pause may have been trimmed since: only new ones would count.)
    const after = await writesBy(redis, "few", "counts", 2, zid);
    if (process.env.SB_GROUP_LOG) console.log("zombie", zombie.lines, "victim", victim.lines.filter((l) => l.event));
    expect([...after].filter((w) => !before.has(w))).toEqual([]);
    expect([...after].filter((w) => w.includes(" checkpoint "))).toEqual([]);
    await compareWithReference(redis, base, end, expected, launch);
  } finally {
    for (const i of all) i.kill("SIGKILL");
    await monitor?.close();
    etcdClient.close();
    redis.disconnect();
    await Promise.all([etcd.stop(), server.stop()]);
  }
}

async function coordinatorAway(): Promise<void> {
  const etcd = await EtcdTestServer.start();
  const server = await RedisTestServer.start();
  const redis = connect({ url: server.url });
  const all: Instance[] = [];
  try {
    const base: InstanceSettings = { redis: server.url, etcd: etcd.url, group: "away", input: "lines", output: "counts", partitions: 4, batchMs: BATCH, sessionMs: 2000 };
    const launch = (s: InstanceSettings = base): Instance => {
      const i = startInstance(`${s.group}-${all.length}`, s);
      all.push(i);
      return i;
    };
    // Unreachable at start: a clear error naming the coordinator, and nothing written.
    const nowhere = `etcd://127.0.0.1:${await freePort()}`;
    const lost = launch({ ...base, etcd: nowhere, group: "nowhere", extraEnv: { SB_CONNECT_MS: "1500" } });
    expect(await Promise.race([lost.exited, sleep(60_000).then(() => "still running")])).toBe(3);
    const err = lost.lines.find((l) => l.error);
    expect(err?.error).toBe("GroupCoordinatorUnavailableError");
    expect(err?.message).toContain(nowhere);
    expect(await redis.keys("streambook:nowhere:*")).toEqual([]);

    // Unreachable mid-run: etcd stops for longer than the session timeout, then comes back with its data.
    const producing = produce(redis, "lines", 4, { lines: 1000, perTick: 25, tickMs: 100, seed: 9, vocabulary: 40 });
    const a = launch();
    const b = launch();
    await Promise.all([a, b].map((i) => i.waitFor((l) => l.done !== undefined, 60_000, "a first batch")));
    await etcd.halt();
    await sleep(3000);
    await etcd.restart();
    const expected = await producing;
    const end = Math.ceil((await lastInputTime(redis, "lines", 4)) / BATCH) * BATCH + BATCH;
    await waitForProgress(redis, "away", 1, 4, end, 90_000);
    expect([a, b].some((i) => i.lines.some((l) => l.event === "coordinator-unreachable" || l.event === "session-expired"))).toBe(true);
    for (const i of [a, b]) expect(i.lines.filter((l) => l.error)).toEqual([]);
    if (process.env.SB_GROUP_LOG) console.log("away", a.lines.filter((l) => l.event), b.lines.filter((l) => l.event));
    for (const i of all) i.kill("SIGTERM");
    await compareWithReference(redis, base, end, expected, launch);
  } finally {
    for (const i of all) i.kill("SIGKILL");
    redis.disconnect();
    await Promise.all([etcd.stop(), server.stop()]);
  }
}

describe.skipIf(!etcdAvailable() || !redisServerAvailable())("a group's bad situations (real etcd, redis-server, processes)", () => {
  it("a stand-by takes over from an instance paused past its session timeout, which then writes nothing; a second claimant is fenced out; the coordinator unreachable at start and mid-run", async () => {
    await Promise.all([pausedAndSecondClaimant(), coordinatorAway()]);
  }, 220_000);
});
