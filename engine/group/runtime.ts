// One instance of a group: it joins through the coordinator, owns the units the assignment gives it
// (claimed in etcd, fenced in the store), runs their tasks batch by batch, and gives them up when the
// group changes. Outputs that are not partitioned sinks (pprint, chart, foreachRDD) run here once per
// batch on the union of this instance's partitions, once every task it owns has completed that batch.
import { randomBytes } from "node:crypto";
import * as os from "node:os";
import type { GroupHooks, StreamingContext } from "../context.js";
import type { DStream } from "../dstream.js";
import { StatefulDStream } from "../dstream.js";
import type { RDD } from "../rdd.js";
import type { BatchInfo, OutputOperationInfo } from "../listener.js";
import { errorMessage } from "../errors.js";
import type { RedisConnectionOptions } from "../sources/redis.js";
import { assignUnits, EtcdCoordinator, type GroupMeta } from "./coordinator.js";
import { GroupConfigMismatchError, GroupCoordinatorUnavailableError, GroupFencedError, GroupSessionExpiredError } from "./errors.js";
import type { LogReader } from "./log.js";
import { checkGroupOptions, type GroupEvent, type GroupHandle, type GroupInstanceInfo, type GroupListener, type GroupOptions, type GroupStatus } from "./options.js";
import { planGroup, type GroupPlan } from "./plan.js";
import { LAG_COUNT_LIMIT, RedisLogReader } from "./redis-log.js";
import { GroupStore, type ScriptRedis } from "./store.js";
import { GroupTask, type TaskEnvironment } from "./task.js";

type AnyStream = DStream<unknown>;

interface OwnedUnit {
  unit: number;
  epoch: number;
  tasks: GroupTask[];
  releasing: boolean;
}

function connectionKey(c: RedisConnectionOptions): string {
  return c.url ?? `redis://${c.host ?? "127.0.0.1"}:${c.port ?? 6379}`;
}

function parseStore(store: GroupOptions["store"]): RedisConnectionOptions | undefined {
  if (store === undefined) return undefined;
  return typeof store === "string" ? { url: store } : store;
}

export class GroupRuntime implements GroupHandle {
  readonly name: string;
  readonly coordinator: string;
  readonly instanceId: string;
  private plan: GroupPlan | undefined;
  private store: GroupStore | undefined;
  private readers: LogReader[] = [];
  private coord: EtcdCoordinator | undefined;
  private meta: GroupMeta | undefined;
  private readonly units = new Map<number, OwnedUnit>();
  private readonly claiming = new Set<number>();
  private running = false;
  private loop: Promise<void> | undefined;
  private wakeLoop: (() => void) | undefined;
  private lastFired: number | undefined;
  private readonly eventLog: GroupEvent[] = [];
  private readonly listeners = new Set<GroupListener>();
  private readonly sinkServers = new Map<string, ScriptRedis>();
  private knownMembers = new Set<string>();
  private sessionLost = false;
  private troubled = false;
  /** Task steps running now, so a unit being released can wait for them. */
  private readonly inFlight = new Map<GroupTask, Promise<unknown>>();
  private readonly batchDuration: number;

  private hooks: GroupHooks = { reportError: () => {} };
  /** Where the batch loop's wall time went (ms), for bench:scale's breakdown. */
  private readonly loopTiming = { startedAt: 0, connectedAt: 0, memberAt: 0, joinedAt: 0, lastClaimAt: 0, rounds: 0, roundsMs: 0, idleMs: 0, idles: 0, fireMs: 0 };

  constructor(
    private readonly ssc: StreamingContext,
    private readonly options: GroupOptions,
  ) {
    checkGroupOptions(options);
    this.name = options.name;
    this.coordinator = options.coordinator;
    this.instanceId = options.instanceId ?? `${os.hostname()}-${process.pid}-${randomBytes(3).toString("hex")}`;
    this.batchDuration = ssc.batchDuration;
  }

  // ---- GroupHandle ----------------------------------------------------------------------------

