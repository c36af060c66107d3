// Sources under abuse, against a real TCP server on 127.0.0.1: one huge line without a newline is read in
// linear time, and past maxLineLength it is skipped and reported; a fast sender is paused by the memory
// bound (TCP pushes back) and loses nothing; a receiver that ignores a full buffer has records dropped,
// and every one is reported with counts, while storeReliably waits instead of dropping.
import * as net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import type { DroppedRecordsInfo } from "../engine/listener.js";
import { Receiver, ReceiverInputDStream } from "../engine/sources/receiver.js";
import { SocketReceiver } from "../engine/sources/socket.js";
import type { StreamingContext } from "../engine/context.js";
import { manualContext, until } from "./sources-helpers.js";

const cleanups: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A server that sends `chunks` (pausing when the client reads slowly) to its first client, then ends. */
function serve(chunks: () => Iterable<Buffer>): Promise<{ port: number; sent: () => number }> {
  let sent = 0;
  const server = net.createServer(async (socket) => {
    socket.on("error", () => {});
    for (const c of chunks()) {
      sent += c.length;
      if (!socket.write(c)) await new Promise<void>((r) => socket.once("drain", () => r()));
    }
    socket.end();
  });
  cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve({ port: (server.address() as net.AddressInfo).port, sent: () => sent })));
}

function* hugeLine(bytes: number, after: string): Iterable<Buffer> {
  const chunk = Buffer.alloc(1 << 20, "a");
  for (let n = 0; n < bytes; n += chunk.length) yield chunk;
  yield Buffer.from(`\n${after}\n`);
}

function drops(ssc: StreamingContext): DroppedRecordsInfo[] {
  const seen: DroppedRecordsInfo[] = [];
  ssc.addStreamingListener({ onRecordsDropped: (e) => void seen.push(e.droppedInfo) });
  return seen;
}

/** Each batch's record count and the records that are short enough to compare. */
function summarise<T>(stream: { foreachRDD(fn: (rdd: { collect(): T[] }) => void): void }): { lengths: number[]; short: T[] } {
  const out = { lengths: [] as number[], short: [] as T[] };
  stream.foreachRDD((rdd) => {
    for (const r of rdd.collect()) {
      const len = typeof r === "string" ? r.length : 0;
      out.lengths.push(len);
      if (len < 100) out.short.push(r);
    }
  });
  return out;
}

describe("one huge line on the socket source", () => {
  it("a 32 MB line without a newline arrives whole, in linear time (a bounded wait; quadratic splitting took minutes)", async () => {
    const { port } = await serve(() => hugeLine(32 << 20, "after"));
    const ssc = manualContext(1000);
    cleanups.push(() => ssc.stop());
    const stream = ssc.socketTextStream("127.0.0.1", port);
    const got = summarise<string>(stream);
    await ssc.start();
    await until(() => (stream as ReceiverInputDStream<string>).bufferedRecords() === 2, "the huge line and the next one", 20_000);
    await ssc.advance(1000);
    expect(got.lengths).toEqual([32 << 20, 5]);
    expect(got.short).toEqual(["after"]);
  }, 30_000);

  it("past maxLineLength the line is skipped and reported as one dropped record; the next line arrives", async () => {
    const { port } = await serve(() => hugeLine(8 << 20, "after"));
    const ssc = manualContext(1000);
    cleanups.push(() => ssc.stop());
    const dropped = drops(ssc);
    const stream = ssc.socketTextStream("127.0.0.1", port, { maxLineLength: 1 << 20 });
    const got = summarise<string>(stream);
    await ssc.start();
    await until(() => (stream as ReceiverInputDStream<string>).bufferedRecords() === 1 && dropped.length === 1, "the line after the skipped one");
    await ssc.advance(1000);
    expect(got.short).toEqual(["after"]);
    expect(got.lengths).toEqual([5]);
    expect(dropped).toHaveLength(1);
    expect(dropped[0]).toMatchObject({ count: 1, total: 1, name: "socket#0" });
    expect(dropped[0]!.reason).toMatch(/a line of 8388608 characters .* longer than maxLineLength \(1048576\)/);
  }, 30_000);
});

