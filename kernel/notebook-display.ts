// A display created under a cell and updated later through that cell's IOPub parent, rate-limited:
// updates coalesce, the bundle is only built (SVG rendered) for updates actually sent, never twice at once.
import { randomUUID } from "node:crypto";
import type { MimeBundle, OutputSink } from "./interpreter.js";

/** Builds the bundle to send; called only when an update is really sent. */
export type BundleProducer = () => MimeBundle | Promise<MimeBundle>;

/** Default spacing between two updates of one display: about 10 per second. */
export const DEFAULT_MIN_INTERVAL_MS = 100;
/**
 * A display spends at most about 1/RENDER_BUDGET_FACTOR of the time producing its updates: one whose
 * SVG takes 40 ms waits 400 ms before the next, so charts never starve the kernel (kernel_info, a
 * stream catching up) however often batches arrive.
 */
export const RENDER_BUDGET_FACTOR = 10;

export interface LiveDisplayStats {
  updatesSent: number;
  bytesSent: number;
  /** Time spent in the producer (SVG rendering for charts), summed over sent updates. */
  produceMs: number;
  /** The slowest producer call. */
  produceMsMax: number;
  /** Updates asked for but merged into a later one. */
  coalesced: number;
}

/** Every live display still referenced, for liveDisplayStats() (benchmarks, diagnostics). */
const registry = new Set<WeakRef<LiveDisplay>>();

/** Totals over the live displays of this process: what the notebook's outputs cost. */
export function liveDisplayStats(): LiveDisplayStats & { displays: number } {
  const total = { updatesSent: 0, bytesSent: 0, produceMs: 0, produceMsMax: 0, coalesced: 0, displays: 0 };
  for (const ref of registry) {
    const d = ref.deref();
    if (d === undefined) {
      registry.delete(ref);
      continue;
    }
    total.displays++;
    total.updatesSent += d.stats.updatesSent;
    total.bytesSent += d.stats.bytesSent;
    total.produceMs += d.stats.produceMs;
    total.produceMsMax = Math.max(total.produceMsMax, d.stats.produceMsMax);
    total.coalesced += d.stats.coalesced;
  }
  return total;
}

export class LiveDisplay {
  readonly displayId = randomUUID();
  readonly stats: LiveDisplayStats = { updatesSent: 0, bytesSent: 0, produceMs: 0, produceMsMax: 0, coalesced: 0 };
  private producer: BundleProducer | undefined;
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<void> | undefined;
  private lastSentAt = -Infinity;
  /** How long the latest update took to produce (it spaces the next one). */
  private lastProduceMs = 0;
  private closed = false;

  constructor(
    private readonly sink: OutputSink,
    initial: MimeBundle,
    private readonly minIntervalMs = DEFAULT_MIN_INTERVAL_MS,
    private readonly onError: (err: unknown) => void = () => {},
  ) {
    sink.displayData(initial, {}, { display_id: this.displayId });
    registry.add(new WeakRef(this));
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Asks for an update; the producer runs at most every minIntervalMs, with the newest state. */
  update(producer: BundleProducer): void {
    if (this.closed) return;
    if (this.producer !== undefined) this.stats.coalesced++;
    this.producer = producer;
    this.schedule();
  }

  /** Sends the pending update now (waiting for one in flight first). */
  async flush(): Promise<void> {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    while (this.inFlight !== undefined) await this.inFlight;
    if (this.producer !== undefined) await this.send();
  }

  /** Stops updating; with flush, the pending update goes out first. */
  async close(flush = false): Promise<void> {
    if (flush) await this.flush();
    this.closed = true;
    this.producer = undefined;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule(): void {
    if (this.timer !== undefined || this.inFlight !== undefined) return;
    const spacing = Math.max(this.minIntervalMs, RENDER_BUDGET_FACTOR * this.lastProduceMs);
    const wait = Math.max(0, this.lastSentAt + spacing - Date.now());
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.send();
    }, wait);
    // A pending chart refresh must not keep a plain Node process alive.
    this.timer.unref();
  }

  private send(): Promise<void> {
    const producer = this.producer;
    if (producer === undefined || this.closed) return Promise.resolve();
    this.producer = undefined;
    this.lastSentAt = Date.now();
    const run = (async () => {
      const started = performance.now();
      try {
        const bundle = await producer();
        const took = performance.now() - started;
        this.lastProduceMs = took;
        this.stats.produceMs += took;
        this.stats.produceMsMax = Math.max(this.stats.produceMsMax, took);
        if (this.closed) return;
        this.sink.updateDisplayData(bundle, {}, { display_id: this.displayId });
        this.stats.updatesSent++;
        this.stats.bytesSent += Buffer.byteLength(JSON.stringify(bundle));
      } catch (err) {
        this.onError(err);
      }
    })();
    this.inFlight = run.finally(() => {
      this.inFlight = undefined;
      if (this.producer !== undefined && !this.closed) this.schedule();
    });
    return this.inFlight;
  }
}
