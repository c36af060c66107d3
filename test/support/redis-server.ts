// Starts a real redis-server for tests: 127.0.0.1, a random free port, a temporary working dir,
// optionally with an append-only file so data survives a restart; stopped (and the dir removed) by stop().
import { spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { freePort } from "./ports.js";

export const REDIS_SERVER_BIN = process.env.REDIS_SERVER ?? "/usr/bin/redis-server";

export function redisServerAvailable(): boolean {
  return fs.existsSync(REDIS_SERVER_BIN);
}


export interface RedisServerOptions {
  /** Keep data across restart() with an append-only file in the temp dir. Default false. */
  persistent?: boolean;
}

export class RedisTestServer {
  readonly dir: string;
  port = 0;
  private proc: ChildProcess | undefined;
  private readonly persistent: boolean;

  private constructor(options: RedisServerOptions) {
    this.persistent = options.persistent ?? false;
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), "sb-redis-"));
  }

  static async start(options: RedisServerOptions = {}): Promise<RedisTestServer> {
    const server = new RedisTestServer(options);
    server.port = await freePort();
    await server.launch();
    return server;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  private async launch(): Promise<void> {
    const args = [
      "--port", String(this.port),
      "--bind", "127.0.0.1",
      "--dir", this.dir,
      "--save", "",
      "--daemonize", "no",
      "--protected-mode", "no",
      "--appendonly", this.persistent ? "yes" : "no",
      // Every write durable before the reply, so a restart in a test never loses an acknowledged entry.
      "--appendfsync", "always",
      "--logfile", path.join(this.dir, "redis.log"),
    ];
    const proc = spawn(REDIS_SERVER_BIN, args, { stdio: "ignore" });
    this.proc = proc;
    const exited = new Promise<never>((_, reject) =>
      proc.once("exit", (code) => reject(new Error(`redis-server exited early with code ${code}; see ${this.dir}/redis.log`))),
    );
    await Promise.race([this.waitReady(), exited]);
    proc.removeAllListeners("exit");
  }

  private async waitReady(): Promise<void> {
    // Bounded: about 10 s of connection attempts.
    for (let i = 0; i < 200; i++) {
      const ok = await new Promise<boolean>((resolve) => {
        const sock = net.connect(this.port, "127.0.0.1");
        sock.once("error", () => resolve(false));
        sock.once("connect", () => sock.write("PING\r\n"));
        sock.once("data", (d) => {
          sock.destroy();
          resolve(d.toString().startsWith("+PONG"));
        });
      });
      if (ok) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`redis-server did not become ready on port ${this.port}`);
  }

  /** Stop the server process (SIGTERM, so it flushes its append-only file), keeping the data dir. */
  async halt(): Promise<void> {
    const proc = this.proc;
    this.proc = undefined;
    if (!proc || proc.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      proc.once("exit", () => resolve());
      proc.kill("SIGTERM");
    });
  }

  /** Stop and start again on the same port; with `persistent` the streams survive. */
  async restart(): Promise<void> {
    await this.halt();
    await this.launch();
  }

  async stop(): Promise<void> {
    await this.halt();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
