// mqttStream against a real mosquitto broker, and zeromqStream / saveToZeroMQ on real zeromq sockets: record
// fields, topic filters, bad input, a broker that is not there at first, and, for MQTT with the write-ahead
// log, a job SIGKILLed three times while messages keep arriving that loses none of them (at least once).
import { spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { MqttClient } from "mqtt";
import { SparkContext, StreamingContext, mqttStream, zeromqStream, saveToZeroMQ, type MqttRecord, type ZeroMQRecord } from "../engine/index.js";
import { MosquittoTestServer, mosquittoAvailable } from "./support/mosquitto.js";
import { freePort } from "./support/ports.js";
import { runOnce } from "./fixtures/recovery-harness.js";

const ROOT = path.resolve(__dirname, "..");
const DIST = path.join(ROOT, "dist");
const MQTT_FIXTURE = path.resolve(__dirname, "fixtures", "recovery-mqtt.js");

let work: string;

beforeAll(() => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), "sb-receivers-"));
});

afterAll(() => {
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

function context() {
  const ssc = new StreamingContext(new SparkContext(), 1000, { clock: "manual" });
  const errors: string[] = [];
  ssc.addStreamingListener({ onReceiverError: ({ receiverInfo }) => void errors.push(`${receiverInfo.lastErrorMessage} ${receiverInfo.lastError ?? ""}`) });
  return { ssc, errors };
}

async function until(pred: () => boolean, what: string, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function mqttClient(url: string): Promise<MqttClient> {
  const mqtt = await import("mqtt");
  return mqtt.connectAsync(url, { reconnectPeriod: 200 });
}

describe.skipIf(!mosquittoAvailable())("mqttStream against a real mosquitto", () => {
  let broker: MosquittoTestServer;
  beforeAll(async () => {
    broker = await MosquittoTestServer.start();
  }, 30_000);
  afterAll(async () => {
    await broker?.stop();
  });

  it("records carry topic, payload, time and QoS; only subscribed topics arrive; bad payloads are reported and skipped", async () => {
    const { ssc, errors } = context();
    const stream = mqttStream(ssc, { url: broker.url, topics: ["sensors/+/temp", "alerts/#"], qos: 1, maxMessageBytes: 1000 });
    const got: MqttRecord[][] = [];
    stream.foreachRDD((rdd) => void got.push(rdd.collect()));
    await ssc.start();
    const pub = await mqttClient(broker.url);
    try {
      await until(() => stream.receiver.isStarted(), "the receiver to start");
      // A subscription is in place once a message on it arrives: probe until one does.
      await until(() => stream.bufferedRecords() > 0 || (void pub.publish("alerts/probe", "probe", { qos: 1 }), false), "the subscription", 10_000).catch(() => {});
      await until(() => stream.bufferedRecords() > 0, "a probe message");
      await ssc.advance(1000);
      await pub.publishAsync("sensors/a/temp", "21.5", { qos: 1 });
      await pub.publishAsync("sensors/a/humidity", "40", { qos: 1 });
      await pub.publishAsync("alerts/fire/now", "fire!", { qos: 0 });
      await pub.publishAsync("sensors/b/temp", Buffer.from([0xff, 0xfe]), { qos: 1 });
      await pub.publishAsync("sensors/c/temp", "x".repeat(2000), { qos: 1 });
      await pub.publishAsync("sensors/d/temp", "19", { qos: 1 });
      await until(() => errors.length >= 2, "two skipped messages reported");
      // Batches until the last message is in one (a loaded machine may deliver it a batch later).
      for (let i = 0; i < 10 && !got.flat().some((r) => r.topic === "sensors/d/temp"); i++) await ssc.advance(1000);
    } finally {
      await pub.endAsync();
      await ssc.stop();
    }
    // Probes published while the subscription was being set up may still arrive after the first batch.
    const batch = got.slice(1).flat().filter((r) => r.topic !== "alerts/probe");
    expect(batch.map((r) => `${r.topic}=${r.payload} qos${r.qos}`)).toEqual(["sensors/a/temp=21.5 qos1", "alerts/fire/now=fire! qos0", "sensors/d/temp=19 qos1"]);
    expect(Math.abs(batch[0]!.time - Date.now())).toBeLessThan(60_000);
    expect(errors.some((e) => /skipped a message on sensors\/b\/temp is not valid UTF-8/.test(e))).toBe(true);
    expect(errors.some((e) => /skipped a message on sensors\/c\/temp of 2000 bytes is more than maxMessageBytes \(1000\)/.test(e))).toBe(true);
  }, 60_000);

  it("a wrong broker address is reported and retried; once a broker is there, messages flow", async () => {
    const port = await freePort();
    const { ssc, errors } = context();
    const stream = mqttStream(ssc, { url: `mqtt://127.0.0.1:${port}`, topics: "late/#" });
    const got: string[] = [];
    stream.foreachRDD((rdd) => void got.push(...rdd.collect().map((r) => r.payload)));
    await ssc.start();
    let late: MosquittoTestServer | undefined;
    let pub: MqttClient | undefined;
    try {
      await until(() => errors.length >= 1, "a reported connection failure");
      expect(errors[0]).toMatch(new RegExp(`mqttStream mqtt://127.0.0.1:${port}.*(ECONNREFUSED|unreachable).*retrying`));
      // The broker comes up at that address (a fixed port: start one there).
      late = await startMosquittoAt(port);
      pub = await mqttClient(late.url);
      await until(() => stream.bufferedRecords() > 0 || (void pub!.publish("late/x", "hello", { qos: 1 }), false), "a message through the late broker", 15_000);
      await ssc.advance(1000);
    } finally {
      await pub?.endAsync();
      await ssc.stop();
      await late?.stop();
    }
    expect(got.length).toBeGreaterThan(0);
    expect(new Set(got)).toEqual(new Set(["hello"]));
  }, 60_000);

  it("with the write-ahead log and a persistent session, a job SIGKILLed 3 times while messages arrive loses none (at least once)", async () => {
    const N = 600;
    const base = path.join(work, "mqtt-kill");
    const out = path.join(base, "out");
    const stop = path.join(base, "stop");
    fs.mkdirSync(out, { recursive: true });
    const args = [MQTT_FIXTURE, broker.url, path.join(base, "ckpt"), out, "streambook-kill-test", stop];
    const pub = await mqttClient(broker.url);
    const seen = (): Map<string, number> => {
      const counts = new Map<string, number>();
      for (const d of fs.readdirSync(out)) {
        if (!d.startsWith("batch-")) continue;
        for (const f of fs.readdirSync(path.join(out, d))) {
          if (!f.startsWith("part-")) continue;
          for (const l of fs.readFileSync(path.join(out, d, f), "utf8").split("\n")) if (l) counts.set(l, (counts.get(l) ?? 0) + 1);
        }
      }
      return counts;
    };
    try {
      // The first run subscribes (the session then lives in the broker): probe until a message comes through.
      const first = spawnProgram(args);
      await until(() => seen().has("probe") || (void pub.publish("sensors/probe", "probe", { qos: 1 }), false), "the first run's subscription", 60_000);
      let published = 0;
      const publishing = (async () => {
        for (let i = 0; i < N; i++) {
          await pub.publishAsync(`sensors/s${i % 5}/v`, `m${i}`, { qos: 1 });
          published++;
          if (i % 10 === 9) await new Promise((r) => setTimeout(r, 20));
        }
      })();
      const log: string[] = [];
      await new Promise((r) => setTimeout(r, 400));
      first.child.kill("SIGKILL");
      log.push(`kill 0: ${(await first.done).lines.join("|")} (${published} published)`);
      for (let k = 1; k < 3; k++) {
        // Killed mid-start, mid-recovery or mid-run, depending on how fast it comes up.
        const inc = await runOnce(args, DIST, { delayMs: 600 + k * 500 });
        expect(inc.stderr).toBe("");
        log.push(`kill ${k}: ${inc.lines.join("|")} (${published} published)`);
      }
      await publishing;
      const last = runOnce(args, DIST, undefined);
      try {
        await until(() => [...seen().keys()].filter((m) => m !== "probe").length === N, "every message in some batch", 30_000).catch((e: Error) => {
          const c = seen();
          const missing = Array.from({ length: N }, (_, i) => `m${i}`).filter((m) => !c.has(m));
          throw new Error(`${e.message}: ${c.size} seen, missing ${missing.length}: ${missing.slice(0, 30).join(" ")}; ${log.join(" / ")}`);
        });
      } finally {
        fs.writeFileSync(stop, "");
      }
      const end = await last;
      expect(end.stderr).toBe("");
      expect(end.lines.at(-1)).toBe("DONE");
      if (process.env.SB_KILL_LOG) console.log(log.join("\n"));
      const counts = seen();
      const missing = Array.from({ length: N }, (_, i) => `m${i}`).filter((m) => !counts.has(m));
      expect(missing, "messages lost").toEqual([]);
      const doubled = [...counts.values()].filter((n) => n > 1).length;
      if (process.env.SB_KILL_LOG) console.log(`${doubled} of ${N} messages in two batches (received again after a kill)`);
    } finally {
      await pub.endAsync();
    }
  }, 120_000);
});

/** Runs the program on this checkout's build, to be killed by the caller. */
function spawnProgram(args: string[]): { child: ChildProcess; done: Promise<{ lines: string[]; stderr: string }> } {
  const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, SB_DIST: DIST } });
  let out = "";
  let stderr = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<{ lines: string[]; stderr: string }>((resolve) => child.on("exit", () => resolve({ lines: out.split("\n").filter(Boolean), stderr })));
  return { child, done };
}

