// The group's durable pieces in Redis (the log itself): per unit a fence holding the highest epoch seen,
// repartition streams (one per exchange, map-side partition and reduce-side partition, one entry per batch),
// per-task checkpoints, and the partitioned outputs of sinks. Every write is a Lua script that first checks
// the fence, so a write under an older epoch than the fence's is refused, atomically, on the server.
import type Redis from "ioredis";
import { connect, type RedisConnectionOptions } from "../sources/redis.js";
import { GroupFencedError } from "./errors.js";

const FENCE_CHECK = `
local fence = tonumber(redis.call('GET', KEYS[1]) or '0')
local epoch = tonumber(ARGV[1])
if fence > epoch then return redis.error_reply('FENCED ' .. fence) end
`;

// KEYS: fence. ARGV: epoch. Raises the fence to epoch (never lowers it).
const ACQUIRE = `${FENCE_CHECK}
if fence < epoch then redis.call('SET', KEYS[1], ARGV[1]) end
return fence
`;

// KEYS: fence, checkpoint, exchange streams... ARGV: epoch, batch time, writer, checkpoint bytes, payloads...
// One batch of a map-side task, atomically: its entry in every repartition stream, and its checkpoint.
const COMMIT_MAP = `${FENCE_CHECK}
local id = ARGV[2] .. '-0'
for i = 3, #KEYS do
  local r = redis.pcall('XADD', KEYS[i], id, 'd', ARGV[i + 2], 'w', ARGV[3], 'e', ARGV[1])
  -- An entry for this batch is there already: the batch was committed before (a replay adds nothing).
  if type(r) == 'table' and r.err and not string.find(r.err, 'equal or smaller') then return r end
end
-- The state goes with the batch when it is due; the progress mark always does (the status panel reads it).
if ARGV[4] ~= '' then redis.call('HSET', KEYS[2], 't', ARGV[2], 'e', ARGV[1], 'w', ARGV[3], 'd', ARGV[4]) end
redis.call('HSET', KEYS[2], 'p', ARGV[2])
return 1
`;

// KEYS: fence, checkpoint. ARGV: epoch, batch time. The progress mark of a task that checkpoints less often.
const PROGRESS = `${FENCE_CHECK}
redis.call('HSET', KEYS[2], 'p', ARGV[2])
return 1
`;

// KEYS: fence, checkpoint, streams to trim... ARGV: epoch, batch time, writer, checkpoint bytes, trim min id.
const CHECKPOINT = `${FENCE_CHECK}
local old = tonumber(redis.call('HGET', KEYS[2], 't') or '-1')
if old > tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[2], 't', ARGV[2], 'e', ARGV[1], 'w', ARGV[3], 'd', ARGV[4], 'p', ARGV[2])
if ARGV[5] ~= '' then
  for i = 3, #KEYS do redis.call('XTRIM', KEYS[i], 'MINID', ARGV[5]) end
end
return 1
`;

// KEYS: fence, stream. ARGV: epoch, batch time, writer, maxlen, n, then per entry: field count, fields...
// A sink's batch for one partition: IDs <batchTime>-<n>, skipped whole if the batch (or a later one) is there.
const WRITE_OUTPUT = `${FENCE_CHECK}
local t = tonumber(ARGV[2])
local info = redis.pcall('XINFO', 'STREAM', KEYS[2])
if type(info) == 'table' and info.err == nil then
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then
      local ms = tonumber(string.match(info[i + 1], '^(%d+)'))
      if ms >= t then return -1 end
    end
  end
end
local n = tonumber(ARGV[5])
local idx = 6
for e = 0, n - 1 do
  local nf = tonumber(ARGV[idx]); idx = idx + 1
  local args
  if ARGV[4] ~= '' then
    args = {'XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], string.format('%d-%d', t, e)}
  else
    args = {'XADD', KEYS[2], string.format('%d-%d', t, e)}
  end
  for j = 1, nf * 2 do args[#args + 1] = ARGV[idx]; idx = idx + 1 end
  args[#args + 1] = 'w'; args[#args + 1] = ARGV[3]
  args[#args + 1] = 'e'; args[#args + 1] = ARGV[1]
  redis.call(unpack(args))
end
return n
`;

/**
 * Many tasks write side by side: ioredis's auto-pipelining sends the commands of one event-loop turn in one
 * write (several times fewer system calls than one write per command).
 */
