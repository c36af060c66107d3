// Event-time windows as Structured Streaming's window(timeColumn, windowDuration, slideDuration):
// [start, start + windowDuration) with starts at multiples of the slide; a record belongs to every
// window that contains its timestamp.

import { InvalidDurationError } from "../errors.js";

/** An event-time window: [start, end) in ms of event time. */
export interface EventWindow {
  start: number;
  end: number;
}

/** One output row of an event-window aggregation. */
export interface EventWindowRow<K, V> {
  window: EventWindow;
  key: K;
  value: V;
}

export function checkEventWindow(op: string, windowDuration: number, slideDuration: number): void {
  for (const [what, d] of [
    ["window duration", windowDuration],
    ["slide duration", slideDuration],
  ] as const) {
    if (!(d > 0) || !Number.isFinite(d)) throw new InvalidDurationError(`${op}: the ${what} must be a positive number of ms (e.g. Minutes(10)), got ${d}`);
  }
  if (slideDuration > windowDuration) {
    throw new InvalidDurationError(`${op}: the slide duration (${slideDuration} ms) must be <= the window duration (${windowDuration} ms)`);
  }
}

/** The start of the latest window containing t. */
export function lastWindowStart(t: number, slide: number): number {
  return Math.floor(t / slide) * slide;
}

/** Reads an event time: a number of ms, or a Date. */
export function eventTimeMs(v: number | Date): number {
  const t = typeof v === "number" ? v : v instanceof Date ? v.getTime() : Number.NaN;
  return t;
}
