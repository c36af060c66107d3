// The log sources in notebook cells (the built kernel's interpreter in process, a recording output sink):
// an unknown topic or stream is an error under the cell, a broker that cannot be reached is reported under
// the cell that started the context (once, while it retries), and ssc.ui() shows each partition's range,
// its lag and whether the job keeps up.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { createRequire } from "node:module";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KafkaMockCluster, kcatAvailable } from "./support/kafka-mock.js";
import { NatsTestServer, natsServerAvailable } from "./support/nats-server.js";
import { freePort } from "./support/ports.js";

const REPO = path.resolve(__dirname, "..");
const requireDist = createRequire(path.join(REPO, "dist", "kernel", "notebook.js"));

type Bundle = Record<string, unknown>;
interface Sent {
  kind: "stream" | "display" | "update";
  cell: number;
  text: string;
  id?: string;
  data?: Bundle;
}
interface Outcome {
  status: string;
  ename?: string;
  evalue?: string;
  result?: Bundle;
}
interface Interpreter {
  execute(code: string, ctx: unknown): Promise<Outcome>;
  shutdown(restart: boolean): Promise<void>;
}

let interp: Interpreter;
let kafka: KafkaMockCluster;
let nats: NatsTestServer;
const sent: Sent[] = [];
let count = 0;

async function run(code: string): Promise<{ n: number; outcome: Outcome }> {
  const n = ++count;
  const text = (d: Bundle) => String(d["text/plain"] ?? "");
  const sink = {
    stream: (_name: string, t: string) => sent.push({ kind: "stream", cell: n, text: t }),
    displayData: (d: Bundle, _m?: unknown, tr?: { display_id?: string }) => sent.push({ kind: "display", cell: n, text: text(d), id: tr?.display_id, data: d }),
    updateDisplayData: (d: Bundle, _m: unknown, tr: { display_id: string }) => sent.push({ kind: "update", cell: n, text: text(d), id: tr.display_id, data: d }),
    clearOutput: () => {},
  };
  const outcome = await interp.execute(code, { sink, executionCount: n, input: async () => "", silent: false });
  return { n, outcome };
}

