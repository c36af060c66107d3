// ssc.ui(): Spark's Streaming UI as a live notebook display. A streaming listener collects each batch's
// input rate, processing time and scheduling delay, and for partitioned logs (Kafka, JetStream, Redis) the
// range each partition gave the batch and its lag behind the log's end; two displays show them as
// Vega-Lite charts and tables, with a verdict on whether the job keeps up; also named accumulators and
// event-time watermarks.
import type { AccumulatorInfo, BatchInfo, PartitionPosition, ReceiverInfo, StreamingListener } from "../engine/index.js";
import { currentCell } from "./cell-context.js";
import { chartBundle, WorkerChartRenderer, type ChartOutput } from "./charts.js";
import type { MimeBundle, OutputSink } from "./interpreter.js";
import { FINAL_AFTER_IDLE_MS, LiveDisplay } from "./notebook-display.js";
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

/** One partition of a partitioned input, as of the latest batch that read it. */
export interface PartitionSummary {
  streamId: number;
  /** The input stream's name (kafka#0, a Redis source's name). */
  stream: string;
  partition: string;
  batchTime: number;
  /** What that batch read: [from, until) for offsets and sequences, (from, until] for Redis IDs. */
  from: PartitionPosition;
  until: PartitionPosition;
  records: number;
  /** Records in the log after `until` when the batch was generated. */
  lag?: number;
}

interface LagRow {
  time: number;
  partition: string;
  lag: number;
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
  /** Per input partition: the latest batch's range and the lag behind the log's end. */
  partitions: PartitionSummary[];
  /** The partitions' lag summed, as of the latest batch (undefined without partitioned inputs). */
  totalLag?: number;
  /**
   * Whether the job keeps up: batches are processed within the batch interval and the lag is not growing
   * (undefined until there are batches to judge by). `verdict` says why in words.
   */
  keepingUp?: boolean;
  verdict: string;
  /** Named accumulators (sc.longAccumulator(name), ...) and their values now. */
  accumulators: AccumulatorInfo[];
  /** Event-time operators: the latest watermark and the late records dropped so far, by stream name. */
  eventTime: { stream: string; watermark?: number; lateRecordsDropped: number; windowRows: number }[];
}

export class StatusPanel {
  private readonly rows: BatchRow[] = [];
  private readonly receivers = new Map<number, ReceiverInfo>();
  private readonly partitions = new Map<string, PartitionSummary>();
  private readonly lagRows: LagRow[] = [];
  /** Total lag after each batch with partitioned input, newest last (for the verdict). */
  private readonly totalLags: { time: number; lag: number; records: number }[] = [];
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
  private readonly renderer = new WorkerChartRenderer();
  private closed = false;

