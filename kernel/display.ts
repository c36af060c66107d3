// display(): rich output from cells. MIME bundles for any value (Deno's Symbol.for("Jupyter.display")
// protocol), typed helpers, and handles whose rate-limited updates replace their output in place.
import { randomUUID } from "node:crypto";
import * as util from "node:util";
import type { MimeBundle, OutputSink } from "./interpreter.js";
import { currentCell } from "./cell-context.js";

/** Objects with a method under this symbol render themselves: it returns a MIME bundle (Deno's protocol). */
export const JUPYTER_DISPLAY: unique symbol = Symbol.for("Jupyter.display");

export const VEGA_LITE_MIME = "application/vnd.vegalite.v5+json";

/** Updates per display are limited to one per this many milliseconds; the rest coalesce (the last one wins). */
export const UPDATE_INTERVAL_MS = 100;

export class DisplayOutsideCellError extends Error {
  constructor() {
    super("display() was called outside any cell: call it from cell code, or from a callback a cell scheduled.");
    this.name = "DisplayOutsideCellError";
  }
}

export class DisplayProtocolError extends Error {
  constructor(detail: string) {
    super(`[Symbol.for("Jupyter.display")]() must return a MIME bundle object: ${detail}`);
    this.name = "DisplayProtocolError";
  }
}

/** Node's inspect style without colours: how results and display() show plain values. */
export function inspectPlain(value: unknown): string {
  return util.inspect(value, { colors: false, depth: 4, maxArrayLength: 100, breakLength: 100 });
}

/** The MIME bundle for any value: its own bundle when it has one, always with text/plain. */
export function toMimeBundle(value: unknown): MimeBundle {
  if (value !== null && (typeof value === "object" || typeof value === "function")) {
    const method = (value as { [JUPYTER_DISPLAY]?: unknown })[JUPYTER_DISPLAY];
    if (typeof method === "function") {
      const bundle: unknown = method.call(value);
      if (bundle === null || typeof bundle !== "object" || Array.isArray(bundle)) {
        throw new DisplayProtocolError(`got ${inspectPlain(bundle)}`);
      }
      const out: MimeBundle = { ...(bundle as MimeBundle) };
      if (!("text/plain" in out)) out["text/plain"] = inspectPlain(value);
      return out;
    }
  }
  return { "text/plain": inspectPlain(value) };
}

/** Extra MIME entries for a display, with output metadata for them (an image's display size). */
export interface Rendition {
  data: MimeBundle;
  metadata?: Record<string, unknown>;
}

/**
 * Renders Vega-Lite specs into extra MIME entries (e.g. image/png). The notebook side installs one;
 * a promise result is sent as an update of the display once ready.
 */
export type VegaLiteRenderer = (spec: unknown) => Rendition | Promise<Rendition>;
let vegaLiteRenderer: VegaLiteRenderer | undefined;
export function setVegaLiteRenderer(renderer: VegaLiteRenderer | undefined): void {
  vegaLiteRenderer = renderer;
}

export interface DisplayOptions {
  /** The value is a MIME bundle to send as it is. */
  raw?: boolean;
  metadata?: Record<string, unknown>;
}

export interface DisplayHandle {
  readonly displayId: string;
  /** Replaces this display's output (update_display_data); at most ~10 per second, the last one always sent. */
  update(value: unknown, options?: DisplayOptions): void;
  /** Sends a pending (coalesced) update now. */
  flush(): void;
}

export interface Display {
  (value: unknown, options?: DisplayOptions): DisplayHandle;
  html(html: string): DisplayHandle;
  markdown(markdown: string): DisplayHandle;
  svg(svg: string): DisplayHandle;
  json(value: unknown): DisplayHandle;
  vegaLite(spec: object): DisplayHandle;
  /** Clears the current cell's output; with wait, when the next output arrives. */
  clear(wait?: boolean): void;
}

/** The TypeScript declarations the type checker sees for the globals this file provides. */
export const DISPLAY_DECLARATIONS = `
interface StreambookDisplayOptions { raw?: boolean; metadata?: Record<string, unknown>; }
interface StreambookDisplayHandle {
  readonly displayId: string;
  update(value: unknown, options?: StreambookDisplayOptions): void;
  flush(): void;
}
interface StreambookDisplay {
  (value: unknown, options?: StreambookDisplayOptions): StreambookDisplayHandle;
  html(html: string): StreambookDisplayHandle;
  markdown(markdown: string): StreambookDisplayHandle;
  svg(svg: string): StreambookDisplayHandle;
  json(value: unknown): StreambookDisplayHandle;
  vegaLite(spec: object): StreambookDisplayHandle;
  clear(wait?: boolean): void;
}
declare var display: StreambookDisplay;
`;

