// engine/group: one pipeline as N instances over a partitioned log, as Kafka Streams does it. A context created
// with `{ group: { name, coordinator } }` is one instance: membership, ownership and epochs come from etcd,
// the data, repartition streams and per-partition checkpoints from the log (Redis Streams), and every commit
// is fenced with the epoch etcd issued. This file is the area's public face and plugs it into the context.
import { groupSupport, type StreamingContext } from "../context.js";
import { installRecipes } from "./recipe.js";
import { GroupRuntime } from "./runtime.js";
import { checkGroupOptions, groupFromEnvironment, type GroupHandle } from "./options.js";

export type {
  GroupOptions,
  GroupHandle,
  GroupInstanceInfo,
  GroupStatus,
  GroupMemberStatus,
  GroupPartitionStatus,
  GroupEvent,
  GroupListener,
} from "./options.js";
export {
  GroupCoordinatorUnavailableError,
  GroupSessionExpiredError,
  GroupFencedError,
  GroupConfigMismatchError,
  GroupUnsupportedError,
  GroupOptionError,
} from "./errors.js";
export { groupTaskOf, PARTITIONED_SINK, type GroupTaskScope } from "./scope.js";
export { partitionOf } from "./partitioner.js";
export { GroupMonitor } from "./monitor.js";
export type { GroupSourceSpec, GroupSource } from "./log.js";

const runtimes = new WeakMap<StreamingContext, GroupRuntime>();

/** The context's group runtime, made on first use: ssc.group answers before start() too. */
function runtimeOf(ssc: StreamingContext): GroupRuntime | undefined {
  const options = ssc.conf.group;
  if (!options) return undefined;
  let r = runtimes.get(ssc);
  if (!r) {
    checkGroupOptions(options);
    r = new GroupRuntime(ssc, options);
    runtimes.set(ssc, r);
  }
  return r;
}

installRecipes();

groupSupport.fromEnvironment = () => groupFromEnvironment();
groupSupport.handle = (ssc): GroupHandle | undefined => runtimeOf(ssc);
groupSupport.start = async (ssc, hooks) => {
  // A context started again after a stop joins again as a member (with the same instance id).
  await runtimeOf(ssc)!.start(hooks);
};
groupSupport.stop = async (ssc, { graceful }) => {
  await runtimes.get(ssc)?.stop(graceful);
};
