// Request dispatch, xeus-style: one table from msg_type to handler, plus the duties every request
// shares (busy/idle, execute_input, execution_count, history, aborting the queue on stop_on_error).
// Built-ins come from ./primordials.ts: a cell may replace Map or Array.prototype.push for the whole realm.
import { DropLog } from "./wire.js";
import { History, HistoryEntry, MemoryHistory } from "./history.js";
import {
  ArrayPrototypeJoin,
  ArrayPrototypePush,
  ArrayPrototypeShift,
  builtinsIntact,
  healVitalBuiltins,
  KernelPromise,
  PromiseReject,
  ObjectHasOwn,
  ObjectKeys,
  RegExpPrototypeExec,
  replacedBuiltins,
  SafeMap,
  StringPrototypeReplace,
  StringPrototypeSplit,
  takeHealedBuiltins,
} from "./primordials.js";
import type { ExecuteContext, ExecuteOutcome, Interpreter, MimeBundle, OutputSink } from "./interpreter.js";
import type { Header, JsonObject, Received } from "./wire.js";

/** What dispatch needs from the transport; a test can provide it without sockets. */
export interface KernelTransport {
  reply(identities: Buffer[], parent: Header, msgType: string, content: JsonObject, metadata?: JsonObject): void;
  publish(msgType: string, content: JsonObject, parent?: Header, metadata?: JsonObject): void;
  /** Sends input_request on stdin and returns its msg_id. */
  inputRequest(identities: Buffer[], parent: Header, content: JsonObject): string;
  /** Ends the process (or restarts it) after the interpreter has been shut down. */
  shutdown(restart: boolean): Promise<void>;
}

export class StdinNotAllowedError extends Error {
  override name = "StdinNotAllowedError";
  constructor() {
    super("input() is not available: this frontend does not accept input requests (allow_stdin is false)");
  }
}

export class InputCancelledError extends Error {
  override name = "InputCancelledError";
  constructor() {
    super("input() was cancelled: the cell that asked for it finished or the kernel is shutting down");
  }
}

interface Queued extends Received {
  aborted?: boolean;
}

type Handler = (request: Queued) => Promise<void>;

export class Dispatcher {
  private executionCount = 0;
  private readonly queue: Queued[] = [];
  private processing = false;
  private readonly pendingInputs = new SafeMap<string, { resolve: (value: string) => void; reject: (err: Error) => void }>();
  private readonly commTargets = new SafeMap<string, (commId: string, data: JsonObject) => void>();
  private readonly openComms = new SafeMap<string, string>();
  /** Built-ins cells replaced, with the cell that did it (said under later errors). */
  private readonly replaced = new SafeMap<string, number>();
  private idleWaiters: (() => void)[] = [];
  private current: string | undefined;
  private readonly unknown: DropLog;

  private readonly handlers: Record<string, Handler> = {
    execute_request: (r) => this.execute(r),
    kernel_info_request: async (r) => this.transport.reply(r.identities, r.message.header, "kernel_info_reply", this.kernelInfo),
    complete_request: (r) => this.complete(r),
    inspect_request: (r) => this.inspect(r),
    is_complete_request: (r) => this.isComplete(r),
    history_request: async (r) => this.historyRequest(r),
    comm_info_request: async (r) => this.commInfo(r),
    comm_open: async (r) => this.commOpen(r),
    comm_msg: async (r) => this.commMsg(r),
    comm_close: async (r) => this.commClose(r),
    shutdown_request: (r) => this.shutdownRequest(r),
  };

  constructor(
    private readonly transport: KernelTransport,
    private readonly interpreter: () => Promise<Interpreter>,
    private readonly kernelInfo: JsonObject,
    private readonly log: (text: string) => void = (text) => process.stderr.write(`streambook: ${text}\n`),
    private readonly history: History = new MemoryHistory(),
  ) {
    this.unknown = new DropLog(log);
  }

  /** Queues a shell request; requests run one at a time, in arrival order. */
  receiveShell(received: Received): void {
    const type = received.message.header.msg_type;
    // Own keys only: msg_types such as "toString" or "__proto__" name no handler.
    if (!ObjectHasOwn(this.handlers, type)) {
      this.unknown.dropped("shell", `unknown msg_type ${JSON.stringify(type)}`);
      return;
    }
    ArrayPrototypePush(this.queue, received);
    if (!this.processing) void this.drain();
  }

