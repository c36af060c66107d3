// Starts a real etcd (Debian's etcd-server 3.4) for tests: a random client and peer port on 127.0.0.1 (or a
// given address, for network-namespace tests), a temporary data dir, short election timings so leases can be
// as short as 1 s; halt()/restart() keep the data, stop() removes it.
import { spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as http from "node:http";
import * as os from "node:os";
import * as path from "node:path";
import { freePort } from "./ports.js";

export const ETCD_BIN = process.env.ETCD ?? "/usr/bin/etcd";

export function etcdAvailable(): boolean {
  return fs.existsSync(ETCD_BIN);
}

export interface EtcdServerOptions {
  /** Address to listen on (default 127.0.0.1). */
  host?: string;
  /** Prefix the command with this (e.g. ["ip", "netns", "exec", "ns"]) to run it elsewhere. */
  wrap?: string[];
  /** Ports to use (default: random free ports on loopback). */
  clientPort?: number;
  peerPort?: number;
}

export class EtcdTestServer {
  readonly dir: string;
  readonly host: string;
  clientPort = 0;
  peerPort = 0;
  private proc: ChildProcess | undefined;
  private readonly wrap: string[];

  private constructor(options: EtcdServerOptions) {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), "sb-etcd-"));
    this.host = options.host ?? "127.0.0.1";
    this.wrap = options.wrap ?? [];
  }

  static async start(options: EtcdServerOptions = {}): Promise<EtcdTestServer> {
    const server = new EtcdTestServer(options);
    server.clientPort = options.clientPort ?? (await freePort());
    server.peerPort = options.peerPort ?? (await freePort());
    await server.launch();
    return server;
  }

  /** The coordinator URL streambook takes. */
  get url(): string {
    return `etcd://${this.host}:${this.clientPort}`;
  }

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  private async launch(): Promise<void> {
    const client = `http://${this.host}:${this.clientPort}`;
    const peer = `http://${this.host}:${this.peerPort}`;
    const args = [
      "--name", "sb",
      "--data-dir", path.join(this.dir, "data"),
      "--listen-client-urls", client,
      "--advertise-client-urls", client,
      "--listen-peer-urls", peer,
      "--initial-advertise-peer-urls", peer,
      "--initial-cluster", `sb=${peer}`,
      // Short timings: etcd's minimum lease TTL follows the election timeout (1.5 x), so 1 s leases work.
      "--heartbeat-interval", "50",
      "--election-timeout", "500",
      "--log-level", "warn",
    ];
    const [cmd, ...pre] = this.wrap.length > 0 ? [...this.wrap, ETCD_BIN] : [ETCD_BIN];
    const log = fs.openSync(path.join(this.dir, "etcd.log"), "a");
    const proc = spawn(cmd!, [...pre, ...args], { stdio: ["ignore", log, log] });
    fs.closeSync(log);
    this.proc = proc;
    const exited = new Promise<never>((_, reject) =>
      proc.once("exit", (code) => reject(new Error(`etcd exited early with code ${code}; see ${this.dir}/etcd.log`))),
    );
    await Promise.race([this.waitReady(), exited]);
    proc.removeAllListeners("exit");
  }

  /** Polls /health from this process (bounded: about 15 s); a server in another namespace must be routable from here. */
  private async waitReady(): Promise<void> {
    for (let i = 0; i < 300; i++) {
      if (await this.healthy()) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`etcd did not become healthy on ${this.host}:${this.clientPort}; see ${this.dir}/etcd.log`);
  }

  private healthy(): Promise<boolean> {
    return new Promise((resolve) => {
      const req = http.get({ host: this.host, port: this.clientPort, path: "/health", timeout: 1000 }, (res) => {
        let body = "";
        res.on("data", (d) => (body += d));
        res.on("end", () => resolve(body.includes('"true"')));
      });
      req.on("error", () => resolve(false));
      req.on("timeout", () => {
        req.destroy();
        resolve(false);
      });
    });
  }

  /** Stops the process (SIGTERM), keeping the data dir. */
  async halt(): Promise<void> {
    const proc = this.proc;
    this.proc = undefined;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => proc.kill("SIGKILL"), 5000);
      proc.once("exit", () => {
        clearTimeout(t);
        resolve();
      });
      proc.kill("SIGTERM");
    });
  }

  /** Starts it again on the same ports with the same data (leases survive, as on a real restart). */
  async restart(): Promise<void> {
    await this.halt();
    await this.launch();
  }

  async stop(): Promise<void> {
    await this.halt();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
