// The TypeScript language service behind cells: diagnostics for a new cell against every earlier one,
// completions and inspection that know earlier cells, and is_complete.
//
// Cells are virtual module files in the notebook's folder (so `./local.js` and its node_modules
// resolve). A new cell is checked in the next free file of a pool; when it runs, it stays there and
// that file becomes the owner of the names it declares. Each file ends with a footer that imports,
// from every hub (one per 32 pool files, re-exporting their names) in a fixed order, the earlier names
// the cell mentions (often none), and exports its own. Because the list of imported files never
// changes, a new cell changes file contents but not the program's structure: TypeScript reuses the
// whole program (no re-walk of lib and @types/node). Nothing earlier is re-checked, old cells keep only
// the imports they use, and a pool file is recycled once no visible name needs it, so checking cell
// 2,000 costs what checking cell 1 does. A re-declared name simply gets a new owner.
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import type * as TS from "typescript";
import type { CompleteResult, InspectResult, IsCompleteResult } from "./interpreter.js";
import { identifiersOf, topLevelDeclarations, typescript, type DeclarationKind } from "./transform.js";

/** Cursor offsets: the protocol counts Unicode code points, TypeScript counts UTF-16 units. */
export function codePointsToUtf16(text: string, codePoints: number): number {
  let units = 0;
  for (let cp = 0; cp < codePoints && units < text.length; cp++) {
    const c = text.charCodeAt(units);
    units += c >= 0xd800 && c <= 0xdbff && units + 1 < text.length ? 2 : 1;
  }
  return units;
}

export function utf16ToCodePoints(text: string, units: number): number {
  let cp = 0;
  for (let i = 0; i < units && i < text.length; i++, cp++) {
    const c = text.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) i++;
  }
  return cp;
}

export interface CellDiagnostic {
  /** 1-based line and column (column in code points) in the cell. */
  line: number;
  column: number;
  code: number;
  message: string;
  /** The cell's source line, for a caret display. */
  sourceLine: string;
}

interface Owner {
  /** The module that declares the name: a cell file or the prelude module. */
  module: string;
  kind: DeclarationKind;
}

interface VirtualFile {
  text: string;
  version: number;
  /** Pool files this one imports names from (a pool file they need is not recycled). */
  deps: Set<string>;
  /**
   * A committed cell's text with only the footer imports that name something. The full footer (an
   * import from every hub) keeps the program's structure while the cell is new; kept for every
   * old cell it would make the session's source text (and memory, and each program's size) grow as
   * cells squared, so old cells are switched to this when the pool grows (the structure changes then anyway).
   */
  compact?: string;
}

const MUTABLE_PREFIX = "__streambook_let_";

/** Pool files are added this many at a time (each growth changes the program's structure once). */
const POOL_CHUNK = 32;

/** TS errors that do not apply to notebook cells. */
const IGNORED_CODES = new Set([
  7016, // "Could not find a declaration file for module": an untyped package is `any`, as in JS.
  1484, // "is a type and must be imported using a type-only import" (verbatimModuleSyntax): harmless here.
  1485,
  1205,
]);

/**
 * Parsed declaration files are shared by every LanguageServer of the process through one document
 * registry: the checker snapshot (checker-snapshot.ts) fills it with the lib, @types/node and the
 * prelude's declarations, and a notebook's server then finds them parsed and bound.
 */
let sharedRegistry: TS.DocumentRegistry | undefined;

/** Versions of files on disk: their size and mtime, read once per process (a snapshot's are stale). */
const diskStamps = new Map<string, string>();
let stampsPid = process.pid;

function diskVersion(file: string): string {
  if (stampsPid !== process.pid) {
    diskStamps.clear();
    stampsPid = process.pid;
  }
  let v = diskStamps.get(file);
  if (v === undefined) {
    try {
      const st = fs.statSync(file);
      v = `${st.size}:${st.mtimeMs}`;
    } catch {
      v = "0";
    }
    diskStamps.set(file, v);
  }
  return v;
}

/** Module and type-reference resolutions, by containing folder: the same for every server of the process. */
let sharedResolution:
  | { moduleCache: TS.ModuleResolutionCache; typeRefCache: TS.TypeReferenceDirectiveResolutionCache; resolved: Map<string, TS.ResolvedModuleWithFailedLookupLocations> }
  | undefined;

function newResolution(ts: typeof TS, canonical: (f: string) => string, options: TS.CompilerOptions): NonNullable<typeof sharedResolution> {
  const moduleCache = ts.createModuleResolutionCache(path.sep, canonical, options);
  const typeRefCache = ts.createTypeReferenceDirectiveResolutionCache(path.sep, canonical, options, moduleCache.getPackageJsonInfoCache());
  return { moduleCache, typeRefCache, resolved: new Map() };
}

/** The combined ES lib, parsed once per process (or in the snapshot) and shared by every server. */
let sharedLib: TS.SourceFile | undefined;

export interface LanguageOptions {
  cwd: string;
  /** Ambient declarations (a script .d.ts) for the kernel's globals: display, input, the prelude's values. */
  globalDeclarations: string;
  /** A module whose exports are globals: earlier-cell style, its names resolve to its own declarations. */
  preludeModule?: string;
}

export class LanguageServer {
  private readonly ts = typescript();
  private readonly files = new Map<string, VirtualFile>();
  private readonly diskSnapshots = new Map<string, TS.IScriptSnapshot | undefined>();
  private readonly owners = new Map<string, Owner>();
  /** Live pool files by their cell text and footer: an identical re-run keeps its file. */
  private readonly byText = new Map<string, string>();
  /** Diagnostics by cell text, footer and the versions of the files it imports: re-runs cost nothing. */
  private readonly diagnosticsCache = new Map<string, CellDiagnostic[]>();
  private readonly pool: string[] = [];
  private readonly poolIndex = new Map<string, number>();
  /** One hub per POOL_CHUNK pool files (see writeHub). */
  private readonly hubs: string[] = [];
  /** The names each committed pool file exports (all it declares, owned or since re-declared). */
  private readonly exportsOf = new Map<string, string[]>();
  private readonly free: string[] = [];
  private readonly service: TS.LanguageService;
  private readonly options: TS.CompilerOptions;
  private readonly cwd: string;
  private readonly globalsFile: string;
  private readonly scratchFile: string;
  private readonly libFile: string;
  private preludeLoaded = false;
  /** Global names the ES lib does not declare (@types/node's, the kernel's globals): set at warm-up. */
  private nonLibGlobals: Set<string> | undefined;
  /** The last program of a self-contained cell (see selfContained) and the cell's file in it. */
  private minimal: { program: TS.Program; host: TS.CompilerHost; sf?: TS.SourceFile; options: TS.CompilerOptions } | undefined;
  private fileNames: string[] | undefined;
  /**
   * Checks and emits go through a program of our own (createProgram with the previous one as
   * oldProgram): unchanged files are the same SourceFile objects, found in one Map lookup, where the
   * language service re-validated every file of every program against its registry. The service is
   * kept for completions and inspection only.
   */
  private checkProgram: TS.Program | undefined;
  private readonly compilerHost: TS.CompilerHost;
  private readonly sourceFiles = new Map<string, { version: string; sf: TS.SourceFile }>();
  /** A file changed, or the set of files did, since checkProgram was built. */
  private programStale = true;

