// Cell -> JavaScript: TypeScript is transpiled, then top-level declarations become assignments to the
// context's globals (so they persist and may be redeclared), static imports become `await import()`,
// the last expression becomes the result, and everything runs in an async wrapper (top-level await).
import { createRequire } from "node:module";
import type * as TS from "typescript";
import { decodeMappings, type CellSourceMap } from "./stack.js";

let tsModule: typeof TS | undefined;

/** TypeScript, loaded on first use (about 150 ms): start-up does not pay for it. */
export function typescript(): typeof TS {
  tsModule ??= createRequire(__filename)("typescript") as typeof TS;
  return tsModule;
}

/** Hands over a TypeScript already loaded (the checker snapshot loads it without require()). */
export function useTypeScript(ts: typeof TS): void {
  tsModule = ts;
}

export function typescriptLoaded(): boolean {
  return tsModule !== undefined;
}

export type DeclarationKind = "const" | "let" | "var" | "function" | "class" | "type" | "enum" | "namespace" | "import";

/** The names a cell declares at its top level, with their kinds (on the TypeScript source). */
export function topLevelDeclarations(sf: TS.SourceFile): Map<string, DeclarationKind> {
  const ts = typescript();
  const names = new Map<string, DeclarationKind>();
  const bind = (name: TS.BindingName, kind: DeclarationKind): void => {
    if (ts.isIdentifier(name)) names.set(name.text, kind);
    else for (const el of name.elements) if (!ts.isOmittedExpression(el)) bind(el.name, kind);
  };
  for (const st of sf.statements) {
    if (ts.isVariableStatement(st)) {
      const flags = st.declarationList.flags;
      const kind = flags & ts.NodeFlags.Const ? "const" : flags & ts.NodeFlags.Let ? "let" : "var";
      for (const d of st.declarationList.declarations) bind(d.name, kind);
    } else if (ts.isFunctionDeclaration(st) && st.name) names.set(st.name.text, "function");
    else if (ts.isClassDeclaration(st) && st.name) names.set(st.name.text, "class");
    else if (ts.isInterfaceDeclaration(st) || ts.isTypeAliasDeclaration(st)) names.set(st.name.text, "type");
    else if (ts.isEnumDeclaration(st)) names.set(st.name.text, "enum");
    else if (ts.isModuleDeclaration(st) && ts.isIdentifier(st.name)) names.set(st.name.text, "namespace");
    else if (ts.isImportEqualsDeclaration(st)) names.set(st.name.text, "import");
    else if (ts.isImportDeclaration(st) && st.importClause) {
      const c = st.importClause;
      if (c.name) names.set(c.name.text, "import");
      if (c.namedBindings) {
        if (ts.isNamespaceImport(c.namedBindings)) names.set(c.namedBindings.name.text, "import");
        else for (const el of c.namedBindings.elements) names.set(el.name.text, "import");
      }
    }
  }
  return names;
}

/** Every identifier text in the cell: the checker imports only the earlier names a cell mentions. */
export function identifiersOf(sf: TS.SourceFile): Set<string> {
  const ts = typescript();
  const out = new Set<string>();
  const visit = (node: TS.Node): void => {
    if (ts.isIdentifier(node)) out.add(node.text);
    else ts.forEachChild(node, visit);
  };
  visit(sf);
  return out;
}

export interface CompiledCell {
  /** The script to run: evaluates to the promise of the cell's result. */
  js: string;
  /** Names the cell assigns as globals: the kernel defines them (undefined) first, so reads never throw. */
  globals: string[];
  /** Line/column mapping back to the cell's TypeScript. */
  map: Omit<CellSourceMap, "label">;
}

/** The runtime helper that cell imports call: `(specifier, importer) => Promise<namespace>`. */
export const IMPORT_HELPER = "__streambook_import";

interface Edit {
  pos: number;
  end: number;
  text: string;
}

const TRANSPILE_OPTIONS: TS.CompilerOptions = {};

/**
 * Where the wrapper's parameters come from: an array the kernel puts on the global just before it runs
 * the script (the cell's own `process`, `require`, timers, ... shadow the kernel's, in one realm).
 */
export const SCOPE_KEY = Symbol.for("streambook.cellScope");

/**
 * A cell's JavaScript before it is wrapped: what the checker (maybe in its own process) hands the
 * kernel. It depends on the cell's text only; the wrapper (wrapBody) adds the kernel's scope.
 */
export interface CellBody {
  /** The rewritten statements (declarations as global assignments, imports as awaits, a final return). */
  code: string;
  /** Names the cell assigns as globals. */
  globals: string[];
  /** Function declarations, re-published as globals before the body runs (they are hoisted). */
  hoisted: string[];
  lines: CellSourceMap["lines"];
  /** Column shifts per line of `code` (see CellSourceMap), before the wrapper's prefix. */
  shifts: [number, [number, number][]][];
}

