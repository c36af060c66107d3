// Rough memory sizes of received records, so buffers are bounded by bytes as well as by count (Spark's
// SizeEstimator, much simplified): a few records of each block are measured and the rest assumed alike.

/** Objects nested deeper than this count as a fixed size. */
const MAX_DEPTH = 3;
/** Records measured per block; the block's size is their mean times its length. */
const SAMPLES = 8;
/** Properties or elements measured per object; the rest are assumed alike. */
const MAX_FIELDS = 32;

/** Estimated heap bytes of one value (strings one byte a character, as V8 keeps ASCII). */
export function estimateSize(value: unknown, depth = 0): number {
  switch (typeof value) {
    case "string":
      return 16 + value.length;
    case "number":
      return 8;
    case "boolean":
    case "undefined":
      return 4;
    case "bigint":
      return 16;
    case "object": {
      if (value === null) return 4;
      if (depth >= MAX_DEPTH) return 64;
      if (ArrayBuffer.isView(value)) return 64 + value.byteLength;
      if (Array.isArray(value)) {
        const n = value.length;
        let sum = 0;
        const m = Math.min(n, MAX_FIELDS);
        for (let i = 0; i < m; i++) sum += estimateSize(value[Math.floor((i * n) / m)], depth + 1);
        return 16 + 8 * n + (m > 0 ? (sum / m) * n : 0);
      }
      if (value instanceof Map || value instanceof Set) return 64 + 48 * value.size;
      let sum = 24;
      let fields = 0;
      for (const k in value) {
        if (++fields > MAX_FIELDS) break;
        sum += 8 + estimateSize((value as Record<string, unknown>)[k], depth + 1);
      }
      return sum;
    }
    default:
      return 16;
  }
}

/** Estimated bytes per record of `items`, from a few of them. */
export function estimateRecordSize(items: readonly unknown[]): number {
  const n = items.length;
  if (n === 0) return 0;
  const m = Math.min(n, SAMPLES);
  let sum = 0;
  for (let i = 0; i < m; i++) sum += estimateSize(items[Math.floor((i * n) / m)]);
  // The slot in the block's array.
  return sum / m + 8;
}