export function pipelined(c: RedisConnectionOptions): RedisConnectionOptions {
  return { ...c, redisOptions: { enableAutoPipelining: true, ...c.redisOptions } };
}

type ScriptRedis = Redis & {
  sbAcquire(numKeys: number, ...args: (string | Buffer | number)[]): Promise<number>;
  sbCommitMap(numKeys: number, ...args: (string | Buffer | number)[]): Promise<number>;
  sbCheckpoint(numKeys: number, ...args: (string | Buffer | number)[]): Promise<number>;
  sbProgress(numKeys: number, ...args: (string | Buffer | number)[]): Promise<number>;
  sbWriteOutput(numKeys: number, ...args: (string | Buffer | number)[]): Promise<number>;
};

function withScripts(r: Redis): ScriptRedis {
  r.defineCommand("sbAcquire", { lua: ACQUIRE });
  r.defineCommand("sbCommitMap", { lua: COMMIT_MAP });
  r.defineCommand("sbCheckpoint", { lua: CHECKPOINT });
  r.defineCommand("sbProgress", { lua: PROGRESS });
  r.defineCommand("sbWriteOutput", { lua: WRITE_OUTPUT });
  return r as ScriptRedis;
}

/** A fence check failed: the current fence's epoch, from the script's error. */
function fencedEpoch(e: unknown): number | undefined {
  const m = /FENCED (\d+)/.exec((e as Error)?.message ?? "");
  return m ? Number(m[1]) : undefined;
}

export interface StoredCheckpoint {
  time: number;
  epoch: number;
  writer: string;
  bytes: Buffer;
}

/** The keys of one group, under `streambook:<group>:`. */
export class GroupKeys {
  constructor(readonly group: string) {}
  private get base(): string {
    return `streambook:${this.group}`;
  }
  fence(unit: number): string {
    return `${this.base}:fence:${unit}`;
  }
  checkpoint(sub: number, partition: number): string {
    return `${this.base}:cp:${sub}:${partition}`;
  }
  exchange(exchange: number, from: number, to: number): string {
    return `${this.base}:x:${exchange}:${from}:${to}`;
  }
}

/** One connection to the group's store, with the scripts loaded. */
export class GroupStore {
  readonly redis: ScriptRedis;
  readonly keys: GroupKeys;

  constructor(
    readonly connection: RedisConnectionOptions,
    group: string,
    readonly writer: string,
  ) {
    const r = connect(pipelined(connection));
    r.on("error", () => {});
    this.redis = withScripts(r);
    this.keys = new GroupKeys(group);
  }

  private fenced(e: unknown, unit: number, epoch: number, what: string): never {
    const current = fencedEpoch(e);
    if (current !== undefined) {
      throw new GroupFencedError(
        `${what} for unit ${unit} was refused: this instance holds it under epoch ${epoch}, but epoch ${current} ` +
          `was issued since (another instance owns it now); this instance stops writing for it`,
        unit,
        epoch,
        current,
      );
    }
    throw e;
  }

  /** Raises the unit's fence to `epoch`; refused if a newer epoch is there already. */
  async acquire(unit: number, epoch: number): Promise<void> {
    try {
      await this.redis.sbAcquire(1, this.keys.fence(unit), epoch);
    } catch (e) {
      this.fenced(e, unit, epoch, "taking ownership");
    }
  }

  /** A map-side batch: every repartition entry and the task's checkpoint, in one atomic script. */
  async commitMap(unit: number, epoch: number, cpKey: string, time: number, checkpoint: Buffer, entries: { key: string; payload: string }[]): Promise<void> {
    const keys = [this.keys.fence(unit), cpKey, ...entries.map((e) => e.key)];
    try {
      await this.redis.sbCommitMap(keys.length, ...keys, epoch, time, this.writer, checkpoint, ...entries.map((e) => e.payload));
    } catch (e) {
      this.fenced(e, unit, epoch, `committing batch ${time}`);
    }
  }

  /** A task's checkpoint (not older than the stored one), trimming its input streams below `trimMinTime`. */
  async checkpoint(unit: number, epoch: number, cpKey: string, time: number, bytes: Buffer, trim: string[], trimMinTime?: number): Promise<void> {
    const keys = [this.keys.fence(unit), cpKey, ...(trimMinTime !== undefined ? trim : [])];
    try {
      await this.redis.sbCheckpoint(keys.length, ...keys, epoch, time, this.writer, bytes, trimMinTime !== undefined ? `${trimMinTime}-0` : "");
    } catch (e) {
      this.fenced(e, unit, epoch, `checkpointing batch ${time}`);
    }
  }

