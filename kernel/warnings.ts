// Node prints "ExperimentalWarning: vm.USE_MAIN_CONTEXT_DEFAULT_LOADER is an experimental feature" the first
// time a cell uses import(): the kernel needs that loader for import() inside cells, and the line is noise
// in every runner, nbconvert, console and test log. Exactly that warning is dropped; every other one stays.

const VM_LOADER_FEATURE = "vm.USE_MAIN_CONTEXT_DEFAULT_LOADER";

let installed = false;

/** Drops Node's experimental-feature warning for vm.USE_MAIN_CONTEXT_DEFAULT_LOADER, and nothing else. */
export function silenceVmLoaderWarning(): void {
  if (installed) return;
  installed = true;
  const emitWarning = process.emitWarning.bind(process) as (...args: unknown[]) => void;
  process.emitWarning = ((warning: string | Error, ...rest: unknown[]): void => {
    if (isVmLoaderWarning(warning, rest[0])) return;
    emitWarning(warning, ...rest);
  }) as typeof process.emitWarning;
}

function isVmLoaderWarning(warning: string | Error, typeOrOptions: unknown): boolean {
  const message = typeof warning === "string" ? warning : warning.message;
  const type =
    warning instanceof Error
      ? warning.name
      : typeof typeOrOptions === "string"
        ? typeOrOptions
        : (typeOrOptions as { type?: unknown } | undefined)?.type;
  return type === "ExperimentalWarning" && message.startsWith(`${VM_LOADER_FEATURE} `);
}
