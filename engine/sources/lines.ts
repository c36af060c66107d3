// Turns a byte stream into text lines: UTF-8 decoded across chunk boundaries, split on \n and
// \r\n, with a line cut across chunks joined again. Shared by the socket and file sources.

import { StringDecoder } from "node:string_decoder";

export class LineSplitter {
  private decoder = new StringDecoder("utf8");
  private partial = "";

  /** The complete lines in this chunk (plus what was left over from earlier chunks). */
  push(chunk: Buffer | string): string[] {
    const text = this.partial + (typeof chunk === "string" ? chunk : this.decoder.write(chunk));
    const lines = text.split("\n");
    this.partial = lines.pop() ?? "";
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!;
      if (line.endsWith("\r")) lines[i] = line.slice(0, -1);
    }
    // A "\r" at the very end may be the first half of "\r\n": it stays in `partial` until we know.
    return lines;
  }

  /** The stream ended: the trailing line without a newline, if any (a lone trailing \r is dropped). */
  end(): string[] {
    let rest = this.partial + this.decoder.end();
    this.partial = "";
    this.decoder = new StringDecoder("utf8");
    if (rest.endsWith("\r")) rest = rest.slice(0, -1);
    return rest.length > 0 ? [rest] : [];
  }
}

/** A whole text's lines, split as Hadoop's TextInputFormat does: \n or \r\n, no empty last line. */
export function splitLines(text: string): string[] {
  if (text.length === 0) return [];
  const lines = text.split(/\r?\n/);
  if (lines[lines.length - 1] === "") lines.pop();
  return lines;
}
