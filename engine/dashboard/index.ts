// A live dashboard outside the notebook: `ssc.dashboard()` or `stream.dashboard()` serves the streams'
// charts as a small web page that redraws as batches complete. It binds 127.0.0.1 unless asked, and every
// request must carry the random token in its URL (as Jupyter's), else it gets 403. The page draws the
// same Vega-Lite specs the notebook shows, with vega and vega-lite served from this package's own copies.
import { randomBytes, timingSafeEqual } from "node:crypto";
import * as fs from "node:fs";
import * as http from "node:http";
import * as path from "node:path";
import type { AddressInfo } from "node:net";
import { ChartModel, type VegaLiteSpec } from "../chart.js";
import { StreamingContext } from "../context.js";
import { DStream, toChartRow } from "../dstream.js";
import { JUPYTER_DISPLAY, type MimeBundle } from "../rdd.js";
import type { ChartOptions } from "../presenter.js";

export interface DashboardOptions {
  /** Port to listen on (default: a free one). */
  port?: number;
  /** Interface to bind (default 127.0.0.1, loopback only); "0.0.0.0" exposes the dashboard to the network. */
  host?: string;
  title?: string;
  /** Minimum spacing of a chart's redraws in ms (default 250). */
  minIntervalMs?: number;
}

declare module "../context.js" {
  interface StreamingContext {
    /** Serves every chart of this context's streams as a live web page; resolves once it listens. */
    dashboard(options?: DashboardOptions): Promise<Dashboard>;
  }
}

declare module "../dstream.js" {
  interface DStream<T> {
    /** Serves this stream's charts (or a default chart of it) as a live web page; resolves once it listens. */
    dashboard(options?: DashboardOptions): Promise<Dashboard>;
  }
}

interface ChartDefinition {
  stream: DStream<unknown>;
  spec: VegaLiteSpec;
  options: ChartOptions;
}

/** Charts defined on each context, recorded as chart() is called, for dashboards started later. */
const definitions = new WeakMap<StreamingContext, ChartDefinition[]>();
/** Dashboards running for each context: a chart defined later joins them. */
const running = new WeakMap<StreamingContext, Set<Dashboard>>();

const originalChart = DStream.prototype.chart;
DStream.prototype.chart = function chart(this: DStream<unknown>, spec: Record<string, unknown>, options: ChartOptions = {}): void {
  originalChart.call(this, spec, options);
  const def = { stream: this, spec, options };
  const list = definitions.get(this.ssc) ?? [];
  list.push(def);
  definitions.set(this.ssc, list);
  for (const d of running.get(this.ssc) ?? []) d.addChart(def, false);
};

StreamingContext.prototype.dashboard = function dashboard(this: StreamingContext, options: DashboardOptions = {}): Promise<Dashboard> {
  return Dashboard.start(this, undefined, options);
};

DStream.prototype.dashboard = function dashboard<T>(this: DStream<T>, options: DashboardOptions = {}): Promise<Dashboard> {
  return Dashboard.start(this.ssc, this as DStream<unknown>, options);
};

interface LiveEntry {
  id: number;
  model: ChartModel;
  title: string;
  pending?: ReturnType<typeof setTimeout>;
  lastSent: number;
}

export class Dashboard {
  readonly token = randomBytes(24).toString("hex");
  private readonly server: http.Server;
  private readonly charts: LiveEntry[] = [];
  private readonly clients = new Set<http.ServerResponse>();
  private closed = false;
  port = 0;

  private constructor(
    readonly ssc: StreamingContext,
    private readonly only: DStream<unknown> | undefined,
    private readonly options: DashboardOptions,
  ) {
    this.server = http.createServer((req, res) => this.handle(req, res));
  }