  instance(): GroupInstanceInfo {
    const members = this.coord?.members() ?? [];
    const i = members.findIndex((m) => m.id === this.instanceId);
    const joined = i >= 0 && this.running;
    const envCount = Number(process.env.STREAMBOOK_INSTANCES);
    const partitions = [...this.units.keys()].sort((a, b) => a - b);
    return {
      group: this.name,
      instanceId: this.instanceId,
      index: joined ? i : this.options.launchIndex,
      count: joined ? members.length : Number.isFinite(envCount) && envCount > 0 ? envCount : undefined,
      partitions,
      standby: joined && partitions.length === 0 && this.claiming.size === 0,
      joined,
    };
  }

  onEvent(listener: GroupListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  events(): GroupEvent[] {
    return this.eventLog.slice();
  }

  private emit(e: Omit<GroupEvent, "time">): void {
    const ev: GroupEvent = { time: Date.now(), ...e };
    this.eventLog.push(ev);
    if (this.eventLog.length > 200) this.eventLog.splice(0, this.eventLog.length - 200);
    for (const l of [...this.listeners]) {
      try {
        l(ev);
      } catch {
        /* a listener's failure is its own */
      }
    }
  }

  async status(): Promise<GroupStatus> {
    const plan = this.plan;
    const coord = this.coord;
    const store = this.store;
    const meta = this.meta;
    if (!plan || !coord || !store || !meta) throw new GroupCoordinatorUnavailableError(`group ${this.name} has not been joined yet: start the context first`);
    return readGroupStatus({ name: this.name, coordinator: this.coordinator, coord, store, readers: this.readers, meta, events: this.events() });
  }

  // ---- lifecycle ------------------------------------------------------------------------------

  async start(hooks: GroupHooks): Promise<void> {
    if (this.running) throw new GroupConfigMismatchError(`instance ${this.instanceId} of group ${this.name} is running already`);
    this.hooks = hooks;
    this.loopTiming.startedAt = Date.now();
    this.units.clear();
    this.claiming.clear();
    this.lastFired = undefined;
    this.knownMembers = new Set();
    this.sessionLost = false;
    this.troubled = false;
    try {
      await this.join();
    } catch (e) {
      await this.teardown();
      throw e;
    }
  }

  private async join(): Promise<void> {
    const ssc = this.ssc;
    const plan = planGroup(ssc, this.options.partitions);
    this.plan = plan;
    const storeConn = parseStore(this.options.store) ?? plan.inputs[0]!.spec.connection;
    this.store = new GroupStore(storeConn, this.name, this.instanceId);
    this.readers = plan.inputs.map((i) => new RedisLogReader(i.spec));
    const coord = await EtcdCoordinator.connect({
      url: this.coordinator,
      group: this.name,
      instanceId: this.instanceId,
      sessionTimeoutMs: this.options.sessionTimeout ?? 10_000,
      connectTimeoutMs: this.options.connectTimeout,
      launchIndex: this.options.launchIndex,
    });
    this.coord = coord;
    this.loopTiming.connectedAt = Date.now();
    let meta = await coord.readMeta();
    if (!meta) {
      const zeroTime = await this.readers[0]!.zeroTime(Date.now(), ssc.batchDuration);
      meta = await coord.ensureMeta({
        batchDuration: ssc.batchDuration,
        zeroTime,
        units: plan.units,
        fingerprint: plan.fingerprint,
        createdAt: Date.now(),
        stages: plan.subs.map((x) => x.partitions),
        inputs: plan.inputs.map((i) => i.spec),
        store: storeConn,
      });
    }
    if (meta.batchDuration !== ssc.batchDuration) {
      throw new GroupConfigMismatchError(
        `group ${this.name} runs ${meta.batchDuration} ms batches, this instance ${ssc.batchDuration} ms; every instance must run the same ` +
          `pipeline with the same batch interval (or use a new group name)`,
      );
    }
    if (meta.fingerprint !== plan.fingerprint || meta.units !== plan.units) {
      throw new GroupConfigMismatchError(
        `group ${this.name} was started with a different pipeline (its partitions, re-keys or operators differ from this instance's); ` +
          `every instance must run the same code: run the same notebook or program, or use a new group name`,
      );
    }
    this.meta = meta;
    ssc.graph.reset(meta.zeroTime, true);
    this.shareState(plan);
    coord.on({
      changed: () => this.onMembership(),
      sessionLost: (e) => void this.onSessionLost(e),
      trouble: (e) => this.onTrouble(e),
    });
    this.running = true;
    // As Kafka's group.initial.rebalance.delay: a group starting from nothing waits briefly for the instances
    // started with it, so they share the units from the first claim rather than through a rebalance.
    this.settling = true;
    await coord.join();
    this.loopTiming.memberAt = Date.now();
    const expected = this.options.instances ?? (Number(process.env.STREAMBOOK_INSTANCES) || undefined);
    const until = Date.now() + (this.options.initialRebalanceDelay ?? 1000);
    while (this.running && Date.now() < until && coord.owners().size === 0 && (expected === undefined || coord.members().length < expected)) {
      await new Promise((r) => setTimeout(r, 20));
    }
    this.settling = false;
    this.reconcile();
    this.loopTiming.joinedAt = Date.now();
    this.loop = this.run();
  }

  /**
   * Internal (bench:scale): where this instance's time went. The loop's own wall time running its tasks' batches,
   * asleep in idle() and running outputs; and the owned tasks' timings summed per stage.
   */
  loopStats(): Record<string, unknown> {
    const tasks: Record<number, GroupTask["timing"]> = {};
    for (const u of this.units.values()) {
      for (const t of u.tasks) {
        const sum = (tasks[t.sub] ??= { batches: 0, notReady: 0, inputMs: 0, runMs: 0, commitMs: 0, prefetched: 0 });
        for (const k of Object.keys(sum) as (keyof GroupTask["timing"])[]) sum[k] += t.timing[k];
      }
    }
    const t = this.loopTiming;
    const since = (x: number): number => (x > 0 ? x - t.startedAt : -1);
    return { ...t, connectMs: since(t.connectedAt), memberMs: since(t.memberAt), joinMs: since(t.joinedAt), claimedMs: since(t.lastClaimAt), units: [...this.units.keys()], tasks };
  }

  /** Joined but still waiting for the instances started together (see join()). */
  private settling = false;

  /** state() of a stateful stream of the pipeline reads the state of this instance's partitions. */
  private shareState(plan: GroupPlan): void {
    for (const step of plan.steps) {
      const original = step.original;
      if (!(original instanceof StatefulDStream)) continue;
      const runtime = this;
      Object.defineProperty(original, "state", {
        configurable: true,
        value: function state(): RDD<unknown> {
          const parts: RDD<unknown>[] = [];
          for (const u of runtime.units.values()) {
            for (const t of u.tasks) {
              const c = t.copyOf(original);
              if (c instanceof StatefulDStream) parts.push(c.state());
            }
          }
          return runtime.ssc.sc.union(parts);
        },
      });
    }
  }

  async stop(graceful: boolean): Promise<void> {
    this.running = false;
    this.wakeLoop?.();
    if (graceful) {
      // Let the running batches finish so their commits are in; later ones are for whoever owns the units next.
      await Promise.all([...this.inFlight.values()].map((p) => p.catch(() => {})));
    } else {
      for (const u of this.units.values()) for (const t of u.tasks) t.cancel();
    }
    await this.loop?.catch(() => {});
    await this.teardown();
  }

  private async teardown(): Promise<void> {
    this.running = false;
    for (const u of this.units.values()) for (const t of u.tasks) t.cancel();
    this.units.clear();
    // Leaving revokes the lease: the units go to the others at once rather than after the session timeout.
    await this.coord?.close().catch(() => {});
    for (const r of this.readers) r.close();
    this.store?.close();
    for (const s of this.sinkServers.values()) s.disconnect();
    this.sinkServers.clear();
  }

  // ---- membership and ownership ----------------------------------------------------------------

  private onMembership(): void {
    const coord = this.coord;
    if (!coord) return;
    const now = new Set(coord.members().map((m) => m.id));
    for (const id of now) if (!this.knownMembers.has(id)) this.emit({ kind: "joined", instanceId: id, message: `instance ${id} joined` });
    for (const id of this.knownMembers) if (!now.has(id)) this.emit({ kind: "left", instanceId: id, message: `instance ${id} left (or its session expired)` });
    this.knownMembers = now;
    this.reconcile();
    this.wakeLoop?.();
  }

  private onTrouble(e: Error): void {
    if (this.troubled) return;
    this.troubled = true;
    this.emit({ kind: "coordinator-unreachable", message: `coordinator ${this.coordinator} unreachable (${e.message}); retrying, the partitions keep running under their epochs` });
    const check = async (): Promise<void> => {
      while (this.running && this.troubled) {
        await new Promise((r) => setTimeout(r, 500));
        try {
          await this.coord?.readMeta();
          this.troubled = false;
          this.emit({ kind: "coordinator-back", message: `coordinator ${this.coordinator} reachable again` });
          this.reconcile();
        } catch {
          /* still away */
        }
      }
    };
    void check();
  }

  private async onSessionLost(e: Error): Promise<void> {
    if (!this.running || this.sessionLost) return;
    this.sessionLost = true;
    const lost = [...this.units.keys()];
    for (const u of this.units.values()) for (const t of u.tasks) t.cancel();
    this.units.clear();
    const err = new GroupSessionExpiredError(
      `instance ${this.instanceId} lost its session with the coordinator (${e.message}): it was paused or cut off for longer than ` +
        `the session timeout, so its partitions${lost.length > 0 ? ` (${lost.join(", ")})` : ""} went to other instances, and its writes under the old epochs are refused` +
        (this.options.rejoin === false ? "; restart it to join again" : "; it joins again as a new member"),
    );
    this.emit({ kind: "session-expired", instanceId: this.instanceId, message: err.message });
    if (this.options.rejoin === false) {
      this.hooks.reportError(err);
      void this.ssc.stop();
      return;
    }
    for (let attempt = 0; this.running; attempt++) {
      try {
        await this.coord!.rejoin();
        this.sessionLost = false;
        this.reconcile();
        this.wakeLoop?.();
        return;
      } catch {
        await new Promise((r) => setTimeout(r, Math.min(2000, 100 * 2 ** attempt)));
      }
    }
  }

  private reconcile(): void {
    const coord = this.coord;
    const plan = this.plan;
    if (!coord || !plan || !this.running || this.sessionLost || this.settling) return;
    const ids = coord.members().map((m) => m.id);
    if (!ids.includes(this.instanceId)) return;
    const mine = new Set(assignUnits(plan.units, ids).get(this.instanceId) ?? []);
    const owners = coord.owners();
    for (const [u, run] of this.units) {
      const o = owners.get(u);
      if (!o || o.instanceId !== this.instanceId || o.epoch !== run.epoch) {
        this.dropUnit(u, "lost", `unit ${u}: its ownership key (epoch ${run.epoch}) is gone from the coordinator; stopped it`);
      } else if (!mine.has(u) && !run.releasing) void this.releaseUnit(u);
    }
    for (const u of mine) {
      if (!this.units.has(u) && !this.claiming.has(u) && !owners.has(u)) void this.claimUnit(u);
    }
  }

  private sinkServer(connection: RedisConnectionOptions): ScriptRedis {
    const key = connectionKey(connection);
    let s = this.sinkServers.get(key);
    if (!s) {
      s = GroupStore.forServer(connection);
      this.sinkServers.set(key, s);
    }
    return s;
  }

  private environment(): TaskEnvironment {
    return {
      group: this.name,
      instanceId: this.instanceId,
      plan: this.plan!,
      store: this.store!,
      readers: this.readers,
      zeroTime: this.meta!.zeroTime,
      batchDuration: this.batchDuration,
      checkpointInterval: this.options.checkpointInterval ?? Math.max(1000, this.batchDuration),
      sparkContext: this.ssc.sc,
      reportError: (e) => this.hooks.reportError(e),
      sinkServer: (c) => this.sinkServer(c),
    };
  }

  private async claimUnit(u: number): Promise<void> {
    const coord = this.coord!;
    const plan = this.plan!;
    this.claiming.add(u);
    let epoch: number | undefined;
    try {
      epoch = await coord.claim(u);
      if (epoch === undefined || !this.running) return;
      // The fence first: from here on, any write under an older epoch (a paused former owner) is refused.
      await this.store!.acquire(u, epoch);
      for (const conn of this.sinkConnections()) await this.store!.acquireOn(this.sinkServer(conn), u, epoch);
      const env = this.environment();
      const tasks: GroupTask[] = [];
      for (const sub of plan.subs) if (u < sub.partitions) tasks.push(await GroupTask.open(env, u, sub.id, u, epoch));
      if (!this.running || this.sessionLost) return;
      this.units.set(u, { unit: u, epoch, tasks, releasing: false });
      this.loopTiming.lastClaimAt = Date.now();
      this.emit({ kind: "assigned", instanceId: this.instanceId, unit: u, epoch, message: `unit ${u} taken by ${this.instanceId} under epoch ${epoch}, resuming at batch ${Math.min(...tasks.map((t) => t.progress))}` });
      this.wakeLoop?.();
    } catch (e) {
      if (e instanceof GroupFencedError) {
        this.emit({ kind: "fenced", instanceId: this.instanceId, unit: u, epoch: e.epoch, message: e.message });
      } else if (this.running) {
        this.emit({ kind: "lost", instanceId: this.instanceId, unit: u, message: `unit ${u}: could not take it (${errorMessage(e)}); will retry` });
      }
      if (epoch !== undefined) await coord.release(u, epoch).catch(() => {});
      if (this.running) setTimeout(() => this.reconcile(), 500);
    } finally {
      this.claiming.delete(u);
      // The group may have changed while this claim was under way.
      if (this.running) this.reconcile();
    }
  }

  /** Servers the pipeline's partitioned sinks write to (each gets the unit's fence too). */
  private sinkConnections(): RedisConnectionOptions[] {
    const out = new Map<string, RedisConnectionOptions>();
    for (const o of this.plan!.outputs) if (o.sinkConnection) out.set(connectionKey(o.sinkConnection), o.sinkConnection);
    return [...out.values()];
  }

  private async releaseUnit(u: number): Promise<void> {
    const run = this.units.get(u);
    if (!run || run.releasing) return;
    run.releasing = true;
    for (const t of run.tasks) t.cancel();
    await Promise.all(run.tasks.map((t) => this.inFlight.get(t)?.catch(() => {})));
    this.units.delete(u);
    this.forget(run);
    await this.coord?.release(u, run.epoch).catch(() => {});
    this.emit({ kind: "released", instanceId: this.instanceId, unit: u, epoch: run.epoch, message: `unit ${u} released by ${this.instanceId} (the group changed)` });
    this.reconcile();
  }

  private dropUnit(u: number, kind: "lost" | "fenced", message: string): void {
    const run = this.units.get(u);
    if (!run) return;
    for (const t of run.tasks) t.cancel();
    this.units.delete(u);
    this.forget(run);
    this.emit({ kind, instanceId: this.instanceId, unit: u, epoch: run.epoch, message });
    // Fenced while etcd still lists us: a newer epoch exists that we never saw. Give the claim up, so the unit
    // is claimed again (by whoever the assignment says) under an epoch newer than the fence.
    const release = kind === "fenced" ? this.coord?.release(u, run.epoch).catch(() => {}) : undefined;
    void Promise.resolve(release).then(() => setTimeout(() => this.reconcile(), 200));
  }

  private forget(run: OwnedUnit): void {
    for (const t of run.tasks) t.outputRDDs.clear();
  }

  // ---- the batch loop --------------------------------------------------------------------------

  private liveTasks(): GroupTask[] {
    const out: GroupTask[] = [];
    for (const u of this.units.values()) if (!u.releasing) for (const t of u.tasks) if (!t.isCancelled) out.push(t);
    return out;
  }

  private async run(): Promise<void> {
    const failures = new Map<GroupTask, number>();
    while (this.running) {
      let progressed = false;
      const tasks = this.liveTasks();
      // Every stage at once: a reduce-side task runs a batch whose map-side entries are all in while map-side tasks
      // run later batches, so neither waits on the other's round trips (a batch the map side commits in this
      // round is read by the reduce side in the next, which starts at once since this one made progress).
      const timing = this.loopTiming;
      timing.rounds++;
      const t0 = Date.now();
      const results = await Promise.all(tasks.map((t) => this.advance(t, failures)));
      timing.roundsMs += Date.now() - t0;
      if (results.some((r) => r)) progressed = true;
      const t1 = Date.now();
      try {
        await this.fireReady();
      } catch (e) {
        this.hooks.reportError(e);
      }
      timing.fireMs += Date.now() - t1;
      if (progressed) this.pollMs = 1;
      else {
        const t2 = Date.now();
        await this.idle();
        timing.idleMs += Date.now() - t2;
        timing.idles++;
      }
    }
  }

  /** Waiting for another instance's commit: poll soon, then back off (reset once a batch runs). */
  private pollMs = 1;

  /** Runs a task's due batches, for up to ~50 ms (catching up), or until its input is not there yet. */
  private async advance(t: GroupTask, failures: Map<GroupTask, number>): Promise<boolean> {
    const b = this.batchDuration;
    const started = Date.now();
    let progressed = false;
    while (this.running && !t.isCancelled && t.progress + b <= Date.now() && Date.now() - started < 50) {
      const next = t.progress + b;
      const done = this.stepTask(t, next);
      this.inFlight.set(t, done);
      try {
        if (!(await done)) break;
        progressed = true;
        failures.delete(t);
      } catch (e) {
        if (e instanceof GroupFencedError) {
          this.dropUnit(t.unit, "fenced", e.message);
        } else if (!t.isCancelled) {
          const n = (failures.get(t) ?? 0) + 1;
          failures.set(t, n);
          if (n === 1) this.emit({ kind: "lost", instanceId: this.instanceId, unit: t.unit, message: `unit ${t.unit}: batch ${next} failed (${errorMessage(e)}); retrying` });
          await new Promise((r) => setTimeout(r, Math.min(1000, 50 * n)));
        }
        break;
      } finally {
        this.inFlight.delete(t);
      }
    }
    return progressed;
  }

  private stepTask(t: GroupTask, time: number): Promise<boolean> {
    return t.step(time);
  }

  private idle(): Promise<void> {
    const b = this.batchDuration;
    let next = Infinity;
    for (const t of this.liveTasks()) next = Math.min(next, t.progress + b);
    const untilDue = next === Infinity ? 200 : next - Date.now();
    // A due batch whose input is not there yet (another instance's commit, or the log's clock): poll at 1, 2,
    // 4, ... ms, up to a fifth of a batch (at most 100 ms), so a short wait costs little and a long one little load.
    this.pollMs = Math.min(this.pollMs * 2, Math.min(100, Math.max(5, Math.floor(b / 5))));
    const ms = Math.max(1, Math.min(untilDue > 0 ? untilDue : this.pollMs, 200));
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.wakeLoop = undefined;
        resolve();
      }, ms);
      this.wakeLoop = () => {
        clearTimeout(timer);
        this.wakeLoop = undefined;
        resolve();
      };
    });
  }

  /** Runs this instance's outputs for every batch all its tasks have completed, in order. */
  private async fireReady(): Promise<void> {
    const tasks = this.liveTasks();
    if (tasks.length === 0) {
      // Owning nothing (a stand-by): when units come, outputs start at their batches, not where they stopped.
      this.lastFired = undefined;
      return;
    }
    const frontier = Math.min(...tasks.map((t) => t.progress));
    if (this.lastFired === undefined) this.lastFired = frontier;
    const b = this.batchDuration;
    for (let time = this.lastFired + b; time <= frontier && this.running; time += b) {
      await this.fire(time, tasks);
      this.lastFired = time;
    }
  }

  private async fire(time: number, tasks: GroupTask[]): Promise<void> {
    const ssc = this.ssc;
    const plan = this.plan!;
    let numRecords = 0;
    for (const t of tasks) {
      numRecords += t.records.get(time) ?? 0;
      t.records.delete(time);
    }
    const info: BatchInfo = { batchTime: time, numRecords, submissionTime: Date.now(), streamIdToNumRecords: {}, outputOperationInfos: {} };
    ssc.notifyListeners("onBatchSubmitted", { batchInfo: { ...info } });
    info.processingStartTime = Date.now();
    info.schedulingDelay = 0;
    ssc.notifyListeners("onBatchStarted", { batchInfo: { ...info } });
    // The union of this instance's partitions, for each stream an output reads.
    const unions = new Map<AnyStream, RDD<unknown>[]>();
    for (const t of tasks) {
      const got = t.outputRDDs.get(time);
      t.outputRDDs.delete(time);
      if (!got) continue;
      for (const [s, rdd] of got) {
        const list = unions.get(s) ?? [];
        list.push(rdd);
        unions.set(s, list);
      }
    }
    for (const [s, rdds] of unions) s.restoreRDD(time, ssc.sc.union(rdds));
    const live = new Set(ssc.graph.outputStreams());
    let id = 0;
    for (const o of plan.outputs) {
      const opId = id++;
      if (o.perTask || !live.has(o.output)) continue;
      if (!unions.has(o.parent)) o.parent.restoreRDD(time, ssc.sc.emptyRDD());
      const op: OutputOperationInfo = { batchTime: time, id: opId, name: o.output.kind, description: `${o.output.kind} of ${o.parent.name}`, startTime: Date.now() };
      ssc.notifyListeners("onOutputOperationStarted", { outputOperationInfo: { ...op } });
      try {
        const job = o.output.generateJob(time);
        if (job) await job(() => !this.running);
      } catch (e) {
        op.failureReason = errorMessage(e);
        info.failureReason ??= op.failureReason;
        this.hooks.reportError(e);
      }
      op.endTime = Date.now();
      op.duration = op.endTime - op.startTime!;
      (info.outputOperationInfos as Record<number, OutputOperationInfo>)[opId] = op;
      ssc.notifyListeners("onOutputOperationCompleted", { outputOperationInfo: { ...op } });
    }
    info.processingEndTime = Date.now();
    info.processingDelay = info.processingEndTime - info.processingStartTime;
    info.totalDelay = info.processingDelay;
    ssc.notifyListeners("onBatchCompleted", { batchInfo: { ...info } });
    ssc.graph.batchCompleted(time);
  }
}

