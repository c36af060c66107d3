// One process of bench:scale: the word count with a re-key (reduceByKey, then updateStateByKey) over the
// 8-partition Redis log, as the plain single-process engine or as one instance of a group. Prints JSON lines:
// {"started": ms} just before start(), and for the plain engine {"done": ms} when every word is counted.
// Usage: node scale-worker.js plain|group <redisUrl> <etcdUrl> <group> <batchMs> <totalWords> [sessionMs]
import * as fs from "node:fs";
import { performance } from "node:perf_hooks";
import { SparkContext, StreamingContext, redisStream, saveToRedis, type RDD } from "../engine/index.js";

const [mode, url, etcd, group, batchArg, totalArg, sessionArg, instancesArg] = process.argv.slice(2);
const batch = Number(batchArg);
const total = Number(totalArg);
const ssc = new StreamingContext(new SparkContext(), batch, {
  group: mode === "group" ? { name: group!, coordinator: etcd!, sessionTimeout: Number(sessionArg ?? 2000), checkpointInterval: 2 * batch, instances: Number(instancesArg ?? 1) } : false,
});
const lines = redisStream(ssc, { url, streams: Array.from({ length: 8 }, (_, i) => `${group!.startsWith("live") ? "live" : "lines"}:${i}`), startId: "0", fetchCount: 10_000 });
const counts = lines
  .flatMap((e) => e.fields.line!.split(" "))
  .map((w) => [w, 1] as [string, number])
  .reduceByKey((a, b) => a + b)
  .updateStateByKey((vs: number[], last?: number) => vs.reduce((a, b) => a + b, 0) + (last ?? 0));
saveToRedis(counts, { url, stream: `${group}-out` });
const out = (o: object): void => void process.stdout.write(JSON.stringify(o) + "\n");
if (mode === "plain") {
  let done = false;
  counts.foreachRDD((rdd: RDD<[string, number]>) => {
    if (done) return;
    let sum = 0;
    for (const [, v] of rdd.collect()) sum += v;
    if (sum >= total) {
      done = true;
      out({ done: Date.now() });
    }
  });
}
/** CPU seconds of this process's main thread (Linux /proc; the rest of the process's CPU is GC and I/O threads). */
function mainThreadCpu(): number {
  try {
    const f = fs.readFileSync(`/proc/self/task/${process.pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return 0;
  }
}
// Where this process's time went since start(), printed on SIGUSR2 (bench:scale asks before it kills us): the event
// loop's busy and idle time (idle: waiting for Redis, etcd or a timer), the main thread's CPU and the process's.
const elu0 = performance.eventLoopUtilization();
const cpu0 = process.cpuUsage();
const main0 = mainThreadCpu();
process.on("SIGUSR2", () => {
  const elu = performance.eventLoopUtilization(elu0);
  const cpu = process.cpuUsage(cpu0);
  const loop = (ssc.group as unknown as { loopStats?: () => unknown } | undefined)?.loopStats?.();
  out({ profile: { busyMs: elu.active, idleMs: elu.idle, mainCpuMs: (mainThreadCpu() - main0) * 1000, processCpuMs: (cpu.user + cpu.system) / 1000, loop } });
});
out({ started: Date.now(), instance: ssc.group?.instanceId });
void ssc.start();
process.on("SIGTERM", () => void ssc.stop().then(() => process.exit(0)));
