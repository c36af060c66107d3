// SQL errors, with Spark's names where Spark has one: each says what went wrong and what to do.

/** A query that DuckDB could not bind or run (Spark's AnalysisException); carries the query and the position. */
export class AnalysisException extends Error {
  /** 1-based line and column of the error in `query`, when DuckDB reported one. */
  readonly line?: number;
  readonly column?: number;

  constructor(
    message: string,
    readonly query?: string,
    position?: { line: number; column: number },
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
    this.line = position?.line;
    this.column = position?.column;
  }
}

/** A query that does not parse (Spark's ParseException). */
export class ParseException extends AnalysisException {}

/** A data file that exists but cannot be read as its format says (a corrupt Parquet footer, a bad CSV row). */
export class FileFormatError extends Error {
  constructor(
    message: string,
    readonly path: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A sink that could not write a batch (the batch's job fails; a later replay writes it again). */
export class SqlSinkError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** @duckdb/node-api is missing or does not load on this platform. */
export class DuckDBUnavailableError extends Error {
  constructor(cause: unknown) {
    super(
      `DuckDB could not be loaded (${cause instanceof Error ? cause.message : String(cause)}); install it next to streambook with \`npm install @duckdb/node-api\``,
      { cause },
    );
    this.name = new.target.name;
  }
}

/**
 * Turns a DuckDB error into AnalysisException / ParseException with the query attached. DuckDB's own
 * message already shows the line with a caret ("LINE 1: select * form t\n ^"); the position is read off it.
 */
export function sqlError(e: unknown, query: string): Error {
  if (!(e instanceof Error) || e instanceof AnalysisException) return e as Error;
  const msg = e.message;
  const position = positionOf(msg, query);
  const where = position ? ` (line ${position.line}, column ${position.column})` : "";
  const text = `${msg}\n\nin query${where}:\n${query}`;
  if (/Parser Error/.test(msg)) return new ParseException(text, query, position, { cause: e });
  return new AnalysisException(text, query, position, { cause: e });
}

function positionOf(msg: string, query: string): { line: number; column: number } | undefined {
  const m = /\nLINE (\d+): (.*)\n( *)\^/.exec(msg);
  if (!m) return undefined;
  const line = Number(m[1]);
  const shown = m[2] as string;
  const caret = (m[3] as string).length - `LINE ${m[1]}: `.length;
  const lineText = query.split("\n")[line - 1] ?? "";
  // DuckDB elides long lines ("...text..."): find the shown window in the real line to map the caret.
  const core = shown.replace(/^\.\.\./, "").replace(/\.\.\.$/, "");
  const offset = shown.startsWith("...") ? 3 : 0;
  const at = lineText.indexOf(core);
  const column = (at >= 0 ? at : 0) + Math.max(0, caret - offset) + 1;
  return { line, column };
}