/** Reads the whole group's status from the coordinator and the store (shared by members and monitors). */
export async function readGroupStatus(args: {
  name: string;
  coordinator: string;
  coord: EtcdCoordinator;
  store: GroupStore;
  readers: LogReader[];
  meta: GroupMeta;
  events: GroupEvent[];
}): Promise<GroupStatus> {
  const { coord, store, readers, meta } = args;
  const members = coord.members();
  const owners = coord.owners();
  const byMember = new Map<string, number[]>();
  for (const o of owners.values()) byMember.set(o.instanceId, [...(byMember.get(o.instanceId) ?? []), o.unit].sort((a, b) => a - b));
  const keys: { stage: number; partition: number; key: string }[] = [];
  meta.stages.forEach((n, stage) => {
    for (let p = 0; p < n; p++) keys.push({ stage, partition: p, key: store.keys.checkpoint(stage, p) });
  });
  const marks = await store.progressMarks(keys.map((k) => k.key));
  const partitions: GroupStatus["partitions"] = [];
  let logFrontier: number | undefined;
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i]!;
    const owner = owners.get(k.partition);
    const progress = marks[i];
    const entry: GroupStatus["partitions"][number] = {
      stage: k.stage,
      partition: k.partition,
      id: k.stage === 0 ? (meta.inputs[0]?.partitionIds[k.partition] ?? String(k.partition)) : `repartition ${k.stage}/${k.partition}`,
      owner: owner?.instanceId,
      epoch: owner?.epoch,
      progress,
    };
    if (k.stage === 0) {
      let lag = 0;
      for (const r of readers) lag += (await r.lag(k.partition, progress ?? meta.zeroTime)).records;
      entry.lagRecords = lag;
      if (lag >= LAG_COUNT_LIMIT) entry.lagAtLeast = true;
      if (progress !== undefined) logFrontier = logFrontier === undefined ? progress : Math.max(logFrontier, progress);
    }
    partitions.push(entry);
  }
  for (const p of partitions) {
    if (p.stage !== 0 && logFrontier !== undefined) p.lagBatches = Math.max(0, Math.round((logFrontier - (p.progress ?? meta.zeroTime)) / meta.batchDuration));
  }
  const done = partitions.map((p) => p.progress ?? meta.zeroTime);
  return {
    group: args.name,
    coordinator: args.coordinator,
    batchDuration: meta.batchDuration,
    zeroTime: meta.zeroTime,
    units: meta.units,
    members: members.map((m) => ({ instanceId: m.id, host: m.host, pid: m.pid, joinedAt: m.joinedAt, launchIndex: m.launchIndex, partitions: byMember.get(m.id) ?? [] })),
    partitions,
    completedBatch: done.length > 0 ? Math.min(...done) : undefined,
    events: args.events,
    at: Date.now(),
  };
}