  /** Internal: ssc.dashboard() and stream.dashboard(). */
  static async start(ssc: StreamingContext, only: DStream<unknown> | undefined, options: DashboardOptions): Promise<Dashboard> {
    const d = new Dashboard(ssc, only, options);
    const defs = (definitions.get(ssc) ?? []).filter((c) => !only || c.stream === only);
    for (const def of defs) d.addChart(def, true);
    if (only && defs.length === 0) d.addChart({ stream: only, spec: {}, options: { title: only.name } }, true);
    const host = options.host ?? "127.0.0.1";
    await new Promise<void>((resolve, reject) => {
      d.server.once("error", reject);
      d.server.listen(options.port ?? 0, host, () => resolve());
    });
    d.port = (d.server.address() as AddressInfo).port;
    const set = running.get(ssc) ?? new Set<Dashboard>();
    set.add(d);
    running.set(ssc, set);
    ssc.addStreamingListener({ onStreamingStopped: () => void d.flushAll() });
    return d;
  }

  /** The page's address, token included (loopback shows as 127.0.0.1). */
  get url(): string {
    const host = this.options.host === undefined || this.options.host === "0.0.0.0" ? "127.0.0.1" : this.options.host;
    return `http://${host.includes(":") ? `[${host}]` : host}:${this.port}/?token=${this.token}`;
  }

  /** Internal: starts feeding a chart (an output operation on its stream). */
  addChart(def: ChartDefinition, initial: boolean): void {
    if (this.closed || (this.only && def.stream !== this.only)) return;
    const model = new ChartModel(def.spec, def.options);
    const entry: LiveEntry = { id: this.charts.length, model, title: def.options.title ?? def.stream.name, lastSent: 0 };
    this.charts.push(entry);
    // Opened mid-run: start from the latest completed batch rather than an empty chart.
    const last = this.ssc.graph.lastCompletedTime;
    if (last !== undefined) {
      try {
        model.batch(last, def.stream.latest().collect().map((r) => toChartRow(r, last)));
      } catch {
        // a batch still being computed: the next one fills the chart
      }
    }
    def.stream.foreachRDD(
      (rdd, time) => {
        if (this.closed) return;
        model.batch(time, rdd.collect().map((r) => toChartRow(r, time)));
        this.schedule(entry);
      },
      { name: `dashboard(${def.stream.name})` },
    );
    if (!initial) this.broadcast({ type: "charts", charts: this.snapshot() });
  }

  /** Current specs of every chart (what a newly opened page draws first). */
  snapshot(): { id: number; title: string; spec: VegaLiteSpec; batches: number }[] {
    return this.charts.map((c) => ({ id: c.id, title: c.title, spec: c.model.spec(), batches: c.model.batchCount }));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const c of this.charts) if (c.pending) clearTimeout(c.pending);
    for (const res of this.clients) res.end();
    this.clients.clear();
    running.get(this.ssc)?.delete(this);
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  toString(): string {
    return `Dashboard at ${this.url}`;
  }

  [JUPYTER_DISPLAY](): MimeBundle {
    const url = this.url;
    return {
      "text/plain": `Dashboard: ${url}`,
      "text/html": `<div>Dashboard (${this.charts.length} chart${this.charts.length === 1 ? "" : "s"}): <a href="${url}" target="_blank" rel="noopener">${url}</a></div>`,
    };
  }

  private schedule(entry: LiveEntry): void {
    if (entry.pending) return;
    const wait = Math.max(0, entry.lastSent + (this.options.minIntervalMs ?? 250) - Date.now());
    entry.pending = setTimeout(() => {
      entry.pending = undefined;
      entry.lastSent = Date.now();
      this.broadcast({ type: "chart", id: entry.id, spec: entry.model.spec(), batches: entry.model.batchCount });
    }, wait);
    entry.pending.unref?.();
  }

  private flushAll(): void {
    for (const c of this.charts) {
      if (!c.pending) continue;
      clearTimeout(c.pending);
      c.pending = undefined;
      this.broadcast({ type: "chart", id: c.id, spec: c.model.spec(), batches: c.model.batchCount });
    }
  }

  private broadcast(message: unknown): void {
    const data = `data: ${JSON.stringify(message)}\n\n`;
    for (const res of this.clients) res.write(data);
  }

