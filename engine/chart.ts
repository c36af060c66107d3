// A chart's model: the rows a stream's chart keeps across batches (append / update / complete) and the
// full Vega-Lite spec completed from the user's partial one. The notebook renders it to SVG
// (kernel/charts.ts); the dashboard sends it to a browser that draws it.

import type { ChartMode, ChartOptions, ChartRow } from "./presenter.js";

/** A Vega-Lite spec as plain JSON (vega-lite's own TopLevelSpec type is too strict for partial user specs). */
export type VegaLiteSpec = Record<string, unknown>;

export const VEGA_LITE_SCHEMA = "https://vega.github.io/schema/vega-lite/v5.json";
export const DEFAULT_MAX_ROWS = 1000;
const DEFAULT_WIDTH = 400;
const DEFAULT_HEIGHT = 200;

export class ChartOptionsError extends Error {
  override name = "ChartOptionsError";
}

type Encoding = Record<string, Record<string, unknown> | undefined>;

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Times below this are a manual clock's small numbers (0, 1000, ...), not epoch milliseconds. */
const EPOCH_THRESHOLD = 1e11;

/**
 * One live chart: feed it batches, ask it for the current spec or MIME bundle.
 * Row bookkeeping is O(rows in the batch) per batch; the spec is built on demand.
 */
export class ChartModel {
  readonly mode: ChartMode;
  readonly maxRows: number;
  readonly title: string | undefined;
  private readonly userSpec: VegaLiteSpec;
  /** append: oldest first; complete: the latest batch. */
  private list: ChartRow[] = [];
  /** update: latest row per key, least recently updated first. */
  private byKey = new Map<string, ChartRow>();
  private latestTime: number | undefined;
  private batches = 0;

  constructor(spec: VegaLiteSpec = {}, options: ChartOptions = {}) {
    if (!isRecord(spec)) throw new ChartOptionsError("chart(spec): spec must be a Vega-Lite object such as { mark: \"bar\", encoding: {...} }");
    const mode = options.mode ?? "append";
    if (mode !== "append" && mode !== "update" && mode !== "complete") {
      throw new ChartOptionsError(`chart(): mode must be "append", "update" or "complete", not ${JSON.stringify(mode)}`);
    }
    const maxRows = options.maxRows ?? DEFAULT_MAX_ROWS;
    if (!Number.isInteger(maxRows) || maxRows < 1) {
      throw new ChartOptionsError(`chart(): maxRows must be a positive integer, not ${String(maxRows)}`);
    }
    this.userSpec = spec;
    this.mode = mode;
    this.maxRows = maxRows;
    this.title = options.title ?? (typeof spec.title === "string" ? spec.title : undefined);
  }

  /** Adds one batch's rows. Rows without `time` get the batch time. */
  batch(time: number, rows: readonly ChartRow[]): void {
    this.batches++;
    this.latestTime = time;
    const stamped = rows.map((r) => (typeof r.time === "number" ? r : { ...r, time }));
    switch (this.mode) {
      case "append": {
        for (const r of stamped) this.list.push(r);
        const excess = this.list.length - this.maxRows;
        if (excess > 0) this.list.splice(0, excess);
        break;
      }
      case "update": {
        for (const r of stamped) {
          const k = rowKey(r);
          // delete + set moves the key to the most recent end, so eviction drops the stalest key
          this.byKey.delete(k);
          this.byKey.set(k, r);
        }
        while (this.byKey.size > this.maxRows) {
          const first = this.byKey.keys().next().value as string;
          this.byKey.delete(first);
        }
        break;
      }
      case "complete":
        this.list = stamped.length > this.maxRows ? stamped.slice(stamped.length - this.maxRows) : stamped;
        break;
    }
  }

  /** The rows the chart currently shows. */
  rows(): ChartRow[] {
    return this.mode === "update" ? [...this.byKey.values()] : [...this.list];
  }

  get batchCount(): number {
    return this.batches;
  }