async function until(pred: () => boolean, what: string, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}; last sent:\n${JSON.stringify(sent.slice(-5), null, 1)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Everything a cell got: its stream text, and its displays' latest text. */
function outputOf(n: number): string {
  const latest = new Map<string, string>();
  let streams = "";
  for (const s of sent) {
    if (s.cell !== n) continue;
    if (s.kind === "stream") streams += s.text;
    else if (s.id !== undefined) latest.set(s.id, s.text);
  }
  return [streams, ...latest.values()].join("\n");
}

beforeAll(async () => {
  const main = path.join(REPO, "dist", "kernel", "notebook.js");
  if (!fs.existsSync(main)) throw new Error(`${main} is missing: run "npm run build" first`);
  const { createNotebookInterpreter } = requireDist("./notebook.js") as {
    createNotebookInterpreter(o: { cwd: string; warmup: false; handleSigint: false }): Interpreter;
  };
  interp = createNotebookInterpreter({ cwd: os.tmpdir(), warmup: false, handleSigint: false });
  [kafka, nats] = await Promise.all([KafkaMockCluster.start(), NatsTestServer.start()]);
}, 60_000);

afterAll(async () => {
  await interp?.shutdown(false);
  await Promise.all([kafka?.stop(), nats?.stop()]);
});

describe.skipIf(!kcatAvailable() || !natsServerAvailable())("log sources in notebook cells", () => {
  it("an unknown Kafka topic or JetStream stream is an error under the cell that waits on the context", async () => {
    const k = await run(
      [
        'const k1 = new StreamingContext(sc, Milliseconds(100));',
        `kafkaStream(k1, { brokers: ${JSON.stringify(kafka.bootstrap)}, topics: "clickz" }).count().pprint();`,
        "await k1.start();",
        "await k1.awaitTerminationOrTimeout(5000);",
      ].join("\n"),
    );
    expect(k.outcome).toMatchObject({ status: "error", ename: "KafkaTopicNotFoundError" });
    expect(k.outcome.evalue).toMatch(/topic "clickz" does not exist on 127\.0\.0\.1:\d+.*create it first or fix the name/);
    expect(outputOf(k.n)).toMatch(/source kafka#0: kafkaStream clickz: KafkaTopicNotFoundError: topic "clickz" does not exist/);
    const n = await run(
      [
        'const n1 = new StreamingContext(sc, Milliseconds(100));',
        `natsStream(n1, { servers: ${JSON.stringify(nats.url)}, stream: "CLICKZ" }).count().pprint();`,
        "await n1.start();",
        "await n1.awaitTerminationOrTimeout(5000);",
      ].join("\n"),
    );
    expect(n.outcome).toMatchObject({ status: "error", ename: "NatsStreamNotFoundError" });
    expect(n.outcome.evalue).toMatch(/JetStream stream "CLICKZ" does not exist/);
    await run("await k1.stop(); await n1.stop();");
  }, 60_000);

  it("a broker that cannot be reached is reported under the cell that started the context, once while it retries", async () => {
    const port = await freePort();
    const start = await run(
      [
        'const w1 = new StreamingContext(sc, Milliseconds(100));',
        `natsStream(w1, { servers: "127.0.0.1:${port}", stream: "EVENTS" }).count().foreachRDD(() => {});`,
        "w1.start();",
      ].join("\n"),
    );
    expect(start.outcome.status).toBe("ok");
    await until(() => /source nats#0: natsStream EVENTS: .*(ECONNREFUSED|connection refused).*retrying in \d+ ms/i.test(outputOf(start.n)), "the connection error under the cell");
    // Retried every 100 ms to 2 s, but shown once.
    await new Promise((r) => setTimeout(r, 1500));
    expect(outputOf(start.n).match(/source nats#0/g)?.length).toBe(1);
    await run("await w1.stop();");
  }, 60_000);

  it("ssc.ui() shows each partition's range, its lag behind the log's end, and whether the job keeps up", async () => {
    const { connect } = await import("@nats-io/transport-node");
    const { jetstream, jetstreamManager, StorageType } = await import("@nats-io/jetstream");
    const nc = await connect({ servers: nats.url });
    try {
      await (await jetstreamManager(nc)).streams.add({ name: "CLICKS", subjects: ["clicks"], storage: StorageType.File });
      const js = jetstream(nc);
      for (let i = 0; i < 300; i++) await js.publish("clicks", `page${i % 7}`);
    } finally {
      await nc.close();
    }
    const cell = await run(
      [
        'const u1 = new StreamingContext(sc, Milliseconds(1000), { clock: "manual" });',
        `const clicks = natsStream(u1, { servers: ${JSON.stringify(nats.url)}, stream: "CLICKS", start: "first", maxRatePerPartition: 50 });`,
        "clicks.count().foreachRDD(() => {});",
        "const panel = u1.ui({ minIntervalMs: 0 });",
        "await u1.start();",
        "for (let i = 0; i < 3; i++) { await clicks.sync(); await u1.advance(1000); }",
        "await panel.flush();",
        "const s = panel.summary();",
        "[s.partitions.map((p) => `${p.partition} ${p.from}-${p.until} ${p.records} lag ${p.lag}`), s.totalLag, s.keepingUp, s.verdict]",
      ].join("\n"),
    );
    expect(cell.outcome.status, JSON.stringify(cell.outcome)).toBe("ok");
    const result = String(cell.outcome.result?.["text/plain"]);
    // Three batches of 50 out of 300: the last read 101-151, and 150 records wait behind it.
    expect(result).toContain("'CLICKS 101-151 50 lag 150'");
    expect(result).toContain("150");
    expect(result).toMatch(/catching up: scheduling delay \d+ ms, lag 150 records, not growing/);
    // The panel's table and chart show them too.
    await until(() => /Input partitions/.test(outputOf(cell.n)) || sent.some((s) => s.cell === cell.n && String(s.data?.["text/html"] ?? "").includes("Input partitions")), "the partitions table");
    const html = sent.filter((s) => s.cell === cell.n && s.data?.["text/html"] !== undefined).map((s) => String(s.data!["text/html"])).at(-1)!;
    expect(html).toContain("<td>CLICKS</td>");
    expect(html).toMatch(/<td[^>]*>150<\/td><\/tr>/);
    const spec = sent.filter((s) => s.cell === cell.n && s.data?.["application/vnd.vegalite.v5+json"] !== undefined).map((s) => s.data!["application/vnd.vegalite.v5+json"] as { vconcat: { title: string; data?: { values: unknown[] } }[] }).at(-1)!;
    const lag = spec.vconcat.find((c) => c.title.startsWith("Lag behind"));
    expect(lag?.data?.values).toEqual([
      expect.objectContaining({ partition: "CLICKS", lag: 250 }),
      expect.objectContaining({ partition: "CLICKS", lag: 200 }),
      expect.objectContaining({ partition: "CLICKS", lag: 150 }),
    ]);
    await run("await u1.stop();");
  }, 60_000);
});
