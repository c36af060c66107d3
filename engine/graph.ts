// DStreamGraph: what a batch is. It knows every stream, the inputs and the outputs (in definition
// order), turns one batch time into that batch's jobs, and forgets RDDs nobody needs any more.

import type { DStream, ForEachDStream } from "./dstream.js";
import { StatefulDStream } from "./dstream.js";
import type { InputDStream } from "./sources/input.js";
import type { RDD } from "./rdd.js";
import type { EventTimeProgress, StreamInputInfo } from "./listener.js";

export interface GeneratedJob {
  /** Position of the output operation in definition order. */
  outputId: number;
  name: string;
  description: string;
  run: (cancelled: () => boolean) => Promise<void>;
}

export class DStreamGraph {
  private readonly streams = new Set<DStream<unknown>>();
  private readonly inputs: InputDStream<unknown>[] = [];
  private readonly outputs: ForEachDStream<unknown>[] = [];
  private readonly names = new Map<string, number>();
  private uidCounter = 0;
  private inputIdCounter = 0;
  private outputIdCounter = 0;
  private readonly outputIds = new WeakMap<ForEachDStream<unknown>, number>();
  /** Batch times are zeroTime + k * slide; set when the context starts. */
  zeroTime?: number;
  /** Time of the latest batch whose jobs have all finished. */
  lastCompletedTime?: number;
  /** Set by ssc.remember(ms): keep every stream's RDDs at least this long. */
  rememberDuration?: number;
  private readonly preparations = new Map<number, (() => Promise<void>)[]>();
  private readonly preparing = new Map<number, Promise<void>>();

  private readonly eventTimeProgress = new Map<number, Record<string, EventTimeProgress>>();

  /** Event-time operators report their progress for batch `time` (it goes into that batch's BatchInfo). */
  reportEventTime(time: number, streamName: string, progress: EventTimeProgress): void {
    let m = this.eventTimeProgress.get(time);
    if (!m) this.eventTimeProgress.set(time, (m = {}));
    m[streamName] = progress;
  }

  /** The progress reported for batch `time`, removed. */
  takeEventTime(time: number): Record<string, EventTimeProgress> | undefined {
    const m = this.eventTimeProgress.get(time);
    this.eventTimeProgress.delete(time);
    for (const t of this.eventTimeProgress.keys()) if (t < time) this.eventTimeProgress.delete(t);
    return m;
  }

  nextUid(): number {
    return this.uidCounter++;
  }

  /** A unique name: the first claimant of `base` gets it as is, later ones get `base#2`, `base#3`, ... */
  claimName(base: string): string {
    const n = (this.names.get(base) ?? 0) + 1;
    this.names.set(base, n);
    return n === 1 ? base : `${base}#${n}`;
  }

  addStream(s: DStream<unknown>): void {
    this.streams.add(s);
  }

  /** Registers an input stream; returns its stream id (0, 1, 2, ... in creation order). */
  addInputStream(s: InputDStream<unknown>): number {
    this.inputs.push(s);
    return this.inputIdCounter++;
  }

  addOutputStream(s: ForEachDStream<unknown>): void {
    this.outputs.push(s);
    this.outputIds.set(s, this.outputIdCounter++);
  }

  removeOutputStream(s: ForEachDStream<unknown>): void {
    const i = this.outputs.indexOf(s);
    if (i >= 0) this.outputs.splice(i, 1);
  }

  inputStreams(): InputDStream<unknown>[] {
    return this.inputs.slice();
  }

  outputStreams(): ForEachDStream<unknown>[] {
    return this.outputs.slice();
  }

  allStreams(): DStream<unknown>[] {
    return [...this.streams];
  }

  /** Streams that keep state across batches (updateStateByKey, mapWithState, incremental windows). */
  statefulStreams(): StatefulDStream<unknown, unknown>[] {
    return [...this.streams].filter((s): s is StatefulDStream<unknown, unknown> => s instanceof StatefulDStream);
  }