  /** The full Vega-Lite spec with the current rows inline. */
  spec(): VegaLiteSpec {
    const rows = this.rows();
    const user = this.userSpec;
    const hasKey = rows.some((r) => "key" in r);
    const hasValue = rows.some((r) => "value" in r);
    const encoding: Encoding = isRecord(user.encoding) ? { ...(user.encoding as Encoding) } : {};
    const layered = Array.isArray(user.layer) || isRecord(user.spec) || Array.isArray(user.concat) ||
      Array.isArray(user.hconcat) || Array.isArray(user.vconcat);

    const out: VegaLiteSpec = { $schema: VEGA_LITE_SCHEMA };
    if (this.title !== undefined) out.title = this.title;
    if (!layered) {
      out.width = DEFAULT_WIDTH;
      out.height = DEFAULT_HEIGHT;
    }
    Object.assign(out, user);
    if (this.title !== undefined) out.title = this.title;
    out.$schema = VEGA_LITE_SCHEMA;

    if (!layered) {
      if (out.mark === undefined) out.mark = this.mode === "append" ? "line" : "bar";
      if (this.mode === "append") {
        // A stream over time: x is the batch time unless the user chose another field.
        const x = encoding.x;
        if (x === undefined) {
          encoding.x = this.timeAxis(rows, {});
        } else if (x.field === "time") {
          encoding.x = this.timeAxis(rows, x);
        }
        if (encoding.y === undefined && hasValue) encoding.y = { field: "value", type: "quantitative" };
        if (encoding.color === undefined && hasKey && encoding.x?.field !== "key") {
          encoding.color = { field: "key", type: "nominal" };
        }
      } else {
        if (encoding.x === undefined && encoding.y === undefined) {
          if (hasKey) encoding.x = { field: "key", type: "nominal" }; // sorted by key: bars keep their places
          if (hasValue) encoding.y = { field: "value", type: "quantitative" };
        }
      }
      out.encoding = encoding;
    }
    out.data = { values: rows };
    return out;
  }

  private timeAxis(rows: readonly ChartRow[], userX: Record<string, unknown>): Record<string, unknown> {
    const latest = this.latestTime ?? rows[rows.length - 1]?.time ?? 0;
    const epoch = latest >= EPOCH_THRESHOLD;
    // No explicit domain: the scale spans exactly the rows kept, so the axis slides as old rows drop out,
    // and the spec's shape stays the same from batch to batch (which lets renderers reuse a compiled view).
    return {
      field: "time",
      type: epoch ? "temporal" : "quantitative",
      title: "time",
      scale: epoch ? { nice: false } : { nice: false, zero: false },
      // Wall-clock labels: vega's default multi-format shows sub-second batches as ".500".
      ...(epoch ? { axis: { format: "%H:%M:%S", labelAngle: 0 } } : {}),
      ...userX,
    };
  }

  /** A short human summary for text/plain: title, mark, row count, the latest values. */
  summary(): string {
    const rows = this.rows();
    const mark = this.userSpec.mark ?? (this.mode === "append" ? "line" : "bar");
    const markName = typeof mark === "string" ? mark : isRecord(mark) && typeof mark.type === "string" ? mark.type : "layered";
    const head = `${this.title !== undefined ? `${this.title}: ` : ""}${markName} chart (${this.mode}), ${rows.length} row${rows.length === 1 ? "" : "s"}`;
    if (this.latestTime === undefined) return `${head}, no batch yet`;
    const latest = this.mode === "append" ? rows.filter((r) => r.time === this.latestTime) : rows;
    const shown = latest.slice(-8).map(describeRow);
    const more = latest.length > shown.length ? `, … ${latest.length - shown.length} more` : "";
    const when = this.latestTime >= EPOCH_THRESHOLD ? new Date(this.latestTime).toISOString() : String(this.latestTime);
    return `${head}, time ${when}${shown.length > 0 ? `: ${shown.join(", ")}${more}` : ""}`;
  }
}

function rowKey(r: ChartRow): string {
  if ("key" in r) return "k:" + stableJson(r.key);
  const { time: _time, ...rest } = r;
  return "r:" + stableJson(rest);
}

function stableJson(v: unknown): string {
  if (typeof v !== "object" || v === null) return JSON.stringify(v) ?? String(v);
  if (Array.isArray(v)) return "[" + v.map(stableJson).join(",") + "]";
  const o = v as Record<string, unknown>;
  return "{" + Object.keys(o).sort().map((k) => JSON.stringify(k) + ":" + stableJson(o[k])).join(",") + "}";
}

function describeRow(r: ChartRow): string {
  if ("key" in r && "value" in r) return `${fmt(r.key)}=${fmt(r.value)}`;
  if ("value" in r) return fmt(r.value);
  const { time: _time, ...rest } = r;
  return Object.entries(rest).map(([k, v]) => `${k}=${fmt(v)}`).join(" ");
}

function fmt(v: unknown): string {
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toPrecision(4);
  if (typeof v === "string") return v.length > 24 ? v.slice(0, 23) + "…" : v;
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 24 ? s.slice(0, 23) + "…" : s;
}
