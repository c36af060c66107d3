// The checkpoint file format: one JSON header line (format, version, batch time, SHA-256 of the body)
// followed by a JSON body. Data only: values are plain JSON plus tagged Map/Set/Date/bigint; code is refused.
import { createHash } from "node:crypto";
import { runSync, type Sliced } from "../slicing.js";

export const CHECKPOINT_FORMAT = "streambook-checkpoint";
export const CHECKPOINT_VERSION = 1;

/** Everything a checkpoint holds: data needed to resume, never code. */
export interface CheckpointData {
  /** The completed batch this checkpoint describes: state and positions are as of the end of this batch. */
  batchTime: number;
  batchDuration: number;
  /** The graph's zero time, so that a recovered run keeps window alignment. */
  zeroTime: number | undefined;
  /** The latest batch whose jobs all completed, or undefined if none has yet. */
  lastCompletedBatch: number | undefined;
  /** Batches generated but not completed when the checkpoint was written; recovery generates them again. */
  pendingBatches: number[];
  /** Stable names of the pipeline's streams, for matching against a changed pipeline. */
  graph: { inputs: string[]; stateful: string[] };
  /** Stateful operators' state by stable name (whatever `checkpointState()` returned). */
  state: Record<string, unknown>;
  /** Input streams' positions by stable name (whatever `checkpointPosition()` returned). */
  positions: Record<string, unknown>;
  /** State and positions a recovered run could not match, carried forward so a later run can still use them. */
  unmatched: { state: Record<string, unknown>; positions: Record<string, unknown> };
  /** Wall-clock time of writing, for people reading the file. */
  writtenAt: string;
}

interface Header {
  format: string;
  version: number;
  batchTime: number;
  bodyBytes: number;
  sha256: string;
}

/** The checkpoint was written by a different (newer or unknown) format version. */
export class CheckpointVersionError extends Error {
  override name = "CheckpointVersionError";
}

/** The checkpoint file is torn, truncated or altered: its checksum or structure does not match. */
export class CheckpointCorruptError extends Error {
  override name = "CheckpointCorruptError";
}

/** A value in the state cannot be stored as data (a function, a symbol, a class instance with behaviour). */
export class CheckpointSerializationError extends Error {
  override name = "CheckpointSerializationError";
}

const TAG = "$sb";

// Tagged encoding for the few non-JSON values state commonly holds. A replacer sees `this[key]` before
// toJSON runs, which is how Dates are caught before they turn into strings.
function replacer(this: unknown, key: string, value: unknown): unknown {
  const original = (this as Record<string, unknown>)[key];
  switch (typeof original) {
    case "function":
      throw new CheckpointSerializationError(
        `checkpoint: "${key}" holds a function; checkpoints store data only — keep functions out of state`,
      );
    case "symbol":
      throw new CheckpointSerializationError(`checkpoint: "${key}" holds a symbol; checkpoints store data only`);
    case "bigint":
      return { [TAG]: "bigint", v: original.toString() };
    case "undefined":
      return { [TAG]: "undefined" };
    case "number":
      if (!Number.isFinite(original)) return { [TAG]: "number", v: String(original) };
      return original;
    case "object":
      if (original instanceof Map) return { [TAG]: "Map", v: [...original] };
      if (original instanceof Set) return { [TAG]: "Set", v: [...original] };
      if (original instanceof Date) return { [TAG]: "Date", v: original.getTime() };
      return value;
    default:
      return value;
  }
}

function reviver(_key: string, value: unknown): unknown {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return value;
  const tag = (value as Record<string, unknown>)[TAG];
  if (tag === undefined) return value;
  const v = (value as { v?: unknown }).v;
  switch (tag) {
    case "bigint":
      return BigInt(v as string);
    case "undefined":
      return undefined;
    case "number":
      return Number(v);
    case "Map":
      return new Map(v as [unknown, unknown][]);
    case "Set":
      return new Set(v as unknown[]);
    case "Date":
      return new Date(v as number);
    default:
      return value;
  }
}

/** True if `value` holds anything plain JSON would lose or mangle (so the tagging replacer must run). */
function needsTags(value: unknown): boolean {
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const v = stack.pop();
    switch (typeof v) {
      case "string":
      case "boolean":
        continue;
      case "number":
        if (!Number.isFinite(v)) return true;
        continue;
      case "object":
        if (v === null) continue;
        if (Array.isArray(v)) {
          for (let i = 0; i < v.length; i++) stack.push(v[i]);
          continue;
        }
        if (v instanceof Map || v instanceof Set || v instanceof Date) return true;
        for (const k in v) stack.push((v as Record<string, unknown>)[k]);
        continue;
      default:
        return true; // undefined, bigint, function, symbol
    }
  }
  return false;
}

