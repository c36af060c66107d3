// Receivers: line splitting, Spark's PID rate estimator worked by hand, a custom Receiver's
// store/restart/reportError through the listeners, and maxRate capping batches without loss.
import { describe, expect, it } from "vitest";
import { LineSplitter, splitLines } from "../engine/sources/lines.js";
import { PIDRateEstimator, RateController, RateEstimatorConfigError } from "../engine/sources/ratecontrol.js";
import { Receiver, ReceiverInputDStream, ReceiverNotAttachedError, type BlockSlice, type BlockStore, type ReceivedBlock } from "../engine/sources/receiver.js";
import { collectBatches, manualContext, receiverEvents, until } from "./sources-helpers.js";

describe("LineSplitter", () => {
  it("splits on \\n and \\r\\n and joins a line cut across chunks", () => {
    const s = new LineSplitter();
    expect(s.push(Buffer.from("one\ntw"))).toEqual(["one"]);
    expect(s.push(Buffer.from("o\r\nthree\r"))).toEqual(["two"]);
    // The \r that ended the last chunk was half of a \r\n.
    expect(s.push(Buffer.from("\nfour\n\nfive"))).toEqual(["three", "four", ""]);
    expect(s.end()).toEqual(["five"]);
    expect(s.end()).toEqual([]);
  });

  it("decodes UTF-8 characters cut across chunk boundaries", () => {
    const bytes = Buffer.from("héllo wörld 🎉\nnext\n", "utf8");
    const s = new LineSplitter();
    const out: string[] = [];
    for (let i = 0; i < bytes.length; i++) out.push(...s.push(bytes.subarray(i, i + 1)));
    expect(out).toEqual(["héllo wörld 🎉", "next"]);
  });

  it("splitLines drops only the empty line after a final newline", () => {
    expect(splitLines("a\r\nb\n\nc\n")).toEqual(["a", "b", "", "c"]);
    expect(splitLines("a\nb")).toEqual(["a", "b"]);
    expect(splitLines("")).toEqual([]);
  });
});

describe("PIDRateEstimator (Spark's arithmetic, defaults 1.0 / 0.2 / 0.0 / min 100)", () => {
  it("calibrates on the first batch, then corrects by the error and the scheduling delay", () => {
    const e = new PIDRateEstimator(1000);
    // First batch: 1000 records in 500 ms = 2000 records/s, only remembered.
    expect(e.compute(1000, 1000, 500, 0)).toBeUndefined();
    // 1500 records in 1000 ms = 1500/s; error = 2000 - 1500 = 500; new = 2000 - 1.0 × 500 = 1500.
    expect(e.compute(2000, 1500, 1000, 0)).toBe(1500);
    // 1500 in 2000 ms = 750/s; error = 1500 - 750 = 750; historical = 500 ms × 750/s / 1000 ms = 375;
    // new = 1500 - 750 - 0.2 × 375 = 675.
    expect(e.compute(3000, 1500, 2000, 500)).toBe(675);
    // 50 in 1000 ms = 50/s; error = 625; historical = 2000 × 50 / 1000 = 100; 675 - 625 - 20 = 30 -> minRate 100.
    expect(e.compute(4000, 50, 1000, 2000)).toBe(100);
  });

  it("uses the derivative term when asked", () => {
    const e = new PIDRateEstimator(1000, { derived: 0.5 });
    expect(e.compute(1000, 1000, 500, 0)).toBeUndefined();
    // error = 500, dError = (500 - 0) / 1 s = 500; new = 2000 - 500 - 0.5 × 500 = 1250.
    expect(e.compute(2000, 1500, 1000, 0)).toBe(1250);
  });

  it("skips empty batches, instant batches and times that do not move forward", () => {
    const e = new PIDRateEstimator(1000);
    expect(e.compute(1000, 1000, 500, 0)).toBeUndefined();
    expect(e.compute(2000, 0, 1000, 0)).toBeUndefined();
    expect(e.compute(2000, 10, 0, 0)).toBeUndefined();
    expect(e.compute(1000, 1500, 1000, 0)).toBeUndefined();
    // The skipped calls changed nothing: the same second batch as above still gives 1500.
    expect(e.compute(2000, 1500, 1000, 0)).toBe(1500);
  });

  it("rejects impossible settings with a named error", () => {
    expect(() => new PIDRateEstimator(0)).toThrow(RateEstimatorConfigError);
    expect(() => new PIDRateEstimator(1000, { minRate: 0 })).toThrow(/minRate/);
    expect(() => new PIDRateEstimator(1000, { proportional: -1 })).toThrow(/proportional/);
  });

  it("RateController feeds the stream's own record counts and publishes the estimate", () => {
    const published: number[] = [];
    const c = new RateController(new PIDRateEstimator(1000), (r) => published.push(r));
    c.recordBatch(1000, 1000);
    c.onBatchCompleted({ batchInfo: { batchTime: 1000, numRecords: 99999, schedulingDelay: 0, processingDelay: 500, processingEndTime: 1500 } });
    c.recordBatch(2000, 1500);
    c.onBatchCompleted({ batchInfo: { batchTime: 2000, numRecords: 99999, schedulingDelay: 0, processingDelay: 1000, processingEndTime: 3000 } });
    // A batch this stream did not take part in is ignored.
    c.onBatchCompleted({ batchInfo: { batchTime: 3000, numRecords: 5, schedulingDelay: 0, processingDelay: 10, processingEndTime: 3010 } });
    expect(published).toEqual([1500]);
    expect(c.getLatestRate()).toBe(1500);
  });
});

