// Execution history as IPython keeps it: numbered sessions, one per kernel start, whose inputs (and
// text outputs) survive restarts; history_request reads tail, range and glob search across sessions.
// The store is two append-only JSON-lines files in the Jupyter data directory: every kernel appends,
// none rewrites, and a damaged line costs that line only (with a warning), never the kernel's start.
import { randomUUID } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { ArrayPrototypePush, JSONParse, JSONStringifyPlain, SafeMap, StringPrototypeSplit } from "./primordials.js";

export interface HistoryEntry {
  session: number;
  line: number;
  input: string;
  output: string | null;
}

/** What history_request needs; the dispatcher records every stored execution through it. */
export interface History {
  /** This kernel's session number. */
  readonly session: number;
  recordInput(line: number, input: string): void;
  recordOutput(line: number, output: string): void;
  /** The last n entries of all sessions, oldest first. */
  tail(n: number): HistoryEntry[];
  /** Lines [start, stop) of a session; session <= 0 counts back from this one, negative lines from the end. */
  range(session: number, start: number, stop: number | undefined): HistoryEntry[];
  /** Entries whose input matches a sqlite GLOB pattern, oldest first; the last n only when n is given. */
  search(pattern: string, n: number | undefined, unique: boolean): HistoryEntry[];
  /** Problems met since the last call (a damaged file, a failed write), to show the user once. */
  takeWarnings(): string[];
}

export class HistoryStoreError extends Error {
  override name = "HistoryStoreError";
}

/** Entries kept in memory, ordered by (session, line) when asked. */
class EntryIndex {
  // Recorded on every execution: built-ins as captured at start (a cell may replace Map or JSON).
  private readonly byKey = new SafeMap<string, HistoryEntry>();
  private sorted: HistoryEntry[] | undefined = [];

  input(session: number, line: number, input: string): void {
    const key = `${session}:${line}`;
    const entry = this.byKey.get(key);
    if (entry) entry.input = input;
    else {
      this.byKey.set(key, { session, line, input, output: null });
      this.sorted = undefined;
    }
  }

  output(session: number, line: number, output: string): void {
    const entry = this.byKey.get(`${session}:${line}`);
    if (entry) entry.output = output;
  }

  all(): HistoryEntry[] {
    this.sorted ??= [...this.byKey.values()].sort((a, b) => a.session - b.session || a.line - b.line);
    return this.sorted;
  }
}

abstract class BaseHistory implements History {
  protected readonly entries = new EntryIndex();
  private warnings: string[] = [];

  abstract readonly session: number;

  recordInput(line: number, input: string): void {
    this.entries.input(this.session, line, input);
  }

  recordOutput(line: number, output: string): void {
    this.entries.output(this.session, line, output);
  }

  /** Brings in what other kernels appended since the last look (file-backed stores). */
  protected refresh(): void {}

  tail(n: number): HistoryEntry[] {
    this.refresh();
    return n <= 0 ? [] : this.entries.all().slice(-n);
  }

  range(session: number, start: number, stop: number | undefined): HistoryEntry[] {
    this.refresh();
    const wanted = session <= 0 ? this.session + session : session;
    const lines = this.entries.all().filter((e) => e.session === wanted);
    // IPython's slicing over the session's numbered lines: negative counts from the end, 0 or none is the end.
    const end = (lines.length > 0 ? lines[lines.length - 1].line : 0) + 1;
    const from = start < 0 ? start + end : start;
    const to = stop === undefined || stop === 0 || stop > end ? end : stop < 0 ? stop + end : stop;
    return lines.filter((e) => e.line >= from && e.line < to);
  }

  search(pattern: string, n: number | undefined, unique: boolean): HistoryEntry[] {
    this.refresh();
    const matches = globMatcher(pattern);
    let found = this.entries.all().filter((e) => matches(e.input));
    if (unique) {
      // The latest occurrence of each input, in history order.
      const last = new Map<string, HistoryEntry>();
      for (const e of found) {
        last.delete(e.input);
        last.set(e.input, e);
      }
      found = [...last.values()];
    }
    return n === undefined ? found : n <= 0 ? [] : found.slice(-n);
  }

  protected warn(text: string): void {
    ArrayPrototypePush(this.warnings, text);
  }

  takeWarnings(): string[] {
    const taken = this.warnings;
    this.warnings = [];
    return taken;
  }
}

/** History of this kernel process only (tests, or STREAMBOOK_HISTORY_FILE=":memory:"). */
export class MemoryHistory extends BaseHistory {
  constructor(readonly session = 1) {
    super();
  }
}

interface SessionClaim {
  session: number;
  token: string;
}

/**
 * History in `<dir>/history.jsonl` (one record per line: an input, or the output of a line) with the
 * sessions numbered in `<dir>/sessions.jsonl`. A kernel claims max+1 by appending a line with a token of
 * its own; the first claim of a number in file order wins, so kernels starting together never share one.
 */
