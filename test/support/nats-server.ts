// Starts a real nats-server with JetStream for tests: 127.0.0.1, a random free port, file storage in a
// temporary folder (so streams survive restart()); stop() ends it and removes the folder.
import { spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { freePort } from "./ports.js";

export const NATS_SERVER_BIN = process.env.NATS_SERVER ?? "/usr/sbin/nats-server";

export function natsServerAvailable(): boolean {
  return fs.existsSync(NATS_SERVER_BIN);
}

export class NatsTestServer {
  readonly dir: string;
  port = 0;
  private proc: ChildProcess | undefined;

  private constructor() {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), "sb-nats-"));
  }

  /** `port`: a given free port (default: a random one). */
  static async start(port?: number): Promise<NatsTestServer> {
    const server = new NatsTestServer();
    server.port = port ?? (await freePort());
    await server.launch();
    return server;
  }

  get url(): string {
    return `127.0.0.1:${this.port}`;
  }

  private async launch(): Promise<void> {
    const log = fs.openSync(path.join(this.dir, "nats.log"), "a");
    const proc = spawn(NATS_SERVER_BIN, ["-a", "127.0.0.1", "-p", String(this.port), "-js", "-sd", path.join(this.dir, "js")], { stdio: ["ignore", log, log] });
    fs.closeSync(log);
    this.proc = proc;
    const exited = new Promise<never>((_, reject) =>
      proc.once("exit", (code) => reject(new Error(`nats-server exited early with code ${code}; see ${this.dir}/nats.log`))),
    );
    await Promise.race([this.waitReady(), exited]);
    proc.removeAllListeners("exit");
  }

  private async waitReady(): Promise<void> {
    // Bounded: about 10 s. Ready once it answers with its INFO line and JetStream has started.
    for (let i = 0; i < 200; i++) {
      const ok = await new Promise<boolean>((resolve) => {
        const sock = net.connect(this.port, "127.0.0.1");
        sock.once("error", () => resolve(false));
        sock.once("data", (d) => {
          sock.destroy();
          resolve(d.toString().startsWith("INFO") && d.toString().includes('"jetstream":true'));
        });
      });
      if (ok) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`nats-server did not become ready on port ${this.port}`);
  }

  /** Stops the server (SIGTERM: it flushes its streams), keeping the folder. */
  async halt(): Promise<void> {
    const proc = this.proc;
    this.proc = undefined;
    if (!proc || proc.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      proc.once("exit", () => resolve());
      proc.kill("SIGTERM");
    });
  }

  /** Stops and starts again on the same port and folder: the streams survive. */
  async restart(): Promise<void> {
    await this.halt();
    await this.launch();
  }

  async stop(): Promise<void> {
    await this.halt();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
