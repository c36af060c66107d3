// Checkpoint support's public face; importing it plugs ssc.checkpoint(dir) and
// StreamingContext.getOrCreate(dir, setup) into the context (engine/context.ts's checkpointSupport).
import { checkpointSupport, type StreamingContext } from "../context.js";
import { Checkpointer, checkpointerOf, type CheckpointOptions } from "./checkpointer.js";
import { getOrCreate } from "./recovery.js";

checkpointSupport.attach = (ssc: StreamingContext, dir: string, options?: CheckpointOptions) => {
  new Checkpointer(ssc, dir, options);
};
checkpointSupport.getOrCreate = (dir: string, setup: () => StreamingContext) => getOrCreate(dir, setup);
// If the context awaits an onStop hook in stop(), every checkpoint asked for is on disk when stop() resolves.
(checkpointSupport as { onStop?: (ssc: StreamingContext) => Promise<void> }).onStop = async (ssc) => {
  await checkpointerOf(ssc)?.flush();
};

export { Checkpointer, checkpointerOf, type CheckpointOptions, type RecoveryReport } from "./checkpointer.js";
export { getOrCreate, recoveryReportOf, restore, CheckpointMismatchError, CheckpointMissingError } from "./recovery.js";
export { CheckpointStore, CheckpointUnreadableError, type LoadedCheckpoint } from "./store.js";
export {
  CHECKPOINT_VERSION,
  CheckpointCorruptError,
  CheckpointSerializationError,
  CheckpointVersionError,
  type CheckpointData,
} from "./format.js";
export { WriteAheadLog } from "./wal.js";
export { ReceivedBlockLog } from "./blocklog.js";
export { BatchInputLog, type BatchLogContents } from "./batchlog.js";

/** ssc.checkpoint(dir, options) until the context passes options through itself. */
export function checkpoint(ssc: StreamingContext, dir: string, options: CheckpointOptions = {}): Checkpointer {
  ssc.checkpointDir = dir;
  return new Checkpointer(ssc, dir, options);
}