describe("receivers bounded by memory", () => {
  it("a fast socket sender is paused by maxBufferedBytes (TCP pushes back) and nothing is lost", async () => {
    const LINES = 200_000;
    const line = (i: number) => `line ${i} ${"x".repeat(80)}\n`;
    const { port, sent } = await serve(function* () {
      let buf = "";
      for (let i = 0; i < LINES; i++) {
        buf += line(i);
        if (buf.length > 64 * 1024) {
          yield Buffer.from(buf);
          buf = "";
        }
      }
      yield Buffer.from(buf);
    });
    const ssc = manualContext(1000);
    cleanups.push(() => ssc.stop());
    const dropped = drops(ssc);
    const stream = ssc.socketTextStream("127.0.0.1", port, { maxBufferedBytes: 1 << 20 });
    const receiver = stream.receiver as SocketReceiver;
    let count = 0;
    let next = 0;
    let inOrder = true;
    stream.foreachRDD((rdd) => {
      for (const l of rdd.collect()) {
        inOrder &&= l === line(next++).trimEnd();
        count++;
      }
    });
    await ssc.start();
    await until(() => receiver.isPaused, "the receiver to pause");
    // Paused with about 1 MiB buffered (a read or two past the bound), far from the ~20 MB sent in all.
    const buffered = (stream as ReceiverInputDStream<string>).bufferedBytes();
    expect(buffered).toBeGreaterThanOrEqual(1 << 20);
    expect(buffered).toBeLessThan(4 << 20);
    for (let i = 0; i < 1000 && count < LINES; i++) {
      await ssc.advance(1000);
      await new Promise((r) => setTimeout(r, 5));
    }
    expect(count).toBe(LINES);
    expect(inOrder).toBe(true);
    expect(sent()).toBeGreaterThan(LINES * 80);
    expect(dropped).toEqual([]);
  }, 60_000);

  it("a receiver that ignores a full buffer has records dropped and reported with counts; storeReliably waits instead", async () => {
    class Firehose extends Receiver<number> {
      stored = 0;
      onStart(): void {}
      onStop(): void {}
      pour(n: number): void {
        for (let i = 0; i < n; i++) this.store(this.stored++);
      }
    }
    const ssc = manualContext(1000);
    cleanups.push(() => ssc.stop());
    const dropped = drops(ssc);
    const hose = new Firehose();
    const stream = ssc.receiverStream(hose, { maxBufferedRecords: 10_000 });
    let processed = 0;
    stream.foreachRDD((rdd) => void (processed += rdd.count()));
    await ssc.start();
    hose.pour(50_000); // ignores isBufferFull(): past twice the bound, store() drops
    expect(stream.bufferedRecords()).toBe(20_000);
    await until(() => dropped.length > 0, "the drop report");
    await ssc.advance(1000);
    expect(processed).toBe(20_000);
    // Reported at once, then summed over a second at most: every dropped record is counted.
    await until(() => dropped.reduce((n, d) => n + d.count, 0) === 30_000, "every drop to be reported", 5000);
    expect(stream.droppedRecords).toBe(30_000);
    expect(dropped.at(-1)!.total).toBe(30_000);
    expect(dropped[0]!.reason).toMatch(/twice its bound \(10000 records/);

    // storeReliably never drops: it waits while the buffer is full, and goes on once a batch took it.
    let done = false;
    const reliable = (async () => {
      for (let i = 0; i < 5; i++) await (hose as unknown as { storeReliably(x: number[]): Promise<void> }).storeReliably(Array.from({ length: 6000 }, (_, j) => i * 6000 + j));
      done = true;
    })();
    await until(() => stream.bufferedRecords() >= 10_000, "the buffer to fill");
    await new Promise((r) => setTimeout(r, 50));
    expect(done).toBe(false);
    expect(stream.bufferedRecords()).toBe(12_000);
    for (let i = 0; i < 10 && !done; i++) {
      await ssc.advance(1000);
      await new Promise((r) => setTimeout(r, 5));
    }
    await reliable;
    await ssc.advance(1000);
    expect(processed).toBe(20_000 + 30_000);
    expect(stream.droppedRecords).toBe(30_000);
  }, 30_000);
});
