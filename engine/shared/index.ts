// Shared variables (Spark's guide, "Shared Variables"): broadcast variables and accumulators.
export { Broadcast } from "./broadcast.js";
export { AccumulatorV2, LongAccumulator, DoubleAccumulator, CollectionAccumulator } from "./accumulators.js";
export type { AccumulatorInfo } from "./accumulators.js";
