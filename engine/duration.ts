// Durations are plain milliseconds; these helpers read like Spark's Milliseconds/Seconds/Minutes.

export function Milliseconds(ms: number): number {
  return ms;
}

export function Seconds(s: number): number {
  return s * 1000;
}

export function Minutes(m: number): number {
  return m * 60_000;
}

/** How Spark prints a time: "1000 ms". */
export function formatTime(time: number): string {
  return `${time} ms`;
}
