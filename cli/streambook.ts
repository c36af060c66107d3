// The `streambook` command: install/uninstall the kernelspec, start a kernel, or run a pipeline
// (`run` is cli/run.ts, loaded only when asked for so a missing file cannot break install).
import { install, InstallOptions, uninstall } from "../kernel/install.js";

const USAGE = `usage:
  streambook install [--user | --prefix PREFIX] [--quiet]   register the "streambook" Jupyter kernel
  streambook uninstall [--user | --prefix PREFIX] [--quiet] remove it
  streambook kernel -f CONNECTION_FILE                      start a kernel (what Jupyter runs)
  streambook run [NOTEBOOK.ipynb] ...                        run a notebook headlessly (see streambook run --help)
`;

export class CliUsageError extends Error {
  override name = "CliUsageError";
}

function parseInstallArgs(args: readonly string[]): InstallOptions & { quiet: boolean } {
  const options: InstallOptions & { quiet: boolean } = { quiet: false };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--user") options.prefix = undefined;
    else if (arg === "--quiet" || arg === "-q") options.quiet = true;
    else if (arg === "--prefix") {
      const value = args[++i];
      if (value === undefined) throw new CliUsageError("--prefix needs a folder: streambook install --prefix /usr/local");
      options.prefix = value;
    } else if (arg.startsWith("--prefix=")) options.prefix = arg.slice("--prefix=".length);
    else throw new CliUsageError(`unknown option ${arg}\n${USAGE}`);
  }
  return options;
}

export function main(args: readonly string[]): void {
  const [command, ...rest] = args;
  try {
    switch (command) {
      case "install": {
        const options = parseInstallArgs(rest);
        const dir = install(options);
        if (!options.quiet) process.stdout.write(`Installed kernelspec streambook in ${dir}\n`);
        break;
      }
      case "uninstall": {
        const options = parseInstallArgs(rest);
        const dir = uninstall(options);
        if (!options.quiet) process.stdout.write(dir ? `Removed ${dir}\n` : "No streambook kernelspec was installed there\n");
        break;
      }
      case "kernel": {
        const { startFromCommandLine } = require("../kernel/main.js") as typeof import("../kernel/main.js");
        const { createNotebookInterpreter } = require("../kernel/notebook.js") as typeof import("../kernel/notebook.js");
        startFromCommandLine(rest, createNotebookInterpreter);
        break;
      }
      case "run": {
        const run = require("./run.js") as { main(args: string[]): unknown };
        const result = run.main([...rest]);
        if (result instanceof Promise) {
          result.then(
            (code: unknown) => {
              if (typeof code === "number") process.exitCode = code;
            },
            (err: unknown) => {
              process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
              process.exitCode = 1;
            },
          );
        }
        break;
      }
      case undefined:
      case "help":
      case "--help":
      case "-h":
        process.stdout.write(USAGE);
        break;
      default:
        throw new CliUsageError(`unknown command ${command}\n${USAGE}`);
    }
  } catch (err) {
    process.stderr.write(`streambook: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = err instanceof CliUsageError ? 2 : 1;
  }
}
