// Membership, ownership and epochs from etcd: a member key and the unit-ownership keys live under one lease
// (the session), so an instance that dies or is cut off loses them when the lease expires. A unit is claimed
// with a transaction that succeeds only if nobody holds it; the key's create revision is the unit's epoch,
// a number etcd never issues twice, which every commit carries as its fencing token.
import type { Etcd3, Lease, IKeyValue, Watcher } from "etcd3";
import * as os from "node:os";
import { GroupCoordinatorUnavailableError, GroupOptionError } from "./errors.js";
import type { GroupSourceSpec } from "./log.js";
import type { RedisConnectionOptions } from "../sources/redis.js";

/** What every instance stores about itself (the member key's value). */
export interface MemberInfo {
  id: string;
  host: string;
  pid: number;
  /** The launcher's index for this instance (`--instances N` numbers them), if any. */
  launchIndex?: number;
  joinedAt: number;
}

export interface Member extends MemberInfo {
  /** etcd's create revision of the member key: members are ordered by it (join order). */
  revision: number;
}

export interface UnitOwner {
  unit: number;
  instanceId: string;
  /** The fencing token: the owner key's create revision. */
  epoch: number;
}

/** The group's settings, written once by the first instance; every later instance must agree. */
export interface GroupMeta {
  batchDuration: number;
  zeroTime: number;
  units: number;
  /** The pipeline's shape (sub-topologies, exchanges, partition counts): instances must run the same one. */
  fingerprint: string;
  createdAt: number;
  /** Partitions of each sub-topology (stage), for monitors that do not run the pipeline. */
  stages: number[];
  /** The partitioned inputs (for their lag) and the store, likewise. */
  inputs: GroupSourceSpec[];
  store: RedisConnectionOptions;
}

export interface CoordinatorOptions {
  url: string;
  group: string;
  instanceId: string;
  /** The session (lease) timeout; etcd counts leases in whole seconds (rounded up, at least 1). */
  sessionTimeoutMs: number;
  /** How long start-up waits for the coordinator before failing (default 5 s). */
  connectTimeoutMs?: number;
  launchIndex?: number;
}

/** etcd://host:port[,host:port...] -> the client's host list. */
export function parseCoordinatorUrl(url: string): string[] {
  const m = /^etcd:\/\/(.+)$/.exec(url.trim());
  if (!m) {
    throw new GroupOptionError(
      `coordinator "${url}" is not an etcd URL; give etcd://HOST:PORT (several as etcd://h1:2379,h2:2379). ` +
        `streambook coordinates groups through etcd (ZooKeeper URLs are not supported)`,
    );
  }
  const hosts = m[1]!.split(",").map((h) => h.trim()).filter((h) => h !== "");
  for (const h of hosts) {
    if (!/^[^\s/:]+:\d+$/.test(h) && !/^\[[0-9a-fA-F:]+\]:\d+$/.test(h)) {
      throw new GroupOptionError(`coordinator "${url}": "${h}" is not HOST:PORT`);
    }
  }
  if (hosts.length === 0) throw new GroupOptionError(`coordinator "${url}" names no host`);
  return hosts.map((h) => `http://${h}`);
}

function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/**
 * Which units each member should own: rendezvous hashing with a bound on load, so the result depends only
 * on the member set, every member gets floor or ceil(units / members), and when a member leaves or joins
 * most other units stay where they are. Every instance computes the same answer from the same members.
 */
export function assignUnits(units: number, memberIds: readonly string[]): Map<string, number[]> {
  const out = new Map<string, number[]>(memberIds.map((m) => [m, []]));
  if (memberIds.length === 0) return out;
  const sorted = [...memberIds].sort();
  const base = Math.floor(units / sorted.length);
  let extra = units % sorted.length;
  // Which members may take one more than the base: the first `extra` by a hash of the member set, stable.
  const capacity = new Map<string, number>();
  const byHash = [...sorted].sort((a, b) => fnv1a(`cap/${a}`) - fnv1a(`cap/${b}`) || (a < b ? -1 : 1));
  for (const m of byHash) capacity.set(m, base + (extra-- > 0 ? 1 : 0));
  for (let u = 0; u < units; u++) {
    const ranked = [...sorted].sort((a, b) => fnv1a(`${u}/${b}`) - fnv1a(`${u}/${a}`) || (a < b ? -1 : 1));
    for (const m of ranked) {
      if ((capacity.get(m) ?? 0) > 0) {
        capacity.set(m, capacity.get(m)! - 1);
        out.get(m)!.push(u);
        break;
      }
    }
  }
  return out;
}

function etcd3(): typeof import("etcd3") {
  // Loaded on first use: a context that is not in a group never pays for gRPC.
  return require("etcd3") as typeof import("etcd3");
}

function cockatiel(): typeof import("cockatiel") {
  return require("cockatiel") as typeof import("cockatiel");
}