/** Encode any data value (as state is) to JSON text; throws CheckpointSerializationError on code. */
export function encodeValue(value: unknown): string {
  // The replacer costs a call per value; a scan that finds nothing to tag is several times cheaper.
  if (!needsTags(value)) return JSON.stringify(value) ?? "null";
  return JSON.stringify(value, replacer) ?? "null";
}

export function decodeValue(text: string): unknown {
  // Arrays lose `undefined` slots to `null` without the tag, so the reviver restores them; it runs bottom-up.
  // The reviver runs once per value; most state has no tagged values, and plain parsing is much faster.
  return text.includes(`"${TAG}"`) ? JSON.parse(text, reviver) : JSON.parse(text);
}

function sha256(buf: Buffer): string {
  return createHash("sha256").update(buf).digest("hex");
}

/** Serialise a checkpoint to the bytes of one file. */
export function encodeCheckpoint(data: CheckpointData): Buffer {
  return runSync(encodeCheckpointSliced(data));
}

/** Array elements (or Map/Set entries) stringified in one piece between two yields. */
const ELEMENTS_PER_PIECE = 2048;
/** Text gathered before it becomes bytes and goes through the hash. */
const TEXT_PER_CHUNK = 1 << 20;

function isPlainObject(v: object): v is Record<string, unknown> {
  const proto = Object.getPrototypeOf(v) as unknown;
  return (proto === Object.prototype || proto === null) && typeof (v as { toJSON?: unknown }).toJSON !== "function";
}

/**
 * Rows kept as columns (row i is [columns[0][i], columns[1][i], ...]): a snapshot of 1M keys copied
 * into a few flat arrays, not 1M small ones that the garbage collector would copy again and again
 * while they are young. Encoded exactly as the array of rows (toJSON too); rows are built a piece at
 * a time only while encoding.
 */
export class ColumnRows {
  constructor(
    readonly columns: readonly unknown[][],
    readonly length: number,
  ) {}

  /** Rows from..to-1 as arrays. */
  rows(from: number, to: number): unknown[][] {
    const end = Math.min(to, this.length);
    const out = new Array<unknown[]>(Math.max(0, end - from));
    const cols = this.columns;
    for (let i = from; i < end; i++) {
      const row = new Array<unknown>(cols.length);
      for (let c = 0; c < cols.length; c++) row[c] = (cols[c] as unknown[])[i];
      out[i - from] = row;
    }
    return out;
  }

  toJSON(): unknown[][] {
    return this.rows(0, this.length);
  }
}

/**
 * True for a short array with a large array, Map or Set among its elements, down to `depth` levels of
 * arrays (an inverse window's slices: [[time, pairs], ...]); stringified whole, it would hold the loop.
 */
function holdsBig(items: unknown[], depth = 2): boolean {
  for (let i = 0; i < items.length; i++) {
    const x = items[i];
    if (x === null || typeof x !== "object") continue;
    if (x instanceof ColumnRows) return true;
    if (Array.isArray(x)) {
      if (x.length > ELEMENTS_PER_PIECE || (depth > 1 && holdsBig(x, depth - 1))) return true;
    } else if ((x instanceof Map || x instanceof Set) && x.size > ELEMENTS_PER_PIECE) return true;
  }
  return false;
}

/**
 * As encodeCheckpoint, as a generator that yields every few thousand array elements, so runSliced can
 * give the event loop turns while 1M keys of state are encoded. The bytes are exactly encodeCheckpoint's:
 * containers are walked in JSON.stringify's order and everything small goes through encodeValue, whose
 * tagging does not depend on where a value sits (only error messages name the key).
 */
