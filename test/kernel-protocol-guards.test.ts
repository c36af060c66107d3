// Protocol guards, each against a real kernel process driven by a raw ZeroMQ client that signs its own
// messages: deeply nested JSON, inherited msg_types, a connection file without a key, oversized frames,
// ipc socket files after shutdown. The protocol side is the real one (dist/kernel/main.js); cells run in
// test/support/js-kernel.cjs's small JavaScript interpreter, so no TypeScript is loaded.
import * as fs from "node:fs";
import { afterEach, describe, expect, it } from "vitest";
import { jsonDepth, MAX_JSON_DEPTH } from "../kernel/wire.js";
import { frames, header, JS_KERNEL, RawKernel } from "./support/raw-kernel.js";

const kernels: RawKernel[] = [];
async function start(options: Parameters<typeof RawKernel.start>[0] = {}): Promise<RawKernel> {
  const kernel = await RawKernel.start({ script: JS_KERNEL, ...options });
  kernels.push(kernel);
  return kernel;
}

afterEach(async () => {
  await Promise.all(kernels.splice(0).map((k) => k.stop()));
});

/** A header whose extra field is an array nested `depth` levels deep, as raw JSON text. */
function deepHeader(msgType: string, depth: number): { id: string; text: string } {
  const h = header(msgType);
  return { id: h.msg_id, text: `${JSON.stringify(h).slice(0, -1)},"deep":${"[".repeat(depth)}${"]".repeat(depth)}}` };
}

describe("malformed messages are dropped and the channel keeps serving", () => {
  it("a signed kernel_info_request with a header nested 9,000 deep, on shell and on control", async () => {
    const k = await start();
    expect(await k.ready()).toBe(true);
    const { client } = k;
    const onShell = deepHeader("kernel_info_request", 9000);
    const onControl = deepHeader("kernel_info_request", 9000);
    await client.sendFrames("shell", frames(client.key, onShell.text));
    await client.sendFrames("control", frames(client.key, onControl.text));
    // Later requests on both channels are answered, and so is a cell (the shell queue is not stuck).
    expect((await client.request("shell", "kernel_info_request"))?.header.msg_type).toBe("kernel_info_reply");
    expect((await client.request("control", "kernel_info_request"))?.header.msg_type).toBe("kernel_info_reply");
    const cell = await client.execute("6 * 7");
    expect(cell.reply?.content.status).toBe("ok");
    expect(cell.text).toBe("42");
    // The deep messages got nothing: no reply, no busy/idle.
    expect(client.received.filter((m) => m.message.parent_header.msg_id === onShell.id || m.message.parent_header.msg_id === onControl.id)).toEqual([]);
    expect(k.stderr).toMatch(/dropped a message on shell: header nests arrays or objects more than 128 levels deep/);
    expect(k.stderr).toMatch(/dropped a message on control: header nests arrays or objects more than 128 levels deep/);
    // Shutdown over control still works: the control loop is alive.
    expect(await k.stop()).toEqual({ code: 0, signal: null });
  }, 60_000);

  it("msg_types named after Object.prototype members reach no handler and publish no busy/idle", async () => {
    const k = await start();
    expect(await k.ready()).toBe(true);
    const { client } = k;
    const ids = ["toString", "__proto__", "constructor", "hasOwnProperty", "valueOf"].map((t) => client.send("shell", t));
    expect((await client.request("shell", "kernel_info_request"))?.header.msg_type).toBe("kernel_info_reply");
    expect(client.received.filter((m) => ids.includes(m.message.parent_header.msg_id as string))).toEqual([]);
    expect(k.stderr).toMatch(/unknown msg_type "toString"/);
    expect(k.stderr).toMatch(/unknown msg_type "__proto__"/);
  }, 60_000);

  it("an inbound frame over the size limit disconnects its sender, and the kernel serves the next connection", async () => {
    const k = await start({ env: { STREAMBOOK_MAX_MESSAGE_BYTES: String(64 * 1024) } });
    expect(await k.ready()).toBe(true);
    const { client } = k;
    const small = header("kernel_info_request");
    await client.sendFrames("shell", frames(client.key, small, { pad: "x".repeat(60 * 1024) }));
    expect((await client.reply(small.msg_id))?.header.msg_type).toBe("kernel_info_reply");
    const big = header("kernel_info_request");
    await client.sendFrames("shell", frames(client.key, big, { pad: "x".repeat(200 * 1024) }));
    // The DEALER reconnects after the kernel drops it; a request sent then is answered, the big one never.
    let answered = false;
    for (let i = 0; i < 20 && !answered; i++) answered = (await client.request("shell", "kernel_info_request", {}, 1000)) !== undefined;
    expect(answered).toBe(true);
    expect(await client.reply(big.msg_id, 500)).toBeUndefined();
  }, 60_000);

  it("reads a byte count for the limit, and says so when it cannot", async () => {
    const { DEFAULT_MAX_MESSAGE_BYTES, maxMessageBytes } = await import("../kernel/channels.js");
    const warnings: string[] = [];
    expect(maxMessageBytes({})).toBe(DEFAULT_MAX_MESSAGE_BYTES);
    expect(maxMessageBytes({ STREAMBOOK_MAX_MESSAGE_BYTES: "-1" })).toBe(-1);
    expect(maxMessageBytes({ STREAMBOOK_MAX_MESSAGE_BYTES: "1000" })).toBe(1000);
    expect(maxMessageBytes({ STREAMBOOK_MAX_MESSAGE_BYTES: "lots" }, (w) => warnings.push(w))).toBe(DEFAULT_MAX_MESSAGE_BYTES);
    expect(warnings[0]).toMatch(/STREAMBOOK_MAX_MESSAGE_BYTES="lots" is not a byte count/);
  });

  it("counts JSON nesting over bytes, ignoring brackets inside strings", () => {
    expect(jsonDepth(Buffer.from(`{"a":[1,{"b":"[[[[{{"}]}`))).toBe(3);
    expect(jsonDepth(Buffer.from(`"\\"[[["`))).toBe(0);
    expect(jsonDepth(Buffer.from("[".repeat(MAX_JSON_DEPTH + 50)), MAX_JSON_DEPTH)).toBe(MAX_JSON_DEPTH + 1);
  });
});

