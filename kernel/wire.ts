// Jupyter wire protocol: multipart framing, HMAC signing over the exact received bytes,
// replay protection, and parsing that rejects anything malformed with a named error.
import { createHmac, randomUUID, timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";
import { ArrayPrototypePush, ArrayPrototypeSlice, BufferFrom, BufferPrototypeEquals, DateNowISOString, JSONParse, JSONStringifyPlain } from "./primordials.js";

export const PROTOCOL_VERSION = "5.3";
const DELIMITER = Buffer.from("<IDS|MSG>");
// The message path uses built-ins captured at start (./primordials.ts): a cell may replace JSON,
// Buffer, Date or Array.prototype.push for everyone in the realm it shares with the kernel.

export interface Header {
  msg_id: string;
  session: string;
  username: string;
  date: string;
  msg_type: string;
  version: string;
  [key: string]: unknown;
}

export type JsonObject = Record<string, unknown>;

export interface Message {
  header: Header;
  /** Empty object when the message has no parent. */
  parent_header: Header | JsonObject;
  metadata: JsonObject;
  content: JsonObject;
  buffers: Buffer[];
}

/** A parsed incoming message with the routing identities that precede the delimiter. */
export interface Received {
  identities: Buffer[];
  message: Message;
}

/** Why an incoming multipart message was dropped. */
export class WireError extends Error {
  override name = "WireError";
}

export interface ConnectionInfo {
  transport: string;
  ip: string;
  key: string;
  signature_scheme: string;
  shell_port: number;
  iopub_port: number;
  stdin_port: number;
  control_port: number;
  hb_port: number;
  kernel_name?: string;
}

export class ConnectionFileError extends Error {
  override name = "ConnectionFileError";
}

export function readConnectionFile(path: string): ConnectionInfo {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    throw new ConnectionFileError(`cannot read connection file ${path}: ${(err as Error).message}; pass the file Jupyter wrote with -f`);
  }
  if (!isObject(parsed)) throw new ConnectionFileError(`connection file ${path} does not hold a JSON object`);
  const info = parsed as Partial<ConnectionInfo>;
  for (const port of ["shell_port", "iopub_port", "stdin_port", "control_port", "hb_port"] as const) {
    if (typeof info[port] !== "number") throw new ConnectionFileError(`connection file ${path} lacks a numeric ${port}`);
  }
  // Fail closed: only an explicit empty key means "unsigned", as the spec allows; a missing one is a mistake.
  if (typeof info.key !== "string") {
    throw new ConnectionFileError(
      `connection file ${path} has no "key" (or it is not a string), so messages could not be authenticated; ` +
        `the kernel refuses to start. Give it the client's key, or "key": "" to run unsigned on a trusted machine`,
    );
  }
  return {
    transport: info.transport ?? "tcp",
    ip: info.ip ?? "127.0.0.1",
    key: info.key,
    signature_scheme: info.signature_scheme ?? "hmac-sha256",
    shell_port: info.shell_port!,
    iopub_port: info.iopub_port!,
    stdin_port: info.stdin_port!,
    control_port: info.control_port!,
    hb_port: info.hb_port!,
    kernel_name: info.kernel_name,
  };
}

export function endpoint(info: ConnectionInfo, port: number): string {
  return info.transport === "ipc" ? `ipc://${info.ip}-${port}` : `${info.transport}://${info.ip}:${port}`;
}

/** The socket files an ipc kernel binds (none for tcp): the kernel removes them when it shuts down. */
export function ipcSocketFiles(info: ConnectionInfo): string[] {
  if (info.transport !== "ipc") return [];
  return [info.shell_port, info.iopub_port, info.stdin_port, info.control_port, info.hb_port].map((port) => `${info.ip}-${port}`);
}

function isObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Remembers recent signatures in memory shared between threads, so a message accepted on one
 * channel (shell, main thread) is a replay on another (control, worker thread) too.
 * Two generations of an open-addressing table of 64-bit signature prefixes: when the current one is
 * half full the other is cleared and becomes current, so at least `slots / 2` recent signatures are kept.
 */
export class ReplayGuard {
  private static readonly MAX_PROBE = 64;
  readonly buffer: SharedArrayBuffer;
  private readonly cells: Int32Array;
  private readonly slots: number;

  constructor(bufferOrSlots: SharedArrayBuffer | number = 65536) {
    if (typeof bufferOrSlots === "number") {
      if (bufferOrSlots < 4 || (bufferOrSlots & (bufferOrSlots - 1)) !== 0) throw new RangeError("ReplayGuard slots must be a power of two >= 4");
      this.buffer = new SharedArrayBuffer((2 + 4 * bufferOrSlots) * 4);
    } else {
      this.buffer = bufferOrSlots;
    }
    this.cells = new Int32Array(this.buffer);
    this.slots = (this.cells.length - 2) / 4;
  }

