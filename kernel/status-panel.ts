// ssc.ui(): Spark's Streaming UI as a live notebook display. A streaming listener collects each batch's
// input rate, processing time and scheduling delay; two displays show them as Vega-Lite charts and a table.
import type { AccumulatorInfo, BatchInfo, ReceiverInfo, StreamingListener } from "../engine/index.js";
import { currentCell } from "./cell-context.js";
import { chartBundle, renderSvg } from "./charts.js";
import type { MimeBundle, OutputSink } from "./interpreter.js";
import { LiveDisplay } from "./notebook-display.js";
import { currentRun } from "./notebook-presenter.js";

/** What the panel needs of a StreamingContext (structural, so the kernel depends only on the engine's public face). */
export interface MonitoredContext {
  readonly batchDuration: number;
  readonly state: string;
  addStreamingListener(listener: StreamingListener): void;
  removeStreamingListener?(listener: StreamingListener): void;
  /** The SparkContext, whose named accumulators the panel lists. */
  readonly sc?: { accumulatorInfos?(): AccumulatorInfo[] };
}

export interface StatusPanelOptions {
  /** Batches kept in the charts (Spark's UI keeps 1000; a notebook chart reads better with fewer). */
  maxBatches?: number;
  /** Minimum spacing of the panel's updates (default 250 ms). */
  minIntervalMs?: number;
}

export class StatusPanelOutsideCellError extends Error {
  override name = "StatusPanelOutsideCellError";
  constructor() {
    super("ssc.ui() must be called from a cell: the panel is a display under that cell");
  }
}

interface BatchRow {
  time: number;
  inputRate: number;
  records: number;
  processingMs: number;
  schedulingDelayMs: number;
  totalDelayMs: number;
  failed: boolean;
}

/** The numbers behind the panel; readable from a cell (`panel.summary()`). */
export interface StatusSummary {
  state: string;
  batchIntervalMs: number;
  completedBatches: number;
  failedBatches: number;
  totalRecords: number;
  avgInputRate: number;
  avgProcessingMs: number;
  avgSchedulingDelayMs: number;
  lastBatchTime?: number;
  receivers: { name: string; streamId: number; active: boolean; lastError?: string }[];
  /** Named accumulators (sc.longAccumulator(name), ...) and their values now. */
  accumulators: AccumulatorInfo[];
  /** Event-time operators: the latest watermark and the late records dropped so far, by stream name. */
  eventTime: { stream: string; watermark?: number; lateRecordsDropped: number; windowRows: number }[];
}

export class StatusPanel {
  private readonly rows: BatchRow[] = [];
  private readonly receivers = new Map<number, ReceiverInfo>();
  private readonly eventTime = new Map<string, { watermark?: number; lateRecordsDropped: number; windowRows: number }>();
  private completed = 0;
  private failed = 0;
  private totalRecords = 0;
  private totalProcessing = 0;
  private totalScheduling = 0;
  private readonly maxBatches: number;
  private readonly chart: LiveDisplay;
  private readonly table: LiveDisplay;
  private readonly listener: StreamingListener;
  private closed = false;

  constructor(private readonly ctx: MonitoredContext, sink: OutputSink, options: StatusPanelOptions = {}) {
    this.maxBatches = options.maxBatches ?? 120;
    const interval = options.minIntervalMs ?? 250;
    this.chart = new LiveDisplay(sink, chartBundle(this.spec(), undefined, "Streaming statistics: no batch yet"), interval);
    this.table = new LiveDisplay(sink, this.tableBundle(), interval);
    this.chart.update(() => this.chartBundleNow());
    const refresh = (): void => {
      if (this.closed) return;
      this.chart.update(() => this.chartBundleNow());
      this.table.update(() => this.tableBundle());
    };
    this.listener = {
      onBatchCompleted: ({ batchInfo }) => {
        this.record(batchInfo);
        refresh();
      },
      onReceiverStarted: ({ receiverInfo }) => {
        this.receivers.set(receiverInfo.streamId, receiverInfo);
        refresh();
      },
      onReceiverError: ({ receiverInfo }) => {
        this.receivers.set(receiverInfo.streamId, receiverInfo);
        refresh();
      },
      onReceiverStopped: ({ receiverInfo }) => {
        this.receivers.set(receiverInfo.streamId, { ...receiverInfo, active: false });
        refresh();
      },
      onStreamingStarted: refresh,
      onStreamingStopped: refresh,
    };
    ctx.addStreamingListener(this.listener);
  }

