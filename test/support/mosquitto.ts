// Starts a real mosquitto broker for tests: 127.0.0.1, a random free port, anonymous clients, persistence
// in a temporary folder (so persistent sessions survive restart()); stop() ends it and removes the folder.
import { spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { freePort } from "./ports.js";

export const MOSQUITTO_BIN = process.env.MOSQUITTO ?? "/usr/sbin/mosquitto";

export function mosquittoAvailable(): boolean {
  return fs.existsSync(MOSQUITTO_BIN);
}

export class MosquittoTestServer {
  readonly dir: string;
  port = 0;
  private proc: ChildProcess | undefined;

  private constructor() {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), "sb-mosquitto-"));
  }

  /** `port`: a given free port (default: a random one). */
  static async start(port?: number): Promise<MosquittoTestServer> {
    const server = new MosquittoTestServer();
    server.port = port ?? (await freePort());
    await server.launch();
    return server;
  }

  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  private async launch(): Promise<void> {
    const conf = path.join(this.dir, "mosquitto.conf");
    const user = os.userInfo().username;
    fs.writeFileSync(
      conf,
      [
        `listener ${this.port} 127.0.0.1`,
        "allow_anonymous true",
        "persistence true",
        `persistence_location ${this.dir}/`,
        // As root, mosquitto would switch to its own user, which cannot write the temporary folder.
        `user ${user}`,
        "log_dest stderr",
        "max_queued_messages 100000",
      ].join("\n") + "\n",
    );
    const log = fs.openSync(path.join(this.dir, "mosquitto.log"), "a");
    const proc = spawn(MOSQUITTO_BIN, ["-c", conf], { stdio: ["ignore", log, log] });
    fs.closeSync(log);
    this.proc = proc;
    const exited = new Promise<never>((_, reject) =>
      proc.once("exit", (code) => reject(new Error(`mosquitto exited early with code ${code}; see ${this.dir}/mosquitto.log`))),
    );
    await Promise.race([this.waitReady(), exited]);
    proc.removeAllListeners("exit");
  }

  private async waitReady(): Promise<void> {
    for (let i = 0; i < 200; i++) {
      const ok = await new Promise<boolean>((resolve) => {
        const sock = net.connect(this.port, "127.0.0.1");
        sock.once("error", () => resolve(false));
        sock.once("connect", () => {
          sock.destroy();
          resolve(true);
        });
      });
      if (ok) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`mosquitto did not become ready on port ${this.port}`);
  }

  async halt(): Promise<void> {
    const proc = this.proc;
    this.proc = undefined;
    if (!proc || proc.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      proc.once("exit", () => resolve());
      proc.kill("SIGTERM");
    });
  }

  async restart(): Promise<void> {
    await this.halt();
    await this.launch();
  }

  async stop(): Promise<void> {
    await this.halt();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
