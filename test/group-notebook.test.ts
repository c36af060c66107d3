// A group from notebooks, end to end through the headless runner and real kernels: a launcher notebook
// starts `streambook run instance.ipynb --instances 2`, opens the group's status panel, and charts the
// group's global result live from the output log. Each instance's notebook asks which instance it is and
// how many there are. Real etcd and redis-server on loopback.
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { connect } from "../engine/sources/redis.js";
import { EtcdTestServer, etcdAvailable } from "./support/etcd-server.js";
import { RedisTestServer, redisServerAvailable } from "./support/redis-server.js";
import { mulberry32 } from "./support/group-harness.js";

const ROOT = path.resolve(__dirname, "..");
const CLI = path.join(ROOT, "bin", "streambook.js");

const code = (source: string) => ({ cell_type: "code", metadata: {}, source, outputs: [], execution_count: null });
const notebook = (cells: ReturnType<typeof code>[]) => ({
  nbformat: 4,
  nbformat_minor: 4,
  metadata: { kernelspec: { name: "streambook", display_name: "TypeScript (streambook)", language: "typescript" } },
  cells,
});

const INSTANCE = notebook([
  code(`const ctx = new StreamingContext(sc, Milliseconds(200));
const me = ctx.group!.instance();
console.log(\`instance \${me.index} of \${me.count} in group \${me.group}\`);`),
  code(`const url = process.env.SB_REDIS!;
const lines = redisStream(ctx, { url, streams: Array.from({ length: 8 }, (_, i) => \`lines:\${i}\`), startId: "0" });
const counts = lines
  .flatMap((e) => e.fields.line.split(" "))
  .map((w) => [w, 1] as [string, number])
  .reduceByKey((a, b) => a + b)
  .updateStateByKey((vs: number[], s?: number) => vs.reduce((a, b) => a + b, 0) + (s ?? 0));
saveToRedis(counts, { url, stream: "counts" });
await ctx.start();`),
  code(`// Joined: which instance this is among the members now, and how many there are.
for (let i = 0; i < 300 && ctx.group!.instance().count !== 2; i++) await new Promise((r) => setTimeout(r, 100));
const joined = ctx.group!.instance();
console.log(JSON.stringify({ index: joined.index, count: joined.count, joined: joined.joined }));`),
  code(`// Until the whole group has completed the batch after the last record (status() reads etcd and the store).
const end = Number(process.env.SB_END);
for (let i = 0; i < 1200 && ((await ctx.group!.status()).completedBatch ?? 0) < end; i++) await new Promise((r) => setTimeout(r, 100));
await ctx.stop();`),
]);

const LAUNCHER = notebook([
  code(`import { spawn } from "node:child_process";
import { openSync } from "node:fs";
const log = openSync("instances.log", "w");
const group = spawn(process.execPath, [process.env.SB_CLI!, "run", "instance.ipynb", "--instances", "2", "--coordinator", process.env.SB_ETCD!, "--out", "instance.out.ipynb", "--timeout", "120"], { stdio: ["ignore", log, log] });
const finished = new Promise<number | null>((r) => group.once("exit", (c) => r(c)));`),
  code(`// The group as its coordinator and store see it: instances, owners, lag, rebalances.
const panel = await groupPanel({ name: "instance", coordinator: process.env.SB_ETCD! }, { startTimeout: 120_000 });
for (let i = 0; i < 600 && (panel.summary()?.members.length ?? 0) < 2; i++) await new Promise((r) => setTimeout(r, 100));
await panel.flush();
// The panel goes on updating below; this line keeps what it showed now.
console.log(panel.text());`),
  code(`// The group's global result, live: every partition's output stream, the latest total per word.
const url = process.env.SB_REDIS!;
ssc = new StreamingContext(sc, Milliseconds(250));
const totals = redisStream(ssc, { url, streams: Array.from({ length: 8 }, (_, q) => \`counts:\${q}\`), startId: "0" })
  .map((e) => [e.fields.key, Number(e.fields.value)] as [string, number])
  .updateStateByKey((vs: number[], s?: number) => (vs.length > 0 ? vs[vs.length - 1] : s));
totals.chart({ mark: "bar", encoding: { x: { field: "key", type: "nominal" }, y: { field: "value", type: "quantitative" } } }, { mode: "update", title: "words, all instances" });
await ssc.start();
const code = await finished;
await ssc.awaitTerminationOrTimeout(1500);
await ssc.stop();
console.log(JSON.stringify({ code, totals: Object.fromEntries(totals.state().collect()) }));`),
]);

