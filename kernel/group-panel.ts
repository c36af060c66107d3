// groupPanel(): a live display of a group (engine/group): its instances, which one owns which partition under
// which epoch, each partition's progress and lag, and the rebalances as they happen. It reads the group's
// status from an instance (ssc.group) or from outside (a GroupMonitor on the group's coordinator).
import { GroupMonitor, type GroupEvent, type GroupStatus } from "../engine/index.js";
import { currentCell } from "./cell-context.js";
import type { MimeBundle, OutputSink } from "./interpreter.js";
import { LiveDisplay } from "./notebook-display.js";
import { currentRun } from "./notebook-presenter.js";

/** What the panel reads: an instance's ssc.group, or a GroupMonitor. */
export interface GroupStatusSource {
  status(): Promise<GroupStatus>;
  onEvent(listener: (e: GroupEvent) => void): () => void;
  events(): GroupEvent[];
}

export interface GroupPanelOptions {
  /** How often the status is read again (default 500 ms); rebalance events refresh it at once. */
  refreshMs?: number;
  /** Rebalance events listed (default 12, newest first). */
  maxEvents?: number;
  /** Opening by name: how long to wait for the group to have started (default 30 000 ms). */
  startTimeout?: number;
}

export class GroupPanelOutsideCellError extends Error {
  override name = "GroupPanelOutsideCellError";
  constructor() {
    super("groupPanel() must be called from a cell: the panel is a display under that cell");
  }
}

const esc = (v: string): string => v.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
const clock = (t: number): string => new Date(t).toISOString().slice(11, 23);

export class GroupPanel {
  private readonly display: LiveDisplay;
  private status: GroupStatus | undefined;
  private error: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly unsubscribe: () => void;
  private closed = false;
  private readonly maxEvents: number;

  constructor(
    private readonly source: GroupStatusSource,
    sink: OutputSink,
    options: GroupPanelOptions = {},
    private readonly onClose?: () => Promise<void>,
  ) {
    this.maxEvents = options.maxEvents ?? 12;
    this.display = new LiveDisplay(sink, { "text/plain": "group: reading status ...", "text/html": "<div>group: reading status ...</div>" }, 250);
    const refresh = (): void => void this.refresh();
    this.unsubscribe = source.onEvent(refresh);
    const every = options.refreshMs ?? 500;
    const tick = (): void => {
      if (this.closed) return;
      refresh();
      this.timer = setTimeout(tick, every);
      this.timer.unref?.();
    };
    tick();
  }

  /** Opens a panel under the current cell for an instance's group (ssc.group) or a group by name and coordinator. */
  static async open(source: GroupStatusSource | { name: string; coordinator: string }, options?: GroupPanelOptions): Promise<GroupPanel> {
    const cell = currentCell();
    if (cell === undefined) throw new GroupPanelOutsideCellError();
    let monitor: GroupMonitor | undefined;
    let from: GroupStatusSource;
    if ("status" in source) from = source;
    else {
      monitor = await GroupMonitor.connect({ name: source.name, coordinator: source.coordinator, timeout: options?.startTimeout ?? 30_000 });
      from = monitor;
    }
    const panel = new GroupPanel(from, cell.sink, options, monitor ? () => monitor!.close() : undefined);
    const run = currentRun();
    run?.addDisplay(panel.display);
    run?.addDisposer(() => panel.close());
    return panel;
  }

  private async refresh(): Promise<void> {
    if (this.closed) return;
    try {
      this.status = await this.source.status();
      this.error = undefined;
    } catch (e) {
      this.error = (e as Error).message;
    }
    if (!this.closed) this.display.update(() => this.bundle());
  }

  /** The latest status read (undefined before the first). */
  summary(): GroupStatus | undefined {
    return this.status;
  }

