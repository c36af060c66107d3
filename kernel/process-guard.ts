// Cells share the kernel's process, so every way a cell could end it is refused the same way:
// process.exit, reallyExit, abort, and a signal sent to the kernel itself, whichever name they are
// reached by (`process`, `globalThis.process`, `require("process")`). The kernel keeps the originals.

export class ProcessExitRefusedError extends Error {
  constructor(what = "process.exit()") {
    super(`${what} from a cell would stop the kernel, so it is refused: use the notebook's Restart or Shut Down instead.`);
    this.name = "ProcessExitRefusedError";
  }
}

/** What the kernel keeps for its own shutdown. */
export interface KernelExit {
  /** Ends the process (the real process.exit), e.g. after a clean shutdown. */
  exit(code: number): never;
}

type Kill = (pid: number, signal?: string | number) => boolean;
type RawKill = (pid: number, signal: number) => number;

// Signals a cell may still send to its own kernel: 0 (does it exist?) and SIGINT (an interrupt).
const HARMLESS_SIGNALS = new Set<string | number>([0, 2, "SIGINT"]);

let installed: KernelExit | undefined;

/**
 * Replaces the exit paths on the real process object (once per process) and returns the kernel's own
 * way out. Only the kernel process calls this: in-process users of the interpreter keep their process.
 */
export function guardProcessExits(proc: NodeJS.Process = process): KernelExit {
  if (installed) return installed;
  const mutable = proc as unknown as Record<string, unknown>;
  const originalExit = proc.exit;
  const originalReallyExit = mutable.reallyExit;
  const originalKill = proc.kill as Kill;
  const originalRawKill = mutable._kill as RawKill | undefined;
  const define = (name: string, value: unknown): void => {
    Object.defineProperty(proc, name, { value, writable: true, configurable: true, enumerable: false });
  };
  const refuse = (what: string) =>
    function refused(): never {
      throw new ProcessExitRefusedError(what);
    };
  // Signals to ourselves: our pid, our process group (0, or -pid when we lead it), or everyone (-1).
  const isSelf = (pid: number): boolean => pid === proc.pid || pid === 0 || pid === -1 || pid === -proc.pid;
  define("exit", refuse("process.exit()"));
  define("reallyExit", refuse("process.reallyExit()"));
  define("abort", refuse("process.abort()"));
  define("kill", function kill(pid: number, signal?: string | number): boolean {
    if (isSelf(Number(pid)) && !HARMLESS_SIGNALS.has(signal ?? "SIGTERM")) {
      throw new ProcessExitRefusedError(`process.kill(${String(pid)}, ${JSON.stringify(signal ?? "SIGTERM")})`);
    }
    return originalKill.call(proc, pid, signal);
  });
  if (originalRawKill) {
    define("_kill", function _kill(pid: number, signal: number): number {
      if (isSelf(Number(pid)) && !HARMLESS_SIGNALS.has(signal)) throw new ProcessExitRefusedError(`process._kill(${String(pid)}, ${String(signal)})`);
      return originalRawKill.call(proc, pid, signal);
    });
  }
  installed = {
    exit(code: number): never {
      // Node's exit() ends in process.reallyExit(): put the real one back first.
      define("reallyExit", originalReallyExit);
      return originalExit.call(proc, code);
    },
  };
  return installed;
}
