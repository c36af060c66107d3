// 200 start/shutdown cycles of the real kernel (dist/kernel/main.js), eight at a time: each kernel
// answers kernel_info on control and a heartbeat, is shut down at once with shutdown_request, and must
// exit with code 0, no signal, nothing on stderr, and its ipc socket files gone. Before the fix about
// one exit in three aborted with glibc's "corrupted double-linked list" (the control thread's zeromq
// buffers outliving it).
import * as fs from "node:fs";
import { describe, expect, it } from "vitest";
import * as zmq from "zeromq";
import { RawKernel } from "./support/raw-kernel.js";

const CYCLES = Number(process.env.STREAMBOOK_SHUTDOWN_CYCLES ?? 200);
const AT_ONCE = 8;

interface Cycle {
  index: number;
  answered: boolean;
  replied: boolean;
  exit: { code: number | null; signal: NodeJS.Signals | null };
  stderr: string;
  leftover: string[];
}

async function heartbeat(kernel: RawKernel): Promise<boolean> {
  const hb = new zmq.Request({ linger: 0, receiveTimeout: 10_000 });
  try {
    hb.connect(kernel.endpoint(kernel.info.hb_port as number));
    await hb.send("ping");
    const [echo] = await hb.receive();
    return echo.toString() === "ping";
  } catch {
    return false;
  } finally {
    hb.close();
  }
}

async function cycle(index: number): Promise<Cycle> {
  const kernel = await RawKernel.start();
  try {
    const info = await kernel.client.request("control", "kernel_info_request", {}, 30_000);
    const beat = await heartbeat(kernel);
    const files = [1, 2, 3, 4, 5].map((port) => `${kernel.info.ip as string}-${port}`);
    const shutdown = kernel.client.send("control", "shutdown_request", { restart: false });
    // The reply is read before the exit is looked at: under load the exit event can come first.
    const reply = await kernel.client.reply(shutdown, 30_000);
    const exit = (await kernel.waitExit(30_000)) ?? { code: null, signal: "SIGKILL" as NodeJS.Signals };
    const replied = reply?.header.msg_type === "shutdown_reply";
    return { index, answered: info !== undefined && beat, replied, exit, stderr: kernel.stderr, leftover: files.filter((f) => fs.existsSync(f)) };
  } finally {
    kernel.dispose();
  }
}

describe("shutdown right after start", () => {
  it(`is clean in ${CYCLES} of ${CYCLES} cycles`, async () => {
    const results: Cycle[] = [];
    let next = 0;
    await Promise.all(Array.from({ length: AT_ONCE }, async () => {
      while (next < CYCLES) results.push(await cycle(next++));
    }));
    const bad = results.filter((r) => !r.answered || !r.replied || r.exit.code !== 0 || r.exit.signal !== null || r.stderr !== "" || r.leftover.length > 0);
    expect(results).toHaveLength(CYCLES);
    expect(bad.map((r) => `#${r.index}: ${JSON.stringify({ ...r, stderr: r.stderr.slice(0, 300) })}`)).toEqual([]);
  }, 600_000);
});
