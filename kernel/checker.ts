// The checker seam: what the interpreter asks of TypeScript for each cell (diagnostics, then the cell's
// JavaScript body), for completions and for inspection. LocalChecker does it in this process; the
// kernel normally runs the same LocalChecker in a process of its own (checker-client.ts), started
// from a V8 snapshot in which TypeScript, the ES lib, @types/node and the engine's declarations are
// already parsed and bound.
import type { CompleteResult, InspectResult } from "./interpreter.js";
import { LanguageServer, syntaxErrors, type CellDiagnostic, type PendingCell } from "./language.js";
import { rewriteEmitted, transpileBody, type CellBody } from "./transform.js";

export interface CheckerConfig {
  /** The notebook's folder: relative imports and packages resolve from here. */
  cwd: string;
  /** Ambient declarations (a script .d.ts) for the kernel's globals. */
  globalDeclarations: string;
  /** A module whose exports are globals (the notebook prelude). */
  preludeModule?: string;
}

/** A checked cell: its errors, or (none) the JavaScript body the kernel wraps and runs. */
export interface CheckOutcome {
  diagnostics: CellDiagnostic[];
  body?: CellBody;
}

export interface CellChecker {
  /**
   * Checks a new cell against every committed one (with `typecheck` false: parses it only) and, when
   * there is no error, compiles it. Exactly one commit() or discard() follows each check.
   */
  check(code: string, typecheck: boolean): Promise<CheckOutcome>;
  /** The checked cell ran: its names are visible to later cells. */
  commit(): void;
  /** The checked cell did not run (an error, an interrupt). */
  discard(): void;
  complete(code: string, cursorPos: number): Promise<CompleteResult>;
  inspect(code: string, cursorPos: number, detailLevel: number): Promise<InspectResult>;
  /** Loads everything the first check needs; resolves when a check would cost what any later one does. */
  warm(): Promise<void>;
  close(): void;
}

/** Kept alive in the snapshot: its parsed declarations are what every later checker reuses. */
let prewarmed: LocalChecker | undefined;

/**
 * Loads what every notebook's checker needs (the lib, @types/node, the prelude's declarations: parsed,
 * bound and resolved) and runs each path a cell takes once, so a snapshot taken now holds their compiled
 * code too. Returns the declaration files on disk it read.
 */
export function prewarm(preludeModule: string): string[] {
  const checker = new LocalChecker({ cwd: "/__streambook_snapshot__", globalDeclarations: "declare var snapshotGlobal: number;", preludeModule });
  checker.warmNow();
  const cells = [
    "function twice(x: number): number {\n  return x * 2;\n}\ntwice(snapshotGlobal)",
    "const words = ['a', 'b'].map((w) => w.toUpperCase());\nwords.length",
    "2 + 2",
    "let wrong: number = 'text';",
    "//% typecheck off\nconst loose = 1;",
  ];
  for (const code of cells) {
    const outcome = checker.checkNow(code, !code.startsWith("//%"));
    if (outcome.diagnostics.length) checker.discard();
    else checker.commit();
  }
  checker.completeNow("words.le", 8);
  checker.inspectNow("twice(1)", 2, 0);
  prewarmed = checker;
  const files = checker.diskFiles();
  checker.releasePrograms();
  return files;
}

/** The checker in the calling process (also what runs inside the checker process). */
export class LocalChecker implements CellChecker {
  private readonly language: LanguageServer;
  private pending: PendingCell | undefined;

  constructor(config: CheckerConfig) {
    this.language = new LanguageServer(config);
  }

  check(code: string, typecheck: boolean): Promise<CheckOutcome> {
    return Promise.resolve(this.checkNow(code, typecheck));
  }

  checkNow(code: string, typecheck: boolean): CheckOutcome {
    this.pending?.discard();
    const pending = this.language.checkCell(code);
    this.pending = pending;
    const diagnostics = typecheck ? pending.diagnostics() : syntaxErrors(code);
    if (diagnostics.length > 0) return { diagnostics };
    // The JavaScript comes from the program that just checked the cell (no second transpile); a
    // re-run served from the diagnostics cache, or an unchecked cell, goes through the transpiler.
    const emitted = typecheck ? pending.emit() : undefined;
    if (emitted) {
      try {
        return { diagnostics, body: rewriteEmitted(emitted.js, emitted.sourceMapText, (s) => this.language.isFooterImport(s)) };
      } catch {
        // fall back to the transpiler
      }
    }
    return { diagnostics, body: transpileBody(code) };
  }

  commit(): void {
    this.pending?.commit();
    this.pending = undefined;
  }

  discard(): void {
    this.pending?.discard();
    this.pending = undefined;
  }

  /** Makes committed cells' names visible again without checking them (a restarted checker process). */
  replay(codes: readonly string[]): void {
    for (const code of codes) this.language.checkCell(code).commit();
  }

  complete(code: string, cursorPos: number): Promise<CompleteResult> {
    return Promise.resolve(this.completeNow(code, cursorPos));
  }

  completeNow(code: string, cursorPos: number): CompleteResult {
    return this.language.complete(code, cursorPos);
  }

  inspect(code: string, cursorPos: number, detailLevel: number): Promise<InspectResult> {
    return Promise.resolve(this.inspectNow(code, cursorPos, detailLevel));
  }

  inspectNow(code: string, cursorPos: number, detailLevel: number): InspectResult {
    return this.language.inspect(code, cursorPos, detailLevel);
  }

  warm(): Promise<void> {
    this.warmNow();
    return Promise.resolve();
  }

  warmNow(): void {
    this.language.warm();
  }

  /** Keeps the parsed files, drops programs and type checkers (see prewarm). */
  releasePrograms(): void {
    this.language.releasePrograms();
  }

  /** The declaration files on disk the checker's program holds. */
  diskFiles(): string[] {
    return this.language.diskFiles();
  }

  close(): void {
    this.pending = undefined;
  }
}
