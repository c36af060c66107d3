// Stack mapping: errors from cell code are shown with the cell's own line:column ("<cell 3>:2:5"),
// through the source map of the cell's JavaScript; the kernel's own frames are hidden.
import * as path from "node:path";
import * as util from "node:util";
import { SafeMap, withOriginals } from "./primordials.js";

/** One generated line's mapping segments: [generated column, source line, source column], sorted. */
type LineSegments = Array<[number, number, number]>;

export interface CellSourceMap {
  /** Shown in tracebacks, e.g. "<cell 3>". */
  label: string;
  /** Per generated line of the transpiled JavaScript. */
  lines: LineSegments[];
  /** Column shifts the kernel's rewrite added: per final line, [final column, delta] in order. */
  shifts: Map<number, Array<[number, number]>>;
}

/** Every cell ever compiled, by the numeric id in its script filename. Shared by all interpreters. */
// Built-ins as captured at start (./primordials.ts): this runs for every cell, after cells that may replace them.
const cells = new SafeMap<number, CellSourceMap>();
let nextCellId = 1;

/** The filename marker V8 prints for cell scripts; the id is unique per compiled cell. */
export function cellFilename(cwd: string, id: number): string {
  // Not path.join: Node's path module looks up Array.prototype.push, which a cell may have replaced.
  return `${cwd.endsWith(path.sep) ? cwd : cwd + path.sep}[streambook-cell-${id}]`;
}

export function registerCell(map: CellSourceMap): number {
  const id = nextCellId++;
  cells.set(id, map);
  return id;
}

export function forgetCell(id: number): void {
  cells.delete(id);
}

const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const B64_INDEX = new Map([...B64].map((c, i) => [c, i]));

/** Decodes a source map's `mappings` (VLQ) into per-line segments (single source, names ignored). */
export function decodeMappings(mappings: string): LineSegments[] {
  const lines: LineSegments[] = [];
  let srcLine = 0;
  let srcCol = 0;
  for (const lineText of mappings.split(";")) {
    const segments: LineSegments = [];
    let genCol = 0;
    for (const seg of lineText.split(",")) {
      if (!seg) continue;
      const fields: number[] = [];
      let value = 0;
      let shift = 0;
      for (const ch of seg) {
        const digit = B64_INDEX.get(ch) ?? 0;
        value += (digit & 31) << shift;
        if (digit & 32) shift += 5;
        else {
          fields.push(value & 1 ? -(value >>> 1) : value >>> 1);
          value = 0;
          shift = 0;
        }
      }
      genCol += fields[0] ?? 0;
      if (fields.length >= 4) {
        srcLine += fields[2];
        srcCol += fields[3];
        segments.push([genCol, srcLine, srcCol]);
      }
    }
    lines.push(segments);
  }
  return lines;
}

/** Maps a 1-based line/column of the final cell JavaScript to the cell's TypeScript (1-based). */
export function mapPosition(map: CellSourceMap, line: number, column: number): { line: number; column: number } {
  let col = column - 1;
  for (const [at, delta] of map.shifts.get(line - 1) ?? []) if (at <= column - 1) col -= delta;
  const segs = map.lines[line - 1];
  if (!segs || segs.length === 0) {
    // No mapping on this line (e.g. a kernel-added line): use the nearest mapped line above.
    for (let l = Math.min(line - 2, map.lines.length - 1); l >= 0; l--) {
      const s = map.lines[l];
      if (s && s.length) return { line: s[s.length - 1][1] + 1, column: 1 };
    }
    return { line, column };
  }
  let best = segs[0];
  for (const seg of segs) {
    if (seg[0] <= col) best = seg;
    else break;
  }
  return { line: best[1] + 1, column: best[2] + Math.max(0, col - best[0]) + 1 };
}

const CELL_REF = /([^\s()]*\[streambook-cell-(\d+)\]):(\d+):(\d+)/;
const KERNEL_DIR = __dirname;

function isCellFrame(line: string): boolean {
  return CELL_REF.test(line);
}

function isHiddenFrame(line: string): boolean {
  return (
    line.includes("node:internal") ||
    line.includes("(node:") ||
    line.includes("at node:") ||
    line.includes(KERNEL_DIR) ||
    line.includes("<anonymous>")
  );
}

/** Rewrites one "    at ..." line's cell references to "<cell N>:line:col". */
function mapFrame(line: string): string {
  return line.replace(new RegExp(CELL_REF.source, "g"), (whole, _file: string, id: string, l: string, c: string) => {
    const map = cells.get(Number(id));
    if (!map) return whole;
    const pos = mapPosition(map, Number(l), Number(c));
    return `${map.label}:${pos.line}:${pos.column}`;
  });
}

/**
 * The frames of a stack that matter to the user: cell frames mapped, frames of the code that called
 * the cell (the kernel, vm, the test runner) cut, Node's internals dropped.
 */
export function mapStackFrames(stack: string): string[] {
  const frames = stack.split("\n").filter((l) => /^\s+at /.test(l));
  let last = -1;
  frames.forEach((f, i) => {
    if (isCellFrame(f)) last = i;
  });
  const kept = last >= 0 ? frames.slice(0, last + 1) : frames;
  return kept.filter((f) => isCellFrame(f) || !isHiddenFrame(f)).map((f) => mapFrame(f).replace(/^\s+/, "    "));
}

export interface ErrorParts {
  ename: string;
  evalue: string;
  traceback: string[];
}

/** Splits any thrown value into Jupyter's ename/evalue/traceback, with the stack mapped to cells. */
/** A cell may have replaced String.prototype.split or Array.prototype.map: describe with the originals. */
export function describeError(err: unknown): ErrorParts {
  return withOriginals(() => describeErrorNow(err));
}

function describeErrorNow(err: unknown): ErrorParts {
  if (util.types.isNativeError(err) || (typeof err === "object" && err !== null && "stack" in err && "message" in err)) {
    const e = err as Error;
    const ctor = (e as { constructor?: { name?: unknown } }).constructor;
    const ctorName = typeof ctor?.name === "string" && ctor.name !== "Error" ? ctor.name : undefined;
    const ename = String(e.name && e.name !== "Error" ? e.name : ctorName ?? e.name ?? "Error");
    const evalue = String(e.message ?? "");
    const frames = typeof e.stack === "string" ? mapStackFrames(e.stack) : [];
    return { ename, evalue, traceback: [`${ename}: ${evalue}`, ...frames] };
  }
  const evalue = util.inspect(err, { colors: false });
  return { ename: "Error", evalue, traceback: [`Uncaught ${evalue}`] };
}
