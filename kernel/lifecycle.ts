// A clean way out for code that is not the protocol loop (e.g. the interpreter turning a cell's
// process.exit() into a shutdown): main.ts registers the handler, anyone may ask for it.

export type ShutdownHandler = (restart: boolean) => Promise<void>;

let handler: ShutdownHandler | undefined;

/** main.ts calls this once; the handler flushes output, closes sockets and exits the process. */
export function onShutdownRequest(h: ShutdownHandler): void {
  handler = h;
}

/** Shuts the kernel down as a shutdown_request would (without a reply: nobody asked). */
export function requestShutdown(restart = false): Promise<void> {
  if (handler === undefined) {
    process.exitCode = 0;
    return Promise.resolve();
  }
  return handler(restart);
}