  /** Opens a panel under the current cell; a re-run of that cell closes it. */
  static open(ctx: MonitoredContext, options?: StatusPanelOptions): StatusPanel {
    const cell = currentCell();
    if (cell === undefined) throw new StatusPanelOutsideCellError();
    const panel = new StatusPanel(ctx, cell.sink, options);
    const run = currentRun();
    run?.addDisplay(panel.chart);
    run?.addDisplay(panel.table);
    run?.addDisposer(() => panel.close());
    return panel;
  }

  private record(b: BatchInfo): void {
    const failed = b.failureReason !== undefined;
    const processingMs = b.processingDelay ?? 0;
    const schedulingDelayMs = b.schedulingDelay ?? 0;
    this.completed++;
    if (failed) this.failed++;
    this.totalRecords += b.numRecords;
    this.totalProcessing += processingMs;
    this.totalScheduling += schedulingDelayMs;
    for (const [stream, p] of Object.entries(b.eventTime ?? {})) {
      const prev = this.eventTime.get(stream);
      this.eventTime.set(stream, {
        watermark: p.watermark,
        lateRecordsDropped: (prev?.lateRecordsDropped ?? 0) + p.numRowsDroppedByWatermark,
        windowRows: p.numRowsTotal,
      });
    }
    this.rows.push({
      time: b.batchTime,
      inputRate: b.numRecords / (this.ctx.batchDuration / 1000),
      records: b.numRecords,
      processingMs,
      schedulingDelayMs,
      totalDelayMs: b.totalDelay ?? processingMs + schedulingDelayMs,
      failed,
    });
    if (this.rows.length > this.maxBatches) this.rows.splice(0, this.rows.length - this.maxBatches);
  }

  summary(): StatusSummary {
    const n = this.completed;
    const seconds = (n * this.ctx.batchDuration) / 1000;
    const last = this.rows[this.rows.length - 1];
    return {
      state: this.ctx.state,
      batchIntervalMs: this.ctx.batchDuration,
      completedBatches: n,
      failedBatches: this.failed,
      totalRecords: this.totalRecords,
      avgInputRate: seconds > 0 ? this.totalRecords / seconds : 0,
      avgProcessingMs: n > 0 ? this.totalProcessing / n : 0,
      avgSchedulingDelayMs: n > 0 ? this.totalScheduling / n : 0,
      lastBatchTime: last?.time,
      receivers: [...this.receivers.values()].map((r) => ({
        name: r.name,
        streamId: r.streamId,
        active: r.active,
        lastError: r.lastErrorMessage,
      })),
      accumulators: this.ctx.sc?.accumulatorInfos?.() ?? [],
      eventTime: [...this.eventTime].map(([stream, e]) => ({ stream, ...e })),
    };
  }

  /** The Vega-Lite spec: three charts over batch time, as in Spark's Streaming tab. */
  spec(): Record<string, unknown> {
    const epoch = this.rows.length > 0 && this.rows[0].time > 1e11;
    const x = epoch
      ? { field: "time", type: "temporal", title: "batch time", axis: { format: "%H:%M:%S", labelAngle: 0 } }
      : { field: "time", type: "quantitative", title: "batch time (ms)" };
    const panel = (field: string, title: string, color: string) => ({
      title,
      width: 420,
      height: 90,
      mark: { type: "line", point: this.rows.length <= 60, color },
      encoding: { x, y: { field, type: "quantitative", title: null } },
    });
    return {
      $schema: "https://vega.github.io/schema/vega-lite/v5.json",
      title: "Streaming statistics",
      data: { values: this.rows },
      vconcat: [
        panel("inputRate", "Input rate (records/s)", "#4c78a8"),
        panel("processingMs", "Processing time (ms)", "#f58518"),
        panel("schedulingDelayMs", "Scheduling delay (ms)", "#e45756"),
      ],
    };
  }

