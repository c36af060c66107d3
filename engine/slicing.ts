// Cooperative processing: heavy work is written as generators that yield every chunk of records;
// runSliced drives them with a time budget and gives the event loop a turn (setImmediate) in between,
// so a 1M-record batch never blocks the loop for long. runSync drives the same code without yielding.

export type Sliced<T> = Generator<void, T, void>;

/** Records processed between two yields. */
export const CHUNK = 4096;

/** How long a slice may run before the loop gets a turn. */
export const SLICE_BUDGET_MS = 15;

export function runSync<T>(gen: Sliced<T>): T {
  let r = gen.next();
  while (!r.done) r = gen.next();
  return r.value;
}

export function yieldToLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

export class CancelledError extends Error {
  constructor() {
    super("processing was cancelled because the streaming context stopped");
    this.name = "CancelledError";
  }
}

/**
 * Runs `gen` in slices of at most ~budgetMs; `cancelled()` is polled at each yield. A cancelled run
 * throws CancelledError into the generator at its yield (not return(), which would skip the `catch`
 * blocks that undo a half-applied state update), then rethrows it to the caller.
 */
export async function runSliced<T>(gen: Sliced<T>, cancelled?: () => boolean, budgetMs = SLICE_BUDGET_MS): Promise<T> {
  let start = performance.now();
  let r = gen.next();
  for (;;) {
    if (r.done) return r.value;
    if (performance.now() - start > budgetMs) {
      await yieldToLoop();
      if (cancelled?.()) {
        const cancel = new CancelledError();
        try {
          gen.throw(cancel);
        } finally {
          // A generator that swallowed the error must not be left suspended half way.
          gen.return(undefined as never);
        }
        throw cancel;
      }
      start = performance.now();
    }
    r = gen.next();
  }
}
