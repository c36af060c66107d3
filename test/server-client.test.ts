// Through Jupyter Server (Debian's jupyter-server, JupyterLab's backend) with @jupyterlab/services, the client JupyterLab
// uses: start a streambook kernel, run a streaming cell, read its output and its live display.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KernelManager, ServerConnection, type Kernel, type KernelMessage } from "@jupyterlab/services";
import WebSocket from "ws";
import { startNotebookServer, type NotebookServer } from "./support/notebook-server.js";

let server: NotebookServer;
let manager: KernelManager;
let kernel: Kernel.IKernelConnection;

beforeAll(async () => {
  server = await startNotebookServer({ kind: "server" });
  const serverSettings = ServerConnection.makeSettings({
    baseUrl: `${server.url}/`,
    wsUrl: `ws://127.0.0.1:${server.port}/`,
    token: server.token,
    appendToken: true,
    // Node 20 has no global WebSocket; `ws` speaks the same API.
    WebSocket: WebSocket as unknown as typeof globalThis.WebSocket,
  });
  manager = new KernelManager({ serverSettings });
  await manager.ready;
  kernel = await manager.startNew({ name: "streambook" });
}, 90_000);

afterAll(async () => {
  try {
    await kernel?.shutdown();
  } catch {
    // the server's shutdown below stops it anyway
  }
  manager?.dispose();
  await server?.stop();
}, 60_000);

interface Run {
  reply: KernelMessage.IExecuteReplyMsg;
  iopub: KernelMessage.IIOPubMessage[];
}

async function run(code: string): Promise<Run> {
  const iopub: KernelMessage.IIOPubMessage[] = [];
  const future = kernel.requestExecute({ code, stop_on_error: true });
  future.onIOPub = (msg) => {
    iopub.push(msg);
  };
  const reply = (await future.done) as KernelMessage.IExecuteReplyMsg;
  return { reply, iopub };
}

function text(msgs: KernelMessage.IIOPubMessage[], type: string): string[] {
  return msgs
    .filter((m) => m.header.msg_type === type)
    .map((m) => {
      const c = m.content as { data?: Record<string, unknown>; text?: string };
      return c.text ?? String(c.data?.["text/plain"] ?? "");
    });
}

describe("streambook through Jupyter Server and @jupyterlab/services", () => {
  it("starts the kernel with the streambook kernelspec", async () => {
    const spec = await kernel.spec;
    expect(spec?.language).toBe("typescript");
    const info = await kernel.info;
    expect(info.implementation).toBe("streambook");
  }, 60_000);

  it("runs a plain TypeScript cell", async () => {
    const { reply, iopub } = await run("const answer: number = 6 * 7;\nanswer");
    expect(reply.content.status).toBe("ok");
    expect(text(iopub, "execute_result")).toEqual(["42"]);
  }, 60_000);

  it("runs a streaming cell: the queue's batches come out of foreachRDD and into a live pprint display", async () => {
    const code = [
      'const m = new StreamingContext(sc, Seconds(1), { clock: "manual" });',
      "const queue = [sc.parallelize([1, 2, 3]), sc.parallelize([4, 5])];",
      "const tens = m.queueStream(queue).map((x) => x * 10);",
      "const seen: number[][] = [];",
      "tens.foreachRDD((rdd) => { seen.push(rdd.collect()); });",
      "tens.pprint();",
      "m.start();",
      "await m.advance(Seconds(2));",
      "await m.stop();",
      "JSON.stringify(seen)",
    ].join("\n");
    const { reply, iopub } = await run(code);
    const errors = iopub.filter((m) => m.header.msg_type === "error").map((m) => JSON.stringify(m.content));
    expect(errors).toEqual([]);
    expect(reply.content.status).toBe("ok");
    expect(text(iopub, "execute_result")).toEqual(["'[[10,20,30],[40,50]]'"]);
    // pprint: a display_data with a display_id, then updates of that id in Spark's print layout
    // (foreachRDD gets a log display only when its context may still run after the cell).
    const idOf = (m: KernelMessage.IIOPubMessage) => (m.content as { transient?: { display_id?: string } }).transient?.display_id;
    const created = iopub.filter((m) => m.header.msg_type === "display_data").map(idOf);
    expect(created.length).toBe(1); // the context stopped within the cell: no log display is needed
    const updates = iopub.filter((m) => m.header.msg_type === "update_display_data" && created.includes(idOf(m)));
    const printed = updates
      .map((m) => String((m.content as { data: Record<string, unknown> }).data["text/plain"]))
      .filter((t) => t.includes("Time: "));
    expect(printed.length).toBeGreaterThan(0);
    const last = printed[printed.length - 1];
    expect(last).toMatch(/Time: 1000 ms[\s\S]*\b10\b[\s\S]*\b30\b/);
    expect(last).toMatch(/Time: 2000 ms[\s\S]*\b40\b[\s\S]*\b50\b/);
  }, 60_000);
});
