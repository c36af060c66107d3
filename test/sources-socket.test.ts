// socketTextStream against a real TCP server on 127.0.0.1: lines across chunks, \r\n, UTF-8 cut
// across writes, a server that goes away and comes back on the same port, and a prompt stop.
import * as net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { SocketInputDStream, SocketReceiver } from "../engine/sources/socket.js";
import { collectBatches, manualContext, receiverEvents, until } from "./sources-helpers.js";

interface Server {
  server: net.Server;
  port: number;
  /** Connections accepted so far. */
  sockets: net.Socket[];
  /** Resolves with the n-th accepted connection (1-based). */
  connection(n: number): Promise<net.Socket>;
  close(): Promise<void>;
}

function startServer(port = 0): Promise<Server> {
  const sockets: net.Socket[] = [];
  const waiting: { n: number; resolve: (s: net.Socket) => void }[] = [];
  const server = net.createServer((socket) => {
    sockets.push(socket);
    socket.on("error", () => {});
    for (const w of waiting.slice()) {
      if (sockets.length >= w.n) {
        waiting.splice(waiting.indexOf(w), 1);
        w.resolve(sockets[w.n - 1]!);
      }
    }
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => {
      const s: Server = {
        server,
        port: (server.address() as net.AddressInfo).port,
        sockets,
        connection: (n) => (sockets.length >= n ? Promise.resolve(sockets[n - 1]!) : new Promise((res) => waiting.push({ n, resolve: res }))),
        close: () =>
          new Promise<void>((res) => {
            for (const c of sockets) c.destroy();
            server.close(() => res());
          }),
      };
      resolve(s);
    });
  });
}

function write(socket: net.Socket, data: string | Buffer): Promise<void> {
  return new Promise((resolve, reject) => socket.write(data, (e) => (e ? reject(e) : resolve())));
}

const cleanups: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const uncaught: unknown[] = [];
const onUncaught = (e: unknown) => uncaught.push(e);