  /** True when the signature was seen before; otherwise remembers it. `digest` is the raw HMAC. */
  checkAndRemember(digest: Buffer): boolean {
    const a = digest.readInt32LE(0) | 1; // never 0: 0 marks an empty slot
    const b = digest.readInt32LE(4);
    const generation = Atomics.load(this.cells, 0);
    for (const g of [generation, 1 - generation]) {
      if (this.find(g, a, b)) return true;
    }
    this.insert(generation, a, b);
    return false;
  }

  private base(generation: number): number {
    return 2 + generation * 2 * this.slots;
  }

  private find(generation: number, a: number, b: number): boolean {
    const base = this.base(generation);
    const mask = this.slots - 1;
    for (let i = 0, slot = b & mask; i < ReplayGuard.MAX_PROBE; i++, slot = (slot + 1) & mask) {
      const at = base + 2 * slot;
      const stored = Atomics.load(this.cells, at);
      if (stored === 0) return false;
      if (stored === a && Atomics.load(this.cells, at + 1) === b) return true;
    }
    return false;
  }

  private insert(generation: number, a: number, b: number): void {
    const base = this.base(generation);
    const mask = this.slots - 1;
    for (let i = 0, slot = b & mask; i < ReplayGuard.MAX_PROBE; i++, slot = (slot + 1) & mask) {
      const at = base + 2 * slot;
      if (Atomics.compareExchange(this.cells, at, 0, a) === 0) {
        Atomics.store(this.cells, at + 1, b);
        break;
      }
    }
    if (Atomics.add(this.cells, 1, 1) + 1 >= this.slots / 2 && Atomics.compareExchange(this.cells, 0, generation, 1 - generation) === generation) {
      // The older generation is forgotten and refilled from now on.
      this.cells.fill(0, this.base(1 - generation), this.base(1 - generation) + 2 * this.slots);
      Atomics.store(this.cells, 1, 0);
    }
  }
}

/**
 * Signs outgoing and verifies incoming messages. An empty key disables signing, as the spec says.
 */
export class Signer {
  private readonly algorithm: string | undefined;

  constructor(
    private readonly key: string,
    scheme = "hmac-sha256",
    readonly replays: ReplayGuard = new ReplayGuard(),
  ) {
    if (key === "") {
      this.algorithm = undefined;
    } else {
      const match = /^hmac-(.+)$/.exec(scheme);
      if (!match) throw new ConnectionFileError(`unsupported signature_scheme ${scheme}; use hmac-sha256`);
      this.algorithm = match[1];
      createHmac(this.algorithm, "probe"); // throws now rather than on the first message
    }
  }

  get enabled(): boolean {
    return this.algorithm !== undefined;
  }

  private digest(parts: readonly Buffer[]): Buffer {
    const hmac = createHmac(this.algorithm!, this.key);
    for (let i = 0; i < parts.length; i++) hmac.update(parts[i]);
    return hmac.digest();
  }

  sign(parts: readonly Buffer[]): string {
    if (this.algorithm === undefined) return "";
    return this.digest(parts).toString("hex");
  }

  /** Throws WireError when the signature is wrong or was already used. */
  verify(signature: Buffer, parts: readonly Buffer[]): void {
    if (this.algorithm === undefined) return;
    const digest = this.digest(parts);
    const expected = BufferFrom(digest.toString("hex"), "ascii");
    if (signature.length !== expected.length || !timingSafeEqual(signature, expected)) {
      throw new WireError("invalid signature");
    }
    if (this.replays.checkAndRemember(digest)) throw new WireError("replayed signature");
  }
}

/**
 * Deeper nesting than any Jupyter message needs, far shallower than what overflows the stack of the
 * recursive JSON.stringify and structured clone that echo a header back (measured: ~8,000 levels).
 */
export const MAX_JSON_DEPTH = 128;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_ARRAY = 0x5b;
const OPEN_OBJECT = 0x7b;
const CLOSE_ARRAY = 0x5d;
const CLOSE_OBJECT = 0x7d;

