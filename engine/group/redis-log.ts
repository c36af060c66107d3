// A Redis Streams source read by log time: partition p is one stream key; the log's clock is the entry
// IDs' millisecond part, which Redis assigns from its own clock. A batch (T - b, T] is complete once the
// server's TIME is past T: TIME and the XRANGE go down one connection in order, so an entry added after
// that TIME answer gets a later ID, and the XRANGE sees every entry with an ID up to T.
import type Redis from "ioredis";
import { connect, parseId, type RedisStreamEntry } from "../sources/redis.js";
import type { LogReader, GroupSourceSpec } from "./log.js";
import { pipelined } from "./store.js";

const PAGE = 10_000;
/** Lag is counted up to this many records (the status then says "at least"). */
export const LAG_COUNT_LIMIT = 10_000;

function toFields(flat: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) out[flat[i]!] = flat[i + 1]!;
  return out;
}

export class RedisLogReader implements LogReader {
  private readonly redis: Redis;

  constructor(private readonly spec: GroupSourceSpec) {
    this.redis = connect(pipelined(spec.connection));
    this.redis.on("error", () => {});
  }

  private async serverTime(): Promise<number> {
    const [s, us] = (await this.redis.time()) as [number | string, number | string];
    return Number(s) * 1000 + Math.floor(Number(us) / 1000);
  }

  async zeroTime(now: number, b: number): Promise<number> {
    const start = this.spec.startId;
    if (start === "$") return Math.floor(now / b) * b;
    if (start !== "0" && start !== "0-0") return Math.floor(parseId(start)[0] / b) * b;
    let first: number | undefined;
    for (const key of this.spec.partitionIds) {
      const rows = (await this.redis.xrange(key, "-", "+", "COUNT", 1)) as [string, string[]][];
      if (rows.length > 0) {
        const ms = parseId(rows[0]![0])[0];
        if (first === undefined || ms < first) first = ms;
      }
    }
    if (first === undefined) return Math.floor(now / b) * b;
    return Math.ceil(first / b) * b - b;
  }

  async read(p: number, from: number, to: number, first: boolean): Promise<{ records: unknown[]; end: string | undefined } | undefined> {
    const key = this.spec.partitionIds[p]!;
    const start = this.spec.startId;
    // The first batch also takes what the start position lets in before `from` (for "0": nothing is there).
    let lower = `${from + 1}-0`;
    if (first && start !== "$") lower = start === "0" || start === "0-0" ? "-" : `(${start}`;
    const upper = String(to);
    const pipe = this.redis.pipeline();
    pipe.time();
    pipe.xrange(key, lower, upper, "COUNT", PAGE);
    const res = (await pipe.exec()) ?? [];
    const [terr, t] = res[0] ?? [];
    const [xerr, rows0] = res[1] ?? [];
    if (terr) throw terr;
    if (xerr) throw xerr;
    const [s, us] = t as [string, string];
    if (Number(s) * 1000 + Math.floor(Number(us) / 1000) <= to) return undefined;
    let rows = rows0 as [string, string[]][];
    const records: RedisStreamEntry[] = [];
    let end: string | undefined;
    for (;;) {
      for (const [id, flat] of rows) records.push({ stream: key, id, fields: toFields(flat) });
      if (rows.length > 0) end = rows[rows.length - 1]![0];
      if (rows.length < PAGE) break;
      rows = (await this.redis.xrange(key, `(${end}`, upper, "COUNT", PAGE)) as [string, string[]][];
    }
    return { records, end };
  }

  async lag(p: number, after: number): Promise<{ records: number; newest: number | undefined }> {
    const key = this.spec.partitionIds[p]!;
    const last = (await this.redis.xrevrange(key, "+", "-", "COUNT", 1)) as [string, string[]][];
    const newest = last.length > 0 ? parseId(last[0]![0])[0] : undefined;
    if (newest === undefined || newest <= after) return { records: 0, newest };
    // Counting is O(lag): bounded (LAG_COUNT_LIMIT) so a panel on a far-behind group stays cheap.
    const rows = (await this.redis.xrange(key, `${after + 1}-0`, "+", "COUNT", LAG_COUNT_LIMIT)) as unknown[];
    return { records: rows.length, newest };
  }

  close(): void {
    this.redis.disconnect();
  }

  /** Redis's clock, for the status panel. */
  now(): Promise<number> {
    return this.serverTime();
  }
}
