// Separate hosts: three instances, each in its own Linux network namespace, the coordinator (etcd) and the
// log (redis-server) in a fourth, all on one bridge. One host's link goes down mid-run: its partitions must
// move to the others, and when the link comes back the cut-off instance finds itself fenced and joins again.
// The group's output must equal one uninterrupted instance's, batch by batch: nothing lost, nothing doubled.
import { spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type Redis from "ioredis";
import { describe, expect, it } from "vitest";
import { connect } from "../engine/sources/redis.js";
import { GroupMonitor } from "../engine/group/monitor.js";
import { EtcdTestServer, etcdAvailable } from "./support/etcd-server.js";
import { REDIS_SERVER_BIN, redisServerAvailable } from "./support/redis-server.js";
import { Network, netnsAvailable } from "./support/netns.js";
import { byBatch, lastInputTime, produce, readOutput, sleep, startInstance, waitForProgress, type Instance, type InstanceSettings } from "./support/group-harness.js";

const BATCH = 100;
const PARTITIONS = 6;

async function redisIn(net: Network, dir: string): Promise<ChildProcess> {
  const proc = spawn(net.exec(net.server)[0]!, [...net.exec(net.server).slice(1), REDIS_SERVER_BIN, "--port", "6379", "--bind", net.server.address, "--dir", dir, "--save", "", "--protected-mode", "no"], {
    stdio: "ignore",
  });
  const r = connect({ url: `redis://${net.server.address}:6379`, redisOptions: { maxRetriesPerRequest: 1, retryStrategy: () => 100 } });
  r.on("error", () => {});
  try {
    for (let i = 0; i < 200; i++) {
      try {
        if ((await r.ping()) === "PONG") return proc;
      } catch {
        await sleep(50);
      }
    }
    throw new Error("redis-server in the server namespace did not answer");
  } finally {
    r.disconnect();
  }
}

describe.skipIf(!netnsAvailable() || !etcdAvailable() || !redisServerAvailable())("a group on separate hosts (network namespaces, real etcd and redis-server)", () => {
  it("3 hosts, one cut off mid-run: its partitions move, it comes back fenced and rejoins, and the output equals an uninterrupted run's", async () => {
    const net = Network.create(3);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sb-netns-"));
    const all: Instance[] = [];
    let etcd: EtcdTestServer | undefined;
    let redisProc: ChildProcess | undefined;
    let redis: Redis | undefined;
    let monitor: GroupMonitor | undefined;
    try {
      etcd = await EtcdTestServer.start({ host: net.server.address, wrap: net.exec(net.server), clientPort: 2379, peerPort: 2380 });
      redisProc = await redisIn(net, dir);
      redis = connect({ url: `redis://${net.server.address}:6379` });
      const base: InstanceSettings = {
        redis: `redis://${net.server.address}:6379`,
        etcd: etcd.url,
        group: "hosts",
        input: "lines",
        output: "counts",
        partitions: PARTITIONS,
        batchMs: BATCH,
        sessionMs: 1000,
      };
      const hosts = net.hosts.map((h) => {
        const i = startInstance(`host-${h.ns}`, { ...base, wrap: net.exec(h) });
        all.push(i);
        return i;
      });
      const producing = produce(redis, "lines", PARTITIONS, { lines: 1200, perTick: 25, tickMs: 100, seed: 17, vocabulary: 50 });
      monitor = await GroupMonitor.connect({ name: "hosts", coordinator: etcd.url, timeout: 60_000 });
      const cutHost = net.hosts[1]!;
      const cut = hosts[1]!;
      const cutId = (await cut.waitFor((l) => l.started !== undefined, 60_000, "its start")).started!;
      await Promise.all(hosts.map((i) => i.waitFor((l) => l.done !== undefined, 60_000, "a first batch")));
      const owned = (await monitor.status()).members.find((m) => m.instanceId === cutId)!.partitions;
      expect(owned.length).toBeGreaterThan(0);

      net.cut(cutHost);
      // Its units go to the hosts still connected, which carry on.
      await (async () => {
        const deadline = Date.now() + 30_000;
        for (;;) {
          const s = await monitor!.status();
          const holders = owned.map((u) => s.members.find((m) => m.partitions.includes(u))?.instanceId);
          if (holders.every((h) => h !== undefined && h !== cutId)) return;
          if (Date.now() > deadline) throw new Error(`units ${owned.join(",")} did not move off the cut host: ${JSON.stringify(s.members)}`);
          await sleep(100);
        }
      })();
      await sleep(1000);
      net.mend(cutHost);
      // Back on the network, it learns its session expired (or its write is refused) and joins again.
      await cut.waitFor((l) => l.event === "session-expired" || l.event === "fenced", 30_000, "finding itself fenced");

      const expected = await producing;
      const end = Math.ceil((await lastInputTime(redis, "lines", PARTITIONS)) / BATCH) * BATCH + BATCH;
      await waitForProgress(redis, "hosts", 1, PARTITIONS, end, 90_000);
      for (const i of all) i.kill("SIGTERM");
      await Promise.all(all.map((i) => Promise.race([i.exited, sleep(5000)])));
      for (const i of all) expect(i.lines.filter((l) => l.error), i.name).toEqual([]);

      const got = byBatch(await readOutput(redis, "counts", PARTITIONS), end);
      const ref = startInstance("reference", { ...base, group: "reference", output: "reference", wrap: net.exec(net.hosts[0]!) });
      all.push(ref);
      await waitForProgress(redis, "reference", 1, PARTITIONS, end, 90_000);
      const want = byBatch(await readOutput(redis, "reference", PARTITIONS), end);
      expect(want.size).toBeGreaterThan(20);
      expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
      for (const [t, kv] of want) expect(Object.fromEntries(got.get(t) ?? []), `batch ${t}`).toEqual(Object.fromEntries(kv));
      const final = got.get(Math.max(...got.keys()))!;
      expect(Object.fromEntries([...final].map(([k, v]) => [k, Number(v)]))).toEqual(Object.fromEntries(expected));
    } finally {
      for (const i of all) i.kill("SIGKILL");
      await monitor?.close().catch(() => {});
      redis?.disconnect();
      await etcd?.stop().catch(() => {});
      redisProc?.kill("SIGKILL");
      net.remove();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 200_000);
});
