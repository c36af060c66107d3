// Dispatch without sockets (xeus-style mock interpreter): busy/idle, execution counts, stop_on_error,
// history, comms, stdin and the pager, checked message by message.
import { describe, expect, it } from "vitest";
import { Dispatcher, KernelTransport } from "../kernel/dispatch.js";
import type { ExecuteContext, ExecuteOutcome, Interpreter } from "../kernel/interpreter.js";
import { Header, JsonObject, MessageFactory, Received } from "../kernel/wire.js";

interface Sent {
  channel: "shell" | "iopub" | "stdin";
  type: string;
  content: JsonObject;
  parent?: string;
}

/** Runs cells by a script: code -> outcome, with a hook to hold a cell until the test releases it. */
class MockInterpreter implements Interpreter {
  holds = new Map<string, Promise<void>>();
  async execute(code: string, ctx: ExecuteContext): Promise<ExecuteOutcome> {
    await this.holds.get(code);
    if (code.startsWith("throw")) return { status: "error", ename: "Error", evalue: code, traceback: [code] };
    if (code === "ask") return { status: "ok", result: { "text/plain": await ctx.input("name?", false) } };
    if (code.startsWith("print ")) {
      ctx.sink.stream("stdout", code.slice(6));
      return { status: "ok" };
    }
    return { status: "ok", result: { "text/plain": `<${code}>` } };
  }
  async evaluateExpressions(e: Record<string, string>): Promise<Record<string, unknown>> {
    return Object.fromEntries(Object.entries(e).map(([k, v]) => [k, { status: "ok", data: { "text/plain": v } }]));
  }
  async complete(code: string, cursorPos: number) {
    return { matches: ["max"], cursor_start: cursorPos - 2, cursor_end: cursorPos, metadata: {} };
  }
  async inspect(code: string) {
    return { found: true, data: { "text/plain": `doc of ${code}` } };
  }
  isComplete(code: string) {
    return { status: code.endsWith("{") ? ("incomplete" as const) : ("complete" as const), indent: "" };
  }
  interrupt(): void {}
  async shutdown(): Promise<void> {}
}

function setup() {
  const sent: Sent[] = [];
  let idleResolve: (() => void) | undefined;
  const transport: KernelTransport = {
    reply: (_ids, parent, type, content) => sent.push({ channel: "shell", type, content, parent: parent.msg_id }),
    publish: (type, content, parent) => {
      sent.push({ channel: "iopub", type, content, parent: parent?.msg_id as string | undefined });
      if (type === "status" && content.execution_state === "idle") idleResolve?.();
    },
    inputRequest: (_ids, parent, content) => {
      sent.push({ channel: "stdin", type: "input_request", content, parent: parent.msg_id });
      return "input-1";
    },
    shutdown: async () => {},
  };
  const interpreter = new MockInterpreter();
  const dispatcher = new Dispatcher(transport, async () => interpreter, { status: "ok", protocol_version: "5.3" }, () => {});
  const client = new MessageFactory("client");
  const send = (type: string, content: JsonObject): Header => {
    const message = client.make(type, content);
    const received: Received = { identities: [Buffer.from("peer")], message };
    dispatcher.receiveShell(received);
    return message.header;
  };
  const execute = (code: string, extra: JsonObject = {}): Header =>
    send("execute_request", { code, silent: false, store_history: true, user_expressions: {}, allow_stdin: true, stop_on_error: true, ...extra });
  return { sent, dispatcher, interpreter, send, execute, client, idle: () => dispatcher.whenIdle() };
}

const of = (sent: Sent[], id: string) => sent.filter((s) => s.parent === id).map((s) => (s.type === "status" ? s.content.execution_state : s.type));