  constructor(private readonly opts: LanguageOptions) {
    const ts = this.ts;
    this.cwd = path.resolve(opts.cwd);
    this.globalsFile = path.join(this.cwd, "__streambook_globals.d.ts");
    this.scratchFile = path.join(this.cwd, "__streambook_scratch.ts");
    this.files.set(this.globalsFile, { text: opts.globalDeclarations, version: 1, deps: new Set() });
    // At a fixed path (not in the notebook's folder), so every server shares its parsed form.
    this.libFile = path.join(path.dirname(ts.getDefaultLibFilePath({})), "__streambook_lib.d.ts");
    this.files.set(this.libFile, { text: combinedLib(ts), version: 1, deps: new Set() });
    this.growPool();
    const typeRoots = findTypeRoots();
    this.options = {
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.Preserve,
      moduleResolution: ts.ModuleResolutionKind.Bundler,
      // ES2023's 61 lib files as one (combinedLib): every program of every cell walks its files.
      noLib: true,
      types: typeRoots.length ? ["node"] : [],
      typeRoots,
      strict: true,
      esModuleInterop: true,
      skipLibCheck: true,
      resolveJsonModule: true,
      allowUnreachableCode: true,
      // The new cell's JavaScript is emitted from the program that checked it (no second transpile):
      // every import is kept as written, since a later cell may use what this one imports.
      verbatimModuleSyntax: true,
      sourceMap: true,
      allowJs: true,
      checkJs: false,
      // Do not look for @typescript/lib-* packages up the folder tree on every program.
      libReplacement: false,
    };
    // Resolutions persist across programs, and across servers of the process (the snapshot's too): each
    // cell makes a new program, and re-resolving @types/node and every import would dominate its cost.
    const canonical = (f: string): string => (ts.sys.useCaseSensitiveFileNames ? f : f.toLowerCase());
    sharedResolution ??= newResolution(ts, canonical, this.options);
    const { moduleCache, typeRefCache, resolved } = sharedResolution;
    const poolResolutions = new Map<string, TS.ResolvedModuleWithFailedLookupLocations>();
    const resolutionHost: TS.ModuleResolutionHost = {
      fileExists: (f) => this.files.has(f) || ts.sys.fileExists(f),
      readFile: (f) => this.files.get(f)?.text ?? ts.sys.readFile(f),
      directoryExists: (d) => ts.sys.directoryExists(d),
      getDirectories: (d) => ts.sys.getDirectories(d),
      realpath: (p) => (ts.sys.realpath ? ts.sys.realpath(p) : p),
      getCurrentDirectory: () => this.cwd,
    };
    const host: TS.LanguageServiceHost & { getModuleResolutionCache(): TS.ModuleResolutionCache } = {
      // Not in the public host type, but passed through: package.json scopes are then read once.
      getModuleResolutionCache: () => moduleCache,
      getCompilationSettings: () => this.options,
      // The file set changes only when the pool grows: one array until then, not one per program.
      getScriptFileNames: () => {
        this.fileNames ??= [...this.files.keys()];
        return this.fileNames;
      },
      getScriptVersion: (f) => {
        const v = this.files.get(f);
        return v ? String(v.version) : diskVersion(f);
      },
      getScriptSnapshot: (f) => {
        const v = this.files.get(f);
        if (v) return ts.ScriptSnapshot.fromString(v.text);
        if (!this.diskSnapshots.has(f)) {
          const text = ts.sys.readFile(f);
          this.diskSnapshots.set(f, text === undefined ? undefined : ts.ScriptSnapshot.fromString(text));
        }
        return this.diskSnapshots.get(f);
      },
      getCurrentDirectory: () => this.cwd,
      getDefaultLibFileName: (o) => ts.getDefaultLibFilePath(o),
      fileExists: (f) => this.files.has(f) || ts.sys.fileExists(f),
      readFile: (f) => this.files.get(f)?.text ?? ts.sys.readFile(f),
      directoryExists: (d) => ts.sys.directoryExists(d),
      getDirectories: (d) => ts.sys.getDirectories(d),
      realpath: (p) => (ts.sys.realpath ? ts.sys.realpath(p) : p),
      useCaseSensitiveFileNames: () => ts.sys.useCaseSensitiveFileNames,
      resolveModuleNameLiterals: (literals, containingFile, redirected, options, containingSourceFile) => {
        const dir = path.dirname(containingFile);
        return literals.map((lit) => {
          // A footer import of a hub, or a hub's of a pool file: the same answer every time.
          const pool = lit.text.startsWith("./__streambook_") && dir === this.cwd ? poolResolutions.get(lit.text) : undefined;
          if (pool) return pool;
          const mode = ts.getModeForUsageLocation(containingSourceFile, lit, options);
          const key = `${dir}\0${lit.text}\0${mode ?? ""}`;
          const hit = resolved.get(key);
          if (hit) return hit;
          const r = ts.resolveModuleName(lit.text, containingFile, options, resolutionHost, moduleCache, redirected, mode);
          // A failed lookup from a cell may succeed after an `npm install` in the notebook's folder.
          if (r.resolvedModule || !this.isVirtual(containingFile)) resolved.set(key, r);
          if (r.resolvedModule && lit.text.startsWith("./__streambook_") && dir === this.cwd) poolResolutions.set(lit.text, r);
          return r;
        });
      },
      resolveTypeReferenceDirectiveReferences: (refs, containingFile, redirected, options, containingSourceFile) =>
        refs.map((ref) => {
          const name = typeof ref === "string" ? ref : ref.fileName.toLowerCase();
          const mode = typeof ref === "string" || !containingSourceFile ? undefined : ts.getModeForFileReference(ref, containingSourceFile.impliedNodeFormat);
          return ts.resolveTypeReferenceDirective(name, containingFile, options, resolutionHost, redirected, typeRefCache, mode);
        }),
    };
    sharedRegistry ??= ts.createDocumentRegistry();
    const registry = sharedRegistry;
    this.service = ts.createLanguageService(host, registry);
    const registryKey = registry.getKeyForCompilationSettings(this.options);
    this.compilerHost = {
      getSourceFile: (f, languageVersion) => {
        const v = this.files.get(f);
        const version = v ? String(v.version) : diskVersion(f);
        const hit = this.sourceFiles.get(f);
        if (hit && hit.version === version) return hit.sf;
        let sf: TS.SourceFile | undefined;
        if (f === this.libFile) sf = sharedLib ??= ts.createSourceFile(f, v!.text, languageVersion, true);
        else if (v) sf = ts.createSourceFile(f, v.text, languageVersion, true);
        else {
          // Declarations on disk come from the shared registry: parsed once per process (or in the snapshot).
          // Its text is read only if the registry has to parse it.
          if (version === "0") return undefined;
          let text: string | undefined;
          const read = (): string => (text ??= ts.sys.readFile(f) ?? "");
          const snapshot: TS.IScriptSnapshot = { getText: (a, b) => read().slice(a, b), getLength: () => read().length, getChangeRange: () => undefined };
          sf = registry.acquireDocumentWithKey(f, canonical(f) as TS.Path, host, registryKey, snapshot, version, scriptKindOf(ts, f), languageVersion);
        }
        this.sourceFiles.set(f, { version, sf });
        return sf;
      },
      getDefaultLibFileName: () => this.libFile,
      writeFile: () => {},
      getCurrentDirectory: () => this.cwd,
      getCanonicalFileName: canonical,
      useCaseSensitiveFileNames: () => ts.sys.useCaseSensitiveFileNames,
      getNewLine: () => "\n",
      fileExists: host.fileExists,
      readFile: (f) => this.files.get(f)?.text ?? ts.sys.readFile(f),
      directoryExists: host.directoryExists,
      getDirectories: host.getDirectories,
      realpath: host.realpath,
      resolveModuleNameLiterals: host.resolveModuleNameLiterals,
      resolveTypeReferenceDirectiveReferences: host.resolveTypeReferenceDirectiveReferences,
      getModuleResolutionCache: () => moduleCache,
    } as TS.CompilerHost;
  }

