// A view of a group from outside it (the notebook that launched the instances, a dashboard): it watches
// the group's keys in etcd without joining, and reads progress and lag from the store the group records.
import { randomBytes } from "node:crypto";
import { EtcdCoordinator, type GroupMeta } from "./coordinator.js";
import { GroupCoordinatorUnavailableError } from "./errors.js";
import type { LogReader } from "./log.js";
import type { GroupEvent, GroupListener, GroupStatus } from "./options.js";
import { RedisLogReader } from "./redis-log.js";
import { readGroupStatus } from "./runtime.js";
import { GroupStore } from "./store.js";

export interface GroupMonitorOptions {
  name: string;
  coordinator: string;
  /** How long to wait for the coordinator, and for the group to exist (default 5 000 ms). */
  timeout?: number;
}

export class GroupMonitor {
  private readonly listeners = new Set<GroupListener>();
  private readonly log: GroupEvent[] = [];
  private members = new Set<string>();
  private owners = new Map<number, string>();
  private closed = false;

  private constructor(
    readonly name: string,
    readonly coordinator: string,
    private readonly coord: EtcdCoordinator,
    private readonly meta: GroupMeta,
    private readonly store: GroupStore,
    private readonly readers: LogReader[],
  ) {}

  /** Connects to the group's coordinator and waits (up to `timeout`) for the group to have started. */
  static async connect(options: GroupMonitorOptions): Promise<GroupMonitor> {
    const timeout = options.timeout ?? 5000;
    const coord = await EtcdCoordinator.connect({
      url: options.coordinator,
      group: options.name,
      instanceId: `monitor-${randomBytes(3).toString("hex")}`,
      sessionTimeoutMs: 10_000,
      connectTimeoutMs: timeout,
    });
    const started = Date.now();
    let meta = await coord.readMeta();
    while (!meta && Date.now() - started < timeout) {
      await new Promise((r) => setTimeout(r, 100));
      meta = await coord.readMeta();
    }
    if (!meta) {
      await coord.close();
      throw new GroupCoordinatorUnavailableError(`group ${options.name} has not started at ${options.coordinator} within ${timeout} ms; start its instances first`);
    }
    const monitor = new GroupMonitor(options.name, options.coordinator, coord, meta, new GroupStore(meta.store, options.name, "monitor"), meta.inputs.map((s) => new RedisLogReader(s)));
    coord.on({ changed: () => monitor.diff() });
    await coord.watchOnly();
    return monitor;
  }

  private emit(e: Omit<GroupEvent, "time">): void {
    const ev: GroupEvent = { time: Date.now(), ...e };
    this.log.push(ev);
    if (this.log.length > 200) this.log.splice(0, this.log.length - 200);
    for (const l of [...this.listeners]) {
      try {
        l(ev);
      } catch {
        /* a listener's failure is its own */
      }
    }
  }

  /** Turns the watched keys into events: joins, leaves, and units moving from one owner to another. */
  private diff(): void {
    if (this.closed) return;
    const members = new Set(this.coord.members().map((m) => m.id));
    for (const id of members) if (!this.members.has(id)) this.emit({ kind: "joined", instanceId: id, message: `instance ${id} joined` });
    for (const id of this.members) if (!members.has(id)) this.emit({ kind: "left", instanceId: id, message: `instance ${id} left (or its session expired)` });
    this.members = members;
    const owners = this.coord.owners();
    for (const [u, o] of owners) {
      if (this.owners.get(u) !== o.instanceId) this.emit({ kind: "assigned", unit: u, instanceId: o.instanceId, epoch: o.epoch, message: `unit ${u} -> ${o.instanceId} (epoch ${o.epoch})` });
    }
    for (const [u, id] of this.owners) if (!owners.has(u)) this.emit({ kind: "released", unit: u, instanceId: id, message: `unit ${u} released by ${id}` });
    this.owners = new Map([...owners].map(([u, o]) => [u, o.instanceId]));
  }

  onEvent(listener: GroupListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  events(): GroupEvent[] {
    return this.log.slice();
  }

  status(): Promise<GroupStatus> {
    return readGroupStatus({ name: this.name, coordinator: this.coordinator, coord: this.coord, store: this.store, readers: this.readers, meta: this.meta, events: this.events() });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.coord.close();
    this.store.close();
    for (const r of this.readers) r.close();
  }
}
