// StreamingContext lifecycle, listeners, errors, output operations and the presenter seam.

import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import {
  SparkContext,
  StreamingContext,
  StreamingContextStateError,
  setPresenter,
  type BatchInfo,
  type ChartRow,
  type StreamingListener,
} from "../engine/index.js";
import { newContext, sorted } from "./engine-helpers.js";

afterEach(async () => {
  setPresenter(undefined);
  await StreamingContext.getActive()?.stop();
});

function recorder(): { events: string[]; batches: BatchInfo[]; listener: StreamingListener } {
  const events: string[] = [];
  const batches: BatchInfo[] = [];
  const listener: StreamingListener = {
    onStreamingStarted: () => void events.push("started"),
    onBatchSubmitted: (e) => void events.push(`submitted ${e.batchInfo.batchTime}`),
    onBatchStarted: (e) => void events.push(`batchStarted ${e.batchInfo.batchTime}`),
    onOutputOperationStarted: (e) => void events.push(`opStarted ${e.outputOperationInfo.batchTime} #${e.outputOperationInfo.id} ${e.outputOperationInfo.name}`),
    onOutputOperationCompleted: (e) =>
      void events.push(
        `opCompleted ${e.outputOperationInfo.batchTime} #${e.outputOperationInfo.id}${e.outputOperationInfo.failureReason ? ` failed: ${e.outputOperationInfo.failureReason}` : ""}`,
      ),
    onBatchCompleted: (e) => {
      batches.push(e.batchInfo);
      events.push(`batchCompleted ${e.batchInfo.batchTime}`);
    },
    onStreamingStopped: () => void events.push("stopped"),
  };
  return { events, batches, listener };
}

