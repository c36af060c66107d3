// Builds dist/checker.blob, the V8 startup snapshot the checker process starts from: TypeScript loaded,
// and the ES lib, @types/node and the notebook prelude's declarations parsed and bound, so a kernel's
// first cell is checked in milliseconds instead of after ~1.5 s of parsing. `npm run build` runs it.
//
// `node dist/kernel/checker-snapshot.js` builds it, running checker-snapshot-entry.ts as the snapshot's
// builder script.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

const DIST = path.resolve(__dirname, "..");
export const BLOB = path.join(DIST, "checker.blob");
export const BLOB_INFO = path.join(DIST, "checker.blob.json");
/** The modules the checker process runs, all inside the snapshot (their stamps are checked at use). */
export const SNAPSHOT_MODULES = ["checker-process", "checker", "language", "transform", "stack", "interpreter"];
const ENTRY = path.join(DIST, "kernel", "checker-snapshot-entry.js");

export interface BlobInfo {
  node: string;
  arch: string;
  platform: string;
  /** size:mtime of every file whose content the snapshot holds (code and pre-parsed declarations). */
  stamps: Record<string, string>;
}

export function stampOf(file: string): string {
  try {
    const st = fs.statSync(file);
    return `${st.size}:${st.mtimeMs}`;
  } catch {
    return "missing";
  }
}

/** Builds the blob and its info file; returns a reason when it could not (the kernel then checks in-process). */
export function buildCheckerSnapshot(): string | undefined {
  const typescriptPath = require.resolve("typescript");
  const tmp = `${BLOB}.tmp-${process.pid}`;
  const filesOut = `${BLOB}.files-${process.pid}`;
  // A builder script is not a CommonJS module: it gets an `exports` from this wrapper (same line count).
  const wrapped = `${BLOB}.builder-${process.pid}.js`;
  fs.writeFileSync(wrapped, `(function (exports) {${fs.readFileSync(ENTRY, "utf8")}\n})({});\n`);
  fs.rmSync(BLOB_INFO, { force: true });
  const r = spawnSync(process.execPath, ["--no-warnings", "--snapshot-blob", tmp, "--build-snapshot", wrapped], {
    env: {
      ...process.env,
      STREAMBOOK_TYPESCRIPT: typescriptPath,
      STREAMBOOK_SNAPSHOT_FILES: filesOut,
      STREAMBOOK_SNAPSHOT_MODULES: SNAPSHOT_MODULES.join(","),
      STREAMBOOK_PRELUDE: path.join(DIST, "kernel", "notebook-prelude.js"),
      STREAMBOOK_KERNEL_DIR: path.join(DIST, "kernel"),
    },
    stdio: ["ignore", "inherit", "pipe"],
    encoding: "utf8",
  });
  let parsed: string[] = [];
  try {
    parsed = JSON.parse(fs.readFileSync(filesOut, "utf8")) as string[];
  } catch {
    // reported below: no blob either
  }
  fs.rmSync(filesOut, { force: true });
  fs.rmSync(wrapped, { force: true });
  if (r.status !== 0 || !fs.existsSync(tmp)) {
    fs.rmSync(tmp, { force: true });
    return `the snapshot builder exited with ${r.status ?? r.signal}: ${String(r.stderr ?? "").trim().split("\n").slice(-3).join(" / ")}`;
  }
  fs.renameSync(tmp, BLOB);
  const stamps: Record<string, string> = {};
  for (const f of [...SNAPSHOT_MODULES.map((m) => path.join(DIST, "kernel", `${m}.js`)), ENTRY, typescriptPath, ...parsed]) stamps[f] = stampOf(f);
  const info: BlobInfo = { node: process.version, arch: process.arch, platform: process.platform, stamps };
  fs.writeFileSync(BLOB_INFO, JSON.stringify(info));
  return undefined;
}

if (require.main === module) {
  const why = buildCheckerSnapshot();
  if (why) process.stderr.write(`streambook: no checker snapshot (${why}); kernels will check cells in-process, with a slower first cell\n`);
}