  receiveStdin(received: Received): void {
    const { header, parent_header: parent, content } = received.message;
    if (header.msg_type !== "input_reply") {
      this.log(`ignored ${header.msg_type} on stdin`);
      return;
    }
    const parentId = typeof parent.msg_id === "string" ? parent.msg_id : undefined;
    const key = parentId !== undefined && this.pendingInputs.has(parentId) ? parentId : this.pendingInputs.keys().next().value;
    if (key === undefined) {
      this.log("ignored an input_reply nobody asked for");
      return;
    }
    const pending = this.pendingInputs.get(key)!;
    this.pendingInputs.delete(key);
    pending.resolve(typeof content.value === "string" ? content.value : "");
  }

  /** Registers a comm target; comm_open for any other target is answered with comm_close. */
  registerCommTarget(name: string, onOpen: (commId: string, data: JsonObject) => void): void {
    this.commTargets.set(name, onOpen);
  }

  /** True while an execute_request runs (its reply not sent yet). */
  get executing(): boolean {
    return this.current === "execute_request";
  }

  /** Resolves when no request is queued or running (used before shutdown). */
  whenIdle(): Promise<void> {
    if (!this.processing) return Promise.resolve();
    return new KernelPromise((resolve) => ArrayPrototypePush(this.idleWaiters, resolve));
  }

  cancelInputs(): void {
    for (const pending of this.pendingInputs.values()) pending.reject(new InputCancelledError());
    this.pendingInputs.clear();
  }

  private async drain(): Promise<void> {
    this.processing = true;
    try {
      await this.drainQueue();
    } finally {
      this.processing = false;
      // A request that came while drainQueue's promise was settling found `processing` still set.
      if (this.queue.length > 0) void this.drain();
      else {
        const waiters = this.idleWaiters;
        this.idleWaiters = [];
        for (let i = 0; i < waiters.length; i++) waiters[i]();
      }
    }
  }