export class FileHistory extends BaseHistory {
  readonly session: number;
  readonly file: string;
  private readonly sessionsFile: string;
  private fd: number | undefined;
  private writable = true;
  private readOffset = 0;
  private pendingText = "";
  private damagedLines = 0;

  constructor(readonly dir: string, private readonly log: (text: string) => void = () => {}) {
    super();
    this.file = path.join(dir, "history.jsonl");
    this.sessionsFile = path.join(dir, "sessions.jsonl");
    let session: number;
    try {
      fs.mkdirSync(dir, { recursive: true });
      session = this.claimSession();
    } catch (err) {
      // No usable folder: this session's history lives in memory; earlier sessions are out of reach.
      this.writable = false;
      session = 1;
      this.problem(`history is kept in memory only: ${(err as Error).message}`);
    }
    this.session = session;
  }

  private claimSession(): number {
    const token = randomUUID();
    for (let attempt = 0; attempt < 20; attempt++) {
      const claims = this.readClaims();
      const number = claims.reduce((max, c) => Math.max(max, c.session), 0) + 1;
      appendLine(this.sessionsFile, JSONStringifyPlain({ session: number, token, start: new Date().toISOString() }));
      const winner = this.readClaims().find((c) => c.session === number);
      if (winner?.token === token) return number;
    }
    throw new HistoryStoreError(`could not claim a session number in ${this.sessionsFile} (20 attempts)`);
  }

