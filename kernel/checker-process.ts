// The checker process: a LocalChecker served over Node's IPC channel. It starts from a V8 startup
// snapshot (checker-snapshot.ts), so TypeScript and the declarations every cell sees are loaded already.
import { LocalChecker, type CheckerConfig } from "./checker.js";

/** Parent -> checker. Requests with an `id` get one reply with that id. */
export type CheckerRequest =
  | { op: "init"; config: CheckerConfig }
  | { op: "check"; id: number; code: string; typecheck: boolean }
  | { op: "commit" }
  | { op: "discard" }
  | { op: "replay"; codes: string[] }
  | { op: "complete"; id: number; code: string; cursorPos: number }
  | { op: "inspect"; id: number; code: string; cursorPos: number; detailLevel: number }
  | { op: "warm"; id: number };

/** Checker -> parent. */
export type CheckerReply = { id: number; result?: unknown; error?: string };

/** Runs the checker loop on this process's IPC channel until the parent goes away. */
export function serve(): void {
  let checker: LocalChecker | undefined;
  const send = (reply: CheckerReply): void => {
    // The kernel may be gone already (the disconnect handler then ends this process).
    if (process.connected) process.send?.(reply, undefined, undefined, () => {});
  };
  const need = (): LocalChecker => {
    if (!checker) throw new Error("the checker process got a request before its configuration");
    return checker;
  };
  process.on("message", (msg: CheckerRequest) => {
    const id = "id" in msg ? msg.id : undefined;
    try {
      let result: unknown;
      switch (msg.op) {
        case "init":
          checker = new LocalChecker(msg.config);
          // The kernel's first cell usually follows at once: be ready for it.
          checker.warmNow();
          return;
        case "check":
          result = need().checkNow(msg.code, msg.typecheck);
          break;
        case "commit":
          need().commit();
          return;
        case "discard":
          need().discard();
          return;
        case "replay":
          need().replay(msg.codes);
          return;
        case "complete":
          result = need().completeNow(msg.code, msg.cursorPos);
          break;
        case "inspect":
          result = need().inspectNow(msg.code, msg.cursorPos, msg.detailLevel);
          break;
        case "warm":
          need().warmNow();
          result = true;
          break;
      }
      if (id !== undefined) send({ id, result });
    } catch (err) {
      if (id !== undefined) send({ id, error: err instanceof Error ? (err.stack ?? err.message) : String(err) });
      else process.stderr.write(`streambook checker: ${err instanceof Error ? err.message : String(err)}\n`);
    }
  });
  // The kernel exited (even by SIGKILL): the channel closes, and so does this process.
  process.on("disconnect", () => process.exit(0));
}
