// Which repartition partition a key goes to: a hash of the key's canonical form, the same in every process
// (Spark's HashPartitioner uses the JVM's hashCode; JavaScript has none, so keys are hashed by value: keys
// equal as the engine compares them — tuples, plain objects in any key order, Dates — land together).

function canonical(k: unknown): string {
  switch (typeof k) {
    case "string":
      return k;
    case "number":
      return `\u0000n${Object.is(k, -0) ? 0 : k}`;
    case "boolean":
      return `\u0000b${k}`;
    case "bigint":
      return `\u0000i${k}`;
    case "undefined":
      return "\u0000u";
    case "object":
      if (k === null) return "\u0000z";
      if (k instanceof Date) return `\u0000D${k.getTime()}`;
      if (Array.isArray(k)) return `\u0000[${k.map(canonical).join("\u0001")}]`;
      return `\u0000{${Object.keys(k)
        .sort()
        .map((x) => `${x}\u0002${canonical((k as Record<string, unknown>)[x])}`)
        .join("\u0001")}}`;
    default:
      return `\u0000?${String(k)}`;
  }
}

/** 32-bit FNV-1a over the UTF-16 code units. */
export function hashKey(k: unknown): number {
  const s = canonical(k);
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

export function partitionOf(k: unknown, partitions: number): number {
  return partitions <= 1 ? 0 : hashKey(k) % partitions;
}
