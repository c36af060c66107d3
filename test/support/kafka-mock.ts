// Starts librdkafka's mock Kafka cluster for tests: Debian's kcat hosts it (`-X test.mock.num.brokers=3`),
// on 127.0.0.1 with ports the mock picks; its bootstrap servers are read from kcat's debug log. No broker
// data touches disk; stop() ends kcat, and with it the cluster. It speaks the Kafka protocol (produce,
// fetch, metadata, offsets, single-member groups) but is not a broker: see the README for what it does not test.
import { spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

export const KCAT_BIN = process.env.KCAT ?? "/usr/bin/kcat";

export function kcatAvailable(): boolean {
  return fs.existsSync(KCAT_BIN);
}

export class KafkaMockCluster {
  readonly dir: string;
  /** "host:port,host:port,host:port" */
  bootstrap = "";
  private proc: ChildProcess | undefined;

  private constructor() {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), "sb-kafka-mock-"));
  }

  static async start(brokers = 3): Promise<KafkaMockCluster> {
    const cluster = new KafkaMockCluster();
    await cluster.launch(brokers);
    return cluster;
  }

  get brokers(): string[] {
    return this.bootstrap.split(",");
  }

  private async launch(brokers: number): Promise<void> {
    const log = path.join(this.dir, "kcat.log");
    const fd = fs.openSync(log, "w");
    // kcat produces to a topic of its own from stdin; the pipe stays open (and its end, if this process
    // dies, ends kcat). The debug log goes to a file, so nothing ever blocks on a full pipe.
    const proc = spawn(KCAT_BIN, ["-b", "127.0.0.1:1", "-X", `test.mock.num.brokers=${brokers}`, "-d", "mock", "-P", "-t", "__streambook_mock"], {
      stdio: ["pipe", "ignore", fd],
    });
    fs.closeSync(fd);
    this.proc = proc;
    let exited = false;
    proc.once("exit", () => (exited = true));
    // Bounded: about 10 s.
    for (let i = 0; i < 200 && !exited; i++) {
      const m = /bootstrap\.servers=(\S+)/.exec(fs.readFileSync(log, "utf8"));
      if (m) {
        this.bootstrap = m[1]!;
        return;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    await this.stop();
    throw new Error(`kcat did not start a mock cluster; see ${log}`);
  }

  /**
   * Creates topics (the mock makes a topic of 4 partitions when a client asks for its metadata; it does not
   * implement the CreateTopics request kafkajs sends).
   */
  async createTopics(...topics: string[]): Promise<void> {
    const { Kafka, logLevel } = require("kafkajs") as typeof import("kafkajs");
    const admin = new Kafka({ brokers: this.brokers, logLevel: logLevel.NOTHING }).admin();
    await admin.connect();
    try {
      await admin.fetchTopicMetadata({ topics });
    } finally {
      await admin.disconnect();
    }
  }

  /** Produces records (kafkajs, acks from all replicas) and waits until they are acknowledged. */
  async produce(topic: string, messages: { key?: string | Buffer | null; value: string | Buffer | null; partition?: number; headers?: Record<string, string> }[]): Promise<void> {
    const { Kafka, logLevel, Partitioners } = require("kafkajs") as typeof import("kafkajs");
    const producer = new Kafka({ brokers: this.brokers, logLevel: logLevel.NOTHING }).producer({ createPartitioner: Partitioners.DefaultPartitioner });
    await producer.connect();
    try {
      for (let i = 0; i < messages.length; i += 5000) await producer.send({ topic, messages: messages.slice(i, i + 5000) });
    } finally {
      await producer.disconnect();
    }
  }

  /**
   * Every record of `topic`, per partition in offset order, read by kcat (librdkafka: a client independent of
   * the one under test), as "partition offset key value headers" lines.
   */
  async consumeAll(topic: string): Promise<string[]> {
    const { execFile } = require("node:child_process") as typeof import("node:child_process");
    const out = await new Promise<string>((resolve, reject) => {
      execFile(
        KCAT_BIN,
        ["-b", this.bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%p %o %k %s %h\n"],
        { maxBuffer: 256 * 1024 * 1024, timeout: 60_000 },
        (err, stdout, stderr) => (err ? reject(new Error(`kcat -C ${topic}: ${err.message} ${stderr}`)) : resolve(stdout)),
      );
    });
    return out
      .split("\n")
      .filter((l) => l.length > 0)
      .sort((a, b) => {
        const [pa, oa] = a.split(" ").map(Number) as [number, number];
        const [pb, ob] = b.split(" ").map(Number) as [number, number];
        return pa - pb || oa - ob;
      });
  }

  async stop(): Promise<void> {
    const proc = this.proc;
    this.proc = undefined;
    if (proc && proc.exitCode === null && proc.signalCode === null) {
      await new Promise<void>((resolve) => {
        proc.once("exit", () => resolve());
        proc.kill("SIGKILL");
      });
    }
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