// ---- a custom receiver in a running context (manual clock) ------------------------------------

class ListReceiver extends Receiver<number> {
  starts = 0;
  stops = 0;
  failStarts = 0;
  onStart(): void {
    this.starts++;
    if (this.failStarts > 0) {
      this.failStarts--;
      throw new Error("cannot open the source");
    }
  }
  onStop(): void {
    this.stops++;
  }
}

describe("Receiver and ReceiverInputDStream", () => {
  it("stores single records and arrays into the batch they arrived before", async () => {
    const ssc = manualContext(1000);
    const r = new ListReceiver();
    r.name = "numbers";
    const stream = ssc.receiverStream(r);
    const batches = collectBatches(stream);
    const ev = receiverEvents(ssc);
    await ssc.start();
    expect(r.isStarted()).toBe(true);
    expect(r.streamId).toBe((stream as ReceiverInputDStream<number>).id);
    const started = await ev.waitFor("started", 1);
    expect(started).toMatchObject({ streamId: r.streamId, name: "numbers", active: true });

    r.store(1);
    r.store([2, 3]);
    r.store(4);
    await ssc.advance(1000);
    r.store(5); // the clock is at 1000 and batch 1000 is done: this goes to batch 2000
    await ssc.advance(2000);
    await ssc.stop();
    expect(batches).toEqual([
      [1000, [1, 2, 3, 4]],
      [2000, [5]],
      [3000, []],
    ]);
    expect(r.stops).toBe(1);
    expect(r.isStopped()).toBe(true);
    expect(ev.kinds()).toEqual(["started", "stopped"]);
  });

  it("restart() reports the error, stops, and starts again after the delay; nothing stored is lost", async () => {
    const ssc = manualContext(1000);
    const r = new ListReceiver();
    const batches = collectBatches(ssc.receiverStream(r));
    const ev = receiverEvents(ssc);
    await ssc.start();
    await ev.waitFor("started", 1);
    r.store([1, 2]);
    r.restart("source went away", new Error("ECONNRESET"), 20);
    expect(r.isStopped()).toBe(true);
    const err = await ev.waitFor("error", 1);
    expect(err).toMatchObject({ active: false, lastErrorMessage: "source went away", lastError: "Error: ECONNRESET" });
    await ev.waitFor("started", 2);
    expect(r.isStarted()).toBe(true);
    expect([r.starts, r.stops]).toEqual([2, 1]);
    r.store(3);
    await ssc.advance(1000);
    await ssc.stop();
    expect(batches).toEqual([[1000, [1, 2, 3]]]);
    expect(ev.kinds()).toEqual(["started", "error", "started", "stopped"]);
  });

  it("reportError() reaches onReceiverError and the receiver keeps running", async () => {
    const ssc = manualContext(1000);
    const r = new ListReceiver();
    ssc.receiverStream(r);
    const ev = receiverEvents(ssc);
    await ssc.start();
    r.reportError("one bad record skipped", new TypeError("not a number"));
    const info = await ev.waitFor("error", 1);
    expect(info).toMatchObject({ active: true, lastErrorMessage: "one bad record skipped", lastError: "TypeError: not a number" });
    expect(r.isStarted()).toBe(true);
    expect(r.starts).toBe(1);
    await ssc.stop();
  });

  it("an onStart that throws is reported and restarted, never an uncaught exception", async () => {
    const ssc = manualContext(1000);
    const r = new ListReceiver();
    r.failStarts = 2;
    ssc.receiverStream(r, { restartDelayMs: 10 });
    const ev = receiverEvents(ssc);
    await ssc.start();
    await ev.waitFor("started", 1);
    expect(r.starts).toBe(3);
    expect(ev.kinds()).toEqual(["error", "error", "started"]);
    expect(ev.events[0]!.info.lastError).toBe("Error: cannot open the source");
    expect(ev.events[0]!.info.lastErrorMessage).toMatch(/Error starting receiver/);
    await ssc.stop();
    expect(ssc.lastError).toBeUndefined();
  });

  it("stop() from the receiver ends it; the context runs on and still delivers what was stored", async () => {
    const ssc = manualContext(1000);
    const r = new ListReceiver();
    const batches = collectBatches(ssc.receiverStream(r));
    const ev = receiverEvents(ssc);
    await ssc.start();
    r.store([7, 8]);
    r.stop("source finished");
    await ev.waitFor("stopped", 1);
    expect(r.isStopped()).toBe(true);
    await ssc.advance(1000);
    expect(ssc.state).toBe("active");
    await ssc.stop();
    expect(batches).toEqual([[1000, [7, 8]]]);
    expect(ev.kinds()).toEqual(["started", "stopped"]);
    expect(r.stops).toBe(1);
  });

  it("a receiver can be given to one stream only, and must be given to one before storing", () => {
    const ssc = manualContext(1000);
    const r = new ListReceiver();
    expect(() => r.store(1)).toThrow(ReceiverNotAttachedError);
    ssc.receiverStream(r);
    expect(() => ssc.receiverStream(r)).toThrow(ReceiverNotAttachedError);
  });

  it("is started and stopped again with the context; buffered records survive the stop", async () => {
    const ssc = manualContext(1000);
    const r = new ListReceiver();
    const batches = collectBatches(ssc.receiverStream(r));
    await ssc.start();
    r.store([1]);
    await ssc.stop();
    r.store([2]); // late data from a source that had not noticed the stop yet
    await ssc.start();
    await ssc.advance(1000);
    await ssc.stop();
    expect([r.starts, r.stops]).toEqual([2, 2]);
    expect(batches.flatMap(([, xs]) => xs)).toEqual([1, 2]);
  });
});