export interface CoordinatorEvents {
  /** Members or owners changed (from the watch). */
  changed(): void;
  /** The session lease is gone: every unit this instance owned is lost. */
  sessionLost(error: Error): void;
  /** A coordinator call or the watch failed; the client retries by itself. */
  trouble(error: Error): void;
}

/** One instance's connection to the group's keys in etcd. */
export class EtcdCoordinator {
  readonly prefix: string;
  private readonly client: Etcd3;
  private lease: Lease | undefined;
  private leaseId: string | undefined;
  private watcher: Watcher | undefined;
  private readonly memberKeys = new Map<string, Member>();
  private readonly ownerKeys = new Map<number, UnitOwner>();
  private handlers: Partial<CoordinatorEvents> = {};
  private closed = false;
  readonly ttlSeconds: number;

  private constructor(
    private readonly options: CoordinatorOptions,
    client: Etcd3,
  ) {
    this.client = client;
    this.prefix = `/streambook/groups/${options.group}/`;
    this.ttlSeconds = Math.max(1, Math.ceil(options.sessionTimeoutMs / 1000));
  }

  /** Connects and checks that etcd answers within connectTimeoutMs. */
  static async connect(options: CoordinatorOptions): Promise<EtcdCoordinator> {
    const hosts = parseCoordinatorUrl(options.url);
    const { Etcd3 } = etcd3();
    const { circuitBreaker, retry, ConsecutiveBreaker, ExponentialBackoff, handleWhen } = cockatiel();
    const { isRecoverableError } = etcd3();
    const timeout = options.connectTimeoutMs ?? 5000;
    const client = new Etcd3({
      hosts,
      dialTimeout: timeout,
      // Short back-offs: a restarted etcd must be used again within about a second, not after 30 s.
      faultHandling: {
        host: () => circuitBreaker(handleWhen(isRecoverableError), { halfOpenAfter: 500, breaker: new ConsecutiveBreaker(3) }),
        global: retry(handleWhen(isRecoverableError), { maxAttempts: 2 }),
        watchBackoff: new ExponentialBackoff({ initialDelay: 50, maxDelay: 500 }).next(),
      },
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + Math.max(1000, timeout) }),
    });
    const c = new EtcdCoordinator(options, client);
    const started = Date.now();
    let last: unknown;
    while (Date.now() - started < timeout) {
      try {
        await client.get(`${c.prefix}meta`).string();
        return c;
      } catch (e) {
        last = e;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    client.close();
    throw new GroupCoordinatorUnavailableError(
      `cannot reach the coordinator at ${options.url} within ${timeout} ms (${(last as Error)?.message ?? "no answer"}); ` +
        `start etcd there or give the right --coordinator / group.coordinator URL`,
    );
  }

  on(handlers: Partial<CoordinatorEvents>): void {
    this.handlers = { ...this.handlers, ...handlers };
  }

  /** Writes the group's settings if it has none yet; returns what is stored (the first instance's). */
  async ensureMeta(meta: GroupMeta): Promise<GroupMeta> {
    const key = `${this.prefix}meta`;
    const res = await this.client.if(key, "Create", "==", 0).then(this.client.put(key).value(JSON.stringify(meta))).commit();
    if (res.succeeded) return meta;
    const stored = await this.client.get(key).string();
    return JSON.parse(stored ?? "null") as GroupMeta;
  }

  async readMeta(): Promise<GroupMeta | undefined> {
    const s = await this.client.get(`${this.prefix}meta`).string();
    return s === null ? undefined : (JSON.parse(s) as GroupMeta);
  }

  /** Starts a session (lease), registers this member and watches the group. */
  async join(): Promise<void> {
    const lease = this.client.lease(this.ttlSeconds, { autoKeepAlive: true });
    this.lease = lease;
    lease.on("lost", (err) => {
      if (this.closed || this.lease !== lease) return;
      this.handlers.sessionLost?.(err);
    });
    // The client passes the gRPC error here (its typings say a response).
    lease.on("keepaliveFailed", (err) => {
      if (!this.closed) this.handlers.trouble?.(err as unknown as Error);
    });
    this.leaseId = await lease.grant();
    const info: MemberInfo = {
      id: this.options.instanceId,
      host: os.hostname(),
      pid: process.pid,
      launchIndex: this.options.launchIndex,
      joinedAt: Date.now(),
    };
    await lease.put(`${this.prefix}members/${this.options.instanceId}`).value(JSON.stringify(info));
    await this.startWatch();
  }

  /** Rejoins after a lost session: a new lease, the member key again, the same watch. */
  async rejoin(): Promise<void> {
    const old = this.lease;
    this.lease = undefined;
    // Best effort: if etcd still knows the old lease, revoking it frees our old keys now rather than at expiry.
    try {
      await old?.revoke();
    } catch {
      old?.release();
    }
    const lease = this.client.lease(this.ttlSeconds, { autoKeepAlive: true });
    this.lease = lease;
    lease.on("lost", (err) => {
      if (this.closed || this.lease !== lease) return;
      this.handlers.sessionLost?.(err);
    });
    // The client passes the gRPC error here (its typings say a response).
    lease.on("keepaliveFailed", (err) => {
      if (!this.closed) this.handlers.trouble?.(err as unknown as Error);
    });
    this.leaseId = await lease.grant();
    const info: MemberInfo = { id: this.options.instanceId, host: os.hostname(), pid: process.pid, launchIndex: this.options.launchIndex, joinedAt: Date.now() };
    await lease.put(`${this.prefix}members/${this.options.instanceId}`).value(JSON.stringify(info));
    // The watch may have missed events while we were away: read everything again.
    await this.reload();
  }

  private apply(kv: IKeyValue, deleted: boolean): void {
    const key = kv.key.toString();
    const rest = key.slice(this.prefix.length);
    if (rest.startsWith("members/")) {
      const id = rest.slice("members/".length);
      const cur = this.memberKeys.get(id);
      // Events older than what we hold (our own claim, or a reload) are stale: skip them.
      if (cur && cur.revision > Number(deleted ? kv.mod_revision : kv.create_revision)) return;
      if (deleted) this.memberKeys.delete(id);
      else {
        try {
          const info = JSON.parse(kv.value.toString()) as MemberInfo;
          this.memberKeys.set(id, { ...info, id, revision: Number(kv.create_revision) });
        } catch {
          /* not ours */
        }
      }
    } else if (rest.startsWith("owners/")) {
      const unit = Number(rest.slice("owners/".length));
      if (!Number.isInteger(unit)) return;
      const cur = this.ownerKeys.get(unit);
      if (cur && cur.epoch > Number(deleted ? kv.mod_revision : kv.create_revision)) return;
      if (deleted) this.ownerKeys.delete(unit);
      else {
        try {
          const v = JSON.parse(kv.value.toString()) as { instanceId: string };
          this.ownerKeys.set(unit, { unit, instanceId: v.instanceId, epoch: Number(kv.create_revision) });
        } catch {
          /* not ours */
        }
      }
    }
  }

  private async reload(): Promise<number> {
    const res = await this.client.getAll().prefix(this.prefix).exec();
    this.memberKeys.clear();
    this.ownerKeys.clear();
    for (const kv of res.kvs) this.apply(kv, false);
    this.handlers.changed?.();
    return Number(res.header.revision);
  }

  private async startWatch(): Promise<void> {
    const revision = await this.reload();
    const watcher = await this.client.watch().prefix(this.prefix).startRevision(String(revision + 1)).create();
    this.watcher = watcher;
    watcher.on("put", (kv) => {
      this.apply(kv, false);
      this.handlers.changed?.();
    });
    watcher.on("delete", (kv) => {
      this.apply(kv, true);
      this.handlers.changed?.();
    });
    watcher.on("disconnected", (err) => {
      if (!this.closed) this.handlers.trouble?.(err);
    });
    watcher.on("connected", () => {
      // Events missed while disconnected are replayed from the last revision by the client; re-read anyway.
      if (!this.closed) void this.reload().catch(() => {});
    });
  }

  /** Members in join order. */
  members(): Member[] {
    return [...this.memberKeys.values()].sort((a, b) => a.revision - b.revision);
  }

  owners(): Map<number, UnitOwner> {
    return new Map(this.ownerKeys);
  }

  /** Claims `unit` if nobody holds it; returns its new epoch, or undefined when it is held. */
  async claim(unit: number): Promise<number | undefined> {
    if (!this.leaseId) return undefined;
    const key = `${this.prefix}owners/${unit}`;
    const value = JSON.stringify({ instanceId: this.options.instanceId, at: Date.now() });
    const res = await this.client.if(key, "Create", "==", 0).then(this.client.put(key).value(value).lease(this.leaseId)).commit();
    if (!res.succeeded) return undefined;
    const epoch = Number(res.header.revision);
    this.ownerKeys.set(unit, { unit, instanceId: this.options.instanceId, epoch });
    return epoch;
  }

  /** Gives `unit` up, if we still hold it under `epoch`. */
  async release(unit: number, epoch: number): Promise<void> {
    const key = `${this.prefix}owners/${unit}`;
    await this.client.if(key, "Create", "==", epoch).then(this.client.delete().key(key)).commit();
  }

  /** Leaves the group: revokes the lease (our keys go at once) and closes the client. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.watcher?.cancel();
    } catch {
      /* closing anyway */
    }
    try {
      await Promise.race([this.lease?.revoke(), new Promise((r) => setTimeout(r, 1000))]);
    } catch {
      this.lease?.release();
    }
    this.client.close();
  }

  /** For a monitor that is not a member: the raw client. */
  get etcd(): Etcd3 {
    return this.client;
  }

  async watchOnly(): Promise<void> {
    await this.startWatch();
  }
}
