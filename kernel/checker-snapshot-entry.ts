// The checker snapshot's builder script (run by checker-snapshot.ts under `node --build-snapshot`,
// wrapped so it has an `exports`). A builder may require() only Node's built-in modules, so TypeScript
// and the checker's modules are compiled with vm by the small loader below; then the declarations
// every notebook sees are parsed and bound, and the checker loop becomes the snapshot's main function.
import * as fs from "node:fs";
import * as path from "node:path";
import * as v8 from "node:v8";
import * as vm from "node:vm";

const env = process.env as Record<string, string>;

/** Runs a CommonJS file; `onExports` gets its exports object before it runs (a cycle sees the partial one). */
function compile(file: string, req: (id: string) => unknown, onExports?: (e: Record<string, unknown>) => void): Record<string, unknown> {
  const module = { exports: {} as Record<string, unknown> };
  onExports?.(module.exports);
  const fn = vm.compileFunction(fs.readFileSync(file, "utf8"), ["exports", "require", "module", "__filename", "__dirname"], { filename: file });
  fn(module.exports, req, module, file, path.dirname(file));
  return module.exports;
}

const ts = compile(env.STREAMBOOK_TYPESCRIPT, require);
const modules = new Map<string, Record<string, unknown>>();
function load(file: string): Record<string, unknown> {
  const hit = modules.get(file);
  if (hit) return hit;
  const req = (id: string): unknown => {
    if (id === "typescript") return ts;
    if (id.startsWith("./")) return load(path.join(path.dirname(file), id.endsWith(".js") ? id : `${id}.js`));
    return require(id);
  };
  const exports = compile(file, req, (e) => modules.set(file, e));
  modules.set(file, exports);
  return exports;
}
const mod = (name: string): Record<string, unknown> => load(path.join(env.STREAMBOOK_KERNEL_DIR, `${name}.js`));

for (const name of env.STREAMBOOK_SNAPSHOT_MODULES.split(",")) mod(name);
(mod("transform") as { useTypeScript(t: unknown): void }).useTypeScript(ts);
// The declaration files now parsed inside the snapshot: their stamps go in the blob's info file.
const parsed = (mod("checker") as { prewarm(prelude: string): string[] }).prewarm(env.STREAMBOOK_PRELUDE);
fs.writeFileSync(env.STREAMBOOK_SNAPSHOT_FILES, JSON.stringify(parsed));
const serve = (mod("checker-process") as { serve(): void }).serve;
v8.startupSnapshot.setDeserializeMainFunction(() => serve());