describe("maxRate and backpressure", () => {
  it("maxRate caps each batch at rate × batch seconds and delivers the rest later, in order", async () => {
    const ssc = manualContext(1000, { maxRate: 5 });
    const r = new ListReceiver();
    const batches = collectBatches(ssc.receiverStream(r));
    await ssc.start();
    r.store(Array.from({ length: 12 }, (_, i) => i));
    await ssc.advance(4000);
    await ssc.stop();
    expect(batches).toEqual([
      [1000, [0, 1, 2, 3, 4]],
      [2000, [5, 6, 7, 8, 9]],
      [3000, [10, 11]],
      [4000, []],
    ]);
  });

  it("a fractional allowance carries over (3 records/s with 500 ms batches: 1, 2, 1, 2)", async () => {
    const ssc = manualContext(500);
    const r = new ListReceiver();
    const batches = collectBatches(ssc.receiverStream(r, { maxRate: 3 }));
    await ssc.start();
    r.store(Array.from({ length: 10 }, (_, i) => i));
    await ssc.advance(2000);
    await ssc.stop();
    expect(batches.map(([, xs]) => xs.length)).toEqual([1, 2, 1, 2]);
  });

  it("the per-stream option overrides the context's maxRate, and setMaxRate changes it while running", async () => {
    const ssc = manualContext(1000, { maxRate: 2 });
    const r = new ListReceiver();
    const stream = ssc.receiverStream(r, { maxRate: 4 }) as ReceiverInputDStream<number>;
    const batches = collectBatches(stream);
    await ssc.start();
    r.store(Array.from({ length: 10 }, (_, i) => i));
    await ssc.advance(1000);
    stream.setMaxRate(undefined);
    await ssc.advance(1000);
    await ssc.stop();
    expect(batches.map(([, xs]) => xs.length)).toEqual([4, 6]);
    expect(stream.bufferedRecords()).toBe(0);
  });

  it("graceful stop delivers everything still buffered behind the rate limit", async () => {
    const ssc = manualContext(1000, { maxRate: 4 });
    const r = new ListReceiver();
    const batches = collectBatches(ssc.receiverStream(r));
    await ssc.start();
    r.store(Array.from({ length: 10 }, (_, i) => i));
    await ssc.stop({ stopGracefully: true });
    expect(batches.map(([, xs]) => xs.length)).toEqual([4, 4, 2]);
  });

  it("backpressure starts from initialRate, capped by maxRate, until the estimator has learnt a rate", async () => {
    const ssc = manualContext(1000, { backpressure: true, maxRate: 3 });
    const r = new ListReceiver();
    const slow = ssc.receiverStream(r, { initialRate: 2 }) as ReceiverInputDStream<number>;
    const r2 = new ListReceiver();
    const capped = ssc.receiverStream(r2, { initialRate: 10 }) as ReceiverInputDStream<number>;
    const a = collectBatches(slow);
    const b = collectBatches(capped);
    await ssc.start();
    expect([slow.rateLimit, capped.rateLimit]).toEqual([2, 3]);
    r.store([1, 2, 3, 4, 5]);
    r2.store([1, 2, 3, 4, 5]);
    await ssc.advance(1000);
    await ssc.stop();
    // A first completed batch only calibrates the estimator, so the initial rates held.
    expect(a).toEqual([[1000, [1, 2]]]);
    expect(b).toEqual([[1000, [1, 2, 3]]]);
    expect(() => ssc.receiverStream(new ListReceiver(), { initialRate: 0 })).toThrow(/initialRate/);
  });

  it("backpressure: the PID estimate from completed batches becomes the stream's rate limit", async () => {
    const ssc = manualContext(1000, { backpressure: true });
    const r = new ListReceiver();
    const stream = ssc.receiverStream(r, { pid: { minRate: 1 } }) as ReceiverInputDStream<number>;
    const sizes: number[] = [];
    stream.foreachRDD(async (rdd) => {
      sizes.push(rdd.count());
      // Make processing take real time, so the estimator sees a finite processing rate.
      await new Promise((resolve) => setTimeout(resolve, 50));
    });
    await ssc.start();
    expect(stream.rateLimit).toBeUndefined();
    r.store(Array.from({ length: 100 }, (_, i) => i));
    await ssc.advance(1000); // calibrates: 100 records in >= 50 ms
    expect(stream.rateLimit).toBeUndefined();
    r.store(Array.from({ length: 100 }, (_, i) => i));
    await ssc.advance(1000); // first estimate: at most 100 / 0.05 s = 2000 records/s
    const limit = stream.rateLimit;
    expect(limit).toBeDefined();
    expect(limit).toBe(stream.rateController?.getLatestRate());
    expect(limit!).toBeGreaterThanOrEqual(1);
    expect(limit!).toBeLessThanOrEqual(2000);
    r.store(Array.from({ length: 5000 }, (_, i) => i));
    await ssc.advance(1000);
    await ssc.stop();
    // The third batch was capped by the estimate in force when it was generated.
    expect(sizes[2]).toBe(Math.floor(limit!));
    expect(stream.bufferedRecords()).toBe(5000 - Math.floor(limit!));
  });
});