  constructor(private readonly ctx: MonitoredContext, sink: OutputSink, options: StatusPanelOptions = {}) {
    this.maxBatches = options.maxBatches ?? 120;
    const interval = options.minIntervalMs ?? 250;
    this.chart = new LiveDisplay(sink, chartBundle(this.spec(), undefined, "Streaming statistics: no batch yet"), interval, undefined, {
      finalAfterIdleMs: FINAL_AFTER_IDLE_MS,
    });
    this.table = new LiveDisplay(sink, this.tableBundle(), interval);
    const renderChart = (final: boolean) => this.chartOutput(final);
    this.chart.update(renderChart);
    const refresh = (): void => {
      if (this.closed) return;
      this.chart.update(renderChart);
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
    this.recordPartitions(b);
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

  private recordPartitions(b: BatchInfo): void {
    const infos = b.streamIdToInputInfo;
    if (!infos) return;
    let total: number | undefined;
    let records = 0;
    for (const info of Object.values(infos)) {
      if (!info.partitions) continue;
      const stream = info.name ?? `input ${info.inputStreamId}`;
      for (const r of info.partitions) {
        this.partitions.set(`${info.inputStreamId}\u0000${r.partition}`, {
          streamId: info.inputStreamId,
          stream,
          partition: r.partition,
          batchTime: b.batchTime,
          from: r.from,
          until: r.until,
          records: r.count,
          lag: r.lag,
        });
        records += r.count;
        if (r.lag !== undefined) {
          total = (total ?? 0) + r.lag;
          this.lagRows.push({ time: b.batchTime, partition: r.partition, lag: r.lag });
        }
      }
    }
    if (total !== undefined) {
      this.totalLags.push({ time: b.batchTime, lag: total, records });
      if (this.totalLags.length > this.maxBatches) this.totalLags.splice(0, this.totalLags.length - this.maxBatches);
    }
    const oldest = this.rows.length >= this.maxBatches ? this.rows[this.rows.length - this.maxBatches + 1]?.time : undefined;
    if (oldest !== undefined) {
      let drop = 0;
      while (drop < this.lagRows.length && this.lagRows[drop]!.time < oldest) drop++;
      if (drop > 0) this.lagRows.splice(0, drop);
    }
  }

  /**
   * Keeping up: the last batches were processed within the interval, and neither the scheduling delay nor the
   * lag grows over them. A backlog that shrinks (after a restart, say) is "catching up", which keeps up.
   */
  private judge(): { keepingUp?: boolean; verdict: string } {
    const recent = this.rows.slice(-5);
    if (recent.length === 0) return { verdict: "no batch yet" };
    const interval = this.ctx.batchDuration;
    const last = recent[recent.length - 1]!;
    const slow = recent.filter((r) => r.processingMs > interval).length;
    const lags = this.totalLags.slice(-5);
    const lagNow = lags[lags.length - 1];
    const lagFirst = lags[0];
    if (slow > recent.length / 2) {
      return { keepingUp: false, verdict: `falling behind: batches take longer (${last.processingMs} ms) than the ${interval} ms interval` };
    }
    if (recent.length >= 3 && last.schedulingDelayMs > interval && last.schedulingDelayMs > recent[0]!.schedulingDelayMs) {
      return { keepingUp: false, verdict: `falling behind: the scheduling delay grew to ${last.schedulingDelayMs} ms over the last ${recent.length} batches` };
    }
    // Growing lag that a batch's worth of records does not account for: input arrives faster than it is taken.
    if (lagNow !== undefined && lagFirst !== undefined && lags.length >= 3 && lagNow.lag > lagFirst.lag && lagNow.lag > Math.max(lagNow.records, 10)) {
      return { keepingUp: false, verdict: `falling behind: lag grew from ${lagFirst.lag} to ${lagNow.lag} records over the last ${lags.length} batches` };
    }
    const lagText = lagNow !== undefined ? `, lag ${lagNow.lag} records` : "";
    if (last.schedulingDelayMs > interval || (lagNow !== undefined && lagNow.lag > Math.max(lagNow.records, 10))) {
      return { keepingUp: true, verdict: `catching up: scheduling delay ${last.schedulingDelayMs} ms${lagText}, not growing` };
    }
    return { keepingUp: true, verdict: `keeping up: batches take ${last.processingMs} ms of the ${interval} ms interval${lagText}` };
  }

  summary(): StatusSummary {
    const n = this.completed;
    const seconds = (n * this.ctx.batchDuration) / 1000;
    const last = this.rows[this.rows.length - 1];
    const partitions = [...this.partitions.values()].sort((a, b) => a.streamId - b.streamId || a.partition.localeCompare(b.partition, "en", { numeric: true }));
    const lagged = partitions.filter((p) => p.lag !== undefined);
    const judged = this.judge();
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
      partitions,
      totalLag: lagged.length > 0 ? lagged.reduce((a, p) => a + (p.lag ?? 0), 0) : undefined,
      keepingUp: judged.keepingUp,
      verdict: judged.verdict,
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
    const charts: Record<string, unknown>[] = [
      panel("inputRate", "Input rate (records/s)", "#4c78a8"),
      panel("processingMs", "Processing time (ms)", "#f58518"),
      panel("schedulingDelayMs", "Scheduling delay (ms)", "#e45756"),
    ];
    if (this.lagRows.length > 0) {
      // Its own data: one row per partition per batch, a line per partition.
      charts.push({
        title: "Lag behind the log's end (records), per partition",
        width: 420,
        height: 90,
        data: { values: this.lagRows },
        mark: { type: "line", point: this.rows.length <= 60 },
        encoding: { x, y: { field: "lag", type: "quantitative", title: null }, color: { field: "partition", type: "nominal", title: "partition" } },
      });
    }
    return {
      $schema: "https://vega.github.io/schema/vega-lite/v5.json",
      title: "Streaming statistics",
      data: { values: this.rows },
      vconcat: charts,
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
    if (s.partitions.length > 0) {
      lines.push(`${s.verdict}${s.totalLag !== undefined ? ` (total lag ${s.totalLag} records)` : ""}`);
      for (const p of s.partitions) {
        lines.push(`partition ${p.partition} (${p.stream}): batch ${p.batchTime} read ${p.from} to ${p.until} (${p.records} records), lag ${p.lag ?? "unknown"}`);
      }
    } else if (s.keepingUp !== undefined) lines.push(s.verdict);
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
      row("status", s.verdict) +
      `</tbody></table><table><caption>Receivers</caption><thead><tr><th>id</th><th>name</th><th>state</th></tr></thead><tbody>${receivers}</tbody></table>` +
      (s.partitions.length === 0
        ? ""
        : `<table><caption>Input partitions${s.totalLag !== undefined ? ` (total lag ${s.totalLag})` : ""}</caption>` +
          `<thead><tr><th>stream</th><th>partition</th><th>last batch</th><th>read</th><th>records</th><th>lag</th></tr></thead><tbody>` +
          s.partitions
            .map(
              (p) =>
                `<tr><td>${esc(p.stream)}</td><td>${esc(p.partition)}</td><td style="text-align:right">${p.batchTime}</td>` +
                `<td>${esc(String(p.from))} to ${esc(String(p.until))}</td><td style="text-align:right">${p.records}</td>` +
                `<td style="text-align:right">${p.lag ?? "?"}</td></tr>`,
            )
            .join("") +
          `</tbody></table>`) +
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

  /** The charts with their SVG, or for the last state a PNG; the compiled view is reused from update to update. */
  private chartOutput(final: boolean): Promise<ChartOutput> {
    return this.renderer.output(this.spec(), this.text(), final);
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
    void this.chart.close(true).finally(() => this.renderer.dispose());
    void this.table.close(true);
  }

  /** As a cell's result: one line, since the panel itself is already displayed above. */
  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return `StatusPanel (${this.completed} batches, ${this.closed ? "closed" : "live"})`;
  }
}