  private async drainQueue(): Promise<void> {
    while (this.queue.length > 0) {
      const request = ArrayPrototypeShift(this.queue)!;
      const header = request.message.header;
      try {
        this.transport.publish("status", { execution_state: "busy" }, header);
        if (request.aborted) {
          this.transport.reply(request.identities, header, "execute_reply", { status: "aborted" }, { status: "aborted" });
        } else {
          this.current = header.msg_type;
          await this.handlers[header.msg_type](request);
        }
      } catch (err) {
        this.log(`${header.msg_type} failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
        const replyType = StringPrototypeReplace(header.msg_type, /_request$/, "_reply");
        // The error reply can fail the same way (a reply that cannot be encoded): then only the log has it.
        if (replyType !== header.msg_type) this.attempt(`${replyType}`, () => this.transport.reply(request.identities, header, replyType, errorContent(err)));
      }
      this.current = undefined;
      this.attempt("idle status", () => this.transport.publish("status", { execution_state: "idle" }, header));
    }
  }

  /** Runs a step whose failure must not stop the queue (the queue is the kernel's only way to answer). */
  private attempt(what: string, step: () => void): void {
    try {
      step();
    } catch (err) {
      this.log(`sending ${what} failed: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  private async execute(request: Queued): Promise<void> {
    const { identities, message } = request;
    const header = message.header;
    const content = message.content;
    const code = typeof content.code === "string" ? content.code : "";
    const silent = content.silent === true;
    const storeHistory = silent ? false : content.store_history !== false;
    const allowStdin = content.allow_stdin !== false;
    const stopOnError = content.stop_on_error !== false;
    if (storeHistory) this.executionCount += 1;
    const count = this.executionCount;
    if (!silent) this.transport.publish("execute_input", { code, execution_count: count }, header);
    // Stored before it runs, as IPython does: a cell that ends the kernel is still in the history.
    if (storeHistory) this.history.recordInput(count, code);
    // A damaged history store is said under the next cell, once, as well as in the kernel's log.
    for (const warning of this.history.takeWarnings()) this.transport.publish("stream", { name: "stderr", text: `streambook: ${warning}\n` }, header);

    const interpreter = await this.interpreter();
    const help = RegExpPrototypeExec(/^\s*([A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)*)\s*\?\s*$/, code);
    if (help) {
      // IPython's `name?`: documentation in the pager, as an execute_reply payload.
      const name = help[1];
      const found = await interpreter.inspect(name, [...name].length, 1);
      const data = found.found ? found.data : { "text/plain": `${name}: no documentation found` };
      this.transport.reply(identities, header, "execute_reply", {
        status: "ok",
        execution_count: count,
        payload: [{ source: "page", data, start: 0 }],
        user_expressions: {},
      }, { status: "ok" });
      return;
    }
    const publish: KernelTransport["publish"] = (msgType, content, parent, metadata) => this.transport.publish(msgType, content, parent, metadata);
    const sink: OutputSink = {
      stream: (name, text) => publish("stream", { name, text }, header),
      displayData: (data, metadata = {}, transient = {}) => publish("display_data", { data, metadata, transient }, header),
      updateDisplayData: (data, metadata, transient) => publish("update_display_data", { data, metadata, transient }, header),
      clearOutput: (wait) => publish("clear_output", { wait }, header),
    };
    const ctx: ExecuteContext = {
      sink,
      executionCount: count,
      silent,
      cellId: typeof message.metadata.cellId === "string" ? message.metadata.cellId : undefined,
      input: (prompt, password) => {
        if (!allowStdin) return PromiseReject(new StdinNotAllowedError());
        return new KernelPromise<string>((resolve, reject) => {
          const id = this.transport.inputRequest(identities, header, { prompt, password });
          this.pendingInputs.set(id, { resolve, reject });
        });
      },
    };

    let outcome: ExecuteOutcome;
    try {
      outcome = await interpreter.execute(code, ctx);
    } catch (err) {
      outcome = { status: "error", ...errorFields(err) };
    }
    healVitalBuiltins();
    const healed = takeHealedBuiltins();
    if (healed.length > 0) {
      const names = ArrayPrototypeJoin(healed, ", ");
      this.transport.publish("stream", { name: "stderr", text: `streambook: ${names} ${healed.length === 1 ? "was" : "were"} put back: Node.js itself relies on ${healed.length === 1 ? "it" : "them"} (events, signals, promises), so the kernel cannot run without the original.\n` }, header);
    }
    const { note: replacedNote, fresh } = this.noteReplacedBuiltins(count);
    if (fresh.length > 0) {
      const names = ArrayPrototypeJoin(fresh, ", ");
      this.transport.publish("stream", { name: "stderr", text: `streambook: this cell replaced ${names}. The kernel keeps working with its own copies, but code that uses ${fresh.length === 1 ? "it" : "them"} (yours, libraries', the engine's) may fail until ${fresh.length === 1 ? "it is" : "they are"} put back or the kernel restarts.\n` }, header);
    }

    let output: string | null = null;
    if (outcome.status === "ok") {
      if (outcome.result !== undefined && !silent) {
        publish("execute_result", { execution_count: count, data: outcome.result, metadata: {} }, header);
        output = textOf(outcome.result);
      }
      const expressions = isObject(content.user_expressions) ? (content.user_expressions as Record<string, string>) : {};
      const userExpressions = ObjectKeys(expressions).length > 0 ? await interpreter.evaluateExpressions(expressions) : {};
      this.transport.reply(identities, header, "execute_reply", {
        status: "ok",
        execution_count: count,
        payload: [],
        user_expressions: userExpressions,
      }, { status: "ok" });
    } else if (outcome.status === "error") {
      const fields = replacedNote === undefined
        ? { ename: outcome.ename, evalue: outcome.evalue, traceback: outcome.traceback }
        : { ename: outcome.ename, evalue: `${outcome.evalue} (${replacedNote})`, traceback: [...outcome.traceback, replacedNote] };
      publish("error", fields, header);
      this.transport.reply(identities, header, "execute_reply", { status: "error", execution_count: count, ...fields }, { status: "error" });
      if (stopOnError) this.abortQueuedExecutes();
    } else {
      this.transport.reply(identities, header, "execute_reply", { status: "aborted", execution_count: count }, { status: "aborted" });
      if (stopOnError) this.abortQueuedExecutes();
    }
    if (storeHistory && output !== null) this.history.recordOutput(count, output);
    // An input() still waiting belongs to a cell that is over.
    this.cancelInputs();
  }

  /**
   * Records which built-ins the session has replaced, and by which cell (noticed after the cell that did
   * it); returns the ones this cell replaced, and the sentence said under an error while any stay replaced.
   */
  private noteReplacedBuiltins(count: number): { note: string | undefined; fresh: string[] } {
    const fresh: string[] = [];
    if (builtinsIntact() && this.replaced.size === 0) return { note: undefined, fresh };
    const now = replacedBuiltins();
    const still = new SafeMap<string, number>();
    for (let i = 0; i < now.length; i++) still.set(now[i], this.replaced.get(now[i]) ?? count);
    this.replaced.clear();
    const parts: string[] = [];
    for (const [name, cell] of still) {
      this.replaced.set(name, cell);
      ArrayPrototypePush(parts, `${name} (cell ${cell})`);
      if (cell === count) ArrayPrototypePush(fresh, name);
    }
    if (parts.length === 0) return { note: undefined, fresh };
    const note = `this session replaced built-ins the kernel and its libraries rely on: ${ArrayPrototypeJoin(parts, ", ")}; put them back or restart the kernel`;
    return { note, fresh };
  }

  private abortQueuedExecutes(): void {
    for (const queued of this.queue) {
      if (queued.message.header.msg_type === "execute_request") queued.aborted = true;
    }
  }

  private async complete(request: Queued): Promise<void> {
    const { code, cursor } = codeAndCursor(request.message.content);
    const result = await (await this.interpreter()).complete(code, cursor);
    this.transport.reply(request.identities, request.message.header, "complete_reply", { status: "ok", ...result });
  }

  private async inspect(request: Queued): Promise<void> {
    const { code, cursor } = codeAndCursor(request.message.content);
    const detail = request.message.content.detail_level === 1 ? 1 : 0;
    const result = await (await this.interpreter()).inspect(code, cursor, detail);
    this.transport.reply(request.identities, request.message.header, "inspect_reply", {
      status: "ok",
      found: result.found,
      data: result.data,
      metadata: {},
    });
  }

  private async isComplete(request: Queued): Promise<void> {
    const code = typeof request.message.content.code === "string" ? request.message.content.code : "";
    const result = (await this.interpreter()).isComplete(code);
    this.transport.reply(request.identities, request.message.header, "is_complete_reply", { ...result });
  }

  private historyRequest(request: Queued): void {
    const content = request.message.content;
    const withOutput = content.output === true;
    const int = (value: unknown): number | undefined => (typeof value === "number" && Number.isFinite(value) ? Math.trunc(value) : undefined);
    const n = int(content.n);
    let entries: HistoryEntry[];
    switch (content.hist_access_type) {
      case "tail":
        entries = this.history.tail(n ?? 10);
        break;
      case "range":
        // session 0 is this kernel's, -1 the one before it (IPython's numbering, shared by every kernel).
        entries = this.history.range(int(content.session) ?? 0, int(content.start) ?? 1, int(content.stop));
        break;
      case "search":
        entries = this.history.search(typeof content.pattern === "string" ? content.pattern : "*", n, content.unique === true);
        break;
      default:
        entries = [];
    }
    const history = entries.map((e) => (withOutput ? [e.session, e.line, [e.input, e.output]] : [e.session, e.line, e.input]));
    this.transport.reply(request.identities, request.message.header, "history_reply", { status: "ok", history });
  }

  private commInfo(request: Queued): void {
    const target = request.message.content.target_name;
    const comms: Record<string, { target_name: string }> = {};
    for (const [id, name] of this.openComms) if (typeof target !== "string" || target === name) comms[id] = { target_name: name };
    this.transport.reply(request.identities, request.message.header, "comm_info_reply", { status: "ok", comms });
  }

  private commOpen(request: Queued): void {
    const { comm_id: commId, target_name: target, data } = request.message.content;
    if (typeof commId !== "string") return this.log("ignored comm_open without comm_id");
    const onOpen = typeof target === "string" ? this.commTargets.get(target) : undefined;
    if (onOpen === undefined) {
      this.transport.publish("comm_close", { comm_id: commId, data: {} }, request.message.header);
      return;
    }
    this.openComms.set(commId, target as string);
    onOpen(commId, isObject(data) ? data : {});
  }

  private commMsg(request: Queued): void {
    const commId = request.message.content.comm_id;
    if (typeof commId !== "string" || !this.openComms.has(commId)) this.log(`ignored comm_msg for unknown comm ${String(commId)}`);
  }

  private commClose(request: Queued): void {
    const commId = request.message.content.comm_id;
    if (typeof commId === "string") this.openComms.delete(commId);
  }

  private async shutdownRequest(request: Queued): Promise<void> {
    const restart = request.message.content.restart === true;
    this.transport.reply(request.identities, request.message.header, "shutdown_reply", { status: "ok", restart });
    this.transport.publish("status", { execution_state: "idle" }, request.message.header);
    await this.transport.shutdown(restart);
  }
}

function isObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function codeAndCursor(content: JsonObject): { code: string; cursor: number } {
  const code = typeof content.code === "string" ? content.code : "";
  const cursor = typeof content.cursor_pos === "number" ? content.cursor_pos : [...code].length;
  return { code, cursor };
}

function errorFields(err: unknown): { ename: string; evalue: string; traceback: string[] } {
  if (err instanceof Error) return { ename: err.name, evalue: err.message, traceback: StringPrototypeSplit(err.stack ?? String(err), "\n") };
  return { ename: "Error", evalue: String(err), traceback: [String(err)] };
}

function errorContent(err: unknown): JsonObject {
  return { status: "error", ...errorFields(err) };
}

function textOf(bundle: MimeBundle): string | null {
  const text = bundle["text/plain"];
  return typeof text === "string" ? text : null;
}
