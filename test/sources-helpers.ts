// Helpers for the sources tests: a manual-clock context, batch collection, receiver events to await.
import { SparkContext } from "../engine/rdd.js";
import { StreamingContext, type StreamingContextOptions } from "../engine/context.js";
import type { DStream } from "../engine/dstream.js";
import type { ReceiverInfo } from "../engine/listener.js";

export function manualContext(batchMs = 1000, options: StreamingContextOptions = {}): StreamingContext {
  return new StreamingContext(new SparkContext(), batchMs, { clock: "manual", ...options });
}

/** Every batch's records, as [time, records], in batch order. */
export function collectBatches<T>(stream: DStream<T>): [number, T[]][] {
  const out: [number, T[]][] = [];
  stream.foreachRDD((rdd, time) => {
    out.push([time, rdd.collect()]);
  });
  return out;
}

export type ReceiverEventKind = "started" | "error" | "stopped";

/** Records receiver events; `waitFor(kind, n)` resolves once n events of that kind have arrived. */
export function receiverEvents(ssc: StreamingContext) {
  const events: { kind: ReceiverEventKind; info: ReceiverInfo }[] = [];
  const waiters: { kind: ReceiverEventKind; n: number; resolve: (info: ReceiverInfo) => void }[] = [];
  const count = (kind: ReceiverEventKind) => events.filter((e) => e.kind === kind).length;
  const push = (kind: ReceiverEventKind, info: ReceiverInfo) => {
    events.push({ kind, info });
    for (const w of waiters.slice()) {
      if (w.kind === kind && count(kind) >= w.n) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(info);
      }
    }
  };
  ssc.addStreamingListener({
    onReceiverStarted: (e) => push("started", e.receiverInfo),
    onReceiverError: (e) => push("error", e.receiverInfo),
    onReceiverStopped: (e) => push("stopped", e.receiverInfo),
  });
  return {
    events,
    count,
    kinds: () => events.map((e) => e.kind),
    waitFor(kind: ReceiverEventKind, n = count(kind) + 1): Promise<ReceiverInfo> {
      if (count(kind) >= n) return Promise.resolve(events.filter((e) => e.kind === kind)[n - 1]!.info);
      return new Promise((resolve) => waiters.push({ kind, n, resolve }));
    },
  };
}

/** Waits for a condition the test cannot get an event for (bytes arriving over TCP), polling, bounded. */
export async function until(cond: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
