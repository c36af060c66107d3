// rateStream: exactly rowsPerSecond × batch seconds rows per batch on the manual clock, values
// counting up, timestamps inside the batch interval, and a rate that changes while it runs.
import { describe, expect, it } from "vitest";
import { IllegalArgumentError } from "../engine/errors.js";
import { RateInputDStream, type RateRow } from "../engine/sources/rate.js";
import { collectBatches, manualContext } from "./sources-helpers.js";

describe("rateStream", () => {
  it("produces rowsPerSecond × batch seconds rows per batch, values counting up", async () => {
    const ssc = manualContext(1000);
    const batches = collectBatches(ssc.rateStream(3));
    await ssc.start();
    await ssc.advance(2000);
    await ssc.stop();
    expect(batches).toEqual([
      [
        1000,
        [
          { timestamp: 333, value: 0 },
          { timestamp: 667, value: 1 },
          { timestamp: 1000, value: 2 },
        ],
      ],
      [
        2000,
        [
          { timestamp: 1333, value: 3 },
          { timestamp: 1667, value: 4 },
          { timestamp: 2000, value: 5 },
        ],
      ],
    ]);
  });

  it("setRate changes the rows per batch from the next batch; 0 pauses it", async () => {
    const ssc = manualContext(500);
    const stream = ssc.rateStream(10) as RateInputDStream;
    const batches = collectBatches(stream);
    await ssc.start();
    await ssc.advance(1000); // 2 batches × 5
    stream.setRate(100);
    await ssc.advance(500); // 50
    stream.setRate(0);
    await ssc.advance(500); // 0
    stream.setRate(3);
    await ssc.advance(2000); // 1.5 per batch: 1, 2, 1, 2
    await ssc.stop();
    expect(batches.map(([, rows]) => rows.length)).toEqual([5, 5, 50, 0, 1, 2, 1, 2]);
    const values = batches.flatMap(([, rows]) => rows.map((r) => r.value));
    expect(values).toEqual(Array.from({ length: 66 }, (_, i) => i));
    for (const [time, rows] of batches) for (const r of rows) expect(r.timestamp > time - 500 && r.timestamp <= time).toBe(true);
    expect(stream.rowsPerSecond).toBe(3);
  });

  it("time while stopped produces nothing; values carry on after a restart", async () => {
    const ssc = manualContext(1000);
    const batches = collectBatches(ssc.rateStream(2));
    await ssc.start();
    await ssc.advance(1000);
    await ssc.stop();
    await ssc.advance(5000); // stopped: only the clock moves
    await ssc.start();
    await ssc.advance(1000);
    await ssc.stop();
    const rows: RateRow[] = batches.flatMap(([, r]) => r);
    expect(batches.map(([, r]) => r.length)).toEqual([2, 2]);
    expect(rows.map((r) => r.value)).toEqual([0, 1, 2, 3]);
  });

  it("restored from a checkpoint position, batches generated again get exactly the same rows", async () => {
    const ssc = manualContext(1000);
    const a = ssc.rateStream(3) as RateInputDStream;
    const first = collectBatches(a);
    await ssc.start();
    await ssc.advance(1000);
    const position = JSON.parse(JSON.stringify(a.checkpointPosition()));
    await ssc.advance(2000); // batches 2000 and 3000: the "lost" run after the checkpoint
    await ssc.stop();

    const ssc2 = manualContext(1000);
    const b = ssc2.rateStream(3) as RateInputDStream;
    b.restorePosition(position);
    const again = collectBatches(b);
    await ssc2.start({ resumeTime: 3000, pendingBatches: [2000, 3000] });
    await ssc2.stop({ stopGracefully: true });
    expect(again.slice(0, 2)).toEqual(first.slice(1, 3));
  });

  it("rejects a negative or non-finite rate", () => {
    const ssc = manualContext(1000);
    expect(() => ssc.rateStream(-1)).toThrow(IllegalArgumentError);
    expect(() => (ssc.rateStream(1) as RateInputDStream).setRate(Number.NaN)).toThrow(/rowsPerSecond/);
  });
});
