// Kernelspec install/uninstall without Python: a kernelspec is a folder holding kernel.json, placed
// where Jupyter looks (JUPYTER_DATA_DIR, the user data dir, or PREFIX/share/jupyter).
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

export const KERNEL_NAME = "streambook";

export interface InstallOptions {
  /** Install under PREFIX/share/jupyter/kernels instead of the user's data dir. */
  prefix?: string;
  /** The command Jupyter runs; defaults to this Node and this checkout's dist/kernel/main.js. */
  argv?: string[];
  /** Extra environment for the kernel process. */
  env?: Record<string, string>;
}

export class KernelspecError extends Error {
  override name = "KernelspecError";
}

/** Jupyter's user data dir, as jupyter_core.paths.jupyter_data_dir() computes it. */
export function jupyterDataDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.JUPYTER_DATA_DIR) return path.resolve(env.JUPYTER_DATA_DIR);
  const home = os.homedir();
  if (process.platform === "darwin") return path.join(home, "Library", "Jupyter");
  if (process.platform === "win32") return path.join(env.APPDATA ?? path.join(home, "AppData", "Roaming"), "jupyter");
  return path.join(env.XDG_DATA_HOME || path.join(home, ".local", "share"), "jupyter");
}

export function kernelspecDir(options: InstallOptions = {}): string {
  const base = options.prefix !== undefined ? path.join(path.resolve(options.prefix), "share", "jupyter") : jupyterDataDir();
  return path.join(base, "kernels", KERNEL_NAME);
}

/** The project root: dist/kernel/install.js lives two levels below it. */
function projectRoot(): string {
  return path.resolve(__dirname, "..", "..");
}

export function kernelSpec(options: InstallOptions = {}): Record<string, unknown> {
  const root = projectRoot();
  const template = JSON.parse(readFileSync(path.join(root, "kernel.json"), "utf8")) as Record<string, unknown>;
  const main = path.join(root, "dist", "kernel", "main.js");
  if (options.argv === undefined && !existsSync(main)) {
    throw new KernelspecError(`${main} does not exist: run "npm run build" before installing the kernelspec`);
  }
  const spec: Record<string, unknown> = {
    ...template,
    argv: options.argv ?? [process.execPath, main, "-f", "{connection_file}"],
  };
  if (options.env !== undefined) spec.env = options.env;
  return spec;
}

/** Writes the kernelspec, replacing an earlier one; returns its folder. */
export function install(options: InstallOptions = {}): string {
  const spec = kernelSpec(options);
  const dir = kernelspecDir(options);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, "kernel.json"), JSON.stringify(spec, null, 2) + "\n");
  writeFileSync(path.join(dir, "logo-svg.svg"), LOGO_SVG);
  return dir;
}

/** Removes the kernelspec; returns its folder, or undefined when none was installed there. */
export function uninstall(options: InstallOptions = {}): string | undefined {
  const dir = kernelspecDir(options);
  if (!existsSync(dir)) return undefined;
  rmSync(dir, { recursive: true, force: true });
  return dir;
}

const LOGO_SVG = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64" width="64" height="64">
<rect width="64" height="64" rx="8" fill="#3178c6"/>
<path d="M8 44 C18 28, 26 52, 36 36 S 52 20, 58 26" fill="none" stroke="#fff" stroke-width="5" stroke-linecap="round"/>
<text x="32" y="22" font-family="sans-serif" font-size="14" font-weight="bold" fill="#fff" text-anchor="middle">TS</text>
</svg>
`;