  /** The program of the files as they are now (rebuilt from the previous one when a file changed). */
  private program(): TS.Program {
    const ts = this.ts;
    const old = this.checkProgram;
    if (old && !this.programStale) return old;
    this.fileNames ??= [...this.files.keys()];
    this.checkProgram = ts.createProgram({ rootNames: this.fileNames, options: this.options, host: this.compilerHost, oldProgram: old });
    this.programStale = false;
    return this.checkProgram;
  }

  /**
   * Drops the programs and their type checkers (their types are rebuilt by the next check anyway),
   * keeping the parsed files: what a snapshot should hold.
   */
  releasePrograms(): void {
    this.checkProgram = undefined;
    this.programStale = true;
    this.minimal = undefined;
    this.service.cleanupSemanticCache();
  }

  /** The files on disk the current program holds (declarations: lib, @types, the prelude's). */
  diskFiles(): string[] {
    return this.program().getSourceFiles().map((f) => f.fileName).filter((f) => !this.files.has(f));
  }

  private isVirtual(file: string): boolean {
    return path.basename(file).startsWith("__streambook_");
  }

  /** Loads the lib files and the prelude's names: the first check then costs what later ones do. */
  warm(): void {
    this.loadPrelude();
    const warmup = this.checkCell("0");
    warmup.diagnostics();
    warmup.discard();
    this.globalNames();
  }

  /** Names of the global scope that the ES lib does not declare, read once from the whole program. */
  private globalNames(): Set<string> {
    if (this.nonLibGlobals) return this.nonLibGlobals;
    const ts = this.ts;
    const names = new Set<string>();
    const program = this.program();
    const lib = program?.getSourceFile(this.libFile) as (TS.SourceFile & { locals?: Map<string, unknown> }) | undefined;
    const scratch = program?.getSourceFile(this.scratchFile);
    if (program && lib?.locals && scratch) {
      const meaning = ts.SymbolFlags.Value | ts.SymbolFlags.Type | ts.SymbolFlags.Namespace | ts.SymbolFlags.Alias;
      for (const sym of program.getTypeChecker().getSymbolsInScope(scratch, meaning)) if (!lib.locals.has(sym.name)) names.add(sym.name);
    } else {
      // Without them no cell counts as self-contained: every cell gets the whole program.
      names.add("*");
    }
    this.nonLibGlobals = names;
    return names;
  }

  /**
   * A cell that imports nothing and names nothing but the ES lib's globals and its own declarations
   * sees exactly what a program of the lib and the cell alone sees. It is checked in such a program
   * (a fraction of the whole session's); if that finds an error, the whole program checks it again,
   * so what the user is told never depends on this shortcut.
   */
  private selfContained(code: string, sf: TS.SourceFile, identifiers: Set<string>): boolean {
    const ts = this.ts;
    const globals = this.nonLibGlobals;
    if (!globals || globals.has("*") || /\bimport\b/.test(code)) return false;
    if (sf.referencedFiles.length || sf.typeReferenceDirectives.length || sf.libReferenceDirectives.length) return false;
    for (const st of sf.statements) {
      if (ts.isImportEqualsDeclaration(st) || ts.isExportDeclaration(st) || ts.isExportAssignment(st) || ts.isModuleDeclaration(st)) return false;
    }
    for (const id of identifiers) if (this.owners.has(id) || globals.has(id)) return false;
    return true;
  }