/** A mosquitto on a given port (for the late-broker test). */
async function startMosquittoAt(port: number): Promise<MosquittoTestServer> {
  return MosquittoTestServer.start(port);
}

describe("zeromqStream and saveToZeroMQ on real zeromq sockets", () => {
  it("PULL receives every message a PUSH socket sends, in order; SUB gets only its topics, with the topic frame", async () => {
    const zmq = await import("zeromq");
    const [pullPort, subPort] = [await freePort(), await freePort()];
    const { ssc } = context();
    const pull = zeromqStream(ssc, { address: `tcp://127.0.0.1:${pullPort}`, type: "pull", bind: true });
    const sub = zeromqStream(ssc, { address: `tcp://127.0.0.1:${subPort}`, type: "sub", topics: ["temp"] });
    const pulled: string[] = [];
    const subbed: ZeroMQRecord[] = [];
    pull.foreachRDD((rdd) => void pulled.push(...rdd.collect().map((r) => r.payload)));
    sub.foreachRDD((rdd) => void subbed.push(...rdd.collect()));
    await ssc.start();
    const push = new zmq.Push();
    const pubSock = new zmq.Publisher();
    try {
      await pubSock.bind(`tcp://127.0.0.1:${subPort}`);
      push.connect(`tcp://127.0.0.1:${pullPort}`);
      for (let i = 0; i < 100; i++) await push.send(`p${i}`);
      // PUB drops what it sends before the SUB has connected: probe until a message arrives.
      await until(() => sub.bufferedRecords() > 0 || (void pubSock.send(["temp", "probe"]), false), "the subscription");
      await until(() => pull.bufferedRecords() >= 100, "100 pushed messages");
      await ssc.advance(1000);
      for (const [topic, payload] of [["temp", "21"], ["humidity", "40"], ["temperature", "22"]]) await pubSock.send([topic!, payload!]);
      await until(() => sub.bufferedRecords() >= 2, "two subscribed messages");
      await ssc.advance(1000);
    } finally {
      push.close();
      pubSock.close();
      await ssc.stop();
    }
    expect(pulled).toEqual(Array.from({ length: 100 }, (_, i) => `p${i}`));
    const after = subbed.filter((r) => r.payload !== "probe");
    // Prefix matching, as ZeroMQ does: "temp" also matches "temperature"; "humidity" does not.
    expect(after.map((r) => `${r.topic}=${r.payload}`)).toEqual(["temp=21", "temperature=22"]);
  }, 30_000);

  it("saveToZeroMQ sends every record of every batch in order, over PUSH and over PUB", async () => {
    const zmq = await import("zeromq");
    const [pushPort, pubPort] = [await freePort(), await freePort()];
    const pull = new zmq.Pull();
    await pull.bind(`tcp://127.0.0.1:${pushPort}`);
    const subSock = new zmq.Subscriber();
    subSock.connect(`tcp://127.0.0.1:${pubPort}`);
    subSock.subscribe("counts");
    const { ssc } = context();
    const batches = [[["a", 1]], [["b", 2], ["c", 3]], [["d", 4]]] as [string, number][][];
    const stream = ssc.queueStream(batches.map((b) => b.slice()));
    saveToZeroMQ(stream, { address: `tcp://127.0.0.1:${pushPort}`, type: "push" });
    saveToZeroMQ(stream.map(([k, v]) => `${k}:${v}`), { address: `tcp://127.0.0.1:${pubPort}`, type: "pub", topic: "counts" });
    const received: string[] = [];
    const published: string[] = [];
    const reading = (async () => {
      for await (const [m] of pull) {
        received.push(m!.toString());
        if (received.length === 4) break;
      }
    })();
    const subscribing = (async () => {
      for await (const [topic, m] of subSock) {
        published.push(`${topic!.toString()} ${m!.toString()}`);
        if (m!.toString() === "d:4") break;
      }
    })();
    await ssc.start();
    try {
      await ssc.advance(1000);
      // A PUB socket drops what it sends before a SUB has joined: give the subscription a moment before the rest.
      await new Promise((r) => setTimeout(r, 300));
      await ssc.advance(2000);
      await Promise.race([Promise.all([reading, subscribing]), new Promise((_, rej) => setTimeout(() => rej(new Error("timed out")), 10_000))]);
    } finally {
      await ssc.stop();
      pull.close();
      subSock.close();
    }
    expect(received).toEqual(['["a",1]', '["b",2]', '["c",3]', '["d",4]']);
    // The first batch went out as the PUB socket was bound, before the SUB had joined: ZeroMQ may drop it.
    expect(published.filter((p) => p !== "counts a:1")).toEqual(["counts b:2", "counts c:3", "counts d:4"]);
  }, 30_000);
});