/** The deepest nesting of arrays and objects in JSON text, counted over its bytes in one pass. */
export function jsonDepth(frame: Uint8Array, limit = Infinity): number {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  for (let i = 0; i < frame.length; i++) {
    const byte = frame[i];
    if (inString) {
      if (byte === BACKSLASH) i++;
      else if (byte === QUOTE) inString = false;
    } else if (byte === QUOTE) inString = true;
    else if (byte === OPEN_ARRAY || byte === OPEN_OBJECT) {
      if (++depth > deepest) {
        deepest = depth;
        if (deepest > limit) return deepest;
      }
    } else if (byte === CLOSE_ARRAY || byte === CLOSE_OBJECT) depth--;
  }
  return deepest;
}

function parseJsonFrame(frame: Buffer, what: string): JsonObject {
  // A frame shorter than the limit cannot nest deeper than it.
  if (frame.length > MAX_JSON_DEPTH && jsonDepth(frame, MAX_JSON_DEPTH) > MAX_JSON_DEPTH) {
    throw new WireError(`${what} nests arrays or objects more than ${MAX_JSON_DEPTH} levels deep`);
  }
  let value: unknown;
  try {
    value = JSONParse(frame.toString("utf8"));
  } catch {
    throw new WireError(`${what} is not valid JSON`);
  }
  if (!isObject(value)) throw new WireError(`${what} is not a JSON object`);
  return value;
}

const REQUIRED_HEADER_FIELDS = ["msg_id", "msg_type", "session"] as const;

/** Parses one multipart message: identities, delimiter, signature, four JSON frames, buffers. */
export function decode(frames: readonly Buffer[], signer: Signer): Received {
  let at = 0;
  while (at < frames.length && !BufferPrototypeEquals(frames[at], DELIMITER)) at++;
  if (at === frames.length) throw new WireError("no <IDS|MSG> delimiter");
  if (frames.length - at - 1 < 5) throw new WireError(`expected 5 frames after the delimiter, got ${frames.length - at - 1}`);
  const signature = frames[at + 1];
  const parts = ArrayPrototypeSlice(frames, at + 2, at + 6);
  // Verify before parsing: unsigned bytes are never interpreted.
  signer.verify(signature, parts);
  const header = parseJsonFrame(parts[0], "header");
  for (let i = 0; i < REQUIRED_HEADER_FIELDS.length; i++) {
    const field = REQUIRED_HEADER_FIELDS[i];
    if (typeof header[field] !== "string" || header[field] === "") throw new WireError(`header.${field} missing or not a string`);
  }
  const message: Message = {
    header: {
      username: "",
      date: "",
      version: PROTOCOL_VERSION,
      ...header,
    } as Header,
    parent_header: parseJsonFrame(parts[1], "parent_header"),
    metadata: parseJsonFrame(parts[2], "metadata"),
    content: parseJsonFrame(parts[3], "content"),
    buffers: ArrayPrototypeSlice(frames, at + 6),
  };
  return { identities: ArrayPrototypeSlice(frames, 0, at), message };
}

/** Serialises and signs a message; identities go first for ROUTER sockets, a topic for PUB. */
export function encode(message: Message, identities: readonly Buffer[], signer: Signer): Buffer[] {
  const parts = [
    BufferFrom(JSONStringifyPlain(message.header)),
    BufferFrom(JSONStringifyPlain(message.parent_header)),
    BufferFrom(JSONStringifyPlain(message.metadata)),
    BufferFrom(JSONStringifyPlain(message.content)),
  ];
  const frames: Buffer[] = ArrayPrototypeSlice(identities);
  ArrayPrototypePush(frames, DELIMITER, BufferFrom(signer.sign(parts), "ascii"), parts[0], parts[1], parts[2], parts[3]);
  for (let i = 0; i < message.buffers.length; i++) ArrayPrototypePush(frames, message.buffers[i]);
  return frames;
}

/** Builds the messages a kernel sends: its own session id, a fresh msg_id each time. */
export class MessageFactory {
  constructor(readonly session: string = randomUUID(), private readonly username = "kernel") {}

  make(msgType: string, content: JsonObject, parent?: Header | JsonObject, metadata: JsonObject = {}, buffers: Buffer[] = []): Message {
    return {
      header: {
        msg_id: randomUUID(),
        session: this.session,
        username: this.username,
        date: DateNowISOString(),
        msg_type: msgType,
        version: PROTOCOL_VERSION,
      },
      parent_header: parent ?? {},
      metadata,
      content,
      buffers,
    };
  }
}

/** Logs dropped messages without letting a flood of them flood stderr: the first 20, then every 1,000th. */
export class DropLog {
  private count = 0;

  constructor(private readonly write: (text: string) => void) {}

  dropped(channel: string, reason: string): void {
    this.count += 1;
    if (this.count <= 20 || this.count % 1000 === 0) {
      this.write(`dropped a message on ${channel}: ${reason} (${this.count} dropped so far)`);
    }
  }
}