  /** Checks a self-contained cell against the lib alone; returns its diagnostics and the cell's file. */
  private checkMinimal(code: string): { diagnostics: TS.Diagnostic[]; program: TS.Program; sf: TS.SourceFile } {
    const ts = this.ts;
    const file = path.join(this.cwd, "__streambook_minimal.ts");
    if (!this.minimal) {
      const lib = this.program().getSourceFile(this.libFile);
      const options: TS.CompilerOptions = { ...this.options, types: [], typeRoots: [] };
      const minimal = { program: undefined as unknown as TS.Program, sf: undefined as TS.SourceFile | undefined, options } as NonNullable<LanguageServer["minimal"]>;
      minimal.host = {
        getSourceFile: (f) => (f === this.libFile ? lib : f === file ? minimal.sf : undefined),
        getDefaultLibFileName: () => this.libFile,
        writeFile: () => {},
        getCurrentDirectory: () => this.cwd,
        getCanonicalFileName: (f) => f,
        useCaseSensitiveFileNames: () => true,
        getNewLine: () => "\n",
        fileExists: (f) => f === this.libFile || f === file,
        readFile: () => undefined,
      };
      this.minimal = minimal;
    }
    const m = this.minimal;
    // `export {}` makes it a module, as the cell's pool file is (top-level await, no global declarations).
    m.sf = ts.createSourceFile(file, `${code}\nexport {};\n`, ts.ScriptTarget.ES2022, true);
    m.program = ts.createProgram({ rootNames: [this.libFile, file], options: m.options, host: m.host, oldProgram: m.program });
    const syntactic = m.program.getSyntacticDiagnostics(m.sf);
    const diagnostics = syntactic.length > 0 ? [...syntactic] : [...m.program.getSemanticDiagnostics(m.sf)];
    return { diagnostics, program: m.program, sf: m.sf };
  }

  /** Module specifiers of the footer's imports (dropped from emitted JavaScript). */
  isFooterImport(specifier: string): boolean {
    return specifier === this.opts.preludeModule || specifier.startsWith("./__streambook_hub_");
  }

  private loadPrelude(): void {
    if (this.preludeLoaded) return;
    this.preludeLoaded = true;
    const mod = this.opts.preludeModule;
    if (!mod) return;
    const ts = this.ts;
    const probe = path.join(this.cwd, "__streambook_prelude_probe.ts");
    this.fileNames = undefined;
    this.files.set(probe, { text: `import * as prelude from ${JSON.stringify(mod)};\nexport {};\n`, version: 1, deps: new Set() });
    this.programStale = true;
    try {
      const program = this.program();
      const sf = program?.getSourceFile(probe);
      const decl = sf?.statements[0];
      if (!program || !decl || !ts.isImportDeclaration(decl)) return;
      const checker = program.getTypeChecker();
      const sym = checker.getSymbolAtLocation(decl.moduleSpecifier);
      if (!sym) return;
      for (const exp of checker.getExportsOfModule(sym)) {
        if (exp.name !== "default") this.owners.set(exp.name, { module: mod, kind: "import" });
      }
    } finally {
      this.files.delete(probe);
      this.fileNames = undefined;
      this.programStale = true;
    }
  }

  /**
   * Adds pool files, and a hub for them; the scratch and free files get the longer import list (a
   * one-off re-walk).
   */
  private growPool(): void {
    const hub = path.join(this.cwd, `__streambook_hub_${this.hubs.length + 1}.ts`);
    this.hubs.push(hub);
    for (let i = 0; i < POOL_CHUNK; i++) {
      const file = path.join(this.cwd, `__streambook_cell_${this.pool.length + 1}.ts`);
      this.poolIndex.set(file, this.pool.length);
      this.pool.push(file);
      this.free.push(file);
    }
    this.writeHub(this.hubs.length - 1);
    const empty = this.emptyFooter();
    for (const f of [...this.free, this.scratchFile]) this.write(f, empty, new Set());
    for (const f of this.pool) {
      const v = this.files.get(f)!;
      if (v.compact !== undefined && v.text !== v.compact) this.write(f, v.compact, v.deps, v.compact);
    }
  }

  /**
   * A hub re-exports every name of its POOL_CHUNK pool files, renamed apart (`x__c7`), so a footer imports
   * from one hub per POOL_CHUNK files rather than from every file (2,000 cells: 63 lines, not 2,000). Its
   * list of files never changes, so a new name changes its text but not the program's structure.
   */
  private writeHub(index: number): void {
    let text = "";
    for (let i = index * POOL_CHUNK; i < (index + 1) * POOL_CHUNK; i++) {
      const names = this.exportsOf.get(this.pool[i]) ?? [];
      text += `export { ${names.map((n) => `${n} as ${n}__c${i + 1}`).join(", ")} } from "./__streambook_cell_${i + 1}";\n`;
    }
    this.write(this.hubs[index], text, new Set());
  }

  private hubOf(file: string): number {
    return Math.floor(this.poolIndex.get(file)! / POOL_CHUNK);
  }

  private write(file: string, text: string, deps: Set<string>, compact?: string): void {
    const prev = this.files.get(file);
    if (prev?.text === text) {
      prev.compact = compact;
      return;
    }
    if (!prev) this.fileNames = undefined;
    this.files.set(file, { text, version: (prev?.version ?? 0) + 1, deps, compact });
    this.programStale = true;
  }

