// The seam between the protocol side (dispatch.ts, channels.ts) and the TypeScript side
// (evaluate.ts, language.ts): dispatch owns the Jupyter duties, the interpreter owns the language.

/** A MIME bundle: MIME type -> data (string for text types, JSON for +json types). */
export type MimeBundle = Record<string, unknown>;

/** Where one execution's output goes: IOPub messages parented to that execute_request. */
export interface OutputSink {
  stream(name: "stdout" | "stderr", text: string): void;
  displayData(data: MimeBundle, metadata?: Record<string, unknown>, transient?: { display_id?: string }): void;
  updateDisplayData(data: MimeBundle, metadata: Record<string, unknown>, transient: { display_id: string }): void;
  clearOutput(wait: boolean): void;
  /** Work whose output belongs to the cell (a display's rendering): its reply waits for it, bounded. */
  holdReplyFor?(work: Promise<unknown>): void;
}

export interface ExecuteContext {
  sink: OutputSink;
  executionCount: number;
  /** Asks the frontend on the stdin channel; rejects with a clear error when allow_stdin is false. */
  input(prompt: string, password: boolean): Promise<string>;
  /** The frontend's cell id (metadata.cellId) when it sends one: re-running a cell replaces its displays. */
  cellId?: string;
  silent: boolean;
}

export type ExecuteOutcome =
  | { status: "ok"; result?: MimeBundle }
  | { status: "error"; ename: string; evalue: string; traceback: string[] }
  | { status: "aborted" };

export interface CompleteResult {
  matches: string[];
  /** Code-point offsets into the cell. */
  cursor_start: number;
  cursor_end: number;
  metadata: Record<string, unknown>;
}

export interface InspectResult {
  found: boolean;
  data: MimeBundle;
}

export interface IsCompleteResult {
  status: "complete" | "incomplete" | "invalid" | "unknown";
  indent?: string;
}

export interface Interpreter {
  execute(code: string, ctx: ExecuteContext): Promise<ExecuteOutcome>;
  /** user_expressions: each evaluated in the cell context after the cell; errors become error entries. */
  evaluateExpressions(expressions: Record<string, string>): Promise<Record<string, unknown>>;
  /** cursorPos counts Unicode code points, as the protocol does. */
  complete(code: string, cursorPos: number): Promise<CompleteResult>;
  inspect(code: string, cursorPos: number, detailLevel: number): Promise<InspectResult>;
  isComplete(code: string): IsCompleteResult;
  /** Abandons a pending top-level await of the running cell; variables are kept. */
  interrupt(): void;
  /**
   * Code on the main thread was stopped by force (kernel/interrupts.ts): whatever awaited it will never
   * hear back. `engine` says engine frames were among those stopped (a batch job was cut off).
   */
  afterForcedStop?(stopped: { engine: boolean }): void;
  /** Stops what the session started (streams, timers, sockets) before the process exits or restarts. */
  shutdown(restart: boolean): Promise<void>;
}
