// A display created under a cell and updated later through that cell's IOPub parent, rate-limited:
// updates coalesce, the bundle is only built (SVG rendered) for updates actually sent, never twice at once.
// A display can ask for a last-state rendering (a chart's PNG): sent when its cell settles, when it
// closes, and when its updates pause, so whatever a notebook saves ends with it.
import { randomUUID } from "node:crypto";
import type { MimeBundle, OutputSink } from "./interpreter.js";
import { PromiseResolve } from "./primordials.js";

/** A bundle with its output metadata (an image's display size, say). */
export interface DisplayContent {
  data: MimeBundle;
  metadata: Record<string, unknown>;
}

/**
 * Builds what to send; called only when an update is really sent. `final` asks for the display's
 * last-state rendering (only displays created with `finalAfterIdleMs` are asked).
 */
export type BundleProducer = (final: boolean) => MimeBundle | DisplayContent | Promise<MimeBundle | DisplayContent>;

/** Default spacing between two updates of one display: about 10 per second. */
export const DEFAULT_MIN_INTERVAL_MS = 100;
/**
 * A display spends at most about 1/RENDER_BUDGET_FACTOR of the time producing its updates: one whose
 * SVG takes 40 ms waits 400 ms before the next, so charts never starve the kernel (kernel_info, a
 * stream catching up) however often batches arrive.
 */
export const RENDER_BUDGET_FACTOR = 10;

/** A chart's updates pausing this long count as its last state, which then gets its final rendering. */
export const FINAL_AFTER_IDLE_MS = 2000;

function isDisplayContent(x: MimeBundle | DisplayContent): x is DisplayContent {
  // A MIME bundle's keys are MIME types; a DisplayContent has exactly data and metadata.
  return typeof x.data === "object" && x.data !== null && typeof x.metadata === "object" && Object.keys(x).length === 2;
}

export interface LiveDisplayStats {
  updatesSent: number;
  bytesSent: number;
  /** Time spent in the producer (SVG rendering for charts), summed over sent updates. */
  produceMs: number;
  /** The slowest producer call. */
  produceMsMax: number;
  /** Updates asked for but merged into a later one. */
  coalesced: number;
  /** Last-state renderings sent (a chart's PNG), and the time they took (included in produceMs). */
  finalsSent: number;
  finalMs: number;
}

/** Every live display still referenced, for liveDisplayStats() (benchmarks, diagnostics). */
const registry = new Set<WeakRef<LiveDisplay>>();

/** Totals over the live displays of this process: what the notebook's outputs cost. */
export function liveDisplayStats(): LiveDisplayStats & { displays: number } {
  const total = { updatesSent: 0, bytesSent: 0, produceMs: 0, produceMsMax: 0, coalesced: 0, finalsSent: 0, finalMs: 0, displays: 0 };
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
    total.finalsSent += d.stats.finalsSent;
    total.finalMs += d.stats.finalMs;
  }
  return total;
}

/**
 * Sends the last-state rendering of every display that asks for one and has not had it: after a context
 * stops, its charts will not change again, so their PNG need not wait for the idle timer.
 */
export async function flushFinalRenderings(): Promise<void> {
  const waiting: Promise<void>[] = [];
  for (const ref of registry) {
    const d = ref.deref();
    if (d?.awaitsFinal) waiting.push(d.flush());
  }
  await Promise.all(waiting);
}

export interface LiveDisplayOptions {
  /**
   * Ask the producer for its last-state rendering (final = true) when the display settles or closes, and
   * after its updates pause this long. Off by default: a text display looks the same either way.
   */
  finalAfterIdleMs?: number;
}

export class LiveDisplay {
  readonly displayId = randomUUID();
  readonly stats: LiveDisplayStats = { updatesSent: 0, bytesSent: 0, produceMs: 0, produceMsMax: 0, coalesced: 0, finalsSent: 0, finalMs: 0 };
  private producer: BundleProducer | undefined;
  /** The newest producer sent, kept for the final rendering of the state it shows. */
  private latest: BundleProducer | undefined;
  private finalSent = true;
  private timer: NodeJS.Timeout | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
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
    private readonly options: LiveDisplayOptions = {},
  ) {
    sink.displayData(initial, {}, { display_id: this.displayId });
    registry.add(new WeakRef(this));
  }

  private get wantsFinal(): boolean {
    return this.options.finalAfterIdleMs !== undefined;
  }

  /** It asks for a last-state rendering and has not had one for what it shows. */
  get awaitsFinal(): boolean {
    return this.wantsFinal && !this.closed && (!this.finalSent || this.producer !== undefined);
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

  /**
   * Sends the pending update now (waiting for one in flight first); a display that asks for a last-state
   * rendering gets it, for the pending update or else for the state last sent.
   */
  async flush(): Promise<void> {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    while (this.inFlight !== undefined) await this.inFlight;
    if (this.producer !== undefined) await this.send(this.wantsFinal);
    else if (this.wantsFinal && !this.finalSent && this.latest !== undefined) {
      this.producer = this.latest;
      await this.send(true);
    }
  }

  /** Stops updating; with flush, the pending update goes out first. */
  async close(flush = false): Promise<void> {
    if (flush) await this.flush();
    this.closed = true;
    this.producer = undefined;
    this.latest = undefined;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.idleTimer !== undefined) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
  }

  private schedule(): void {
    if (this.idleTimer !== undefined) {
      clearTimeout(this.idleTimer);
      this.idleTimer = undefined;
    }
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

  /** After the last update, a pause of finalAfterIdleMs sends the final rendering of that state. */
  private armIdle(): void {
    const idleMs = this.options.finalAfterIdleMs;
    if (idleMs === undefined || this.finalSent || this.closed || this.producer !== undefined) return;
    if (this.idleTimer !== undefined) clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => {
      this.idleTimer = undefined;
      if (this.producer !== undefined || this.inFlight !== undefined || this.finalSent || this.latest === undefined) return;
      this.producer = this.latest;
      void this.send(true);
    }, idleMs);
    this.idleTimer.unref();
  }

  private send(final = false): Promise<void> {
    const producer = this.producer;
    if (producer === undefined || this.closed) return PromiseResolve(undefined);
    this.producer = undefined;
    this.latest = producer;
    this.finalSent = final;
    this.lastSentAt = Date.now();
    const run = (async () => {
      const started = performance.now();
      try {
        const produced = await producer(final);
        const took = performance.now() - started;
        // A last state's PNG is rendered once: it does not space live updates. Nor does a display's first
        // update, which pays once for loading the renderer (a chart's: the chart worker and vega).
        if (!final && this.stats.updatesSent > 0) this.lastProduceMs = took;
        this.stats.produceMs += took;
        this.stats.produceMsMax = Math.max(this.stats.produceMsMax, took);
        if (final) {
          this.stats.finalsSent++;
          this.stats.finalMs += took;
        }
        if (this.closed) return;
        const { data, metadata } = isDisplayContent(produced) ? produced : { data: produced, metadata: {} };
        this.sink.updateDisplayData(data, metadata, { display_id: this.displayId });
        this.stats.updatesSent++;
        this.stats.bytesSent += Buffer.byteLength(JSON.stringify(data));
      } catch (err) {
        this.onError(err);
      }
    })();
    this.inFlight = run.finally(() => {
      this.inFlight = undefined;
      if (this.producer !== undefined && !this.closed) this.schedule();
      else this.armIdle();
    });
    return this.inFlight;
  }
}
