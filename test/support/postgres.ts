// Starts a real PostgreSQL for tests: initdb into a temporary folder, the server on 127.0.0.1 at a random
// free port with its socket in that folder, trust authentication for the local user `postgres`; stopped
// and removed by stop(). As root, initdb and pg_ctl run as the `postgres` user through runuser.
import { execFile } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { promisify } from "node:util";
import { freePort } from "./ports.js";

const run = promisify(execFile);

/** The folder holding initdb and pg_ctl (Debian puts them under /usr/lib/postgresql/<version>/bin). */
export function postgresBinDir(): string | undefined {
  if (process.env.PG_BIN && fs.existsSync(path.join(process.env.PG_BIN, "pg_ctl"))) return process.env.PG_BIN;
  const root = "/usr/lib/postgresql";
  if (!fs.existsSync(root)) return undefined;
  const versions = fs.readdirSync(root).filter((v) => fs.existsSync(path.join(root, v, "bin", "pg_ctl"))).sort((a, b) => Number(b) - Number(a));
  return versions[0] === undefined ? undefined : path.join(root, versions[0], "bin");
}

export function postgresAvailable(): boolean {
  return postgresBinDir() !== undefined;
}

export class PostgresTestServer {
  port = 0;
  private stopped = false;

  private constructor(
    readonly dir: string,
    private readonly bin: string,
    private readonly asUser: string | undefined,
  ) {}

  static async start(): Promise<PostgresTestServer> {
    const bin = postgresBinDir();
    if (!bin) throw new Error("PostgreSQL is not installed (apt-get install postgresql; .ci/run installs it)");
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sb-pg-"));
    const asUser = process.getuid?.() === 0 ? "postgres" : undefined;
    if (asUser) {
      const { stdout } = await run("id", ["-u", asUser]);
      const { stdout: gid } = await run("id", ["-g", asUser]);
      fs.chownSync(dir, Number(stdout.trim()), Number(gid.trim()));
    }
    const server = new PostgresTestServer(dir, bin, asUser);
    try {
      await server.cmd("initdb", ["-D", server.dataDir, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"]);
      server.port = await freePort();
      await server.cmd("pg_ctl", [
        "-D", server.dataDir,
        "-l", path.join(dir, "server.log"),
        "-w", "-t", "30",
        "-o", `-p ${server.port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=20`,
        "start",
      ]);
    } catch (e) {
      await server.stop();
      throw e;
    }
    return server;
  }

  get dataDir(): string {
    return path.join(this.dir, "data");
  }

  /** postgres://postgres@127.0.0.1:PORT/postgres */
  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/postgres`;
  }

  private async cmd(name: string, args: string[]): Promise<void> {
    const exe = path.join(this.bin, name);
    const [file, argv] = this.asUser ? ["runuser", ["-u", this.asUser, "--", exe, ...args]] : [exe, args];
    await run(file, argv, { timeout: 60_000, cwd: this.dir });
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (fs.existsSync(path.join(this.dataDir, "postmaster.pid"))) {
      await this.cmd("pg_ctl", ["-D", this.dataDir, "-m", "immediate", "-w", "-t", "30", "stop"]).catch(() => {});
    }
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