  private authorized(url: URL): boolean {
    const given = Buffer.from(url.searchParams.get("token") ?? "");
    const expected = Buffer.from(this.token);
    return given.length === expected.length && timingSafeEqual(given, expected);
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? "/", "http://dashboard");
    if (!this.authorized(url)) {
      res.writeHead(403, { "content-type": "text/plain; charset=utf-8" });
      res.end("403 Forbidden: this dashboard needs its token; open the URL that ssc.dashboard() printed\n");
      return;
    }
    const headers = { "cache-control": "no-store", "x-content-type-options": "nosniff" };
    switch (url.pathname) {
      case "/":
        res.writeHead(200, { ...headers, "content-type": "text/html; charset=utf-8" });
        res.end(page(this.options.title ?? `${this.ssc.conf.name} dashboard`, this.token));
        return;
      case "/charts.json":
        res.writeHead(200, { ...headers, "content-type": "application/json" });
        res.end(JSON.stringify(this.snapshot()));
        return;
      case "/events":
        res.writeHead(200, { ...headers, "content-type": "text/event-stream", connection: "keep-alive" });
        res.write(`data: ${JSON.stringify({ type: "charts", charts: this.snapshot() })}\n\n`);
        this.clients.add(res);
        req.on("close", () => this.clients.delete(res));
        return;
      case "/vega.js":
      case "/vega-lite.js": {
        const file = url.pathname === "/vega.js" ? packageFile("vega", "build/vega.min.js") : packageFile("vega-lite", "build/vega-lite.min.js");
        if (!file) {
          res.writeHead(500, { "content-type": "text/plain" });
          res.end("vega and vega-lite are not installed next to streambook\n");
          return;
        }
        res.writeHead(200, { ...headers, "content-type": "text/javascript; charset=utf-8" });
        fs.createReadStream(file).pipe(res);
        return;
      }
      default:
        res.writeHead(404, { "content-type": "text/plain" });
        res.end("not found\n");
    }
  }
}

/** A file inside an installed package (its "exports" do not list the browser builds, so resolve the folder). */
function packageFile(pkg: string, rel: string): string | undefined {
  for (const dir of require.resolve.paths(pkg) ?? []) {
    const f = path.join(dir, pkg, rel);
    if (fs.existsSync(f)) return f;
  }
  return undefined;
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c] as string);
}

/** The page: draws each chart with vega (SVG renderer) and redraws it on every server-sent update. */
function page(title: string, token: string): string {
  const t = encodeURIComponent(token);
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>${escapeHtml(title)}</title>
<style>body{font-family:system-ui,sans-serif;margin:1.5em;background:#fff}h1{font-size:1.2em}
.chart{display:inline-block;margin:0 1.5em 1.5em 0;vertical-align:top}.chart h2{font-size:1em;margin:.2em 0}
#status{color:#666;font-size:.85em}</style>
<script src="vega.js?token=${t}"></script><script src="vega-lite.js?token=${t}"></script></head>
<body><h1>${escapeHtml(title)}</h1><div id="status">connecting…</div><div id="charts"></div>
<script>
const views = new Map();
async function draw(c) {
  let box = document.getElementById("chart-" + c.id);
  if (!box) {
    box = document.createElement("div"); box.className = "chart"; box.id = "chart-" + c.id;
    box.innerHTML = "<h2></h2><div class='view'></div>";
    box.querySelector("h2").textContent = c.title;
    document.getElementById("charts").appendChild(box);
  }
  box.dataset.batches = String(c.batches);
  const old = views.get(c.id);
  const view = new vega.View(vega.parse(vegaLite.compile(c.spec).spec), { renderer: "svg", container: box.querySelector(".view"), hover: true });
  views.set(c.id, view);
  await view.runAsync();
  if (old) old.finalize();
}
const events = new EventSource("events?token=${t}");
events.onopen = () => { document.getElementById("status").textContent = "live"; };
events.onerror = () => { document.getElementById("status").textContent = "disconnected; retrying…"; };
events.onmessage = (e) => {
  const m = JSON.parse(e.data);
  if (m.type === "charts") m.charts.forEach(draw);
  else if (m.type === "chart") draw(m);
  document.getElementById("status").textContent = "live, updated " + new Date().toLocaleTimeString();
};
</script></body></html>
`;
}