/** Re-run cells skip the transpiler (the body depends on the text only). */
const bodyCache = new Map<string, CellBody>();

/**
 * Transpiles and rewrites one cell. Syntax errors are the checker's job; this only transforms.
 * `scope`: names the wrapper takes as parameters, filled from `globalThis[SCOPE_KEY]` in that order.
 */
export function compileCell(code: string, scope: readonly string[] = []): CompiledCell {
  return wrapBody(transpileBody(code), scope);
}

/** The body of a cell through TypeScript's transpiler (no type information needed). */
export function transpileBody(code: string): CellBody {
  const cached = bodyCache.get(code);
  if (cached) return cached;
  const body = transpileUncached(code);
  if (bodyCache.size >= 500) bodyCache.delete(bodyCache.keys().next().value!);
  bodyCache.set(code, body);
  return body;
}

function transpileUncached(code: string): CellBody {
  const ts = typescript();
  if (!("target" in TRANSPILE_OPTIONS)) {
    Object.assign(TRANSPILE_OPTIONS, {
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.ESNext,
      // Keeps imports whose names this cell does not use: later cells may.
      verbatimModuleSyntax: true,
      sourceMap: true,
      useDefineForClassFields: true,
      esModuleInterop: true,
    } satisfies TS.CompilerOptions);
  }
  const out = ts.transpileModule(code, { compilerOptions: TRANSPILE_OPTIONS, fileName: "cell.ts" });
  const js = out.outputText.replace(/\n\/\/# sourceMappingURL=.*\s*$/, "\n");
  const mappings = out.sourceMapText ? (JSON.parse(out.sourceMapText) as { mappings: string }).mappings : "";
  return rewrite(ts, js, decodeMappings(mappings), () => false);
}

/**
 * Rewrites JavaScript the type checker emitted for a cell (its program is built already, so this saves
 * a transpile). `isFooter` names the module specifiers of the checker's footer imports, which go.
 */
export function rewriteEmitted(js: string, sourceMapText: string, isFooter: (specifier: string) => boolean): CellBody {
  const ts = typescript();
  const clean = js.replace(/\n\/\/# sourceMappingURL=.*\s*$/, "\n");
  const mappings = (JSON.parse(sourceMapText) as { mappings: string }).mappings;
  return rewrite(ts, clean, decodeMappings(mappings), isFooter);
}

/**
 * The script to run: the body inside an async wrapper whose parameters are the kernel's `scope` names.
 * The wrapper's opening shares line 1 with the cell, so every line keeps its number. Needs no TypeScript.
 */
export function wrapBody(body: CellBody, scope: readonly string[]): CompiledCell {
  const prefix = `(async (${scope.join(", ")}) => { ${body.hoisted.map((n) => `globalThis.${n} = ${n}; `).join("")}`;
  const shifts: CellSourceMap["shifts"] = new Map();
  for (const [line, entries] of body.shifts) shifts.set(line, entries.map(([col, delta]) => [line === 0 ? col + prefix.length : col, delta]));
  shifts.set(0, [[0, prefix.length], ...(shifts.get(0) ?? [])]);
  const js = `${prefix}${body.code}\n})(${scope.length ? '...globalThis[Symbol.for("streambook.cellScope")]' : ""})`;
  return { js, globals: body.globals, map: { lines: body.lines, shifts } };
}

function rewrite(
  ts: typeof TS,
  js: string,
  lines: CellSourceMap["lines"],
  isFooter: (specifier: string) => boolean,
): CellBody {
  const sf = ts.createSourceFile("cell.js", js, ts.ScriptTarget.ES2022, false, ts.ScriptKind.JS);
  const edits: Edit[] = [];
  const globals = new Set<string>();
  const hoisted: string[] = [];
  const statements = sf.statements.filter((st) => {
    const footer =
      (ts.isImportDeclaration(st) && isFooter((st.moduleSpecifier as TS.StringLiteral).text)) ||
      (ts.isExportDeclaration(st) && !st.moduleSpecifier);
    if (footer) edits.push({ pos: st.getStart(sf), end: st.end, text: "" });
    return !footer;
  });

  const bindNames = (name: TS.BindingName): void => {
    if (ts.isIdentifier(name)) globals.add(name.text);
    else for (const el of name.elements) if (!ts.isOmittedExpression(el)) bindNames(el.name);
  };
  const stripExport = (st: TS.Statement): void => {
    const mods = ts.canHaveModifiers(st) ? ts.getModifiers(st) : undefined;
    for (const m of mods ?? []) {
      if (m.kind === ts.SyntaxKind.ExportKeyword || m.kind === ts.SyntaxKind.DefaultKeyword) {
        edits.push({ pos: m.getStart(sf), end: m.end, text: "" });
      }
    }
  };
  /** Same number of newlines as the replaced text, so lines keep their numbers. */
  const keepLines = (replaced: string, text: string): string => text + "\n".repeat(replaced.split("\n").length - 1);

  statements.forEach((st, index) => {
    if (ts.isVariableStatement(st)) {
      stripExport(st);
      const list = st.declarationList;
      const keyword = list.getStart(sf);
      const kwLen = list.flags & ts.NodeFlags.Const ? 5 : 3;
      const isLet = (list.flags & ts.NodeFlags.Let) !== 0;
      const hasPattern = list.declarations.some((d) => !ts.isIdentifier(d.name));
      edits.push({ pos: keyword, end: keyword + kwLen + 1, text: hasPattern ? "(" : "" });
      for (const d of list.declarations) {
        bindNames(d.name);
        // `let x;` resets x on a re-run; `var x;` keeps its value, as in a script.
        if (!d.initializer && isLet) edits.push({ pos: d.end, end: d.end, text: " = void 0" });
      }
      if (hasPattern) edits.push({ pos: list.end, end: list.end, text: ")" });
    } else if (ts.isFunctionDeclaration(st) && st.name) {
      stripExport(st);
      globals.add(st.name.text);
      hoisted.push(st.name.text);
    } else if (ts.isClassDeclaration(st) && st.name) {
      stripExport(st);
      globals.add(st.name.text);
      const start = st.getStart(sf);
      edits.push({ pos: start, end: start, text: `${st.name.text} = ` });
      edits.push({ pos: st.end, end: st.end, text: ";" });
    } else if (ts.isImportDeclaration(st)) {
      const spec = JSON.stringify((st.moduleSpecifier as TS.StringLiteral).text);
      const load = `await ${IMPORT_HELPER}(${spec}, (s) => import(s))`;
      const c = st.importClause;
      let text: string;
      if (!c) text = `${load};`;
      else if (c.namedBindings && ts.isNamespaceImport(c.namedBindings)) {
        const ns = c.namedBindings.name.text;
        globals.add(ns);
        text = `${ns} = ${load};`;
        if (c.name) {
          globals.add(c.name.text);
          text += ` ${c.name.text} = ${ns}.default;`;
        }
      } else {
        const parts: string[] = [];
        if (c.name) {
          globals.add(c.name.text);
          parts.push(`default: ${c.name.text}`);
        }
        if (c.namedBindings && ts.isNamedImports(c.namedBindings)) {
          for (const el of c.namedBindings.elements) {
            globals.add(el.name.text);
            parts.push(`${JSON.stringify((el.propertyName ?? el.name).text)}: ${el.name.text}`);
          }
        }
        text = `({ ${parts.join(", ")} } = ${load});`;
      }
      const start = st.getStart(sf);
      edits.push({ pos: start, end: st.end, text: keepLines(js.slice(start, st.end), text) });
    } else if (ts.isExportDeclaration(st) || ts.isExportAssignment(st)) {
      const start = st.getStart(sf);
      edits.push({ pos: start, end: st.end, text: keepLines(js.slice(start, st.end), ";") });
    } else if (ts.isExpressionStatement(st) && index === statements.length - 1) {
      edits.push({ pos: st.expression.getStart(sf), end: st.expression.getStart(sf), text: "return " });
    }
  });

  edits.sort((a, b) => a.pos - b.pos || a.end - b.end);
  // Column shifts per line, at final columns: stack frames are mapped back through them.
  const shifts = new Map<number, [number, number][]>();
  let result = "";
  let last = 0;
  let line = 0;
  let lineStart = 0;
  let lineDelta = 0;
  const advance = (to: number): void => {
    for (let i = js.indexOf("\n", last); i !== -1 && i < to; i = js.indexOf("\n", i + 1)) {
      line++;
      lineStart = i + 1;
      lineDelta = 0;
    }
  };
  for (const e of edits) {
    advance(e.pos);
    result += js.slice(last, e.pos);
    last = e.pos;
    const delta = e.text.length - (e.end - e.pos);
    if (delta !== 0 && !e.text.includes("\n")) {
      const arr = shifts.get(line) ?? [];
      arr.push([e.pos - lineStart + lineDelta, delta]);
      shifts.set(line, arr);
      lineDelta += delta;
    }
    result += e.text;
    advance(e.end);
    last = e.end;
  }
  result += js.slice(last);
  return { code: result, globals: [...globals], hoisted, lines, shifts: [...shifts] };
}