describe("StreamingContext", () => {
  it("tells listeners every step, in order, with numRecords and delays", async () => {
    const { ssc } = newContext();
    const { events, batches, listener } = recorder();
    ssc.addStreamingListener(listener);
    ssc.addStreamingListener({ onBatchStarted: () => { throw new Error("a broken listener"); } });
    const s = ssc.queueStream([[1, 2, 3], [4]]);
    s.foreachRDD(() => {});
    s.count().foreachRDD(() => {});
    await ssc.start();
    await ssc.advance(1000);
    await ssc.advance(1000);
    await ssc.stop();
    expect(events).toEqual([
      "started",
      "submitted 1000",
      "batchStarted 1000",
      "opStarted 1000 #0 foreachRDD",
      "opCompleted 1000 #0",
      "opStarted 1000 #1 foreachRDD",
      "opCompleted 1000 #1",
      "batchCompleted 1000",
      "submitted 2000",
      "batchStarted 2000",
      "opStarted 2000 #0 foreachRDD",
      "opCompleted 2000 #0",
      "opStarted 2000 #1 foreachRDD",
      "opCompleted 2000 #1",
      "batchCompleted 2000",
      "stopped",
    ]);
    expect(batches.map((b) => b.numRecords)).toEqual([3, 1]);
    for (const b of batches) {
      expect(b.schedulingDelay).toBeGreaterThanOrEqual(0);
      expect(b.processingDelay).toBeGreaterThanOrEqual(0);
      expect(b.totalDelay).toBe((b.schedulingDelay as number) + (b.processingDelay as number));
    }
  });

  it("a throwing user function fails that batch's job; awaitTermination rejects with it; the context runs on", async () => {
    const { ssc } = newContext();
    const { events, batches, listener } = recorder();
    ssc.addStreamingListener(listener);
    const boom = new Error("boom in batch 2");
    const seen: number[] = [];
    ssc
      .queueStream([[1], [2], [3]])
      .map((x) => {
        if (x === 2) throw boom;
        return x;
      })
      .foreachRDD((r) => void seen.push(...r.collect()));
    await ssc.start();
    const terminated = ssc.awaitTermination();
    await ssc.advance(3000);
    await expect(terminated).rejects.toBe(boom);
    await expect(ssc.awaitTerminationOrTimeout(10)).rejects.toBe(boom);
    expect(ssc.state).toBe("active");
    expect(seen).toEqual([1, 3]);
    expect(events).toContain("opCompleted 2000 #0 failed: Error: boom in batch 2");
    expect(batches.map((b) => b.failureReason)).toEqual([undefined, "Error: boom in batch 2", undefined]);
    await ssc.stop();
  });

  it("a transform function that throws fails only that output's job", async () => {
    const { ssc } = newContext();
    const { events, listener } = recorder();
    ssc.addStreamingListener(listener);
    const s = ssc.queueStream([[1], [2]]);
    const ok: number[] = [];
    s.transform((rdd, t) => {
      if (t === 1000) throw new TypeError("bad transform");
      return rdd;
    }).foreachRDD(() => {});
    s.foreachRDD((r) => void ok.push(...r.collect()));
    await ssc.start();
    await ssc.advance(2000);
    await ssc.stop();
    expect(ok).toEqual([1, 2]);
    expect(events).toContain("opCompleted 1000 #0 failed: TypeError: bad transform");
    expect(ssc.lastError).toBeInstanceOf(TypeError);
  });

  it("awaitTermination resolves on stop; awaitTerminationOrTimeout says whether it stopped", async () => {
    const { ssc } = newContext();
    ssc.queueStream<number>([]).foreachRDD(() => {});
    await ssc.start();
    expect(await ssc.awaitTerminationOrTimeout(5)).toBe(false);
    const t = ssc.awaitTermination();
    await ssc.stop();
    await expect(t).resolves.toBeUndefined();
    expect(await ssc.awaitTerminationOrTimeout(5)).toBe(true);
  });

  it("can be started again after stop; stateful streams keep their state", async () => {
    const { ssc } = newContext();
    const q: string[][] = [["a"], ["a", "b"]];
    const counts = ssc
      .queueStream(q)
      .map((w) => [w, 1] as [string, number])
      .updateStateByKey((vs: number[], s: number | undefined) => vs.length + (s ?? 0));
    const out: unknown[] = [];
    counts.foreachRDD((r, t) => void out.push([t, sorted(r.collect())]));
    await ssc.start();
    await ssc.advance(1000);
    await ssc.stop();
    expect(ssc.state).toBe("stopped");
    await ssc.advance(500);
    await ssc.start();
    expect(ssc.state).toBe("active");
    await ssc.advance(1500);
    await ssc.stop();
    expect(out).toEqual([
      [1000, [["a", 1]]],
      [2000, [["a", 2], ["b", 1]]],
      [3000, [["a", 2], ["b", 1]]],
    ]);
  });

  it("outputs and transformations added while running take effect at the next batch", async () => {
    const { ssc } = newContext();
    const s = ssc.queueStream([[1], [2], [3]]);
    const first: number[] = [];
    s.foreachRDD((r) => void first.push(...r.collect()));
    await ssc.start();
    await ssc.advance(1000);
    const later: number[] = [];
    s.map((x) => x * 10).foreachRDD((r) => void later.push(...r.collect()));
    await ssc.advance(2000);
    await ssc.stop();
    expect(first).toEqual([1, 2, 3]);
    expect(later).toEqual([20, 30]);
  });

  it("when processing falls behind, batches queue in order and none is dropped", async () => {
    const { ssc } = newContext();
    const { batches, listener } = recorder();
    ssc.addStreamingListener(listener);
    const times: number[] = [];
    ssc.queueStream([[1], [2], [3], [4], [5]]).foreachRDD(async (_r, t) => {
      times.push(t);
      await new Promise((r) => setImmediate(r));
    });
    await ssc.start();
    await ssc.advance(5000);
    await ssc.stop();
    expect(times).toEqual([1000, 2000, 3000, 4000, 5000]);
    expect(batches.map((b) => b.batchTime)).toEqual([1000, 2000, 3000, 4000, 5000]);
    // Each later batch waited behind the earlier ones: submitted together, started one after another.
    for (let i = 1; i < batches.length; i++) {
      expect(batches[i]?.processingStartTime).toBeGreaterThanOrEqual(batches[i - 1]?.processingEndTime as number);
    }
  });

  it("graceful stop runs one more batch (as Spark's timer does); a plain stop does not", async () => {
    for (const graceful of [true, false]) {
      const { ssc } = newContext();
      const got: number[] = [];
      ssc.queueStream([[1], [2], [3]]).foreachRDD((r) => void got.push(...r.collect()));
      await ssc.start();
      await ssc.advance(1000);
      await ssc.stop({ stopGracefully: graceful });
      expect(got).toEqual(graceful ? [1, 2] : [1]);
    }
  });

  it("creating a new context stops the active one; getActive follows", async () => {
    const sc = new SparkContext();
    const a = new StreamingContext(sc, 1000, { clock: "manual" });
    a.queueStream<number>([]).foreachRDD(() => {});
    await a.start();
    expect(StreamingContext.getActive()).toBe(a);
    const b = new StreamingContext(sc, 1000, { clock: "manual" });
    expect(StreamingContext.getActive()).toBeUndefined();
    await a.awaitTermination();
    expect(a.state).toBe("stopped");
    expect(b.state).toBe("initialized");
    expect(() => void b.advance(1)).not.toThrow();
    await b.start();
    expect(StreamingContext.getActive()).toBe(b);
    expect(() => b.start()).toThrow(StreamingContextStateError);
    await b.stop();
    expect(StreamingContext.getActive()).toBeUndefined();
  });

  it("the system clock aligns batch times to multiples of the batch interval", async () => {
    const sc = new SparkContext();
    const ssc = new StreamingContext(sc, 50);
    const times: number[] = [];
    const twoBatches = new Promise<void>((resolve) =>
      ssc.addStreamingListener({
        onBatchCompleted: (e) => {
          times.push(e.batchInfo.batchTime);
          if (times.length === 2) resolve();
        },
      }),
    );
    ssc.queueStream<number>([]).foreachRDD(() => {});
    await ssc.start();
    await twoBatches;
    await ssc.stop();
    expect(times[0] as number % 50).toBe(0);
    expect((times[1] as number) - (times[0] as number)).toBe(50);
  });

  it("pprint prints Spark's layout through the presenter; chart rows become { key, value, time }", async () => {
    const printed: string[] = [];
    const charted: ChartRow[][] = [];
    let outputs = 0;
    setPresenter({
      openPrint: () => ({ batch: (_t, text) => void printed.push(text) }),
      openChart: () => ({ batch: (_t, rows) => void charted.push(rows) }),
      outputDefined: () => void outputs++,
    });
    const { ssc } = newContext();
    const s = ssc.queueStream([[1, 2, 3], []]);
    s.pprint(2);
    s.map((x) => [`k${x}`, x] as [string, number]).chart({ mark: "bar" });
    s.map((x) => ({ x })).chart({ mark: "point" });
    expect(outputs).toBe(3);
    await ssc.start();
    await ssc.advance(2000);
    await ssc.stop();
    const rule = "-------------------------------------------";
    expect(printed).toEqual([`${rule}\nTime: 1000 ms\n${rule}\n1\n2\n...\n`, `${rule}\nTime: 2000 ms\n${rule}\n`]);
    expect(charted[0]).toEqual([
      { key: "k1", value: 1, time: 1000 },
      { key: "k2", value: 2, time: 1000 },
      { key: "k3", value: 3, time: 1000 },
    ]);
    expect(charted[1]).toEqual([{ x: 1, time: 1000 }, { x: 2, time: 1000 }, { x: 3, time: 1000 }]);
  });

  it("an output disposed through the presenter stops running", async () => {
    let dispose: (() => void) | undefined;
    setPresenter({
      openPrint: () => ({ batch: () => {} }),
      openChart: () => ({ batch: () => {} }),
      outputDefined: (d) => void (dispose = d),
    });
    const { ssc } = newContext();
    const got: number[] = [];
    ssc.queueStream([[1], [2]]).foreachRDD((r) => void got.push(...r.collect()));
    await ssc.start();
    await ssc.advance(1000);
    dispose?.();
    await ssc.advance(1000);
    await ssc.stop();
    expect(got).toEqual([1]);
  });

  it("saveAsTextFiles writes prefix-TIME.suffix, replacing the output of a replayed batch", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "engine-save-"));
    for (const data of [[["a", 1], ["b", 2]], [["c", 3]]] as [string, number][][]) {
      const { ssc } = newContext();
      ssc.queueStream([data]).saveAsTextFiles(path.join(dir, "out"), "txt");
      await ssc.start();
      await ssc.advance(1000);
      await ssc.stop();
    }
    expect(fs.readdirSync(dir)).toEqual(["out-1000.txt"]);
    const files = fs.readdirSync(path.join(dir, "out-1000.txt")).sort();
    expect(files).toContain("_SUCCESS");
    const text = files.filter((f) => f.startsWith("part-")).map((f) => fs.readFileSync(path.join(dir, "out-1000.txt", f), "utf8")).join("");
    expect(text).toBe("(c,3)\n");
    fs.rmSync(dir, { recursive: true });
  });

  it("checkpoint hooks: names, stateful streams, positions, pending batches", async () => {
    const { ssc } = newContext();
    const lines = ssc.queueStream([["a b"], ["b"]]);
    const counts = lines
      .flatMap((l) => l.split(" "))
      .map((w) => [w, 1] as [string, number])
      .updateStateByKey((vs: number[], s: number | undefined) => vs.length + (s ?? 0));
    const windowed = lines.map((l) => [l, 1] as [string, number]).reduceByKeyAndWindow((a, b) => a + b, (a, b) => a - b, 2000, 1000, { name: "win" });
    counts.foreachRDD(() => {});
    windowed.foreachRDD(() => {});
    expect(lines.name).toBe("queue#0");
    expect(counts.name).toBe("updateStateByKey(map(flatMap(queue#0)))");
    expect(ssc.graph.statefulStreams().map((s) => s.name)).toEqual(["updateStateByKey(map(flatMap(queue#0)))", "win"]);
    await ssc.start();
    await ssc.advance(2000);
    expect(ssc.pendingBatchTimes()).toEqual([]);
    expect(ssc.lastCompletedBatchTime).toBe(2000);
    expect(counts.checkpointState()).toEqual({ entries: [["a", 1], ["b", 2]] });
    expect(ssc.graph.inputStreams()[0]?.checkpointPosition?.()).toEqual({ consumed: 2 });
    await ssc.stop();

    // A fresh context restores the state and carries on.
    const { ssc: ssc2 } = newContext();
    const counts2 = ssc2
      .queueStream([["a"]])
      .flatMap((l) => l.split(" "))
      .map((w) => [w, 1] as [string, number])
      .updateStateByKey((vs: number[], s: number | undefined) => vs.length + (s ?? 0));
    counts2.restoreState(counts.checkpointState());
    const out: unknown[] = [];
    counts2.foreachRDD((r, t) => void out.push([t, sorted(r.collect())]));
    await ssc2.start({ zeroTime: 0, resumeTime: 3000, pendingBatches: [3000] });
    await ssc2.advance(0);
    expect(out).toEqual([[3000, [["a", 2], ["b", 2]]]]);
    await ssc2.advance(1000);
    expect(out[1]).toEqual([4000, [["a", 2], ["b", 2]]]);
    await ssc2.stop();
  });
});