describe("dispatch", () => {
  it("wraps every request in busy/idle, publishes execute_input and the result, counts executions", async () => {
    const k = setup();
    const a = k.execute("1+1");
    const b = k.execute("print hi");
    await k.idle();
    expect(of(k.sent, a.msg_id)).toEqual(["busy", "execute_input", "execute_result", "execute_reply", "idle"]);
    expect(of(k.sent, b.msg_id)).toEqual(["busy", "execute_input", "stream", "execute_reply", "idle"]);
    const replies = k.sent.filter((s) => s.type === "execute_reply").map((s) => s.content.execution_count);
    expect(replies).toEqual([1, 2]);
  });

  it("does not count or echo silent executions", async () => {
    const k = setup();
    const s = k.execute("1", { silent: true });
    const n = k.execute("2");
    await k.idle();
    expect(of(k.sent, s.msg_id)).toEqual(["busy", "execute_reply", "idle"]);
    expect(k.sent.find((m) => m.parent === n.msg_id && m.type === "execute_reply")?.content.execution_count).toBe(1);
  });

  it("aborts the queued execute_requests after an error when stop_on_error is set, and only those", async () => {
    const k = setup();
    let release!: () => void;
    k.interpreter.holds.set("throw now", new Promise<void>((r) => (release = r)));
    const failing = k.execute("throw now");
    const queued = k.execute("1");
    const info = k.send("kernel_info_request", {});
    release();
    await k.idle();
    const reply = (h: Header) => k.sent.find((m) => m.parent === h.msg_id && m.channel === "shell")!;
    expect(reply(failing).content.status).toBe("error");
    expect(reply(queued).content.status).toBe("aborted");
    expect(of(k.sent, queued.msg_id)).toEqual(["busy", "execute_reply", "idle"]);
    expect(reply(info).type).toBe("kernel_info_reply");
    const after = k.execute("2");
    await k.idle();
    expect(reply(after).content.status).toBe("ok");
  });

  it("answers history tail, range and search (glob, unique, n)", async () => {
    const k = setup();
    for (const code of ["a = 1", "b = 2", "a = 1", "c"]) k.execute(code);
    await k.idle();
    const history = async (content: JsonObject) => {
      const h = k.send("history_request", { output: false, raw: true, ...content });
      await k.idle();
      return k.sent.find((m) => m.parent === h.msg_id && m.type === "history_reply")!.content.history;
    };
    expect(await history({ hist_access_type: "tail", n: 2 })).toEqual([[1, 3, "a = 1"], [1, 4, "c"]]);
    expect(await history({ hist_access_type: "range", session: 0, start: 2, stop: 3 })).toEqual([[1, 2, "b = 2"]]);
    expect(await history({ hist_access_type: "search", pattern: "a*" })).toEqual([[1, 1, "a = 1"], [1, 3, "a = 1"]]);
    expect(await history({ hist_access_type: "search", pattern: "a*", unique: true })).toEqual([[1, 3, "a = 1"]]);
    expect(await history({ hist_access_type: "search", pattern: "*", n: 1 })).toEqual([[1, 4, "c"]]);
    expect(await history({ hist_access_type: "tail", n: 1, output: true })).toEqual([[1, 4, ["c", "<c>"]]]);
  });

  it("closes a comm opened for an unknown target and reports no comms", async () => {
    const k = setup();
    k.send("comm_open", { comm_id: "x1", target_name: "nobody", data: {} });
    const info = k.send("comm_info_request", {});
    await k.idle();
    expect(k.sent.find((m) => m.type === "comm_close")?.content).toEqual({ comm_id: "x1", data: {} });
    expect(k.sent.find((m) => m.parent === info.msg_id && m.type === "comm_info_reply")?.content).toEqual({ status: "ok", comms: {} });
  });

  it("sends input_request on stdin and resumes with the input_reply", async () => {
    const k = setup();
    const ask = k.execute("ask");
    await new Promise<void>((resolve) => setImmediate(resolve));
    await new Promise<void>((resolve) => setImmediate(resolve));
    expect(k.sent.find((m) => m.channel === "stdin")?.content).toEqual({ prompt: "name?", password: false });
    k.dispatcher.receiveStdin({
      identities: [],
      message: k.client.make("input_reply", { value: "Ada" }, { msg_id: "input-1" }),
    });
    await k.idle();
    expect(k.sent.find((m) => m.parent === ask.msg_id && m.type === "execute_result")?.content.data).toEqual({ "text/plain": "Ada" });
  });

  it("refuses input when allow_stdin is false", async () => {
    const k = setup();
    k.execute("ask", { allow_stdin: false });
    await k.idle();
    expect(k.sent.find((m) => m.type === "execute_reply")?.content.ename).toBe("StdinNotAllowedError");
  });

  it("pages `name?` as an execute_reply payload", async () => {
    const k = setup();
    const h = k.execute("Math.max?");
    await k.idle();
    const reply = k.sent.find((m) => m.parent === h.msg_id && m.type === "execute_reply")!;
    expect(reply.content.payload).toEqual([{ source: "page", data: { "text/plain": "doc of Math.max" }, start: 0 }]);
  });

  it("ignores unknown message types without replying", async () => {
    const k = setup();
    k.send("no_such_request", {});
    await k.idle();
    expect(k.sent).toEqual([]);
  });
});