export function* encodeCheckpointSliced(data: CheckpointData): Sliced<Buffer> {
  const hash = createHash("sha256");
  const chunks: Buffer[] = [];
  let bodyBytes = 0;
  let text = "";
  const flush = () => {
    if (text.length === 0) return;
    const b = Buffer.from(text, "utf8");
    text = "";
    hash.update(b);
    chunks.push(b);
    bodyBytes += b.length;
  };
  const emit = (s: string) => {
    text += s;
    if (text.length >= TEXT_PER_CHUNK) flush();
  };
  // Containers being walked: a cycle would make JSON.stringify throw, and must not loop here.
  const open = new Set<object>();
  function* elements(items: unknown[]): Sliced<void> {
    for (let i = 0; i < items.length; i += ELEMENTS_PER_PIECE) {
      if (i > 0) emit(",");
      const piece = i === 0 && items.length <= ELEMENTS_PER_PIECE ? items : items.slice(i, i + ELEMENTS_PER_PIECE);
      // A piece of a plain array is a plain array: stringified whole and unwrapped, it reads as the elements.
      yield* value(piece, true);
    }
  }
  function* value(v: unknown, unwrap = false): Sliced<void> {
    if (v instanceof ColumnRows) {
      emit("[");
      for (let i = 0; i < v.length; i += ELEMENTS_PER_PIECE) {
        if (i > 0) emit(",");
        yield* value(v.rows(i, i + ELEMENTS_PER_PIECE), true);
      }
      emit("]");
      return;
    }
    if (v !== null && typeof v === "object" && !unwrap) {
      if (open.has(v)) throw new CheckpointSerializationError("checkpoint: state holds a circular reference; checkpoints store trees of data only");
      const big = Array.isArray(v) ? v.length > ELEMENTS_PER_PIECE || holdsBig(v) : v instanceof Map || v instanceof Set ? v.size > ELEMENTS_PER_PIECE : isPlainObject(v);
      if (big) {
        open.add(v);
        if (Array.isArray(v) && v.length <= ELEMENTS_PER_PIECE) {
          // A short array holding a large one (an inverse window's [time, pairs] slices): element by element.
          emit("[");
          for (let i = 0; i < v.length; i++) {
            if (i > 0) emit(",");
            // JSON.stringify writes null for a function or symbol element; encodeValue would refuse them as it does.
            yield* value(v[i]);
          }
          emit("]");
        } else if (Array.isArray(v)) {
          emit("[");
          yield* elements(v);
          emit("]");
        } else if (v instanceof Map || v instanceof Set) {
          // What the replacer makes of them: {"$sb":"Map","v":[...entries]}.
          emit(`{"${TAG}":"${v instanceof Map ? "Map" : "Set"}","v":[`);
          yield* elements([...(v as Map<unknown, unknown> | Set<unknown>)]);
          emit("]}");
        } else {
          emit("{");
          let first = true;
          for (const k of Object.keys(v)) {
            const p = (v as Record<string, unknown>)[k];
            // Plain JSON drops these; encodeValue tags undefined and refuses code, as the whole-value path does.
            emit(`${first ? "" : ","}${JSON.stringify(k)}:`);
            first = false;
            yield* value(p);
          }
          emit("}");
        }
        open.delete(v);
        return;
      }
    }
    const s = encodeValue(v);
    emit(unwrap ? s.slice(1, -1) : s);
    yield;
  }
  yield* value(data);
  flush();
  const header: Header = {
    format: CHECKPOINT_FORMAT,
    version: CHECKPOINT_VERSION,
    batchTime: data.batchTime,
    bodyBytes,
    sha256: hash.digest("hex"),
  };
  return Buffer.concat([Buffer.from(JSON.stringify(header) + "\n", "utf8"), ...chunks]);
}

/**
 * Parse and verify one checkpoint file's bytes. Throws CheckpointCorruptError when the bytes are damaged
 * (the caller can fall back to an older file) and CheckpointVersionError when they are intact but of
 * another version (falling back would silently resume from stale data, so the caller should stop).
 */
export function decodeCheckpoint(bytes: Buffer, source = "checkpoint"): CheckpointData {
  const nl = bytes.indexOf(0x0a);
  if (nl < 0) throw new CheckpointCorruptError(`${source}: no header line (file truncated?)`);
  let header: Header;
  try {
    header = JSON.parse(bytes.subarray(0, nl).toString("utf8")) as Header;
  } catch {
    throw new CheckpointCorruptError(`${source}: header is not valid JSON`);
  }
  if (header === null || typeof header !== "object" || header.format !== CHECKPOINT_FORMAT) {
    throw new CheckpointCorruptError(`${source}: not a streambook checkpoint (header format is missing)`);
  }
  if (header.version !== CHECKPOINT_VERSION) {
    throw new CheckpointVersionError(
      `${source}: checkpoint format version ${String(header.version)} is not supported by this streambook ` +
        `(it reads version ${CHECKPOINT_VERSION}); use the streambook version that wrote it, or delete the ` +
        `checkpoint directory to start fresh`,
    );
  }
  const body = bytes.subarray(nl + 1);
  if (body.length !== header.bodyBytes) {
    throw new CheckpointCorruptError(
      `${source}: body is ${body.length} bytes, header says ${header.bodyBytes} (torn write?)`,
    );
  }
  if (sha256(body) !== header.sha256) throw new CheckpointCorruptError(`${source}: SHA-256 checksum mismatch`);
  let data: CheckpointData;
  try {
    data = decodeValue(body.toString("utf8")) as CheckpointData;
  } catch {
    throw new CheckpointCorruptError(`${source}: body is not valid JSON despite a matching checksum`);
  }
  if (data === null || typeof data !== "object" || data.batchTime !== header.batchTime) {
    throw new CheckpointCorruptError(`${source}: body does not match its header`);
  }
  return data;
}