  /**
   * The footer: an import from every hub (and the prelude) in a fixed order, naming the earlier names
   * the cell uses; then the cell's own exports. `key` also names the versions of the files that own them.
   */
  private footer(
    declared: Map<string, DeclarationKind>,
    used: Iterable<string>,
  ): { text: string; compact: string; deps: Set<string>; key: string } {
    // Import specifiers by module (a hub or the prelude): `x`, or `x__c7 as x` through a hub.
    const byModule = new Map<string, string[]>();
    let text = "\n";
    let compact = "\n";
    let key = "";
    const deps = new Set<string>();
    for (const name of used) {
      if (declared.has(name)) continue;
      const owner = this.owners.get(name);
      if (!owner) continue;
      const isPool = owner.module !== this.opts.preludeModule;
      const mod = isPool ? this.hubs[this.hubOf(owner.module)] : owner.module;
      let local = name;
      if (owner.kind === "let" || owner.kind === "var") {
        // An earlier `let`/`var` stays assignable, with its type checked: a local declaration typed as
        // the import (a plain import binding could not be assigned at all).
        const line = `declare let ${name}: typeof ${MUTABLE_PREFIX}${name};\n`;
        text += line;
        compact += line;
        local = MUTABLE_PREFIX + name;
      }
      const exported = isPool ? `${name}__c${this.poolIndex.get(owner.module)! + 1}` : name;
      const list = byModule.get(mod) ?? [];
      list.push(exported === local ? local : `${exported} as ${local}`);
      byModule.set(mod, list);
      if (isPool && !deps.has(owner.module)) {
        deps.add(owner.module);
        key += `${owner.module}#${this.files.get(owner.module)!.version};`;
      }
    }
    const modules = this.opts.preludeModule ? [this.opts.preludeModule, ...this.hubs] : this.hubs;
    for (const mod of modules) {
      const names = byModule.get(mod) ?? [];
      const spec = mod === this.opts.preludeModule ? mod : "./" + path.basename(mod, ".ts");
      const line = `import { ${names.join(", ")} } from ${JSON.stringify(spec)};\n`;
      text += line;
      if (names.length) compact += line;
    }
    const exports = `export { ${[...declared.keys()].join(", ")} };\n`;
    return { text: text + exports, compact: compact + exports, deps, key };
  }

  /**
   * Checks a new cell in the next free pool file (lazily: not asking for diagnostics costs nothing). The caller
   * then commits it (it ran: its names become visible) or discards it (a type error).
   */
  checkCell(code: string): PendingCell {
    this.loadPrelude();
    const ts = this.ts;
    const sf = ts.createSourceFile("cell.ts", code, ts.ScriptTarget.ES2022, true);
    const declared = topLevelDeclarations(sf);
    const identifiers = identifiersOf(sf);
    const { text, compact, deps, key } = this.footer(declared, identifiers);
    const full = code + text;
    // Hashed: the footer grows with the pool, and these keys are kept (diagnostics, byText).
    const cacheKey = createHash("sha1").update(full).update("\0").update(key).digest("base64");
    // The cell is checked in the free pool file it will own if it runs: committing it then changes no
    // file, so the next cell's program differs from this one's in one file only.
    if (this.free.length === 0) this.growPool();
    const file = this.free[0];
    let done = false;
    let checkedHere = false;
    let checkedAlone: { program: TS.Program; sf: TS.SourceFile } | undefined;
    const release = (): void => {
      if (this.free[0] === file) this.write(file, this.emptyFooter(), new Set());
    };
    return {
      diagnostics: () => {
        let diagnostics = this.diagnosticsCache.get(cacheKey);
        if (!diagnostics && this.selfContained(code, sf, identifiers)) {
          const alone = this.checkMinimal(code);
          if (this.cellDiagnostics(alone.diagnostics, code).length === 0) {
            checkedAlone = alone;
            diagnostics = [];
            this.diagnosticsCache.set(cacheKey, diagnostics);
          }
        }
        if (!diagnostics) {
          checkedHere = true;
          this.write(file, full, deps);
          diagnostics = this.diagnosticsOf(file, code);
          if (this.diagnosticsCache.size >= 1000) this.diagnosticsCache.delete(this.diagnosticsCache.keys().next().value!);
          this.diagnosticsCache.set(cacheKey, diagnostics);
        }
        return diagnostics;
      },
      commit: () => {
        if (done) return;
        done = true;
        // An identical re-run whose names all still belong to its file changes nothing.
        const same = this.byText.get(cacheKey);
        if (declared.size === 0 || (same && [...declared.keys()].every((n) => this.owners.get(n)?.module === same))) {
          release();
          return;
        }
        if (this.free[0] !== file) throw new Error("streambook: the checker's pool changed between check and commit");
        this.free.shift();
        this.write(file, full, deps, code + compact);
        this.byText.set(cacheKey, file);
        // Only a name taken from another cell can leave a pool file unneeded: otherwise there is nothing to recycle
        // (and walking every name per cell would grow with the session).
        let displaced = false;
        for (const [name, kind] of declared) {
          const before = this.owners.get(name)?.module;
          if (before !== undefined && before !== file && this.files.has(before)) displaced = true;
          this.owners.set(name, { module: file, kind });
        }
        this.exportsOf.set(file, [...declared.keys()]);
        this.writeHub(this.hubOf(file));
        if (displaced) this.collect();
      },
      discard: () => {
        if (done) return;
        done = true;
        release();
      },
      emit: () => {
        if (checkedAlone) {
          let js: string | undefined;
          let map: string | undefined;
          checkedAlone.program.emit(checkedAlone.sf, (name, text) => {
            if (name.endsWith(".js")) js = text;
            else if (name.endsWith(".js.map")) map = text;
          });
          return js !== undefined && map !== undefined ? { js, sourceMapText: map } : undefined;
        }
        // Only right after checking it here: a re-run's cached transpile is cheaper than an emit.
        if (!checkedHere || this.files.get(file)?.text !== full) return undefined;
        const program = this.program();
        let js: string | undefined;
        let map: string | undefined;
        program.emit(program.getSourceFile(file), (name, text) => {
          if (name.endsWith(".js")) js = text;
          else if (name.endsWith(".js.map")) map = text;
        });
        return js !== undefined && map !== undefined ? this.withoutFooter(js, map) : undefined;
      },
    };
  }

  /**
   * Drops the footer's lines (one import per pool file, then the exports) from a cell's emitted
   * JavaScript and its source map: later steps would otherwise parse and map as many lines as the pool has files.
   */
  private withoutFooter(js: string, sourceMapText: string): { js: string; sourceMapText: string } {
    // The footer's first line imports from the first module of the fixed list; nothing else names it so.
    const first = this.opts.preludeModule ?? "./" + path.basename(this.hubs[0], ".ts");
    const at = js.lastIndexOf(`} from ${JSON.stringify(first)};\n`);
    const lineStart = js.lastIndexOf("\n", at) + 1;
    if (at < 0 || !js.startsWith("import {", lineStart)) return { js, sourceMapText };
    let keep = 0;
    for (let i = js.indexOf("\n"); i !== -1 && i < lineStart; i = js.indexOf("\n", i + 1)) keep++;
    const map = JSON.parse(sourceMapText) as { mappings: string };
    let cut = -1;
    for (let n = 0; n < keep && (cut = map.mappings.indexOf(";", cut + 1)) !== -1; n++);
    if (cut !== -1) map.mappings = map.mappings.slice(0, cut);
    return { js: js.slice(0, lineStart), sourceMapText: JSON.stringify(map) };
  }