describe("the block store seam (for a write-ahead log)", () => {
  it("every block passes through put() before a batch can take it; allocated() gets each batch's slices", async () => {
    const ssc = manualContext(1000, { maxRate: 3 });
    const r = new ListReceiver();
    const puts: ReceivedBlock<number>[] = [];
    const allocations: [number, BlockSlice[]][] = [];
    const store: BlockStore<number> = {
      put: (b) => {
        puts.push(b);
      },
      allocated: (t, slices) => {
        allocations.push([t, slices.slice()]);
      },
    };
    const stream = ssc.receiverStream(r, { blockStore: store }) as ReceiverInputDStream<number>;
    const batches = collectBatches(stream);
    await ssc.start();
    r.store([1, 2]);
    r.store(3);
    r.store(4);
    r.store([5]);
    await ssc.advance(2000);
    await ssc.stop();
    // The two single records became one block, sealed when the array after them arrived.
    expect(puts.map((b) => [b.id, b.time, b.items])).toEqual([
      [0, 0, [1, 2]],
      [1, 0, [3, 4]],
      [2, 0, [5]],
    ]);
    expect(puts.every((b) => b.streamId === stream.id)).toBe(true);
    expect(batches).toEqual([
      [1000, [1, 2, 3]],
      [2000, [4, 5]],
    ]);
    expect(allocations).toEqual([
      [1000, [{ blockId: 0, start: 0, end: 2 }, { blockId: 1, start: 0, end: 1 }]],
      [2000, [{ blockId: 1, start: 1, end: 2 }, { blockId: 2, start: 0, end: 1 }]],
    ]);
  });

  it("an async put holds its block (and the blocks after it) back until it resolves; storeReliably waits for it", async () => {
    const ssc = manualContext(1000);
    const r = new ListReceiver();
    const pending: (() => void)[] = [];
    const store: BlockStore<number> = { put: () => new Promise<void>((resolve) => pending.push(resolve)) };
    const stream = ssc.receiverStream(r, { blockStore: store });
    const batches = collectBatches(stream);
    await ssc.start();
    let durable = false;
    const reliable = r.storeReliably([1, 2]).then(() => {
      durable = true;
    });
    r.store([3]);
    await ssc.advance(1000); // nothing is durable yet
    expect(durable).toBe(false);
    expect(pending.length).toBe(1); // puts run one at a time, in order
    pending.shift()!();
    await reliable;
    await until(() => pending.length === 1, "the second put");
    pending.shift()!();
    await until(() => (stream as ReceiverInputDStream<number>).bufferedRecords() === 3, "both blocks to be durable");
    await ssc.advance(1000);
    await ssc.stop();
    expect(batches).toEqual([
      [1000, []],
      [2000, [1, 2, 3]],
    ]);
  });

  it("a failed put is reported, storeReliably rejects, and the records still reach their batch", async () => {
    const ssc = manualContext(1000);
    const r = new ListReceiver();
    const store: BlockStore<number> = {
      put: () => {
        throw new Error("disk full");
      },
    };
    const batches = collectBatches(ssc.receiverStream(r, { blockStore: store }));
    const ev = receiverEvents(ssc);
    await ssc.start();
    await expect(r.storeReliably([1])).rejects.toThrow("disk full");
    r.store([2]); // fire and forget: no unhandled rejection
    const info = await ev.waitFor("error", 1);
    expect(info.lastErrorMessage).toMatch(/could not store block 0/);
    expect(info.lastError).toBe("Error: disk full");
    await ssc.advance(1000);
    await ssc.stop();
    expect(batches).toEqual([[1000, [1, 2]]]);
  });

  it("single records are sealed into a block every blockInterval when a block store is installed", async () => {
    const ssc = manualContext(1000);
    const r = new ListReceiver();
    let sealed: (b: ReceivedBlock<number>) => void = () => {};
    const firstBlock = new Promise<ReceivedBlock<number>>((resolve) => (sealed = resolve));
    ssc.receiverStream(r, { blockStore: { put: (b) => sealed(b) }, blockIntervalMs: 20 });
    await ssc.start();
    r.store(1);
    r.store(2);
    const block = await firstBlock;
    expect(block.items).toEqual([1, 2]);
    await ssc.stop();
  });

  it("recovery: restoreBatch replays a batch exactly; restoreBlocks puts records ahead of new ones", async () => {
    const ssc = manualContext(1000);
    const r = new ListReceiver();
    const stream = ssc.receiverStream(r) as ReceiverInputDStream<number>;
    const batches = collectBatches(stream);
    stream.restoreBatch(1000, [10, 11]);
    stream.restoreBlocks([{ id: 7, streamId: stream.id, time: 500, items: [12, 13] }]);
    await ssc.start();
    r.store([14]);
    await ssc.advance(2000);
    await ssc.stop();
    expect(batches).toEqual([
      [1000, [10, 11]],
      [2000, [12, 13, 14]],
    ]);
  });
});