describe.skipIf(!etcdAvailable() || !redisServerAvailable())("a group from notebooks (runner, real kernels, etcd, redis-server)", () => {
  it("a launcher notebook runs a notebook as 2 instances, shows the group's panel and charts its global result; each instance knows which it is", async () => {
    const etcd = await EtcdTestServer.start();
    const server = await RedisTestServer.start();
    const redis = connect({ url: server.url });
    const work = fs.mkdtempSync(path.join(os.tmpdir(), "sb-group-nb-"));
    try {
      const rng = mulberry32(3);
      const expected = new Map<string, number>();
      const pipe = redis.pipeline();
      for (let i = 0; i < 400; i++) {
        const words = Array.from({ length: 4 }, () => `w${Math.floor(rng() * 12)}`);
        for (const w of words) expected.set(w, (expected.get(w) ?? 0) + 1);
        pipe.xadd(`lines:${i % 8}`, "*", "line", words.join(" "));
      }
      await pipe.exec();
      const last = (await redis.xrevrange("lines:7", "+", "-", "COUNT", 1)) as [string, string[]][];
      const end = Math.ceil(Number(last[0]![0].split("-")[0]) / 200) * 200 + 200;
      fs.writeFileSync(path.join(work, "instance.ipynb"), JSON.stringify(INSTANCE));
      fs.writeFileSync(path.join(work, "launcher.ipynb"), JSON.stringify(LAUNCHER));
      const run = spawn(process.execPath, [CLI, "run", "launcher.ipynb", "--out", "launcher.out.ipynb", "--timeout", "150"], {
        cwd: work,
        // No kernelspec in these data dirs: the runner starts this checkout's kernel (dist/kernel/main.js).
        env: { ...process.env, SB_REDIS: server.url, SB_ETCD: etcd.url, SB_CLI: CLI, SB_END: String(end), JUPYTER_DATA_DIR: path.join(work, "jupyter"), XDG_DATA_HOME: path.join(work, "xdg"), JUPYTER_PATH: "" },
        stdio: ["ignore", "pipe", "pipe"],
      });
      let log = "";
      run.stdout!.on("data", (d) => (log += d));
      run.stderr!.on("data", (d) => (log += d));
      const exit = await new Promise<number | null>((r) => run.once("exit", (c) => r(c)));
      const instancesLog = (): string => (fs.existsSync(path.join(work, "instances.log")) ? fs.readFileSync(path.join(work, "instances.log"), "utf8") : "(no instances.log)");
      expect(exit, `${log}\n--- instances:\n${instancesLog()}`).toBe(0);

      const texts = (file: string): string[] =>
        (JSON.parse(fs.readFileSync(path.join(work, file), "utf8")) as { cells: { outputs: { text?: string[]; data?: Record<string, unknown> }[] }[] }).cells.map((c) =>
          c.outputs.map((o) => (o.text ?? []).join("") + JSON.stringify(o.data?.["text/plain"] ?? "")).join("\n"),
        );
      // Each instance: before joining it knows its launch number and the count; once joined, the members'.
      const seen = new Set<number>();
      for (const i of [0, 1]) {
        const cells = texts(`instance.out.instance-${i}.ipynb`);
        expect(cells[0]).toContain(`instance ${i} of 2 in group instance`);
        const joined = JSON.parse(/\{.*\}/.exec(cells[2]!)![0]) as { index: number; count: number; joined: boolean };
        expect(joined).toMatchObject({ count: 2, joined: true });
        seen.add(joined.index);
      }
      expect([...seen].sort()).toEqual([0, 1]);

      const launcher = texts("launcher.out.ipynb");
      // The panel, read from outside the group: two instances sharing the partitions.
      expect(launcher[1]).toMatch(/2 instance\(s\), 8 partition\(s\)/);
      expect(launcher[1]).toMatch(/stage 1 partition 7/);
      // The global chart's data is every word's total over all instances' partitions.
      const result = JSON.parse(/\{"code".*\}/.exec(launcher[2]!)![0]) as { code: number; totals: Record<string, number> };
      expect(result.code).toBe(0);
      expect(result.totals, `${launcher.join("\n---\n")}\n--- instances:\n${instancesLog()}`).toEqual(Object.fromEntries(expected));
      const nb = JSON.parse(fs.readFileSync(path.join(work, "launcher.out.ipynb"), "utf8")) as { cells: { outputs: { data?: Record<string, unknown> }[] }[] };
      const chart = nb.cells[2]!.outputs.find((o) => o.data?.["application/vnd.vegalite.v5+json"]);
      expect(chart, "a Vega-Lite chart under the cell").toBeDefined();
    } finally {
      redis.disconnect();
      await Promise.all([etcd.stop(), server.stop()]);
      fs.rmSync(work, { recursive: true, force: true });
    }
  }, 200_000);
});