  private emptyText: string | undefined;
  private emptyPoolSize = -1;
  /** A pool file's text when it holds no cell (depends on the pool's size only). */
  private emptyFooter(): string {
    if (this.emptyPoolSize !== this.pool.length) {
      this.emptyText = this.footer(new Map(), []).text;
      this.emptyPoolSize = this.pool.length;
    }
    return this.emptyText!;
  }

  private diagnosticsOf(file: string, code: string): CellDiagnostic[] {
    const program = this.program();
    const sf = program.getSourceFile(file);
    const all: TS.Diagnostic[] = [...program.getSyntacticDiagnostics(sf)];
    // Semantic errors in the kernel's footer (past the cell's text) are not the user's.
    if (all.length === 0) all.push(...program.getSemanticDiagnostics(sf).filter((d) => (d.start ?? 0) < code.length));
    return this.cellDiagnostics(all, code);
  }

  /** The errors a user sees, with positions in the cell. */
  private cellDiagnostics(all: readonly TS.Diagnostic[], code: string): CellDiagnostic[] {
    const ts = this.ts;
    const lines = code.split("\n");
    const out: CellDiagnostic[] = [];
    for (const d of all) {
      if (d.category !== ts.DiagnosticCategory.Error || IGNORED_CODES.has(d.code)) continue;
      const start = Math.min(d.start ?? 0, code.length);
      let message = ts.flattenDiagnosticMessageText(d.messageText, "\n");
      if (d.code === 2632 && d.start !== undefined && d.length !== undefined) {
        // "Cannot assign to 'x' because it is an import": x is an earlier cell's declaration.
        const name = code.slice(d.start, d.start + d.length);
        const kind = this.owners.get(name)?.kind;
        if (kind === "let" || kind === "var") continue;
        if (kind === "const") message = `Cannot assign to '${name}' because it is a constant.`;
      }
      const before = code.slice(0, start);
      const line = before.split("\n").length;
      const lineStart = before.lastIndexOf("\n") + 1;
      const column = utf16ToCodePoints(code.slice(lineStart), start - lineStart) + 1;
      out.push({ line, column, code: d.code, message, sourceLine: lines[line - 1] ?? "" });
    }
    return out;
  }

  /** Recycles pool files no visible name needs, directly or through another live cell. */
  private collect(): void {
    const live = new Set<string>();
    const stack: string[] = [];
    for (const o of this.owners.values()) {
      if (this.files.has(o.module) && !live.has(o.module)) {
        live.add(o.module);
        stack.push(o.module);
      }
    }
    while (stack.length) {
      for (const dep of this.files.get(stack.pop()!)?.deps ?? []) {
        if (!live.has(dep)) {
          live.add(dep);
          stack.push(dep);
        }
      }
    }
    const freeSet = new Set(this.free);
    const empty = this.emptyFooter();
    for (const f of this.pool) {
      if (live.has(f) || freeSet.has(f)) continue;
      this.write(f, empty, new Set());
      this.free.push(f);
      if (this.exportsOf.delete(f)) this.writeHub(this.hubOf(f));
    }
    for (const [text, f] of this.byText) if (!live.has(f)) this.byText.delete(text);
  }

  /** Puts `code` in the scratch file (all earlier names visible) for completions and inspection. */
  private scratch(code: string): void {
    this.loadPrelude();
    const ts = this.ts;
    const sf = ts.createSourceFile("cell.ts", code, ts.ScriptTarget.ES2022, false);
    const { text } = this.footer(topLevelDeclarations(sf), this.owners.keys());
    this.write(this.scratchFile, code + text, new Set());
  }

  complete(code: string, cursorPos: number): CompleteResult {
    const ts = this.ts;
    const cursor = codePointsToUtf16(code, cursorPos);
    let start = cursor;
    while (start > 0 && /[\p{ID_Continue}$\u200c\u200d]/u.test(code[start - 1])) start--;
    const prefix = code.slice(start, cursor);
    this.scratch(code);
    const info = this.service.getCompletionsAtPosition(this.scratchFile, cursor, {
      includeCompletionsWithInsertText: true,
    });
    const lower = prefix.toLowerCase();
    const fits = info?.isMemberCompletion ? this.thisParameterFilter(start) : () => true;
    const entries = (info?.entries ?? [])
      .filter((e) => e.name.toLowerCase().startsWith(lower) && !e.name.startsWith("__streambook"))
      .filter(fits)
      .sort((a, b) => (a.sortText < b.sortText ? -1 : a.sortText > b.sortText ? 1 : a.name.localeCompare(b.name)));
    const startCp = utf16ToCodePoints(code, start);
    const endCp = utf16ToCodePoints(code, cursor);
    return {
      matches: entries.map((e) => e.name),
      cursor_start: startCp,
      cursor_end: endCp,
      metadata: {
        _jupyter_types_experimental: entries.map((e) => ({ start: startCp, end: endCp, text: e.name, type: e.kind })),
      },
    };
  }

  /**
   * Member completions keep only the methods whose `this` parameter the receiver satisfies, so
   * pair operations (`this: DStream<[K, V]>`) are offered on pair streams only. TypeScript's own
   * completions list them everywhere. `start` is the UTF-16 offset of the word being completed.
   */
  private thisParameterFilter(start: number): (e: TS.CompletionEntry) => boolean {
    const ts = this.ts;
    const program = this.service.getProgram();
    const sf = program?.getSourceFile(this.scratchFile);
    if (!program || !sf) return () => true;
    const checker = program.getTypeChecker();
    let node: TS.Node | undefined = findToken(ts, sf, Math.max(0, start - 1));
    while (node && !ts.isPropertyAccessExpression(node)) node = node.parent;
    if (!node) return () => true;
    const receiverExpr = node.expression;
    const receiver = checker.getTypeAtLocation(receiverExpr);
    return (e) => {
      if (e.kind !== ts.ScriptElementKind.memberFunctionElement) return true;
      const prop = checker.getPropertyOfType(receiver, e.name);
      if (!prop) return true;
      const sigs = checker.getSignaturesOfType(checker.getTypeOfSymbolAtLocation(prop, receiverExpr), ts.SignatureKind.Call);
      return sigs.length === 0 || sigs.some((sig) => !sig.thisParameter || fitsPattern(ts, checker, receiver, checker.getTypeOfSymbol(sig.thisParameter), 0));
    };
  }