  /** Marks batch `time` done for the status panel (fenced like every write). */
  async progress(unit: number, epoch: number, cpKey: string, time: number): Promise<void> {
    try {
      await this.redis.sbProgress(2, this.keys.fence(unit), cpKey, epoch, time);
    } catch (e) {
      this.fenced(e, unit, epoch, `marking batch ${time}`);
    }
  }

  /** Every task's progress mark (`p`) by checkpoint key. */
  async progressMarks(cpKeys: string[]): Promise<(number | undefined)[]> {
    const pipe = this.redis.pipeline();
    for (const k of cpKeys) pipe.hget(k, "p");
    const res = (await pipe.exec()) ?? [];
    return res.map(([err, v]) => (err || v === null || v === undefined ? undefined : Number(v)));
  }

  async readCheckpoint(cpKey: string): Promise<StoredCheckpoint | undefined> {
    const h = (await this.redis.hgetallBuffer(cpKey)) as Record<string, Buffer>;
    if (!h.t || !h.d) return undefined;
    return { time: Number(h.t.toString()), epoch: Number(h.e?.toString() ?? 0), writer: h.w?.toString() ?? "", bytes: h.d };
  }

  /** Batch `time`'s entry of each stream, or undefined for a stream that has none yet. */
  async readExchange(keys: string[], time: number): Promise<(string | undefined)[]> {
    const pipe = this.redis.pipeline();
    const id = `${time}-0`;
    for (const k of keys) pipe.xrange(k, id, id);
    const res = (await pipe.exec()) ?? [];
    return res.map(([err, rows]) => {
      if (err) throw err;
      const r = rows as [string, string[]][];
      if (r.length === 0) return undefined;
      const flat = r[0]![1];
      for (let i = 0; i + 1 < flat.length; i += 2) if (flat[i] === "d") return flat[i + 1];
      return "[]";
    });
  }

  /** Per stream, the payloads of the batches in [from, to] it holds, by batch time. */
  async readExchangeRange(keys: string[], from: number, to: number): Promise<Map<number, string>[]> {
    const pipe = this.redis.pipeline();
    for (const k of keys) pipe.xrange(k, `${from}-0`, `${to}-0`);
    const res = (await pipe.exec()) ?? [];
    return res.map(([err, rows]) => {
      if (err) throw err;
      const m = new Map<number, string>();
      for (const [id, flat] of rows as [string, string[]][]) {
        let d = "[]";
        for (let i = 0; i + 1 < flat.length; i += 2) if (flat[i] === "d") d = flat[i + 1]!;
        m.set(Number(id.split("-")[0]), d);
      }
      return m;
    });
  }

  /** A sink's batch for one partition of its output, fenced and idempotent. Returns entries written, -1 if already there. */
  async writeOutput(
    redis: ScriptRedis,
    unit: number,
    epoch: number,
    stream: string,
    time: number,
    rows: Record<string, string>[],
    maxLen?: number,
  ): Promise<number> {
    const argv: (string | number)[] = [epoch, time, this.writer, maxLen === undefined ? "" : String(maxLen), rows.length];
    for (const fields of rows) {
      const ks = Object.keys(fields);
      argv.push(ks.length);
      for (const k of ks) argv.push(k, fields[k]!);
    }
    try {
      return await redis.sbWriteOutput(2, this.keys.fence(unit), stream, ...argv);
    } catch (e) {
      return this.fenced(e, unit, epoch, `writing batch ${time} to ${stream}`);
    }
  }

  /** Another server (a sink's) with the scripts and this unit's fence raised too. */
  static forServer(connection: RedisConnectionOptions): ScriptRedis {
    const r = connect(pipelined(connection));
    r.on("error", () => {});
    return withScripts(r);
  }

  async acquireOn(redis: ScriptRedis, unit: number, epoch: number): Promise<void> {
    try {
      await redis.sbAcquire(1, this.keys.fence(unit), epoch);
    } catch (e) {
      this.fenced(e, unit, epoch, "taking ownership");
    }
  }

  close(): void {
    this.redis.disconnect();
  }
}

export type { ScriptRedis };
