// Turns a byte stream into text lines: UTF-8 decoded across chunk boundaries, split on \n and
// \r\n, with a line cut across chunks joined again. Shared by the socket and file sources.
// Linear in the input: each chunk is split once, and a line spanning chunks is kept as pieces joined
// once it ends (re-splitting the growing remainder made one 100 MB line cost minutes).

import { StringDecoder } from "node:string_decoder";

/** A line longer than the limit, skipped: how long it was (characters). */
export type OversizedLineHandler = (length: number) => void;

export class LineSplitter {
  private decoder = new StringDecoder("utf8");
  /** The line begun in earlier chunks, in pieces. */
  private pieces: string[] = [];
  private partialLength = 0;
  /** The current line passed the limit: it is dropped up to its newline, only its length is counted. */
  private skipping = false;

  /**
   * @param maxLineLength lines longer than this many characters are skipped and reported (default: no limit)
   * @param onOversized told the length of each skipped line
   */
  constructor(
    private readonly maxLineLength = Infinity,
    private readonly onOversized?: OversizedLineHandler,
  ) {}

  /** The complete lines in this chunk (plus what was left over from earlier chunks). */
  push(chunk: Buffer | string): string[] {
    const text = typeof chunk === "string" ? chunk : this.decoder.write(chunk);
    const parts = text.split("\n");
    const rest = parts.pop() as string;
    const out: string[] = [];
    if (parts.length > 0) {
      const first = this.complete(parts[0]!);
      if (first !== undefined) out.push(first);
      for (let i = 1; i < parts.length; i++) {
        const line = this.accept(parts[i]!);
        if (line !== undefined) out.push(line);
      }
    }
    // A "\r" at the very end may be the first half of "\r\n": it stays in the pieces until we know.
    if (rest.length > 0) this.grow(rest);
    return out;
  }

  /** The stream ended: the trailing line without a newline, if any (a lone trailing \r is dropped). */
  end(): string[] {
    const tail = this.decoder.end();
    this.decoder = new StringDecoder("utf8");
    if (tail.length > 0) this.grow(tail);
    if (!this.skipping && this.partialLength === 0) return [];
    const line = this.complete("");
    return line !== undefined && line.length > 0 ? [line] : [];
  }

  private grow(piece: string): void {
    this.partialLength += piece.length;
    if (this.skipping) return;
    if (this.partialLength > this.maxLineLength) {
      this.skipping = true;
      this.pieces = [];
      return;
    }
    this.pieces.push(piece);
  }

  /** The line begun earlier ends with `last`. */
  private complete(last: string): string | undefined {
    if (this.partialLength === 0 && !this.skipping) return this.accept(last);
    const length = this.partialLength + last.length;
    const skipped = this.skipping;
    const pieces = this.pieces;
    this.pieces = [];
    this.partialLength = 0;
    this.skipping = false;
    if (skipped) {
      this.onOversized?.(length);
      return undefined;
    }
    pieces.push(last);
    return this.accept(pieces.join(""));
  }

  /** A line found whole in one chunk. */
  private accept(line: string): string | undefined {
    const stripped = stripCR(line);
    if (stripped.length > this.maxLineLength) {
      this.onOversized?.(stripped.length);
      return undefined;
    }
    return stripped;
  }
}

function stripCR(line: string): string {
  return line.endsWith("\r") ? line.slice(0, -1) : line;
}

/** A whole text's lines, split as Hadoop's TextInputFormat does: \n or \r\n, no empty last line. */
export function splitLines(text: string): string[] {
  if (text.length === 0) return [];
  const lines = text.split(/\r?\n/);
  if (lines[lines.length - 1] === "") lines.pop();
  return lines;
}