describe("authentication fails closed", () => {
  it("a connection file without a key stops the kernel with a clear message", async () => {
    const k = await start({ connection: (info) => delete info.key });
    const exit = await k.waitExit(20_000);
    expect(exit).toEqual({ code: 2, signal: null });
    expect(k.stderr).toMatch(/has no "key".*refuses to start.*"key": ""/s);
  }, 30_000);

  it("an explicit empty key means unsigned messages, as the spec allows", async () => {
    const k = await start({ connection: (info) => (info.key = "") });
    expect(await k.ready()).toBe(true);
    const reply = await k.client.request("shell", "kernel_info_request");
    expect(reply?.header.msg_type).toBe("kernel_info_reply");
  }, 30_000);

  it("with a key, an unsigned request gets no answer", async () => {
    const k = await start();
    expect(await k.ready()).toBe(true);
    const h = header("kernel_info_request");
    await k.client.sendFrames("shell", frames("", h));
    expect((await k.client.request("shell", "kernel_info_request"))?.header.msg_type).toBe("kernel_info_reply");
    expect(await k.client.reply(h.msg_id, 200)).toBeUndefined();
  }, 30_000);
});

describe("clean shutdown", () => {
  it("removes the five ipc socket files", async () => {
    const k = await start();
    expect(await k.ready()).toBe(true);
    expect(await k.client.request("control", "kernel_info_request")).toBeDefined(); // the control thread has bound too
    const files = [1, 2, 3, 4, 5].map((port) => `${k.info.ip as string}-${port}`);
    expect(files.filter((f) => fs.existsSync(f))).toEqual(files);
    k.client.send("control", "shutdown_request", { restart: false });
    expect(await k.waitExit(20_000)).toEqual({ code: 0, signal: null });
    expect(files.filter((f) => fs.existsSync(f))).toEqual([]);
  }, 30_000);
});