  /** Streams by name, for matching checkpointed state to a (possibly changed) pipeline. */
  streamByName(name: string): DStream<unknown> | undefined {
    for (const s of this.streams) if (s.name === name) return s;
    return undefined;
  }

  /** The jobs of batch `time`, one per output operation whose stream has an RDD then, in definition order. */
  generateJobs(time: number): GeneratedJob[] {
    const jobs: GeneratedJob[] = [];
    for (const out of this.outputs) {
      let run: GeneratedJob["run"] | undefined;
      try {
        run = out.generateJob(time);
      } catch (e) {
        // A user function that runs while the batch is defined (transform) fails this output's job.
        run = () => Promise.reject(e);
      }
      if (run) {
        const job = run;
        // Asynchronous steps of this batch (async transforms, SQL) run first, once, in definition order.
        const prepared: GeneratedJob["run"] = async (cancelled) => {
          await this.prepareBatch(time);
          await job(cancelled);
        };
        jobs.push({ outputId: this.outputIds.get(out) ?? -1, name: out.kind, description: `${out.kind} of ${out.parent.name}`, run: prepared });
      }
    }
    return jobs;
  }

  /** Records each input stream brought into batch `time` (inputs no output reads count as 0). */
  inputRecords(time: number): Record<number, number> {
    const counts: Record<number, number> = {};
    for (const input of this.inputs) {
      const rdd = (input as unknown as { generatedRDDs: Map<number, RDD<unknown>> }).generatedRDDs.get(time);
      counts[input.id] = input.reportedRecords(time) ?? rdd?.countIfKnown() ?? 0;
    }
    return counts;
  }

  /** Spark's InputInfoTracker.getInfo: what each input stream brought into batch `time`. */
  inputInfos(time: number): Record<number, StreamInputInfo> {
    const counts = this.inputRecords(time);
    const infos: Record<number, StreamInputInfo> = {};
    for (const input of this.inputs) {
      const info: StreamInputInfo = { inputStreamId: input.id, name: input.name, numRecords: counts[input.id] ?? 0 };
      const details = input.reportedInput(time);
      if (details?.partitions) info.partitions = details.partitions;
      if (details?.metadata) info.metadata = details.metadata;
      infos[input.id] = info;
    }
    return infos;
  }

  /**
   * Registers an asynchronous step of batch `time` (an async transform's function, a SQL query, a
   * refresh of files), run before the batch's first job computes anything, in registration order.
   * A step reports its own failure through the RDD it produces; it must not reject.
   */
  addBatchPreparation(time: number, step: () => Promise<void>): void {
    const steps = this.preparations.get(time);
    if (steps) steps.push(step);
    else this.preparations.set(time, [step]);
  }

  /** Runs batch `time`'s registered steps once; every job of the batch awaits the same run. */
  prepareBatch(time: number): Promise<void> {
    const running = this.preparing.get(time);
    if (running) return running;
    const steps = this.preparations.get(time);
    if (!steps) return Promise.resolve();
    const run = (async () => {
      // Steps may register more steps for the same batch while they run (a refresh before a query).
      for (let i = 0; i < steps.length; i++) {
        try {
          await (steps[i] as () => Promise<void>)();
        } catch {
          // A step's failure is reported by the RDD it fills; nothing else to do here.
        }
      }
    })();
    this.preparing.set(time, run);
    return run;
  }

  batchCompleted(time: number): void {
    for (const t of this.preparations.keys()) if (t <= time) this.preparations.delete(t);
    for (const t of this.preparing.keys()) if (t <= time) this.preparing.delete(t);
    if (this.lastCompletedTime === undefined || time > this.lastCompletedTime) this.lastCompletedTime = time;
    for (const s of this.streams) s.clearMetadata(time);
  }

  /** Restart: forget generated RDDs so windows start again from the new zero time; state streams keep their state. */
  reset(zeroTime: number, clear = true): void {
    this.zeroTime = zeroTime;
    if (clear) for (const s of this.streams) s.clearAll();
    this.preparations.clear();
    this.preparing.clear();
  }
}