  private readClaims(): SessionClaim[] {
    let text: string;
    try {
      text = fs.readFileSync(this.sessionsFile, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw err;
    }
    const claims: SessionClaim[] = [];
    for (const line of StringPrototypeSplit(text, "\n")) {
      const record = parseRecord(line);
      if (record && Number.isSafeInteger(record.session) && (record.session as number) > 0 && typeof record.token === "string") {
        ArrayPrototypePush(claims, { session: record.session as number, token: record.token });
      }
    }
    return claims;
  }

  override recordInput(line: number, input: string): void {
    super.recordInput(line, input);
    this.write({ session: this.session, line, input });
  }

  override recordOutput(line: number, output: string): void {
    super.recordOutput(line, output);
    this.write({ session: this.session, line, output });
  }

  private write(record: Record<string, unknown>): void {
    if (!this.writable) return;
    try {
      if (this.fd === undefined) {
        this.fd = fs.openSync(this.file, "a");
        // A line cut short by a crash would swallow the next record: end it first.
        const size = fs.fstatSync(this.fd).size;
        if (size > 0) {
          const last = Buffer.alloc(1);
          const read = fs.openSync(this.file, "r");
          try {
            fs.readSync(read, last, 0, 1, size - 1);
          } finally {
            fs.closeSync(read);
          }
          if (last[0] !== 0x0a) fs.writeSync(this.fd, "\n");
        }
      }
      fs.writeSync(this.fd, JSONStringifyPlain(record) + "\n");
    } catch (err) {
      this.writable = false;
      this.problem(`history could not be written to ${this.file} (${(err as Error).message}); this session's history is kept in memory from now on`);
    }
  }

  /** Reads what was appended since the last call; a trailing partial line waits for its end. */
  protected override refresh(): void {
    let fd: number;
    try {
      fd = fs.openSync(this.file, "r");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") this.problem(`history in ${this.file} cannot be read: ${(err as Error).message}`);
      return;
    }
    try {
      const size = fs.fstatSync(fd).size;
      if (size < this.readOffset) {
        // The file was replaced or cut: read it again from the start.
        this.readOffset = 0;
        this.pendingText = "";
      }
      if (size === this.readOffset) return;
      const chunk = Buffer.alloc(size - this.readOffset);
      let got = 0;
      while (got < chunk.length) {
        const n = fs.readSync(fd, chunk, got, chunk.length - got, this.readOffset + got);
        if (n === 0) break;
        got += n;
      }
      this.readOffset += got;
      const text = this.pendingText + chunk.subarray(0, got).toString("utf8");
      const lines = StringPrototypeSplit(text, "\n");
      this.pendingText = lines.pop() ?? "";
      let damaged = 0;
      for (const line of lines) if (line.trim() !== "" && !this.apply(line)) damaged++;
      if (damaged > 0) {
        this.damagedLines += damaged;
        this.problem(`${damaged} damaged line${damaged === 1 ? "" : "s"} in ${this.file} skipped (${this.damagedLines} so far); the rest of the history is intact`);
      }
    } catch (err) {
      this.problem(`history in ${this.file} cannot be read: ${(err as Error).message}`);
    } finally {
      fs.closeSync(fd);
    }
  }

  private apply(line: string): boolean {
    const record = parseRecord(line);
    if (!record || !Number.isSafeInteger(record.session) || !Number.isSafeInteger(record.line)) return false;
    const session = record.session as number;
    const number = record.line as number;
    if (typeof record.input === "string") this.entries.input(session, number, record.input);
    else if (typeof record.output === "string") this.entries.output(session, number, record.output);
    else return false;
    return true;
  }

  private problem(text: string): void {
    this.log(text);
    this.warn(text);
  }

  close(): void {
    if (this.fd !== undefined) fs.closeSync(this.fd);
    this.fd = undefined;
  }
}

function parseRecord(line: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSONParse(line);
    return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** One write(2) with O_APPEND: lines from kernels appending at once do not interleave. */
function appendLine(file: string, line: string): void {
  fs.appendFileSync(file, line + "\n");
}

/**
 * STREAMBOOK_HISTORY_FILE picks the folder's place: a path to the history file (its sessions file goes
 * beside it), or ":memory:" for no file at all; otherwise `<Jupyter data dir>/streambook/`.
 */
export function openHistory(dataDir: string, env: NodeJS.ProcessEnv, log: (text: string) => void): History {
  const chosen = env.STREAMBOOK_HISTORY_FILE;
  if (chosen === ":memory:") return new MemoryHistory();
  if (chosen !== undefined && chosen !== "") return new FileHistory(path.dirname(path.resolve(chosen)), log);
  return new FileHistory(path.join(dataDir, "streambook"), log);
}

type CharTest = (codePoint: number) => boolean;

/**
 * sqlite's GLOB, as IPython's history search uses it: `*` any run, `?` one character, `[a-z]` and
 * `[^...]` classes, case-sensitive, whole input. Matched by simulating the pattern as an automaton:
 * time is input length x pattern length, never exponential (a backtracking RegExp took 47 s on
 * `*a*a*a*a*b` against 200 "a"s); patterns are short, inputs are whole cells.
 */
export function globMatcher(pattern: string): (input: string) => boolean {
  // Tokens: `null` is a star, a function tests one character.
  const tokens: (CharTest | null)[] = [];
  const chars = Array.from(pattern, (c) => c.codePointAt(0)!);
  for (let i = 0; i < chars.length; i++) {
    const c = chars[i];
    if (c === 0x2a /* * */) {
      if (tokens[tokens.length - 1] !== null || tokens.length === 0) tokens.push(null);
    } else if (c === 0x3f /* ? */) tokens.push(() => true);
    else if (c === 0x5b /* [ */) {
      const parsed = parseClass(chars, i + 1);
      if (parsed === undefined) return () => false; // sqlite: an unclosed class matches nothing
      tokens.push(parsed.test);
      i = parsed.end;
    } else tokens.push((x) => x === c);
  }
  const n = tokens.length;
  return (input: string): boolean => {
    // active[k]: the first k tokens can match the input read so far.
    let active = new Uint8Array(n + 1);
    let next = new Uint8Array(n + 1);
    active[0] = 1;
    closeOverStars(active, tokens);
    for (const ch of input) {
      const cp = ch.codePointAt(0)!;
      next.fill(0);
      let any = false;
      for (let k = 0; k < n; k++) {
        if (!active[k]) continue;
        const token = tokens[k];
        if (token === null) {
          next[k] = 1; // a star eats the character and stays
          any = true;
        } else if (token(cp)) {
          next[k + 1] = 1;
          any = true;
        }
      }
      if (!any) return false;
      closeOverStars(next, tokens);
      [active, next] = [next, active];
    }
    return active[n] === 1;
  };
}

/** A star may also match nothing: whoever reaches it reaches the token after it. */
function closeOverStars(states: Uint8Array, tokens: readonly (CharTest | null)[]): void {
  for (let k = 0; k < tokens.length; k++) if (states[k] && tokens[k] === null) states[k + 1] = 1;
}

/** A `[...]` class starting after its `[`: `^` negates, a leading `]` is literal, `a-z` is a range. */
function parseClass(chars: readonly number[], start: number): { test: CharTest; end: number } | undefined {
  let i = start;
  let negate = false;
  if (chars[i] === 0x5e /* ^ */) {
    negate = true;
    i++;
  }
  const singles = new Set<number>();
  const ranges: [number, number][] = [];
  if (chars[i] === 0x5d /* ] */) {
    singles.add(0x5d);
    i++;
  }
  for (; i < chars.length && chars[i] !== 0x5d; i++) {
    if (chars[i + 1] === 0x2d /* - */ && i + 2 < chars.length && chars[i + 2] !== 0x5d) {
      ranges.push([chars[i], chars[i + 2]]);
      i += 2;
    } else singles.add(chars[i]);
  }
  if (i >= chars.length) return undefined;
  const test: CharTest = (cp) => (singles.has(cp) || ranges.some(([lo, hi]) => cp >= lo && cp <= hi)) !== negate;
  return { test, end: i };
}