  inspect(code: string, cursorPos: number, detailLevel: number): InspectResult {
    const ts = this.ts;
    let cursor = codePointsToUtf16(code, cursorPos);
    // At the end of `Math.max` or just after `Math.max(`: look at the identifier before the cursor.
    while (cursor > 0 && !/[\p{ID_Continue}$]/u.test(code[cursor - 1] ?? "") && /[\s(,]/.test(code[cursor - 1])) cursor--;
    this.scratch(code);
    const info =
      this.service.getQuickInfoAtPosition(this.scratchFile, cursor) ??
      (cursor > 0 ? this.service.getQuickInfoAtPosition(this.scratchFile, cursor - 1) : undefined);
    if (!info) return { found: false, data: {} };
    const signature = ts.displayPartsToString(info.displayParts);
    const doc = ts.displayPartsToString(info.documentation);
    const tags = (info.tags ?? []).map((t) => `@${t.name}${t.text ? " " + ts.displayPartsToString(t.text) : ""}`);
    const plain = [signature, doc, ...(detailLevel > 0 || tags.length < 8 ? tags : [])].filter(Boolean).join("\n\n");
    const markdown = ["```ts\n" + signature + "\n```", doc, tags.map((t) => `*${t}*`).join("  \n")].filter(Boolean).join("\n\n");
    return { found: true, data: { "text/plain": plain, "text/markdown": markdown } };
  }

  /**
   * What every program of a new cell holds besides the lib and the globals (for tests and the timing
   * script): the cell files and hubs, their total text, and the import lines a new cell's footer has.
   */
  get sourceSize(): { files: number; chars: number; footerImports: number } {
    let files = 0;
    let chars = 0;
    for (const [name, v] of this.files) {
      if (!/__streambook_(cell|hub)_\d+\.ts$/.test(name)) continue;
      files++;
      chars += v.text.length;
    }
    const footerImports = this.emptyFooter().split("\n").filter((l) => l.startsWith("import ")).length;
    return { files, chars, footerImports };
  }

  /** Pool files in use and in all (for tests and the timing script). */
  get poolUsage(): { live: number; total: number } {
    return { live: this.pool.length - this.free.length, total: this.pool.length };
  }
}

/** The innermost token that contains `pos` (TypeScript's own getTokenAtPosition is internal). */
function findToken(ts: typeof TS, sf: TS.SourceFile, pos: number): TS.Node | undefined {
  let found: TS.Node | undefined;
  const visit = (n: TS.Node): void => {
    if (pos >= n.getStart(sf) && pos < n.getEnd()) {
      found = n;
      ts.forEachChild(n, visit);
    }
  };
  ts.forEachChild(sf, visit);
  return found;
}

function isReference(ts: typeof TS, t: TS.Type): t is TS.TypeReference {
  return (t.flags & ts.TypeFlags.Object) !== 0 && ((t as TS.ObjectType).objectFlags & ts.ObjectFlags.Reference) !== 0;
}

function hasTypeParameter(ts: typeof TS, checker: TS.TypeChecker, t: TS.Type, depth: number): boolean {
  if (depth > 4) return false;
  if (t.flags & ts.TypeFlags.TypeParameter) return true;
  if (t.isUnionOrIntersection()) return t.types.some((x) => hasTypeParameter(ts, checker, x, depth + 1));
  return isReference(ts, t) && checker.getTypeArguments(t).some((x) => hasTypeParameter(ts, checker, x, depth + 1));
}

/**
 * Does `actual` fit `pattern` (a method's `this` type), type parameters matching anything? Enough
 * inference for the engine's shapes: `DStream<[K, V]>`, `RDD<[K, V]>`, `RDD<number>`.
 */
function fitsPattern(ts: typeof TS, checker: TS.TypeChecker, actual: TS.Type, pattern: TS.Type, depth: number): boolean {
  if (depth > 4 || pattern.flags & ts.TypeFlags.TypeParameter) return true;
  if (actual.flags & (ts.TypeFlags.Any | ts.TypeFlags.Unknown)) return true;
  if (isReference(ts, pattern) && checker.isTupleType(pattern)) {
    if (!isReference(ts, actual) || !checker.isTupleType(actual)) return false;
    const p = checker.getTypeArguments(pattern);
    const a = checker.getTypeArguments(actual);
    return p.length === a.length && p.every((t, i) => fitsPattern(ts, checker, a[i], t, depth + 1));
  }
  if (isReference(ts, pattern) && isReference(ts, actual) && pattern.target === actual.target) {
    const p = checker.getTypeArguments(pattern);
    const a = checker.getTypeArguments(actual);
    return p.every((t, i) => a[i] === undefined || fitsPattern(ts, checker, a[i], t, depth + 1));
  }
  return hasTypeParameter(ts, checker, pattern, 0) || checker.isTypeAssignableTo(actual, pattern);
}

export interface PendingCell {
  diagnostics(): CellDiagnostic[];
  commit(): void;
  discard(): void;
  /** The cell's JavaScript from the program that checked it, when it is still there (else transpile). */
  emit(): { js: string; sourceMapText: string } | undefined;
}

const CELL_LIB = "es2023";
let combinedLibText: string | undefined;

/**
 * The ES lib files cells see, joined into one declaration file (no-default-lib, so it counts as the
 * default library). Building a program costs per file, and the lib is the largest set of small files.
 */
function combinedLib(ts: typeof TS): string {
  if (combinedLibText !== undefined) return combinedLibText;
  const dir = path.dirname(ts.getDefaultLibFilePath({}));
  const seen = new Set<string>();
  const parts: string[] = ['/// <reference no-default-lib="true"/>'];
  const add = (name: string): void => {
    if (seen.has(name)) return;
    seen.add(name);
    const text = ts.sys.readFile(path.join(dir, `lib.${name}.d.ts`));
    if (text === undefined) throw new Error(`streambook: TypeScript's lib.${name}.d.ts is missing: reinstall typescript.`);
    for (const m of text.matchAll(/^\/\/\/\s*<reference\s+lib="([^"]+)"\s*\/>/gm)) add(m[1].toLowerCase());
    parts.push(text.replace(/^\/\/\/\s*<reference\s+(lib|no-default-lib)=.*$/gm, ""));
  };
  add(CELL_LIB);
  combinedLibText = parts.join("\n");
  return combinedLibText;
}

function scriptKindOf(ts: typeof TS, file: string): TS.ScriptKind {
  if (/\.[cm]?js$/.test(file)) return ts.ScriptKind.JS;
  if (file.endsWith(".json")) return ts.ScriptKind.JSON;
  return ts.ScriptKind.TS;
}

/** Where @types/node lives: the kernel's own node_modules (cells see Node's types wherever they run). */
function findTypeRoots(): string[] {
  try {
    const pkg = require.resolve("@types/node/package.json");
    return [path.dirname(path.dirname(pkg))];
  } catch {
    return [];
  }
}

/** TypeScript's parse errors that mean "the text stopped too early" rather than "the text is wrong". */
const UNFINISHED_CODES = new Set([1002, 1003, 1005, 1109, 1126, 1128, 1160, 1010, 1135, 1138, 1144]);

const UNTERMINATED_CODES = new Set([1002, 1010, 1126, 1160]);

/** is_complete: unclosed brackets/strings/templates are incomplete; other syntax errors invalid. */
export function isComplete(code: string): IsCompleteResult {
  const ts = typescript();
  if (code.trim() === "") return { status: "complete" };
  const sf = ts.createSourceFile("cell.ts", code, ts.ScriptTarget.ES2022, false);
  const diags = (sf as unknown as { parseDiagnostics: TS.DiagnosticWithLocation[] }).parseDiagnostics ?? [];
  const { depth, unmatched } = openBrackets(ts, code);
  // A closing token with nothing (or the wrong thing) open is an error no more text can fix.
  if (unmatched) return { status: "invalid" };
  if (diags.length === 0) return depth > 0 ? { status: "incomplete", indent: "  ".repeat(depth) } : { status: "complete" };
  const end = code.trimEnd().length;
  // Unterminated strings, comments and templates are reported where the text runs out; other errors
  // mean "more text needed" only when they sit at the very end.
  const atEnd = diags.every((d) => d.start >= end || (d.start + d.length >= code.length && UNTERMINATED_CODES.has(d.code)));
  if (atEnd && diags.some((d) => UNFINISHED_CODES.has(d.code))) {
    return { status: "incomplete", indent: "  ".repeat(Math.max(0, depth)) };
  }
  return { status: "invalid" };
}

/**
 * How many (, [, { are open at the end, skipping strings, comments and template text; `unmatched`
 * when a closing token meets nothing open or the wrong opener (`}`, `(]`).
 */
function openBrackets(ts: typeof TS, code: string): { depth: number; unmatched: boolean } {
  const K = ts.SyntaxKind;
  const scanner = ts.createScanner(ts.ScriptTarget.ES2022, false, ts.LanguageVariant.Standard, code);
  const stack: TS.SyntaxKind[] = [];
  const close = (opener: TS.SyntaxKind): boolean => {
    if (stack[stack.length - 1] !== opener) return false;
    stack.pop();
    return true;
  };
  let previous: TS.SyntaxKind = K.Unknown;
  for (let tok = scanner.scan(); tok !== K.EndOfFileToken; previous = tok, tok = scanner.scan()) {
    switch (tok) {
      case K.SlashToken:
      case K.SlashEqualsToken:
        // A regular expression where an operand is expected: its brackets are not code.
        if (!endsOperand(ts, previous)) tok = scanner.reScanSlashToken();
        break;
      case K.OpenParenToken:
      case K.OpenBracketToken:
      case K.OpenBraceToken:
      case K.TemplateHead:
        stack.push(tok);
        break;
      case K.CloseParenToken:
        if (!close(K.OpenParenToken)) return { depth: 0, unmatched: true };
        break;
      case K.CloseBracketToken:
        if (!close(K.OpenBracketToken)) return { depth: 0, unmatched: true };
        break;
      case K.CloseBraceToken:
        if (stack[stack.length - 1] === K.TemplateHead) {
          // `}` inside a template: continue the template.
          if (scanner.reScanTemplateToken(false) === K.TemplateTail) stack.pop();
        } else if (!close(K.OpenBraceToken)) return { depth: 0, unmatched: true };
        break;
      default:
        break;
    }
  }
  return { depth: stack.filter((k) => k !== K.TemplateHead).length, unmatched: false };
}

/** Tokens after which `/` divides (an operand ended); anywhere else it starts a regular expression. */
function endsOperand(ts: typeof TS, kind: TS.SyntaxKind): boolean {
  const K = ts.SyntaxKind;
  return (
    kind === K.Identifier ||
    kind === K.NumericLiteral ||
    kind === K.BigIntLiteral ||
    kind === K.StringLiteral ||
    kind === K.CloseParenToken ||
    kind === K.CloseBracketToken ||
    kind === K.CloseBraceToken ||
    kind === K.NoSubstitutionTemplateLiteral ||
    kind === K.TemplateTail ||
    kind === K.ThisKeyword ||
    kind === K.SuperKeyword ||
    kind === K.TrueKeyword ||
    kind === K.FalseKeyword ||
    kind === K.NullKeyword ||
    kind === K.PlusPlusToken ||
    kind === K.MinusMinusToken
  );
}

/** Parse errors only (when type checking is off): a cell that cannot parse never runs. */
export function syntaxErrors(code: string): CellDiagnostic[] {
  const ts = typescript();
  const sf = ts.createSourceFile("cell.ts", code, ts.ScriptTarget.ES2022, false);
  const diags = (sf as unknown as { parseDiagnostics: TS.DiagnosticWithLocation[] }).parseDiagnostics ?? [];
  const lines = code.split("\n");
  return diags.map((d) => {
    const before = code.slice(0, d.start);
    const line = before.split("\n").length;
    const lineStart = before.lastIndexOf("\n") + 1;
    return {
      line,
      column: utf16ToCodePoints(code.slice(lineStart), d.start - lineStart) + 1,
      code: d.code,
      message: ts.flattenDiagnosticMessageText(d.messageText, "\n"),
      sourceLine: lines[line - 1] ?? "",
    };
  });
}