  text(): string {
    const s = this.status;
    if (!s) return this.error ? `group: ${this.error}` : "group: reading status ...";
    const lines = [`group ${s.group} (${s.coordinator}): ${s.members.length} instance(s), ${s.units} partition(s), batch ${s.batchDuration} ms`];
    for (const m of s.members) lines.push(`  ${m.instanceId} on ${m.host}: ${m.partitions.length > 0 ? `partitions ${m.partitions.join(", ")}` : "stand-by"}`);
    for (const p of s.partitions) {
      const lag = p.lagRecords !== undefined ? `${p.lagRecords}${p.lagAtLeast ? "+" : ""} records behind` : p.lagBatches !== undefined ? `${p.lagBatches} batch(es) behind` : "";
      lines.push(`  stage ${p.stage} partition ${p.partition} (${p.id}): ${p.owner ?? "unowned"}${p.epoch !== undefined ? ` epoch ${p.epoch}` : ""}, ${lag}`);
    }
    const ev = this.source.events().slice(-this.maxEvents).reverse();
    if (ev.length > 0) lines.push("rebalances:", ...ev.map((e) => `  ${clock(e.time)} ${e.message}`));
    if (this.error) lines.push(`(last read failed: ${this.error})`);
    return lines.join("\n");
  }

  private bundle(): MimeBundle {
    const s = this.status;
    if (!s) return { "text/plain": this.text(), "text/html": `<div>${esc(this.text())}</div>` };
    const members = s.members
      .map((m) => `<tr><td>${esc(m.instanceId)}</td><td>${esc(m.host)}</td><td>${m.partitions.length > 0 ? esc(m.partitions.join(", ")) : "<i>stand-by</i>"}</td></tr>`)
      .join("");
    const parts = s.partitions
      .map((p) => {
        const lag = p.lagRecords !== undefined ? `${p.lagRecords}${p.lagAtLeast ? "+" : ""} records` : p.lagBatches !== undefined ? `${p.lagBatches} batches` : "";
        return `<tr><td>${p.stage}</td><td>${p.partition}</td><td>${esc(p.id)}</td><td>${esc(p.owner ?? "unowned")}</td><td style="text-align:right">${p.epoch ?? ""}</td><td style="text-align:right">${p.progress !== undefined ? clock(p.progress) : ""}</td><td style="text-align:right">${esc(lag)}</td></tr>`;
      })
      .join("");
    const ev = this.source
      .events()
      .slice(-this.maxEvents)
      .reverse()
      .map((e) => `<tr><td>${clock(e.time)}</td><td>${esc(e.kind)}</td><td>${esc(e.message)}</td></tr>`)
      .join("");
    const html =
      `<div><b>group ${esc(s.group)}</b> (${esc(s.coordinator)}): ${s.members.length} instance(s), ${s.units} partition(s), batch ${s.batchDuration} ms` +
      `<table><caption>Instances</caption><thead><tr><th>instance</th><th>host</th><th>partitions</th></tr></thead><tbody>${members}</tbody></table>` +
      `<table><caption>Partitions</caption><thead><tr><th>stage</th><th>partition</th><th>id</th><th>owner</th><th>epoch</th><th>done to</th><th>lag</th></tr></thead><tbody>${parts}</tbody></table>` +
      `<table><caption>Rebalances</caption><tbody>${ev || "<tr><td>none yet</td></tr>"}</tbody></table>` +
      (this.error ? `<div>last read failed: ${esc(this.error)}</div>` : "") +
      `</div>`;
    return { "text/html": html, "text/plain": this.text() };
  }

  /** Sends the latest status now. */
  async flush(): Promise<void> {
    await this.refresh();
    await this.display.flush();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.unsubscribe();
    void this.display.close(true);
    void this.onClose?.();
  }

  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return `GroupPanel (${this.status ? `${this.status.members.length} instances` : "no status yet"}, ${this.closed ? "closed" : "live"})`;
  }
}

/** A live panel of a group under this cell: `await groupPanel(ssc.group)` or `await groupPanel({ name, coordinator })`. */
export function groupPanel(source: GroupStatusSource | { name: string; coordinator: string }, options?: GroupPanelOptions): Promise<GroupPanel> {
  return GroupPanel.open(source, options);
}