  /** The table as text (text/plain and the panel's chart caption). */
  text(): string {
    const s = this.summary();
    const lines = [
      `Streaming statistics (${s.state}, batch interval ${s.batchIntervalMs} ms)`,
      `batches completed: ${s.completedBatches}${s.failedBatches > 0 ? ` (${s.failedBatches} failed)` : ""}`,
      `records: ${s.totalRecords} (avg ${s.avgInputRate.toFixed(1)} records/s)`,
      `avg processing time: ${s.avgProcessingMs.toFixed(1)} ms, avg scheduling delay: ${s.avgSchedulingDelayMs.toFixed(1)} ms`,
    ];
    for (const r of s.receivers) {
      lines.push(`receiver ${r.streamId} ${r.name}: ${r.active ? "active" : "inactive"}${r.lastError ? ` (last error: ${r.lastError})` : ""}`);
    }
    for (const e of s.eventTime) {
      lines.push(`event time ${e.stream}: watermark ${e.watermark ?? "none yet"}, late records dropped ${e.lateRecordsDropped}, window rows ${e.windowRows}`);
    }
    for (const a of s.accumulators) lines.push(`accumulator ${a.name}: ${a.value}`);
    return lines.join("\n");
  }

  private tableBundle(): MimeBundle {
    const s = this.summary();
    const esc = (v: string) => v.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
    const row = (k: string, v: string) => `<tr><th style="text-align:left">${esc(k)}</th><td style="text-align:right">${esc(v)}</td></tr>`;
    const receivers = s.receivers.length === 0
      ? "<tr><td colspan=\"3\">no receivers</td></tr>"
      : s.receivers
          .map((r) => `<tr><td>${r.streamId}</td><td>${esc(r.name)}</td><td>${r.active ? "active" : "inactive"}${r.lastError ? ` (${esc(r.lastError)})` : ""}</td></tr>`)
          .join("");
    const html =
      `<table><caption>Streaming statistics</caption><tbody>` +
      row("state", s.state) +
      row("batch interval", `${s.batchIntervalMs} ms`) +
      row("completed batches", `${s.completedBatches}${s.failedBatches > 0 ? ` (${s.failedBatches} failed)` : ""}`) +
      row("records", String(s.totalRecords)) +
      row("avg input rate", `${s.avgInputRate.toFixed(1)} records/s`) +
      row("avg processing time", `${s.avgProcessingMs.toFixed(1)} ms`) +
      row("avg scheduling delay", `${s.avgSchedulingDelayMs.toFixed(1)} ms`) +
      `</tbody></table><table><caption>Receivers</caption><thead><tr><th>id</th><th>name</th><th>state</th></tr></thead><tbody>${receivers}</tbody></table>` +
      (s.eventTime.length === 0
        ? ""
        : `<table><caption>Event time</caption><thead><tr><th>stream</th><th>watermark</th><th>late records dropped</th><th>window rows</th></tr></thead><tbody>${s.eventTime
            .map((e) => `<tr><td>${esc(e.stream)}</td><td>${e.watermark ?? "none yet"}</td><td>${e.lateRecordsDropped}</td><td>${e.windowRows}</td></tr>`)
            .join("")}</tbody></table>`) +
      (s.accumulators.length === 0
        ? ""
        : `<table><caption>Accumulators</caption><thead><tr><th>name</th><th>value</th></tr></thead><tbody>${s.accumulators
            .map((a) => `<tr><td>${esc(a.name)}</td><td style="text-align:right">${esc(a.value)}</td></tr>`)
            .join("")}</tbody></table>`);
    return { "text/html": html, "text/plain": this.text() };
  }

  private async chartBundleNow(): Promise<MimeBundle> {
    const spec = this.spec();
    const svg = await renderSvg(spec).catch(() => undefined);
    return chartBundle(spec, svg, this.text());
  }

  /** Sends the latest numbers now. */
  async flush(): Promise<void> {
    await Promise.all([this.chart.flush(), this.table.flush()]);
  }

  /** Stops listening and updating. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.ctx.removeStreamingListener?.(this.listener);
    void this.chart.close(true);
    void this.table.close(true);
  }

  /** As a cell's result: one line, since the panel itself is already displayed above. */
  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return `StatusPanel (${this.completed} batches, ${this.closed ? "closed" : "live"})`;
  }
}
