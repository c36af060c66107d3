// A receiver that cannot reach its source (a wrong host or port, a server gone away) reports under the cell
// that defined its stream: one status line with the error and the retry state, replaced in place, in that
// cell's log display; not only in ssc.ui().
import type { ReceiverInfo, StreamingListener } from "../engine/index.js";
import type { CellRun } from "./notebook-presenter.js";

/** What the watcher needs of a StreamingContext. */
export interface ListenedContext {
  addStreamingListener(listener: StreamingListener): void;
  removeStreamingListener?(listener: StreamingListener): void;
}

/**
 * Reports the receiver of input stream `streamId` under `run`'s cell while that run's outputs live.
 * `mayFail`: the source can report receiver errors (not a queue or a rate source), so the cell keeps a log
 * display after its reply while a context may run, for the status line to go to.
 */
export function watchReceiver(ctx: ListenedContext, streamId: number, run: CellRun, mayFail: boolean): void {
  if (mayFail) run.definedLoggingOutput = true;
  const key = `receiver ${streamId}`;
  let failures = 0;
  let lastError = "";
  const label = (info: ReceiverInfo): string => `receiver ${info.streamId} (${info.name})`;
  const listener: StreamingListener = {
    onReceiverError: ({ receiverInfo: info }) => {
      if (info.streamId !== streamId || run.disposed) return;
      failures++;
      lastError = describeError(info);
      const state = info.active ? "still receiving" : "retrying (stop the context to give up)";
      run.setStatus(key, `${label(info)}: ${lastError}; ${failures} failure${failures === 1 ? "" : "s"} so far, ${state}`);
    },
    onBatchCompleted: ({ batchInfo }) => {
      // Records from this stream after failures: it is connected again.
      if (failures === 0 || run.disposed || (batchInfo.streamIdToNumRecords?.[streamId] ?? 0) === 0) return;
      run.setStatus(key, `receiver ${streamId}: receiving again after ${failures} failure${failures === 1 ? "" : "s"} (last: ${lastError})`);
      failures = 0;
    },
    onReceiverStopped: ({ receiverInfo: info }) => {
      if (info.streamId !== streamId || run.disposed || failures === 0) return;
      run.setStatus(key, `${label(info)}: stopped after ${failures} failure${failures === 1 ? "" : "s"}; last error: ${lastError}`);
    },
  };
  ctx.addStreamingListener(listener);
  run.addDisposer(() => ctx.removeStreamingListener?.(listener));
}

/** "connect ECONNREFUSED 127.0.0.1:9 (Error connecting to 127.0.0.1:9)": the cause first, then the receiver's words. */
function describeError(info: ReceiverInfo): string {
  const cause = info.lastError ?? "";
  const message = info.lastErrorMessage ?? "";
  if (cause === "") return message || "an error";
  return message === "" || message === cause ? cause : `${cause} (${message})`;
}