/** How a handle turns a value into a bundle now, plus an optional richer bundle later. */
type Convert = (value: unknown, options: DisplayOptions | undefined) => { now: MimeBundle; later?: Promise<Rendition> };

const plainConvert: Convert = (value, options) => ({
  now: options?.raw ? (value as MimeBundle) : toMimeBundle(value),
});

function textConvert(mime: string, plain: (s: string) => string): Convert {
  return (value) => {
    const s = String(value);
    return { now: { [mime]: s, "text/plain": plain(s) } };
  };
}

const vegaLiteConvert: Convert = (spec) => {
  const now: MimeBundle = { [VEGA_LITE_MIME]: spec, "text/plain": "<Vega-Lite chart>" };
  if (!vegaLiteRenderer) return { now };
  const extra = vegaLiteRenderer(spec);
  if (extra instanceof Promise) return { now, later: extra.then((e) => ({ data: { ...now, ...e.data }, metadata: e.metadata })) };
  return { now: { ...now, ...extra.data } };
};

class LiveDisplay implements DisplayHandle {
  readonly displayId = randomUUID();
  private lastSent = -Infinity;
  private pending: { value: unknown; options?: DisplayOptions } | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(private readonly sink: OutputSink, private readonly convert: Convert) {}

  show(value: unknown, options?: DisplayOptions): this {
    const { now, later } = this.convert(value, options);
    this.sink.displayData(now, options?.metadata ?? {}, { display_id: this.displayId });
    if (later) this.sendLater(later, options);
    return this;
  }

  update(value: unknown, options?: DisplayOptions): void {
    this.pending = { value, options };
    if (this.timer) return;
    const wait = this.lastSent + UPDATE_INTERVAL_MS - Date.now();
    if (wait <= 0) this.flush();
    else this.timer = setTimeout(() => this.flush(), wait);
  }

  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const pending = this.pending;
    if (!pending) return;
    this.pending = undefined;
    this.lastSent = Date.now();
    try {
      const { now, later } = this.convert(pending.value, pending.options);
      this.send(now, pending.options);
      if (later) this.sendLater(later, pending.options);
    } catch (err) {
      this.sink.stream("stderr", `display update failed: ${inspectPlain(err)}\n`);
    }
  }

  private send(bundle: MimeBundle, options: DisplayOptions | undefined): void {
    this.sink.updateDisplayData(bundle, options?.metadata ?? {}, { display_id: this.displayId });
  }

  private sendLater(later: Promise<Rendition>, options: DisplayOptions | undefined): void {
    const sent = later.then(
      (rendition) => {
        // A newer update already went out or is queued: it will carry its own rendering.
        if (!this.pending) this.send(rendition.data, { ...options, metadata: { ...options?.metadata, ...rendition.metadata } });
      },
      (err: unknown) => this.sink.stream("stderr", `display rendering failed: ${inspectPlain(err)}\n`),
    );
    // nbclient stops listening at the cell's reply: the image rendered after the spec must be sent before it.
    this.sink.holdReplyFor?.(sent);
  }

}

/**
 * Is `value` a handle display() returned? A cell ending in `display.html(...)` shows the display
 * only, not the handle as its result too (IPython's display() returns None).
 */
export function isDisplayHandle(value: unknown): value is DisplayHandle {
  return value instanceof LiveDisplay;
}

/**
 * Builds `display`. `sinkOf` names the output of the calling code (the current cell by default); a
 * handle keeps the sink it was created with, so it keeps working after that cell's reply.
 */
export function createDisplay(sinkOf: () => OutputSink | undefined = () => currentCell()?.sink): Display {
  const sink = (): OutputSink => {
    const s = sinkOf();
    if (!s) throw new DisplayOutsideCellError();
    return s;
  };
  const show = (convert: Convert, value: unknown, options?: DisplayOptions): DisplayHandle =>
    new LiveDisplay(sink(), convert).show(value, options);
  const display = ((value: unknown, options?: DisplayOptions) => show(plainConvert, value, options)) as Display;
  display.html = (html) => show(textConvert("text/html", () => "<HTML>"), html);
  display.markdown = (md) => show(textConvert("text/markdown", (s) => s), md);
  display.svg = (svg) => show(textConvert("image/svg+xml", () => "<SVG image>"), svg);
  display.json = (value) =>
    show((v) => ({ now: { "application/json": v as MimeBundle[string], "text/plain": inspectPlain(v) } }), value);
  display.vegaLite = (spec) => show(vegaLiteConvert, spec);
  display.clear = (wait = false) => sink().clearOutput(wait);
  return display;
}