describe("socketTextStream", () => {
  it("reads lines split on \\n and \\r\\n, joined across chunks, with UTF-8 cut across writes", { timeout: 60_000 }, async () => {
    const srv = await startServer();
    cleanups.push(() => srv.close());
    const ssc = manualContext(1000);
    cleanups.push(() => ssc.stop());
    const stream = ssc.socketTextStream("127.0.0.1", srv.port) as SocketInputDStream;
    const batches = collectBatches(stream);
    await ssc.start();
    const conn = await srv.connection(1);
    const euro = Buffer.from("€", "utf8"); // 3 bytes, written in two pieces
    await write(conn, "alpha\nbe");
    await write(conn, Buffer.concat([Buffer.from("ta\r\nprice 5"), euro.subarray(0, 1)]));
    await write(conn, Buffer.concat([euro.subarray(1), Buffer.from("\r")]));
    await write(conn, "\n\ngamma\n");
    await until(() => stream.bufferedRecords() === 5, "5 lines");
    await ssc.advance(1000);
    expect(batches).toEqual([[1000, ["alpha", "beta", "price 5€", "", "gamma"]]]);
  });

  it("reports a server that goes away, reconnects when it is back on the same port, and keeps the last partial line", { timeout: 60_000 }, async () => {
    process.on("uncaughtException", onUncaught);
    process.on("unhandledRejection", onUncaught);
    cleanups.push(() => {
      process.off("uncaughtException", onUncaught);
      process.off("unhandledRejection", onUncaught);
    });
    let srv = await startServer();
    const port = srv.port;
    cleanups.push(() => srv.close());
    const ssc = manualContext(1000);
    cleanups.push(() => ssc.stop());
    const stream = ssc.socketTextStream("127.0.0.1", port, { reconnectDelayMs: 20, maxReconnectDelayMs: 200 }) as SocketInputDStream;
    const batches = collectBatches(stream);
    const ev = receiverEvents(ssc);
    await ssc.start();
    const first = await srv.connection(1);
    await ev.waitFor("started", 1);
    await write(first, "one\ntwo\nthree-without-newline");
    await until(() => stream.bufferedRecords() === 2, "2 lines");
    await ssc.advance(1000);

    // The server goes away: the receiver reports it and keeps trying (refused connections are errors too).
    await srv.close();
    const err = await ev.waitFor("error", 1);
    expect(err.streamId).toBe(stream.id);
    expect(err.active).toBe(false);
    expect(err.lastErrorMessage).toMatch(/127\.0\.0\.1:\d+/);
    await ev.waitFor("error", 2);

    // A new server on the same port: the receiver connects again by itself.
    srv = await startServer(port);
    const second = await srv.connection(1);
    await write(second, "four\r\nfive\n");
    await until(() => stream.bufferedRecords() === 3, "the partial line and 2 new lines");
    await ssc.advance(1000);
    expect(batches).toEqual([
      [1000, ["one", "two"]],
      [2000, ["three-without-newline", "four", "five"]],
    ]);
    expect(ev.count("started")).toBeGreaterThanOrEqual(2);
    expect(ev.count("stopped")).toBe(0);
    expect(uncaught).toEqual([]);

    // stop closes the connection promptly: the server sees it end.
    const closed = new Promise<void>((resolve) => second.once("close", () => resolve()));
    await ssc.stop();
    await closed;
    expect(ev.count("stopped")).toBe(1);
    expect(srv.sockets.length).toBe(1);
    expect(uncaught).toEqual([]);
  });

  it("a server that is not there yet: errors are reported until it appears", { timeout: 60_000 }, async () => {
    // Find a free port, then leave it closed.
    const probe = await startServer();
    const port = probe.port;
    await probe.close();
    const ssc = manualContext(1000);
    cleanups.push(() => ssc.stop());
    const stream = ssc.socketTextStream("127.0.0.1", port, { reconnectDelayMs: 10, maxReconnectDelayMs: 100 }) as SocketInputDStream;
    const batches = collectBatches(stream);
    const ev = receiverEvents(ssc);
    await ssc.start();
    const err = await ev.waitFor("error", 3);
    expect(err.lastErrorMessage).toBe(`Error connecting to 127.0.0.1:${port}`);
    expect(err.lastError).toMatch(/ECONNREFUSED/);
    const srv = await startServer(port);
    cleanups.push(() => srv.close());
    const conn = await srv.connection(1);
    await write(conn, "hello\n");
    await until(() => stream.bufferedRecords() === 1, "1 line");
    await ssc.advance(1000);
    expect(batches).toEqual([[1000, ["hello"]]]);
  });

  it("stop while reconnecting leaves no socket or timer behind", { timeout: 60_000 }, async () => {
    const probe = await startServer();
    const port = probe.port;
    await probe.close();
    const ssc = manualContext(1000);
    const stream = ssc.socketTextStream("127.0.0.1", port, { reconnectDelayMs: 5_000, maxReconnectDelayMs: 5_000 });
    collectBatches(stream);
    const ev = receiverEvents(ssc);
    const sockets = () => process.getActiveResourcesInfo().filter((r) => r === "TCPSocketWrap").length;
    const timers = () => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;
    const before = { sockets: sockets(), timers: timers() };
    await ssc.start();
    await ev.waitFor("error", 1);
    await until(() => timers() > before.timers, "the 5 s reconnect timer");
    await ssc.stop();
    // (<=: sockets of earlier tests may still have been closing when `before` was taken)
    expect(sockets()).toBeLessThanOrEqual(before.sockets);
    expect(timers()).toBeLessThanOrEqual(before.timers);
  });

  it("with maxRate, a fast sender is paused (TCP pushes back), read in capped batches, and nothing is lost", { timeout: 90_000 }, async () => {
    const srv = await startServer();
    cleanups.push(() => srv.close());
    const ssc = manualContext(1000, { maxRate: 5000 });
    cleanups.push(() => ssc.stop());
    const stream = ssc.socketTextStream("127.0.0.1", srv.port) as SocketInputDStream;
    const receiver = stream.receiver as SocketReceiver;
    const batches = collectBatches(stream);
    await ssc.start();
    const conn = await srv.connection(1);
    const total = 200_000;
    const lines: string[] = [];
    for (let i = 0; i < total; i++) lines.push(`line ${i}`);
    void write(conn, lines.join("\n") + "\n").catch(() => {});
    // Reading pauses once four batches' worth (20,000 lines) wait behind the limit.
    await until(() => receiver.isPaused, "the socket to pause");
    expect(stream.bufferedRecords()).toBeLessThan(total);
    let delivered = 0;
    for (let round = 0; round < 100 && delivered < total; round++) {
      await until(() => stream.bufferedRecords() > 0, "more lines");
      await ssc.advance(1000);
      delivered = batches.reduce((n, [, xs]) => n + xs.length, 0);
    }
    const all = batches.flatMap(([, xs]) => xs);
    expect(all.length).toBe(total);
    expect(all.every((l, i) => l === lines[i])).toBe(true);
    expect(Math.max(...batches.map(([, xs]) => xs.length))).toBe(5000);
  });
});
