// One batch's records as an RDD, without copying: the sources hand over arrays they no longer touch.

import type { StreamingContext } from "../context.js";
import { RDD } from "../rdd.js";

export function makeRDD<T>(ssc: StreamingContext, items: T[]): RDD<T> {
  return new RDD<T>(ssc.sc, { parts: items.length > 0 ? [items] : [] });
}
