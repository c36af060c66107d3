// `streambook run NB --instances N` and `--group NAME --coordinator URL`: a notebook run as instances of a
// group. Every instance runs the same notebook in its own kernel; the kernel learns its group from the
// environment (STREAMBOOK_GROUP, STREAMBOOK_COORDINATOR, ...), so `ssc` and every new StreamingContext join
// it. --instances starts N runners here, each a `streambook run --group ...` child, with prefixed output.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import * as http from "node:http";
import { tmpdir } from "node:os";
import { basename, extname, join } from "node:path";
import { freePorts } from "./client.js";

export interface GroupRunArgs {
  instances?: number;
  group?: string;
  coordinator?: string;
  /** This runner's number among --instances (set by the launcher). */
  instance?: number;
  sessionTimeoutMs?: number;
}

export const DEFAULT_COORDINATOR = "etcd://127.0.0.1:2379";

/** The group name for a notebook run with --instances and no --group: its file name. */
export function defaultGroupName(notebook: string): string {
  return basename(notebook, extname(notebook)).replace(/[^A-Za-z0-9._-]/g, "-").slice(0, 100) || "notebook";
}

/** The environment a group instance's kernel gets. */
export function groupEnvironment(g: GroupRunArgs, instances?: number): Record<string, string> {
  const env: Record<string, string> = {};
  if (g.group !== undefined) env.STREAMBOOK_GROUP = g.group;
  if (g.coordinator !== undefined) env.STREAMBOOK_COORDINATOR = g.coordinator;
  if (g.instance !== undefined) env.STREAMBOOK_INSTANCE = String(g.instance);
  if (instances !== undefined) env.STREAMBOOK_INSTANCES = String(instances);
  if (g.sessionTimeoutMs !== undefined) env.STREAMBOOK_SESSION_TIMEOUT = String(g.sessionTimeoutMs);
  return env;
}

function etcdHealthy(url: string): Promise<boolean> {
  const m = /^etcd:\/\/([^,/:]+):(\d+)/.exec(url);
  if (!m) return Promise.resolve(false);
  return new Promise((resolve) => {
    const req = http.get({ host: m[1], port: Number(m[2]), path: "/health", timeout: 1000 }, (res) => {
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


function findEtcd(): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(":")) if (dir && existsSync(join(dir, "etcd"))) return join(dir, "etcd");
  const r = spawnSync("which", ["etcd"], { encoding: "utf8" });
  return r.status === 0 ? r.stdout.trim() || undefined : undefined;
}

/** A private etcd for a local --instances run when none answers at the default address. */
async function startLocalEtcd(log: (s: string) => void): Promise<{ url: string; stop: () => void } | undefined> {
  const bin = findEtcd();
  if (!bin) return undefined;
  const [client, peer] = await freePorts(2);
  const dir = mkdtempSync(join(tmpdir(), "streambook-etcd-"));
  const c = `http://127.0.0.1:${client}`;
  const p = `http://127.0.0.1:${peer}`;
  const proc = spawn(bin, ["--name", "streambook", "--data-dir", join(dir, "data"), "--listen-client-urls", c, "--advertise-client-urls", c, "--listen-peer-urls", p, "--initial-advertise-peer-urls", p, "--initial-cluster", `streambook=${p}`, "--log-level", "warn"], { stdio: "ignore" });
  const url = `etcd://127.0.0.1:${client}`;
  for (let i = 0; i < 200; i++) {
    if (await etcdHealthy(url)) {
      log(`no coordinator answered at ${DEFAULT_COORDINATOR}: started a private etcd at ${url} for this run (pass --coordinator to use yours)`);
      return {
        url,
        stop: () => {
          proc.kill("SIGTERM");
          rmSync(dir, { recursive: true, force: true });
        },
      };
    }
    if (proc.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  proc.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
  return undefined;
}

function prefixLines(prefix: string, out: NodeJS.WritableStream): (d: Buffer) => void {
  let buf = "";
  return (d) => {
    buf += d.toString();
    let i: number;
    while ((i = buf.indexOf("\n")) >= 0) {
      out.write(`${prefix}${buf.slice(0, i)}\n`);
      buf = buf.slice(i + 1);
    }
  };
}

/** The per-instance file for --out/--html: pipeline.ipynb -> pipeline.instance-2.ipynb. */
export function perInstance(file: string, i: number): string {
  const ext = extname(file);
  return `${file.slice(0, file.length - ext.length)}.instance-${i}${ext}`;
}

/**
 * Runs `args` (a `streambook run` command line without --instances) as N instances of one group, each in a
 * child runner with `--group G --coordinator C --instance i`. Returns the worst exit code.
 */
export async function runInstances(
  n: number,
  notebook: string,
  passThrough: string[],
  g: GroupRunArgs,
  io: { stdout: NodeJS.WritableStream; stderr: NodeJS.WritableStream },
  cli: string,
): Promise<number> {
  const group = g.group ?? defaultGroupName(notebook);
  let coordinator = g.coordinator;
  let local: { url: string; stop: () => void } | undefined;
  if (coordinator === undefined) {
    coordinator = process.env.STREAMBOOK_COORDINATOR ?? DEFAULT_COORDINATOR;
    if (coordinator === DEFAULT_COORDINATOR && !(await etcdHealthy(coordinator))) {
      local = await startLocalEtcd((s) => io.stderr.write(`streambook run: ${s}\n`));
      if (local) coordinator = local.url;
    }
  }
  io.stderr.write(`streambook run: ${n} instance(s) of group ${group} (coordinator ${coordinator})\n`);
  const children: ChildProcess[] = [];
  const forward = (signal: NodeJS.Signals) => () => {
    for (const c of children) if (c.exitCode === null) c.kill(signal);
  };
  const onInt = forward("SIGINT");
  const onTerm = forward("SIGTERM");
  process.on("SIGINT", onInt);
  process.on("SIGTERM", onTerm);
  try {
    const codes = await Promise.all(
      Array.from({ length: n }, (_, i) => {
        const args = [cli, "run", notebook, ...passThrough, "--group", group, "--coordinator", coordinator!, "--instance", String(i)];
        if (g.sessionTimeoutMs !== undefined) args.push("--session-timeout", String(g.sessionTimeoutMs / 1000));
        const child = spawn(process.execPath, args, { env: { ...process.env, STREAMBOOK_INSTANCES: String(n) }, stdio: ["ignore", "pipe", "pipe"] });
        children.push(child);
        child.stdout!.on("data", prefixLines(`[${i}] `, io.stdout));
        child.stderr!.on("data", prefixLines(`[${i}] `, io.stderr));
        return new Promise<number>((resolve) => child.once("exit", (code, signal) => resolve(code ?? (signal === "SIGINT" ? 130 : 1))));
      }),
    );
    return Math.max(...codes);
  } finally {
    process.off("SIGINT", onInt);
    process.off("SIGTERM", onTerm);
    for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
    local?.stop();
  }
}
