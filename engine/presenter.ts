// How a stream's output is presented. Plain Node prints, as Spark does; the notebook kernel
// installs its own presenter (live displays under the defining cell) through setPresenter.

export type ChartMode = "append" | "update" | "complete";

export interface ChartOptions {
  /**
   * append: keep recent rows (a time series); update: the latest value per key; complete: the latest batch.
   * Default: update for streams whose batches restate a total per key (DStream.restatesKeyedTotals), else append.
   */
  mode?: ChartMode;
  /** Rows kept in append mode (default 1000). */
  maxRows?: number;
  title?: string;
}

/** A chart row: pairs become { key, value }, objects keep their fields, other values become { value }; each gets `time`. */
export type ChartRow = Record<string, unknown> & { time: number };

export interface PrintSink {
  /** One batch, already formatted in Spark's print layout ("-----\nTime: ...\n-----\n" then records). */
  batch(time: number, text: string): void;
}

export interface ChartSink {
  batch(time: number, rows: ChartRow[]): void;
}

export interface Presenter {
  /** Called synchronously while the defining code runs, so a notebook can tie the output to the current cell. */
  openPrint(): PrintSink;
  openChart(spec: Record<string, unknown>, options: ChartOptions): ChartSink;
  /** Told of every output operation when it is registered; calling dispose unregisters it. */
  outputDefined(dispose: () => void): void;
}

const printToConsole: Presenter = {
  openPrint: () => ({ batch: (_time, text) => console.log(text) }),
  openChart: () => {
    let warned = false;
    return {
      batch: () => {
        if (!warned) console.warn("chart(): charts are shown in a notebook; outside one, open them with await ssc.dashboard()");
        warned = true;
      },
    };
  },
  outputDefined: () => {},
};

let current: Presenter = printToConsole;

export function setPresenter(presenter: Presenter | undefined): void {
  current = presenter ?? printToConsole;
}

export function presenter(): Presenter {
  return current;
}
