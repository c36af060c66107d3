// Linux network namespaces as separate hosts on one bridge, for tests that cut a host off: a "server"
// namespace holds the bridge (and the services), each host namespace hangs off it by a veth pair, and this
// process joins too (a veth from the root namespace), so it can reach every host. Needs root and iproute2;
// remove() deletes everything, and names are random so a run never meets another's leftovers.
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import { randomBytes } from "node:crypto";

const IP = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"].find((p) => fs.existsSync(p));

/** True when this process can create network namespaces (root, iproute2 present). */
export function netnsAvailable(): boolean {
  if (!IP || typeof process.getuid !== "function" || process.getuid() !== 0) return false;
  const probe = `sbprobe${randomBytes(3).toString("hex")}`;
  try {
    execFileSync(IP, ["netns", "add", probe], { stdio: "ignore" });
    execFileSync(IP, ["netns", "del", probe], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

function ip(...args: string[]): void {
  execFileSync(IP!, args, { stdio: ["ignore", "ignore", "pipe"] });
}

export interface Host {
  ns: string;
  address: string;
  /** The veth end on the server's bridge: down cuts the host off. */
  link: string;
}

export class Network {
  readonly server: Host;
  readonly hosts: Host[] = [];
  private readonly id = randomBytes(3).toString("hex");
  private readonly subnet: string;
  private readonly rootLink: string;
  private removed = false;

  private constructor(hosts: number) {
    // A random 10.x.y.0/24: this process gets an address on it, so it should not meet anything else here.
    this.subnet = `10.${100 + (randomBytes(1)[0]! % 150)}.${randomBytes(1)[0]!}`;
    this.server = { ns: `sb${this.id}s`, address: `${this.subnet}.1`, link: "" };
    this.rootLink = `sb${this.id}r`;
    for (let i = 1; i <= hosts; i++) this.hosts.push({ ns: `sb${this.id}h${i}`, address: `${this.subnet}.${10 + i}`, link: `sb${this.id}c${i}` });
  }

  /** Creates the namespaces, the bridge and the links; on failure removes what it made. */
  static create(hosts: number): Network {
    const net = new Network(hosts);
    try {
      net.build();
    } catch (e) {
      net.remove();
      throw e;
    }
    return net;
  }

  private build(): void {
    const s = this.server.ns;
    ip("netns", "add", s);
    ip("-n", s, "link", "set", "lo", "up");
    ip("-n", s, "link", "add", "br0", "type", "bridge");
    ip("-n", s, "addr", "add", `${this.server.address}/24`, "dev", "br0");
    ip("-n", s, "link", "set", "br0", "up");
    const attach = (ns: string | undefined, inside: string, outside: string, address: string): void => {
      ip("link", "add", inside, "type", "veth", "peer", "name", outside);
      ip("link", "set", outside, "netns", s);
      ip("-n", s, "link", "set", outside, "master", "br0");
      ip("-n", s, "link", "set", outside, "up");
      if (ns) {
        ip("link", "set", inside, "netns", ns);
        ip("-n", ns, "addr", "add", `${address}/24`, "dev", inside);
        ip("-n", ns, "link", "set", inside, "up");
      } else {
        ip("addr", "add", `${address}/24`, "dev", inside);
        ip("link", "set", inside, "up");
      }
    };
    for (const h of this.hosts) {
      ip("netns", "add", h.ns);
      ip("-n", h.ns, "link", "set", "lo", "up");
      attach(h.ns, `${h.link}i`, h.link, h.address);
    }
    // This process's own way in.
    attach(undefined, this.rootLink, `${this.rootLink}p`, `${this.subnet}.2`);
  }

  /** The prefix that runs a command on `host`. */
  exec(host: Host): string[] {
    return [IP!, "netns", "exec", host.ns];
  }

  /** Link down on the bridge side: the host can reach nothing and nothing can reach it. */
  cut(host: Host): void {
    ip("-n", this.server.ns, "link", "set", host.link, "down");
  }

  mend(host: Host): void {
    ip("-n", this.server.ns, "link", "set", host.link, "up");
  }

  remove(): void {
    if (this.removed) return;
    this.removed = true;
    for (const cmd of [
      ["link", "del", this.rootLink],
      ...this.hosts.map((h) => ["netns", "del", h.ns]),
      ["netns", "del", this.server.ns],
    ]) {
      try {
        ip(...cmd);
      } catch {
        /* already gone */
      }
    }
  }
}
